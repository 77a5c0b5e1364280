/**
 * One fuzz run, as the CI test (test/fuzz/fuzz.test.ts) and `npm run fuzz` (scripts/fuzz.ts) do
 * it: a fuzz server process and a bystander client process; the producer's idle noise measured;
 * the corpus replayed; unix and WebSocket fuzz worker processes run until their message budgets
 * (or the time) are spent; then every oracle: no crash, no hang, each session's answer allowed by
 * the spec, the server's fds back to their baseline, RSS bounded, the bystander's frames
 * contiguous and all released, the producer's present interval p99 within one period of its idle
 * p99 and no interval over a second (all less its main thread's run-queue waits).
 */
import * as os from 'node:os';
import { MEASURED_PRODUCER_FLAGS, PeerGroup, sleep, type Peer } from '../../helpers.js';
import { BYSTANDER_NAME } from './layout.js';
import { loadCorpus, saveCorpus, type CorpusEntry } from './corpus.js';

export interface FuzzRunOptions {
  /** Stop the unix workers after this many messages (all workers together), or at `durationMs`. */
  unixMessages: number;
  /** Stop the WebSocket workers after this many messages, or at `durationMs`. */
  wsMessages: number;
  durationMs: number;
  unixWorkers: number;
  wsWorkers: number;
  /** Sessions each worker runs at once. */
  concurrency: number;
  seed: number;
  /** Producer period, ms. */
  periodMs: number;
  /** How long the idle noise is measured, before and after. */
  idleMs: number;
  /** Write every input that broke an oracle into test/fuzz/corpus/. */
  saveFindings: boolean;
  log: (line: string) => void;
}

/** One long present interval, as test/fixtures/fuzz-server.ts reports it (ms). */
export interface LongInterval {
  ms: number;
  /** CPU time the server process (all its threads) used in it. */
  cpuMs: number;
  /** The interval less the time the server's main thread waited on a run queue in it. */
  correctedMs: number;
  /** Time its event loop spent waiting for events in it (a wake-up that came late counts here). */
  idleMs: number;
}

/** "raw/cpu/corrected/idle", one decimal each: where a long interval's time went. */
export function formatInterval(l: LongInterval): string {
  return [l.ms, l.cpuMs, l.correctedMs, l.idleMs].map((v) => v.toFixed(1)).join('/');
}

export interface IntervalStats {
  n: number;
  p50: number;
  p99: number;
  max: number;
  /** The longest intervals, each with the CPU time the server process used in it. */
  longest?: LongInterval[];
}

export interface FuzzReport {
  unix: WorkerTotals;
  ws: WorkerTotals;
  corpus: {
    replayed: number;
    failed: { file: string; violations: string[] }[];
    /** Entries of known bugs: whether each still reproduces. */
    known: { file: string; bug: string; reproduces: boolean }[];
  };
  idle: IntervalStats[];
  fuzz: IntervalStats;
  /** The producer's period (ms): the stall its p99 may reach beyond the idle noise. */
  periodMs: number;
  /** The same, less the time the server's JS thread waited for a CPU (other processes' load taken out). */
  idleCorrected: IntervalStats[];
  fuzzCorrected: IntervalStats;
  presentMs: IntervalStats;
  fds: { baseline: number; after: number; afterTargets: string[] };
  rss: { baseline: number; max: number; after: number };
  /** The server's JS heap after a full GC. */
  heap: { baseline: number; after: number };
  bystander: {
    frames: number;
    gaps: number[];
    firstSequence: number;
    lastSequence: number;
    presented: number;
    released: number;
    framesSkipped: number | null;
    late: number;
    gone: unknown;
  };
  server: { crashed: string | null; suspicious: unknown[]; ended: Record<string, number>; streamEnded: unknown };
  findings: { kind: string; seed?: number; violations: string[]; saved?: string; detail?: unknown }[];
  seconds: number;
}

export interface WorkerTotals {
  sessions: number;
  messages: number;
  violations: number;
  outcomes: Record<string, number>;
  exact: number;
  ms: number;
  facts?: unknown;
  /** Known bugs met (ws-fuzz.ts KNOWN_WS_BUGS), by tag: reported, not failed. */
  known: Record<string, number>;
}

function addTotals(into: WorkerTotals, r: WorkerTotals): void {
  into.sessions += r.sessions;
  into.messages += r.messages;
  into.violations += r.violations;
  into.exact += r.exact;
  into.ms = Math.max(into.ms, r.ms);
  for (const [k, v] of Object.entries(r.outcomes)) into.outcomes[k] = (into.outcomes[k] ?? 0) + v;
  into.facts ??= r.facts;
  for (const [k, v] of Object.entries(r.known ?? {})) into.known[k] = (into.known[k] ?? 0) + (v as number);
}

const empty = (): WorkerTotals => ({
  sessions: 0,
  messages: 0,
  violations: 0,
  outcomes: {},
  exact: 0,
  ms: 0,
  known: {},
});

/** Lowers a worker's scheduling priority: the attackers must not win the CPU by the scheduler's grace alone. */
function nice(peer: Peer): void {
  try {
    os.setPriority(peer.pid, 10);
  } catch {
    // not permitted: run at the same priority
  }
}

export async function runFuzz(o: FuzzRunOptions): Promise<FuzzReport> {
  const t0 = Date.now();
  const group = new PeerGroup();
  const report: FuzzReport = {
    unix: empty(),
    ws: empty(),
    corpus: { replayed: 0, failed: [], known: [] },
    idle: [],
    fuzz: { n: 0, p50: 0, p99: 0, max: 0 },
    idleCorrected: [],
    periodMs: o.periodMs,
    fuzzCorrected: { n: 0, p50: 0, p99: 0, max: 0 },
    presentMs: { n: 0, p50: 0, p99: 0, max: 0 },
    fds: { baseline: 0, after: 0, afterTargets: [] },
    rss: { baseline: 0, max: 0, after: 0 },
    heap: { baseline: 0, after: 0 },
    bystander: {
      frames: 0,
      gaps: [],
      firstSequence: 0,
      lastSequence: 0,
      presented: 0,
      released: 0,
      framesSkipped: null,
      late: 0,
      gone: null,
    },
    server: { crashed: null, suspicious: [], ended: {}, streamEnded: {} },
    findings: [],
    seconds: 0,
  };
  const server = group.spawn('fuzz-server.ts', MEASURED_PRODUCER_FLAGS);
  let crashed: string | null = null;
  void server.exited.then(({ code, signal }) => {
    crashed = `the fuzz server exited (${code ?? signal}); stderr:\n${server.stderr.slice(-4000)}`;
  });
  try {
    const info = await server.call('start', {
      path: group.socketPath,
      period: o.periodMs,
      streamOptions: { maxPendingPerAddress: 64, maxPending: 128, maxClients: 64 },
    });
    const bystander = group.spawn('client.ts');
    // It takes input.v1 and cursor.v1 too: the server's lazily made state (the cursor's memfd) exists at the baseline.
    await bystander.call('connect', {
      path: group.socketPath,
      name: BYSTANDER_NAME,
      releaseMode: 'auto',
      features: ['frames.v1', 'input.v1', 'cursor.v1'],
    });
    let stopping = false;
    // Watched without a timer (waitEvent's would keep the process alive after a failure).
    server.child.on('message', (m: { event?: string }) => {
      if (m?.event === 'bystanderGone' && !stopping) report.bystander.gone = m;
    });

    const unixWorkers = Array.from({ length: o.unixWorkers }, () => group.spawn('fuzz-unix-worker.ts'));
    const wsWorkers = Array.from({ length: o.wsWorkers }, () => group.spawn('fuzz-ws-worker.ts'));
    for (const w of [...unixWorkers, ...wsWorkers]) nice(w);

    // The corpus first: every input that once broke something. It also warms the server up (modules
    // loaded on first use), before the idle noise and the fd baseline are taken.
    const unixCorpus = loadCorpus('unix');
    const wsCorpus = loadCorpus('ws');
    const replays: Promise<void>[] = [];
    if (unixWorkers.length)
      replays.push(
        unixWorkers[0]
          .call('replay', { path: group.socketPath, bootId: info.bootId, entries: unixCorpus.map((c) => c.entry) })
          .then((r) =>
            r.results.forEach((res: { violations: string[] }, i: number) => {
              report.corpus.replayed++;
              if (res.violations.length)
                report.corpus.failed.push({ file: unixCorpus[i].file, violations: res.violations });
            }),
          ),
      );
    if (wsWorkers.length)
      replays.push(
        wsWorkers[0]
          .call('replay', { wsUrl: info.wsUrl, token: info.token, entries: wsCorpus.map((c) => c.entry) })
          .then((r) =>
            r.results.forEach((res: { violations: string[]; known: string[] }, i: number) => {
              report.corpus.replayed++;
              if (res.violations.length)
                report.corpus.failed.push({ file: wsCorpus[i].file, violations: res.violations });
              const bug = (wsCorpus[i].entry as { known?: string }).known;
              if (bug) report.corpus.known.push({ file: wsCorpus[i].file, bug, reproduces: res.known.length > 0 });
            }),
          ),
      );
    await Promise.all(replays);
    o.log(
      `corpus: ${report.corpus.replayed} entries replayed, ${report.corpus.failed.length} failed` +
        report.corpus.known
          .map((k) => `; known bug ${k.bug} ${k.reproduces ? 'still reproduces' : 'NO LONGER reproduces'}`)
          .join(''),
    );

    // The machine's own noise: an idle producer (only the bystander connected).
    await server.call('phase', { name: 'idle-before' });
    await sleep(o.idleMs);
    const idleBefore = await server.call('phase', { name: 'fuzz' });
    report.idle.push(idleBefore.intervals);
    report.idleCorrected.push(idleBefore.corrected);
    const base = await server.call('stats');
    report.fds.baseline = base.fds;
    const baseTargets = new Set<string>(base.fdTargets);
    report.rss.baseline = base.rss;
    report.heap.baseline = base.heapUsed;
    o.log(
      `idle producer: present interval p50 ${report.idle[0].p50.toFixed(1)} ms, ` +
        `p99 ${report.idle[0].p99.toFixed(1)} ms, max ${report.idle[0].max.toFixed(1)} ms; ` +
        `server fds ${base.fds}, RSS ${(base.rss / 2 ** 20).toFixed(1)} MiB`,
    );

    const started = Date.now();
    const remaining = Math.max(1000, o.durationMs - (Date.now() - t0));
    const jobs: Promise<void>[] = [];
    unixWorkers.forEach((w, i) =>
      jobs.push(
        w
          .call('run', {
            path: group.socketPath,
            seed: (o.seed + i * 0x10000000) >>> 0,
            concurrency: o.concurrency,
            maxMessages: Math.ceil(o.unixMessages / unixWorkers.length),
            durationMs: remaining,
            bootId: info.bootId,
          })
          .then((r) => collect(report, 'unix', r, o)),
      ),
    );
    wsWorkers.forEach((w, i) =>
      jobs.push(
        w
          .call('run', {
            wsUrl: info.wsUrl,
            token: info.token,
            seed: (o.seed + 0x8000000 + i * 0x10000000) >>> 0,
            concurrency: Math.max(1, Math.floor(o.concurrency / 2)),
            maxMessages: Math.ceil(o.wsMessages / wsWorkers.length),
            durationMs: remaining,
          })
          .then((r) => collect(report, 'ws', r, o)),
      ),
    );
    const progress = setInterval(async () => {
      if (crashed) return;
      try {
        const s = await server.call('stats');
        o.log(
          `  … ${Math.round((Date.now() - started) / 1000)} s: ${s.sessionsEnded} unix sessions ended, ` +
            `input events ${s.inputEvents}, releases ${s.releases}, server fds ${s.fds}, ` +
            `clients ${s.clients}, RSS ${(s.rss / 2 ** 20).toFixed(1)} MiB`,
        );
      } catch {
        // the server's answer is checked below
      }
    }, 10000);
    try {
      await Promise.all(jobs);
    } finally {
      clearInterval(progress);
    }
    if (crashed) throw new Error(crashed);
    const fuzzPhase = await server.call('phase', { name: 'idle-after' });
    report.fuzz = fuzzPhase.intervals;
    report.fuzzCorrected = fuzzPhase.corrected;
    o.log(
      `under fuzzing: present interval p50 ${report.fuzz.p50.toFixed(1)} ms, p99 ${report.fuzz.p99.toFixed(1)} ms, ` +
        `max ${report.fuzz.max.toFixed(1)} ms (${report.fuzz.n} ticks); longest (ms / server CPU / less run-queue ` +
        `waits / loop idle): ${(report.fuzz.longest ?? []).map(formatInterval).join(' ')}` +
        `; less run-queue waits: p99 ${report.fuzzCorrected.p99.toFixed(1)} ms, ` +
        `max ${report.fuzzCorrected.max.toFixed(1)} ms`,
    );
    await sleep(o.idleMs);
    const afterPhase = await server.call('phase', { name: 'done' });
    report.idle.push(afterPhase.intervals);
    report.idleCorrected.push(afterPhase.corrected);
    o.log(
      `idle producer again: p99 ${afterPhase.intervals.p99.toFixed(1)} ms, ` +
        `max ${afterPhase.intervals.max.toFixed(1)} ms; ` +
        `less run-queue waits (before, after): p99 ${report.idleCorrected.map((i) => i.p99.toFixed(1)).join(', ')} ms`,
    );

    // Every session the workers opened is over: the server's fds come back to their baseline.
    const deadline = Date.now() + 15000;
    let after = await server.call('stats');
    while ((after.fds !== report.fds.baseline || after.clients !== 1) && Date.now() < deadline) {
      await sleep(200);
      after = await server.call('stats');
    }
    report.fds.after = after.fds;
    if (after.fds !== report.fds.baseline)
      report.fds.afterTargets = [
        ...after.fdTargets.filter((t: string) => !baseTargets.has(t)).map((t: string) => `+${t}`),
        ...[...baseTargets].filter((t) => !after.fdTargets.includes(t)).map((t) => `-${t}`),
      ];
    report.rss.after = after.rss;
    report.heap.after = after.heapUsed;
    report.rss.max = after.maxRss;
    report.server.suspicious = after.suspicious;
    report.server.ended = after.ended;
    report.server.streamEnded = after.streamEnded;

    // The bystander: every present reached it, in order, and it released each one.
    const byDeadline = Date.now() + 10000;
    while (after.bystander.lastReleased !== after.bystander.lastPresented && Date.now() < byDeadline) {
      await sleep(100);
      after = await server.call('stats');
    }
    const seqs = bystander.events.filter((e) => e.event === 'frame').map((e) => e.sequence as number);
    const gaps: number[] = [];
    for (let i = 1; i < seqs.length; i++) if (seqs[i] !== seqs[i - 1] + 1) gaps.push(seqs[i - 1], seqs[i]);
    Object.assign(report.bystander, {
      frames: seqs.length,
      gaps: gaps.slice(0, 20),
      firstSequence: seqs[0] ?? 0,
      lastSequence: seqs[seqs.length - 1] ?? 0,
      presented: after.bystander.lastPresented,
      released: after.bystander.lastReleased,
      framesSkipped: after.bystander.framesSkipped,
      late: after.bystander.late,
    });
    stopping = true;
    await server.call('stop');
  } finally {
    report.server.crashed = crashed;
    await group.cleanup();
    report.seconds = (Date.now() - t0) / 1000;
  }
  return report;
}

async function collect(report: FuzzReport, kind: 'unix' | 'ws', r: any, o: FuzzRunOptions): Promise<void> {
  addTotals(report[kind], r);
  for (const f of r.findings as { seed: number; violations: string[]; entry: CorpusEntry }[]) {
    const saved = o.saveFindings ? await saveCorpus(f.entry) : undefined;
    report.findings.push({ kind, seed: f.seed, violations: f.violations, saved, detail: f });
  }
  o.log(
    `${kind} worker: ${r.sessions} sessions, ${r.messages} messages in ${(r.ms / 1000).toFixed(1)} s ` +
      `(${Math.round(r.messages / (r.ms / 1000))} messages/s), ${r.violations} sessions against the spec` +
      (r.facts?.answers ? `; the probe: ${JSON.stringify(r.facts.answers)}` : '') +
      Object.entries(r.known ?? {})
        .map(([k, v]) => `; known bug ${k} met ${v} times`)
        .join(''),
  );
}

/** Every oracle, as a list of failures (empty: the run passed). */
export function judgeReport(r: FuzzReport): string[] {
  const failures: string[] = [];
  if (r.server.crashed) failures.push(r.server.crashed);
  if (r.server.suspicious.length)
    failures.push(`sessions ended with codes a client cannot cause: ${JSON.stringify(r.server.suspicious)}`);
  for (const f of r.findings)
    failures.push(`${f.kind} seed ${f.seed}: ${f.violations.join('; ')}${f.saved ? ` (saved ${f.saved})` : ''}`);
  for (const c of r.corpus.failed) failures.push(`corpus ${c.file}: ${c.violations.join('; ')}`);
  if (r.fds.after !== r.fds.baseline)
    failures.push(`server fds ${r.fds.after}, baseline ${r.fds.baseline}: ${r.fds.afterTargets.join(' ')}`);
  if (r.bystander.gone) failures.push(`the bystander was disconnected: ${JSON.stringify(r.bystander.gone)}`);
  if (r.bystander.gaps.length) failures.push(`the bystander missed frames: ${r.bystander.gaps.join(',')}`);
  if (r.bystander.framesSkipped !== 0)
    failures.push(`the server skipped ${r.bystander.framesSkipped} bystander frames`);
  if (r.bystander.released !== r.bystander.presented)
    failures.push(`the bystander released ${r.bystander.released}, presented ${r.bystander.presented}`);
  if (r.bystander.lastSequence !== r.bystander.presented)
    failures.push(`the bystander's last frame ${r.bystander.lastSequence}, presented ${r.bystander.presented}`);
  // No hang: the producer's loop always comes round (its own delays; other processes' load taken out).
  if (r.fuzzCorrected.max > 1000)
    failures.push(`the producer's event loop stalled ${r.fuzzCorrected.max.toFixed(0)} ms under fuzzing`);
  // No slower pace: within one period of the machine's own noise (the idle producer's p99, same run).
  const noise = Math.max(...r.idleCorrected.map((i) => i.p99));
  if (r.idleCorrected.length && r.idleCorrected.every((i) => i.n > 0) && r.fuzzCorrected.p99 > noise + r.periodMs)
    failures.push(
      `the producer's present interval p99 under fuzzing was ${r.fuzzCorrected.p99.toFixed(1)} ms (less ` +
        `run-queue waits), beyond its idle p99 ${noise.toFixed(1)} ms + one period (${r.periodMs} ms)`,
    );
  const rssGrowth = r.rss.after - r.rss.baseline;
  if (rssGrowth > 96 * 2 ** 20) failures.push(`server RSS grew ${(rssGrowth / 2 ** 20).toFixed(1)} MiB`);
  const heapGrowth = r.heap.after - r.heap.baseline;
  if (heapGrowth > 16 * 2 ** 20)
    failures.push(`the server's JS heap (after GC) grew ${(heapGrowth / 2 ** 20).toFixed(1)} MiB`);
  return failures;
}
