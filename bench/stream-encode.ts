/**
 * 1080p H.264 encode throughput and CPU per frame, three ways over the same frames, in one run:
 *
 *   - the bare GStreamer pipeline, no Node, no Python:
 *       gst-launch-1.0 multifilesrc (the frames, on tmpfs) ! rawvideoparse ! videoconvert ! I420
 *                      ! x264enc ! byte-stream caps ! filesink
 *     timed by GStreamer itself from PLAYING to EOS;
 *   - H264Encoder, copy input: each frame copied into a record and written through a pipe to the
 *     worker process, which copies it into a GstBuffer (the path remote viewers had before shared input);
 *   - H264Encoder, shared input: the frames are memfds the worker was given once (SCM_RIGHTS); each
 *     frame is a 40-byte record and videoconvert reads the memfd in place.
 *
 * The pipeline's videoconvert and x264enc properties are the worker's own (its READY record lists
 * what it set), and x264's version SEI in the first access unit of each path — libx264's build and
 * its full option string — must be identical, or the bench fails: the three encode alike.
 *
 * CPU per encoded frame: for the H264Encoder paths this process (process.cpuUsage: every thread)
 * plus the worker (/proc/<pid>/stat utime + stime), from the first frame offered to the last access
 * unit back; for the bare pipeline gst-launch-1.0's own time (its shell's cutime + cstime) less a
 * one-frame run's, so start-up is not counted on either side.
 *
 * The frames are the demo's pattern (src/demo/pattern.ts) with the box moving; DISTINCT of them are
 * drawn and cycled (the memory a 1080p frame takes: 8 MB each). Prints medians of the runs, bytes per
 * frame and the bitrate at 30 fps, the CPU model and the GStreamer, libx264 and Python versions, and
 * writes bench/results/<time>-stream-encode.json.
 *
 *   node --import tsx bench/stream-encode.ts                 (300 frames × 5 runs per path)
 *   BENCH_QUICK=1 node --import tsx bench/stream-encode.ts   (30 frames × 2 runs: checks it works)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { drawPattern, patternLayout } from '../src/demo/pattern.js';
import { linuxNative } from '../src/native/index.js';
import { H264Encoder, probeH264, type H264Input, type H264SharedBuffer } from '../src/stream/h264.js';
import { workerPython } from '../src/stream/gst-worker.js';

const QUICK = process.env.BENCH_QUICK === '1';
const FRAMES = QUICK ? 30 : 300;
const RUNS = QUICK ? 2 : 5;
const DISTINCT = QUICK ? 8 : 16;
const WIDTH = 1920;
const HEIGHT = 1080;
const FPS = 30;
const BITRATE_KBPS = 8000;
const FRAME_BYTES = WIDTH * HEIGHT * 4;

interface Run {
  fps: number;
  bytesPerFrame: number;
  /** CPU ms per encoded frame, all processes of the path. */
  cpuMsPerFrame: number;
  /** The x264 version SEI of the first access unit. */
  sei: string;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) >> 1] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

const CLOCK_TICKS = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** utime + stime of a process (/proc/<pid>/stat fields 14 and 15), in ms. */
function processCpuMs(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS;
}

/** x264's version SEI ("x264 - core N rNNNN … - options: …") in an Annex B stream. */
function x264Sei(stream: Uint8Array): string {
  const bytes = Buffer.from(stream.buffer, stream.byteOffset, stream.byteLength);
  const start = bytes.indexOf('x264 - core');
  if (start < 0) return '(no x264 SEI)';
  const end = bytes.indexOf(0, start);
  return bytes.toString('latin1', start, end < 0 ? undefined : end);
}

/** The frames: DISTINCT pictures of the pattern, each drawn from the previous as the demo presents them. */
function drawFrames(): Uint8Array[] {
  const layout = patternLayout(WIDTH, HEIGHT);
  const pixels = new Uint8Array(FRAME_BYTES);
  const out: Uint8Array[] = [];
  for (let i = 1; i <= DISTINCT; i++) {
    drawPattern(layout, pixels, WIDTH * 4, i, i > 1 ? i - 1 : undefined);
    out.push(pixels.slice());
  }
  return out;
}

/** The frames in memfds, as a producer's surface would hold them: the shared path's buffers. */
function sharedBuffers(frames: Uint8Array[]): { buffers: H264SharedBuffer[]; close: () => void } {
  const native = linuxNative();
  const fds = frames.map((_, i) => native.createMemfd(`sl-bench-${i}`, FRAME_BYTES));
  const buffers = fds.map((fd, i): H264SharedBuffer => {
    new Uint8Array(fd.map(0, FRAME_BYTES, 'shared')).set(frames[i]);
    return {
      fd,
      dmabuf: false,
      size: FRAME_BYTES,
      offset: 0,
      stride: WIDTH * 4,
      width: WIDTH,
      height: HEIGHT,
      format: 'XRGB8888',
      live: true,
      hold: () => {},
      release: () => {},
    };
  });
  return { buffers, close: () => fds.forEach((fd) => fd.close()) };
}

/** One run through H264Encoder: frames offered as fast as it takes them (maxInFlight 2, no frame dropped). */
async function encoderRun(
  input: H264Input,
  frames: Uint8Array[],
  buffers: H264SharedBuffer[],
): Promise<Run & { settings: { encoder: string[]; convert: string[] } | null }> {
  const encoder = await H264Encoder.start({
    width: WIDTH,
    height: HEIGHT,
    format: 'XRGB8888',
    fps: FPS,
    bitrateKbps: BITRATE_KBPS,
    element: 'x264enc',
    input,
  });
  try {
    if (encoder.input !== input)
      throw new Error(`asked for ${input} input, got ${encoder.input}: ${encoder.inputReason}`);
    const pid = encoder.pid!;
    let sent = 0;
    let received = 0;
    let bytes = 0;
    let sei = '';
    const done = new Promise<void>((resolve, reject) => {
      encoder.on('error', reject);
      encoder.on('au', (au) => {
        if (received === 0) sei = x264Sei(au.data);
        received++;
        bytes += au.data.length;
        if (received === FRAMES) resolve();
        else offer();
      });
    });
    const offer = () => {
      if (input === 'copy') {
        while (sent < FRAMES && encoder.encode(frames[sent % DISTINCT], WIDTH * 4, sent + 1, 0)) sent++;
        return;
      }
      while (sent < FRAMES && encoder.inFlight < encoder.maxInFlight) {
        if (encoder.encodeShared(buffers[sent % DISTINCT], sent + 1, 0) !== 'sent') break;
        sent++;
      }
    };
    const workerCpu0 = processCpuMs(pid);
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    offer();
    await done;
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const cpuMs = (cpu.user + cpu.system) / 1000 + (processCpuMs(pid) - workerCpu0);
    if (input === 'shared' && encoder.framesCopied !== 0) throw new Error('the shared run copied frames');
    return {
      fps: FRAMES / seconds,
      bytesPerFrame: bytes / FRAMES,
      cpuMsPerFrame: cpuMs / FRAMES,
      sei,
      settings: encoder.settings,
    };
  } finally {
    encoder.close();
  }
}

/** gst-launch-1.0's arguments for the bare pipeline over `frames` frames, with the worker's settings. */
function baselineArgs(
  pattern: string,
  frames: number,
  outFile: string,
  settings: { encoder: string[]; convert: string[] },
) {
  return [
    'multifilesrc',
    `location=${pattern}`,
    'index=0',
    `stop-index=${DISTINCT - 1}`,
    'loop=true',
    `num-buffers=${frames}`,
    '!',
    'rawvideoparse',
    'format=bgrx',
    `width=${WIDTH}`,
    `height=${HEIGHT}`,
    `framerate=${FPS}/1`,
    'colorimetry=sRGB',
    '!',
    'videoconvert',
    ...settings.convert,
    '!',
    'video/x-raw,format=I420',
    '!',
    'x264enc',
    ...settings.encoder,
    '!',
    'video/x-h264,profile=constrained-baseline,stream-format=byte-stream,alignment=au',
    '!',
    'filesink',
    `location=${outFile}`,
  ];
}

/** gst-launch-1.0 run through a shell that reports its CPU time once it has exited (cutime + cstime, ms). */
function launch(args: string[]): { out: string; cpuMs: number } {
  const r = spawnSync(
    'sh',
    ['-c', 'gst-launch-1.0 "$@" && echo "CHILD_CPU $(cut -d" " -f16,17 /proc/$$/stat)"', 'sh', ...args],
    {
      encoding: 'utf8',
      maxBuffer: 16 * 1024 * 1024,
    },
  );
  if (r.status !== 0) throw new Error(`gst-launch-1.0 failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  const m = /CHILD_CPU (\d+) (\d+)/.exec(r.stdout);
  if (!m) throw new Error(`no CPU time reported:\n${r.stdout}`);
  return { out: r.stdout, cpuMs: ((Number(m[1]) + Number(m[2])) * 1000) / CLOCK_TICKS };
}

/** One run of the bare pipeline; GStreamer reports its own PLAYING → EOS time. */
function baselineRun(pattern: string, outFile: string, settings: { encoder: string[]; convert: string[] }): Run {
  // A one-frame run first: its CPU time is start-up (plugin loading, pipeline set-up), not encoding.
  const startup = launch(baselineArgs(pattern, 1, outFile, settings)).cpuMs;
  const { out, cpuMs } = launch(baselineArgs(pattern, FRAMES, outFile, settings));
  const m = /Execution ended after (\d+):(\d+):(\d+\.\d+)/.exec(out);
  if (!m) throw new Error(`gst-launch-1.0 printed no execution time:\n${out}`);
  const seconds = Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]);
  const stream = fs.readFileSync(outFile);
  return {
    fps: FRAMES / seconds,
    bytesPerFrame: stream.length / FRAMES,
    cpuMsPerFrame: Math.max(0, cpuMs - startup) / (FRAMES - 1),
    sei: x264Sei(stream.subarray(0, 64 * 1024)),
  };
}

/** Versions of what is measured: GStreamer's x264 plugin, libx264 (from its SEI), Python. */
function versions(sei: string): { x264enc: string | null; libx264: string | null; python: string | null } {
  let x264enc: string | null = null;
  try {
    const inspect = execFileSync('gst-inspect-1.0', ['x264enc'], { encoding: 'utf8' });
    x264enc = /^\s*Version\s+(\S+)/m.exec(inspect)?.[1] ?? null;
  } catch {
    /* left null */
  }
  let python: string | null = null;
  try {
    python = execFileSync(workerPython(), ['--version'], { encoding: 'utf8' }).trim();
  } catch {
    /* left null */
  }
  const libx264 = /x264 - (core \d+ r\d+ \w+)/.exec(sei)?.[1] ?? null;
  return { x264enc, libx264, python };
}

async function main(): Promise<void> {
  const probe = await probeH264();
  if (!probe.candidates.find((c) => c.element === 'x264enc')?.usable)
    throw new Error(`x264enc is not usable here: ${probe.reason}`);
  const cpu = os.cpus()[0]?.model ?? '?';
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'sl-bench-'));
  const pattern = path.join(dir, 'frame-%d.bgrx');
  const outFile = path.join(dir, 'out.h264');
  const frames = drawFrames();
  frames.forEach((f, i) => fs.writeFileSync(pattern.replace('%d', String(i)), f));
  const shared = sharedBuffers(frames);
  try {
    console.log(
      `stream-encode: ${FRAMES} frames of ${WIDTH}x${HEIGHT} XRGB8888 (${DISTINCT} distinct, cycled), ${RUNS} runs ` +
        `per path, x264enc at ${BITRATE_KBPS} kbit/s (${os.cpus().length} CPUs: ${cpu})`,
    );
    const copyRuns: Run[] = [];
    const sharedRuns: Run[] = [];
    const baselineRuns: Run[] = [];
    let settings: { encoder: string[]; convert: string[] } | null = null;
    // Interleaved, so drift in the machine's load hits every path alike.
    for (let r = 0; r < RUNS; r++) {
      const c = await encoderRun('copy', frames, shared.buffers);
      const s = await encoderRun('shared', frames, shared.buffers);
      settings ??= c.settings;
      if (!settings) throw new Error('the worker did not report its settings');
      if (JSON.stringify(s.settings) !== JSON.stringify(settings))
        throw new Error(`the workers' settings differ: ${JSON.stringify(settings)} / ${JSON.stringify(s.settings)}`);
      copyRuns.push(c);
      sharedRuns.push(s);
      baselineRuns.push(baselineRun(pattern, outFile, settings));
      console.log(
        `  run ${r + 1}: bare pipeline ${baselineRuns[r].fps.toFixed(1)} fps, copy ${c.fps.toFixed(1)} fps, ` +
          `shared ${s.fps.toFixed(1)} fps`,
      );
    }
    // Same encoder, same settings: x264 says so itself, in every path's first access unit.
    const seis = new Set([...baselineRuns, ...copyRuns, ...sharedRuns].map((x) => x.sei));
    if (seis.size !== 1) throw new Error(`x264 was not configured alike:\n${[...seis].join('\n')}`);
    const sei = [...seis][0];

    const summary = (name: string, runs: Run[]) => {
      const bytesPerFrame = median(runs.map((x) => x.bytesPerFrame));
      return {
        name,
        runs: runs.length,
        frames: FRAMES,
        fps_median: round(median(runs.map((x) => x.fps))),
        fps_runs: runs.map((x) => round(x.fps)),
        cpu_ms_per_frame_median: round(median(runs.map((x) => x.cpuMsPerFrame)), 2),
        cpu_ms_per_frame_runs: runs.map((x) => round(x.cpuMsPerFrame, 2)),
        bytes_per_frame_median: Math.round(bytesPerFrame),
        kbps_at_30fps: Math.round((bytesPerFrame * 8 * FPS) / 1000),
      };
    };
    const results = [
      summary('gst-launch bare pipeline', baselineRuns),
      summary('H264Encoder, copy input (pipe)', copyRuns),
      summary('H264Encoder, shared input (fd)', sharedRuns),
    ];
    const [base, copy, share] = results;
    const v = versions(sei);

    console.log('');
    console.log('| path | fps (median) | CPU ms/frame (median) | bytes/frame | kbit/s at 30 fps |');
    console.log('|---|---:|---:|---:|---:|');
    for (const r of results)
      console.log(
        `| ${r.name} | ${r.fps_median} | ${r.cpu_ms_per_frame_median} | ${r.bytes_per_frame_median} | ` +
          `${r.kbps_at_30fps} |`,
      );
    console.log(
      `\nthroughput vs bare pipeline: copy ${round(copy.fps_median / base.fps_median, 3)}, ` +
        `shared ${round(share.fps_median / base.fps_median, 3)}`,
    );
    console.log(
      `CPU: ${os.cpus().length} × ${cpu}; ${probe.gstreamer}, x264enc ${v.x264enc}, libx264 ${v.libx264}, ` +
        `${v.python}, Node ${process.version}, kernel ${os.release()}`,
    );
    console.log(`x264: ${sei}`);

    const record = {
      bench: 'stream-encode',
      date: new Date().toISOString(),
      quick: QUICK,
      width: WIDTH,
      height: HEIGHT,
      format: 'XRGB8888',
      distinct_frames: DISTINCT,
      bitrate_kbps: BITRATE_KBPS,
      element: 'x264enc',
      settings: { videoconvert: settings!.convert, x264enc: settings!.encoder, caps: 'I420, constrained-baseline' },
      x264_sei: sei,
      gstreamer: probe.gstreamer,
      x264enc: v.x264enc,
      libx264: v.libx264,
      python: v.python,
      node: process.version,
      // The kernel matters: a page fault's cost differed 20x between kernels of one machine kind (docs/benchmarks.md).
      kernel: os.release(),
      cpus: os.cpus().length,
      cpu,
      results,
      ratio_copy_to_baseline: round(copy.fps_median / base.fps_median, 3),
      ratio_shared_to_baseline: round(share.fps_median / base.fps_median, 3),
    };
    const resultsDir = path.join(__dirname, 'results');
    fs.mkdirSync(resultsDir, { recursive: true });
    const file = path.join(resultsDir, `${record.date.replace(/:/g, '-').replace('.', '-')}-stream-encode.json`);
    fs.writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
    console.log(`wrote ${path.relative(process.cwd(), file)}`);
  } finally {
    shared.close();
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
