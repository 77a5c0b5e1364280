/**
 * End-to-end latency of the remote stream on loopback, as a browser sees it: a 1920×1080
 * producer showing the demo pattern (test/fixtures/stream-producer.ts, its own process, a
 * StreamServer on it) and the browser viewer (web/) in headless Chromium (Debian's, through
 * playwright-core): H.264 encoded from the producer's shared buffer (h264Input 'shared', the
 * default) and painted the way the viewer picks by measuring (paint 'probe'); the same with the
 * viewer held to its previous way of painting (drawImage, `?paint=draw`); H.264 the previous
 * way on the server too (h264Input 'copy': each frame copied out and piped to the encoder), then
 * lossless tiles. Each case with a producer of its own, in the same run.
 *
 * CPU per frame sent: the producer process and (H.264) its encoder worker, user + system time
 * (/proc/<pid>/stat) over the measured seconds, divided by the frames sent.
 *
 * Latency is producer present (server clock) → the frame drawn on the viewer's canvas (the
 * page's clock mapped onto the server's through its ping/pong offset; on loopback the
 * offset's error is under the ping's round trip). Also reported: present → queued for the
 * socket (the server's share: mirror copy + encode), the viewer's stages (server send →
 * arrival, chunk → picture out of VideoDecoder, picture out → on the canvas), frames presented /
 * sent / drawn per second, and bitrate, from the viewer and from StreamServer.clients.
 *
 *   node --import tsx bench/stream-latency.ts                 (10 s per case; 30 and 60 fps)
 *   BENCH_QUICK=1 node --import tsx bench/stream-latency.ts   (4 s per case; 30 fps)
 *   BENCH_FPS=60 …                                            (one producer rate)
 *
 * Prints a markdown table and writes bench/results/<time>-stream-latency.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { Peer, eventually, sleep } from '../test/helpers.js';

const ROOT = path.resolve(__dirname, '..');
const QUICK = process.env.BENCH_QUICK === '1';
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 4 : 10));
const RATES = process.env.BENCH_FPS ? [Number(process.env.BENCH_FPS)] : QUICK ? [30] : [30, 60];
const WIDTH = 1920;
const HEIGHT = 1080;
const WARMUP_FRAMES = 30;
const CHROMIUM = process.env.SURFACELINK_CHROMIUM ?? '/usr/bin/chromium';

interface ClientInfo {
  codec: string;
  encoder: string | null;
  encoderPid: number | null;
  h264Input: string | null;
  framesSent: number;
  framesSkipped: number;
  keyframes: number;
  bytesSent: number;
  viewer: Record<string, number> | null;
}

interface Distribution {
  samples: number;
  p50: number;
  p99: number;
  mean: number;
  max: number;
}

interface CaseResult {
  codec: string;
  /** H.264: 'shared' or 'copy' (how frames reached the encoder); null for tiles. */
  input: string | null;
  /** H.264: how the viewer painted pictures at the end ('copy' or 'draw'), and what it was asked. */
  paint: string | null;
  paintAsked: string | null;
  /** H.264: the viewer's probe medians (ms) each way, when it probed. */
  paintProbeMs: { draw: number | null; copy: number | null } | null;
  producerFps: number;
  /** CPU (producer process + encoder worker, user + system) per frame sent, ms. */
  cpuMsPerFrame: number;
  encoder: string | null;
  seconds: number;
  latencyMs: Distribution;
  serverMs: Distribution;
  /** Server send → arrival in the page (server clock). */
  transitMs: Distribution;
  /** H.264: chunk submitted to the page's VideoDecoder → picture out; tiles: arrival → inflated. */
  decodeMs: Distribution;
  /** Picture out → on the canvas (queueing included); tiles: applied and put. */
  drawMs: Distribution;
  presentedPerSecond: number;
  sentPerSecond: number;
  drawnPerSecond: number;
  skippedPerSecond: number;
  bitrateKbps: number;
  keyframes: number;
  droppedInViewer: number;
  decoderErrors: number;
  viewerReported: Record<string, number> | null;
}

function distribution(values: number[]): Distribution {
  const s = [...values].sort((a, b) => a - b);
  const q = (p: number) => (s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] : NaN);
  return {
    samples: s.length,
    p50: round(q(0.5)),
    p99: round(q(0.99)),
    mean: round(s.reduce((a, b) => a + b, 0) / Math.max(1, s.length)),
    max: round(s[s.length - 1] ?? NaN),
  };
}

/** utime + stime of a process in ms (Linux /proc; clock ticks of 10 ms), or 0 when it is gone. */
function cpuMs(pid: number | null): number {
  if (!pid) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10;
  } catch {
    return 0;
  }
}

function round(n: number, digits = 2): number {
  const f = 10 ** digits;
  return Math.round(n * f) / f;
}

async function runCase(
  browser: Browser,
  producer: Peer,
  info: { url: string; token: string },
  codec: 'h264' | 'tiles',
  fps: number,
  paint: 'probe' | 'draw' | null,
): Promise<CaseResult | { codec: string; producerFps: number; skipped: string }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  try {
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    const url = new URL(info.url);
    url.search = `?codec=${codec}${paint === 'draw' ? '&paint=draw' : ''}`;
    url.hash = `token=${info.token}`;
    await page.goto(url.href);
    const stats = () => page.evaluate(() => (globalThis as any).surfacelinkViewer.stats());
    await eventually(
      async () =>
        (await stats()).state !== 'starting' &&
        (await stats()).state !== 'connecting' &&
        (await stats()).state !== 'authenticating',
      15000,
      'the viewer connected',
    );
    const first = await stats();
    if (first.state !== 'streaming') return { codec, producerFps: fps, skipped: first.message ?? first.state };
    await eventually(
      async () => (await stats()).framesDrawn >= WARMUP_FRAMES && (await stats()).clockSynced,
      30000,
      `${WARMUP_FRAMES} warm-up frames`,
    );
    const client0 = (await producer.call<ClientInfo[]>('clients')).find((c) => c.codec === codec)!;
    const cpu0 = cpuMs(producer.pid) + cpuMs(client0.encoderPid);
    const presented0 = (await producer.call<{ presented: number }>('presented')).presented;
    const viewer0 = await stats();
    await page.evaluate(() => {
      (globalThis as any).surfacelinkViewer.latencySamples(true);
      (globalThis as any).surfacelinkViewer.serverDelaySamples(true);
      (globalThis as any).surfacelinkViewer.stageSamples(true);
    });
    const t0 = performance.now();
    await sleep(SECONDS * 1000);
    const latency: number[] = await page.evaluate(() => (globalThis as any).surfacelinkViewer.latencySamples());
    const server: number[] = await page.evaluate(() => (globalThis as any).surfacelinkViewer.serverDelaySamples());
    const stages: Record<string, number[]> = await page.evaluate(() =>
      (globalThis as any).surfacelinkViewer.stageSamples(),
    );
    const seconds = (performance.now() - t0) / 1000;
    const viewer1 = await stats();
    const client1 = (await producer.call<ClientInfo[]>('clients')).find((c) => c.codec === codec)!;
    const cpu1 = cpuMs(producer.pid) + cpuMs(client1.encoderPid);
    const presented1 = (await producer.call<{ presented: number }>('presented')).presented;
    if (errors.length) throw new Error(`page errors: ${errors.join('; ')}`);
    return {
      codec,
      input: client1.h264Input,
      paint: codec === 'h264' ? viewer1.paintMode : null,
      paintAsked: paint,
      paintProbeMs: codec === 'h264' && paint === 'probe' ? viewer1.paintProbeMs : null,
      producerFps: fps,
      cpuMsPerFrame: round((cpu1 - cpu0) / Math.max(1, client1.framesSent - client0.framesSent)),
      encoder: client1.encoder,
      seconds: round(seconds),
      latencyMs: distribution(latency),
      serverMs: distribution(server),
      transitMs: distribution(stages.transit),
      decodeMs: distribution(stages.decode),
      drawMs: distribution(stages.draw),
      presentedPerSecond: round((presented1 - presented0) / seconds, 1),
      sentPerSecond: round((client1.framesSent - client0.framesSent) / seconds, 1),
      drawnPerSecond: round((viewer1.framesDrawn - viewer0.framesDrawn) / seconds, 1),
      skippedPerSecond: round((client1.framesSkipped - client0.framesSkipped) / seconds, 1),
      bitrateKbps: Math.round(((client1.bytesSent - client0.bytesSent) * 8) / 1000 / seconds),
      keyframes: client1.keyframes - client0.keyframes,
      droppedInViewer: viewer1.framesDropped - viewer0.framesDropped,
      decoderErrors: viewer1.errors - viewer0.errors,
      viewerReported: client1.viewer,
    };
  } finally {
    await context.close();
  }
}

async function main(): Promise<void> {
  if (!fs.existsSync(CHROMIUM))
    throw new Error(`no Chromium at ${CHROMIUM} (apt-get install chromium, or set SURFACELINK_CHROMIUM)`);
  process.stdout.write(
    `stream latency: ${WIDTH}x${HEIGHT} pattern, producer at ${RATES.join(' and ')} fps, ${SECONDS} s per ` +
      `case, headless Chromium on loopback; ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'}\n`,
  );
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  const chromiumVersion = browser.version();
  const results: (CaseResult | { codec: string; producerFps: number; skipped: string })[] = [];
  try {
    const cases = [
      { codec: 'h264', input: 'shared', paint: 'probe' },
      { codec: 'h264', input: 'shared', paint: 'draw' },
      { codec: 'h264', input: 'copy', paint: 'draw' },
      { codec: 'tiles', input: 'shared', paint: null },
    ] as const;
    for (const fps of RATES) {
      for (const { codec, input, paint } of cases) {
        const producer = new Peer('stream-producer.ts', [
          '--width',
          String(WIDTH),
          '--height',
          String(HEIGHT),
          '--fps',
          String(fps),
          '--max-fps',
          String(fps),
          '--h264-input',
          input,
        ]);
        try {
          const info = await producer.waitEvent('ready', () => true, 30000);
          if (codec === 'h264' && !info.h264Encoder) {
            results.push({ codec, producerFps: fps, skipped: 'the server has no H.264 encoder' });
            continue;
          }
          const r = await runCase(browser, producer, info, codec, fps, paint);
          results.push(r);
          process.stdout.write(
            `  ${codec}${codec === 'h264' ? ` (${input} input, paint ${paint})` : ''} at ${fps} fps: ` +
              ('skipped' in r
                ? `skipped: ${r.skipped}`
                : `p50 ${r.latencyMs.p50} ms, p99 ${r.latencyMs.p99} ms, ${r.drawnPerSecond} drawn/s, ` +
                  `${r.cpuMsPerFrame} ms CPU per frame`) +
              '\n',
          );
        } finally {
          await producer.stop();
        }
      }
    }
  } finally {
    await browser.close();
  }
  const table = [
    '| codec | producer fps | encoded + sent fps | drawn fps | latency p50 ms | latency p99 ms | server share ' +
      'p50 / p99 ms | transit / decode / paint p50 ms | CPU ms per frame (producer + encoder) | bitrate kb/s | ' +
      'samples |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((r) =>
      'skipped' in r
        ? `| ${r.codec} | ${r.producerFps} | skipped: ${r.skipped} |||||||||`
        : `| ${r.codec}${r.encoder ? ` (${r.encoder}, ${r.input} input, paint ${r.paint})` : ''} ` +
          `| ${r.presentedPerSecond} | ${r.sentPerSecond} | ${r.drawnPerSecond} | ${r.latencyMs.p50} ` +
          `| ${r.latencyMs.p99} | ${r.serverMs.p50} / ${r.serverMs.p99} ` +
          `| ${r.transitMs.p50} / ${r.decodeMs.p50} / ${r.drawMs.p50} | ${r.cpuMsPerFrame} | ${r.bitrateKbps} ` +
          `| ${r.latencyMs.samples} |`,
    ),
  ];
  process.stdout.write(`${table.join('\n')}\n`);
  const record = {
    bench: 'stream-latency',
    date: new Date().toISOString(),
    host: {
      cpus: os.cpus().length,
      model: os.cpus()[0]?.model ?? null,
      node: process.version,
      platform: `${os.platform()} ${os.release()}`,
      chromium: chromiumVersion,
    },
    setup: {
      width: WIDTH,
      height: HEIGHT,
      seconds: SECONDS,
      warmupFrames: WARMUP_FRAMES,
      quick: QUICK,
      latency: 'producer present → drawn on the browser canvas (server clock via ping/pong)',
      serverShare: 'present → queued for the socket',
      stages:
        'transit: server send → arrival in the page; decode: chunk submitted → picture out of VideoDecoder ' +
        '(tiles: arrival → inflated); paint (drawMs): picture out → on the canvas (tiles: applied and put)',
    },
    results,
  };
  const out = path.join(ROOT, 'bench', 'results', `${record.date.replace(/[:.]/g, '-')}-stream-latency.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    `${JSON.stringify(record, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2)}\n`,
  );
  process.stdout.write(`wrote ${path.relative(ROOT, out)}\n`);
}

main().catch((error) => {
  process.stderr.write(`${(error as Error).stack ?? String(error)}\n`);
  process.exit(1);
});
