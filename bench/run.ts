/**
 * npm run bench: the present → frame → release round trip between two processes, at three
 * sizes, beside two baselines measured in the same run:
 *   c-fd-roundtrip   one message + one fd over a socketpair and a reply, in C (the floor);
 *   addon-channel    the same through the addon's channel in two Node processes.
 * Prints medians and ratios, writes bench/results/<timestamp>.json.
 */
import { execFileSync, fork } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SurfaceServer, allocatorReports } from '../src/index.js';
import { linuxNative as loadNative } from '../src/native/index.js';

const ROOT = path.resolve(__dirname, '..');
const ITERATIONS = Number(process.env.BENCH_ITERATIONS ?? 5000);
const WARMUP = 500;

interface Result {
  name: string;
  iterations: number;
  p50_us: number;
  p99_us: number;
  mean_us: number;
}

function summarize(name: string, samplesNs: number[]): Result {
  const sorted = [...samplesNs].sort((a, b) => a - b);
  const us = (ns: number) => Math.round(ns / 10) / 100;
  return {
    name,
    iterations: sorted.length,
    p50_us: us(sorted[Math.floor(sorted.length / 2)]),
    p99_us: us(sorted[Math.floor(sorted.length * 0.99)]),
    mean_us: us(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
}

function cBaseline(): Result {
  const exe = path.join(ROOT, 'build', 'fd_roundtrip');
  if (!fs.existsSync(exe))
    throw new Error(`${exe} is missing: run "npm run bench" (bench/all.sh compiles bench/native/fd_roundtrip.c)`);
  const out = JSON.parse(execFileSync(exe, [String(ITERATIONS * 4)], { encoding: 'utf8' }));
  return {
    name: 'c-fd-roundtrip',
    iterations: out.iterations,
    p50_us: out.p50_ns / 1000,
    p99_us: out.p99_ns / 1000,
    mean_us: Math.round(out.mean_ns / 10) / 100,
  };
}

function spawnPeer(script: string, socketPath: string, ...args: string[]) {
  const child = fork(path.join(__dirname, script), [socketPath, ...args], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const ready = new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`${script} exited with ${code}`)));
  });
  return { child, ready };
}

async function addonBaseline(dir: string): Promise<Result> {
  const addon = loadNative();
  const socketPath = path.join(dir, 'echo.sock');
  const listener = addon.listen(socketPath);
  const samples: number[] = [];
  const memfd = addon.createMemfd('bench', 4096);
  const msg = Buffer.alloc(32);
  msg.writeUInt32LE(32, 0);
  msg.writeUInt16LE(0x10, 4);
  msg.writeUInt8(1, 6);
  const done = new Promise<void>((resolve) => {
    listener.start((channel) => {
      if (!channel) return;
      let i = -WARMUP;
      let t0 = 0n;
      const next = () => {
        t0 = process.hrtime.bigint();
        channel.send(msg, [memfd]);
      };
      channel.start(
        Buffer.allocUnsafeSlow(65536),
        () => {
          if (i >= 0) samples.push(Number(process.hrtime.bigint() - t0));
          if (++i < ITERATIONS) next();
          else {
            channel.close();
            resolve();
          }
        },
        () => {},
      );
      next();
    });
  });
  const peer = spawnPeer('channel-echo.ts', socketPath);
  await peer.ready;
  await done;
  listener.close();
  memfd.close();
  peer.child.kill();
  return summarize('addon-channel', samples);
}

interface SurfaceCase {
  name: string;
  server: SurfaceServer;
  peer: ReturnType<typeof spawnPeer>;
  samples: number[];
  /** Runs `count` round trips (present → frame in the client → release back here). */
  round(count: number, record: boolean): Promise<void>;
}

async function surfaceCase(dir: string, width: number, height: number, mechanism: string): Promise<SurfaceCase> {
  const socketPath = path.join(dir, `s-${mechanism}-${width}x${height}.sock`);
  const server = await SurfaceServer.listen({ path: socketPath, logger: () => {} });
  const surface = server.createSurface({ width, height, format: 'XRGB8888', mechanism });
  const peer = spawnPeer('client.ts', socketPath, mechanism);
  await peer.ready;
  const samples: number[] = [];
  let t0 = 0n;
  let remaining = 0;
  let recording = false;
  let finish: () => void = () => {};
  const present = () => {
    const buffer = surface.acquire();
    buffer.pixels()[0] = remaining & 0xff; // a real write, but the cost must not depend on size
    t0 = process.hrtime.bigint();
    surface.present(buffer, { damage: [{ x: 0, y: 0, width: 1, height: 1 }] });
  };
  server.on('release', () => {
    if (recording) samples.push(Number(process.hrtime.bigint() - t0));
    if (--remaining > 0) present();
    else finish();
  });
  return {
    name: `${mechanism} ${width}x${height}`,
    server,
    peer,
    samples,
    round(count, record) {
      remaining = count;
      recording = record;
      return new Promise<void>((resolve) => {
        finish = resolve;
        present();
      });
    },
  };
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-bench-'));
  try {
    console.log(
      `surfacelink bench: ${ITERATIONS} round trips per case after ${WARMUP} warm-up; ${os.cpus().length} ` +
        `CPUs, ${os.cpus()[0]?.model ?? '?'}, Node ${process.version}`,
    );
    const c = cBaseline();
    const raw = await addonBaseline(dir);
    const sizes: [number, number][] = [
      [64, 64],
      [1920, 1080],
      [3840, 2160],
    ];
    // dma-buf cases where an allocator works (inside the test VM: npm run bench:vm).
    const dmabuf = allocatorReports().some((r) => r.available && r.name !== 'vgem');
    const mechanisms = dmabuf ? ['shm.v1', 'dmabuf.v1'] : ['shm.v1'];
    const cases: SurfaceCase[] = [];
    for (const m of mechanisms) for (const [w, h] of sizes) cases.push(await surfaceCase(dir, w, h, m));
    for (const k of cases) await k.round(WARMUP, false);
    // Interleave the sizes in rounds so that machine noise lands on all of them alike.
    const ROUNDS = 10;
    for (let r = 0; r < ROUNDS; r++) for (const k of cases) await k.round(Math.ceil(ITERATIONS / ROUNDS), true);
    const surfaces = cases.map((k) => summarize(k.name, k.samples));
    for (const k of cases) {
      k.server.close();
      await new Promise((resolve) => k.peer.child.once('exit', resolve));
    }
    const rows = [c, raw, ...surfaces].map((r) => ({
      ...r,
      vs_c_p50: Math.round((r.p50_us / c.p50_us) * 100) / 100,
      vs_addon_p50: Math.round((r.p50_us / raw.p50_us) * 100) / 100,
    }));
    const sizeSpread = Math.round((surfaces[2].p50_us / surfaces[0].p50_us - 1) * 1000) / 10;
    const inVm = process.env.SURFACELINK_IN_VM === '1';
    console.log('\n| case | p50 µs | p99 µs | mean µs | p50 ÷ C fd round trip | p50 ÷ addon channel |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const r of rows)
      console.log(`| ${r.name} | ${r.p50_us} | ${r.p99_us} | ${r.mean_us} | ${r.vs_c_p50} | ${r.vs_addon_p50} |`);
    console.log(`\n4K p50 vs 64x64 p50: ${sizeSpread >= 0 ? '+' : ''}${sizeSpread}% (target: within 10%)`);
    console.log(`shm.v1 1080p p50 ÷ C fd round trip: ${rows[3].vs_c_p50}x (target: within 3x)`);
    if (dmabuf)
      console.log(
        `dmabuf.v1 1080p p50 ÷ shm.v1 1080p p50: ${Math.round((surfaces[4].p50_us / surfaces[1].p50_us) * 100) / 100}x`,
      );
    if (inVm) console.log('(inside the test VM: TCG emulation, so absolute times are slow; compare ratios)');
    const record = {
      date: new Date().toISOString(),
      host: {
        cpus: os.cpus().length,
        model: os.cpus()[0]?.model,
        kernel: os.release(),
        node: process.version,
        vm: inVm,
      },
      iterations: ITERATIONS,
      results: rows,
      sizeSpreadPercent: sizeSpread,
    };
    const out = path.join(ROOT, 'bench', 'results', `${record.date.replace(/[:.]/g, '-')}${inVm ? '-vm' : ''}.json`);
    fs.mkdirSync(path.dirname(out), { recursive: true });
    fs.writeFileSync(out, JSON.stringify(record, null, 2) + '\n');
    console.log(`\nrecorded ${path.relative(ROOT, out)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
