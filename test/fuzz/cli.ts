/**
 * Long fuzz runs (issue 13), beyond what CI's bounded run (test/fuzz/*.test.ts) does:
 *
 *   npm run fuzz -- --minutes N [--seed S] [--unix-workers K] [--ws-workers K] [--concurrency C]
 *     The protocol fuzzers: structured, mutated unix-socket and WebSocket traffic from separate
 *     processes against a real server process, every session judged against the spec, with the
 *     oracles of test/fuzz/lib/harness.ts, for N minutes. Every input that breaks an oracle is written
 *     to test/fuzz/corpus/ (replayed by every later run, CI's included).
 *
 *   npm run fuzz:codec -- [--seconds S] [--runs N] [--seed S]
 *     The property-based fuzzers of test/fuzz/lib/codec-properties.ts (every reader of the codec, the
 *     stream parser and tile decoder, the native channel's framing), N cases per property per round,
 *     a new seed each round, for S seconds.
 *
 * Exits 1 if an oracle or a property failed (the seed to repeat it is printed).
 */
import { runChannelProperty, runCodecProperties } from './lib/codec-properties.js';
import { judgeReport, runFuzz } from './lib/harness.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a number`);
  return v;
}

async function protocols(): Promise<number> {
  const minutes = arg('minutes', 1);
  const seed = arg('seed', Date.now() % 0x100000000);
  console.log(`fuzz: ${minutes} min, seed ${seed}`);
  const report = await runFuzz({
    unixMessages: Number.MAX_SAFE_INTEGER,
    wsMessages: Number.MAX_SAFE_INTEGER,
    durationMs: minutes * 60000,
    unixWorkers: arg('unix-workers', 1),
    wsWorkers: arg('ws-workers', 1),
    concurrency: arg('concurrency', 6),
    seed,
    periodMs: 33,
    idleMs: 4000,
    saveFindings: true,
    log: (line) => console.log(line),
  });
  const { unix, ws } = report;
  const rate = (n: number, ms: number): number => Math.round(n / (ms / 1000));
  console.log(`unix: ${unix.messages} messages, ${unix.sessions} sessions, ${rate(unix.messages, unix.ms)}/s`);
  console.log(`  answers ${JSON.stringify(unix.outcomes)}`);
  console.log(`WebSocket: ${ws.messages} messages, ${ws.sessions} sessions, ${rate(ws.messages, ws.ms)}/s`);
  console.log(`  answers ${JSON.stringify(ws.outcomes)}; known bugs met ${JSON.stringify(ws.known)}`);
  console.log(`bystander: ${JSON.stringify(report.bystander)}`);
  console.log(
    `server: fds ${JSON.stringify(report.fds)}, RSS ${JSON.stringify(report.rss)}, heap ${JSON.stringify(report.heap)}`,
  );
  const failures = judgeReport(report);
  for (const f of failures) console.log(`FAIL: ${f}`);
  console.log(failures.length ? `${failures.length} oracle(s) failed (seed ${seed})` : 'every oracle held');
  return failures.length ? 1 : 0;
}

async function codec(): Promise<number> {
  const runs = arg('runs', 5000);
  const seconds = arg('seconds', 60);
  let seed = arg('seed', Date.now() % 0x7fffffff);
  const deadline = Date.now() + seconds * 1000;
  let rounds = 0;
  let cases = 0;
  do {
    console.log(`round ${rounds + 1}, seed ${seed}`);
    for (const r of runCodecProperties(runs, seed, console.log)) cases += r.runs;
    cases += (await runChannelProperty(Math.max(50, Math.floor(runs / 10)), seed, console.log)).runs;
    rounds++;
    seed = (seed * 48271) % 0x7fffffff;
  } while (Date.now() < deadline);
  console.log(`${rounds} rounds, ${cases} cases: every property held`);
  return 0;
}

(process.argv[2] === 'codec' ? codec() : protocols()).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
