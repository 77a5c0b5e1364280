/**
 * `npm run soak -- --minutes N` (default 5): a producer presenting at 60 fps in this process, a
 * well-behaved viewer in another process, and a misbehaving client (bench/soak-misbehaver.ts)
 * reconnecting throughout: holding frames past its deadline, sending garbage, closing abruptly,
 * flooding non-fatal ERRORs, stalling its reads. Every second it samples the producer's fd count,
 * RSS and present intervals (p50, p99, max over that second), and at the end writes
 * bench/results/<time>-soak.json and an SVG plot of the three beside it, and prints a summary:
 * whether fds and RSS came back flat, the worst interval, and what the viewer lost.
 *
 * Each interval is also recorded less the time the producer's thread waited on a run queue in it
 * (/proc/self/schedstat, Linux): what other processes on the machine cost it, taken out. A stall of
 * our own (CPU spent, a write that blocks) is not a run-queue wait and stays in the corrected figure.
 *
 * A measurement, not a test: it asserts nothing. What a flat run looks like: fds back to their
 * first-minute level, RSS without a trend, intervals near 16.7 ms with the machine's own noise.
 */
import { fork } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { SurfaceClient, SurfaceServer } from '../src/index.js';

const args = process.argv.slice(2);
const minutesArg = args.indexOf('--minutes');
const minutes = minutesArg >= 0 ? Number(args[minutesArg + 1]) : 5;
if (!(minutes > 0)) {
  console.error('usage: npm run soak -- [--minutes N]   (N > 0, default 5)');
  process.exit(2);
}

const PERIOD_MS = 1000 / 60;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-soak-'));
const socketPath = path.join(dir, 's.sock');

interface Sample {
  t: number;
  fds: number;
  rssMiB: number;
  p50: number;
  p99: number;
  max: number;
  /** The same, less run-queue waits. */
  p99Corrected: number;
  maxCorrected: number;
  presents: number;
}

/** Time this thread has spent runnable but not running, ms (0 where the kernel does not say). */
function runQueueWaitMs(): number {
  try {
    return Number(fs.readFileSync('/proc/self/schedstat', 'utf8').split(' ')[1]) / 1e6;
  } catch {
    return 0;
  }
}

function quantile(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] : 0;
}

async function viewerProcess(): Promise<void> {
  // The well-behaved viewer: releases every frame at once; reports frames and sequence gaps.
  const client = await SurfaceClient.connect({ path: process.argv[3], name: 'soak-viewer' });
  let frames = 0;
  let gaps = 0;
  let last = -1;
  client.on('frame', (f) => {
    frames++;
    if (last >= 0 && f.sequence !== last + 1) gaps += f.sequence - last - 1;
    last = f.sequence;
    f.release();
  });
  client.on('disconnect', (d) => process.send?.({ disconnected: d.code }));
  setInterval(() => process.send?.({ frames, gaps }), 1000);
}

async function main(): Promise<void> {
  const server = await SurfaceServer.listen({ path: socketPath, name: 'soak', logger: () => {} });
  const surface = server.createSurface({ width: 640, height: 360, format: 'XRGB8888' });
  const intervals: number[] = [];
  const corrected: number[] = [];
  let presents = 0;
  let skipped = 0;
  let last = performance.now();
  let lastWait = runQueueWaitMs();
  const tick = setInterval(() => {
    const now = performance.now();
    const wait = runQueueWaitMs();
    intervals.push(now - last);
    corrected.push(now - last - (wait - lastWait));
    last = now;
    lastWait = wait;
    const b = surface.tryAcquire();
    if (!b) return void skipped++;
    b.pixels().fill(presents & 0xff);
    surface.present(b);
    presents++;
  }, PERIOD_MS);

  const viewer = fork(__filename, ['--viewer', socketPath], { execArgv: ['--import', 'tsx'] });
  let viewerStats = { frames: 0, gaps: 0 };
  let viewerDisconnected: string | null = null;
  viewer.on('message', (m: { frames?: number; gaps?: number; disconnected?: string }) => {
    if (m.disconnected) viewerDisconnected = m.disconnected;
    else viewerStats = { frames: m.frames ?? 0, gaps: m.gaps ?? 0 };
  });
  const misbehaver = fork(path.join(__dirname, 'soak-misbehaver.ts'), [socketPath], { execArgv: ['--import', 'tsx'] });
  const rounds: Record<string, number> = {};
  misbehaver.on('message', (m: { mode: string; outcome: string }) => {
    const key = `${m.mode}: ${m.outcome}`;
    rounds[key] = (rounds[key] ?? 0) + 1;
  });

  const samples: Sample[] = [];
  const t0 = performance.now();
  console.log(`soak: ${minutes} min, producer at 60 fps, one viewer, one misbehaving client reconnecting`);
  await new Promise<void>((resolve) => {
    const sampler = setInterval(() => {
      const sorted = intervals.splice(0).sort((a, b) => a - b);
      const sortedCorrected = corrected.splice(0).sort((a, b) => a - b);
      const s: Sample = {
        t: (performance.now() - t0) / 1000,
        fds: fs.readdirSync('/proc/self/fd').length,
        rssMiB: process.memoryUsage().rss / 2 ** 20,
        p50: quantile(sorted, 0.5),
        p99: quantile(sorted, 0.99),
        max: sorted.at(-1) ?? 0,
        p99Corrected: quantile(sortedCorrected, 0.99),
        maxCorrected: sortedCorrected.at(-1) ?? 0,
        presents,
      };
      samples.push(s);
      if (samples.length % 30 === 0)
        console.log(
          `  ${s.t.toFixed(0)} s: fds ${s.fds}, RSS ${s.rssMiB.toFixed(1)} MiB, interval p99 ${s.p99.toFixed(1)} ms ` +
            `(${s.p99Corrected.toFixed(1)} less run-queue waits), ` +
            `viewer ${viewerStats.frames} frames`,
        );
      if (s.t >= minutes * 60) {
        clearInterval(sampler);
        resolve();
      }
    }, 1000);
  });
  clearInterval(tick);
  misbehaver.kill('SIGKILL');
  viewer.kill('SIGKILL');
  server.close();
  fs.rmSync(dir, { recursive: true, force: true });

  const firstMinute = samples.slice(0, 60);
  const lastMinute = samples.slice(-60);
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
  const summary = {
    minutes,
    presents,
    skipped,
    fds: { firstMinute: mean(firstMinute.map((s) => s.fds)), lastMinute: mean(lastMinute.map((s) => s.fds)) },
    rssMiB: { firstMinute: mean(firstMinute.map((s) => s.rssMiB)), lastMinute: mean(lastMinute.map((s) => s.rssMiB)) },
    interval: {
      p99OfSeconds: quantile(
        samples.map((s) => s.p99).sort((a, b) => a - b),
        0.99,
      ),
      max: Math.max(...samples.map((s) => s.max)),
      lessRunQueueWaits: {
        p99OfSeconds: quantile(
          samples.map((s) => s.p99Corrected).sort((a, b) => a - b),
          0.99,
        ),
        max: Math.max(...samples.map((s) => s.maxCorrected)),
      },
      loadAverage: os.loadavg(),
    },
    viewer: { ...viewerStats, disconnected: viewerDisconnected },
    misbehaverRounds: rounds,
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const base = path.join(__dirname, 'results', `${stamp}-soak`);
  fs.mkdirSync(path.dirname(base), { recursive: true });
  fs.writeFileSync(`${base}.json`, JSON.stringify({ summary, samples }, null, 1));
  fs.writeFileSync(`${base}.svg`, plot(samples));
  console.log(JSON.stringify(summary, null, 2));
  console.log(`wrote ${base}.json and ${base}.svg`);
  process.exit(0);
}

/** Three stacked line charts (fds, RSS, present interval p99 and max) over time, as a plain SVG. */
function plot(samples: Sample[]): string {
  const W = 900;
  const H = 180;
  const pad = { l: 60, r: 20, t: 24, b: 24 };
  const tMax = Math.max(1, samples.at(-1)?.t ?? 1);
  const charts: { title: string; series: { name: string; color: string; values: number[] }[] }[] = [
    { title: 'open fds', series: [{ name: 'fds', color: '#1f77b4', values: samples.map((s) => s.fds) }] },
    { title: 'RSS (MiB)', series: [{ name: 'RSS', color: '#2ca02c', values: samples.map((s) => s.rssMiB) }] },
    {
      title: 'present interval per second (ms)',
      series: [
        { name: 'p50', color: '#7f7f7f', values: samples.map((s) => s.p50) },
        { name: 'p99', color: '#ff7f0e', values: samples.map((s) => s.p99) },
        { name: 'max', color: '#d62728', values: samples.map((s) => s.max) },
        { name: 'max less run-queue waits', color: '#9467bd', values: samples.map((s) => s.maxCorrected) },
      ],
    },
  ];
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H * charts.length}" font-family="sans-serif" font-size="11">`,
  ];
  charts.forEach((chart, i) => {
    const y0 = i * H;
    const all = chart.series.flatMap((s) => s.values);
    const vMax = Math.max(1, ...all) * 1.1;
    const x = (t: number) => pad.l + ((W - pad.l - pad.r) * t) / tMax;
    const y = (v: number) => y0 + H - pad.b - ((H - pad.t - pad.b) * v) / vMax;
    parts.push(`<text x="${pad.l}" y="${y0 + 16}" font-weight="bold">${chart.title}</text>`);
    parts.push(`<line x1="${pad.l}" y1="${y(0)}" x2="${W - pad.r}" y2="${y(0)}" stroke="#999"/>`);
    parts.push(`<line x1="${pad.l}" y1="${y(0)}" x2="${pad.l}" y2="${y(vMax)}" stroke="#999"/>`);
    parts.push(
      `<text x="${pad.l - 6}" y="${y(vMax) + 10}" text-anchor="end">${vMax.toFixed(vMax < 10 ? 1 : 0)}</text>`,
    );
    parts.push(`<text x="${pad.l - 6}" y="${y(0)}" text-anchor="end">0</text>`);
    parts.push(`<text x="${W - pad.r}" y="${y(0) + 14}" text-anchor="end">${tMax.toFixed(0)} s</text>`);
    chart.series.forEach((s, k) => {
      const points = s.values.map((v, j) => `${x(samples[j].t).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
      parts.push(`<polyline fill="none" stroke="${s.color}" stroke-width="1.2" points="${points}"/>`);
      parts.push(
        `<text x="${W - pad.r - 150 * (chart.series.length - k)}" y="${y0 + 16}" fill="${s.color}">${s.name}</text>`,
      );
    });
  });
  parts.push('</svg>');
  return parts.join('\n');
}

if (process.argv[2] === '--viewer') void viewerProcess();
else void main();
