/**
 * Issue 13, finding 1, the logging half: the default logger never queues without bound on a
 * stderr nobody reads (it drops lines and says how many once it can write again), peer-supplied
 * text is cut and kept on one line, and PeerLog keeps the lines peers cause within a budget per
 * peer and one for all peers, saying how many it suppressed.
 */
import { expect } from 'chai';
import { ALL_PEERS_LOG_BURST, PEER_LOG_BURST, PEER_TEXT_MAX, PeerLog, peerText, type LogLevel } from '../../src/log.js';
import { Peer, sleep } from '../helpers.js';

const MB = 1024 * 1024;

/** peer.call, failing after `ms` (a process blocked writing to a full pipe never answers). */
function callWithin<T>(peer: Peer, cmd: string, args: Record<string, unknown> = {}, ms = 15000): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${cmd}: no answer within ${ms} ms (blocked writing to stderr?)`)), ms);
  });
  return Promise.race([peer.call<T>(cmd, args), late]).finally(() => clearTimeout(timer));
}

describe('flood: the default logger and the log budgets (issue 13)', function () {
  this.timeout(60000);

  it('stderrLogger, stderr on a pipe nobody reads: at most 64 KiB wait; the rest is dropped and counted', async () => {
    const peer = new Peer('flood-logger.ts');
    try {
      // Nobody reads the pipe until the end.
      const stderr = peer.child.stderr!;
      stderr.removeAllListeners('data');
      stderr.pause();
      const before: { rss: number } = await callWithin(peer, 'rss');
      // 20,000 lines of ~2 KiB: 40 MB if they were queued.
      const logged: { maxQueued: number; queued: number; rss: number } = await callWithin(peer, 'log', {
        lines: 20000,
        bytes: 2048,
      });
      expect(logged.maxQueued, JSON.stringify(logged)).to.be.at.most(64 * 1024);
      expect(logged.rss - before.rss, JSON.stringify(logged)).to.be.lessThan(16 * MB);
      // Read at last: the pipe drains, and the next line says how many were dropped.
      let text = '';
      stderr.on('data', (d: Buffer) => (text += d.toString()));
      stderr.resume();
      await sleep(500);
      await callWithin(peer, 'log', { lines: 1, bytes: 10 });
      await sleep(500);
      const dropped =
        /surfacelink warn: (\d+) log lines dropped \(the log stream was not draining\)\nsurfacelink warn: line 0 y{10}\n/.exec(
          text,
        );
      expect(dropped, text.slice(-500)).to.not.equal(null);
      const kept = text.split('\n').filter((l) => /^surfacelink warn: line \d+ /.test(l)).length;
      // Every line is either written or counted as dropped (the last is the 1 logged after the read).
      expect(Number(dropped![1]) + kept).to.equal(20001);
      expect(Number(dropped![1])).to.be.greaterThan(19000);
      // Long lines are cut, their length noted.
      const long: { maxQueued: number } = await callWithin(peer, 'log', { lines: 1, bytes: 100000 });
      expect(long.maxQueued).to.be.at.most(64 * 1024);
      await sleep(300);
      expect(text).to.match(
        new RegExp(
          `surfacelink warn: line 0 y{${4096 - 'surfacelink warn: line 0 '.length}}… \\(100025 characters\\)\\n`,
        ),
      );
    } finally {
      peer.child.kill('SIGKILL');
      await peer.exited;
    }
  });

  it('peerText: control characters escaped (one line stays one line), cut with the length noted', () => {
    expect(peerText('fine')).to.equal('fine');
    expect(peerText('two\nlines\r\u0000\u2028')).to.equal('two\\u000alines\\u000d\\u0000\\u2028');
    const long = 'z'.repeat(70000);
    expect(peerText(long)).to.equal(`${'z'.repeat(PEER_TEXT_MAX)}… (70000 characters)`);
    expect(peerText(long, 10)).to.equal(`${'z'.repeat(10)}… (70000 characters)`);
  });

  it('PeerLog: a burst per peer, then suppressed and counted; the next line through says how many', async () => {
    const lines: string[] = [];
    const log = new PeerLog((_level: LogLevel, message: string) => lines.push(message));
    for (let i = 0; i < 100; i++) log.log('client pid 1', 'warn', `a ${i}`);
    expect(lines).to.have.length(PEER_LOG_BURST);
    expect(log.suppressed).to.equal(100 - PEER_LOG_BURST);
    // Another peer has a budget of its own.
    log.log('client pid 2', 'warn', 'b 0');
    expect(lines.at(-1)).to.equal('b 0');
    // Its disconnect line is charged to the overall budget only, and reports what was suppressed.
    log.final('client pid 1', 'warn', 'client 1 disconnected');
    expect(lines.slice(-2)).to.deep.equal([
      `client pid 1: ${100 - PEER_LOG_BURST} log lines suppressed (over its log budget)`,
      'client 1 disconnected',
    ]);
    // The bucket refills (2 a second): after a second, a line gets through again.
    log.log('client pid 1', 'warn', 'suppressed');
    await sleep(1100);
    log.log('client pid 1', 'warn', 'again');
    expect(lines.slice(-2)).to.deep.equal(['client pid 1: 1 log line suppressed (over its log budget)', 'again']);
  });

  it('PeerLog: all peers together get ALL_PEERS_LOG_BURST lines, however many peers there are', () => {
    const lines: string[] = [];
    const log = new PeerLog((_level: LogLevel, message: string) => lines.push(message));
    for (let i = 0; i < 1000; i++) log.log(`client pid ${i}`, 'warn', `line ${i}`);
    // The overall bucket refills at 10 a second: a slow loop may let a few more through, never hundreds.
    expect(lines.length)
      .to.be.at.least(ALL_PEERS_LOG_BURST)
      .and.below(ALL_PEERS_LOG_BURST + 20);
  });
});
