/**
 * H.264 from a dma-buf the producer shares (docs/remote.md §6.3), on real kernel objects: the
 * StreamServer hands each presented udmabuf / vgem buffer to the encoder's worker as its dma-buf
 * fd, the worker wraps it with GstDmaBufAllocator and videoconvert reads it through the dma-buf's
 * own mapping (DMA_BUF_IOCTL_SYNC brackets). Proof: the dma-buf inodes of the producer's buffers
 * (fstat of its fds) are mapped in the worker process (/proc/<pid>/maps: "/dmabuf:<name>"), no
 * frame was copied, and the decoded pictures are the pattern of their own sequence (the counter
 * reads back) — also for a picture that is a visible rectangle inside a larger vgem buffer (an
 * offset into the dma-buf, rows longer than the picture's).
 *
 * Runs inside the throw-away VM (npm run test:vm), which sees the host's GStreamer read-only. The
 * producer is this process; the encoder and the viewer's decoder are worker processes of their own.
 */
import { expect } from 'chai';
import * as path from 'node:path';
import { drawPattern, patternLayout } from '../../src/demo/pattern.js';
import { SurfaceServer } from '../../src/server.js';
import { RemoteStreamClient, type RemoteFrame } from '../../src/stream/client.js';
import { probeH264 } from '../../src/stream/h264.js';
import { StreamServer } from '../../src/stream/server.js';
import { eventually, expectPatternFrames, sharedWith, tempDir } from '../helpers.js';

const inVm = process.env.SURFACELINK_IN_VM === '1';

(inVm ? describe : describe.skip)('H.264 encoded from a shared dma-buf in a real kernel (VM)', function () {
  // Under TCG the GStreamer probe alone takes ~20 s, and each worker start several.
  this.timeout(240000);

  before(async function () {
    const probe = await probeH264();
    const missing = !probe.encoder ? probe.reason : !probe.decoder ? 'no avdec_h264 (gstreamer1.0-libav)' : null;
    if (missing) {
      if (process.env.CI === 'true') throw new Error(`CI=true installs GStreamer's x264enc and avdec_h264: ${missing}`);
      this.test!.parent!.title += ` — skipped: ${missing}`;
      this.skip();
    }
  });

  // udmabuf: a memfd's pages. vgem: a DRM driver's dumb buffers, here with the picture at (8, 8) inside.
  for (const { allocator, margin } of [
    { allocator: 'udmabuf', margin: 0 },
    { allocator: 'vgem', margin: 8 },
  ]) {
    const where = margin ? `, the picture a visible rectangle at (${margin}, ${margin})` : '';
    const title = `${allocator}${where}: the worker maps the dma-bufs, copies nothing, the pictures decode right`;
    it(title, async () => {
      const W = 160;
      const H = 96;
      const { dir, cleanup } = tempDir('sl-vm-h264-');
      const server = await SurfaceServer.listen({ path: path.join(dir, 's.sock'), logger: () => {} });
      const surface = server.createSurface({
        width: W + 2 * margin,
        height: H + 2 * margin,
        format: 'XRGB8888',
        mechanism: 'dmabuf.v1',
        allocator,
        visible: { x: margin, y: margin, width: W, height: H },
        buffers: 3,
        maxBuffers: 6,
        label: `sl-vm-h264-${allocator}`,
      });
      const stream = await StreamServer.start(server, {
        codecs: ['h264'],
        h264Input: 'shared',
        maxFps: 30,
        webRoot: null,
        logger: () => {},
      });
      const layout = patternLayout(W, H);
      const picture = new Uint8Array(W * H * 4);
      const present = (): void => {
        const b = surface.tryAcquire();
        if (!b) return;
        drawPattern(layout, picture, W * 4, surface.sequence + 1);
        const px = b.pixels();
        for (let y = 0; y < H; y++)
          px.set(picture.subarray(y * W * 4, (y + 1) * W * 4), (margin + y) * b.stride + margin * 4);
        surface.present(b);
      };
      present();
      const timer = setInterval(present, 100);
      let client: RemoteStreamClient | null = null;
      try {
        const strides = surface.buffers().map((b) => b.stride);
        expect(surface.buffers().map((b) => b.backing.kind)).to.deep.equal(Array(3).fill(`dmabuf:${allocator}`));
        const inodes = surface.buffers().map((b) => {
          const h = b.handles[b.planeHandles[0]];
          if (h.kind !== 'fd') throw new Error(`buffer ${b.id} has a ${h.kind} handle`);
          return h.fd.stat().inode;
        });
        client = await RemoteStreamClient.connect(stream.url, { token: stream.token, codecs: ['h264'], name: 'vm' });
        const got: RemoteFrame[] = [];
        await new Promise<void>((resolve) => {
          client!.on('frame', (f) => {
            if (got.push({ ...f, pixels: Uint8Array.from(f.pixels) }) === 8) resolve();
          });
        });
        const info = stream.clients[0];
        const detail = `${JSON.stringify(info)}; strides ${strides.join(',')}`;
        expect(info.h264Input, detail).to.equal('shared');
        expect(info.framesCopied, detail).to.equal(0);
        expect(info.framesShared, detail).to.be.at.least(8);
        const shared = sharedWith(info.encoderPid!, inodes);
        expect(shared.mapped, `dma-bufs mapped in the encoder process; ${detail}`).to.be.greaterThan(0);
        expect(shared.open, `dma-bufs open in the encoder process; ${detail}`).to.be.greaterThan(0);
        expectPatternFrames(layout, got);

        // The viewer leaves: every hold the encoder had on the buffers comes back.
        client.close();
        client = null;
        clearInterval(timer);
        await eventually(
          async () => surface.buffers().every((b) => b.holders === 0),
          20000,
          'the encoder released every buffer',
        );
      } finally {
        clearInterval(timer);
        client?.close();
        stream.close();
        server.close();
        cleanup();
      }
    });
  }
});
