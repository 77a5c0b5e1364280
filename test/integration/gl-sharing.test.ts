/**
 * GL import and render of shared surfaces across processes (src/gl/surface-texture.ts,
 * render-target.ts). A producer fixture process (gl-producer.ts) renders a known pattern with
 * GL into a SharedSurface served by SurfaceServer; this process connects with SurfaceClient,
 * imports every frame into its own GL context (SurfaceImporter), draws it into an offscreen
 * framebuffer and reads it back: it must equal the pattern, pixel for pixel. Once with ANGLE on
 * SwiftShader on both sides (zero-copy: the memfd is the texture on both), once with the
 * system's Mesa (llvmpipe: upload and readback paths).
 *
 * Also: a stride SwiftShader cannot take falls back (and says why); the zero-copy import is
 * shown to be zero-copy (a CPU write to the producer's memory, with no message, shows up in the
 * consumer's next GL read of the same texture); damage-only uploads leave pixels outside the
 * damage as they were; rendering with readback writes only the damage into the surface.
 *
 * Mesa missing: skipped with the reason, except under CI=true (CI installs it), where it fails.
 */
import { expect } from 'chai';
import { SurfaceClient, type Frame } from '../../src/index.js';
import {
  GpuContext,
  RenderTexture,
  SurfaceImporter,
  SurfaceRenderer,
  drawTexture,
  importD3D11Texture,
  importIOSurfaceTexture,
  importMemoryTexture,
  openGpuContext,
  type ImportPath,
} from '../../src/gl/index.js';
import {
  composite,
  expectedRgba,
  firstDifference,
  patternRects,
  xrgbToRgba,
  type Box,
} from '../fixtures/gl-pattern.js';
import { PeerGroup, openFdCount, type Peer } from '../helpers.js';

type Which = 'angle' | 'system';

/** Keeps the newest frame held until a newer one is asked for, and hands out frames by sequence. */
class FrameQueue {
  latest: Frame | null = null;
  private waiter: { min: number; resolve: (f: Frame) => void } | null = null;

  constructor(readonly client: SurfaceClient) {
    client.on('frame', (frame) => {
      this.latest?.release();
      this.latest = frame;
      if (this.waiter && frame.sequence >= this.waiter.min) {
        const w = this.waiter;
        this.waiter = null;
        w.resolve(frame);
      }
    });
  }

  /**
   * The frame with sequence ≥ min; the one held before is released (the server sends one frame at a
   * time per client).
   */
  next(min: number, timeoutMs = 10000): Promise<Frame> {
    if (this.latest && this.latest.sequence >= min) return Promise.resolve(this.latest);
    this.latest?.release();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`no frame ${min} within ${timeoutMs} ms (latest ${this.latest?.sequence})`)),
        timeoutMs,
      );
      this.waiter = { min, resolve: (f) => (clearTimeout(timer), resolve(f)) };
    });
  }
}

function equalOrExplain(actual: Uint8Array, expected: Uint8Array, width: number, what: string): void {
  const diff = firstDifference(actual, expected, width);
  expect(diff, `${what}: ${diff}`).to.equal(null);
}

function contextFor(which: Which): GpuContext {
  const ctx = openGpuContext({ prefer: which });
  const isAngle = ctx.api.libraries.source.startsWith('angle');
  if (isAngle !== (which === 'angle')) {
    ctx.close();
    throw new Error(`asked for ${which}, got ${ctx.api.libraries.source} (${ctx.renderer})`);
  }
  return ctx;
}

/** contextFor(), or the suite skipped with the reason (a failure under CI=true, which installs both). */
function contextOrSkip(hook: Mocha.Context, which: Which): GpuContext {
  try {
    return contextFor(which);
  } catch (error) {
    const reason = (error as Error).message.split('\n')[0];
    if (process.env.CI === 'true')
      throw new Error(
        `CI=true, and this machine should have ${which === 'angle' ? 'the bundled ANGLE' : "Mesa's EGL"}, ` +
          `but: ${reason}`,
        { cause: error },
      );
    hook.test!.parent!.title += ` — skipped: ${reason}`;
    return hook.skip();
  }
}

for (const which of ['angle', 'system'] as const) {
  describe(
    `GL sharing across ` + `processes: ${which === 'angle' ? 'ANGLE/SwiftShader' : "the system's EGL (Mesa)"}`,
    function () {
      this.timeout(60000);
      let ctx: GpuContext;
      let group: PeerGroup | null = null;
      let client: SurfaceClient | null = null;
      let importer: SurfaceImporter | null = null;
      let target: RenderTexture | null = null;
      let producerPeer: Peer | null = null;

      before(function () {
        ctx = contextOrSkip(this, which);
      });

      after(() => ctx?.close());

      afterEach(async () => {
        client?.close();
        client = null;
        importer?.destroy();
        importer = null;
        target?.destroy();
        target = null;
        try {
          await producerPeer?.call('close');
        } catch {
          /* already gone */
        }
        producerPeer = null;
        await group?.cleanup();
        group = null;
      });

      /** A producer process at width × height, and this process connected to it with an importer. */
      async function start(
        width: number,
        height: number,
        options: { render?: string[]; importPaths?: ImportPath[] } = {},
      ) {
        group = new PeerGroup();
        const producer: Peer = (producerPeer = group.spawn('gl-producer.ts'));
        const info = await producer.call('listen', {
          path: group.socketPath,
          prefer: which,
          width,
          height,
          allow: options.render,
        });
        client = await SurfaceClient.connect({ path: group.socketPath, name: 'gl-sharing-test' });
        const frames = new FrameQueue(client);
        importer = new SurfaceImporter(ctx, options.importPaths ? { allow: options.importPaths } : {});
        target = new RenderTexture(ctx, width, height);
        return { producer, frames, info: info as { renderer: string; stride: number } };
      }

      /** Imports the frame, draws it 1:1 into the offscreen target, reads RGBA back. */
      function importAndRead(frame: Frame, width: number, height: number) {
        const texture = importer!.import(frame);
        target!.bind();
        drawTexture(ctx, texture.texture, texture.width, texture.height);
        const rgba = target!.read(new Uint8Array(width * height * 4));
        expect(ctx.drainGlErrors(), 'GL errors').to.deep.equal([]);
        return { texture, rgba };
      }

      it(
        'the producer renders a known pattern with GL, ' +
          'the consumer imports each frame and reads it back pixel-exact (64x48)',
        async () => {
          const [w, h] = [64, 48];
          const { producer, frames, info } = await start(w, h);
          expect(info.stride, 'rows of 64 pixels are 256 bytes').to.equal(256);
          const buffers = new Set<number>();
          for (let seed = 1; seed <= 6; seed++) {
            const made = await producer.call('render', { seed });
            expect(made.path, made.reason).to.equal(which === 'angle' ? 'memory-object' : 'readback');
            const frame = await frames.next(made.sequence);
            expect(frame.sequence).to.equal(made.sequence);
            buffers.add(frame.bufferId);
            const expected = expectedRgba(patternRects(seed, w, h), w, h);
            equalOrExplain(
              xrgbToRgba(frame.pixels(), frame.stride, w, h),
              expected,
              w,
              `frame ${seed}: the shared memory`,
            );
            const { texture, rgba } = importAndRead(frame, w, h);
            expect(texture.path, texture.reason).to.equal(which === 'angle' ? 'memory-object' : 'upload');
            expect(texture.uploadedBytes).to.equal(which === 'angle' ? 0 : w * h * 4);
            equalOrExplain(rgba, expected, w, `frame ${seed}: the consumer's GL readback`);
          }
          // Zero-copy textures are made once per shared buffer, not per frame.
          expect(importer!.cachedBuffers).to.equal(which === 'angle' ? buffers.size : 0);
          expect(buffers.size).to.be.within(2, 3);
        },
      );

      it(
        'a stride SwiftShader cannot take (100x30: 448 bytes, ' +
          'not 400) falls back to readback and upload, says why, and stays pixel-exact',
        async () => {
          const [w, h] = [100, 30];
          const { producer, frames } = await start(w, h);
          for (let seed = 10; seed <= 12; seed++) {
            const made = await producer.call('render', { seed });
            expect(made.path).to.equal('readback');
            if (which === 'angle') expect(made.reason).to.include('stride 448 differs');
            const frame = await frames.next(made.sequence);
            const { texture, rgba } = importAndRead(frame, w, h);
            expect(texture.path).to.equal('upload');
            expect(texture.reason).to.match(
              which === 'angle'
                ? /stride 448 differs from SwiftShader's row pitch 400/
                : /only SwiftShader's opaque fds are memfds/,
            );
            equalOrExplain(rgba, expectedRgba(patternRects(seed, w, h), w, h), w, `frame ${seed}`);
          }
        },
      );

      if (which !== 'angle')
        it(
          'the upload path is a copy: ' +
            "a CPU write to the producer's memory is not seen until the next import uploads it",
          async () => {
            const [w, h] = [64, 48];
            const { producer, frames } = await start(w, h);
            const made = await producer.call('render', { seed: 22 });
            const first = importAndRead(await frames.next(made.sequence), w, h);
            expect(first.texture.path).to.equal('upload');
            const before = frames.latest!.sequence;
            await producer.call('poke', { x: 5, y: 7, r: 1, g: 2, b: 3 });
            target!.bind();
            drawTexture(ctx, first.texture.texture, w, h);
            const again = target!.read(new Uint8Array(w * h * 4));
            equalOrExplain(
              again,
              expectedRgba(patternRects(22, w, h), w, h),
              w,
              'the texture still holds the uploaded frame',
            );
            expect(frames.latest!.sequence, 'no frame was sent').to.equal(before);
          },
        );

      if (which === 'angle')
        it(
          'the zero-copy import is zero-copy: ' +
            "a CPU write to the producer's memory shows up in the next GL read, with no message and no import",
          async function () {
            const [w, h] = [64, 48];
            const { producer, frames } = await start(w, h);
            const made = await producer.call('render', { seed: 21 });
            const frame = await frames.next(made.sequence);
            const first = importAndRead(frame, w, h);
            expect(first.texture.path).to.equal('memory-object');
            const before = frames.latest!.sequence;
            await producer.call('poke', { x: 5, y: 7, r: 1, g: 2, b: 3 });
            // The same texture drawn again, without calling import(): GL reads the shared memory.
            target!.bind();
            drawTexture(ctx, first.texture.texture, w, h);
            const again = target!.read(new Uint8Array(w * h * 4));
            const i = (7 * w + 5) * 4;
            expect([...again.subarray(i, i + 4)]).to.deep.equal([1, 2, 3, 255]);
            const expected = expectedRgba(patternRects(21, w, h), w, h);
            expected.set([1, 2, 3, 255], i);
            equalOrExplain(again, expected, w, 'after the poke');
            expect(frames.latest!.sequence, 'no frame was sent').to.equal(before);
          },
        );

      if (which === 'angle')
        it(
          'textures of retired buffers are deleted once the client lets go of them ' +
            '(a resize does not pin old memfds)',
          async () => {
            const { producer, frames } = await start(64, 48);
            const old = new Set<number>();
            for (let seed = 1; seed <= 6; seed++) {
              const made = await producer.call('render', { seed });
              importAndRead(await frames.next(made.sequence), 64, 48);
              old.add(made.bufferId);
            }
            expect(importer!.cachedBuffers).to.equal(old.size);
            await producer.call('resize', { width: 80, height: 32 });
            target!.destroy();
            target = new RenderTexture(ctx, 80, 32);
            const seen = new Set<number>();
            for (let seed = 7; seed <= 12; seed++) {
              const made = await producer.call('render', { seed });
              const frame = await frames.next(made.sequence);
              const { texture, rgba } = importAndRead(frame, 80, 32);
              expect(texture.path).to.equal('memory-object');
              equalOrExplain(
                rgba,
                expectedRgba(patternRects(seed, 80, 32), 80, 32),
                80,
                `frame ${seed} after the resize`,
              );
              seen.add(frame.bufferId);
            }
            // Only the new generation's buffers hold textures (and so memfd duplicates) now.
            expect(importer!.cachedBuffers).to.equal(seen.size);
          },
        );

      it('damage-only upload: pixels outside the damage keep the previous frame, inside get the new one', async () => {
        const [w, h] = [64, 48];
        const { producer, frames } = await start(w, h, { importPaths: ['upload'] });
        const one = await producer.call('cpuFrame', { seed: 31 });
        const first = importAndRead(await frames.next(one.sequence), w, h);
        expect(first.texture.path).to.equal('upload');
        const before = expectedRgba(patternRects(31, w, h), w, h);
        equalOrExplain(first.rgba, before, w, 'first frame');
        // The producer rewrites the whole buffer but says only these changed: an honest importer uploads just them.
        const damage: Box[] = [
          { x: 3, y: 4, width: 10, height: 6 },
          { x: 40, y: 30, width: 24, height: 18 },
        ];
        const two = await producer.call('cpuFrame', { seed: 32, damage });
        const frame = await frames.next(two.sequence);
        expect(frame.damage.length).to.equal(2);
        const second = importAndRead(frame, w, h);
        expect(second.texture.uploadedBytes).to.equal((10 * 6 + 24 * 18) * 4);
        const after = expectedRgba(patternRects(32, w, h), w, h);
        expect(firstDifference(before, after, w), 'the two frames differ outside the damage').to.not.equal(null);
        equalOrExplain(second.rgba, composite(before, after, damage, w), w, 'second frame (damage only)');
      });

      for (const path of which === 'angle' ? (['memory-object', 'readback'] as const) : (['readback'] as const)) {
        it(
          `render into the surface (${path}): GL drawing reaches the consumer; with readback only the damage ` +
            `is written`,
          async () => {
            const [w, h] = [64, 48];
            const { producer, frames } = await start(w, h, { render: path === 'readback' ? ['readback'] : undefined });
            await producer.call('presetAll', { seed: 41 });
            const damage: Box[] = [{ x: 8, y: 2, width: 20, height: 9 }];
            const made = await producer.call('render', { seed: 42, damage });
            expect(made.path).to.equal(path);
            expect(made.readBytes).to.equal(path === 'readback' ? 20 * 9 * 4 : 0);
            const frame = await frames.next(made.sequence);
            const preset = expectedRgba(patternRects(41, w, h), w, h);
            const drawn = expectedRgba(patternRects(42, w, h), w, h);
            // The FBO on the memory is the memory: everything GL drew is there. Readback copies only the damage.
            const expected = path === 'memory-object' ? drawn : composite(preset, drawn, damage, w);
            equalOrExplain(
              xrgbToRgba(frame.pixels(), frame.stride, w, h),
              expected,
              w,
              'the shared memory, read by the consumer',
            );
            equalOrExplain(importAndRead(frame, w, h).rgba, expected, w, "the consumer's GL import");
          },
        );
      }
    },
  );
}

describe('GL import/render: guards, bad input and the demo pattern (one process)', function () {
  this.timeout(60000);
  let ctx: GpuContext;
  before(function () {
    ctx = contextOrSkip(this, 'angle');
  });
  after(() => ctx?.close());

  const expectCode = (fn: () => unknown, code: string): Error => {
    try {
      fn();
    } catch (error) {
      expect((error as { code?: string }).code, (error as Error).message).to.equal(code);
      return error as Error;
    }
    return expect.fail(`expected ${code}`);
  };

  it('the IOSurface and D3D11 paths refuse on an EGL without their extension, naming it', () => {
    expect(
      expectCode(() => importIOSurfaceTexture(ctx, 1n, { width: 4, height: 4 }), 'E_UNSUPPORTED').message,
    ).to.include('EGL_ANGLE_iosurface_client_buffer is not advertised');
    expect(expectCode(() => importD3D11Texture(ctx, 1n), 'E_UNSUPPORTED').message).to.include(
      'EGL_ANGLE_d3d_texture_client_buffer is not advertised',
    );
  });

  it('bad frames get stable codes and leave the importer usable', async () => {
    const group = new PeerGroup();
    const { SurfaceServer } = await import('../../src/index.js');
    const server = await SurfaceServer.listen({ path: group.socketPath });
    const importer = new SurfaceImporter(ctx, { allow: ['upload'] });
    try {
      const surface = server.createSurface({ width: 32, height: 16, format: 'XRGB8888' });
      const b = surface.acquire();
      const frame = {
        width: 32,
        height: 16,
        format: b.format,
        planes: b.planes,
        backing: b.backing,
        handles: b.handles,
        bufferKey: b.bufferKey,
        stride: b.stride,
        damage: [] as Box[],
        pixels: () => b.pixels(),
      };
      expect(importer.import(frame).path).to.equal('upload');
      expectCode(
        () => importer.import({ ...frame, damage: [{ x: 30, y: 0, width: 4, height: 1 }] }),
        'E_OUT_OF_BOUNDS',
      );
      const nv12 = server.createSurface({ width: 32, height: 16, format: 'NV12' }).acquire();
      expectCode(() => importer.import({ ...frame, format: nv12.format, planes: nv12.planes }), 'E_UNSUPPORTED_FORMAT');
      expect(importer.import({ ...frame, damage: [{ x: 0, y: 0, width: 4, height: 4 }] }).uploadedBytes).to.equal(64);
      expect(ctx.drainGlErrors()).to.deep.equal([]);
    } finally {
      importer.destroy();
      server.close();
      await group.cleanup();
    }
  });

  it('memory-object imports close every fd they take: on destroy(), and when an import fails', async () => {
    const group = new PeerGroup();
    const { SurfaceServer } = await import('../../src/index.js');
    const server = await SurfaceServer.listen({ path: group.socketPath });
    try {
      const surface = server.createSurface({ width: 64, height: 48, format: 'XRGB8888', buffers: 3 });
      const buffers = [surface.acquire(), surface.acquire(), surface.acquire()];
      const frames = buffers.map((b) => ({
        width: b.width,
        height: b.height,
        format: b.format,
        planes: b.planes,
        backing: b.backing,
        handles: b.handles,
        bufferKey: b.bufferKey,
        stride: b.stride,
        damage: [] as Box[],
        pixels: () => b.pixels(),
      }));
      const before = openFdCount();
      const importer = new SurfaceImporter(ctx);
      for (let round = 0; round < 3; round++)
        for (const f of frames) expect(importer.import(f).path, importer.reason).to.equal('memory-object');
      expect(importer.cachedBuffers).to.equal(3);
      importer.destroy();
      ctx.api.gl.glFinish();
      expect(openFdCount(), 'fds after destroy()').to.equal(before);
      // A context closed under the import: refused before the memfd is duplicated.
      const closed = contextFor('angle');
      closed.close();
      expectCode(() => importMemoryTexture(closed, buffers[0]), 'E_CLOSED');
      expect(openFdCount(), 'fds after a failed import').to.equal(before);
    } finally {
      server.close();
      await group.cleanup();
    }
  });

  for (const [w, h] of [
    [640, 360],
    [100, 60],
  ] as const) {
    it(
      `the demo pattern painted with GL equals the CPU drawing byte for byte (${w}x${h}, first and later ` + `frames)`,
      async () => {
        const group = new PeerGroup();
        const { SurfaceServer } = await import('../../src/index.js');
        const { drawPattern, paintPattern, patternLayout, damageRects } = await import('../../src/demo/pattern.js');
        const server = await SurfaceServer.listen({ path: group.socketPath });
        const renderer = new SurfaceRenderer(ctx);
        try {
          const surface = server.createSurface({ width: w, height: h, format: 'XRGB8888', buffers: 2 });
          const layout = patternLayout(w, h);
          const gpu = surface.acquire();
          const cpu = new Uint8Array(gpu.stride * h);
          const repainted = damageRects(layout);
          let previous: number | undefined;
          for (const frame of [1, 2, 7, 40]) {
            renderer.begin(gpu);
            const count = paintPattern(layout, renderer, frame, previous, repainted);
            renderer.end(repainted, count);
            drawPattern(layout, cpu, gpu.stride, frame, previous);
            previous = frame;
            const px = gpu.pixels();
            for (let y = 0; y < h; y++) {
              const a = px.subarray(y * gpu.stride, y * gpu.stride + w * 4);
              const b = cpu.subarray(y * gpu.stride, y * gpu.stride + w * 4);
              if (!Buffer.from(a).equals(Buffer.from(b)))
                expect.fail(`frame ${frame} row ${y} differs (${renderer.path})`);
            }
          }
        } finally {
          renderer.destroy();
          server.close();
          await group.cleanup();
        }
      },
    );
  }
});
