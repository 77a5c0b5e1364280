/**
 * The fuzz oracle for one unix-socket session: what docs/protocol.md says the server must answer
 * to exactly the bytes and fds a client sent, written from the document (§2.2–§2.6, §3.1, §3.3,
 * §3.6, §3.9, §3.11, §4.1–§4.5), not from the server's code. It replays the client's log (every
 * sendmsg() and the FRAMEs it received, in order) and returns the answers the spec allows:
 * the fatal ERROR codes, whether the session may still be open or closed without an ERROR, and
 * which non-fatal warnings may come. Where the spec leaves the outcome to timing (how the kernel
 * splits reads when fds arrive where no message claims them, the ERROR budget's refill, a
 * release deadline) the answer is a set, or the model says it is not exact.
 */
import { MAGIC } from '../../../src/protocol/constants.js';
import type { FdKind } from './fds.js';
import { FUZZ_HIGHEST_SURFACE, FUZZ_SURFACES, NO_INPUT_PREFIX } from './layout.js';

export type LogEntry =
  { t: 'send'; bytes: Buffer; fds: FdKind[] } | { t: 'frame'; surfaceId: number; bufferId: number; sequence: number };

/** What the server offers, as a client can learn it (a probe HELLO): the mechanisms it serves, its boot id. */
export interface ServerFacts {
  served: string[];
  bootId: string | null;
  /** How the probe learned it: per name, the deciding answer (WELCOME or an error code) and the asks it took. */
  answers?: Record<string, string>;
}

export interface Expectation {
  /** Fatal ERROR codes the server may send. */
  fatal: Set<string>;
  /** The session may still be open when the client stops. */
  open: boolean;
  /** The server may close without an ERROR (after the client's own fatal ERROR). */
  silent: boolean;
  /** Non-fatal ERROR codes that may come. */
  warnings: Set<string>;
  /** False when fds arrived where the spec's outcome depends on how the kernel split the reads. */
  exact: boolean;
  /** The first check that fails, per branch, for people. */
  why: string[];
  /** What the model says the session negotiated (null before a good HELLO). */
  mechanism: string | null;
  features: string[] | null;
  /** Messages the server parses before the session ends (first branch): what the fuzzer counts as sent. */
  delivered: number;
}

const T = {
  HELLO: 0x01,
  WELCOME: 0x02,
  ERROR: 0x03,
  RELEASE: 0x12,
  IMPORT_FAILED: 0x20,
  KEY: 0x30,
  POINTER: 0x31,
  MOTION: 0x32,
  BUTTON: 0x33,
  SCROLL: 0x34,
  TOUCH: 0x35,
} as const;
const SERVER_ONLY = new Set([0x02, 0x10, 0x11, 0x13, 0x14, 0x21, 0x36, 0x40, 0x41]);
const INPUT_LENGTH: Record<number, number> = { 0x30: 20, 0x31: 20, 0x32: 20, 0x33: 20, 0x34: 20, 0x35: 28 };
const HANDLE_MECHANISMS = new Set(['shm.v1', 'dmabuf.v1', 'winshm.v1', 'dxgi.v1', 'iosurface.v1']);
const SUPPORTED_FEATURES = ['frames.v1', 'input.v1', 'cursor.v1'];
const isSafeInt = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v);
const isStr = (v: unknown): v is string => typeof v === 'string';
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

class Fatal {
  constructor(
    readonly code: string,
    readonly why: string,
  ) {}
}
class Silent {}

interface State {
  phase: 'hello' | 'active' | 'done';
  buf: Buffer;
  fdq: FdKind[];
  name: string;
  offers: string[];
  otherHost: boolean;
  mechanism: string | null;
  features: string[] | null;
  /** The frame of surface 1 the server counts as held, 'unknown' after a release (a new one may be on its way). */
  held: { bufferId: number; sequence: number } | null | 'unknown';
  nonFatalErrors: number;
  permissionTold: boolean;
  end: Fatal | Silent | null;
  /** Index of the send during which the session ended. */
  endedAt: number;
}

/** The spec's answers for a session's log. */
export function expectSession(log: readonly LogEntry[], facts: ServerFacts): Expectation {
  const out: Expectation = {
    fatal: new Set(),
    open: false,
    silent: false,
    warnings: new Set(),
    exact: true,
    why: [],
    mechanism: null,
    features: null,
    delivered: 0,
  };
  let states: State[] = [
    {
      phase: 'hello',
      buf: Buffer.alloc(0),
      fdq: [],
      name: '',
      offers: [],
      otherHost: false,
      mechanism: null,
      features: null,
      held: null,
      nonFatalErrors: 0,
      permissionTold: false,
      end: null,
      endedAt: -1,
    },
  ];
  let everHeld = false;
  let sendIndex = -1;
  const fdSends: number[] = [];
  for (const entry of log) {
    if (entry.t === 'frame') {
      everHeld = true;
      for (const s of states) if (s.end === null) s.held = { bufferId: entry.bufferId, sequence: entry.sequence };
      continue;
    }
    sendIndex++;
    if (entry.fds.length > 0) fdSends.push(sendIndex);
    const next: State[] = [];
    for (const s of states) {
      if (s.end !== null) {
        next.push(s);
        continue;
      }
      for (const r of receive(s, entry.bytes, entry.fds, facts, out)) {
        if (r.end !== null && r.endedAt < 0) r.endedAt = sendIndex;
        next.push(r);
      }
    }
    states = next.length > 16 ? next.slice(0, 16) : next;
    if (next.length > 16) out.exact = false;
  }
  for (const s of states) {
    // One recvmsg() may return the bytes of several sends: fds of a later send are queued (and
    // MSG_CTRUNC, more than 16, checked) before the earlier bytes are delivered (§2.4), and a
    // message short of fds takes the later send's. Then E_HANDLE_COUNT (or, for a RELEASE that
    // takes a later fd as its fence, E_HANDLE_TYPE) may come first.
    if (s.end !== null && fdSends.some((i) => i > s.endedAt || (i === s.endedAt && s.end instanceof Silent))) {
      out.fatal.add('E_HANDLE_COUNT');
      out.fatal.add('E_HANDLE_TYPE');
      out.why.push('a later send with fds may share the read');
    }
    if (s.end instanceof Fatal) {
      out.fatal.add(s.end.code);
      out.why.push(`${s.end.code}: ${s.end.why}`);
    } else if (s.end instanceof Silent) out.silent = true;
    else {
      out.open = true;
      // No HELLO yet: the server's HELLO timer may fire first.
      if (s.phase === 'hello') out.fatal.add('E_TIMEOUT');
    }
    if (s.mechanism) {
      out.mechanism = s.mechanism;
      out.features = s.features;
    }
  }
  // A frame held, then a deadline or the pool: the server may end the session for either at any time.
  if (everHeld) for (const c of ['E_RELEASE_TIMEOUT', 'E_POOL_EXHAUSTED']) out.fatal.add(c);
  return out;
}

function clone(s: State): State {
  return { ...s, endedAt: -1, fdq: [...s.fdq], held: s.held && s.held !== 'unknown' ? { ...s.held } : s.held };
}

/** One sendmsg() arriving (§2.4's order: fds queued, MSG_CTRUNC, more than 16, then the bytes). */
function receive(s: State, bytes: Buffer, fds: FdKind[], facts: ServerFacts, out: Expectation): State[] {
  if (fds.length > 0) {
    if (s.buf.length > 0) out.exact = false; // fds with a partial message: they may belong to it, or not
    if (fds.length > 8) return end(s, new Fatal('E_HANDLE_COUNT', `${fds.length} fds on one sendmsg (MSG_CTRUNC)`));
    s.fdq.push(...fds);
    if (s.fdq.length > 16) return end(s, new Fatal('E_HANDLE_COUNT', 'more than 16 fds queued'));
  }
  s.buf = Buffer.concat([s.buf, bytes]);
  let branches: State[] = [s];
  let firstOfSend = fds.length > 0 && s.buf.length === bytes.length;
  // Deliver complete messages; every branch shares the bytes, so walk them together.
  for (;;) {
    const live = branches.filter((b) => b.end === null);
    if (live.length === 0) return branches;
    const b0 = live[0];
    if (b0.buf.length < 8) break;
    const length = b0.buf.readUInt32LE(0);
    const handles = b0.buf[6];
    if (length < 8) return branches.map((b) => (b.end ? b : endOne(b, new Fatal('E_MALFORMED', `length ${length}`))));
    if (length > 65536)
      return branches.map((b) => (b.end ? b : endOne(b, new Fatal('E_TOO_LARGE', `length ${length}`))));
    if (handles > 8)
      return branches.map((b) => (b.end ? b : endOne(b, new Fatal('E_HANDLE_COUNT', `handles ${handles}`))));
    if (b0.buf.length < length) break;
    if (b0.fdq.length < handles)
      return branches.map((b) =>
        b.end ? b : endOne(b, new Fatal('E_HANDLE_COUNT', `${handles} handles declared, ${b.fdq.length} queued`)),
      );
    if (handles > 0 && (!firstOfSend || fds.length !== handles)) out.exact = false;
    if (firstOfSend && handles !== fds.length) out.exact = false;
    firstOfSend = false;
    const msg = b0.buf.subarray(0, length);
    const claimed = b0.fdq.slice(0, handles);
    const after: State[] = [];
    for (const b of branches) {
      if (b.end !== null) {
        after.push(b);
        continue;
      }
      b.buf = b.buf.subarray(length);
      b.fdq = b.fdq.slice(handles);
      after.push(...dispatch(b, msg, claimed, facts, out));
    }
    out.delivered++;
    branches = after;
  }
  for (const b of branches)
    if (b.end === null && b.buf.length === 0 && b.fdq.length > 0) {
      out.exact = false;
      b.end = new Fatal('E_HANDLE_COUNT', 'fds that no message declares');
    }
  return branches;
}

function end(s: State, e: Fatal | Silent): State[] {
  return [endOne(s, e)];
}
function endOne(s: State, e: Fatal | Silent): State {
  s.end = e;
  s.phase = 'done';
  return s;
}

/** §2.6 step 2, then the type's own checks. */
function dispatch(s: State, m: Buffer, fds: FdKind[], facts: ServerFacts, out: Expectation): State[] {
  const type = m.readUInt16LE(4);
  const flags = m[7];
  const hex = `0x${type.toString(16)}`;
  const allowed = type === T.RELEASE ? 1 : 0;
  if (fds.length > allowed) return end(s, new Fatal('E_HANDLE_COUNT', `${fds.length} fds on type ${hex}`));
  if (s.phase === 'hello' && type !== T.HELLO) return end(s, new Fatal('E_UNEXPECTED', `${hex} before HELLO`));
  switch (type) {
    case T.HELLO:
      if (s.phase !== 'hello') return end(s, new Fatal('E_UNEXPECTED', 'second HELLO'));
      return hello(s, m, facts);
    case T.ERROR: {
      if (flags !== 0 || m.length < 16) return end(s, new Fatal('E_MALFORMED', 'ERROR flags or length'));
      if ((m.readUInt32LE(12) & 1) !== 0) return end(s, new Silent());
      s.nonFatalErrors++;
      // 10 per second in bursts of 10: the 11th may or may not find a token, depending on time.
      if (s.nonFatalErrors > 10) {
        const limited = clone(s);
        return [s, endOne(limited, new Fatal('E_LIMIT', 'more than 10 non-fatal ERRORs'))];
      }
      return [s];
    }
    case T.RELEASE:
    case T.IMPORT_FAILED:
      if (!s.features!.includes('frames.v1')) return end(s, new Fatal('E_UNEXPECTED', `${hex} without frames.v1`));
      return type === T.RELEASE ? release(s, m, fds) : importFailed(s, m, facts);
    default:
      if (INPUT_LENGTH[type] !== undefined) {
        if (!s.features!.includes('input.v1')) return end(s, new Fatal('E_UNEXPECTED', `${hex} without input.v1`));
        return input(s, type, m, out);
      }
      if (SERVER_ONLY.has(type)) return end(s, new Fatal('E_UNEXPECTED', `server type ${hex} from a client`));
      return end(s, new Fatal('E_UNKNOWN_TYPE', `type ${hex}`));
  }
}

/** §3.1's checks in order, §4.1's version, §4.2's choice, §4.5's features. */
function hello(s: State, m: Buffer, facts: ServerFacts): State[] {
  const bad = (why: string): State[] => end(s, new Fatal('E_MALFORMED', `HELLO: ${why}`));
  if (m[7] !== 0 || m.length < 16) return bad('flags or length');
  if (m.readUInt32LE(8) !== MAGIC) return bad('magic');
  let o: unknown;
  try {
    o = JSON.parse(m.subarray(16).toString('utf8'));
  } catch {
    return bad('JSON');
  }
  if (!isObject(o)) return bad('not a JSON object');
  if (!isStr(o.name) || !isSafeInt(o.pid) || !isStr(o.platform) || !isObject(o.host))
    return bad('name, pid, platform, host');
  const mechs = o.mechanisms;
  if (!Array.isArray(mechs) || mechs.length < 1 || mechs.length > 16) return bad('mechanisms 1..16');
  const names: string[] = [];
  for (const offer of mechs) {
    if (!isObject(offer) || !isStr(offer.name) || offer.name.length < 1 || offer.name.length > 64)
      return bad('an offer without a good name');
    if (names.includes(offer.name)) return bad('an offer twice');
    names.push(offer.name);
  }
  let requested: string[] | null = null;
  if (o.features !== undefined) {
    const f = o.features;
    if (!Array.isArray(f) || f.length < 1 || f.length > 16) return bad('features 1..16');
    for (const name of f)
      if (!isStr(name) || name.length < 1 || name.length > 64 || f.indexOf(name) !== f.lastIndexOf(name))
        return bad('a bad feature name');
    requested = f as string[];
  }
  const min = m.readUInt16LE(12);
  const max = m.readUInt16LE(14);
  if (Math.min(max, 1) < Math.max(min, 1)) return end(s, new Fatal('E_PROTOCOL_VERSION', `${min}..${max}`));
  const bootId = (o.host as Record<string, unknown>).bootId;
  s.otherHost = isStr(bootId) && facts.bootId !== null && bootId !== facts.bootId;
  s.offers = names;
  s.mechanism = choose(names, 0, facts, s.otherHost, true);
  if (s.mechanism === null) return end(s, new Fatal('E_NO_MECHANISM', `offers ${names.join(',')}`));
  s.features = requested === null ? ['frames.v1'] : requested.filter((f) => SUPPORTED_FEATURES.includes(f));
  s.name = o.name;
  s.phase = 'active';
  return [s];
}

/** The first offer from `from` on that the server serves (§4.2); stream.v1 only at HELLO (§4.3). */
function choose(offers: string[], from: number, facts: ServerFacts, otherHost: boolean, atHello: boolean) {
  for (let i = from; i < offers.length; i++) {
    const name = offers[i];
    const served = facts.served.includes(name);
    if (otherHost && (!served || HANDLE_MECHANISMS.has(name))) continue;
    if (!served) continue;
    if (name === 'stream.v1' && !atHello) continue;
    return name;
  }
  return null;
}

/** §3.6. */
function release(s: State, m: Buffer, fds: FdKind[]): State[] {
  if (m[7] !== 0 || m.length !== 24) return end(s, new Fatal('E_MALFORMED', 'RELEASE flags or length'));
  if (fds.length > 0) return end(s, new Fatal('E_HANDLE_TYPE', `a ${fds[0]} as the release fence`));
  const surface = m.readUInt32LE(8);
  const bufferId = m.readUInt32LE(12);
  const sequence = m.readUInt32LE(16) + m.readUInt32LE(20) * 0x100000000;
  if (surface === 0 || surface > FUZZ_HIGHEST_SURFACE)
    return end(s, new Fatal('E_UNKNOWN_BUFFER', `RELEASE of surface ${surface}`));
  if (surface !== FUZZ_SURFACES.live.id) return [s]; // gone, or never presented: no state, ignored
  if (!HANDLE_MECHANISMS.has(s.mechanism!)) {
    // No frames on this socket. Whether the server keeps per-surface state for such a session is not
    // said by §3.6: ignored (no state) or E_UNEXPECTED (state, nothing held) are both read from it.
    const strict = clone(s);
    return [s, endOne(strict, new Fatal('E_UNEXPECTED', 'RELEASE in a session without handles'))];
  }
  const held = s.held;
  if (held && held !== 'unknown' && held.bufferId === bufferId && held.sequence === sequence) {
    s.held = 'unknown';
    return [s];
  }
  return end(s, new Fatal('E_UNEXPECTED', `RELEASE of ${bufferId}/${sequence}, not the held frame`));
}

/** §3.9 and §4.3. */
function importFailed(s: State, m: Buffer, facts: ServerFacts): State[] {
  if (m[7] !== 0 || m.length < 24) return end(s, new Fatal('E_MALFORMED', 'IMPORT_FAILED flags or length'));
  if (!HANDLE_MECHANISMS.has(s.mechanism!))
    return end(s, new Fatal('E_UNEXPECTED', `IMPORT_FAILED in a ${s.mechanism} session (no SCANOUT to fail on)`));
  const current = s.offers.indexOf(s.mechanism!);
  const next = choose(s.offers, current + 1, facts, s.otherHost, false);
  if (next === null) return end(s, new Fatal('E_NO_MECHANISM', `nothing after ${s.mechanism}`));
  s.mechanism = next;
  return [s];
}

/** §3.11's list, in order. */
function input(s: State, type: number, m: Buffer, out: Expectation): State[] {
  const bad = (why: string): State[] => end(s, new Fatal('E_MALFORMED', why));
  if (m[7] !== 0 || m.length !== INPUT_LENGTH[type]) return bad('input flags or length');
  const u = (i: number): number => m.readUInt32LE(8 + 4 * i);
  const i32 = (i: number): number => m.readInt32LE(8 + 4 * i);
  switch (type) {
    case T.KEY:
      if (u(1) < 1 || u(1) > 0x2ff || u(2) > 1) return bad('KEY range');
      break;
    case T.BUTTON:
      if (u(1) < 0x110 || u(1) > 0x117 || u(2) > 1) return bad('BUTTON range');
      break;
    case T.MOTION:
      if (Math.abs(i32(1)) > 16384 || Math.abs(i32(2)) > 16384) return bad('MOTION range');
      break;
    case T.SCROLL:
      if (Math.abs(i32(1)) > 1024 || Math.abs(i32(2)) > 1024) return bad('SCROLL range');
      break;
    case T.TOUCH:
      if (u(1) > 3 || u(2) > 15) return bad('TOUCH range');
      break;
  }
  if (s.name.startsWith(NO_INPUT_PREFIX)) {
    if (!s.permissionTold) out.warnings.add('E_PERMISSION');
    s.permissionTold = true;
    return [s];
  }
  const surface = u(0);
  if (surface === 0 || surface > FUZZ_HIGHEST_SURFACE)
    return end(s, new Fatal('E_UNKNOWN_BUFFER', `input for surface ${surface}`));
  const target = Object.values(FUZZ_SURFACES).find((x) => x.id === surface)!;
  if (target === FUZZ_SURFACES.gone) return [s];
  const relative = target === FUZZ_SURFACES.idle;
  if ((type === T.POINTER && relative) || (type === T.MOTION && !relative)) return [s];
  if (type === T.POINTER || type === T.TOUCH) {
    const [x, y] = type === T.POINTER ? [u(1), u(2)] : [u(3), u(4)];
    if (x >= target.width || y >= target.height) out.warnings.add('E_OUT_OF_BOUNDS');
  }
  return [s];
}
