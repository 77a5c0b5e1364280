/**
 * Structured generation of client → server traffic for the unix protocol (docs/protocol.md §2–§3):
 * valid messages written with the codec's own writers (src/protocol/codec.ts), then mutated at the
 * byte level (bit flips, length and count fields that lie, truncation, splicing, type swaps,
 * duplicated and reordered messages, handle counts that lie, fds of every kind attached) and cut
 * into sendmsg() calls at random points. Everything is derived from one seed.
 */
import {
  MessageWriter,
  writeButton,
  writeCursorMove,
  writeCursorShape,
  writeError,
  writeFrame,
  writeHello,
  writeImportFailed,
  writeInputMode,
  writeKey,
  writeMechanism,
  writeMotion,
  writePointer,
  writeRelease,
  writeRetire,
  writeScanout,
  writeScroll,
  writeSurfaceGone,
  writeTouch,
  writeWelcome,
  type HelloInfo,
} from '../../../src/protocol/codec.js';
import { MessageType } from '../../../src/protocol/constants.js';
import { ErrorCode } from '../../../src/errors.js';
import { FD_KINDS, type FdKind } from './fds.js';
import { FUZZ_SURFACES, NO_INPUT_PREFIX } from './layout.js';
import { Rng } from './rng.js';

/** One sendmsg(): bytes, and the fds attached to its first byte. */
export interface Send {
  bytes: Buffer;
  fds: FdKind[];
  /** Whether, as generated, the stream is at a message boundary after this send. */
  boundary: boolean;
  /** Yield to the event loop (and so let the server read) before this send. */
  yieldBefore: boolean;
}

/** How the session answers the FRAMEs it receives (RELEASE echoes). */
export interface Reaction {
  /** Probability that a FRAME is answered at all (else the frame is held). */
  release: number;
  /** Probability that an answer is mutated (a field off by one, surface 0, a second RELEASE, …). */
  mutate: number;
  /** Probability that an answer carries an fd (as a "release fence" that is not a sync_file). */
  fence: number;
}

export interface SessionPlan {
  seed: number;
  sends: Send[];
  reaction: Reaction;
  /** How long to keep answering FRAMEs after the last planned send, in ms. */
  lingerMs: number;
  /** Close with half a message still unsent (the server sees E_TRUNCATED). */
  closeMidMessage: boolean;
  /** What was generated, for people (corpus files, failure reports). */
  notes: string[];
}

interface Msg {
  bytes: Buffer;
  fds: FdKind[];
  note: string;
}

const writer = new MessageWriter(70000);
const take = (n: number): Buffer => Buffer.from(writer.bytes.subarray(0, n));

const SERVER_TYPES = [
  MessageType.WELCOME,
  MessageType.SCANOUT,
  MessageType.FRAME,
  MessageType.RETIRE,
  MessageType.SURFACE_GONE,
  MessageType.MECHANISM,
  MessageType.INPUT_MODE,
  MessageType.CURSOR_SHAPE,
  MessageType.CURSOR_MOVE,
];
const ALL_TYPES = [
  MessageType.HELLO,
  MessageType.ERROR,
  MessageType.RELEASE,
  MessageType.IMPORT_FAILED,
  MessageType.KEY,
  MessageType.POINTER,
  MessageType.MOTION,
  MessageType.BUTTON,
  MessageType.SCROLL,
  MessageType.TOUCH,
  ...SERVER_TYPES,
];
const UNKNOWN_TYPES = [0x00, 0x04, 0x0f, 0x15, 0x22, 0x2f, 0x37, 0x42, 0x100, 0x1201, 0xffff];

const MECHANISM_NAMES = ['shm.v1', 'stream.v1', 'dmabuf.v1', 'iosurface.v1', 'winshm.v1', 'nope.v9', 'x'.repeat(65)];
const FEATURE_NAMES = ['frames.v1', 'input.v1', 'cursor.v1', 'later.v2'];
const CODES = Object.values(ErrorCode);

function surfaceId(rng: Rng, hostile: boolean): number {
  if (!hostile)
    return rng.weighted([
      [90, FUZZ_SURFACES.live.id],
      [6, FUZZ_SURFACES.idle.id],
      [4, FUZZ_SURFACES.gone.id],
    ] as const);
  return rng.weighted<() => number>([
    [4, () => 0],
    [4, () => 4],
    [3, () => rng.edgeU32()],
  ])();
}

function text(rng: Rng, max: number): string {
  return rng.weighted<() => string>([
    [5, () => 'fuzz'],
    [2, () => ''],
    [2, () => 'é€😀'.repeat(rng.int(max / 4 + 1))],
    [1, () => 'x'.repeat(rng.int(max + 1))],
    [1, () => String.fromCharCode(...Array.from({ length: rng.int(32) }, () => rng.int(0x10000)))],
  ])();
}

/** A HELLO's JSON, valid unless `break_` (then one field is wrong in a way §3.1 rejects). */
export function helloInfo(rng: Rng, tag: string, break_: boolean): Record<string, unknown> {
  const offers = [...MECHANISM_NAMES.slice(0, 6)];
  const count = rng.weighted([
    [6, 1],
    [3, 2],
    [1, 3],
  ] as const);
  const mechanisms: Record<string, unknown>[] = [];
  const first = rng.weighted([
    [80, 'shm.v1'],
    [10, 'stream.v1'],
    [10, rng.pick(offers)],
  ] as const);
  for (const name of [first, ...Array.from({ length: count - 1 }, () => rng.pick(offers))]) {
    if (mechanisms.some((m) => m.name === name)) continue;
    mechanisms.push(
      name === 'dmabuf.v1'
        ? { name, formats: [{ format: 'XR24', modifiers: ['0x0'] }], device: null }
        : rng.chance(0.1)
          ? { name, extra: rng.int(5) }
          : { name },
    );
  }
  const info: Record<string, unknown> = {
    name: rng.chance(0.1) ? `${NO_INPUT_PREFIX}-${tag}` : rng.chance(0.05) ? text(rng, 300) : tag,
    pid: rng.chance(0.9) ? process.pid : rng.pick([0, -1, 2 ** 53 - 1]),
    platform: rng.chance(0.95) ? 'linux' : text(rng, 40),
    host: rng.weighted<() => unknown>([
      [85, () => ({ bootId: null, machineId: null })],
      [5, () => ({ bootId: 5, machineId: [] })],
      [5, () => ({})],
      [5, () => ({ bootId: 'another-host-boot-id', machineId: null })],
    ])(),
    mechanisms,
  };
  if (rng.chance(0.6)) {
    const features: string[] = [];
    for (const f of FEATURE_NAMES) if (rng.chance(0.5)) features.push(f);
    if (features.length === 0) features.push('frames.v1');
    for (let i = features.length - 1; i > 0; i--) {
      const j = rng.int(i + 1);
      [features[i], features[j]] = [features[j], features[i]];
    }
    info.features = features;
  }
  if (rng.chance(0.1)) info.unknownKey = { nested: [1, 2, 3] };
  if (!break_) return info;
  const breaks: [number, () => void][] = [
    [2, () => delete info[rng.pick(['name', 'pid', 'platform', 'host', 'mechanisms'])]],
    [1, () => (info.name = rng.pick([1, null, [], {}]))],
    [1, () => (info.pid = rng.pick([1.5, '42', true, null, 2 ** 53, 1e300]))],
    [1, () => (info.platform = rng.pick([0, null, {}]))],
    [1, () => (info.host = rng.pick([null, 'h', 0, []]))],
    [1, () => (info.mechanisms = rng.pick([[], null, {}, 'shm.v1', [null], [1], ['shm.v1']]))],
    [1, () => (info.mechanisms = Array.from({ length: 17 }, (_, i) => ({ name: `m${i}.v1` })))],
    [1, () => (info.mechanisms = [{ name: 'shm.v1' }, { name: 'shm.v1' }])],
    [1, () => (info.mechanisms = [{ name: '' }])],
    [1, () => (info.mechanisms = [{ name: MECHANISM_NAMES[6] }])],
    [1, () => (info.mechanisms = [{ name: 7 }])],
    [1, () => (info.features = rng.pick([null, [], 'frames.v1', [1], [''], ['frames.v1', 'frames.v1']]))],
    [1, () => (info.features = Array.from({ length: 17 }, (_, i) => `f${i}.v1`))],
    [1, () => (info.features = ['y'.repeat(65)])],
  ];
  rng.weighted(breaks)();
  return info;
}

function hello(rng: Rng, tag: string): Msg {
  const kind = rng.weighted([
    [80, 'valid'],
    [10, 'bad-json-field'],
    [3, 'version'],
    [3, 'not-json'],
    [2, 'not-object'],
    [2, 'bad-magic'],
  ] as const);
  const info = helloInfo(rng, tag, kind === 'bad-json-field');
  let [min, max] = [1, 1];
  if (kind === 'version')
    [min, max] = rng.pick([
      [0, 0],
      [2, 3],
      [0, 1],
      [1, 5],
      [3, 1],
      [65535, 65535],
    ] as const);
  const n = writeHello(writer, min, max, info as unknown as HelloInfo);
  const bytes = take(n);
  if (kind === 'not-json' || kind === 'not-object') {
    const body =
      kind === 'not-json'
        ? rng.pick(['{', '', '{"name":', 'nul', '\u0000', '{"a":1}}'])
        : rng.pick(['[]', 'null', '"s"', '42', 'true']);
    const out = Buffer.concat([bytes.subarray(0, 16), Buffer.from(body)]);
    out.writeUInt32LE(out.length, 0);
    return { bytes: out, fds: [], note: `HELLO ${kind} ${JSON.stringify(body)}` };
  }
  if (kind === 'bad-magic') bytes.writeUInt32LE(rng.pick([0, 0x4b4e4c54, 0x534c4e4b]), 8);
  return { bytes, fds: [], note: `HELLO ${kind} v${min}..${max}` };
}

/** One message: benign (taken, ignored or warned about, never fatal) unless `hostile`. */
function message(rng: Rng, tag: string, valid = false): Msg {
  if (valid) return validInput(rng);
  return rng.chance(0.97) ? benign(rng) : hostile(rng, tag);
}

/** Input of every kind to every surface, positions sometimes outside the picture; RELEASEs that are ignored. */
function benign(rng: Rng): Msg {
  const live = FUZZ_SURFACES.live;
  const sid = surfaceId(rng, false);
  const pos = (max: number): number => (rng.chance(0.97) ? rng.int(max) : rng.pick([max, max + 1, 0xffffffff]));
  const kind = rng.weighted([
    [14, 'KEY'],
    [14, 'POINTER'],
    [6, 'MOTION'],
    [8, 'BUTTON'],
    [6, 'SCROLL'],
    [8, 'TOUCH'],
    [1, 'RELEASE'],
    [1, 'ERROR'],
  ] as const);
  let n = 0;
  switch (kind) {
    case 'KEY':
      n = writeKey(writer, sid, rng.chance(0.9) ? rng.range(1, 40) : rng.pick([1, 0x2ff]), rng.chance(0.5));
      break;
    case 'POINTER':
      n = writePointer(writer, sid, pos(live.width), pos(live.height));
      break;
    case 'MOTION':
      n = writeMotion(writer, sid, rng.pick([rng.range(-9, 9), 16384, -16384]), rng.range(-9, 9));
      break;
    case 'BUTTON':
      n = writeButton(writer, sid, rng.range(0x110, 0x117), rng.chance(0.5));
      break;
    case 'SCROLL':
      n = writeScroll(writer, sid, rng.pick([0, 1, -1, 1024, -1024]), rng.range(-3, 3));
      break;
    case 'TOUCH':
      n = writeTouch(writer, sid, rng.int(4), rng.int(16), pos(live.width), pos(live.height));
      break;
    case 'RELEASE':
      // A surface no client has state for (never presented, or closed): ignored (§3.6 step 2).
      n = writeRelease(writer, rng.pick([FUZZ_SURFACES.idle.id, FUZZ_SURFACES.gone.id]), rng.int(9), rng.int(99));
      break;
    case 'ERROR':
      n = writeError(writer, rng.pick(CODES), false, text(rng, 300));
      break;
  }
  return { bytes: take(n), fds: [], note: kind };
}

function inRange(rng: Rng, lo: number, hi: number, edges: number[]): number {
  return rng.chance(0.5) ? rng.range(lo, hi) : rng.pick(edges);
}

/** One message that the spec makes fatal, or nearly: out of range, bad surface, wrong type, wrong time. */
function hostile(rng: Rng, tag: string): Msg {
  const live = FUZZ_SURFACES.live;
  const surface = (): number => (rng.chance(0.5) ? live.id : surfaceId(rng, true));
  const kind = rng.weighted([
    [6, 'KEY'],
    [4, 'POINTER'],
    [4, 'MOTION'],
    [4, 'BUTTON'],
    [4, 'SCROLL'],
    [4, 'TOUCH'],
    [6, 'RELEASE'],
    [3, 'IMPORT_FAILED'],
    [4, 'ERROR'],
    [6, 'SERVER'],
    [4, 'UNKNOWN'],
    [2, 'HELLO'],
  ] as const);
  let n = 0;
  switch (kind) {
    case 'KEY':
      n = writeKey(writer, surface(), inRange(rng, 1, 0x2ff, [0, 0x300, 0xffffffff]), rng.chance(0.5));
      if (rng.chance(0.3)) writer.bytes.writeUInt32LE(rng.pick([2, 0xffffffff]), 16);
      break;
    case 'POINTER':
      n = writePointer(writer, surface(), rng.edgeU32(), rng.edgeU32());
      break;
    case 'MOTION':
      n = writeMotion(
        writer,
        surface(),
        inRange(rng, -16384, 16384, [16385, -16385, 2 ** 31 - 1, -(2 ** 31)]),
        inRange(rng, -50, 50, [16385, -16385]),
      );
      break;
    case 'BUTTON':
      n = writeButton(writer, surface(), inRange(rng, 0x110, 0x117, [0x10f, 0x118, 0]), rng.chance(0.5));
      if (rng.chance(0.3)) writer.bytes.writeUInt32LE(rng.pick([2, 0xffffffff]), 16);
      break;
    case 'SCROLL':
      n = writeScroll(writer, surface(), inRange(rng, -1024, 1024, [1025, -1025]), inRange(rng, -3, 3, [4096]));
      break;
    case 'TOUCH':
      n = writeTouch(
        writer,
        surface(),
        inRange(rng, 0, 3, [4, 0xffffffff]),
        inRange(rng, 0, 15, [16, 0xffffffff]),
        rng.edgeU32(),
        rng.edgeU32(),
      );
      break;
    case 'RELEASE':
      // Values no FRAME carries (sequence 0 or beyond 2^40): never a real release by accident.
      n = writeRelease(writer, surface(), rng.edgeU32(), rng.chance(0.5) ? 0 : 2 ** 40 + rng.int(1 << 20));
      break;
    case 'IMPORT_FAILED':
      n = writeImportFailed(writer, surface(), rng.int(8), rng.pick(CODES), text(rng, 1100));
      break;
    case 'ERROR':
      n = writeError(writer, rng.chance(0.8) ? rng.pick(CODES) : rng.edgeU32(), rng.chance(0.5), text(rng, 1100));
      if (rng.chance(0.1)) writer.bytes.writeUInt32LE((rng.edgeU32() & ~1) >>> 0, 12);
      break;
    case 'SERVER':
      n = serverMessage(rng);
      break;
    case 'UNKNOWN':
      n = writer.begin(rng.pick(UNKNOWN_TYPES), 0).u32(rng.edgeU32()).u32(rng.edgeU32()).end();
      break;
    case 'HELLO':
      return { ...hello(rng, tag), note: 'second HELLO' };
  }
  return { bytes: take(n), fds: [], note: `hostile ${kind}` };
}

/** An input message every server must take (surface 1, values in range, inside the picture). */
function validInput(rng: Rng): Msg {
  const live = FUZZ_SURFACES.live;
  const id = live.id;
  const n = rng.weighted<() => number>([
    [3, () => writeKey(writer, id, rng.range(1, 0x2ff), rng.chance(0.5))],
    [3, () => writePointer(writer, id, rng.int(live.width), rng.int(live.height))],
    [2, () => writeButton(writer, id, rng.range(0x110, 0x117), rng.chance(0.5))],
    [2, () => writeScroll(writer, id, rng.range(-1024, 1024), rng.range(-1024, 1024))],
    [2, () => writeTouch(writer, id, rng.int(4), rng.int(16), rng.int(live.width), rng.int(live.height))],
  ])();
  return { bytes: take(n), fds: [], note: 'valid input' };
}

function serverMessage(rng: Rng): number {
  switch (rng.pick(SERVER_TYPES)) {
    case MessageType.WELCOME:
      return writeWelcome(writer, 1, {
        server: { name: 's', pid: 1, platform: 'linux', host: { bootId: null, machineId: null } },
        clientId: 1,
        mechanism: 'shm.v1',
        reason: 'r',
        rejected: [],
        limits: { maxMessage: 65536, maxHandles: 8, releaseTimeoutMs: 2000, maxHeldFrames: 1 },
      });
    case MessageType.SCANOUT:
      return writeScanout(
        writer,
        {
          surfaceId: 1,
          bufferId: 1,
          generation: 1,
          width: 64,
          height: 48,
          format: 0x34325258,
          modifier: 0n,
          orientation: 0,
          visible: { x: 0, y: 0, width: 64, height: 48 },
          planes: [{ handleIndex: 0, stride: 256, offset: 0, size: 256 * 48 }],
        },
        0,
      );
    case MessageType.FRAME:
      return writeFrame(writer, 1, 1, 1, 0, [{ x: 0, y: 0, width: 1, height: 1 }], 1);
    case MessageType.RETIRE:
      return writeRetire(writer, 1, 1);
    case MessageType.SURFACE_GONE:
      return writeSurfaceGone(writer, 1);
    case MessageType.MECHANISM:
      return writeMechanism(writer, 'shm.v1', 'r');
    case MessageType.INPUT_MODE:
      return writeInputMode(writer, 1, rng.int(3));
    case MessageType.CURSOR_SHAPE:
      return writeCursorShape(writer, { surfaceId: 1, serial: 1, width: 0, height: 0, hotspotX: 0, hotspotY: 0 });
    default:
      return writeCursorMove(writer, 1, 0, 0, true);
  }
}

/** One byte-level mutation of `m` (and maybe of its neighbour `next`), in place; returns what it did. */
function mutate(rng: Rng, list: Msg[], i: number): string {
  const m = list[i];
  const b = m.bytes;
  const kind = rng.weighted([
    [6, 'bitflip'],
    [5, 'length'],
    [4, 'truncate'],
    [3, 'splice'],
    [6, 'type'],
    [3, 'flags'],
    [6, 'handles'],
    [8, 'fds'],
    [3, 'duplicate'],
    [3, 'reorder'],
    [2, 'pad'],
    [2, 'huge'],
  ] as const);
  switch (kind) {
    case 'bitflip': {
      const flips = rng.range(1, 4);
      for (let k = 0; k < flips; k++) {
        const at = rng.chance(0.3) ? rng.int(Math.min(8, b.length)) : rng.int(b.length);
        b[at] ^= 1 << rng.int(8);
      }
      return `bitflip×${flips}`;
    }
    case 'length': {
      const v = rng.pick([0, 1, 7, 8, b.length - 1, b.length + 1, b.length + 8, 65536, 65537, 0xffffffff]);
      if (b.length >= 4) b.writeUInt32LE(Math.max(0, v) >>> 0, 0);
      return `length=${v}`;
    }
    case 'truncate':
      m.bytes = b.subarray(0, rng.int(b.length));
      return `truncated to ${m.bytes.length}`;
    case 'splice': {
      const other = list[rng.int(list.length)].bytes;
      m.bytes = Buffer.concat([b.subarray(0, rng.int(b.length + 1)), other.subarray(rng.int(other.length + 1))]);
      return 'spliced';
    }
    case 'type': {
      const t = rng.chance(0.8) ? rng.pick(ALL_TYPES) : rng.pick(UNKNOWN_TYPES);
      if (b.length >= 6) b.writeUInt16LE(t, 4);
      return `type=0x${t.toString(16)}`;
    }
    case 'flags':
      if (b.length >= 8) b[7] = rng.range(1, 255);
      return 'flags';
    case 'handles': {
      const h = rng.pick([1, 2, 8, 9, 255]);
      if (b.length >= 7) b[6] = h;
      if (rng.chance(0.5)) m.fds = Array.from({ length: rng.pick([0, 1, Math.min(h, 12)]) }, () => rng.pick(FD_KINDS));
      return `handles=${h} fds=${m.fds.length}`;
    }
    case 'fds': {
      const n = rng.weighted([
        [10, 1],
        [3, 2],
        [2, 8],
        [2, 9],
        [1, 12],
      ] as const);
      m.fds = Array.from({ length: n }, () => rng.pick(FD_KINDS));
      if (rng.chance(0.6) && b.length >= 7) b[6] = Math.min(n, 255);
      return `fds=${m.fds.join(',')} declared=${b.length >= 7 ? b[6] : '?'}`;
    }
    case 'duplicate':
      list.splice(i + 1, 0, { ...m, bytes: Buffer.from(m.bytes), fds: [...m.fds] });
      return 'duplicated';
    case 'reorder':
      if (i + 1 < list.length) [list[i], list[i + 1]] = [list[i + 1], list[i]];
      return 'reordered';
    case 'pad': {
      m.bytes = Buffer.concat([b, rng.bytes(rng.range(1, 40))]);
      if (m.bytes.length >= 4) m.bytes.writeUInt32LE(m.bytes.length, 0);
      return `padded to ${m.bytes.length}`;
    }
    case 'huge': {
      const len = rng.pick([65536, 65537, 70000]);
      const big = Buffer.alloc(len, 0x20);
      b.copy(big, 0, 0, Math.min(b.length, 16));
      big.writeUInt32LE(len, 0);
      m.bytes = big;
      return `huge ${len}`;
    }
  }
}

/** A whole session's planned traffic, from one seed. */
export function planSession(seed: number, tag: string): SessionPlan {
  const rng = new Rng(seed);
  const notes: string[] = [];
  const msgs: Msg[] = [];
  const valid = rng.chance(0.15); // a well-behaved session now and then: all of it must be taken
  const opening = valid
    ? 'valid-hello'
    : rng.weighted([
        [94, 'hello'],
        [3, 'other-first'],
        [1, 'nothing'],
        [2, 'raw-garbage'],
      ] as const);
  if (opening === 'valid-hello') {
    const info = {
      name: tag,
      pid: process.pid,
      platform: 'linux',
      host: { bootId: null, machineId: null },
      mechanisms: [{ name: 'shm.v1' }],
      features: ['frames.v1', 'input.v1', 'cursor.v1'],
    };
    msgs.push({ bytes: take(writeHello(writer, 1, 1, info)), fds: [], note: 'valid HELLO' });
  } else if (opening === 'hello') msgs.push(hello(rng, tag));
  else if (opening === 'other-first') msgs.push(message(rng, tag));
  else if (opening === 'raw-garbage') msgs.push({ bytes: rng.bytes(rng.range(1, 64)), fds: [], note: 'garbage' });
  const count = rng.weighted<() => number>([
    [1, () => 0],
    [4, () => rng.range(1, 20)],
    [10, () => rng.range(20, 150)],
    [6, () => rng.range(150, 400)],
  ])();
  for (let k = 0; k < count; k++) msgs.push(message(rng, tag, valid));
  notes.push(...msgs.slice(0, 30).map((m) => m.note));
  if (msgs.length > 30) notes.push(`… ${msgs.length - 30} more`);
  // Mutations mostly late in the session, so that most of its messages are parsed first.
  const mutations = valid
    ? 0
    : rng.weighted([
        [2, 0],
        [6, 1],
        [2, 2],
        [1, rng.range(3, 8)],
      ] as const);
  for (let k = 0; k < mutations && msgs.length > 0; k++) {
    const i = rng.chance(0.1)
      ? rng.int(Math.min(2, msgs.length))
      : msgs.length - 1 - rng.int(Math.ceil(msgs.length / 3));
    notes.push(`#${i} ${msgs[i].note}: ${mutate(rng, msgs, i)}`);
  }
  const sends = chunk(rng, msgs);
  return {
    seed,
    sends,
    reaction: valid
      ? { release: 1, mutate: 0, fence: 0 }
      : {
          release: rng.pick([1, 1, 1, 0.9, 0.5, 0]),
          mutate: rng.pick([0, 0, 0.05, 0.3]),
          fence: rng.pick([0, 0, 0, 0.1]),
        },
    lingerMs: rng.pick([0, 5, 20, 60, 150]),
    closeMidMessage: rng.chance(0.03),
    notes,
  };
}

/** Cuts the messages into sendmsg() calls: each message with fds starts a send; other cuts are random. */
function chunk(rng: Rng, msgs: Msg[]): Send[] {
  const sends: Send[] = [];
  let current: Buffer[] = [];
  let fds: FdKind[] = [];
  const flush = (boundary: boolean): void => {
    if (current.length === 0 && fds.length === 0) return;
    const bytes = Buffer.concat(current);
    if (bytes.length > 0) sends.push({ bytes, fds, boundary, yieldBefore: rng.chance(0.3) });
    current = [];
    fds = [];
  };
  for (const m of msgs) {
    if (m.fds.length > 0 || rng.chance(0.25)) flush(true);
    if (m.bytes.length > 1 && m.fds.length === 0 && rng.chance(0.05)) {
      // A partial write: the message in two sends.
      const cut = rng.range(1, m.bytes.length - 1);
      current.push(m.bytes.subarray(0, cut));
      flush(false);
      current.push(m.bytes.subarray(cut));
      continue;
    }
    current.push(m.bytes);
    fds = fds.length === 0 ? m.fds : fds;
  }
  flush(true);
  return sends;
}
