/**
 * Long fuzz runs: `npm run fuzz -- --minutes N [--seed S] [--unix-workers K] [--ws-workers K]`.
 * The same harness and oracles as the CI test (test/fuzz/fuzz.test.ts), for N minutes instead of a
 * message budget; every input that breaks an oracle is written to test/fuzz/corpus/ (replayed by
 * every later run). Exits 1 if any oracle failed.
 */
import { judgeReport, runFuzz } from '../test/fuzz/lib/harness.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v < 0) throw new Error(`--${name} needs a number`);
  return v;
}

async function main(): Promise<void> {
  const minutes = arg('minutes', 1);
  const seed = arg('seed', Date.now() % 0x100000000);
  const periodMs = 33;
  console.log(`fuzz: ${minutes} min, seed ${seed}`);
  const report = await runFuzz({
    unixMessages: Number.MAX_SAFE_INTEGER,
    wsMessages: Number.MAX_SAFE_INTEGER,
    durationMs: minutes * 60000,
    unixWorkers: arg('unix-workers', 2),
    wsWorkers: arg('ws-workers', 1),
    concurrency: arg('concurrency', 6),
    seed,
    periodMs,
    idleMs: 4000,
    saveFindings: true,
    log: (line) => console.log(line),
  });
  console.log(
    JSON.stringify(
      { ...report, findings: report.findings.map((f) => ({ ...f, detail: undefined })) },
      (_k, v) => (v === Infinity ? null : v),
      1,
    ),
  );
  const failures = judgeReport(report);
  for (const f of failures) console.log(`FAIL: ${f}`);
  console.log(failures.length ? `${failures.length} oracle(s) failed` : 'every oracle passed');
  process.exit(failures.length ? 1 : 0);
}

main().catch((error) => {
  console.error(error);
  process.exit(2);
});
