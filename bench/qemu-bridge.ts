/**
 * The QEMU bridge under a full-screen guest animation (test/qemu/ guest, `mode=all`: every pixel
 * changes every frame) at 1280×800, 60 frames/s, TCG, on QEMU 7.2 (pixels in Scanout/Update
 * messages) and 10.0 (`bpp=16`: QEMU's own memfd, ScanoutMap/UpdateMap):
 *
 *   drain   the baseline: a bare listener (bench/qemu-drain.ts) that registers like the bridge and
 *           drops every message;
 *   bridge  `surfacelink serve --qemu` (the compiled CLI) with one viewer (bench/qemu-viewer.ts)
 *           taking every frame.
 *
 * Per case, over the same window: the guest's frames/s (its debug console), messages/s QEMU sent
 * (drain) or frames/s the viewer received (bridge), CPU of the listener process (% of one core,
 * /proc/PID/stat), QEMU's CPU, and the bridge/drain CPU ratio. Latency is guest frame → viewer:
 * the guest writes `frame N` to its debug console right after presenting frame N, read here on a
 * socket and stamped on arrival (CLOCK_MONOTONIC), against the viewer's Frame.receiveTimeNs (same
 * clock) for the frame whose bar says N. It includes QEMU's display refresh (30 ms by default),
 * which no listener can avoid.
 *
 *   node --import tsx bench/qemu-bridge.ts        (BENCH_SECONDS per case, default 10; BENCH_QUICK=1: 4)
 *
 * Prints a table and writes bench/results/<time>-qemu-bridge.json. Skips (saying why) where
 * QEMU 7.2 / 10.0 or gcc is missing: scripts/qemu/fetch-qemu10.sh fetches 10.0.
 */
import { fork, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Cli, ensureCliBuilt } from '../test/cli-process.js';
import { buildGuest, findQemu, startQemu, type QemuVersion, type RunningQemu } from '../test/qemu/qemu.js';

const ROOT = path.resolve(__dirname, '..');
const QUICK = process.env.BENCH_QUICK === '1';
const SECONDS = Number(process.env.BENCH_SECONDS ?? (QUICK ? 4 : 10));
const WIDTH = 1280;
const HEIGHT = 800;
const FPS = 60;
const TICKS = 100; // USER_HZ: /proc/PID/stat counts CPU time in these

interface Distribution {
  samples: number;
  p50: number;
  p99: number;
  mean: number;
}

interface CaseResult {
  qemu: QemuVersion;
  listener: 'drain' | 'bridge';
  path: string;
  seconds: number;
  guestFps: number;
  /** drain: messages/s QEMU sent (Scanout*, Update*); bridge: frames/s the viewer received. */
  deliveredPerSecond: number;
  listenerCpuPercent: number;
  qemuCpuPercent: number;
  viewerCpuPercent: number | null;
  latencyMs: Distribution | null;
  counts: Record<string, number>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

function distribution(values: number[]): Distribution {
  const s = [...values].sort((a, b) => a - b);
  const round = (v: number): number => Math.round(v * 100) / 100;
  return {
    samples: s.length,
    p50: round(s[Math.floor(s.length / 2)]),
    p99: round(s[Math.min(s.length - 1, Math.floor(s.length * 0.99))]),
    mean: round(s.reduce((a, b) => a + b, 0) / s.length),
  };
}

/** A forked helper (bench/qemu-drain.ts or bench/qemu-viewer.ts) answering one IPC request at a time. */
async function child(script: string, arg: string): Promise<{ proc: ChildProcess; ask: () => Promise<any> }> {
  const proc = fork(path.join(__dirname, script), [arg], {
    execArgv: ['--import', 'tsx'],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  await new Promise<void>((resolve, reject) => {
    proc.once('message', () => resolve());
    proc.once('exit', (code) => reject(new Error(`${script} exited (${code}) before it was ready`)));
  });
  const ask = (): Promise<any> =>
    new Promise((resolve) => {
      proc.once('message', resolve);
      proc.send('report');
    });
  return { proc, ask };
}

/** Guest frames/s from the debug console over [fromFrame, now]. */
function guestFps(vm: RunningQemu, fromFrame: number, fromNs: bigint): number {
  const last = vm.lastFrame();
  const at = vm.frameTimeNs(last)!;
  return Math.round(((last - fromFrame) / (Number(at - fromNs) / 1e9)) * 10) / 10;
}

async function runCase(version: QemuVersion, listener: 'drain' | 'bridge', tmp: string): Promise<CaseResult> {
  const depth = version === '10.0' ? ' bpp=16' : '';
  const vm = await startQemu({
    qemu: version,
    params: `w=${WIDTH} h=${HEIGHT} mode=all fps=${FPS}${depth}`,
    debugClock: true,
    memoryMiB: 128,
  });
  const stops: (() => void)[] = [];
  try {
    await vm.waitForFrame(1, 30000);
    let listenerPid: number;
    let viewer: { proc: ChildProcess; ask: () => Promise<any> } | null = null;
    let drain: { proc: ChildProcess; ask: () => Promise<any> } | null = null;
    let pathLine = '';
    if (listener === 'drain') {
      drain = await child('qemu-drain.ts', vm.qmpPath);
      stops.push(() => drain!.proc.kill('SIGKILL'));
      listenerPid = drain.proc.pid!;
      pathLine = 'messages dropped';
    } else {
      const socket = path.join(tmp, `bridge-${version}.sock`);
      const cli = new Cli(['serve', '--qemu', vm.qmpPath, '--path', socket]);
      stops.push(() => cli.kill());
      const m = await cli.waitFor(/console 0 \([^)]*\): surface \d+, (\d+)x(\d+), ([a-z-]+):/, 30000);
      listenerPid = cli.child.pid!;
      viewer = await child('qemu-viewer.ts', socket);
      stops.push(() => viewer!.proc.kill('SIGKILL'));
      // The guest's own mode (not the first stale surface) before measuring.
      await cli.waitFor(new RegExp(`surface \\d+, ${WIDTH}x${HEIGHT}, ([a-z-]+):`), 30000);
      pathLine = /surface \d+, \d+x\d+, ([a-z-]+):[^\n]*\n?$/.exec(cli.stdout.trimEnd())?.[1] ?? m[3];
    }
    await sleep(2000); // warm up
    await (drain ?? viewer)!.ask(); // reset: counts so far / arrivals so far
    const before = (await drain?.ask()) ?? {};
    const frame0 = vm.lastFrame();
    const t0 = vm.frameTimeNs(frame0)!;
    const cpu0 = {
      listener: cpuTicks(listenerPid),
      qemu: cpuTicks(vm.pid),
      viewer: viewer ? cpuTicks(viewer.proc.pid!) : 0,
    };
    const wall0 = process.hrtime.bigint();
    await sleep(SECONDS * 1000);
    const wall = Number(process.hrtime.bigint() - wall0) / 1e9;
    const cpu1 = {
      listener: cpuTicks(listenerPid),
      qemu: cpuTicks(vm.pid),
      viewer: viewer ? cpuTicks(viewer.proc.pid!) : 0,
    };
    const fps = guestFps(vm, frame0, t0);
    const pct = (a: number, b: number): number => Math.round(((b - a) / TICKS / wall) * 1000) / 10;
    let delivered: number;
    let latencyMs: Distribution | null = null;
    let counts: Record<string, number> = {};
    if (drain) {
      const after = await drain.ask();
      for (const k of Object.keys(after)) counts[k] = after[k] - (before[k] ?? 0);
      const messages = ['Scanout', 'Update', 'ScanoutMap', 'UpdateMap'].reduce((a, k) => a + (counts[k] ?? 0), 0);
      delivered = Math.round((messages / wall) * 10) / 10;
    } else {
      const report = await viewer!.ask();
      const arrivals = report.arrivals as [number, number][];
      const lat: number[] = [];
      for (const [n, ns] of arrivals) {
        const shown = vm.frameTimeNs(n);
        if (shown !== undefined) lat.push((ns - Number(shown)) / 1e6);
      }
      counts = { framesReceived: arrivals.length, unreadable: report.unreadable };
      delivered = Math.round((arrivals.length / wall) * 10) / 10;
      latencyMs = lat.length ? distribution(lat) : null;
    }
    return {
      qemu: version,
      listener,
      path: pathLine,
      seconds: Math.round(wall * 10) / 10,
      guestFps: fps,
      deliveredPerSecond: delivered,
      listenerCpuPercent: pct(cpu0.listener, cpu1.listener),
      qemuCpuPercent: pct(cpu0.qemu, cpu1.qemu),
      viewerCpuPercent: viewer ? pct(cpu0.viewer, cpu1.viewer) : null,
      latencyMs,
      counts,
    };
  } finally {
    for (const stop of stops.reverse()) stop();
    await vm.stop();
  }
}

async function main(): Promise<void> {
  const versions: QemuVersion[] = [];
  for (const v of ['7.2', '10.0'] as QemuVersion[]) {
    const found = findQemu(v);
    if ('reason' in found) console.log(`QEMU ${v} skipped: ${found.reason}`);
    else versions.push(v);
  }
  if (versions.length === 0) return;
  try {
    await buildGuest();
  } catch (error) {
    console.log(`QEMU bridge benchmark skipped: the test guest does not build: ${(error as Error).message}`);
    return;
  }
  ensureCliBuilt();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-bench-qemu-'));
  const results: CaseResult[] = [];
  console.log(
    `QEMU bridge: guest ${WIDTH}x${HEIGHT} mode=all (every pixel, every frame) at ${FPS} fps, TCG; ` +
      `${SECONDS} s per case; ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'}`,
  );
  try {
    for (const version of versions) {
      for (const listener of ['drain', 'bridge'] as const) {
        const r = await runCase(version, listener, tmp);
        results.push(r);
      }
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  console.log(
    '\n| QEMU | listener | path | guest fps | delivered/s | listener CPU % | QEMU CPU % | viewer CPU % ' +
      '| latency p50 / p99 ms |',
  );
  console.log('|---|---|---|---|---|---|---|---|---|');
  for (const r of results) {
    const lat = r.latencyMs ? `${r.latencyMs.p50} / ${r.latencyMs.p99} (${r.latencyMs.samples})` : '—';
    console.log(
      `| ${r.qemu} | ${r.listener} | ${r.path} | ${r.guestFps} | ${r.deliveredPerSecond} | ${r.listenerCpuPercent} | ` +
        `${r.qemuCpuPercent} | ${r.viewerCpuPercent ?? '—'} | ${lat} |`,
    );
  }
  const ratios: Record<string, number> = {};
  for (const version of versions) {
    const d = results.find((r) => r.qemu === version && r.listener === 'drain')!;
    const b = results.find((r) => r.qemu === version && r.listener === 'bridge')!;
    const cpu = Math.round((b.listenerCpuPercent / d.listenerCpuPercent) * 100) / 100;
    const qemuCpu = Math.round((b.qemuCpuPercent / d.qemuCpuPercent) * 100) / 100;
    const total =
      Math.round(((b.listenerCpuPercent + b.qemuCpuPercent) / (d.listenerCpuPercent + d.qemuCpuPercent)) * 100) / 100;
    const frames = Math.round((d.deliveredPerSecond / b.deliveredPerSecond) * 100) / 100;
    ratios[`${version} bridge/drain listener CPU`] = cpu;
    ratios[`${version} bridge/drain QEMU CPU`] = qemuCpu;
    ratios[`${version} bridge/drain QEMU+listener CPU`] = total;
    ratios[`${version} drain/bridge updates per second`] = frames;
    console.log(
      `QEMU ${version}: listener CPU ${b.listenerCpuPercent}% (bridge) vs ${d.listenerCpuPercent}% (bare) = ${cpu}x; ` +
        `QEMU + listener ${total}x; QEMU alone ${qemuCpu}x; updates/s bare/bridge ${frames}x (target <= 1.1x); ` +
        `guest ${b.guestFps} vs ${d.guestFps} fps`,
    );
  }
  const out = path.join(ROOT, 'bench', 'results', `${new Date().toISOString().replace(/[:.]/g, '-')}-qemu-bridge.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    JSON.stringify(
      {
        bench: 'qemu-bridge',
        date: new Date().toISOString(),
        host: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? null, node: process.version },
        guest: { width: WIDTH, height: HEIGHT, fps: FPS, mode: 'all' },
        results,
        ratios,
      },
      null,
      2,
    ) + '\n',
  );
  console.log(`\nwrote ${path.relative(ROOT, out)}`);
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(error);
    process.exit(1);
  },
);
