/**
 * The Windows path against the Linux one, with the very same programs (test/windows/programs/
 * server.cjs and client.cjs, the public API only): a server presents a frame whenever no client
 * holds one, a client takes each frame and releases it at once, so frames/s is one over the
 * present → frame → release → present round trip.
 *
 *   baseline  Linux node, shm.v1 over the unix socket;
 *   windows   Windows node.exe under wine 8, winshm.v1 over the named pipe.
 *
 * At 64×48 (the round trip itself) and 1280×720 (the server redraws the whole frame each time),
 * BENCH_RUNS runs each (default 3; medians printed). Wine adds its own cost (wineserver calls for
 * pipe I/O and handle duplication), so the ratio bounds what Windows costs from above; a real
 * Windows run is still to be made (docs/supported-platforms.md).
 *
 *   node --import tsx bench/windows.ts
 *
 * Prints a table and writes bench/results/<time>-windows.json. Skips (saying why) without wine or
 * the win32 prebuild.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { WindowsSession, windowsUnavailable, type WindowsProgram } from '../test/windows/harness.js';

const ROOT = path.resolve(__dirname, '..');
const PROGRAMS = path.join(ROOT, 'test', 'windows', 'programs');
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const CASES = [
  { width: 64, height: 48, frames: 3000 },
  { width: 1280, height: 720, frames: 300 },
];

interface Done {
  frames: number;
  elapsedMs: number;
}

/** Reads JSON lines from `file` until one says `event`; fails on `fatal` or after `timeoutMs`. */
async function waitLine(file: string, event: string, timeoutMs: number): Promise<Record<string, unknown>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lines = fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];
    for (const l of lines) {
      const e = JSON.parse(l) as Record<string, unknown>;
      if (e.event === 'fatal') throw new Error(`${file}: ${String(e.message)}`);
      if (e.event === event) return e;
    }
    if (Date.now() > deadline) throw new Error(`${file}: no "${event}" within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** One run on Linux: both programs under this node, over a unix socket. */
async function linuxRun(dir: string, c: (typeof CASES)[number], n: number): Promise<Done> {
  const sock = path.join(dir, `bench-${n}.sock`);
  const out = (name: string): string => path.join(dir, `${name}-${n}.jsonl`);
  const env = (name: string): NodeJS.ProcessEnv => ({
    ...process.env,
    SL_OUT: out(name),
    SL_LIB: path.join(ROOT, 'dist'),
    SL_NAME: name,
  });
  const server = spawn(process.execPath, [path.join(PROGRAMS, 'server.cjs'), sock, JSON.stringify(c)], {
    env: env('server'),
    stdio: 'ignore',
  });
  try {
    await waitLine(out('server'), 'listening', 30_000);
    const client = spawn(
      process.execPath,
      [path.join(PROGRAMS, 'client.cjs'), sock, JSON.stringify({ frames: c.frames, check: false })],
      { env: env('client'), stdio: 'ignore' },
    );
    try {
      return (await waitLine(out('client'), 'done', 300_000)) as unknown as Done;
    } finally {
      client.kill();
    }
  } finally {
    server.kill();
  }
}

/** One run under wine: both programs in Windows node.exe processes, over a named pipe. */
async function wineRun(session: WindowsSession, c: (typeof CASES)[number], n: number): Promise<Done> {
  const pipe = `\\\\.\\pipe\\surfacelink-bench-${process.pid}-${n}`;
  const server: WindowsProgram = session.spawn(`server${n}`, 'server.cjs', [pipe, JSON.stringify(c)]);
  try {
    await server.waitFor('listening');
    const client = session.spawn(`client${n}`, 'client.cjs', [
      pipe,
      JSON.stringify({ frames: c.frames, check: false }),
    ]);
    try {
      return (await client.waitFor('done', undefined, 300_000)) as unknown as Done;
    } finally {
      client.kill();
    }
  } finally {
    server.kill();
  }
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};

async function main(): Promise<void> {
  const why = windowsUnavailable();
  if (why !== null) {
    console.log(`windows benchmark skipped: ${why}`);
    return;
  }
  if (process.platform !== 'linux') {
    console.log('windows benchmark skipped: it compares wine with Linux, on Linux');
    return;
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-bench-win-'));
  const session = await WindowsSession.start();
  const rows: Record<string, unknown>[] = [];
  let n = 0;
  try {
    for (const c of CASES) {
      const linux: number[] = [];
      const wine: number[] = [];
      for (let r = 0; r < RUNS; r++) {
        const a = await linuxRun(dir, c, ++n);
        linux.push((a.frames / a.elapsedMs) * 1000);
        const b = await wineRun(session, c, ++n);
        wine.push((b.frames / b.elapsedMs) * 1000);
      }
      const row = {
        size: `${c.width}x${c.height}`,
        frames: c.frames,
        linuxFps: linux,
        wineFps: wine,
        linuxMedianFps: median(linux),
        wineMedianFps: median(wine),
        linuxMsPerFrame: 1000 / median(linux),
        wineMsPerFrame: 1000 / median(wine),
        wineOverLinuxTime: median(linux) / median(wine),
      };
      rows.push(row);
    }
  } finally {
    await session.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  console.log('\nround trip present → frame → release, same programs, medians of', RUNS, 'runs');
  console.log('size        linux shm.v1/unix        wine winshm.v1/pipe      wine / linux (time per frame)');
  for (const r of rows)
    console.log(
      `${String(r.size).padEnd(11)} ${(r.linuxMedianFps as number).toFixed(0).padStart(6)} fps ` +
        `${(r.linuxMsPerFrame as number).toFixed(3).padStart(7)} ms   ` +
        `${(r.wineMedianFps as number).toFixed(0).padStart(6)} fps ` +
        `${(r.wineMsPerFrame as number).toFixed(3).padStart(7)} ms   ` +
        `${(r.wineOverLinuxTime as number).toFixed(2)}×`,
    );
  const results = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(results, { recursive: true });
  const file = path.join(results, `${new Date().toISOString().replace(/[:.]/g, '-')}-windows.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({ host: { cpus: os.cpus().length, model: os.cpus()[0]?.model }, runs: RUNS, rows }, null, 1),
  );
  console.log(`recorded ${path.relative(ROOT, file)}`);
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
