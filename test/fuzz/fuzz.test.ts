/**
 * The bounded fuzz run CI does on every `npm test` (issue 13): at least 50,000 unix-socket messages
 * and 10,000 WebSocket messages of structured, mutated client traffic, from separate processes over
 * real sockets with real fds of every kind, against a real server process, judged message by
 * message against docs/protocol.md and docs/remote.md (test/fuzz/lib/unix-model.ts, ws-fuzz.ts),
 * with the corpus (test/fuzz/corpus/) replayed first. Oracles: the server never crashes or hangs,
 * every session gets an answer the spec allows, its fds return to their baseline, its RSS stays
 * bounded, and a well-behaved bystander client in another process loses no frame. A new seed every
 * run (printed; SURFACELINK_FUZZ_SEED repeats one). Long runs: `npm run fuzz -- --minutes N`.
 */
import { expect } from 'chai';
import { judgeReport, runFuzz } from './lib/harness.js';

describe('fuzz (bounded CI run)', function () {
  this.timeout(200000);
  const seed = Number(process.env.SURFACELINK_FUZZ_SEED ?? Date.now() % 0x100000000) >>> 0;

  it(`≥ 50,000 unix and ≥ 10,000 WebSocket messages: every oracle holds (seed ${seed})`, async () => {
    const log = (line: string): void => console.log(`    ${line}`);
    const report = await runFuzz({
      unixMessages: 50000,
      wsMessages: 10000,
      durationMs: 140000,
      unixWorkers: 1,
      wsWorkers: 1,
      concurrency: 6,
      seed,
      periodMs: 33,
      idleMs: 3000,
      saveFindings: false,
      log,
    });
    const rate = (n: number, ms: number): number => Math.round(n / (ms / 1000));
    log(
      `unix: ${report.unix.messages} messages in ${report.unix.sessions} sessions ` +
        `(${rate(report.unix.messages, report.unix.ms)}/s; ${report.unix.exact} judged exactly); ` +
        `answers ${JSON.stringify(report.unix.outcomes)}`,
    );
    log(
      `WebSocket: ${report.ws.messages} messages in ${report.ws.sessions} sessions ` +
        `(${rate(report.ws.messages, report.ws.ms)}/s); answers ${JSON.stringify(report.ws.outcomes)}`,
    );
    log(
      `bystander: ${report.bystander.frames} frames, sequences ${report.bystander.firstSequence}..` +
        `${report.bystander.lastSequence}, ${report.bystander.gaps.length / 2} gaps, ` +
        `${report.bystander.late} producer ticks it was still holding the previous frame`,
    );
    log(
      `server: fds ${report.fds.baseline} → ${report.fds.after}, RSS ${(report.rss.baseline / 2 ** 20).toFixed(1)} → ` +
        `${(report.rss.after / 2 ** 20).toFixed(1)} MiB (max ${(report.rss.max / 2 ** 20).toFixed(1)}), ` +
        `heap after GC ${(report.heap.baseline / 2 ** 20).toFixed(1)} → ` +
        `${(report.heap.after / 2 ** 20).toFixed(1)} MiB; ` +
        `sessions ended ${JSON.stringify(report.server.ended)}; in ${report.seconds.toFixed(0)} s`,
    );
    for (const f of report.findings)
      log(`finding (${f.kind}, seed ${f.seed}): ${JSON.stringify((f.detail as { entry?: unknown })?.entry)}`);
    expect(judgeReport(report)).to.deep.equal([]);
    expect(report.unix.messages, 'unix messages').to.be.at.least(50000);
    expect(report.ws.messages, 'WebSocket messages').to.be.at.least(10000);
    expect(report.bystander.frames, 'bystander frames').to.be.greaterThan(100);
  });
});
