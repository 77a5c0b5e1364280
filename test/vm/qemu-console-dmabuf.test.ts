/**
 * The QEMU bridge's GL path (ScanoutDMABUF / UpdateDMABUF, QEMU with `gl=on`) on real dma-bufs:
 * the console (src/bridges/qemu-dbus/console.ts) is handed a udmabuf as QEMU would hand its GL
 * scanout, and viewers in their own processes import it (dmabuf.v1: the same object) or get a copy
 * (shm.v1). QEMU itself with gl=on needs a GPU render node, which neither this VM nor the host
 * has; this proves the bridge's side. Runs inside the throw-away VM (npm run test:vm).
 */
import { expect } from 'chai';
import { ConsoleSurface } from '../../src/bridges/qemu-dbus/console.js';
import { fourcc } from '../../src/formats.js';
import { SurfaceServer } from '../../src/index.js';
import { linuxNative, type NativeFd } from '../../src/native/index.js';
import { PeerGroup } from '../helpers.js';

const inVm = process.env.SURFACELINK_IN_VM === '1';
const W = 64;
const H = 48;

(inVm ? describe : describe.skip)('QEMU bridge console: GL scanouts as dma-bufs (VM)', function () {
  this.timeout(120000);
  let group: PeerGroup;
  let server: SurfaceServer;
  let console_: ConsoleSurface;

  beforeEach(async () => {
    group = new PeerGroup();
    server = await SurfaceServer.listen({ path: group.socketPath, name: 'console-dmabuf', releaseTimeoutMs: 20000 });
    console_ = new ConsoleSurface(
      server,
      0,
      '0',
      () => {},
      () => {},
    );
    server.on('release', () => console_.retry());
  });
  afterEach(async () => {
    console_.close();
    server.close();
    await group.cleanup();
  });

  /** A udmabuf over a sealed memfd of W×H XRGB pixels (`value` everywhere), and the memfd's mapping. */
  function dmabuf(value: number): { fd: NativeFd; pixels: Uint8Array; inode: string } {
    const native = linuxNative();
    const memfd = native.createMemfd('qemu-gl-scanout', W * H * 4);
    const pixels = new Uint8Array(memfd.map(0, W * H * 4, 'shared'));
    pixels.fill(value);
    const fd = native.dmabuf!.createUdmabuf(memfd, 0, W * H * 4);
    memfd.close();
    return { fd, pixels, inode: fd.stat().inode.toString() };
  }

  it('ScanoutDMABUF is shared as it is: dmabuf.v1 viewers import that dma-buf, shm.v1 viewers get a copy', async () => {
    const d = dmabuf(0x3c);
    console_.scanoutDmabuf(d.fd.dup(), W, H, W * 4, fourcc('XR24'), 0n, true);
    expect(console_.path).to.equal('dmabuf');
    const zeroCopy = await group.client({ mechanisms: ['dmabuf.v1', 'shm.v1'] });
    const copy = await group.client({ mechanisms: ['shm.v1'] });
    const a = await zeroCopy.waitEvent('frame');
    expect([a.mechanism, a.kind, a.inode, a.planes[0]]).to.deep.equal(['dmabuf.v1', 'dmabuf', d.inode, 0x3c]);
    const b = await copy.waitEvent('frame');
    expect([b.mechanism, b.kind, b.planes[0]]).to.deep.equal(['shm.v1', 'memfd', 0x3c]);
    // QEMU renders again; UpdateDMABUF says where.
    d.pixels.fill(0x7e);
    console_.updateDmabuf(0, 0, W, H);
    const a2 = await zeroCopy.waitEvent('frame', (f) => f.sequence > a.sequence);
    expect([a2.inode, a2.planes[0]]).to.deep.equal([d.inode, 0x7e]);
    const b2 = await copy.waitEvent('frame', (f) => f.sequence > b.sequence);
    expect(b2.planes[0]).to.equal(0x7e);
    d.fd.close();
  });

  it('y0_top false makes a bottom-up surface; an unknown fourcc or a lying size is refused with a code', async () => {
    const d = dmabuf(0x11);
    console_.scanoutDmabuf(d.fd.dup(), W, H, W * 4, fourcc('XR24'), 0n, false);
    const v = await group.client({ mechanisms: ['dmabuf.v1', 'shm.v1'] });
    const f = await v.waitEvent('frame');
    expect(f.orientation).to.equal('bottom-up');
    const code = (fn: () => void): string | undefined => {
      try {
        fn();
      } catch (error) {
        return (error as { code?: string }).code;
      }
      return undefined;
    };
    expect(code(() => console_.scanoutDmabuf(d.fd.dup(), W, H, W * 4, fourcc('ABCD'), 0n, true))).to.equal(
      'E_UNSUPPORTED_FORMAT',
    );
    expect(code(() => console_.scanoutDmabuf(d.fd.dup(), W, H * 4, W * 4, fourcc('XR24'), 0n, true))).to.match(/^E_/);
    d.fd.close();
  });
});
