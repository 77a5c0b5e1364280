/**
 * 1080p H.264 encode throughput through H264Encoder (Node → worker process → GStreamer →
 * access units back in Node), beside the bare GStreamer pipeline on the same frames:
 *
 *   gst-launch-1.0 filesrc (the frames, on tmpfs) ! rawvideoparse ! videoconvert ! I420
 *                  ! x264enc (the worker's settings) ! byte-stream caps ! filesink
 *
 * timed by GStreamer itself from PLAYING to EOS, so neither side counts process start-up or
 * plugin loading. The baseline has no Node, no pipe and no Python in the loop: the ratio is
 * what the worker, its framing and the copies cost on top of the encoder itself.
 *
 * The frames are the demo's pattern (src/demo/pattern.ts) with the box moving, as the demo
 * presents them. Prints medians of the runs and the ratio, bytes per frame and the bitrate at
 * 30 fps, and writes bench/results/<time>-stream-encode.json.
 *
 *   node --import tsx bench/stream-encode.ts          (120 frames × 5 runs)
 *   BENCH_QUICK=1 node --import tsx bench/stream-encode.ts   (30 frames × 3 runs)
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { drawPattern, patternLayout } from '../src/demo/pattern.js';
import { H264Encoder, probeH264 } from '../src/stream/h264.js';

const QUICK = process.env.BENCH_QUICK === '1';
const FRAMES = QUICK ? 30 : 120;
const RUNS = QUICK ? 3 : 5;
const WIDTH = 1920;
const HEIGHT = 1080;
const FPS = 30;
const BITRATE_KBPS = 8000;

interface Run {
  fps: number;
  bytesPerFrame: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/** The frames, each drawn from the previous like the demo's producer, into one raw file. */
function writeFrames(file: string): void {
  const layout = patternLayout(WIDTH, HEIGHT);
  const pixels = new Uint8Array(WIDTH * HEIGHT * 4);
  const fd = fs.openSync(file, 'w');
  try {
    for (let i = 1; i <= FRAMES; i++) {
      drawPattern(layout, pixels, WIDTH * 4, i, i - 1 > 0 ? i - 1 : undefined);
      fs.writeSync(fd, pixels);
    }
  } finally {
    fs.closeSync(fd);
  }
}

/** One run through H264Encoder: frames fed as fast as it accepts them (maxInFlight 2). */
async function encoderRun(frames: Uint8Array[]): Promise<Run> {
  const encoder = await H264Encoder.start({
    width: WIDTH,
    height: HEIGHT,
    format: 'XRGB8888',
    fps: FPS,
    bitrateKbps: BITRATE_KBPS,
    element: 'x264enc',
  });
  try {
    let sent = 0;
    let received = 0;
    let bytes = 0;
    const done = new Promise<void>((resolve, reject) => {
      encoder.on('error', reject);
      encoder.on('au', (au) => {
        received++;
        bytes += au.data.length;
        if (received === FRAMES) resolve();
        else offer();
      });
    });
    const offer = () => {
      while (sent < FRAMES && encoder.encode(frames[sent], WIDTH * 4, sent + 1, 0)) sent++;
    };
    const t0 = performance.now();
    offer();
    await done;
    const seconds = (performance.now() - t0) / 1000;
    return { fps: FRAMES / seconds, bytesPerFrame: bytes / FRAMES };
  } finally {
    encoder.close();
  }
}

/** One run of the bare pipeline; GStreamer reports its own PLAYING → EOS time. */
function baselineRun(rawFile: string, outFile: string): Run {
  const out = execFileSync(
    'gst-launch-1.0',
    [
      'filesrc',
      `location=${rawFile}`,
      'blocksize=' + WIDTH * HEIGHT * 4,
      '!',
      'rawvideoparse',
      'format=bgrx',
      `width=${WIDTH}`,
      `height=${HEIGHT}`,
      `framerate=${FPS}/1`,
      'colorimetry=sRGB',
      '!',
      'videoconvert',
      'n-threads=0',
      '!',
      'video/x-raw,format=I420',
      '!',
      'x264enc',
      'tune=zerolatency',
      'speed-preset=ultrafast',
      'bframes=0',
      'key-int-max=2147483647',
      'byte-stream=true',
      `bitrate=${BITRATE_KBPS}`,
      'vbv-buf-capacity=300',
      'threads=0',
      'rc-lookahead=0',
      'sync-lookahead=0',
      'b-adapt=false',
      '!',
      'video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au',
      '!',
      'filesink',
      `location=${outFile}`,
    ],
    { encoding: 'utf8' },
  );
  const m = /Execution ended after (\d+):(\d+):(\d+\.\d+)/.exec(out);
  if (!m) throw new Error(`gst-launch-1.0 printed no execution time:\n${out}`);
  const seconds = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  return { fps: FRAMES / seconds, bytesPerFrame: fs.statSync(outFile).size / FRAMES };
}

async function main(): Promise<void> {
  const probe = await probeH264();
  if (!probe.candidates.find((c) => c.element === 'x264enc')?.usable)
    throw new Error(`x264enc is not usable here: ${probe.reason}`);
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'sl-bench-'));
  const rawFile = path.join(dir, 'frames.bgrx');
  const outFile = path.join(dir, 'out.h264');
  try {
    console.log(
      `stream-encode: ${FRAMES} frames of ${WIDTH}x${HEIGHT} XRGB8888, ${RUNS} runs each, x264enc ` +
        `at ${BITRATE_KBPS} kbit/s (${os.cpus().length} CPUs: ${os.cpus()[0]?.model ?? '?'})`,
    );
    writeFrames(rawFile);
    // The same frames for the Node side, read back from the file the baseline reads.
    const raw = fs.readFileSync(rawFile);
    const frames = Array.from(
      { length: FRAMES },
      (_, i) => new Uint8Array(raw.buffer, raw.byteOffset + i * WIDTH * HEIGHT * 4, WIDTH * HEIGHT * 4),
    );

    const encoderRuns: Run[] = [];
    const baselineRuns: Run[] = [];
    // Interleaved, so drift in the machine's load hits both sides alike.
    for (let r = 0; r < RUNS; r++) {
      baselineRuns.push(baselineRun(rawFile, outFile));
      encoderRuns.push(await encoderRun(frames));
      console.log(
        `  run ${r + 1}: bare pipeline ${baselineRuns[r].fps.toFixed(1)} fps, ` +
          `H264Encoder ${encoderRuns[r].fps.toFixed(1)} fps`,
      );
    }
    const summary = (name: string, runs: Run[]) => {
      const bytesPerFrame = median(runs.map((x) => x.bytesPerFrame));
      return {
        name,
        runs: runs.length,
        frames: FRAMES,
        fps_median: round(median(runs.map((x) => x.fps))),
        fps_runs: runs.map((x) => round(x.fps)),
        bytes_per_frame_median: Math.round(bytesPerFrame),
        kbps_at_30fps: Math.round((bytesPerFrame * 8 * FPS) / 1000),
      };
    };
    const results = [
      summary('gst-launch bare pipeline', baselineRuns),
      summary('H264Encoder (Node + worker)', encoderRuns),
    ];
    const ratio = round(results[1].fps_median / results[0].fps_median, 3);

    console.log('');
    console.log('| path | fps (median) | bytes/frame | kbit/s at 30 fps |');
    console.log('|---|---|---|---|');
    for (const r of results)
      console.log(`| ${r.name} | ${r.fps_median} | ${r.bytes_per_frame_median} | ${r.kbps_at_30fps} |`);
    console.log(`\nH264Encoder / bare pipeline throughput: ${ratio}`);

    const record = {
      bench: 'stream-encode',
      date: new Date().toISOString(),
      quick: QUICK,
      width: WIDTH,
      height: HEIGHT,
      format: 'XRGB8888',
      bitrate_kbps: BITRATE_KBPS,
      element: 'x264enc',
      settings:
        'tune=zerolatency speed-preset=ultrafast bframes=0 threads=0, videoconvert n-threads=0, I420, ' +
        'constrained-baseline',
      gstreamer: probe.gstreamer,
      node: process.version,
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model ?? null,
      results,
      ratio_encoder_to_baseline: ratio,
    };
    const resultsDir = path.join(__dirname, 'results');
    fs.mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `${record.date.replace(/:/g, '-').replace('.', '-')}-stream-encode.json`);
    fs.writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
    console.log(`wrote ${path.relative(process.cwd(), file)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

function round(v: number, digits = 1): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

main().catch((error) => {
  console.error(error);
  process.exitCode = 1;
});
