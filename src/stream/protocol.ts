/**
 * The stream protocol's constants and its binary frame header (docs/remote.md §3–§4), shared
 * by the server, the Node client and the tile codec. JSON messages are plain objects; what a
 * client sends is validated here before the server looks at it.
 */
import { SurfaceLinkError, type ErrorCodeName } from '../errors.js';
import { monotonicNs } from '../host.js';
import type { ViewerStats } from './types.js';
import {
  BUTTON_MAX,
  BUTTON_MIN,
  KEY_CODE_MAX,
  MAX_MOTION,
  MAX_SCROLL,
  MAX_TOUCH_SLOTS,
} from '../protocol/constants.js';

/** The WebSocket subprotocol; an upgrade that does not offer it is refused. */
export const SUBPROTOCOL = 'surfacelink.stream.v1';
export const STREAM_VERSION = 1;
export const STREAM_PATH = '/stream';

/** Bytes of the header in front of every binary frame. */
export const FRAME_HEADER_SIZE = 32;
export const FrameKind = { H264: 1, TILES: 2 } as const;
/** Header flag: an H.264 IDR access unit, or a tile frame that covers the whole surface. */
export const FLAG_KEYFRAME = 1;

/** Largest text message a client may send. */
export const MAX_CLIENT_MESSAGE = 64 * 1024;
/** Over this many bytes queued on a socket, frames are not sent to that client. */
export const MAX_BUFFERED_BYTES = 4 * 1024 * 1024;
/** A connection that has not sent its hello by then is closed (E_TIMEOUT): short, as it has proven nothing yet. */
export const HELLO_TIMEOUT_MS = 2000;
/** Connections still waiting for their hello, per remote address (IPv6: per /64); beyond, upgrades get 429. */
export const MAX_PENDING_PER_ADDRESS = 8;
/** Connections still waiting for their hello, all addresses; beyond, the upgrade is refused 503. */
export const MAX_PENDING = 64;
/** `hello.maxFps` is clamped to this range (docs/remote.md §3). */
export const FPS_RANGE = { min: 1, max: 240 } as const;
/** `hello.maxBitrateKbps` is clamped to this range, in kbit/s (docs/remote.md §3). */
export const BITRATE_KBPS_RANGE = { min: 100, max: 1_000_000 } as const;
/** The longest timer the server arms for a client; a longer wait is re-checked when it fires. */
export const MAX_TIMER_MS = 1000;

/** A delay computed from a client's numbers, made safe for setTimeout: 0…MAX_TIMER_MS whole milliseconds. */
export function timerDelay(ms: number): number {
  return Number.isFinite(ms) ? Math.min(MAX_TIMER_MS, Math.max(0, Math.ceil(ms))) : MAX_TIMER_MS;
}
/** A client with frames in flight that has not acked for this long is disconnected. */
export const ACK_TIMEOUT_MS = 10_000;
/** Messages per second a client may send (a burst of as many is allowed); more is E_LIMIT. */
export const MAX_MESSAGE_RATE = 1000;

// Input (docs/remote.md §3.1) uses the core's input.v1 ranges (KEY_CODE_MAX, BUTTON_MIN…, imported above),
// so what passes here passes SurfaceServer.dispatchInput.
/** Largest coordinate a pointer or touch message may carry (the picture's size is checked after). */
export const MAX_COORDINATE = 65535;

/**
 * How frames travel to a remote viewer: 'h264' (GStreamer encoder, lossy) or 'tiles' (lossless,
 * zlib-compressed changed tiles).
 */
export type Codec = 'h264' | 'tiles';
export const CODECS: readonly Codec[] = ['h264', 'tiles'];

/** WebSocket close codes (4000–4999 are the application's). */
export const CloseCode = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  MALFORMED: 4400,
  AUTH: 4401,
  NO_SURFACE: 4404,
  NO_CODEC: 4406,
  ACK_TIMEOUT: 4408,
  /** Too many messages: over the per-client rate cap; or no viewer slot left at hello (E_LIMIT). */
  LIMIT: 4429,
  ENCODER: 4500,
} as const;

/** The close code that goes with an error code sent in an `error` message. */
export function closeCodeFor(code: ErrorCodeName): number {
  switch (code) {
    case 'E_AUTH':
      return CloseCode.AUTH;
    case 'E_NO_MECHANISM':
      return CloseCode.NO_CODEC;
    case 'E_RELEASE_TIMEOUT':
    case 'E_TIMEOUT':
      return CloseCode.ACK_TIMEOUT;
    case 'E_SHUTDOWN':
      return CloseCode.GOING_AWAY;
    case 'E_ENCODER':
      return CloseCode.ENCODER;
    case 'E_LIMIT':
      return CloseCode.LIMIT;
    default:
      return CloseCode.MALFORMED;
  }
}

/** Milliseconds on the server's clock (CLOCK_MONOTONIC; the clock FRAME timestamps use). */
export function clockMs(): number {
  return monotonicNs() / 1e6;
}

// ---- binary frame header ----------------------------------------------------------------

export interface FrameHeader {
  kind: number;
  flags: number;
  sequence: number;
  presentMs: number;
  sendMs: number;
  width: number;
  height: number;
}

export function writeFrameHeader(
  out: Buffer,
  kind: number,
  flags: number,
  sequence: number,
  presentMs: number,
  width: number,
  height: number,
): void {
  out[0] = kind;
  out[1] = flags;
  out.writeUInt16LE(0, 2);
  out.writeUInt32LE(sequence >>> 0, 4);
  out.writeDoubleLE(presentMs, 8);
  out.writeDoubleLE(0, 16);
  out.writeUInt32LE(width, 24);
  out.writeUInt32LE(height, 28);
}

/** Stamps the header's sendMs: the moment the frame is handed to the socket. */
export function stampSendMs(out: Buffer, sendMs: number): void {
  out.writeDoubleLE(sendMs, 16);
}

/** Reads a frame header into `into` (reused by the caller); throws E_MALFORMED on a bad one. */
export function readFrameHeader(data: Uint8Array, into: FrameHeader): FrameHeader {
  if (data.byteLength < FRAME_HEADER_SIZE)
    throw new SurfaceLinkError('E_TRUNCATED', `a frame is at least ${FRAME_HEADER_SIZE} bytes; got ${data.byteLength}`);
  const v = new DataView(data.buffer, data.byteOffset, data.byteLength);
  into.kind = v.getUint8(0);
  into.flags = v.getUint8(1);
  into.sequence = v.getUint32(4, true);
  into.presentMs = v.getFloat64(8, true);
  into.sendMs = v.getFloat64(16, true);
  into.width = v.getUint32(24, true);
  into.height = v.getUint32(28, true);
  if (into.kind !== FrameKind.H264 && into.kind !== FrameKind.TILES)
    throw new SurfaceLinkError('E_MALFORMED', `unknown frame kind ${into.kind}`);
  return into;
}

// ---- client → server messages -----------------------------------------------------------

export interface HelloMessage {
  type: 'hello';
  token: string;
  name: string;
  codecs: string[];
  surface?: number;
  maxFps?: number;
  maxBitrateKbps?: number;
}

/** Input from a viewer, validated for shape and range; coordinates are the picture's pixels (top row first). */
export type InputMessage =
  | { type: 'key'; code: number; pressed: boolean }
  | { type: 'pointer'; x: number; y: number }
  | { type: 'motion'; dx: number; dy: number }
  | { type: 'button'; button: number; pressed: boolean }
  | { type: 'scroll'; dx: number; dy: number }
  | { type: 'touch'; phase: 'down' | 'move' | 'up' | 'cancel'; slot: number; x: number; y: number };

export type ClientMessage =
  | HelloMessage
  | InputMessage
  | { type: 'ack'; seq: number; decodedMs?: number }
  | { type: 'keyframe' }
  | { type: 'ping'; t: number }
  | ({ type: 'stats' } & ViewerStats);

/** The message types that carry input (refused for view-only viewers). */
export const INPUT_TYPES: ReadonlySet<string> = new Set(['key', 'pointer', 'motion', 'button', 'scroll', 'touch']);
const TOUCH_PHASES: ReadonlySet<string> = new Set(['down', 'move', 'up', 'cancel']);

const malformed = (message: string): SurfaceLinkError => new SurfaceLinkError('E_MALFORMED', message);

/** An optional positive rate, clamped to `range`; anything but a finite number > 0 is E_MALFORMED. */
function optionalRate(
  o: Record<string, unknown>,
  key: string,
  range: { readonly min: number; readonly max: number },
): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0)
    throw malformed(`${key} must be a positive number (it is clamped to ${range.min}…${range.max})`);
  return Math.min(range.max, Math.max(range.min, v));
}

function integerIn(o: Record<string, unknown>, key: string, min: number, max: number, what: string): number {
  const v = o[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
    throw malformed(`${o.type} needs ${key}, ${what}`);
  return v;
}

function flag(o: Record<string, unknown>, key: string): boolean {
  const v = o[key];
  if (typeof v !== 'boolean') throw malformed(`${o.type} needs ${key}, true or false`);
  return v;
}

function optionalFinite(o: Record<string, unknown>, key: string): number | undefined {
  const v = o[key];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isFinite(v)) throw malformed(`${key} must be a finite number`);
  return v;
}

/**
 * Names a client's `type` for an error message without converting it: `String()` of a JSON object
 * whose own `toString` is not a function throws (`{"type":{"toString":false}}`, found by the codec
 * fuzzer), and anything else a client chose is quoted and cut to 40 characters.
 */
function describeType(type: unknown): string {
  if (typeof type === 'string') return JSON.stringify(type).slice(0, 40);
  if (type === undefined) return '(none)';
  if (type === null) return 'null';
  if (Array.isArray(type)) return '(an array)';
  return typeof type === 'object' ? '(an object)' : `(a ${typeof type})`;
}

/**
 * Parses and validates one text message from a client. Throws E_TOO_LARGE, E_MALFORMED or
 * E_UNKNOWN_TYPE; never returns something the server would have to check again.
 */
export function parseClientMessage(text: string | Buffer, byteLength: number): ClientMessage {
  if (byteLength > MAX_CLIENT_MESSAGE)
    throw new SurfaceLinkError(
      'E_TOO_LARGE',
      `a client message is at most ${MAX_CLIENT_MESSAGE} bytes; got ${byteLength}`,
    );
  let value: unknown;
  try {
    value = JSON.parse(typeof text === 'string' ? text : text.toString('utf8'));
  } catch {
    throw malformed('a message must be JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw malformed('a message must be a JSON object');
  const o = value as Record<string, unknown>;
  switch (o.type) {
    case 'hello': {
      if (typeof o.token !== 'string' || o.token.length > 1024)
        throw new SurfaceLinkError('E_AUTH', 'hello carries no token');
      const name = o.name === undefined ? '' : o.name;
      if (typeof name !== 'string' || name.length > 64)
        throw malformed('name must be a string of at most 64 characters');
      if (
        !Array.isArray(o.codecs) ||
        o.codecs.length === 0 ||
        o.codecs.length > 16 ||
        !o.codecs.every((c) => typeof c === 'string' && c.length <= 32)
      )
        throw malformed('codecs must be a non-empty array of codec names');
      let surface: number | undefined;
      if (o.surface !== undefined) {
        if (typeof o.surface !== 'number' || !Number.isInteger(o.surface) || o.surface < 0)
          throw malformed('surface must be a surface id');
        surface = o.surface;
      }
      return {
        type: 'hello',
        token: o.token,
        name,
        codecs: o.codecs as string[],
        surface,
        maxFps: optionalRate(o, 'maxFps', FPS_RANGE),
        maxBitrateKbps: optionalRate(o, 'maxBitrateKbps', BITRATE_KBPS_RANGE),
      };
    }
    case 'ack': {
      if (typeof o.seq !== 'number' || !Number.isInteger(o.seq) || o.seq < 0 || o.seq > 0xffffffff)
        throw malformed('ack needs seq, a frame sequence');
      return { type: 'ack', seq: o.seq, decodedMs: optionalFinite(o, 'decodedMs') };
    }
    case 'keyframe':
      return { type: 'keyframe' };
    case 'key':
      return {
        type: 'key',
        code: integerIn(o, 'code', 1, KEY_CODE_MAX, `an evdev key code from 1 to ${KEY_CODE_MAX}`),
        pressed: flag(o, 'pressed'),
      };
    case 'button':
      return {
        type: 'button',
        button: integerIn(
          o,
          'button',
          BUTTON_MIN,
          BUTTON_MAX,
          `an evdev BTN_* code from ${BUTTON_MIN} to ${BUTTON_MAX}`,
        ),
        pressed: flag(o, 'pressed'),
      };
    case 'pointer':
      return {
        type: 'pointer',
        x: integerIn(o, 'x', 0, MAX_COORDINATE, 'a pixel column'),
        y: integerIn(o, 'y', 0, MAX_COORDINATE, 'a pixel row'),
      };
    case 'motion':
      return {
        type: 'motion',
        dx: integerIn(o, 'dx', -MAX_MOTION, MAX_MOTION, `whole pixels from -${MAX_MOTION} to ${MAX_MOTION}`),
        dy: integerIn(o, 'dy', -MAX_MOTION, MAX_MOTION, `whole pixels from -${MAX_MOTION} to ${MAX_MOTION}`),
      };
    case 'scroll':
      return {
        type: 'scroll',
        dx: integerIn(o, 'dx', -MAX_SCROLL, MAX_SCROLL, `whole notches from -${MAX_SCROLL} to ${MAX_SCROLL}`),
        dy: integerIn(o, 'dy', -MAX_SCROLL, MAX_SCROLL, `whole notches from -${MAX_SCROLL} to ${MAX_SCROLL}`),
      };
    case 'touch': {
      if (typeof o.phase !== 'string' || !TOUCH_PHASES.has(o.phase))
        throw malformed('touch needs phase, one of down, move, up, cancel');
      return {
        type: 'touch',
        phase: o.phase as 'down' | 'move' | 'up' | 'cancel',
        slot: integerIn(o, 'slot', 0, MAX_TOUCH_SLOTS - 1, `a touch slot from 0 to ${MAX_TOUCH_SLOTS - 1}`),
        x: integerIn(o, 'x', 0, MAX_COORDINATE, 'a pixel column'),
        y: integerIn(o, 'y', 0, MAX_COORDINATE, 'a pixel row'),
      };
    }
    case 'ping': {
      const t = optionalFinite(o, 't');
      if (t === undefined) throw malformed('ping needs t, a number');
      return { type: 'ping', t };
    }
    case 'stats':
      return {
        type: 'stats',
        fps: optionalFinite(o, 'fps'),
        latencyP50Ms: optionalFinite(o, 'latencyP50Ms'),
        latencyP99Ms: optionalFinite(o, 'latencyP99Ms'),
        decoded: optionalFinite(o, 'decoded'),
        errors: optionalFinite(o, 'errors'),
        transitP50Ms: optionalFinite(o, 'transitP50Ms'),
        decodeP50Ms: optionalFinite(o, 'decodeP50Ms'),
        paintP50Ms: optionalFinite(o, 'paintP50Ms'),
      };
    default:
      throw new SurfaceLinkError('E_UNKNOWN_TYPE', `unknown message type ${describeType(o.type)}`);
  }
}
