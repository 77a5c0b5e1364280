/**
 * Issue 13, finding 5: connection bursts. 256 clients connecting at once — four processes opening 64
 * connections each in one turn of their loops — while the server's loop is busy, so that none is
 * accepted until all have connected: every one gets in (the listen backlog holds them). And with a
 * backlog too small for the burst, the clients retry the connects the queue refuses (EAGAIN) within
 * their connect timeout; with `retryConnect: false` they fail at once, saying why.
 */
import { expect } from 'chai';
import { PeerGroup, type Peer } from '../helpers.js';

describe('connection bursts (issue 13, finding 5)', function () {
  this.timeout(60000);
  let group: PeerGroup;

  beforeEach(() => {
    group = new PeerGroup();
  });
  afterEach(() => group.cleanup());

  async function server(options: Record<string, unknown>): Promise<Peer> {
    const p = group.spawn('load-producer.ts');
    await p.call('listen', {
      path: group.socketPath,
      options: { maxClients: 1000, helloTimeoutMs: 30000, ...options },
      surface: { buffers: 3 },
    });
    return p;
  }

  /** Client processes, started and answering before the burst. */
  async function processes(n: number): Promise<Peer[]> {
    const procs = Array.from({ length: n }, () => group.spawn('many-clients.ts'));
    await Promise.all(procs.map((p) => p.call('stats')));
    return procs;
  }

  it('256 clients connecting at once while the server is busy all get in', async () => {
    const s = await server({});
    const procs = await processes(4);
    // The server's loop is busy for 2 s from its next turn: nothing is accepted meanwhile.
    await s.call('stallSoon', { ms: 2000 });
    const results = await Promise.all(
      procs.map((p, i) =>
        p.call('connect', { path: group.socketPath, count: 64, prefix: `burst${i}`, options: { timeoutMs: 20000 } }),
      ),
    );
    const failed = results.flatMap((r) => r.failed);
    expect(failed.length, JSON.stringify(failed.slice(0, 3))).to.equal(0);
    expect(results.map((r) => r.connected)).to.deep.equal([64, 64, 64, 64]);
    const stats = await s.call('stats');
    expect(stats.clients.length).to.equal(256);
    expect(stats.gone).to.deep.equal([]);
  });

  it('clients retry connects a full listen queue refuses, within their timeout', async () => {
    // A queue of 2 (the kernel keeps one more): most of 100 connects meet EAGAIN while the loop is busy.
    const s = await server({ listenBacklog: 2 });
    const [p, q] = await processes(2);
    await s.call('stallSoon', { ms: 1500 });
    const [retried, once] = await Promise.all([
      p.call('connect', { path: group.socketPath, count: 100, prefix: 'retry', options: { timeoutMs: 20000 } }),
      q.call('connect', {
        path: group.socketPath,
        count: 100,
        prefix: 'once',
        options: { timeoutMs: 20000, retryConnect: false },
      }),
    ]);
    expect(retried.failed, JSON.stringify(retried.failed.slice(0, 3))).to.deep.equal([]);
    expect(retried.connected).to.equal(100);
    // Without retries the same burst loses connects at the queue, each saying why.
    expect(once.failed.length).to.be.greaterThan(0);
    for (const f of once.failed) {
      expect(f.code).to.equal('E_CONNECT');
      expect(f.message).to.include('not accepting connections fast enough');
    }
    const stats = await s.call('stats');
    expect(stats.clients.length).to.equal(100 + once.connected);
  });
});
