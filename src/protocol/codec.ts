/**
 * Encode and decode every message. Encoding writes into one reusable buffer per peer, so
 * the per-frame path allocates nothing; decoding reads straight out of the receive buffer
 * and checks every length before it reads.
 */
import { SurfaceLinkError } from '../errors.js';
import {
  BodySize,
  CURSOR_FLAG_VISIBLE,
  DEFAULT_MAX_MESSAGE,
  ERROR_FLAG_FATAL,
  FRAME_FLAG_FENCE,
  HEADER_SIZE,
  MAGIC,
  MAX_DAMAGE_RECTS,
  MAX_HANDLES,
  MAX_MECHANISM_NAME,
  MAX_PLANES,
  MessageType,
  messageSender,
} from './constants.js';

/** A rectangle in pixels, in buffer coordinates (x right, y down from row 0). */
export interface Rect {
  /** Left column. */
  x: number;
  /** Top row (row 0 is the first row in memory). */
  y: number;
  /** Width in pixels. */
  width: number;
  /** Height in rows. */
  height: number;
}

/** Where one plane of a buffer lies, as SCANOUT describes it. */
export interface PlaneDescriptor {
  /** Index into the handles attached to the SCANOUT message. */
  handleIndex: number;
  /** Bytes per row. */
  stride: number;
  /** Byte offset of the plane's first row in its handle's object. */
  offset: number;
  /** Bytes the plane occupies. */
  size: number;
}

/**
 * A SCANOUT message: one buffer of a surface announced to a client (its handles travel with it).
 * What an importer validates before touching the handles (docs/protocol.md §4.2).
 */
export interface ScanoutBody {
  /** The surface it belongs to. */
  surfaceId: number;
  /** Its id within the surface; FRAME and RELEASE name it. */
  bufferId: number;
  /** The surface generation it belongs to. */
  generation: number;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** DRM fourcc. */
  format: number;
  /** DRM format modifier (0: LINEAR). */
  modifier: bigint;
  /** Row order: 0 top-down, 1 bottom-up. */
  orientation: number;
  /** The part of the buffer that is the picture. */
  visible: Rect;
  /** One descriptor per plane of the format. */
  planes: PlaneDescriptor[];
}

export interface FrameBody {
  surfaceId: number;
  bufferId: number;
  sequence: number;
  presentTimeNs: number;
  /** An acquire fence (sync_file) is attached: wait for it before reading. */
  fenced: boolean;
  /** Empty: the whole surface changed. */
  damage: Rect[];
}

/** One entry of a HELLO's mechanism list: the mechanism's name and its own parameters (e.g. dmabuf.v1's formats). */
export interface MechanismOffer {
  /** Versioned mechanism name, e.g. 'dmabuf.v1'. */
  name: string;
  [parameter: string]: unknown;
}

/** Who a peer says it is, as sent in HELLO and WELCOME (for logs and diagnostics, not for access control). */
export interface PeerInfo {
  /** The peer's chosen name (`ServerOptions.name`, `ClientOptions.name`). */
  name: string;
  /** Its process id, as it claims. */
  pid: number;
  /** Its OS, as process.platform names it. */
  platform: string;
  /** Which machine and boot it runs on: a server compares boot ids to tell a peer on another host. */
  host: {
    /** /proc/sys/kernel/random/boot_id, or null where unknown. */
    bootId: string | null;
    /** /etc/machine-id, or null where unknown. */
    machineId: string | null;
  };
}

export interface HelloInfo extends PeerInfo {
  mechanisms: MechanismOffer[];
  /** Session features wanted, in preference order; absent means frames.v1 only (docs/protocol.md §4.5). */
  features?: string[];
}

/** A WELCOME message: the server's answer to HELLO (docs/protocol.md §4.1). */
export interface WelcomeInfo {
  /** Who the server is. */
  server: PeerInfo;
  /** This client's id on the server (what its `ClientInfo.id` says). */
  clientId: number;
  /** The mechanism chosen. */
  mechanism: string;
  /** Why it was chosen, in words. */
  reason: string;
  /** The offered mechanisms not chosen, each with why. */
  rejected: {
    /** The mechanism. */
    name: string;
    /** Why it was not chosen. */
    reason: string;
  }[];
  /** What the server enforces on this connection. */
  limits: {
    /** Largest message, in bytes. */
    maxMessage: number;
    /** Most handles on one message. */
    maxHandles: number;
    /** A frame held longer than this is E_RELEASE_TIMEOUT. */
    releaseTimeoutMs: number;
    /** Most frames of one surface a client may hold at once. */
    maxHeldFrames: number;
  };
  /** stream.v1 only: where the frames are (docs/protocol.md §4.4). */
  stream?: StreamEndpoint;
  /** The session features granted; present only when HELLO named features (§4.5). */
  features?: string[];
  /**
   * The chosen mechanism's own WELCOME keys, as received (iosurface.v1: `machService`, `machNonce`,
   * docs/protocol.md §9.1.3); the mechanism's `checkWelcome` validates them. Absent when there are none.
   */
  extra?: Readonly<Record<string, unknown>>;
}

/**
 * A stream.v1 rendezvous: the WebSocket endpoint, the token its hello needs, the browser viewer's
 * URL, the codecs offered.
 */
export interface StreamEndpoint {
  /** The WebSocket endpoint to connect a RemoteStreamClient to. */
  wsUrl: string;
  /** The token its hello needs. Secret: whoever has it can watch the surfaces. */
  token: string;
  /** The browser viewer's URL, token in the fragment. */
  url: string;
  /** The codecs the server offers ('tiles', 'h264'). */
  codecs: string[];
}

export class ProtocolError extends SurfaceLinkError {}

/** The error for a message type a `receiver` does not handle: E_UNKNOWN_TYPE, or E_UNEXPECTED from the wrong side. */
export function wrongMessage(type: number, receiver: 'client' | 'server'): ProtocolError {
  const hex = `0x${type.toString(16)}`;
  const sender = messageSender(type);
  if (sender === undefined) return new ProtocolError('E_UNKNOWN_TYPE', `unknown message type ${hex}`);
  return new ProtocolError(
    'E_UNEXPECTED',
    `message type ${hex} is sent by ${sender}s, not ${receiver === 'client' ? 'servers' : 'clients'}`,
  );
}

const malformed = (what: string): ProtocolError => new ProtocolError('E_MALFORMED', what);

// ---------------------------------------------------------------------------------------
// Writing

/**
 * The encode buffer of one channel: a message is written into it from `begin()` to `end()`, then
 * sent by length (`MessageChannel.send`). Reused for every message, so encoding allocates nothing.
 */
export class MessageWriter {
  /** The buffer; a message occupies bytes[0, end()). */
  readonly bytes: Buffer;
  private readonly view: DataView;
  private pos = 0;

  /** A writer for messages of up to `capacity` bytes (the channel's largest message). */
  constructor(capacity: number) {
    this.bytes = Buffer.allocUnsafeSlow(capacity);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
  }

  /** Starts a message of `type` that carries `handles` handles (writes the header but its length). */
  begin(type: number, handles: number): this {
    this.pos = HEADER_SIZE;
    this.view.setUint16(4, type, true);
    this.view.setUint8(6, handles);
    this.view.setUint8(7, 0);
    return this;
  }

  /** Appends an unsigned byte. */
  u8(v: number): this {
    this.view.setUint8(this.pos, v);
    this.pos += 1;
    return this;
  }
  /** Appends a little-endian u16. */
  u16(v: number): this {
    this.view.setUint16(this.pos, v, true);
    this.pos += 2;
    return this;
  }
  /** Appends a little-endian u32. */
  u32(v: number): this {
    this.view.setUint32(this.pos, v >>> 0, true);
    this.pos += 4;
    return this;
  }
  /** Appends a little-endian two's-complement i32. */
  i32(v: number): this {
    this.view.setInt32(this.pos, v, true);
    this.pos += 4;
    return this;
  }
  /** A u64 from a JS number (exact below 2^53). */
  u64n(v: number): this {
    this.view.setUint32(this.pos, v % 0x100000000, true);
    this.view.setUint32(this.pos + 4, Math.floor(v / 0x100000000), true);
    this.pos += 8;
    return this;
  }
  /** Appends a little-endian u64. */
  u64(v: bigint): this {
    this.view.setBigUint64(this.pos, v, true);
    this.pos += 8;
    return this;
  }
  /** Appends UTF-8 text (no length prefix); E_TOO_LARGE if it does not fit. */
  utf8(text: string): this {
    const room = this.bytes.length - this.pos;
    const written = this.bytes.write(text, this.pos, room, 'utf8');
    if (Buffer.byteLength(text, 'utf8') > room)
      throw new SurfaceLinkError('E_TOO_LARGE', 'message text exceeds the message size limit');
    this.pos += written;
    return this;
  }
  /** Finishes the message: writes its length and returns it. */
  end(): number {
    this.view.setUint32(0, this.pos, true);
    return this.pos;
  }
}

export function writeHello(w: MessageWriter, minVersion: number, maxVersion: number, info: HelloInfo): number {
  return w.begin(MessageType.HELLO, 0).u32(MAGIC).u16(minVersion).u16(maxVersion).utf8(JSON.stringify(info)).end();
}

export function writeWelcome(w: MessageWriter, version: number, info: WelcomeInfo): number {
  return w.begin(MessageType.WELCOME, 0).u32(MAGIC).u16(version).u16(0).utf8(JSON.stringify(info)).end();
}

export function writeError(w: MessageWriter, code: number, fatal: boolean, message: string): number {
  // Messages are for people; cap them so an error can always be sent.
  return w
    .begin(MessageType.ERROR, 0)
    .u32(code)
    .u32(fatal ? ERROR_FLAG_FATAL : 0)
    .utf8(message.slice(0, 1024))
    .end();
}

export function writeScanout(w: MessageWriter, s: ScanoutBody, handles: number): number {
  w.begin(MessageType.SCANOUT, handles)
    .u32(s.surfaceId)
    .u32(s.bufferId)
    .u32(s.generation)
    .u32(s.width)
    .u32(s.height)
    .u32(s.format)
    .u64(s.modifier)
    .u8(s.planes.length)
    .u8(s.orientation)
    .u16(0)
    .u32(0)
    .u32(s.visible.x)
    .u32(s.visible.y)
    .u32(s.visible.width)
    .u32(s.visible.height);
  for (const p of s.planes) w.u32(p.handleIndex).u32(p.stride).u64n(p.offset).u64n(p.size);
  return w.end();
}

/** FRAME with `count` rects taken from `damage` (count 0: whole surface); `fenced`: one sync_file attached. */
export function writeFrame(
  w: MessageWriter,
  surfaceId: number,
  bufferId: number,
  sequence: number,
  presentTimeNs: number,
  damage: readonly Rect[],
  count: number,
  fenced = false,
): number {
  w.begin(MessageType.FRAME, fenced ? 1 : 0)
    .u32(surfaceId)
    .u32(bufferId)
    .u64n(sequence)
    .u64n(presentTimeNs)
    .u32(count)
    .u32(fenced ? FRAME_FLAG_FENCE : 0);
  for (let i = 0; i < count; i++) {
    const r = damage[i];
    w.u32(r.x).u32(r.y).u32(r.width).u32(r.height);
  }
  return w.end();
}

/** RELEASE; `fenced`: a release fence (sync_file) is attached, signalled when the client's reads are done. */
export function writeRelease(
  w: MessageWriter,
  surfaceId: number,
  bufferId: number,
  sequence: number,
  fenced = false,
): number {
  return w
    .begin(MessageType.RELEASE, fenced ? 1 : 0)
    .u32(surfaceId)
    .u32(bufferId)
    .u64n(sequence)
    .end();
}

export function writeRetire(w: MessageWriter, surfaceId: number, bufferId: number): number {
  return w.begin(MessageType.RETIRE, 0).u32(surfaceId).u32(bufferId).end();
}

export function writeSurfaceGone(w: MessageWriter, surfaceId: number): number {
  return w.begin(MessageType.SURFACE_GONE, 0).u32(surfaceId).u32(0).end();
}

export function writeImportFailed(
  w: MessageWriter,
  surfaceId: number,
  bufferId: number,
  code: number,
  reason: string,
): number {
  return w
    .begin(MessageType.IMPORT_FAILED, 0)
    .u32(surfaceId)
    .u32(bufferId)
    .u32(code)
    .u32(0)
    .utf8(reason.slice(0, 1024))
    .end();
}

export function writeMechanism(w: MessageWriter, mechanism: string, reason: string): number {
  return w.begin(MessageType.MECHANISM, 0).utf8(JSON.stringify({ mechanism, reason })).end();
}

// input.v1 (docs/protocol.md §3.11–§3.17): fixed bodies, surface id first.

/** KEY: evdev key `code` of `surfaceId` went down (`pressed`) or up. */
export function writeKey(w: MessageWriter, surfaceId: number, code: number, pressed: boolean): number {
  return w
    .begin(MessageType.KEY, 0)
    .u32(surfaceId)
    .u32(code)
    .u32(pressed ? 1 : 0)
    .end();
}

/** POINTER: the pointer is at (x, y), pixels of the surface's picture (absolute mode). */
export function writePointer(w: MessageWriter, surfaceId: number, x: number, y: number): number {
  return w.begin(MessageType.POINTER, 0).u32(surfaceId).u32(x).u32(y).end();
}

/** MOTION: the pointer moved by (dx, dy) pixels (relative mode). */
export function writeMotion(w: MessageWriter, surfaceId: number, dx: number, dy: number): number {
  return w.begin(MessageType.MOTION, 0).u32(surfaceId).i32(dx).i32(dy).end();
}

/** BUTTON: evdev button `button` (BTN_LEFT 0x110 …) went down (`pressed`) or up. */
export function writeButton(w: MessageWriter, surfaceId: number, button: number, pressed: boolean): number {
  return w
    .begin(MessageType.BUTTON, 0)
    .u32(surfaceId)
    .u32(button)
    .u32(pressed ? 1 : 0)
    .end();
}

/** SCROLL: (dx, dy) wheel notches; dy > 0 scrolls down, dx > 0 right. */
export function writeScroll(w: MessageWriter, surfaceId: number, dx: number, dy: number): number {
  return w.begin(MessageType.SCROLL, 0).u32(surfaceId).i32(dx).i32(dy).end();
}

/** TOUCH: touch point `slot` in `phase` (0 down, 1 move, 2 up, 3 cancel) at (x, y). */
export function writeTouch(
  w: MessageWriter,
  surfaceId: number,
  phase: number,
  slot: number,
  x: number,
  y: number,
): number {
  return w.begin(MessageType.TOUCH, 0).u32(surfaceId).u32(phase).u32(slot).u32(x).u32(y).end();
}

/** INPUT_MODE: the surface wants absolute (0) or relative (1) pointer input. */
export function writeInputMode(w: MessageWriter, surfaceId: number, mode: number): number {
  return w.begin(MessageType.INPUT_MODE, 0).u32(surfaceId).u32(mode).end();
}

// cursor.v1 (§3.18, §3.19)

/** What a CURSOR_SHAPE says: width = height = 0 (and no handle) means the surface has no cursor image. */
export interface CursorShapeBody {
  /** The surface. */
  surfaceId: number;
  /** Bumped by every shape change (CursorState.serial). */
  serial: number;
  /** Image width in pixels (0: no image). */
  width: number;
  /** Image height in pixels (0: no image). */
  height: number;
  /** The hotspot: the image pixel that sits at the cursor position. */
  hotspotX: number;
  /** The hotspot's row. */
  hotspotY: number;
}

/** CURSOR_SHAPE; with an image (width, height ≥ 1) its memfd is the message's one handle. */
export function writeCursorShape(w: MessageWriter, s: CursorShapeBody): number {
  const image = s.width > 0 && s.height > 0;
  return w
    .begin(MessageType.CURSOR_SHAPE, image ? 1 : 0)
    .u32(s.surfaceId)
    .u32(s.serial)
    .u32(s.width)
    .u32(s.height)
    .u32(s.hotspotX)
    .u32(s.hotspotY)
    .end();
}

/** CURSOR_MOVE: the cursor's hotspot is at (x, y), pixels of the surface's picture; `visible` or hidden. */
export function writeCursorMove(w: MessageWriter, surfaceId: number, x: number, y: number, visible: boolean): number {
  return w
    .begin(MessageType.CURSOR_MOVE, 0)
    .u32(surfaceId)
    .i32(x)
    .i32(y)
    .u32(visible ? CURSOR_FLAG_VISIBLE : 0)
    .end();
}

// ---------------------------------------------------------------------------------------
// Reading: every function takes (view, start, length) of one whole message, header included.

export function messageType(view: DataView, start: number): number {
  return view.getUint16(start + 4, true);
}

export function messageHandles(view: DataView, start: number): number {
  return view.getUint8(start + 6);
}

/** Checks the header fields the transport does not: reserved flags, and the body's exact size. */
export function expectBody(
  view: DataView,
  start: number,
  length: number,
  min: number,
  exact: boolean,
  name: string,
): void {
  if (view.getUint8(start + 7) !== 0) throw malformed(`${name}: header flags must be 0`);
  const body = length - HEADER_SIZE;
  if (body < min || (exact && body !== min))
    throw malformed(`${name}: body is ${body} bytes, expected ${exact ? '' : 'at least '}${min}`);
}

function u64n(view: DataView, at: number): number {
  return view.getUint32(at, true) + view.getUint32(at + 4, true) * 0x100000000;
}

function utf8(view: DataView, from: number, to: number): string {
  return Buffer.from(view.buffer, view.byteOffset + from, to - from).toString('utf8');
}

function json(view: DataView, from: number, to: number, name: string): Record<string, unknown> {
  let value: unknown;
  try {
    value = JSON.parse(utf8(view, from, to));
  } catch {
    throw malformed(`${name}: body is not valid JSON`);
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value))
    throw malformed(`${name}: body must be a JSON object`);
  return value as Record<string, unknown>;
}

const isStr = (v: unknown): v is string => typeof v === 'string';
const isInt = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v);

function peerInfo(o: Record<string, unknown>, name: string): PeerInfo {
  const host = o.host as Record<string, unknown> | undefined;
  if (
    !isStr(o.name) ||
    !isInt(o.pid) ||
    !isStr(o.platform) ||
    typeof host !== 'object' ||
    host === null ||
    Array.isArray(host)
  )
    throw malformed(`${name}: name, pid, platform and host are required`);
  const id = (v: unknown) => (isStr(v) ? v : null);
  return {
    name: o.name.slice(0, 256),
    pid: o.pid,
    platform: o.platform.slice(0, 32),
    host: { bootId: id(host.bootId), machineId: id(host.machineId) },
  };
}

export function readHello(
  view: DataView,
  start: number,
  length: number,
): { minVersion: number; maxVersion: number; info: HelloInfo } {
  expectBody(view, start, length, BodySize.HELLO_FIXED, false, 'HELLO');
  if (view.getUint32(start + 8, true) !== MAGIC) throw malformed('HELLO: bad magic (not a surfacelink client)');
  const minVersion = view.getUint16(start + 12, true);
  const maxVersion = view.getUint16(start + 14, true);
  const o = json(view, start + 16, start + length, 'HELLO');
  const info = peerInfo(o, 'HELLO');
  if (!Array.isArray(o.mechanisms) || o.mechanisms.length === 0 || o.mechanisms.length > 16)
    throw malformed('HELLO: mechanisms must be a list of 1..16 offers');
  const seen = new Set<string>();
  const mechanisms: MechanismOffer[] = o.mechanisms.map((m: unknown) => {
    const name = (m as MechanismOffer | null)?.name;
    if (typeof m !== 'object' || m === null || !isStr(name) || name.length === 0 || name.length > MAX_MECHANISM_NAME)
      throw malformed(`HELLO: each mechanism offer needs a name of 1..${MAX_MECHANISM_NAME} characters`);
    if (seen.has(name)) throw malformed(`HELLO: mechanism ${name} is offered twice`);
    seen.add(name);
    return m as MechanismOffer;
  });
  const features = o.features === undefined ? undefined : nameList(o.features, 'HELLO: features');
  return { minVersion, maxVersion, info: { ...info, mechanisms, ...(features ? { features } : {}) } };
}

/** A list of min..16 distinct names of 1..MAX_MECHANISM_NAME characters (feature lists). */
function nameList(value: unknown, what: string, min = 1): string[] {
  if (!Array.isArray(value) || value.length < min || value.length > 16)
    throw malformed(`${what} must be a list of ${min}..16 names`);
  const seen = new Set<string>();
  for (const v of value) {
    if (!isStr(v) || v.length === 0 || v.length > MAX_MECHANISM_NAME)
      throw malformed(`${what}: each name needs 1..${MAX_MECHANISM_NAME} characters`);
    if (seen.has(v)) throw malformed(`${what}: ${v} is named twice`);
    seen.add(v);
  }
  return value as string[];
}

export function readWelcome(view: DataView, start: number, length: number): { version: number; info: WelcomeInfo } {
  expectBody(view, start, length, BodySize.WELCOME_FIXED, false, 'WELCOME');
  if (view.getUint32(start + 8, true) !== MAGIC) throw malformed('WELCOME: bad magic (not a surfacelink server)');
  const version = view.getUint16(start + 12, true);
  const o = json(view, start + 16, start + length, 'WELCOME');
  const server = peerInfo((o.server ?? {}) as Record<string, unknown>, 'WELCOME.server');
  const limits = o.limits as Record<string, unknown> | undefined;
  if (!isInt(o.clientId) || !isStr(o.mechanism) || !isStr(o.reason) || typeof limits !== 'object' || limits === null)
    throw malformed('WELCOME: clientId, mechanism, reason and limits are required');
  const limit = (v: unknown, fallback: number) => (isInt(v) && v > 0 ? v : fallback);
  let stream: StreamEndpoint | undefined;
  if (o.stream !== undefined) {
    const s = o.stream as Record<string, unknown> | null;
    if (
      typeof s !== 'object' ||
      s === null ||
      !isStr(s.wsUrl) ||
      !isStr(s.token) ||
      !isStr(s.url) ||
      !Array.isArray(s.codecs) ||
      !s.codecs.every(isStr)
    )
      throw malformed('WELCOME: stream.v1 needs stream {wsUrl, token, url, codecs}');
    stream = { wsUrl: s.wsUrl, token: s.token, url: s.url, codecs: s.codecs as string[] };
  }
  const features = o.features === undefined ? undefined : nameList(o.features, 'WELCOME: features', 0);
  const extraKeys = Object.keys(o).filter((k) => !WELCOME_KEYS.has(k));
  const extra = extraKeys.length > 0 ? Object.fromEntries(extraKeys.map((k) => [k, o[k]])) : undefined;
  return {
    version,
    info: {
      server,
      clientId: o.clientId,
      mechanism: o.mechanism,
      reason: o.reason,
      rejected: Array.isArray(o.rejected)
        ? (o.rejected as { name: string; reason: string }[]).filter((r) => isStr(r?.name) && isStr(r?.reason))
        : [],
      limits: {
        maxMessage: limit(limits.maxMessage, DEFAULT_MAX_MESSAGE),
        maxHandles: limit(limits.maxHandles, MAX_HANDLES),
        releaseTimeoutMs: limit(limits.releaseTimeoutMs, 2000),
        maxHeldFrames: limit(limits.maxHeldFrames, 1),
      },
      ...(stream ? { stream } : {}),
      ...(features ? { features } : {}),
      ...(extra ? { extra } : {}),
    },
  };
}

/** The keys of WELCOME this codec reads itself; any other is the chosen mechanism's (`WelcomeInfo.extra`). */
const WELCOME_KEYS = new Set(['server', 'clientId', 'mechanism', 'reason', 'rejected', 'limits', 'stream', 'features']);

export function readError(
  view: DataView,
  start: number,
  length: number,
): { code: number; fatal: boolean; message: string } {
  expectBody(view, start, length, BodySize.ERROR_FIXED, false, 'ERROR');
  return {
    code: view.getUint32(start + 8, true),
    fatal: (view.getUint32(start + 12, true) & ERROR_FLAG_FATAL) !== 0,
    message: utf8(view, start + 16, start + length),
  };
}

export function readScanout(view: DataView, start: number, length: number, handles: number): ScanoutBody {
  expectBody(view, start, length, BodySize.SCANOUT_FIXED, false, 'SCANOUT');
  const b = start + HEADER_SIZE;
  const planeCount = view.getUint8(b + 32);
  if (planeCount < 1 || planeCount > MAX_PLANES)
    throw malformed(`SCANOUT: plane count ${planeCount} outside 1..${MAX_PLANES}`);
  if (length - HEADER_SIZE !== BodySize.SCANOUT_FIXED + planeCount * BodySize.SCANOUT_PLANE)
    throw malformed(
      `SCANOUT: ${planeCount} planes need a body ` +
        `of ${BodySize.SCANOUT_FIXED + planeCount * BodySize.SCANOUT_PLANE} bytes, got ${length - HEADER_SIZE}`,
    );
  const planes: PlaneDescriptor[] = [];
  for (let i = 0; i < planeCount; i++) {
    const p = b + BodySize.SCANOUT_FIXED + i * BodySize.SCANOUT_PLANE;
    const plane = {
      handleIndex: view.getUint32(p, true),
      stride: view.getUint32(p + 4, true),
      offset: u64n(view, p + 8),
      size: u64n(view, p + 16),
    };
    if (plane.handleIndex >= handles)
      throw new ProtocolError(
        'E_HANDLE_COUNT',
        `SCANOUT: plane ${i} names handle ${plane.handleIndex} but ${handles} were attached`,
      );
    planes.push(plane);
  }
  return {
    surfaceId: view.getUint32(b, true),
    bufferId: view.getUint32(b + 4, true),
    generation: view.getUint32(b + 8, true),
    width: view.getUint32(b + 12, true),
    height: view.getUint32(b + 16, true),
    format: view.getUint32(b + 20, true),
    modifier: view.getBigUint64(b + 24, true),
    orientation: view.getUint8(b + 33),
    visible: {
      x: view.getUint32(b + 40, true),
      y: view.getUint32(b + 44, true),
      width: view.getUint32(b + 48, true),
      height: view.getUint32(b + 52, true),
    },
    planes,
  };
}

export function readFrame(view: DataView, start: number, length: number): FrameBody {
  expectBody(view, start, length, BodySize.FRAME_FIXED, false, 'FRAME');
  const b = start + HEADER_SIZE;
  const count = view.getUint32(b + 24, true);
  const flags = view.getUint32(b + 28, true);
  if ((flags & ~FRAME_FLAG_FENCE) !== 0) throw malformed(`FRAME: unknown flags 0x${flags.toString(16)}`);
  const fenced = (flags & FRAME_FLAG_FENCE) !== 0;
  if (fenced !== (messageHandles(view, start) === 1) || messageHandles(view, start) > 1)
    throw new ProtocolError(
      'E_HANDLE_COUNT',
      `FRAME: the fence flag says ${fenced ? 1 : 0} handle(s); ${messageHandles(view, start)} attached`,
    );
  if (count > MAX_DAMAGE_RECTS) throw malformed(`FRAME: ${count} damage rectangles; at most ${MAX_DAMAGE_RECTS}`);
  if (length - HEADER_SIZE !== BodySize.FRAME_FIXED + count * BodySize.DAMAGE_RECT)
    throw malformed('FRAME: body size does not match its damage count');
  const damage: Rect[] = new Array(count);
  for (let i = 0; i < count; i++) {
    const r = b + BodySize.FRAME_FIXED + i * BodySize.DAMAGE_RECT;
    damage[i] = {
      x: view.getUint32(r, true),
      y: view.getUint32(r + 4, true),
      width: view.getUint32(r + 8, true),
      height: view.getUint32(r + 12, true),
    };
  }
  return {
    surfaceId: view.getUint32(b, true),
    bufferId: view.getUint32(b + 4, true),
    sequence: u64n(view, b + 8),
    presentTimeNs: u64n(view, b + 16),
    fenced,
    damage,
  };
}

/** RELEASE is read field by field by the server (no allocation); this checks its shape. */
export function checkRelease(view: DataView, start: number, length: number): void {
  expectBody(view, start, length, BodySize.RELEASE, true, 'RELEASE');
}
export const releaseSurfaceId = (view: DataView, start: number): number => view.getUint32(start + 8, true);
export const releaseBufferId = (view: DataView, start: number): number => view.getUint32(start + 12, true);
export const releaseSequence = (view: DataView, start: number): number => u64n(view, start + 16);

export function readRetire(view: DataView, start: number, length: number): { surfaceId: number; bufferId: number } {
  expectBody(view, start, length, BodySize.RETIRE, true, 'RETIRE');
  return { surfaceId: view.getUint32(start + 8, true), bufferId: view.getUint32(start + 12, true) };
}

export function readSurfaceGone(view: DataView, start: number, length: number): { surfaceId: number } {
  expectBody(view, start, length, BodySize.SURFACE_GONE, true, 'SURFACE_GONE');
  return { surfaceId: view.getUint32(start + 8, true) };
}

export function readImportFailed(
  view: DataView,
  start: number,
  length: number,
): { surfaceId: number; bufferId: number; code: number; reason: string } {
  expectBody(view, start, length, BodySize.IMPORT_FAILED_FIXED, false, 'IMPORT_FAILED');
  return {
    surfaceId: view.getUint32(start + 8, true),
    bufferId: view.getUint32(start + 12, true),
    code: view.getUint32(start + 16, true),
    reason: utf8(view, start + 24, start + length),
  };
}

export function readMechanism(view: DataView, start: number, length: number): { mechanism: string; reason: string } {
  expectBody(view, start, length, 2, false, 'MECHANISM');
  const o = json(view, start + HEADER_SIZE, start + length, 'MECHANISM');
  if (!isStr(o.mechanism) || !isStr(o.reason)) throw malformed('MECHANISM: mechanism and reason are required');
  return { mechanism: o.mechanism, reason: o.reason };
}

// input.v1. The server reads these field by field (no allocation per event): `checkBody` checks the
// shape, `bodyU32` / `bodyI32` read the i-th 4-byte field of the body. The read* functions below
// return objects, for clients, tools and tests; they check the shape, not the ranges (§3.11).

/** Checks the header flags and the exact body size of a fixed-size message. */
export function checkBody(view: DataView, start: number, length: number, size: number, name: string): void {
  expectBody(view, start, length, size, true, name);
}
/** The i-th u32 of a message's body. */
export const bodyU32 = (view: DataView, start: number, i: number): number =>
  view.getUint32(start + HEADER_SIZE + 4 * i, true);
/** The i-th 4-byte field of a message's body, read as an i32. */
export const bodyI32 = (view: DataView, start: number, i: number): number =>
  view.getInt32(start + HEADER_SIZE + 4 * i, true);

export function readKey(
  view: DataView,
  start: number,
  length: number,
): { surfaceId: number; code: number; pressed: number } {
  checkBody(view, start, length, BodySize.KEY, 'KEY');
  return { surfaceId: bodyU32(view, start, 0), code: bodyU32(view, start, 1), pressed: bodyU32(view, start, 2) };
}

export function readPointer(
  view: DataView,
  start: number,
  length: number,
): { surfaceId: number; x: number; y: number } {
  checkBody(view, start, length, BodySize.POINTER, 'POINTER');
  return { surfaceId: bodyU32(view, start, 0), x: bodyU32(view, start, 1), y: bodyU32(view, start, 2) };
}

export function readMotion(
  view: DataView,
  start: number,
  length: number,
): { surfaceId: number; dx: number; dy: number } {
  checkBody(view, start, length, BodySize.MOTION, 'MOTION');
  return { surfaceId: bodyU32(view, start, 0), dx: bodyI32(view, start, 1), dy: bodyI32(view, start, 2) };
}

export function readButton(
  view: DataView,
  start: number,
  length: number,
): { surfaceId: number; button: number; pressed: number } {
  checkBody(view, start, length, BodySize.BUTTON, 'BUTTON');
  return { surfaceId: bodyU32(view, start, 0), button: bodyU32(view, start, 1), pressed: bodyU32(view, start, 2) };
}

export function readScroll(
  view: DataView,
  start: number,
  length: number,
): { surfaceId: number; dx: number; dy: number } {
  checkBody(view, start, length, BodySize.SCROLL, 'SCROLL');
  return { surfaceId: bodyU32(view, start, 0), dx: bodyI32(view, start, 1), dy: bodyI32(view, start, 2) };
}

export function readTouch(
  view: DataView,
  start: number,
  length: number,
): { surfaceId: number; phase: number; slot: number; x: number; y: number } {
  checkBody(view, start, length, BodySize.TOUCH, 'TOUCH');
  return {
    surfaceId: bodyU32(view, start, 0),
    phase: bodyU32(view, start, 1),
    slot: bodyU32(view, start, 2),
    x: bodyU32(view, start, 3),
    y: bodyU32(view, start, 4),
  };
}

/** INPUT_MODE; a mode other than 0 or 1 is E_MALFORMED. */
export function readInputMode(view: DataView, start: number, length: number): { surfaceId: number; mode: number } {
  checkBody(view, start, length, BodySize.INPUT_MODE, 'INPUT_MODE');
  const mode = bodyU32(view, start, 1);
  if (mode > 1) throw malformed(`INPUT_MODE: mode ${mode} is neither absolute (0) nor relative (1)`);
  return { surfaceId: bodyU32(view, start, 0), mode };
}

/**
 * CURSOR_SHAPE: the shape only (the receiver checks the sizes and the memfd). `handles` must be 1
 * with an image and 0 without one (E_HANDLE_COUNT).
 */
export function readCursorShape(view: DataView, start: number, length: number): CursorShapeBody {
  checkBody(view, start, length, BodySize.CURSOR_SHAPE, 'CURSOR_SHAPE');
  const s: CursorShapeBody = {
    surfaceId: bodyU32(view, start, 0),
    serial: bodyU32(view, start, 1),
    width: bodyU32(view, start, 2),
    height: bodyU32(view, start, 3),
    hotspotX: bodyU32(view, start, 4),
    hotspotY: bodyU32(view, start, 5),
  };
  const image = s.width > 0 || s.height > 0;
  if (messageHandles(view, start) !== (image ? 1 : 0))
    throw new ProtocolError(
      'E_HANDLE_COUNT',
      `CURSOR_SHAPE: ${image ? 'an image needs its memfd as the one handle' : 'no image, so no handle'}; ` +
        `${messageHandles(view, start)} attached`,
    );
  return s;
}

/** CURSOR_MOVE; unknown flag bits are E_MALFORMED. */
export function readCursorMove(
  view: DataView,
  start: number,
  length: number,
): { surfaceId: number; x: number; y: number; visible: boolean } {
  checkBody(view, start, length, BodySize.CURSOR_MOVE, 'CURSOR_MOVE');
  const flags = bodyU32(view, start, 3);
  if ((flags & ~CURSOR_FLAG_VISIBLE) !== 0) throw malformed(`CURSOR_MOVE: unknown flags 0x${flags.toString(16)}`);
  return {
    surfaceId: bodyU32(view, start, 0),
    x: bodyI32(view, start, 1),
    y: bodyI32(view, start, 2),
    visible: (flags & CURSOR_FLAG_VISIBLE) !== 0,
  };
}
