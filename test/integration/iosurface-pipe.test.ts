/**
 * iosurface-pipe.v1's POSIX half, across processes on Linux: a producer process sends SCANOUTs
 * over a real unix socket whose one fd is a surface-ID pipe (src/mechanisms/surface-id-pipe.ts,
 * native/posix/id_pipe.cc) — UTM's wrapping of an IOSurfaceID — and this process reads them with
 * the very functions the macOS importer calls before IOSurfaceLookup. The IOSurface half needs a
 * Mac and is not exercised here (test/macos/iosurface.test.ts, skipped off macOS).
 *
 * Proven: each receiver reads the ID from its own pipe; the pipe turns stale when the producer
 * destroys the surface or dies; and rogue pipes (empty, short, overlong, ID 0, a regular file)
 * get stable codes at once — no read ever waits on a peer.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { SurfaceLinkError } from '../../src/errors.js';
import { closeHandles, type OsHandle } from '../../src/handles.js';
import { readSurfaceId, surfaceIdStale } from '../../src/mechanisms/surface-id-pipe.js';
import { messageType, readScanout, type ScanoutBody } from '../../src/protocol/codec.js';
import { MessageType } from '../../src/protocol/constants.js';
import { unixTransport } from '../../src/transport/unix.js';
import type { MessageChannel } from '../../src/transport/types.js';
import { Peer, PeerGroup, eventually, openFdCount } from '../helpers.js';

/** A receiving end in this process: every SCANOUT with the handles that came with it. */
class Receiver {
  readonly scanouts: { body: ScanoutBody; handles: OsHandle[] }[] = [];
  readonly channel: MessageChannel;
  error: SurfaceLinkError | null = null;

  constructor(address: string) {
    this.channel = unixTransport.connect({ address, policy: {} });
    this.channel.start({
      onMessage: (view, start, length, handles) => {
        if (messageType(view, start) !== MessageType.SCANOUT) return closeHandles(handles);
        const body = readScanout(view, start, length, handles?.length ?? 0);
        this.scanouts.push({ body, handles: handles ?? [] });
      },
      onChannelError: (e) => (this.error = e),
    });
  }

  async next(count: number): Promise<OsHandle> {
    await eventually(() => this.scanouts.length >= count, 5000, `SCANOUT #${count}`);
    const { body, handles } = this.scanouts[count - 1];
    expect(body.planes[0].handleIndex).to.equal(0);
    expect(handles).to.have.length(1);
    return handles[0];
  }

  close(): void {
    for (const s of this.scanouts) closeHandles(s.handles);
    this.channel.close();
  }
}

function codeOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(SurfaceLinkError);
    return (error as SurfaceLinkError).code;
  }
  return 'no error';
}

describe('iosurface-pipe.v1: the surface-ID pipe between processes (POSIX half, runs on Linux)', function () {
  this.timeout(30000);
  let group: PeerGroup;
  let producer: Peer;
  let receivers: Receiver[];

  beforeEach(async () => {
    group = new PeerGroup();
    producer = group.spawn('id-pipe-producer.ts');
    await producer.call('listen', { path: group.socketPath });
    receivers = [];
  });

  afterEach(async () => {
    for (const r of receivers) r.close();
    await group.cleanup();
  });

  async function connect(): Promise<Receiver> {
    const r = new Receiver(group.socketPath);
    receivers.push(r);
    await producer.waitEvent('connected', (e) => e.index === receivers.length - 1);
    return r;
  }

  it('gives each receiver the 4-byte ID in its own pipe; destroying the surface marks every copy stale', async () => {
    const [a, b] = [await connect(), await connect()];
    const id = 0xc0ffee42;
    await producer.call('scanout', { to: 0, surface: id });
    await producer.call('scanout', { to: 1, surface: id });
    const [pa, pb] = [await a.next(1), await b.next(1)];
    expect(readSurfaceId(pa)).to.equal(id);
    expect(readSurfaceId(pb)).to.equal(id);
    expect(surfaceIdStale(pa)).to.equal(false);
    expect(surfaceIdStale(pb)).to.equal(false);
    // Read once: a second read finds nothing waiting and says so instead of blocking.
    expect(codeOf(() => readSurfaceId(pa))).to.equal('E_MALFORMED');

    await producer.call('destroy', { surface: id });
    await eventually(() => surfaceIdStale(pa) && surfaceIdStale(pb), 5000, 'both pipes stale');
    expect(codeOf(() => readSurfaceId(pb))).to.equal('E_STALE');
  });

  it('a surface outlives other surfaces: only the destroyed one turns stale', async () => {
    const r = await connect();
    await producer.call('scanout', { to: 0, surface: 7 });
    await producer.call('scanout', { to: 0, surface: 8 });
    const [p7, p8] = [await r.next(1), await r.next(2)];
    expect([readSurfaceId(p7), readSurfaceId(p8)]).to.deep.equal([7, 8]);
    await producer.call('destroy', { surface: 7 });
    await eventually(() => surfaceIdStale(p7), 5000, 'surface 7 stale');
    expect(surfaceIdStale(p8)).to.equal(false);
  });

  it("the producer's death marks its surfaces stale", async () => {
    const r = await connect();
    await producer.call('scanout', { to: 0, surface: 0x1234 });
    const p = await r.next(1);
    expect(readSurfaceId(p)).to.equal(0x1234);
    producer.child.kill('SIGKILL');
    await producer.exited;
    await eventually(() => surfaceIdStale(p), 5000, 'stale after SIGKILL');
  });

  it('a surface destroyed while its SCANOUT was in flight is refused unread (E_STALE)', async () => {
    const r = await connect();
    await producer.call('scanout', { to: 0, surface: 99 });
    const p = await r.next(1);
    // The 4 bytes are still in the pipe, but the writer is gone: the ID may already name another
    // surface, so it is never handed out.
    await producer.call('destroy', { surface: 99 });
    await eventually(() => codeOf(() => readSurfaceId(p)) === 'E_STALE', 5000, 'E_STALE');
  });

  describe('rogue pipes get stable codes at once, and cost no fd', () => {
    const cases: { name: string; hex: string; closeWriter: boolean; read: string; stale?: string }[] = [
      { name: 'an empty pipe whose writer stays open', hex: '', closeWriter: false, read: 'E_MALFORMED' },
      { name: 'half an ID, writer open', hex: 'abcd', closeWriter: false, read: 'E_MALFORMED' },
      { name: 'an empty pipe whose writer is gone', hex: '', closeWriter: true, read: 'E_STALE' },
      { name: 'half an ID, writer gone', hex: 'abcd', closeWriter: true, read: 'E_STALE' },
      { name: 'ID 0', hex: '00000000', closeWriter: false, read: 'E_MALFORMED' },
      {
        name: 'an ID followed by more bytes',
        hex: '78563412ffff',
        closeWriter: false,
        read: 'ok',
        stale: 'E_MALFORMED',
      },
    ];
    for (const c of cases) {
      it(c.name, async () => {
        const r = await connect();
        const before = openFdCount();
        await producer.call('fifo', { to: 0, dir: group.tmp.dir, hex: c.hex, closeWriter: c.closeWriter });
        const p = await r.next(1);
        const got = codeOf(() => readSurfaceId(p));
        expect(got === 'no error' ? 'ok' : got).to.equal(c.read);
        if (c.stale) expect(codeOf(() => surfaceIdStale(p))).to.equal(c.stale);
        closeHandles([p]);
        expect(openFdCount()).to.equal(before);
      });
    }

    it('a regular file in place of the pipe (E_HANDLE_TYPE)', async () => {
      const r = await connect();
      const file = path.join(group.tmp.dir, 'not-a-pipe');
      fs.writeFileSync(file, Buffer.from([1, 0, 0, 0]));
      await producer.call('file', { to: 0, path: file });
      const p = await r.next(1);
      expect(codeOf(() => readSurfaceId(p))).to.equal('E_HANDLE_TYPE');
      expect(codeOf(() => surfaceIdStale(p))).to.equal('E_HANDLE_TYPE');
    });
  });
});
