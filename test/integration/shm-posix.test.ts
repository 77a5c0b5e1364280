/**
 * shm.v1 over POSIX shm objects: the rules macOS needs (no memfd, no seals), run on Linux with
 * SURFACELINK_SHM_BACKING=posix-shm. On Linux anyone holding the fd can shrink a shm object, so
 * these tests do exactly that, across processes: a rogue producer shrinks what its client mapped,
 * a rogue client shrinks the producer's buffer. Nobody may crash (the SIGBUS guard), the client
 * reports E_TRUNCATED, and the producer retires the buffer and keeps serving the others.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SurfaceLinkError } from '../../src/errors.js';
import { linuxNative, type NativeFd } from '../../src/native/index.js';
import { Peer, eventually, run, tempDir } from '../helpers.js';

const POSIX_SHM = { SURFACELINK_SHM_BACKING: 'posix-shm' };

function codeOf(fn: () => unknown): string {
  try {
    fn();
    return 'accepted';
  } catch (e) {
    return (e as SurfaceLinkError).code ?? String(e);
  }
}

/** Our own shm objects' names, from /proc/self/fd (they read "/dev/shm/<name> (deleted)"). */
function linkOf(fd: NativeFd): string {
  return fs.readlinkSync(`/proc/self/fd/${fd.debugNumber}`);
}

/** Entries in /dev/shm named by this process's createShm ("sl-<pid in hex>-…"). */
function ourShmEntries(): string[] {
  const prefix = `sl-${process.pid.toString(16)}-`;
  return fs.readdirSync('/dev/shm').filter((n) => n.startsWith(prefix));
}

describe('shm.v1 over POSIX shm objects (no seals: the macOS rules, on Linux)', function () {
  this.timeout(60000);
  const peers: Peer[] = [];
  let tmp: ReturnType<typeof tempDir>;
  let socketPath: string;

  before(function () {
    if (process.platform !== 'linux') this.skip();
  });

  beforeEach(() => {
    tmp = tempDir();
    socketPath = path.join(tmp.dir, 'server.sock');
  });

  afterEach(async () => {
    await Promise.all(peers.splice(0).map((p) => p.stop()));
    tmp.cleanup();
  });

  function spawn(fixture: string, env: NodeJS.ProcessEnv = {}): Peer {
    const peer = new Peer(fixture, [], env);
    peers.push(peer);
    return peer;
  }

  async function posixShmServer(surface: Record<string, unknown>): Promise<Peer> {
    const server = spawn('shm-posix-server.ts', POSIX_SHM);
    const listening = await server.call('listen', { path: socketPath });
    expect(listening.backing).to.equal('posix-shm');
    await server.call('surface', surface);
    return server;
  }

  async function client(releaseMode: 'auto' | 'hold' = 'auto'): Promise<Peer> {
    const c = spawn('shm-posix-client.ts');
    const { mechanism } = await c.call('connect', { path: socketPath, releaseMode });
    expect(mechanism).to.equal('shm.v1');
    return c;
  }

  /** Presents `fill`, waits until every client got that frame and the server saw every release. */
  async function presentSettled(server: Peer, clients: Peer[], fill: number): Promise<any> {
    const p = await server.call('present', { fill });
    for (const c of clients) await c.waitEvent('frame', (f) => f.sequence === p.sequence);
    await eventually(async () => (await server.call('stats')).holders === 0, 5000, 'every frame released');
    return p;
  }

  describe('native: createShm and mapping rules', () => {
    it('leaves no entry in /dev/shm (unlinked at creation), and its fd is a shm object', () => {
      const addon = linuxNative();
      const fds = Array.from({ length: 8 }, () => addon.createShm('unit', 8192));
      try {
        expect(ourShmEntries()).to.deep.equal([]);
        for (const fd of fds) {
          expect(linkOf(fd)).to.match(/^\/dev\/shm\/sl-[0-9a-f]+-[0-9a-f]+-[0-9a-f]{8} \(deleted\)$/);
          const st = fd.stat();
          expect(st.kind).to.equal('shm');
          expect(st.size).to.equal(8192);
          expect(st.mode & 0o777).to.equal(0o600);
        }
      } finally {
        for (const fd of fds) fd.close();
      }
    });

    it('never reuses a name: every object is new (distinct names and inodes)', () => {
      const addon = linuxNative();
      const fds = Array.from({ length: 64 }, () => addon.createShm('unit', 4096));
      try {
        expect(new Set(fds.map(linkOf)).size).to.equal(64);
        expect(new Set(fds.map((fd) => fd.stat().inode)).size).to.equal(64);
      } finally {
        for (const fd of fds) fd.close();
      }
    });

    it('checks the size before mapping (E_OUT_OF_BOUNDS) and refuses sizes outside 1..4 GiB', () => {
      const addon = linuxNative();
      const fd = addon.createShm('unit', 8192);
      try {
        expect(codeOf(() => fd.map(0, 8193, 'private'))).to.equal('E_OUT_OF_BOUNDS');
        expect(codeOf(() => fd.map(4096, 8192, 'shared'))).to.equal('E_OUT_OF_BOUNDS');
        const memory = fd.map(4096, 4096, 'private');
        expect(memory.byteLength).to.equal(4096);
        expect(addon.mappingTruncated(memory)).to.equal(false);
        addon.unmap(memory);
      } finally {
        fd.close();
      }
      expect(codeOf(() => addon.createShm('unit', 0))).to.equal('E_BAD_GEOMETRY');
      expect(codeOf(() => addon.createShm('unit', 4294967297))).to.equal('E_BAD_GEOMETRY');
      expect(codeOf(() => addon.createShm('unit', 1.5))).to.equal('E_BAD_GEOMETRY');
    });

    it('maps a shm object MAP_SHARED even when asked for a private mapping (as macOS must)', () => {
      const addon = linuxNative();
      const fd = addon.createShm('unit', 4096);
      try {
        const a = fd.map(0, 4096, 'private');
        const b = fd.map(0, 4096, 'shared');
        new Uint8Array(a)[7] = 0x33;
        expect(new Uint8Array(b)[7]).to.equal(0x33);
        addon.unmap(a);
        addon.unmap(b);
      } finally {
        fd.close();
      }
    });

    it('in a child: the guard holds 4096 mappings; one more is E_LIMIT, and unmapping frees a slot', async () => {
      const script = `
        const { linuxNative } = require('./src/native/index.ts');
        const addon = linuxNative();
        const fd = addon.createShm('unit', 4096);
        const maps = [];
        let error = null;
        try { for (let i = 0; i < 5000; i++) maps.push(fd.map(0, 4096, 'shared')); }
        catch (e) { error = { code: e.code, message: e.message }; }
        const mapped = maps.length;
        addon.unmap(maps.pop());
        let again = null;
        // The slot is freed by the finalizer, when V8 releases the detached backing store.
        for (let i = 0; i < 50 && again === null; i++) {
          globalThis.gc?.();
          await new Promise((r) => setTimeout(r, 10));
          try {
            maps.push(fd.map(0, 4096, 'shared'));
            again = 'mapped';
          } catch (e) {
            if (e.code !== 'E_LIMIT') again = e.code;
          }
        }
        console.log(JSON.stringify({ mapped, error, again }));
      `;
      const r = await run(process.execPath, ['--expose-gc', '--import', 'tsx', '-e', `(async () => {${script}})()`]);
      expect(r.code, r.stderr).to.equal(0);
      const out = JSON.parse(r.stdout);
      expect(out.mapped).to.equal(4096);
      expect(out.error.code).to.equal('E_LIMIT');
      expect(out.error.message).to.contain('4096');
      expect(out.again).to.equal('mapped');
    });

    it('in a child: a shrunk object reads zeros through the guard; an unguarded SIGBUS still kills', async () => {
      // A child, because without the guard the reading process dies.
      const script = `
        const { linuxNative } = require('./src/native/index.ts');
        const { foreignMemfd, truncate } = require('./test/memfd.ts');
        const addon = linuxNative();
        const fd = addon.createShm('unit', 16384);
        const memory = fd.map(0, 16384, 'private');
        const view = new Uint8Array(memory);
        view.fill(0x5a);
        const before = [view[100], addon.mappingTruncated(memory)];
        truncate(fd, 0);
        const after = [view[100], view[16383], addon.mappingTruncated(memory)];
        view[5] = 9; // a write lands in the zero pages, not in a crash
        console.log(JSON.stringify({ before, after, written: view[5] }));
        if (process.argv[1] === 'unguarded') {
          const m = foreignMemfd(8192, false);
          const raw = new Uint8Array(m.map(0, 8192, 'shared', true));
          truncate(m, 0);
          console.log('survived', raw[10]);
        }
      `;
      for (const mode of ['guarded', 'unguarded']) {
        const r = await run(process.execPath, ['--import', 'tsx', '-e', script, mode]);
        const first = r.stdout.split('\n')[0];
        expect(JSON.parse(first), r.stderr).to.deep.equal({ before: [0x5a, false], after: [0, 0, true], written: 9 });
        if (mode === 'guarded') expect(r.code, r.stderr).to.equal(0);
        else {
          // Our handler chained to the default action: SIGBUS kills as it did before (exit 128 + 7).
          expect(r.stdout).to.not.contain('survived');
          expect(r.code).to.not.equal(0);
        }
      }
    });
  });

  it('(a) a posix-shm server serves two clients in other processes exact pixels, zero-copy, as shm', async () => {
    const server = await posixShmServer({ width: 65, height: 33, format: 'NV12', buffers: 3 });
    const clients = [await client(), await client()];
    const N = 24;
    for (let i = 1; i <= N; i++) {
      const p = await presentSettled(server, clients, i * 7);
      expect(p.kind).to.equal('shm');
      for (const c of clients) {
        const f = await c.waitEvent('frame', (e) => e.sequence === p.sequence);
        expect(f.planes, `frame ${i}`).to.deep.equal([(i * 7) & 0xff, (i * 7 + 1) & 0xff]);
        expect(f.kind).to.equal('shm'); // NativeFd.stat() of the fd the client received
        expect(f.identity).to.equal('shm');
        expect(f.inode).to.equal(p.inode); // the producer's own object: no copy
      }
    }
    for (const c of clients) {
      expect(c.events.filter((e) => e.event === 'frame')).to.have.length(N);
      expect(c.events.filter((e) => e.event === 'warning' || e.event === 'disconnect')).to.deep.equal([]);
    }
    expect((await server.call('stats')).clients).to.equal(2);
  });

  it('(b) a rogue producer shrinks its shm object under the client: zeros, E_TRUNCATED, no crash', async () => {
    const rogue = spawn('shm-posix-rogue-server.ts');
    await rogue.call('listen', { path: socketPath });
    const c = await client('hold');
    await eventually(() => rogue.call('welcomed'), 5000, 'WELCOME sent');
    const sent = await rogue.call('sendBuffer', { fill: 0x5a });
    expect(sent.kind).to.equal('shm');
    const first = await c.waitEvent('frame', (f) => f.sequence === 1);
    expect(first.kind).to.equal('shm');
    expect(first.planes).to.deep.equal([0x5a]);
    expect(await c.call('read', { offset: 100 })).to.equal(0x5a);

    expect(await rogue.call('shrink', { size: 0 })).to.equal(true);
    // The held frame now reads zeros where the data was; without the guard the client dies here.
    expect(await c.call('read', { offset: 100 })).to.equal(0);
    expect(await c.call('readAll')).to.equal(0);
    expect(await c.call('releaseHeld')).to.equal(1);
    const warning = await c.waitEvent('warning');
    expect(warning.code).to.equal('E_TRUNCATED');
    await eventually(async () => (await rogue.call('stats')).releases.includes(1), 5000, 'RELEASE of frame 1');

    // The buffer was dropped: its next FRAME is handed straight back, unseen; the session goes on.
    await rogue.call('frame', { sequence: 2 });
    await eventually(async () => (await rogue.call('stats')).releases.includes(2), 5000, 'RELEASE of frame 2');
    expect(c.events.filter((e) => e.event === 'frame')).to.have.length(1);
    expect(c.events.filter((e) => e.event === 'disconnect')).to.deep.equal([]);
    const stats = await c.call('stats');
    expect(stats.closed).to.equal(false);
    expect(c.child.exitCode).to.equal(null);
  });

  it('(c) a rogue client shrinks a pool buffer: the producer retires it; a 3rd process gets exact frames', async () => {
    const server = await posixShmServer({ width: 64, height: 48, format: 'XRGB8888', buffers: 3 });
    const good = await client();
    const rogue = await client();
    // Each buffer the producer will use has been shown to both clients (the rogue keeps their fds).
    for (let i = 1; i <= 4; i++) await presentSettled(server, [good, rogue], i);
    const { bufferId: victim } = await server.call('acquireHold');
    expect(await rogue.call('buffers')).to.include(victim);

    // Shrunk between the producer's acquire() and its writes: the writes fault (the guard answers)
    // and present() finds the buffer truncated, so a new buffer carries the frame instead.
    expect(await rogue.call('shrink', { bufferId: victim, size: 0 })).to.equal(true);
    const p = await server.call('presentHeld', { fill: 0x42 });
    expect(p.heldId).to.equal(victim);
    expect(p.wrote).to.equal(0x42);
    expect(p.bufferId).to.not.equal(victim);
    const f = await good.waitEvent('frame', (e) => e.sequence === p.sequence);
    expect(f.planes).to.deep.equal([0x42]);
    expect(f.bufferId).to.equal(p.bufferId);

    for (let i = 0; i < 12; i++) {
      const q = await presentSettled(server, [good], 0x50 + i);
      const g = await good.waitEvent('frame', (e) => e.sequence === q.sequence);
      expect(g.planes, `frame ${q.sequence}`).to.deep.equal([0x50 + i]);
      expect(g.bufferId).to.not.equal(victim);
    }
    const stats = await server.call('stats');
    expect(server.child.exitCode).to.equal(null);
    expect(stats.bufferIds).to.not.include(victim);
    expect(stats.logs.join('\n')).to.contain(`buffer ${victim} retired: its memory shrank`);
    expect(stats.clients).to.equal(2);
    expect(good.events.filter((e) => ['warning', 'disconnect'].includes(e.event as string))).to.deep.equal([]);
  });
});
