/**
 * dmabuf.v1 between separate processes, on real kernel objects: udmabuf, the system
 * dma-heap and vgem. Runs inside the throw-away VM (npm run test:vm); see test/vm.test.ts.
 */
import { expect } from 'chai';
import * as path from 'node:path';
import { ErrorCode } from '../../src/errors.js';
import { Peer, PeerGroup, ROOT, eventually, run } from '../helpers.js';

const inVm = process.env.SURFACELINK_IN_VM === '1';
const RAW_PEER = path.join(ROOT, 'test', 'fixtures', 'raw_peer.py');

(inVm ? describe : describe.skip)('dmabuf.v1 in a real kernel (VM)', function () {
  this.timeout(120000);
  let group: PeerGroup;
  let socketPath: string;
  let server: Peer;
  const client = (options: Record<string, unknown> = {}): Promise<Peer> =>
    group.client({ mechanisms: ['dmabuf.v1', 'shm.v1'], ...options });

  beforeEach(async () => {
    group = new PeerGroup();
    socketPath = group.socketPath;
    server = await group.server({ releaseTimeoutMs: 20000 });
  });

  afterEach(() => group.cleanup());

  for (const allocator of ['udmabuf', 'dma-heap', 'vgem']) {
    it(`shares ${allocator} dma-bufs: the same object in both processes, read back exactly under SYNC`, async () => {
      const s = await server.call('surface', { width: 64, height: 48, allocator });
      expect(s.kind).to.equal(`dmabuf:${allocator}`);
      const c = await client({ releaseMode: 'hold' });
      expect((await c.waitEvent('negotiated')).mechanism).to.equal('dmabuf.v1');
      const presented = await server.call('present', { fill: 0x5a });
      const frame = await c.waitEvent('frame');
      expect(frame.mechanism).to.equal('dmabuf.v1');
      expect(frame.kind).to.equal('dmabuf');
      expect(frame.inode).to.equal(presented.inode);
      expect(frame.planes).to.deep.equal([0x5a]);
    });
  }

  it('round-trips a two-plane NV12 surface', async () => {
    await server.call('surface', { width: 64, height: 48, format: 'NV12', allocator: 'udmabuf' });
    const c = await client();
    await server.call('present', { fill: 0x30 });
    const frame = await c.waitEvent('frame');
    expect(frame.format).to.equal('NV12');
    expect(frame.planes).to.deep.equal([0x30, 0x31]); // Y plane, then CbCr plane
  });

  it('serves a dmabuf.v1 client and a shm.v1 client from the same surface at once', async () => {
    await server.call('surface', { width: 64, height: 48, allocator: 'dma-heap' });
    const zeroCopy = await client();
    const shmOnly = await client({ mechanisms: ['shm.v1'] });
    await server.call('present', { fill: 0x11 });
    await server.call('present', { fill: 0x22 });
    const a = await zeroCopy.waitEvent('frame', (f) => f.sequence === 2);
    const b = await shmOnly.waitEvent('frame', (f) => f.sequence === 2);
    expect([a.mechanism, a.planes[0]]).to.deep.equal(['dmabuf.v1', 0x22]);
    expect([b.mechanism, b.kind, b.planes[0]]).to.deep.equal(['shm.v1', 'memfd', 0x22]);
  });

  it("a fence from the producer holds the client's read until it is signalled, across processes", async () => {
    await server.call('vgemSurface', { width: 64, height: 48 });
    const c = await client();
    const shmOnly = await client({ mechanisms: ['shm.v1'] });
    const { fenceId, sequence } = await server.call('presentFenced', { fill: 0x77 });
    await new Promise((r) => setTimeout(r, 400));
    expect(
      c.events.filter((e) => e.event === 'frame'),
      'no frame before the fence signals',
    ).to.have.length(0);
    expect(
      shmOnly.events.filter((e) => e.event === 'frame'),
      'the shm client waits too (server-side)',
    ).to.have.length(0);
    const { signalledAt } = await server.call('signal', { fenceId });
    const frame = await c.waitEvent('frame', (f) => f.sequence === sequence);
    const shmFrame = await shmOnly.waitEvent('frame', (f) => f.sequence === sequence);
    expect(frame.deliveredAt).to.be.at.least(signalledAt - 5);
    expect(frame.planes).to.deep.equal([0x77]);
    expect(shmFrame.planes).to.deep.equal([0x77]);
  });

  it('copies an adopted buffer with its own stride to shm.v1 clients row by row (65 px wide, vgem pitch)', async () => {
    const { stride } = await server.call('vgemSurface', { width: 65, height: 20 });
    const shmOnly = await client({ mechanisms: ['shm.v1'] });
    const zeroCopy = await client();
    await server.call('presentRows');
    const viaCopy = await shmOnly.waitEvent('frame');
    const direct = await zeroCopy.waitEvent('frame');
    expect(viaCopy.stride, 'the shadow copy has its own layout').to.not.equal(stride);
    expect([viaCopy.rowsMatch, direct.rowsMatch, direct.stride]).to.deep.equal([true, true, stride]);
  });

  it('keeps the damage of a fence-held frame when a newer unfenced one overtakes it (shm.v1 client)', async () => {
    await server.call('surface', { width: 64, height: 48, allocator: 'udmabuf' });
    const shmOnly = await client({ mechanisms: ['shm.v1'] });
    await server.call('present', { fill: 1 });
    await shmOnly.waitEvent('frame', (f) => f.sequence === 1);
    const a = { x: 1, y: 1, width: 2, height: 2 };
    const b = { x: 10, y: 10, width: 3, height: 3 };
    const { fenceId } = await server.call('presentWithForeignFence', { fill: 2, damage: [a] });
    await server.call('present', { fill: 3, damage: [b] });
    const frame = await shmOnly.waitEvent('frame', (f) => f.sequence === 3);
    expect(frame.damage).to.deep.equal([a, b]);
    expect(frame.planes).to.deep.equal([3]);
    await server.call('signal', { fenceId });
  });

  it("falls back to shm.v1 for a client that did not declare the surface's format, and says why", async () => {
    await server.call('surface', { width: 64, height: 48, format: 'NV12', allocator: 'udmabuf' });
    const c = await client({ dmabufFormats: [{ format: 'XR24', modifiers: ['0x0'] }] });
    expect((await c.waitEvent('negotiated')).mechanism).to.equal('dmabuf.v1');
    await server.call('present', { fill: 0x40 });
    const switched = await c.waitEvent('negotiated', (n) => n.mechanism === 'shm.v1');
    expect(switched.reason).to.match(/NV12.*did not declare/);
    const frame = await c.waitEvent('frame');
    expect([frame.mechanism, frame.planes[0], frame.planes[1]]).to.deep.equal(['shm.v1', 0x40, 0x41]);
  });

  it('keeps open fds equal over 1,000 frames', async () => {
    await server.call('surface', { width: 64, height: 48, allocator: 'udmabuf' });
    const c = await client({ reportFrames: false });
    for (let round = 0; ; round++) {
      const { sequence } = await server.call('run', { count: 100 });
      await eventually(async () => (await c.call('stats')).lastSequence === sequence, 30000, 'warm-up frames');
      if ((await c.call('stats')).buffersSeen === (await server.call('stats')).bufferCount || round === 10) break;
    }
    const before = [await server.call('stats'), await c.call('stats')];
    const { sequence } = await server.call('run', { count: 1000 });
    await eventually(async () => (await c.call('stats')).lastSequence === sequence, 60000, 'all frames');
    const after = [await server.call('stats'), await c.call('stats')];
    expect(after[0].fdTargets).to.deep.equal(before[0].fdTargets);
    expect(after[1].fdTargets).to.deep.equal(before[1].fdTargets);
  });

  describe('bad input', () => {
    const rogueCases: [string, string, string][] = [
      ['dmabuf-memfd', 'E_HANDLE_TYPE', 'a memfd offered as a dma-buf'],
      ['dmabuf-beyond', 'E_OUT_OF_BOUNDS', 'a plane beyond the dma-buf'],
      ['dmabuf-fence-not-syncfile', 'E_HANDLE_TYPE', 'a fence that is not a sync_file'],
    ];
    for (const [scenario, code, what] of rogueCases) {
      it(`${what} → ${code}`, async () => {
        const rogue = run('python3', [RAW_PEER, 'rogue', socketPath + '.rogue', scenario], 120000);
        const c = group.spawn('client.ts');
        await eventually(() => require('node:fs').existsSync(socketPath + '.rogue'), 90000, 'rogue server');
        await c.call('connect', { path: socketPath + '.rogue', mechanisms: ['dmabuf.v1', 'shm.v1'] });
        expect((await c.waitEvent('disconnect')).code).to.equal(code);
        const reply = JSON.parse((await rogue).stdout.trim().split('\n').pop()!).reply;
        expect(reply?.code).to.equal(ErrorCode[code as keyof typeof ErrorCode]);
      });
    }

    it(
      'a modifier the client did not offer → IMPORT_FAILED with E_UNSUPPORTED_FORMAT, ' + 'and the session goes on',
      async () => {
        const rogue = run('python3', [RAW_PEER, 'rogue', socketPath + '.rogue', 'dmabuf-modifier'], 120000);
        const c = group.spawn('client.ts');
        await eventually(() => require('node:fs').existsSync(socketPath + '.rogue'), 90000, 'rogue server');
        await c.call('connect', { path: socketPath + '.rogue', mechanisms: ['dmabuf.v1', 'shm.v1'] });
        expect((await c.waitEvent('importFailed')).code).to.equal('E_UNSUPPORTED_FORMAT');
        const out = JSON.parse((await rogue).stdout.trim().split('\n').pop()!);
        expect(out.importFailed).to.equal(ErrorCode.E_UNSUPPORTED_FORMAT);
        expect(c.events.some((e) => e.event === 'disconnect' && e.code !== 'E_PEER_CLOSED')).to.equal(false);
      },
    );

    it('a release fence that is not a sync_file → E_HANDLE_TYPE, and the server keeps serving', async () => {
      await server.call('surface', { width: 32, height: 32, allocator: 'udmabuf' });
      const result = await run('python3', [RAW_PEER, 'attack', socketPath, 'dmabuf-release-pipe'], 60000);
      expect(JSON.parse(result.stdout).reply?.code, result.stderr).to.equal(ErrorCode.E_HANDLE_TYPE);
      const good = await client();
      await server.call('present', { fill: 3 });
      expect((await good.waitEvent('frame')).planes).to.deep.equal([3]);
    });

    it('SharedSurface.fromDmabuf refuses a memfd and planes beyond the buffer', async () => {
      const r = await run(
        process.execPath,
        ['--import', 'tsx', path.join(ROOT, 'test', 'fixtures', 'adopt-bad.ts')],
        60000,
      );
      expect(JSON.parse(r.stdout.trim()), r.stderr).to.deep.equal({
        memfd: 'E_HANDLE_TYPE',
        beyond: 'E_OUT_OF_BOUNDS',
        notDmabufFence: 'E_HANDLE_TYPE',
      });
    });
  });
});
