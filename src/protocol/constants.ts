/** Wire constants. docs/protocol.md is the normative description; keep the two in step. */

export const PROTOCOL_VERSION_MIN = 1;
export const PROTOCOL_VERSION_MAX = 1;

/** "SLNK" as the bytes 53 4C 4E 4B, read as a little-endian u32. */
export const MAGIC = 0x4b4e4c53;

export const HEADER_SIZE = 8;
/** Default and hard limits; a peer announces its own in WELCOME. */
export const DEFAULT_MAX_MESSAGE = 65536;
export const MAX_HANDLES = 8;
export const MAX_PLANES = 4;
export const MAX_DAMAGE_RECTS = 64;
/** Longest mechanism name accepted in HELLO. */
export const MAX_MECHANISM_NAME = 64;

export const MessageType = {
  HELLO: 0x01,
  WELCOME: 0x02,
  ERROR: 0x03,
  SCANOUT: 0x10,
  FRAME: 0x11,
  RELEASE: 0x12,
  RETIRE: 0x13,
  SURFACE_GONE: 0x14,
  IMPORT_FAILED: 0x20,
  MECHANISM: 0x21,
} as const;
export type MessageTypeName = keyof typeof MessageType;

/** Who may send each message type. A known type from the wrong side is E_UNEXPECTED; an unknown one E_UNKNOWN_TYPE. */
const SENDER: ReadonlyMap<number, 'client' | 'server' | 'both'> = new Map([
  [MessageType.HELLO, 'client'],
  [MessageType.RELEASE, 'client'],
  [MessageType.IMPORT_FAILED, 'client'],
  [MessageType.WELCOME, 'server'],
  [MessageType.SCANOUT, 'server'],
  [MessageType.FRAME, 'server'],
  [MessageType.RETIRE, 'server'],
  [MessageType.SURFACE_GONE, 'server'],
  [MessageType.MECHANISM, 'server'],
  [MessageType.ERROR, 'both'],
]);

export function messageSender(type: number): 'client' | 'server' | 'both' | undefined {
  return SENDER.get(type);
}

export const ERROR_FLAG_FATAL = 1;
/** FRAME flags: bit 0, an acquire fence (sync_file) is the message's one handle. */
export const FRAME_FLAG_FENCE = 1;

export const Orientation = { TOP_DOWN: 0, BOTTOM_UP: 1 } as const;

/** Fixed body sizes (bytes after the header). */
export const BodySize = {
  HELLO_FIXED: 8,
  WELCOME_FIXED: 8,
  ERROR_FIXED: 8,
  SCANOUT_FIXED: 56,
  SCANOUT_PLANE: 24,
  FRAME_FIXED: 32,
  DAMAGE_RECT: 16,
  RELEASE: 16,
  RETIRE: 8,
  SURFACE_GONE: 8,
  IMPORT_FAILED_FIXED: 16,
} as const;
