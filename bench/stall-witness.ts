/**
 * `node --import tsx bench/stall-witness.ts [--seconds N] [--processes N]`: what a loaded machine
 * does to a Node event loop that does nothing but tick. It starts N witness processes with V8's
 * default (parallel) garbage collector and N with `--single-threaded-gc`, each ticking every 5 ms
 * and allocating a little per tick (as a producer does), for N seconds; run it beside the load
 * you care about (a full test run, say). Each witness records every interval that ran more than
 * 12 ms late beyond what its own CPU time and its main thread's run-queue wait explain, with:
 * the process's CPU time in it, the main thread's run-queue wait, the other threads' run-queue
 * wait (/proc/self/task/<tid>/schedstat), the event loop's idle time (eventLoopUtilization) and
 * the garbage collections that overlapped it. Beside them, N copies of the same loop in C
 * (bench/native/stall_witness.c, compiled to build/ with cc; skipped, saying so, without one).
 * Writes bench/results/<time>-stall-witness.json.
 *
 * This is why the chaos, fuzz and flood producers run with `--single-threaded-gc`
 * (MEASURED_PRODUCER_FLAGS in test/helpers.ts): with the parallel collector, a scavenge makes the
 * main thread wait for helper threads that other processes keep off the CPUs, a stall its own
 * run-queue wait does not show. A measurement, not a test: it asserts nothing.
 */
import { execFile, execFileSync, fork } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { performance, PerformanceObserver } from 'node:perf_hooks';

const PERIOD_MS = 5;
const LATE_MS = 12;

interface Stall {
  ms: number;
  cpuMs: number;
  waitMs: number;
  othersWaitMs: number;
  idleMs: number;
  /** Overlapping collections, "kind:duration" (kind: 1 minor, 2 major, 4 incremental, 8 weak callbacks). */
  gc: string[];
}

function waitMs(file: string): number {
  try {
    return Number(fs.readFileSync(file, 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return 0;
  }
}

function othersWaitMs(): number {
  let sum = 0;
  for (const tid of fs.readdirSync('/proc/self/task'))
    if (Number(tid) !== process.pid) sum += waitMs(`/proc/self/task/${tid}/schedstat`);
  return sum;
}

/** One witness: ticks for `seconds`, then sends its stalls to the parent. */
function witness(seconds: number): void {
  const gcs: { start: number; ms: number; kind: number }[] = [];
  new PerformanceObserver((list) => {
    for (const e of list.getEntries())
      gcs.push({ start: e.startTime, ms: e.duration, kind: (e as { detail?: { kind?: number } }).detail?.kind ?? 0 });
  }).observe({ entryTypes: ['gc'] });
  const sample = (): { t: number; wait: number; others: number; loop: { idle: number }; cpu: NodeJS.CpuUsage } => ({
    t: performance.now(),
    wait: waitMs('/proc/self/schedstat'),
    others: othersWaitMs(),
    loop: performance.eventLoopUtilization(),
    cpu: process.cpuUsage(),
  });
  let last = sample();
  const end = last.t + seconds * 1000;
  const stalls: Stall[] = [];
  let ticks = 0;
  let keep: number[][] = [];
  const tick = (): void => {
    const s = sample();
    const ms = s.t - last.t;
    const cpuMs = (s.cpu.user + s.cpu.system - last.cpu.user - last.cpu.system) / 1000;
    const wait = s.wait - last.wait;
    ticks++;
    if (ms - PERIOD_MS - wait - cpuMs > LATE_MS)
      stalls.push({
        ms,
        cpuMs,
        waitMs: wait,
        othersWaitMs: s.others - last.others,
        idleMs: s.loop.idle - last.loop.idle,
        gc: gcs.filter((g) => g.start < s.t && g.start + g.ms > last.t).map((g) => `${g.kind}:${g.ms.toFixed(1)}`),
      });
    keep.push(new Array(300).fill(ticks));
    if (keep.length > 3000) keep = [];
    last = s;
    if (s.t < end) setTimeout(tick, PERIOD_MS);
    else
      process.send!(
        {
          gc: process.execArgv.includes('--single-threaded-gc') ? 'single-threaded' : 'parallel',
          ticks,
          collections: gcs.length,
          stalls,
        },
        () => process.exit(0),
      );
  };
  setTimeout(tick, PERIOD_MS);
}

interface Result {
  gc: string;
  ticks: number;
  collections: number;
  stalls: Stall[];
}

function summarize(gc: string, results: Result[]): Record<string, unknown> {
  const mine = results.filter((r) => r.gc === gc);
  const stalls = mine.flatMap((r) => r.stalls);
  const unexplained = (s: Stall): number => s.ms - PERIOD_MS - s.waitMs - s.cpuMs;
  const inGc = stalls.filter((s) => s.gc.length > 0);
  const rest = stalls.filter((s) => s.gc.length === 0);
  return {
    gc,
    processes: mine.length,
    ticks: mine.reduce((a, r) => a + r.ticks, 0),
    collections: mine.reduce((a, r) => a + r.collections, 0),
    stalls: stalls.length,
    duringCollection: inGc.length,
    duringCollectionMaxMs: Math.max(0, ...inGc.map((s) => s.ms)),
    duringCollectionOthersWaitMs: inGc.map((s) => Number(s.othersWaitMs.toFixed(1))),
    otherStalls: rest.length,
    otherStallsMaxUnexplainedMs: Math.max(0, ...rest.map(unexplained)),
  };
}

interface CResult {
  ticks: number;
  stalls: number;
  max_unexplained_ms: number;
}

/** Starts `processes` C witnesses (compiled first if needed); null where there is no C compiler. */
function cWitnesses(processes: number, seconds: number): Promise<CResult[] | null> {
  const root = path.join(__dirname, '..');
  const src = path.join(root, 'bench', 'native', 'stall_witness.c');
  const exe = path.join(root, 'build', 'stall_witness');
  try {
    if (!fs.existsSync(exe) || fs.statSync(src).mtimeMs > fs.statSync(exe).mtimeMs) {
      fs.mkdirSync(path.dirname(exe), { recursive: true });
      execFileSync(process.env.CC ?? 'cc', ['-O2', '-Wall', '-Wextra', '-o', exe, src], { stdio: 'inherit' });
    }
  } catch (e) {
    console.log(`no C witnesses: ${(e as Error).message}`);
    return Promise.resolve(null);
  }
  const one = (): Promise<CResult> =>
    new Promise((resolve, reject) =>
      execFile(exe, [String(seconds)], (error, stdout) => (error ? reject(error) : resolve(JSON.parse(stdout)))),
    );
  return Promise.all(Array.from({ length: processes }, one));
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const opt = (name: string, def: number): number => {
    const i = args.indexOf(name);
    return i >= 0 ? Number(args[i + 1]) : def;
  };
  const seconds = opt('--seconds', 120);
  const processes = opt('--processes', 3);
  if (!(seconds > 0) || !(processes >= 1)) {
    console.error('usage: node --import tsx bench/stall-witness.ts [--seconds N] [--processes N]');
    process.exit(2);
  }
  console.log(
    `${processes} + ${processes} Node witnesses (parallel GC, --single-threaded-gc), ` +
      `${processes} in C, ${seconds} s…`,
  );
  const load = fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0];
  const runs = [];
  for (let i = 0; i < processes * 2; i++) {
    const flags = i % 2 ? ['--single-threaded-gc'] : [];
    const child = fork(__filename, ['--witness', String(seconds)], { execArgv: ['--import', 'tsx', ...flags] });
    runs.push(
      new Promise<Result>((resolve, reject) => {
        child.once('message', (m) => resolve(m as Result));
        child.once('exit', (code) => reject(new Error(`a witness exited (${code}) without reporting`)));
      }),
    );
  }
  const c = cWitnesses(processes, seconds);
  const results = await Promise.all(runs);
  const cResults = await c;
  const summary = {
    seconds,
    loadAtStart: Number(load),
    loadAtEnd: Number(fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]),
    parallel: summarize('parallel', results),
    singleThreaded: summarize('single-threaded', results),
    c: cResults && {
      processes: cResults.length,
      ticks: cResults.reduce((a, r) => a + r.ticks, 0),
      stalls: cResults.reduce((a, r) => a + r.stalls, 0),
      maxUnexplainedMs: Math.max(0, ...cResults.map((r) => r.max_unexplained_ms)),
    },
  };
  console.log(JSON.stringify(summary, null, 1));
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const file = path.join(__dirname, 'results', `${stamp}-stall-witness.json`);
  fs.writeFileSync(file, JSON.stringify({ summary, results }, null, 1));
  console.log(`wrote ${path.relative(process.cwd(), file)}`);
}

if (process.argv[2] === '--witness') witness(Number(process.argv[3]));
else
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
