/**
 * The bridge's console (src/bridges/qemu-dbus/console.ts) fed what QEMU's listener calls carry,
 * with viewers in their own processes. What real QEMU sends is tested in qemu-bridge.test.ts;
 * here are the paths QEMU 7.2 and 10.0 do not take and the input no QEMU should send:
 *  - a display memfd sealed against shrinking (no QEMU release seals it yet) is shared as it is:
 *    the viewer maps that very memory (same inode) and sees a write announced by UpdateMap alone;
 *  - an unsealed one is copied, and shrinking it under the bridge costs a frame, not a crash;
 *  - wrong handle kinds, lying sizes, bad formats and geometry get stable codes.
 */
import { expect } from 'chai';
import { ConsoleSurface, PIXMAN_X8R8G8B8 } from '../../src/bridges/qemu-dbus/console.js';
import { SurfaceServer, type SharedSurface } from '../../src/index.js';
import { linuxNative, type NativeFd } from '../../src/native/index.js';
import { Peer, PeerGroup, eventually } from '../helpers.js';
import { foreignMemfd, truncate } from '../memfd.js';

const W = 64;
const H = 32;

describe('the QEMU bridge console: memfd paths and bad input (separate processes)', function () {
  this.timeout(60000);
  let group: PeerGroup;
  let server: SurfaceServer;
  let console_: ConsoleSurface;
  let surfaces: (SharedSurface | null)[];
  const logs: string[] = [];

  beforeEach(async () => {
    group = new PeerGroup();
    server = await SurfaceServer.listen({ path: group.socketPath, name: 'console-test' });
    surfaces = [];
    logs.length = 0;
    console_ = new ConsoleSurface(
      server,
      0,
      '0',
      (level, message) => logs.push(`${level}: ${message}`),
      (s) => surfaces.push(s),
    );
    server.on('release', () => console_.retry());
  });
  afterEach(async () => {
    console_.close();
    server.close();
    await group.cleanup();
  });

  /** A memfd of W×H XRGB pixels, filled with `value`, and a writable view of it. */
  function memfd(sealed: boolean, value: number): { fd: NativeFd; pixels: Uint8Array; inode: string } {
    const fd = foreignMemfd(W * H * 4, sealed);
    const pixels = new Uint8Array(fd.map(0, W * H * 4, 'shared', !sealed));
    pixels.fill(value);
    return { fd, pixels, inode: fd.stat().inode.toString() };
  }

  async function viewer(): Promise<Peer> {
    return group.client({ releaseMode: 'auto' });
  }

  it('a memfd sealed against shrinking is shared as it is: same inode, a write seen with only UpdateMap', async () => {
    const m = memfd(true, 0x21);
    console_.scanoutMap(m.fd.dup(), 0, W, H, W * 4, PIXMAN_X8R8G8B8);
    expect(console_.path).to.equal('map-shared');
    const v = await viewer();
    const first = await v.waitEvent('frame');
    expect(first.inode, "the viewer's frame is the display memfd itself").to.equal(m.inode);
    expect(first.planes[0]).to.equal(0x21);
    m.pixels.fill(0x5a); // the producer (QEMU) draws; only an UpdateMap says so
    console_.updateMap(0, 0, W, H);
    const next = await v.waitEvent('frame', (f) => f.sequence > first.sequence);
    expect(next.inode).to.equal(m.inode);
    expect(next.planes[0]).to.equal(0x5a);
    m.fd.close();
  });

  it('an unsealed memfd is copied, with the reason; shrunk under the bridge: a frame skipped, no crash', async () => {
    const m = memfd(false, 0x33);
    console_.scanoutMap(m.fd.dup(), 0, W, H, W * 4, PIXMAN_X8R8G8B8);
    expect(console_.path).to.equal('map-copy');
    expect(console_.reason).to.match(/not sealed against shrinking/);
    const v = await viewer();
    const first = await v.waitEvent('frame');
    expect(first.inode).to.not.equal(m.inode);
    expect(first.planes[0]).to.equal(0x33);
    expect(truncate(m.fd, 16)).to.equal(true);
    console_.updateMap(0, 0, W, H);
    await eventually(async () => logs.some((l) => /shrank under the bridge/.test(l)), 5000, 'the warning');
    // The viewer is still served: a new ScanoutMap of a good memfd reaches it.
    const good = memfd(true, 0x44);
    console_.scanoutMap(good.fd.dup(), 0, W, H, W * 4, PIXMAN_X8R8G8B8);
    await v.waitEvent('frame', (f) => f.planes[0] === 0x44);
    m.fd.close();
    good.fd.close();
  });

  it('bad input gets stable codes and changes nothing', async () => {
    const code = (f: () => void): string | undefined => {
      try {
        f();
      } catch (error) {
        return (error as { code?: string }).code;
      }
      return undefined;
    };
    const [a, b] = linuxNative().socketpairFds();
    expect(
      code(() => console_.scanoutMap(a, 0, W, H, W * 4, PIXMAN_X8R8G8B8)),
      'a socket as the memfd',
    ).to.equal('E_HANDLE_TYPE');
    b.close();
    const small = foreignMemfd(W * 4, true); // one row, claimed as H rows
    expect(
      code(() => console_.scanoutMap(small, 0, W, H, W * 4, PIXMAN_X8R8G8B8)),
      'a lying size',
    ).to.equal('E_OUT_OF_BOUNDS');
    const huge = foreignMemfd(4096, true);
    expect(
      code(() => console_.scanoutMap(huge, 0, 20000, 20000, 80000, PIXMAN_X8R8G8B8)),
      'absurd size',
    ).to.equal('E_BAD_GEOMETRY');
    const data = new Uint8Array(W * H * 4);
    expect(
      code(() => console_.scanout(W, H, W * 4, 0x20028888 + 1, data)),
      'unknown pixman format',
    ).to.equal('E_UNSUPPORTED_FORMAT');
    expect(
      code(() => console_.scanout(W, H, W * 4, PIXMAN_X8R8G8B8, data.subarray(0, 100))),
      'short data',
    ).to.equal('E_BAD_GEOMETRY');
    console_.scanout(W, H, W * 4, PIXMAN_X8R8G8B8, data);
    expect(
      code(() => console_.update(-1, 0, 4, 4, 16, PIXMAN_X8R8G8B8, data)),
      'negative x',
    ).to.equal('E_BAD_GEOMETRY');
    expect(
      code(() => console_.update(0, 0, 4, 4, 16, PIXMAN_X8R8G8B8, data.subarray(0, 20))),
      'short',
    ).to.equal('E_BAD_GEOMETRY');
    expect(
      code(() => console_.cursorDefine(4096, 1, 0, 0, data)),
      'a cursor too wide',
    ).to.equal('E_BAD_GEOMETRY');
    expect(
      code(() => console_.update(0, 0, 40000, 1, 160000, PIXMAN_X8R8G8B8, data)),
      'far too wide',
    ).to.equal('E_BAD_GEOMETRY');
    // After all that, the console still works and has its one surface.
    const v = await viewer();
    await v.waitEvent('frame', (f) => f.width === W && f.height === H);
    expect(surfaces.filter((s) => s !== null)).to.have.length(1);
  });
});
