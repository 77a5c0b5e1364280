/**
 * H.264 from the producer's own memory (docs/remote.md §6.3, "How frames reach the encoder"): the
 * StreamServer hands each presented buffer to the encoder's worker process as an fd, once, and the
 * worker's videoconvert reads it in place — no copy between the producer and the encoder's input.
 *
 * This process is the producer (SurfaceServer + StreamServer, the demo's pattern presented on a
 * timer) and the viewer (RemoteStreamClient, which decodes in a worker of its own); the encoder
 * runs in its own process. Proof of sharing: the inode of the producer's memfd (fstat of the
 * buffer's fd) is mapped in the encoder process (/proc/<pid>/maps) — and, run the same way with
 * `h264Input: 'copy'`, it is not. Holds: the buffers are held while the worker reads them and given
 * back (the pool returns to its baseline, no fd left open) when the viewer leaves, and when the
 * worker is SIGKILLed; a buffer the pool gives back is unmapped by the worker (FORGET). And
 * H264Encoder.encodeShared on its own: a frame offered while the worker is busy is held as the next
 * one, a newer one replaces it (latest wins), and every hold comes back.
 *
 * Needs Linux, /usr/bin/python3 with PyGObject, GStreamer 1.x, x264enc and avdec_h264 (skipped with
 * the reason where they are missing; with CI=true that is a failure).
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { drawPattern, patternLayout, type PatternLayout } from '../../src/demo/pattern.js';
import { SurfaceServer } from '../../src/server.js';
import { linuxNative } from '../../src/native/index.js';
import { H264Encoder, probeH264, type H264AccessUnit, type H264SharedBuffer } from '../../src/stream/h264.js';
import { RemoteStreamClient, type RemoteFrame } from '../../src/stream/client.js';
import { StreamServer, type StreamClientInfo } from '../../src/stream/server.js';
import type { SharedSurface, SurfaceBuffer } from '../../src/surface.js';
import { eventually, expectPatternFrames, openFdCount, sharedWith, sleep, tempDir } from '../helpers.js';

const W = 320;
const H = 240;

interface ProducerOptions {
  h264Input: 'shared' | 'copy';
  orientation?: 'top-down' | 'bottom-up';
  /** Buffer size around the picture: the picture is the visible rectangle at (margin, margin). */
  margin?: number;
  shrinkDelayMs?: number;
}

/** A producer in this process: a surface showing the pattern (frame N shows counter N), a StreamServer on it. */
class Producer {
  readonly layout: PatternLayout = patternLayout(W, H);
  private timer: NodeJS.Timeout | null = null;
  /** A picture of the pattern, drawn here and copied into buffers (flipped for bottom-up). */
  private readonly picture = new Uint8Array(W * H * 4);

  private constructor(
    readonly server: SurfaceServer,
    readonly surface: SharedSurface,
    readonly stream: StreamServer,
    private readonly cleanup: () => void,
  ) {}

  static async start(options: ProducerOptions): Promise<Producer> {
    const { dir, cleanup } = tempDir('sl-h264-shared-');
    const server = await SurfaceServer.listen({ path: path.join(dir, 's.sock'), logger: () => {} });
    const margin = options.margin ?? 0;
    const surface = server.createSurface({
      width: W + 2 * margin,
      height: H + 2 * margin,
      format: 'XRGB8888',
      mechanism: 'shm.v1',
      buffers: 3,
      maxBuffers: 8,
      shrinkDelayMs: options.shrinkDelayMs ?? 2000,
      label: 'sl-h264-shared',
      orientation: options.orientation ?? 'top-down',
      visible: { x: margin, y: margin, width: W, height: H },
    });
    const stream = await StreamServer.start(server, {
      codecs: ['h264'],
      h264Input: options.h264Input,
      maxFps: 60,
      webRoot: null,
      logger: () => {},
    });
    const p = new Producer(server, surface, stream, cleanup);
    p.present();
    return p;
  }

  /** Presents the next frame (full damage); false when the pool had no free buffer (skipped). */
  present(): boolean {
    const b = this.surface.tryAcquire();
    if (!b) return false;
    this.draw(b, this.surface.sequence + 1);
    this.surface.present(b);
    return true;
  }

  /** Draws pattern frame `n` into the buffer's visible rectangle, rows as the surface's orientation says. */
  draw(b: SurfaceBuffer, n: number): void {
    drawPattern(this.layout, this.picture, W * 4, n);
    const v = this.surface.visible;
    const px = b.pixels();
    const flip = this.surface.orientation === 'bottom-up';
    for (let y = 0; y < H; y++) {
      const row = flip ? v.y + H - 1 - y : v.y + y;
      px.set(this.picture.subarray(y * W * 4, (y + 1) * W * 4), row * b.stride + v.x * 4);
    }
  }

  /** Presents at `fps` until pause(). */
  run(fps = 30): void {
    this.pause();
    this.timer = setInterval(() => this.present(), 1000 / fps);
  }

  pause(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  get client(): StreamClientInfo {
    const c = this.stream.clients[0];
    expect(c, 'a stream client').to.not.equal(undefined);
    return c;
  }

  /** The inode of each buffer's memfd, by the kernel's answer for the producer's own fd (fstat). */
  inodes(): Map<SurfaceBuffer, bigint> {
    const out = new Map<SurfaceBuffer, bigint>();
    for (const b of this.surface.buffers()) {
      const h = b.handles[b.planeHandles[0]];
      if (h.kind !== 'fd') throw new Error(`buffer ${b.id} has a ${h.kind} handle`);
      out.set(b, h.fd.stat().inode);
    }
    return out;
  }

  /** Every hold on the surface's buffers (clients and encoders). */
  holders(): number {
    return this.surface.buffers().reduce((n, b) => n + b.holders, 0);
  }

  close(): void {
    this.pause();
    this.stream.close();
    this.server.close();
    this.cleanup();
  }
}

/** Resolves with the next `n` frames (their pixels copied). */
function frames(client: RemoteStreamClient, n: number, timeoutMs = 30000): Promise<RemoteFrame[]> {
  return new Promise((resolve, reject) => {
    const got: RemoteFrame[] = [];
    const timer = setTimeout(() => {
      client.off('frame', on);
      reject(new Error(`${got.length}/${n} frames within ${timeoutMs} ms`));
    }, timeoutMs);
    const on = (f: RemoteFrame): void => {
      got.push({ ...f, pixels: Uint8Array.from(f.pixels) });
      if (got.length === n) {
        clearTimeout(timer);
        client.off('frame', on);
        resolve(got);
      }
    };
    client.on('frame', on);
  });
}

function processGone(pid: number): boolean {
  return !fs.existsSync(`/proc/${pid}`);
}

describe('H.264 from the shared buffer: the encoder reads the producer’s memory (separate processes)', function () {
  this.timeout(90000);
  const open: { close(): void }[] = [];
  let producer: Producer;

  before(async function () {
    const probe = await probeH264();
    const missing =
      process.platform !== 'linux'
        ? 'shared input is Linux-only (memfds)'
        : !probe.encoder
          ? probe.reason
          : !probe.decoder
            ? 'avdec_h264 (gstreamer1.0-libav) is not installed'
            : null;
    if (missing) {
      if (process.env.CI === 'true' && process.platform === 'linux')
        throw new Error(`CI=true installs GStreamer's x264enc and avdec_h264, but: ${missing}`);
      this.test!.parent!.title += ` — skipped: ${missing}`;
      this.skip();
    }
  });

  afterEach(() => {
    for (const c of open.splice(0).reverse()) c.close();
  });

  async function start(options: ProducerOptions): Promise<Producer> {
    producer = await Producer.start(options);
    open.push(producer);
    return producer;
  }

  async function viewer(p: Producer): Promise<RemoteStreamClient> {
    const c = await RemoteStreamClient.connect(p.stream.url, { codecs: ['h264'], name: 'h264-shared' });
    open.push(c);
    return c;
  }

  for (const h264Input of ['shared', 'copy'] as const) {
    it(
      `h264Input '${h264Input}': the producer's memfd is ${h264Input === 'shared' ? '' : 'not '}mapped in the ` +
        `encoder process; frames decode to the pattern`,
      async () => {
        const p = await start({ h264Input });
        p.run();
        const c = await viewer(p);
        expectPatternFrames(p.layout, await frames(c, 12));
        const info = p.client;
        expect(info.encoderPid).to.be.a('number');
        const shared = sharedWith(info.encoderPid!, p.inodes().values());
        if (h264Input === 'shared') {
          expect(info).to.include({ h264Input: 'shared', copiesPerFrame: 0, h264InputReason: null, framesCopied: 0 });
          expect(info.framesShared).to.be.greaterThan(0);
          // Each buffer's fd went over once, and videoconvert maps it (kept mapped, per buffer).
          expect(shared.mapped, 'producer buffers mapped in the encoder process').to.be.greaterThan(0);
          expect(shared.open, 'producer buffers open in the encoder process').to.be.greaterThan(0);
        } else {
          expect(info).to.include({ h264Input: 'copy', copiesPerFrame: 1, framesShared: 0 });
          expect(info.h264InputReason).to.match(/copy input was asked for/);
          expect(shared).to.deep.equal({ mapped: 0, open: 0 });
        }
      },
    );
  }

  it('a visible rectangle is shared as an offset and a stride: the picture decodes, not the buffer', async () => {
    const p = await start({ h264Input: 'shared', margin: 16 });
    p.run();
    const c = await viewer(p);
    expect([c.welcome!.surface.width, c.welcome!.surface.height]).to.deep.equal([W, H]);
    expectPatternFrames(p.layout, await frames(c, 8));
    expect(p.client).to.include({ h264Input: 'shared', copiesPerFrame: 0 });
    expect(sharedWith(p.client.encoderPid!, p.inodes().values()).mapped).to.be.greaterThan(0);
  });

  it('a bottom-up surface cannot be shared: its frames are copied (once, flipped), and stats say why', async () => {
    const p = await start({ h264Input: 'shared', orientation: 'bottom-up' });
    p.run();
    const c = await viewer(p);
    expectPatternFrames(p.layout, await frames(c, 8));
    const info = p.client;
    expect(info).to.include({ h264Input: 'copy', copiesPerFrame: 1, framesShared: 0 });
    expect(info.h264InputReason).to.match(/bottom-up/);
    expect(sharedWith(info.encoderPid!, p.inodes().values())).to.deep.equal({ mapped: 0, open: 0 });
  });

  it('buffers are held while the worker reads them, all given back when the viewer leaves; no fd left', async () => {
    const p = await start({ h264Input: 'shared' });
    // Baseline: the stream server is up, nobody watches, the pool shows one frame.
    await sleep(200);
    const fdsBefore = openFdCount();
    const poolBefore = p.surface.poolStats;
    expect(poolBefore.inUse).to.equal(1);
    let releases = 0;
    p.server.on('release', (surfaceId, _bufferId, _sequence, clientId) => {
      if (surfaceId === p.surface.id && clientId === 0) releases++;
    });
    p.run(60);
    const c = await viewer(p);
    // A hold is taken at each hand-off and given back at DONE: seen at least once while streaming.
    let held = 0;
    const watch = setInterval(() => (held = Math.max(held, p.holders())), 1);
    try {
      await frames(c, 30);
    } finally {
      clearInterval(watch);
    }
    expect(held, 'holds seen while streaming').to.be.greaterThan(0);
    // Each release was reported like a local client's (clientId 0: the stream's encoders).
    expect(releases, "'release' events from the encoders").to.be.greaterThan(0);
    const pid = p.client.encoderPid!;
    c.close();
    await eventually(() => p.stream.clients.length === 0, 10000, 'the viewer gone');
    await eventually(() => processGone(pid), 10000, 'the encoder process gone');
    p.pause();
    await eventually(() => p.holders() === 0, 5000, 'every hold released');
    const pool = p.surface.poolStats;
    expect(pool.inUse, 'buffers in use once the viewer left (just the front)').to.equal(poolBefore.inUse);
    for (const b of p.surface.buffers()) expect(b.holders, `buffer ${b.id} holders`).to.equal(0);
    // Sockets, pipes and fds the stream used are closed again (the viewer's decoder worker included).
    await eventually(() => openFdCount() <= fdsBefore, 10000, `fds back to ${fdsBefore} (now ${openFdCount()})`);
  });

  it('a SIGKILLed worker lets go of its holds; the next gets the buffers again and the stream resumes', async () => {
    const p = await start({ h264Input: 'shared' });
    p.run();
    const c = await viewer(p);
    await frames(c, 5);
    p.pause();
    const first = p.client.encoderPid!;
    // A stopped worker cannot read: the frame handed to it now stays held.
    process.kill(first, 'SIGSTOP');
    await sleep(100);
    expect(p.present()).to.equal(true);
    await eventually(() => p.holders() > 0, 5000, 'the frame handed to the stopped worker held');
    const restarted = new Promise<{ state: string }>((resolve) => c.once('encoder', resolve));
    process.kill(first, 'SIGKILL');
    // Let go as soon as its death is seen, before a new worker exists (100 ms backoff, then start-up).
    const deadline = Date.now() + 5000;
    while (p.holders() > 0 && Date.now() < deadline) await sleep(2);
    expect(p.holders(), 'holds after the worker died').to.equal(0);
    expect((await restarted).state).to.equal('restarted');
    p.run();
    const after = await frames(c, 8);
    expect(after.some((f) => f.keyframe)).to.equal(true);
    expectPatternFrames(p.layout, after.slice(-4));
    const second = p.client.encoderPid!;
    expect(second).to.not.equal(first);
    // BUFFER records went to the new worker too: it maps the producer's memory as well.
    expect(sharedWith(second, p.inodes().values()).mapped).to.be.greaterThan(0);
    expect(p.client).to.include({ h264Input: 'shared', framesCopied: 0 });
  });

  it('a buffer the pool gives back is forgotten by the worker (unmapped, its fd closed)', async () => {
    const p = await start({ h264Input: 'shared', shrinkDelayMs: 300 });
    p.run();
    const c = await viewer(p);
    await frames(c, 3);
    p.pause();
    const pid = p.client.encoderPid!;
    // Grow the pool: keep three buffers acquired at once, then present each, one at a time.
    const extra = [p.surface.acquire(), p.surface.acquire(), p.surface.acquire()];
    expect(p.surface.poolStats.grown).to.be.greaterThan(0);
    const inodes = p.inodes();
    for (const b of extra) {
      p.draw(b, p.surface.sequence + 1);
      p.surface.present(b);
      await frames(c, 1);
    }
    const grownInodes = [...inodes.values()];
    await eventually(
      () => sharedWith(pid, grownInodes).mapped >= 3,
      10000,
      'the presented buffers mapped in the worker',
    );
    // Back to presenting with few buffers: the extra ones go back after shrinkDelayMs, and the worker lets go.
    p.run(30);
    await eventually(() => p.surface.poolStats.shrunk > 0, 10000, 'the pool shrank');
    const kept = new Set(p.inodes().values());
    const gone = grownInodes.filter((i) => !kept.has(i));
    expect(gone.length).to.be.greaterThan(0);
    await eventually(
      () => {
        const s = sharedWith(pid, gone);
        return s.mapped === 0 && s.open === 0;
      },
      10000,
      'the retired buffers unmapped and closed in the worker',
    );
    expect(p.client.encoderPid).to.equal(pid);
  });
});

describe('H264Encoder.encodeShared: holds, latest wins, a real worker', function () {
  this.timeout(60000);
  const open: { close(): void }[] = [];

  before(async function () {
    const probe = await probeH264();
    const missing = process.platform !== 'linux' ? 'shared input is Linux-only' : probe.encoder ? null : probe.reason;
    if (missing) {
      if (process.env.CI === 'true' && process.platform === 'linux') throw new Error(`CI=true, but: ${missing}`);
      this.test!.parent!.title += ` — skipped: ${missing}`;
      this.skip();
    }
  });

  afterEach(() => {
    for (const c of open.splice(0).reverse()) c.close();
  });

  /** A memfd holding pattern frame `n`, counting its holds. */
  function buffer(n: number): H264SharedBuffer & { holds: number } {
    const stride = W * 4 + 64;
    const size = stride * H;
    const fd = linuxNative().createMemfd(`sl-h264-enc-${n}`, size);
    open.push(fd);
    drawPattern(patternLayout(W, H), new Uint8Array(fd.map(0, size, 'shared')), stride, n);
    const b = {
      fd,
      dmabuf: false,
      size,
      offset: 0,
      stride,
      width: W,
      height: H,
      format: 'XRGB8888' as const,
      live: true,
      holds: 0,
      hold: () => void b.holds++,
      release: () => void b.holds--,
    };
    return b;
  }

  it('a frame offered while the worker is busy is held as the next one; a newer one replaces it', async () => {
    const enc = await H264Encoder.start({ width: W, height: H, format: 'XRGB8888', element: 'x264enc' });
    open.push(enc);
    expect(enc.input).to.equal('shared');
    const aus: H264AccessUnit[] = [];
    const dequeued: number[] = [];
    enc.on('au', (au) => aus.push(au));
    enc.on('dequeued', (sequence) => dequeued.push(sequence));
    const b = [1, 2, 3, 4].map(buffer);
    // A stopped worker reads nothing: the first two frames stay in flight, and held.
    process.kill(enc.pid!, 'SIGSTOP');
    try {
      expect(enc.encodeShared(b[0], 1, 0)).to.equal('sent');
      expect(enc.encodeShared(b[1], 2, 0)).to.equal('sent');
      expect(enc.encodeShared(b[2], 3, 0)).to.equal('queued');
      expect(enc.encodeShared(b[3], 4, 0)).to.equal('queued');
      // Frame 3 was let go when 4 took its place; 1 and 2 are with the worker, 4 waits.
      expect(b.map((x) => x.holds)).to.deep.equal([1, 1, 0, 1]);
      expect(enc.held).to.equal(3);
    } finally {
      process.kill(enc.pid!, 'SIGCONT');
    }
    await eventually(() => aus.length === 3, 20000, 'three access units');
    expect(aus.map((a) => a.sequence)).to.deep.equal([1, 2, 4]);
    expect(dequeued).to.deep.equal([4]);
    await eventually(() => enc.held === 0, 5000, 'every hold released');
    expect(b.map((x) => x.holds)).to.deep.equal([0, 0, 0, 0]);
    expect(enc.framesShared).to.equal(3);
  });

  it('copy input refuses shared buffers (E_UNSUPPORTED); one of another size is E_INVALID_ARGUMENT', async () => {
    const copy = await H264Encoder.start({
      width: W,
      height: H,
      format: 'XRGB8888',
      element: 'x264enc',
      input: 'copy',
    });
    open.push(copy);
    expect([copy.input, copy.inputReason]).to.deep.equal(['copy', 'copy input was asked for']);
    const b = buffer(1);
    expect(() => copy.encodeShared(b, 1, 0))
      .to.throw()
      .with.property('code', 'E_UNSUPPORTED');
    const shared = await H264Encoder.start({ width: W + 2, height: H, format: 'XRGB8888', element: 'x264enc' });
    open.push(shared);
    expect(() => shared.encodeShared(b, 1, 0))
      .to.throw()
      .with.property('code', 'E_INVALID_ARGUMENT');
    expect(b.holds).to.equal(0);
  });
});
