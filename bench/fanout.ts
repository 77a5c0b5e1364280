/**
 * Fan-out (issue 13): one 1920x1080 XRGB8888 surface presented at 60 fps in this process, to 1, 8,
 * 32, 64, 128 and 256 clients (shm.v1) spread over up to 8 client processes, each client
 * releasing every frame as soon as it arrives. Per case, after every client connected and a
 * warm-up: the producer's CPU (user + system, % of one core), the client processes' CPU, the
 * producer's presents and skipped frames per second, each client's frame rate (the slowest and the
 * median), and the handoff present → `frame` event in the client, p50 and p99 over every frame of
 * every client (both ends read CLOCK_MONOTONIC: one host, one clock). The 1-client case is the
 * baseline the others are compared with (handoff p50 and producer CPU per delivered frame).
 *
 *   node --import tsx bench/fanout.ts [--counts 1,8,32] [--seconds 10]    (BENCH_QUICK=1: 4 s)
 *
 * Writes bench/results/<time>-fanout.json. A measurement, not a test: it asserts nothing, but it
 * says whether every client stayed at the producer's full rate (slowest client ≥ 95% of 60 fps).
 */
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { SurfaceClient, SurfaceServer } from '../src/index.js';
import { monotonicMs } from '../src/telemetry.js';

const FPS = 60;
const PERIOD_MS = 1000 / FPS;
const WIDTH = 1920;
const HEIGHT = 1080;
const MAX_PROCESSES = 8;
const FULL_RATE = 0.95;

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function quantile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  return n ? sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))] : 0;
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------------------------------------
// Client process: `--worker <socket> <count>`; connects `count` clients at once, then answers the
// parent's 'start' / 'stop' with frame counts and handoff samples of the window in between.

type ToWorker = { cmd: 'start' } | { cmd: 'stop' };
type FromWorker =
  | { kind: 'ready'; connectMs: number; failed: string[] }
  | { kind: 'window'; frames: number[]; gaps: number; handoffMs: number[]; cpuMs: number; seconds: number };

async function worker(socketPath: string, count: number): Promise<void> {
  const send = (m: FromWorker) => process.send?.(m);
  const frames = new Array<number>(count).fill(0);
  let gaps = 0;
  // Every handoff of the window (a preallocated ring: no allocation per frame).
  const handoff = new Float64Array(FPS * 120 * Math.max(1, count));
  let samples = 0;
  let measuring = false;
  const t0 = performance.now();
  const failed: string[] = [];
  const clients = await Promise.all(
    Array.from({ length: count }, (_, i) =>
      SurfaceClient.connect({ path: socketPath, name: `fanout-${process.pid}-${i}`, mechanisms: ['shm.v1'] }).then(
        (client) => {
          let last = -1;
          client.on('frame', (frame) => {
            if (measuring) {
              if (samples < handoff.length) handoff[samples++] = monotonicMs() - frame.presentTimeNs / 1e6;
              frames[i]++;
              if (last >= 0 && frame.sequence > last + 1) gaps += frame.sequence - last - 1;
            }
            last = frame.sequence;
            frame.release();
          });
          client.on('disconnect', (d) => failed.push(`${i}: ${d.code} ${d.message}`));
          return client;
        },
        (error: Error) => {
          failed.push(`${i}: ${error.message}`);
          return null;
        },
      ),
    ),
  );
  send({ kind: 'ready', connectMs: performance.now() - t0, failed: [...failed] });
  let cpu0 = process.cpuUsage();
  let w0 = 0;
  process.on('message', (m: ToWorker) => {
    if (m.cmd === 'start') {
      frames.fill(0);
      gaps = 0;
      samples = 0;
      cpu0 = process.cpuUsage();
      w0 = performance.now();
      measuring = true;
    } else {
      measuring = false;
      const cpu = process.cpuUsage(cpu0);
      send({
        kind: 'window',
        frames: [...frames],
        gaps,
        handoffMs: Array.from(handoff.subarray(0, samples)),
        cpuMs: (cpu.user + cpu.system) / 1000,
        seconds: (performance.now() - w0) / 1000,
      });
    }
  });
  process.on('disconnect', () => {
    for (const c of clients) c?.close();
    process.exit(0);
  });
}

// ---------------------------------------------------------------------------------------------
// The producer and one case.

interface CaseResult {
  clients: number;
  processes: number;
  connectMs: number;
  connectFailures: number;
  seconds: number;
  presentsPerSecond: number;
  skippedPerSecond: number;
  producerCpuPercent: number;
  clientProcessesCpuPercent: number;
  fpsMin: number;
  fpsP50: number;
  gaps: number;
  handoffP50Ms: number;
  handoffP99Ms: number;
  producerCpuUsPerDeliveredFrame: number;
  fullRate: boolean;
  poolBuffers: number;
}

function waitFor<T extends FromWorker['kind']>(
  child: ChildProcess,
  kind: T,
  timeoutMs: number,
): Promise<Extract<FromWorker, { kind: T }>> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`client process ${child.pid}: no '${kind}' in ${timeoutMs} ms`)),
      timeoutMs,
    );
    const onMessage = (m: FromWorker) => {
      if (m.kind !== kind) return;
      clearTimeout(timer);
      child.off('message', onMessage);
      resolve(m as Extract<FromWorker, { kind: T }>);
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`client process exited with ${code}`)));
  });
}

async function runCase(dir: string, clients: number, seconds: number): Promise<CaseResult> {
  const socketPath = path.join(dir, `fanout-${clients}.sock`);
  const server = await SurfaceServer.listen({
    path: socketPath,
    name: 'fanout',
    maxClients: clients + 8,
    logger: () => {},
  });
  const surface = server.createSurface({ width: WIDTH, height: HEIGHT, format: 'XRGB8888' });
  // The producer: a drift-free 60 fps schedule; each frame draws a 64x64 square that moves, and
  // says so in its damage (a real renderer's cost is its own, not ours).
  let presents = 0;
  let skipped = 0;
  let frameNo = 0;
  const start = performance.now();
  let timer: NodeJS.Timeout | undefined;
  const tick = () => {
    frameNo++;
    const b = surface.tryAcquire();
    if (!b) skipped++;
    else {
      const bytes = b.pixels();
      const px = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >> 2);
      const x = (frameNo * 8) % (WIDTH - 64);
      const stride = b.stride / 4;
      const color = (0xff000000 | Math.imul(frameNo, 2654435761)) >>> 0;
      for (let row = 0; row < 64; row++) px.fill(color, row * stride + x, row * stride + x + 64);
      surface.present(b, { damage: [{ x, y: 0, width: 64, height: 64 }] });
      presents++;
    }
    timer = setTimeout(tick, Math.max(0, start + (frameNo + 1) * PERIOD_MS - performance.now()));
  };
  timer = setTimeout(tick, PERIOD_MS);

  const processes = Math.min(clients, MAX_PROCESSES);
  const children = Array.from({ length: processes }, (_, p) => {
    const n = Math.floor(clients / processes) + (p < clients % processes ? 1 : 0);
    return fork(__filename, ['--worker', socketPath, String(n)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
  });
  try {
    // Every process's clients connect at once (the processes start together).
    const ready = await Promise.all(children.map((c) => waitFor(c, 'ready', 120_000)));
    const connectMs = Math.max(...ready.map((r) => r.connectMs));
    const connectFailures = ready.reduce((a, r) => a + r.failed.length, 0);
    for (const r of ready) for (const f of r.failed.slice(0, 3)) console.log(`    connect failed: ${f}`);
    await new Promise((r) => setTimeout(r, 2000)); // warm-up: every client has mapped the pool
    const cpu0 = process.cpuUsage();
    const p0 = presents;
    const s0 = skipped;
    const w0 = performance.now();
    for (const c of children) c.send({ cmd: 'start' } satisfies ToWorker);
    await new Promise((r) => setTimeout(r, seconds * 1000));
    const windows = Promise.all(children.map((c) => waitFor(c, 'window', 60_000)));
    for (const c of children) c.send({ cmd: 'stop' } satisfies ToWorker);
    const cpu = process.cpuUsage(cpu0);
    const wall = (performance.now() - w0) / 1000;
    const results = await windows;
    const fps = results.flatMap((r) => r.frames.map((f) => f / r.seconds)).sort((a, b) => a - b);
    const handoff = Float64Array.from(results.flatMap((r) => r.handoffMs)).sort();
    const delivered = results.reduce((a, r) => a + r.frames.reduce((x, y) => x + y, 0), 0);
    const producerCpuMs = (cpu.user + cpu.system) / 1000;
    const presentsPerSecond = (presents - p0) / wall;
    return {
      clients,
      processes,
      connectMs: round(connectMs, 0),
      connectFailures,
      seconds: round(wall, 1),
      presentsPerSecond: round(presentsPerSecond, 1),
      skippedPerSecond: round((skipped - s0) / wall, 1),
      producerCpuPercent: round((producerCpuMs / (wall * 1000)) * 100, 1),
      clientProcessesCpuPercent: round((results.reduce((a, r) => a + r.cpuMs, 0) / (wall * 1000)) * 100, 1),
      fpsMin: round(fps[0] ?? 0, 1),
      fpsP50: round(quantile(fps, 0.5), 1),
      gaps: results.reduce((a, r) => a + r.gaps, 0),
      handoffP50Ms: round(quantile(handoff, 0.5), 3),
      handoffP99Ms: round(quantile(handoff, 0.99), 3),
      producerCpuUsPerDeliveredFrame: round((producerCpuMs * 1000) / Math.max(1, delivered), 1),
      fullRate: connectFailures === 0 && (fps[0] ?? 0) >= FULL_RATE * FPS,
      poolBuffers: surface.poolStats.buffers,
    };
  } finally {
    clearTimeout(timer);
    for (const c of children) c.disconnect();
    await Promise.all(children.map((c) => new Promise((r) => (c.exitCode !== null ? r(0) : c.once('exit', r)))));
    server.close();
  }
}

async function main(): Promise<void> {
  const counts = (arg('--counts') ?? '1,8,32,64,128,256').split(',').map(Number);
  const seconds = Number(arg('--seconds') ?? (process.env.BENCH_QUICK === '1' ? 4 : 10));
  if (counts.some((n) => !Number.isInteger(n) || n < 1) || !(seconds > 0)) {
    console.error('usage: node --import tsx bench/fanout.ts [--counts 1,8,32,64,128,256] [--seconds 10]');
    process.exit(2);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-fanout-'));
  const cpus = os.cpus();
  console.log(
    `fan-out: one ${WIDTH}x${HEIGHT} XRGB8888 surface at ${FPS} fps (shm.v1) to ${counts.join(', ')} clients ` +
      `in ≤ ${MAX_PROCESSES} processes; ${seconds} s measured per case after a 2 s warm-up; ` +
      `${cpus.length} CPUs, ${cpus[0]?.model ?? '?'}, Node ${process.version}`,
  );
  const results: CaseResult[] = [];
  try {
    for (const n of counts) {
      const r = await runCase(dir, n, seconds);
      results.push(r);
      console.log(
        `  ${n} clients: connected in ${r.connectMs} ms, producer ${r.producerCpuPercent}% CPU, ` +
          `slowest client ${r.fpsMin} fps, handoff p50 ${r.handoffP50Ms} ms`,
      );
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const base = results.find((r) => r.clients === 1) ?? results[0];
  console.log(
    '\n| clients | processes | all connected (ms) | producer CPU % | client processes CPU % | presents/s | ' +
      'skipped/s | fps slowest / p50 | handoff p50 / p99 ms | p50 ÷ 1 client | producer µs per delivered frame | ' +
      'full rate |',
  );
  console.log('|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|');
  const fullRate = (r: CaseResult) =>
    r.fullRate ? 'yes' : `no${r.connectFailures ? ` (${r.connectFailures} did not connect)` : ''}`;
  for (const r of results)
    console.log(
      `| ${r.clients} | ${r.processes} | ${r.connectMs} | ${r.producerCpuPercent} | ${r.clientProcessesCpuPercent} | ` +
        `${r.presentsPerSecond} | ${r.skippedPerSecond} | ${r.fpsMin} / ${r.fpsP50} | ` +
        `${r.handoffP50Ms} / ${r.handoffP99Ms} | ${round(r.handoffP50Ms / base.handoffP50Ms)} | ` +
        `${r.producerCpuUsPerDeliveredFrame} | ${fullRate(r)} |`,
    );
  const record = {
    date: new Date().toISOString(),
    host: {
      cpus: cpus.length,
      model: cpus[0]?.model,
      kernel: os.release(),
      node: process.version,
      loadavg: os.loadavg(),
    },
    surface: { width: WIDTH, height: HEIGHT, format: 'XRGB8888', fps: FPS, mechanism: 'shm.v1' },
    secondsPerCase: seconds,
    results,
  };
  const out = path.join(__dirname, 'results', `${record.date.replace(/[:.]/g, '-')}-fanout.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(out, JSON.stringify(record, null, 2) + '\n');
  console.log(`\nrecorded ${path.relative(path.join(__dirname, '..'), out)}`);
}

if (process.argv[2] === '--worker') void worker(process.argv[3], Number(process.argv[4]));
else
  main().catch((error) => {
    console.error(error);
    process.exit(1);
  });
