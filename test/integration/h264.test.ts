/**
 * H.264 through GStreamer (src/stream/h264.ts + gst/surfacelink_gst.py): the demo's pattern
 * encoded by the worker process and decoded by another, compared pixel by pixel with the
 * source; keyframes (first, on request, after a restart) with SPS/PPS; one access unit per
 * frame, in order, tags intact (no B-frames); the worker SIGKILLed or stopped mid-stream and
 * replaced; restarts exhausted; bad input; no Python at all.
 *
 * Needs /usr/bin/python3 with PyGObject, GStreamer 1.x, x264enc and avdec_h264. Where they
 * are missing the suite is skipped with the probe's reason; with CI=true that is a failure
 * (CI installs them).
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import { boxX, boxY, drawPattern, patternLayout, readCounter, type PatternLayout } from '../../src/demo/pattern.js';
import { SurfaceLinkError } from '../../src/errors.js';
import {
  H264Decoder,
  H264Encoder,
  probeH264,
  type H264AccessUnit,
  type H264DecodedFrame,
} from '../../src/stream/h264.js';

const NAL_IDR = 5;
const NAL_SPS = 7;
const NAL_PPS = 8;

/** NAL unit types in an Annex B access unit, in order. */
function nalTypes(au: Uint8Array): number[] {
  const types: number[] = [];
  for (let i = 0; i + 3 < au.length; i++) {
    if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1) {
      types.push(au[i + 3] & 0x1f);
      i += 3;
    }
  }
  return types;
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** Collects an emitter's events and lets a test wait for the n-th one. */
class Collector<T> {
  readonly items: T[] = [];
  private waiters: { n: number; resolve: () => void }[] = [];

  // Any of the typed emitters (their event maps differ).
  constructor(emitter: { on(event: any, fn: (v: any) => void): unknown }, event: string, copy: (v: T) => T = (v) => v) {
    emitter.on(event, (v: T) => {
      this.items.push(copy(v));
      this.waiters = this.waiters.filter((w) => (this.items.length >= w.n ? (w.resolve(), false) : true));
    });
  }

  async until(n: number, what: string, timeoutMs = 20000): Promise<T[]> {
    if (this.items.length < n) {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`${what}: ${this.items.length} of ${n} within ${timeoutMs} ms`)),
          timeoutMs,
        );
        this.waiters.push({ n, resolve: () => (clearTimeout(timer), resolve()) });
      });
    }
    return this.items;
  }
}

const copyFrame = (f: H264DecodedFrame): H264DecodedFrame => ({ ...f, pixels: f.pixels.slice() });

/** Offers a frame until the encoder takes it (it refuses while maxInFlight frames are pending). */
async function feed(
  encoder: H264Encoder,
  pixels: Uint8Array,
  stride: number,
  sequence: number,
  presentMs = nowMs(),
): Promise<void> {
  const deadline = Date.now() + 20000;
  while (!encoder.encode(pixels, stride, sequence, presentMs)) {
    if (Date.now() > deadline)
      throw new Error(`encoder refused frame ${sequence} for 20 s (inFlight ${encoder.inFlight})`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

// Any of the typed emitters (their event maps differ).
function once<T>(
  emitter: { once(event: any, fn: (v: any) => void): unknown },
  event: string,
  timeoutMs = 20000,
): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no '${event}' within ${timeoutMs} ms`)), timeoutMs);
    emitter.once(event, (v: T) => (clearTimeout(timer), resolve(v)));
  });
}

function processGone(pid: number): boolean {
  // A zombie still has /proc/<pid>; a reaped process does not.
  return !fs.existsSync(`/proc/${pid}`);
}

async function waitGone(pid: number): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!processGone(pid)) {
    if (Date.now() > deadline)
      throw new Error(
        `worker ${pid} still exists after close (state: ${fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(' ')[2]})`,
      );
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Mean absolute error per channel (B, G, R) and the worst 8×8-block-mean difference. */
function compare(layout: PatternLayout, decoded: Uint8Array, sequence: number): { mae: number[]; source: Uint8Array } {
  const { width, height } = layout;
  const source = new Uint8Array(width * height * 4);
  drawPattern(layout, source, width * 4, sequence);
  const sum = [0, 0, 0];
  for (let i = 0; i < source.length; i += 4)
    for (let c = 0; c < 3; c++) sum[c] += Math.abs(decoded[i + c] - source[i + c]);
  return { mae: sum.map((s) => s / (width * height)), source };
}

/** Mean B, G, R over a square of side 2r+1 at (x, y). */
function meanColour(pixels: Uint8Array, width: number, x: number, y: number, r: number): number[] {
  const sum = [0, 0, 0];
  let n = 0;
  for (let yy = y - r; yy <= y + r; yy++) {
    for (let xx = x - r; xx <= x + r; xx++) {
      const i = (yy * width + xx) * 4;
      for (let c = 0; c < 3; c++) sum[c] += pixels[i + c];
      n++;
    }
  }
  return sum.map((s) => s / n);
}

// Codec tolerance: x264 at these bitrates plus GStreamer's 8-bit RGB → I420 → RGB (which alone
// darkens by about 3 levels) stays well inside these on the pattern.
const MAX_MAE = 10;
const MAX_BLOCK_DIFF = 16;

describe('H.264 through GStreamer: no Python', () => {
  const saved = process.env.SURFACELINK_PYTHON;
  after(async () => {
    if (saved === undefined) delete process.env.SURFACELINK_PYTHON;
    else process.env.SURFACELINK_PYTHON = saved;
    await probeH264({ refresh: true });
  });

  it('probe reports no encoder with the reason; start() rejects with E_ENCODER, never crashing', async () => {
    process.env.SURFACELINK_PYTHON = '/nonexistent/python3';
    const probe = await probeH264({ refresh: true });
    expect(probe.encoder).to.equal(null);
    expect(probe.python).to.equal(null);
    expect(probe.decoder).to.equal(false);
    expect(probe.reason).to.include('/nonexistent/python3');
    const encoderError = await H264Encoder.start({ width: 64, height: 64, format: 'XRGB8888' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(encoderError).to.be.instanceOf(SurfaceLinkError);
    expect((encoderError as SurfaceLinkError).code).to.equal('E_ENCODER');
    expect((encoderError as SurfaceLinkError).message).to.include('/nonexistent/python3');
    // A forced element skips the probe: the spawn failure itself must come back as E_ENCODER.
    const forced = await H264Encoder.start({ width: 64, height: 64, format: 'XRGB8888', element: 'x264enc' }).then(
      () => null,
      (e: unknown) => e,
    );
    expect((forced as SurfaceLinkError).code).to.equal('E_ENCODER');
    const decoderError = await H264Decoder.start().then(
      () => null,
      (e: unknown) => e,
    );
    expect((decoderError as SurfaceLinkError).code).to.equal('E_ENCODER');
  });
});

describe('H.264 through GStreamer', function () {
  this.timeout(60000);
  const open: { close(): void }[] = [];

  before(async function () {
    const probe = await probeH264({ refresh: true });
    const missing = !probe.encoder
      ? probe.reason
      : !probe.decoder
        ? 'avdec_h264 (gstreamer1.0-libav) is not installed'
        : null;
    if (missing) {
      if (process.env.CI === 'true')
        throw new Error(`CI=true, and CI installs GStreamer with x264enc and avdec_h264, but: ${missing}`);
      this.test!.parent!.title += ` — skipped: ${missing}`;
      this.skip();
    }
  });

  afterEach(() => {
    for (const c of open.splice(0)) c.close();
  });

  async function encoder(
    width: number,
    height: number,
    extra: Partial<Parameters<typeof H264Encoder.start>[0]> = {},
  ): Promise<H264Encoder> {
    const e = await H264Encoder.start({ width, height, format: 'XRGB8888', bitrateKbps: 4000, ...extra });
    open.push(e);
    return e;
  }

  async function decoder(): Promise<H264Decoder> {
    const d = await H264Decoder.start();
    open.push(d);
    return d;
  }

  it('probe lists every candidate, hardware first, with a reason for each', async () => {
    const probe = await probeH264();
    expect(probe.candidates.map((c) => c.element)).to.deep.equal([
      'vah264enc',
      'vaapih264enc',
      'nvh264enc',
      'msdkh264enc',
      'x264enc',
    ]);
    for (const c of probe.candidates) expect(c.reason, c.element).to.be.a('string').and.not.equal('');
    const x264 = probe.candidates.find((c) => c.element === 'x264enc')!;
    expect(x264.usable).to.equal(true);
    expect(x264.hardware).to.equal(false);
    expect(probe.encoder).to.equal(probe.candidates.find((c) => c.usable)!.element);
    expect(probe.decoder).to.equal(true);
    expect(probe.gstreamer).to.match(/^GStreamer 1\./);
  });

  for (const [width, height] of [
    [320, 240],
    [1280, 720],
  ] as const) {
    it(
      `round-trips the pattern at ${width}x${height}: one AU per frame in order, keyframe first, pixels ` +
        `within tolerance`,
      async () => {
        const frames = 12;
        const layout = patternLayout(width, height);
        const enc = await encoder(width, height);
        const dec = await decoder();
        const aus = new Collector<H264AccessUnit>(enc, 'au');
        const decoded = new Collector<H264DecodedFrame>(dec, 'frame', copyFrame);
        const drops = new Collector<unknown>(dec, 'drop');
        enc.on('au', (au) => expect(dec.decode(au.data, au.sequence, au.presentMs)).to.equal(true));

        // A stride wider than the row, as shared surfaces have: only width × 4 bytes of each row count.
        const stride = width * 4 + 64;
        const pixels = new Uint8Array(stride * height).fill(0x55);
        const presented: number[] = [];
        for (let i = 1; i <= frames; i++) {
          drawPattern(layout, pixels, stride, i);
          presented.push(nowMs());
          await feed(enc, pixels, stride, 1000 + i, presented[i - 1]);
        }
        await aus.until(frames, 'access units');
        await decoded.until(frames, 'decoded frames');

        expect(aus.items.map((a) => a.sequence)).to.deep.equal(Array.from({ length: frames }, (_, i) => 1001 + i));
        expect(aus.items.map((a) => a.presentMs)).to.deep.equal(presented);
        expect(nalTypes(aus.items[0].data)).to.include.members([NAL_SPS, NAL_PPS, NAL_IDR]);
        expect(aus.items[0].keyframe).to.equal(true);
        for (const au of aus.items.slice(1)) {
          expect(au.keyframe, `AU ${au.sequence} keyframe`).to.equal(false);
          expect(nalTypes(au.data), `AU ${au.sequence}`).to.not.include(NAL_IDR);
          expect(au.encodedMs).to.be.at.least(au.presentMs);
        }
        expect(enc.inFlight).to.equal(0);

        expect(drops.items).to.deep.equal([]);
        expect(decoded.items.map((f) => f.sequence)).to.deep.equal(aus.items.map((a) => a.sequence));
        for (const f of decoded.items) {
          const frame = f.sequence - 1000;
          expect([f.width, f.height]).to.deep.equal([width, height]);
          expect(f.pixels.length).to.equal(width * height * 4);
          expect(f.presentMs).to.equal(presented[frame - 1]);
          const { mae, source } = compare(layout, f.pixels, frame);
          for (const [c, e] of mae.entries())
            expect(e, `frame ${frame} channel ${'BGR'[c]} mean abs error`).to.be.below(MAX_MAE);
          // Block colours: the box's inside, and a background cell away from the grid lines.
          const bx = boxX(layout, frame) + (layout.box >> 1);
          const by = boxY(layout, frame) + (layout.box >> 1);
          const cells: [number, number][] = [
            [bx, by],
            [width - 48, height - 48],
          ];
          for (const [x, y] of cells) {
            const want = meanColour(source, width, x, y, 2);
            const got = meanColour(f.pixels, width, x, y, 2);
            for (let c = 0; c < 3; c++)
              expect(
                Math.abs(got[c] - want[c]),
                `frame ${frame} (${x},${y}) ${'BGR'[c]}: ${got} vs ${want}`,
              ).to.be.below(MAX_BLOCK_DIFF);
          }
          // The frame counter, read back from the decoded pixels, is the frame's own.
          expect(readCounter(layout, f.pixels, width * 4), `counter in frame ${frame}`).to.equal(frame);
        }
      },
    );
  }

  it('requestKeyframe(): the next frame encoded is an IDR with SPS/PPS, the one after is not', async () => {
    const [width, height] = [320, 240];
    const layout = patternLayout(width, height);
    const enc = await encoder(width, height);
    const aus = new Collector<H264AccessUnit>(enc, 'au');
    const pixels = new Uint8Array(width * height * 4);
    for (let i = 1; i <= 8; i++) {
      drawPattern(layout, pixels, width * 4, i);
      if (i === 4) enc.requestKeyframe();
      await feed(enc, pixels, width * 4, i);
    }
    await aus.until(8, 'access units');
    const keyframes = aus.items.filter((a) => a.keyframe).map((a) => a.sequence);
    expect(keyframes).to.deep.equal([1, 4]);
    expect(nalTypes(aus.items[3].data)).to.include.members([NAL_SPS, NAL_PPS, NAL_IDR]);
    expect(nalTypes(aus.items[4].data)).to.not.include(NAL_IDR);
  });

  it('refuses frames beyond maxInFlight instead of queueing them', async () => {
    const [width, height] = [320, 240];
    const enc = await encoder(width, height, { maxInFlight: 2 });
    const aus = new Collector<H264AccessUnit>(enc, 'au');
    const pixels = new Uint8Array(width * height * 4);
    expect(enc.encode(pixels, width * 4, 1, 0)).to.equal(true);
    expect(enc.encode(pixels, width * 4, 2, 0)).to.equal(true);
    expect(enc.inFlight).to.equal(2);
    expect(enc.encode(pixels, width * 4, 3, 0)).to.equal(false);
    await aus.until(2, 'access units');
    expect(aus.items.map((a) => a.sequence)).to.deep.equal([1, 2]);
    expect(enc.inFlight).to.equal(0);
    expect(enc.encode(pixels, width * 4, 4, 0)).to.equal(true);
    await aus.until(3, 'access units');
    expect(aus.items[2].sequence).to.equal(4);
  });

  it('a worker SIGKILLed mid-stream is restarted: "restart", a keyframe next, decoding goes on', async () => {
    const [width, height] = [320, 240];
    const layout = patternLayout(width, height);
    const enc = await encoder(width, height);
    const dec = await decoder();
    const aus = new Collector<H264AccessUnit>(enc, 'au');
    const decoded = new Collector<H264DecodedFrame>(dec, 'frame', copyFrame);
    const restarts = new Collector<string>(enc, 'restart');
    const errors = new Collector<SurfaceLinkError>(enc, 'error');
    enc.on('au', (au) => dec.decode(au.data, au.sequence, au.presentMs));
    const pixels = new Uint8Array(width * height * 4);
    for (let i = 1; i <= 4; i++) {
      drawPattern(layout, pixels, width * 4, i);
      await feed(enc, pixels, width * 4, i);
    }
    await aus.until(4, 'access units before the kill');
    const firstPid = enc.pid!;
    process.kill(firstPid, 'SIGKILL');
    const reason = await once<string>(enc, 'restart');
    expect(reason).to.include('SIGKILL');
    expect(enc.pid).to.be.a('number').and.not.equal(firstPid);
    await waitGone(firstPid);
    for (let i = 5; i <= 8; i++) {
      drawPattern(layout, pixels, width * 4, i);
      await feed(enc, pixels, width * 4, i);
    }
    await aus.until(8, 'access units after the restart');
    const after = aus.items.slice(4);
    expect(after.map((a) => a.sequence)).to.deep.equal([5, 6, 7, 8]);
    expect(after[0].keyframe).to.equal(true);
    expect(nalTypes(after[0].data)).to.include.members([NAL_SPS, NAL_PPS, NAL_IDR]);
    expect(after.slice(1).map((a) => a.keyframe)).to.deep.equal([false, false, false]);
    await decoded.until(8, 'decoded frames');
    expect(decoded.items.map((f) => f.sequence)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(readCounter(layout, decoded.items[7].pixels, width * 4)).to.equal(8);
    expect(restarts.items).to.have.length(1);
    expect(errors.items).to.deep.equal([]);
  });

  it('a stalled worker (SIGSTOP) with frames pending is replaced', async () => {
    const [width, height] = [320, 240];
    const enc = await encoder(width, height);
    enc.stallMs = 1500;
    const aus = new Collector<H264AccessUnit>(enc, 'au');
    const pixels = new Uint8Array(width * height * 4);
    const stoppedPid = enc.pid!;
    process.kill(stoppedPid, 'SIGSTOP');
    expect(enc.encode(pixels, width * 4, 1, 0)).to.equal(true);
    const reason = await once<string>(enc, 'restart', 15000);
    expect(reason).to.match(/stalled/);
    await waitGone(stoppedPid);
    await feed(enc, pixels, width * 4, 2);
    await aus.until(1, 'access units after the stall');
    expect(aus.items.map((a) => [a.sequence, a.keyframe])).to.deep.equal([[2, true]]);
  });

  it('gives up with E_ENCODER after three deaths within 10 s, and closes', async () => {
    const enc = await encoder(64, 64);
    const errors = new Collector<SurfaceLinkError>(enc, 'error');
    for (let death = 1; death <= 2; death++) {
      const restarted = once<string>(enc, 'restart');
      process.kill(enc.pid!, 'SIGKILL');
      await restarted;
    }
    const lastPid = enc.pid!;
    process.kill(lastPid, 'SIGKILL');
    const [error] = await errors.until(1, "'error'");
    expect(error).to.be.instanceOf(SurfaceLinkError);
    expect(error.code).to.equal('E_ENCODER');
    expect(error.message).to.match(/3 times within 10 s/);
    expect(enc.closed).to.equal(true);
    expect(enc.pid).to.equal(null);
    expect(() => enc.encode(new Uint8Array(64 * 64 * 4), 256, 1, 0))
      .to.throw(SurfaceLinkError)
      .with.property('code', 'E_CLOSED');
    await waitGone(lastPid);
  });

  it('bad input gets SurfaceLinkError codes; close() is idempotent and leaves no process behind', async () => {
    const bad = (fn: () => unknown, code: string) => {
      try {
        fn();
      } catch (e) {
        expect(e).to.be.instanceOf(SurfaceLinkError);
        expect((e as SurfaceLinkError).code).to.equal(code);
        return;
      }
      throw new Error(`expected ${code}`);
    };
    const badStart = async (options: Record<string, unknown>, code: string) => {
      const e = await H264Encoder.start(options as never).then(
        () => null,
        (x: unknown) => x,
      );
      expect(e, JSON.stringify(options)).to.be.instanceOf(SurfaceLinkError);
      expect((e as SurfaceLinkError).code, JSON.stringify(options)).to.equal(code);
    };
    await badStart({ width: 321, height: 240, format: 'XRGB8888' }, 'E_INVALID_ARGUMENT');
    await badStart({ width: 0, height: 240, format: 'XRGB8888' }, 'E_INVALID_ARGUMENT');
    await badStart({ width: 320, height: 240, format: 'NV12' }, 'E_INVALID_ARGUMENT');
    await badStart({ width: 320, height: 240, format: 'XRGB8888', element: 'gst-launch' }, 'E_INVALID_ARGUMENT');
    await badStart({ width: 320, height: 240, format: 'XRGB8888', bitrateKbps: -5 }, 'E_INVALID_ARGUMENT');

    const [width, height] = [320, 240];
    const enc = await encoder(width, height);
    const ok = new Uint8Array(width * height * 4);
    bad(() => enc.encode(ok, width * 4 - 4, 1, 0), 'E_INVALID_ARGUMENT');
    bad(() => enc.encode(ok.subarray(0, ok.length - 1), width * 4, 1, 0), 'E_INVALID_ARGUMENT');
    bad(() => enc.encode(new Uint8Array(10), width * 4, 1, 0), 'E_INVALID_ARGUMENT');
    bad(() => enc.encode([1, 2, 3] as unknown as Uint8Array, width * 4, 1, 0), 'E_INVALID_ARGUMENT');
    bad(() => enc.encode(ok, width * 4, -1, 0), 'E_INVALID_ARGUMENT');
    bad(() => enc.encode(ok, width * 4, 1, NaN), 'E_INVALID_ARGUMENT');
    bad(() => enc.setBitrate(0), 'E_INVALID_ARGUMENT');
    expect(enc.inFlight).to.equal(0);
    // Still works after the refusals.
    const aus = new Collector<H264AccessUnit>(enc, 'au');
    expect(enc.encode(ok, width * 4, 7, 0)).to.equal(true);
    await aus.until(1, 'access unit');
    const pid = enc.pid!;
    enc.close();
    enc.close();
    expect(enc.closed).to.equal(true);
    bad(() => enc.encode(ok, width * 4, 1, 0), 'E_CLOSED');
    bad(() => enc.requestKeyframe(), 'E_CLOSED');
    await waitGone(pid);

    // The decoder: garbage is dropped or ignored, never fatal; a keyframe afterwards decodes.
    const dec = await decoder();
    const decodedFrames = new Collector<H264DecodedFrame>(dec, 'frame', copyFrame);
    const decoderErrors = new Collector<unknown>(dec, 'error');
    bad(() => dec.decode(new Uint8Array(0), 1, 0), 'E_INVALID_ARGUMENT');
    bad(() => dec.decode('x' as unknown as Uint8Array, 1, 0), 'E_INVALID_ARGUMENT');
    const decoderPid = dec.pid!;
    expect(
      dec.decode(
        Uint8Array.from({ length: 4096 }, (_, i) => (i * 7919) & 0xff),
        1,
        0,
      ),
    ).to.equal(true);
    expect(dec.decode(Uint8Array.of(0, 0, 0, 1, 0x65, 0xff, 0x00, 0x12), 2, 0)).to.equal(true);
    const enc2 = await encoder(width, height);
    const aus2 = new Collector<H264AccessUnit>(enc2, 'au');
    drawPattern(patternLayout(width, height), ok, width * 4, 3);
    expect(enc2.encode(ok, width * 4, 3, 0)).to.equal(true);
    const [key] = await aus2.until(1, 'keyframe');
    expect(dec.decode(key.data, 3, 0)).to.equal(true);
    await decodedFrames.until(1, 'decoded keyframe after garbage');
    expect(decodedFrames.items.at(-1)!.sequence).to.equal(3);
    expect(readCounter(patternLayout(width, height), decodedFrames.items.at(-1)!.pixels, width * 4)).to.equal(3);
    expect(dec.pid).to.equal(decoderPid);
    expect(decoderErrors.items).to.deep.equal([]);
    dec.close();
    dec.close();
    bad(() => dec.decode(key.data, 4, 0), 'E_CLOSED');
    await waitGone(decoderPid);
  });
});
