/**
 * Runs one planned session against a real server over a real unix socket (the addon's SCM_RIGHTS
 * channel in byte-stream mode, so any bytes and any fds can be sent), answers FRAMEs as the plan
 * says, reads everything the server sends, and judges the outcome against the spec model.
 */
import { ErrorCode } from '../../../src/errors.js';
import { posixChannels, type NativeFd } from '../../../src/native/index.js';
import { MessageWriter, writeRelease } from '../../../src/protocol/codec.js';
import type { FdKind, FdPool } from './fds.js';
import { CLIENT_CAUSED_CODES } from './layout.js';
import { Rng } from './rng.js';
import type { SessionPlan } from './unix-gen.js';
import { expectSession, type Expectation, type LogEntry, type ServerFacts } from './unix-model.js';

const CODE_NAMES = new Map<number, string>(Object.entries(ErrorCode).map(([k, v]) => [v, k]));
const codeName = (n: number): string => CODE_NAMES.get(n) ?? `#${n}`;

export interface SessionOutcome {
  /** The fatal ERROR the server sent, by name ('#n' for a number outside src/errors.ts). */
  fatal: string | null;
  /** The server closed without a fatal ERROR. */
  silent: boolean;
  /** Still open when the client stopped. */
  open: boolean;
  warnings: string[];
  welcome: { mechanism: string; features: string[] | null } | null;
  /** The mechanism of the last MECHANISM switch, if the server sent one. */
  switchedTo: string | null;
  /** Messages the server parsed (per the model): what the fuzzer counts. */
  messages: number;
  framesReceived: number;
  releasesSent: number;
  ms: number;
}

export interface SessionRecord {
  plan: SessionPlan;
  log: LogEntry[];
  outcome: SessionOutcome;
  expectation: Expectation;
  /** What went against the spec (empty: the session passed). */
  violations: string[];
}

export interface RunOptions {
  /** How long to wait for a fatal ERROR the spec says must come, before calling it a hang. */
  hangMs: number;
  /** After the last send, how long an unpredicted answer has to arrive. */
  graceMs: number;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function runUnixSession(
  socketPath: string,
  plan: SessionPlan,
  pool: FdPool,
  facts: ServerFacts,
  options: RunOptions,
): Promise<SessionRecord> {
  const t0 = performance.now();
  const rng = new Rng(plan.seed ^ 0x5bd1e995);
  const log: LogEntry[] = [];
  const outcome: SessionOutcome = {
    fatal: null,
    silent: false,
    open: false,
    warnings: [],
    welcome: null,
    switchedTo: null,
    messages: 0,
    framesReceived: 0,
    releasesSent: 0,
    ms: 0,
  };
  const violations: string[] = [];
  const channel = posixChannels().connect(socketPath);
  let closed = false;
  let closedWaiter: (() => void) | null = null;
  let inbox = Buffer.alloc(0);
  const fdQueue: NativeFd[] = [];
  let atBoundary = true;
  const deferred: Buffer[][] = [];
  const writer = new MessageWriter(64);

  const send = (bytes: Buffer, fds: FdKind[]): boolean => {
    if (closed || channel.closed) return false;
    const r = channel.send(
      bytes,
      fds.map((k) => pool.get(k)),
    );
    if (r < 0) return false;
    log.push({ t: 'send', bytes, fds });
    return true;
  };

  const react = (surfaceId: number, bufferId: number, sequence: number): void => {
    if (!rng.chance(plan.reaction.release)) return;
    const out: Buffer[] = [];
    const n = writeRelease(writer, surfaceId, bufferId, sequence);
    const bytes = Buffer.from(writer.bytes.subarray(0, n));
    if (rng.chance(plan.reaction.mutate)) {
      const how = rng.int(6);
      if (how === 0) bytes.writeUInt32LE(sequence + 1, 16);
      else if (how === 1) bytes.writeUInt32LE(Math.max(0, sequence - 1), 16);
      else if (how === 2) bytes.writeUInt32LE(bufferId + 1, 12);
      else if (how === 3) bytes.writeUInt32LE(rng.pick([0, 2, 3, 4]), 8);
      else if (how === 4) bytes[7] = 1;
      else out.push(Buffer.from(bytes)); // released twice
    }
    out.push(bytes);
    for (const b of out) {
      outcome.releasesSent++;
      if (atBoundary) {
        const fence = rng.chance(plan.reaction.fence) ? [rng.pick<FdKind>(['pipe', 'memfd-sealed', 'file'])] : [];
        if (fence.length) {
          const fenced = Buffer.from(b);
          fenced[6] = 1;
          send(fenced, fence);
        } else send(b, []);
      } else deferred.push([b]);
    }
  };

  const onData = (offset: number, length: number, fds: NativeFd[] | undefined): void => {
    inbox = Buffer.concat([inbox, rx.subarray(offset, offset + length)]);
    if (fds) fdQueue.push(...fds);
    while (inbox.length >= 8) {
      const len = inbox.readUInt32LE(0);
      if (len < 8 || len > 65536) {
        violations.push(`the server sent a message of length ${len}`);
        inbox = Buffer.alloc(0);
        break;
      }
      if (inbox.length < len) break;
      const m = inbox.subarray(0, len);
      inbox = inbox.subarray(len);
      const type = m.readUInt16LE(4);
      const handles = m[6];
      if (fdQueue.length < handles) violations.push(`the server declared ${handles} handles and sent fewer`);
      for (const fd of fdQueue.splice(0, handles)) fd.close();
      if (handles > 0 && type !== 0x10 && type !== 0x11 && type !== 0x40)
        violations.push(`the server attached handles to type 0x${type.toString(16)}`);
      if (type === 0x02) {
        try {
          const info = JSON.parse(m.subarray(16).toString('utf8'));
          outcome.welcome = { mechanism: info.mechanism, features: info.features ?? null };
        } catch {
          violations.push('the server sent a WELCOME that is not JSON');
        }
      } else if (type === 0x21) {
        try {
          outcome.switchedTo = JSON.parse(m.subarray(8).toString('utf8')).mechanism;
        } catch {
          violations.push('the server sent a MECHANISM that is not JSON');
        }
      } else if (type === 0x03) {
        const code = codeName(m.readUInt32LE(8));
        if ((m.readUInt32LE(12) & 1) !== 0) outcome.fatal = code;
        else outcome.warnings.push(code);
      } else if (type === 0x11) {
        outcome.framesReceived++;
        const f = { surfaceId: m.readUInt32LE(8), bufferId: m.readUInt32LE(12), sequence: m.readUInt32LE(16) };
        f.sequence += m.readUInt32LE(20) * 0x100000000;
        log.push({ t: 'frame', ...f });
        react(f.surfaceId, f.bufferId, f.sequence);
      }
    }
    if (inbox.length === 0 && fdQueue.length > 0) {
      violations.push(`the server sent ${fdQueue.length} fds that no message declares`);
      for (const fd of fdQueue.splice(0)) fd.close();
    }
  };
  const onError = (): void => {
    closed = true;
    closedWaiter?.();
  };
  const rx = Buffer.alloc(131072);
  channel.start(rx, onData, onError, { stream: true, maxMessage: 65536, maxQueuedBytes: 1 << 22 });

  try {
    for (const s of plan.sends) {
      if (closed) break;
      if (s.yieldBefore) await tick();
      if (!send(s.bytes, s.fds)) break;
      atBoundary = s.boundary;
      if (atBoundary) for (const d of deferred.splice(0)) send(d[0], []);
    }
    if (plan.lingerMs > 0 && !closed) await sleep(plan.lingerMs);
    atBoundary = true;
    for (const d of deferred.splice(0)) send(d[0], []);
    let expectation = expectSession(log, facts);
    // Whether the spec said the session must end at a moment we then waited for it. Frames that arrive later are
    // logged after everything sent, though the server may have sent them before it read the last messages, and
    // the client's reactions to them are new messages: an expectation computed after such a wait can say "must
    // end" for an order of events that did not happen. Only a wait for the end can find the server silent.
    let waitedForEnd = false;
    if (!closed) {
      // Let the server answer what it has; if the spec says it must end the session, wait for that.
      waitedForEnd = !expectation.open;
      const wait = expectation.open ? options.graceMs : options.hangMs;
      await new Promise<void>((resolve) => {
        closedWaiter = resolve;
        setTimeout(resolve, wait);
      });
      // A starved process runs its timers before its poll phase: give the socket one more look.
      await tick();
      await tick();
    }
    if (!closed && plan.closeMidMessage && expectation.open) {
      // Half a KEY, then the close: the server sees E_TRUNCATED (these bytes may also complete a message).
      send(Buffer.from([20, 0, 0, 0, 0x30, 0, 0, 0, 1, 0]), []);
      waitedForEnd = !expectSession(log, facts).open;
      if (waitedForEnd)
        await new Promise<void>((resolve) => {
          closedWaiter = resolve;
          setTimeout(resolve, options.hangMs);
        });
      await tick();
    }
    expectation = expectSession(log, facts);
    outcome.open = !closed;
    outcome.silent = closed && outcome.fatal === null;
    outcome.messages = expectation.delivered;
    outcome.ms = performance.now() - t0;
    judge(outcome, expectation, violations, facts, waitedForEnd);
    return { plan, log, outcome, expectation, violations };
  } finally {
    channel.close();
    for (const fd of fdQueue.splice(0)) fd.close();
  }
}

function judge(
  o: SessionOutcome,
  e: Expectation,
  violations: string[],
  facts: ServerFacts,
  waitedForEnd: boolean,
): void {
  const why = e.why.length ? ` (the spec's reading: ${e.why.join(' | ')})` : '';
  if (o.fatal !== null) {
    const known = (CLIENT_CAUSED_CODES as readonly string[]).includes(o.fatal);
    if (!known) violations.push(`fatal ${o.fatal}: not a code a client's traffic may cause${why}`);
    else if (o.fatal === 'E_LIMIT' && o.welcome === null) {
      // maxClients at accept: a fact of the load, not of this session's bytes.
    } else if (e.exact && !e.fatal.has(o.fatal))
      violations.push(`fatal ${o.fatal}, the spec expects ${[...e.fatal].join('/') || 'none'}${why}`);
  } else if (o.silent) {
    if (!e.silent && e.exact) violations.push(`closed without an ERROR${why}`);
  } else if (o.open && !e.open && waitedForEnd) {
    violations.push(`no answer within the wait; the spec expects ${[...e.fatal].join('/')}${why}`);
  }
  for (const w of o.warnings)
    if (!e.warnings.has(w) && e.exact) violations.push(`non-fatal ${w}, not expected by the spec`);
  if (o.warnings.filter((w) => w === 'E_PERMISSION').length > 1) violations.push('E_PERMISSION warned twice');
  if (e.exact && o.welcome && e.mechanism !== null) {
    // The session's mechanism at the end: WELCOME's, or the last MECHANISM switch's (§4.3).
    const mechanism = o.switchedTo ?? o.welcome.mechanism;
    if (mechanism !== e.mechanism)
      violations.push(
        `${o.switchedTo ? `MECHANISM switched to ${o.switchedTo}` : `WELCOME chose ${mechanism}`}, ` +
          `the spec's choice is ${e.mechanism} ` +
          `(the probe: ${JSON.stringify(facts.answers ?? facts.served)})`,
      );
  }
}
