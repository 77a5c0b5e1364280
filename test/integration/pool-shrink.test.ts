/**
 * Issue 13, finding 6: the pool shrinks back. Two clients that never release hold two old buffers,
 * so the 60 fps producer's pool grows past its configured 3; once the two are dropped at their
 * deadline and nobody needs the extra buffers for `shrinkDelayMs`, the pool goes back to 3: the
 * surface's bufferCount and poolStats say so, the server emits 'pool' and logs it, and a client
 * that knew the extra buffers gets RETIRE for each and unmaps them.
 */
import { expect } from 'chai';
import { PeerGroup, eventually, type Peer } from '../helpers.js';

describe('pool growth and shrinking (issue 13, finding 6)', function () {
  this.timeout(60000);
  let group: PeerGroup;

  beforeEach(() => {
    group = new PeerGroup();
  });
  afterEach(() => group.cleanup());

  it('grows with stuck clients, shrinks back to the configured size once they are gone', async () => {
    const limit = 1000;
    const server = group.spawn('load-producer.ts');
    await server.call('listen', {
      path: group.socketPath,
      options: { releaseTimeoutMs: limit },
      surface: { buffers: 3, maxBuffers: 8 },
      fps: 60,
    });
    // A viewer that holds each frame 30..40 ms (two frame periods): it sees every buffer in turn.
    const viewer = group.spawn('many-clients.ts');
    await viewer.call('connect', { path: group.socketPath, count: 1, prefix: 'viewer', holdMinMs: 30, holdMaxMs: 40 });
    const stuck: Peer[] = [];
    for (const name of ['stuckA', 'stuckB']) {
      const p = group.spawn('many-clients.ts');
      await p.call('connect', { path: group.socketPath, count: 1, prefix: name, stuck: true });
      await eventually(async () => (await p.call('stats')).frames >= 1, 10000, `${name} holds a frame`);
      stuck.push(p);
    }
    await eventually(async () => (await server.call('stats')).bufferCount > 3, 5000, 'the pool grew');
    const grown = await server.call('stats');
    // The viewer has been given (SCANOUT) buffers the pool grew by: it maps more than the configured 3.
    await eventually(async () => (await viewer.call('stats')).mappedBuffers > 3, 5000, 'the viewer maps the new ones');
    await server.waitEvent('clientGone', (e) => e.name === 'stuckA-0', 10000);
    await server.waitEvent('clientGone', (e) => e.name === 'stuckB-0', 10000);
    // Default shrinkDelayMs is 2000: back within two periods and a few sweeps.
    await eventually(async () => (await server.call('stats')).bufferCount === 3, 8000, 'the pool shrank back to 3');
    const after = await server.call('stats');
    const detail = JSON.stringify({ grown: grown.pool, after: after.pool, events: after.poolEvents.length });
    expect(grown.bufferCount, detail).to.be.within(4, 8);
    expect(after.pool, detail).to.include({ buffers: 3, configured: 3, maxBuffers: 8 });
    expect(after.pool.peak, detail).to.be.at.least(grown.bufferCount);
    expect(after.pool.grown, detail).to.be.at.least(grown.bufferCount - 3);
    expect(after.pool.shrunk, detail).to.equal(after.pool.grown);
    const kinds = after.poolEvents.map((e: { change: string }) => e.change);
    expect(kinds.filter((k: string) => k === 'grew').length, detail).to.equal(after.pool.grown);
    expect(kinds.filter((k: string) => k === 'shrank').length, detail).to.equal(after.pool.shrunk);
    expect(after.logs.some((l: string) => /^info: surface \d+: pool shrank to 3 buffers/.test(l))).to.equal(true);
    expect(after.logs.some((l: string) => /^info: surface \d+: pool grew to \d buffers/.test(l))).to.equal(true);
    // The viewer was told (RETIRE) and unmapped what the pool gave back: at most the 3 left.
    await eventually(async () => (await viewer.call('stats')).mappedBuffers <= 3, 5000, 'the viewer unmapped them');
    const v = await viewer.call('stats');
    expect(v.codes).to.deep.equal({});
    // And it keeps receiving frames after the shrink.
    const framesThen = v.frames;
    await eventually(async () => (await viewer.call('stats')).frames > framesThen + 5, 5000, 'frames go on');
  });
});
