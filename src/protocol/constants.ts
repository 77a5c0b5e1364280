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
  // input.v1 (docs/protocol.md §3.11–§3.17)
  KEY: 0x30,
  POINTER: 0x31,
  MOTION: 0x32,
  BUTTON: 0x33,
  SCROLL: 0x34,
  TOUCH: 0x35,
  INPUT_MODE: 0x36,
  // cursor.v1 (§3.18, §3.19)
  CURSOR_SHAPE: 0x40,
  CURSOR_MOVE: 0x41,
} as const;
export type MessageTypeName = keyof typeof MessageType;

/** Who may send each message type. A known type from the wrong side is E_UNEXPECTED; an unknown one E_UNKNOWN_TYPE. */
const SENDER: ReadonlyMap<number, 'client' | 'server' | 'both'> = new Map([
  [MessageType.HELLO, 'client'],
  [MessageType.RELEASE, 'client'],
  [MessageType.IMPORT_FAILED, 'client'],
  [MessageType.KEY, 'client'],
  [MessageType.POINTER, 'client'],
  [MessageType.MOTION, 'client'],
  [MessageType.BUTTON, 'client'],
  [MessageType.SCROLL, 'client'],
  [MessageType.TOUCH, 'client'],
  [MessageType.WELCOME, 'server'],
  [MessageType.SCANOUT, 'server'],
  [MessageType.FRAME, 'server'],
  [MessageType.RETIRE, 'server'],
  [MessageType.SURFACE_GONE, 'server'],
  [MessageType.MECHANISM, 'server'],
  [MessageType.INPUT_MODE, 'server'],
  [MessageType.CURSOR_SHAPE, 'server'],
  [MessageType.CURSOR_MOVE, 'server'],
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
  KEY: 12,
  POINTER: 12,
  MOTION: 12,
  BUTTON: 12,
  SCROLL: 12,
  TOUCH: 20,
  INPUT_MODE: 8,
  CURSOR_SHAPE: 24,
  CURSOR_MOVE: 16,
} as const;

/** input.v1: the highest evdev key code (KEY_MAX); KEY carries 1..KEY_MAX. */
export const KEY_CODE_MAX = 0x2ff;
/** input.v1: BUTTON carries an evdev mouse button, BTN_LEFT (0x110) .. BTN_TASK (0x117). */
export const BUTTON_MIN = 0x110;
export const BUTTON_MAX = 0x117;
/** input.v1: MOTION deltas lie within ±MAX_MOTION pixels. */
export const MAX_MOTION = 16384;
/** input.v1: SCROLL deltas lie within ±MAX_SCROLL notches. */
export const MAX_SCROLL = 1024;
/** input.v1: TOUCH slots are 0..MAX_TOUCH_SLOTS-1. */
export const MAX_TOUCH_SLOTS = 16;
/** input.v1: TOUCH phase values on the wire, in order: down, move, up, cancel. */
export const TOUCH_PHASES = ['down', 'move', 'up', 'cancel'] as const;
/** input.v1: INPUT_MODE mode values on the wire: 0 absolute, 1 relative. */
export const INPUT_MODES = ['absolute', 'relative'] as const;
/** cursor.v1: CURSOR_MOVE flags, bit 0: the cursor is visible. */
export const CURSOR_FLAG_VISIBLE = 1;
