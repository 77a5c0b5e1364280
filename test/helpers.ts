/** Shared test plumbing: spawning peer processes, fd/RSS counting, temp socket paths. */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import type * as net from 'node:net';
import * as path from 'node:path';
import { expect } from 'chai';
import { drawPattern, readCounter, type PatternLayout } from '../src/demo/pattern.js';

export const ROOT = path.resolve(__dirname, '..');

/**
 * Node flags for a fixture whose present intervals a test judges (the chaos, fuzz and flood
 * producers). With V8's default parallel garbage collector, a scavenge makes the main thread wait
 * for helper threads; on a loaded 2-core machine those wait on a run queue themselves, and the
 * producer then stalls for up to a few hundred ms with almost no CPU of its own and no run-queue
 * wait of its main thread (bench/stall-witness.ts, docs/benchmarks.md) — a stall that says nothing about
 * the producer's clients and that its run-queue correction cannot see. With the collector on the
 * main thread, its work is the producer's own CPU time and stays in every measured interval.
 */
export const MEASURED_PRODUCER_FLAGS: readonly string[] = ['--single-threaded-gc'];

/** A fresh 0700 directory for sockets; removed by the returned cleanup. */
export function tempDir(prefix = 'sl-test-'): { dir: string; cleanup: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  return { dir, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export function openFdCount(pid: number | 'self' = 'self'): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

/** A child process running a TypeScript fixture, driven by request/response over IPC. */
export class Peer {
  readonly child: ChildProcess;
  readonly events: Record<string, unknown>[] = [];
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private readonly eventWaiters: { match: (e: any) => boolean; resolve: (e: any) => void }[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr = '';

  constructor(fixture: string, args: string[] = [], env: NodeJS.ProcessEnv = {}, nodeFlags: readonly string[] = []) {
    this.child = fork(path.join(ROOT, 'test', 'fixtures', fixture), args, {
      execArgv: ['--import', 'tsx', '--expose-gc', ...nodeFlags],
      stdio: ['ignore', 'inherit', 'pipe', 'ipc'],
      env: { ...process.env, ...env },
    });
    this.child.stderr?.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.child.on('message', (m: any) => {
      if (m && typeof m.id === 'number' && this.waiting.has(m.id)) {
        const w = this.waiting.get(m.id)!;
        this.waiting.delete(m.id);
        if (m.error) w.reject(Object.assign(new Error(m.error.message), { code: m.error.code }));
        else w.resolve(m.result);
      } else if (m && m.event) {
        this.events.push(m);
        for (let i = this.eventWaiters.length - 1; i >= 0; i--) {
          if (this.eventWaiters[i].match(m)) {
            this.eventWaiters[i].resolve(m);
            this.eventWaiters.splice(i, 1);
          }
        }
      }
    });
    this.exited = new Promise((resolve) =>
      this.child.on('exit', (code, signal) => {
        for (const w of this.waiting.values())
          w.reject(new Error(`peer exited (${code ?? signal}) before answering; stderr:\n${this.stderr}`));
        this.waiting.clear();
        resolve({ code, signal });
      }),
    );
  }

  get pid(): number {
    return this.child.pid!;
  }

  call<T = any>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      this.child.send({ id, cmd, ...args });
    });
  }

  /** Resolves with the first event (already seen or future) that matches. */
  waitEvent(event: string, match: (e: any) => boolean = () => true, timeoutMs = 10000): Promise<any> {
    const seen = this.events.find((e) => e.event === event && match(e));
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () =>
          reject(
            new Error(
              `no ${event} event within ${timeoutMs} ms; events: ${JSON.stringify(this.events.slice(-5))}; ` +
                `stderr: ${this.stderr}`,
            ),
          ),
        timeoutMs,
      );
      this.eventWaiters.push({
        match: (e) => e.event === event && match(e),
        resolve: (e) => (clearTimeout(timer), resolve(e)),
      });
    });
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    this.child.kill('SIGTERM');
    await this.exited;
  }
}

/**
 * A temp socket directory and every fixture process a test starts, stopped and removed
 * together by cleanup().
 */
export class PeerGroup {
  readonly tmp = tempDir();
  readonly socketPath = path.join(this.tmp.dir, 'server.sock');
  private readonly peers: Peer[] = [];

  /** Starts a fixture process (node run with nodeFlags added) that cleanup() will stop. */
  spawn(fixture: string, nodeFlags: readonly string[] = []): Peer {
    const peer = new Peer(fixture, [], {}, nodeFlags);
    this.peers.push(peer);
    return peer;
  }

  /** A server fixture listening on socketPath with these SurfaceServer options. */
  async server(options: Record<string, unknown> = {}): Promise<Peer> {
    const peer = this.spawn('server.ts');
    await peer.call('listen', { path: this.socketPath, options });
    return peer;
  }

  /** A client fixture connected to socketPath (options go to its `connect` command). */
  async client(options: Record<string, unknown> = {}): Promise<Peer> {
    const peer = this.spawn('client.ts');
    await peer.call('connect', { path: this.socketPath, ...options });
    return peer;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.peers.splice(0).map((p) => p.stop()));
    this.tmp.cleanup();
  }
}

/**
 * Mean absolute difference of B, G and R (X/A ignored) between picture `a` (rows of `strideA`
 * bytes) and `b` (tightly packed rows), over width × height: how far a lossy codec's output is
 * from what was encoded, 0–255.
 */
export function meanAbsError(a: Uint8Array, b: Uint8Array, width: number, height: number, strideA: number): number {
  let sum = 0;
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const i = y * strideA + x * 4;
      const j = (y * width + x) * 4;
      sum += Math.abs(a[i] - b[j]) + Math.abs(a[i + 1] - b[j + 1]) + Math.abs(a[i + 2] - b[j + 2]);
    }
  return sum / (width * height * 3);
}

/**
 * Decoded frames (a lossy codec's) show the demo pattern of their own sequence, within a mean
 * error of 6 of 255, at the layout's size; the last one's counter reads back exactly.
 */
export function expectPatternFrames(
  layout: PatternLayout,
  frames: readonly { pixels: Uint8Array; stride: number; width: number; height: number; sequence: number }[],
): void {
  const { width, height } = layout;
  const want = new Uint8Array(width * height * 4);
  for (const f of frames) {
    expect([f.width, f.height]).to.deep.equal([width, height]);
    drawPattern(layout, want, width * 4, f.sequence);
    expect(meanAbsError(f.pixels, want, width, height, f.stride), `frame ${f.sequence}: mean abs error`).to.be.lessThan(
      6,
    );
  }
  const last = frames.at(-1)!;
  expect(readCounter(layout, last.pixels, last.stride), 'counter of the last frame').to.equal(last.sequence);
}

/** Inodes the process maps (/proc/<pid>/maps: the fifth field). */
export function mappedInodes(pid: number): Set<bigint> {
  const out = new Set<bigint>();
  for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length >= 5 && fields[4] !== '0') out.add(BigInt(fields[4]));
  }
  return out;
}

/** Inodes behind the process's open fds (fstat through /proc/<pid>/fd/*). */
export function fdInodes(pid: number): Set<bigint> {
  const out = new Set<bigint>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      out.add(fs.statSync(`/proc/${pid}/fd/${fd}`, { bigint: true }).ino);
    } catch {
      /* closed meanwhile */
    }
  }
  return out;
}

/** How many of `inodes` the process maps, and how many it has open. */
export function sharedWith(pid: number, inodes: Iterable<bigint>): { mapped: number; open: number } {
  const maps = mappedInodes(pid);
  const fds = fdInodes(pid);
  let mapped = 0;
  let open = 0;
  for (const i of inodes) {
    if (maps.has(i)) mapped++;
    if (fds.has(i)) open++;
  }
  return { mapped, open };
}

/** Runs a command to completion and returns its output. */
export function run(
  cmd: string,
  args: string[],
  timeoutMs = 20000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} ${args.join(' ')} timed out; stdout: ${stdout}; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `probe` until it returns true or the deadline passes. */
export async function eventually(
  probe: () => boolean | Promise<boolean>,
  timeoutMs = 5000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await sleep(20);
  }
  throw new Error(`${what} did not become true within ${timeoutMs} ms`);
}

/** Splits a raw socket's byte stream into whole surfacelink messages (u32 length first). */
export class MessageReader {
  private pending = Buffer.alloc(0);
  private readonly queue: Buffer[] = [];
  private waiter: (() => void) | null = null;
  constructor(socket: net.Socket) {
    socket.on('data', (d) => {
      this.pending = Buffer.concat([this.pending, d]);
      while (this.pending.length >= 8) {
        const n = this.pending.readUInt32LE(0);
        if (this.pending.length < n) break;
        this.queue.push(this.pending.subarray(0, n));
        this.pending = this.pending.subarray(n);
      }
      this.waiter?.();
    });
  }
  async next(timeoutMs = 5000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.queue.length === 0) {
      if (Date.now() > deadline) throw new Error('no message');
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 50);
      });
    }
    return this.queue.shift()!;
  }
}

/** A HELLO message (magic, versions 1..1, JSON body) as raw bytes. */
export function helloBytes(info: Record<string, unknown>): Buffer {
  const body = Buffer.concat([Buffer.from([0x53, 0x4c, 0x4e, 0x4b, 1, 0, 1, 0]), Buffer.from(JSON.stringify(info))]);
  const header = Buffer.alloc(8);
  header.writeUInt32LE(8 + body.length, 0);
  header.writeUInt16LE(0x01, 4);
  return Buffer.concat([header, body]);
}
