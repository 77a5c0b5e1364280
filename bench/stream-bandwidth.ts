/**
 * Bandwidth of a mostly static desktop through the two stream codecs, measured in one run:
 * a 1920×1080 XRGB8888 "desktop" (wallpaper gradient, three windows with text-like content,
 * a taskbar) where, each frame at 30 fps, a clock in the taskbar changes and a text cursor
 * blinks twice a second. Each frame's damage goes to
 *   tiles  TileEncoder (src/stream/tiles.ts) — what the StreamServer sends a tiles client;
 *   h264   H264Encoder (src/stream/h264.ts, GStreamer) — fed every frame, as for an h264 client.
 * Prints bytes/s, bytes per frame and CPU ms per frame (median; the first frame, a full
 * refresh / IDR, is reported apart), and the h264 / tiles ratio; writes
 * bench/results/<time>-stream-bandwidth.json.
 *
 *   node --import tsx bench/stream-bandwidth.ts         (10 s of frames)
 *   BENCH_QUICK=1 node --import tsx bench/stream-bandwidth.ts   (3 s)
 *
 * CPU: this process's user+system time (zlib's threadpool included) and, for H.264, the
 * encoder worker's (from /proc/<pid>/stat).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Rect } from '../src/protocol/codec.js';
import { H264Encoder, probeH264 } from '../src/stream/h264.js';
import { TileDamage, TileEncoder } from '../src/stream/tiles.js';

const ROOT = path.resolve(__dirname, '..');
const W = 1920;
const H = 1080;
const FPS = 30;
const SECONDS = process.env.BENCH_QUICK ? 3 : 10;
const FRAMES = SECONDS * FPS;
const BITRATE_KBPS = Number(process.env.BENCH_BITRATE_KBPS ?? 8000);

// ---- the scene -----------------------------------------------------------------------------

const stride = W * 4;
const image = Buffer.alloc(stride * H);
const CLOCK: Rect = { x: W - 180, y: H - 34, width: 160, height: 24 };
const CURSOR: Rect = { x: 412, y: 322, width: 2, height: 18 };

function fill(r: Rect, b: number, g: number, red: number): void {
  for (let y = r.y; y < r.y + r.height; y++)
    for (let x = r.x; x < r.x + r.width; x++) {
      const i = y * stride + x * 4;
      image[i] = b;
      image[i + 1] = g;
      image[i + 2] = red;
      image[i + 3] = 0xff;
    }
}

/** Lines of "words": runs of dark pixels of pseudo-random lengths, like anti-aliased-free text. */
function text(r: Rect, seed: number): void {
  let s = seed;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) >>> 16) / 65536;
  for (let line = r.y + 4; line + 10 < r.y + r.height; line += 16) {
    let x = r.x + 6;
    while (x < r.x + r.width - 40) {
      const word = 10 + Math.floor(rnd() * 50);
      for (let y = line; y < line + 9; y++)
        for (let dx = 0; dx < word; dx++)
          if (rnd() < 0.45) fill({ x: x + dx, y, width: 1, height: 1 }, 0x30, 0x30, 0x30);
      x += word + 6;
    }
  }
}

function drawDesktop(): void {
  for (let y = 0; y < H; y++)
    for (let x = 0; x < W; x++) {
      const i = y * stride + x * 4;
      image[i] = (0x60 + (y * 0x60) / H) | 0;
      image[i + 1] = (0x30 + (x * 0x30) / W) | 0;
      image[i + 2] = 0x20;
      image[i + 3] = 0xff;
    }
  const windows: Rect[] = [
    { x: 120, y: 90, width: 900, height: 620 },
    { x: 700, y: 300, width: 760, height: 520 },
    { x: 1400, y: 120, width: 420, height: 700 },
  ];
  windows.forEach((w, k) => {
    fill(w, 0xf4, 0xf4, 0xf4);
    fill({ x: w.x, y: w.y, width: w.width, height: 28 }, 0x50, 0x40, 0x30);
    text({ x: w.x, y: w.y + 30, width: w.width, height: w.height - 30 }, 7 + k);
  });
  fill({ x: 0, y: H - 40, width: W, height: 40 }, 0x20, 0x20, 0x20);
}

/** Frame n's changes: the clock's digits (7-segment-ish bars) and the cursor's blink. */
function drawFrame(n: number, damage: Rect[]): number {
  fill(CLOCK, 0x20, 0x20, 0x20);
  let value = n;
  for (let d = 7; d >= 0; d--) {
    const digit = value % 10;
    value = Math.floor(value / 10);
    const x = CLOCK.x + 4 + d * 19;
    for (let seg = 0; seg < 7; seg++) {
      if (((0x7f - digit * 11) >> seg) & 1) {
        const vertical = seg >= 3;
        fill(
          vertical
            ? { x: x + (seg & 1) * 10, y: CLOCK.y + 3 + (seg > 4 ? 9 : 0), width: 2, height: 8 }
            : { x: x + 1, y: CLOCK.y + 2 + seg * 8, width: 10, height: 2 },
          0xe0,
          0xe0,
          0xe0,
        );
      }
    }
  }
  damage[0] = CLOCK;
  if (n % (FPS / 2) === 0) {
    const on = (n / (FPS / 2)) % 2 === 0;
    fill(CURSOR, on ? 0x10 : 0xf4, on ? 0x10 : 0xf4, on ? 0x10 : 0xf4);
    damage[1] = CURSOR;
    return 2;
  }
  return 1;
}

// ---- measuring -----------------------------------------------------------------------------

interface FrameSample {
  bytes: number;
  cpuMs: number;
}

function cpuMsSelf(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function cpuMsOf(pid: number | null): number {
  if (pid === null) return 0;
  try {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, USER_HZ = 100
  } catch {
    return 0;
  }
}

async function runTiles(): Promise<FrameSample[]> {
  drawDesktop();
  const damage = new TileDamage(W, H);
  const rects: Rect[] = [];
  const samples: FrameSample[] = [];
  let resolveFrame: ((n: number) => void) | null = null;
  const encoder = new TileEncoder((error, frame) => {
    if (error) throw error;
    resolveFrame!(frame!.length);
  });
  for (let n = 0; n < FRAMES; n++) {
    const count = n === 0 ? 0 : drawFrame(n, rects);
    const cpu0 = cpuMsSelf();
    damage.add(rects, count);
    const bytes = await new Promise<number>((resolve) => {
      resolveFrame = resolve;
      if (encoder.encode(image, stride, damage, n + 1, 0) === 0) resolve(0);
    });
    samples.push({ bytes, cpuMs: cpuMsSelf() - cpu0 });
  }
  return samples;
}

async function runH264(): Promise<{ samples: FrameSample[]; element: string } | { skipped: string }> {
  const probe = await probeH264();
  if (!probe.encoder) return { skipped: `no H.264 encoder: ${probe.reason}` };
  drawDesktop();
  const encoder = await H264Encoder.start({
    width: W,
    height: H,
    format: 'XRGB8888',
    fps: FPS,
    bitrateKbps: BITRATE_KBPS,
    maxInFlight: 1,
  });
  const samples: FrameSample[] = [];
  const rects: Rect[] = [];
  try {
    for (let n = 0; n < FRAMES; n++) {
      if (n > 0) drawFrame(n, rects);
      const cpu0 = cpuMsSelf() + cpuMsOf(encoder.pid);
      const bytes = await new Promise<number>((resolve, reject) => {
        const onAu = (au: { data: Uint8Array }): void => {
          encoder.off('error', onError);
          resolve(au.data.byteLength);
        };
        const onError = (e: Error): void => {
          encoder.off('au', onAu);
          reject(e);
        };
        encoder.once('au', onAu);
        encoder.once('error', onError);
        if (!encoder.encode(image, stride, n + 1, (n * 1000) / FPS)) reject(new Error('the encoder refused a frame'));
      });
      samples.push({ bytes, cpuMs: cpuMsSelf() + cpuMsOf(encoder.pid) - cpu0 });
    }
    return { samples, element: encoder.element };
  } finally {
    encoder.close();
  }
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

function summarize(samples: FrameSample[]) {
  const steady = samples.slice(1);
  const total = steady.reduce((a, s) => a + s.bytes, 0);
  return {
    frames: samples.length,
    firstFrameBytes: samples[0].bytes,
    firstFrameCpuMs: round(samples[0].cpuMs),
    medianBytesPerFrame: median(steady.map((s) => s.bytes)),
    meanBytesPerFrame: Math.round(total / steady.length),
    bytesPerSecond: Math.round((total / steady.length) * FPS),
    medianCpuMsPerFrame: round(median(steady.map((s) => s.cpuMs))),
    meanCpuMsPerFrame: round(steady.reduce((a, s) => a + s.cpuMs, 0) / steady.length),
  };
}

function round(n: number): number {
  return Math.round(n * 100) / 100;
}

async function main(): Promise<void> {
  process.stdout.write(
    `stream bandwidth: ${W}x${H} desktop, clock + blinking cursor, ` +
      `${FRAMES} frames at ${FPS} fps (${SECONDS} s of content)\n`,
  );
  const tiles = summarize(await runTiles());
  const h = await runH264();
  const h264 = 'skipped' in h ? null : { element: h.element, bitrateKbps: BITRATE_KBPS, ...summarize(h.samples) };
  const rows: [string, typeof tiles | null][] = [
    ['tiles', tiles],
    [`h264 (${h264?.element ?? '-'})`, h264],
  ];
  const table = [
    '| codec | bytes/s | median bytes/frame | mean bytes/frame | median CPU ms/frame | first frame bytes | ' +
      'first frame CPU ms |',
    '|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map(([name, r]) =>
      r
        ? `| ${name} | ${r.bytesPerSecond} | ${r.medianBytesPerFrame} | ${r.meanBytesPerFrame} ` +
          `| ${r.medianCpuMsPerFrame} | ${r.firstFrameBytes} | ${r.firstFrameCpuMs} |`
        : `| ${name} | skipped: ${(h as { skipped: string }).skipped} ||||||`,
    ),
  ];
  const ratio = h264
    ? {
        bytesPerSecond: round(h264.bytesPerSecond / tiles.bytesPerSecond),
        cpuMsPerFrame: round(h264.medianCpuMsPerFrame / Math.max(tiles.medianCpuMsPerFrame, 0.01)),
      }
    : null;
  process.stdout.write(`${table.join('\n')}\n`);
  if (ratio)
    process.stdout.write(
      `h264 / tiles: ${ratio.bytesPerSecond}× the bytes per second, ${ratio.cpuMsPerFrame}× the CPU per frame ` +
        `(medians)\n`,
    );
  const record = {
    bench: 'stream-bandwidth',
    date: new Date().toISOString(),
    host: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model,
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
    },
    scene: {
      width: W,
      height: H,
      fps: FPS,
      seconds: SECONDS,
      frames: FRAMES,
      changes: 'clock 160x24 every frame, cursor 2x18 every 15 frames',
    },
    tiles,
    h264: h264 ?? { skipped: (h as { skipped: string }).skipped },
    ratio,
  };
  const out = path.join(ROOT, 'bench', 'results', `${record.date.replace(/[:.]/g, '-')}-stream-bandwidth.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, `${JSON.stringify(record, null, 2)}\n`);
  process.stdout.write(`wrote ${path.relative(ROOT, out)}\n`);
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exitCode = 1;
});
