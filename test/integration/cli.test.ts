/**
 * The real `surfacelink` command, compiled, run as a child process: doctor, demo (two more
 * processes underneath), serve + view, signals, usage errors. Also the demo's test pattern,
 * whose counter is what proves the pixels crossed intact.
 */
import { expect } from 'chai';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { boxX, boxY, damageRects, drawPattern, patternDamage, patternLayout, readCounter } from '../../src/demo/pattern.js';

const ROOT = path.resolve(__dirname, '..', '..');
const CLI = path.join(ROOT, 'dist', 'cli', 'index.js');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** A running CLI whose output is collected; `waitFor` resolves once stdout matches. */
class Cli {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly done: Promise<Run>;

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [CLI, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => (this.stderr += d.toString()));
    this.done = new Promise((resolve) =>
      this.child.on('close', (code, signal) => resolve({ code, signal, stdout: this.stdout, stderr: this.stderr })),
    );
  }

  async waitFor(pattern: RegExp, timeoutMs = 15000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pattern.test(this.stdout)) {
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`exited (${this.child.exitCode ?? this.child.signalCode}) before printing ${pattern}; stdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`no ${pattern} within ${timeoutMs} ms; stdout:\n${this.stdout}\nstderr:\n${this.stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

function cli(args: string[]): Promise<Run> {
  return new Cli(args).done;
}

/** Newest modification time of the TypeScript sources (dist is stale if older). */
function newestSource(dir: string): number {
  let newest = 0;
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestSource(p));
    else if (entry.name.endsWith('.ts')) newest = Math.max(newest, fs.statSync(p).mtimeMs);
  }
  return newest;
}

/** Processes whose command line mentions `text` (the demo's children carry its socket path). */
function processesMentioning(text: string): number[] {
  const pids: number[] = [];
  for (const entry of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (fs.readFileSync(`/proc/${entry}/cmdline`, 'utf8').includes(text)) pids.push(Number(entry));
    } catch {
      /* exited meanwhile */
    }
  }
  return pids;
}

function demoDir(output: string): string {
  const m = /socket (\S+)\/demo\.sock/.exec(output);
  if (!m) throw new Error(`the demo did not say where its socket is:\n${output}`);
  return m[1];
}

describe('surfacelink CLI', function () {
  this.timeout(120000);
  const running: Cli[] = [];

  before(function () {
    // `npm test` type-checks but does not emit; the CLI under test is the compiled one.
    if (!fs.existsSync(CLI) || fs.statSync(CLI).mtimeMs < newestSource(path.join(ROOT, 'src'))) {
      execFileSync(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join(ROOT, 'tsconfig.json')], { cwd: ROOT, stdio: 'inherit' });
    }
  });

  afterEach(() => {
    for (const c of running.splice(0)) c.kill();
  });

  function start(args: string[]): Cli {
    const c = new Cli(args);
    running.push(c);
    return c;
  }

  it('--version prints the package version', async () => {
    const r = await cli(['--version']);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
    expect(r.code).to.equal(0);
    expect(r.stdout.trim()).to.equal(pkg.version);
  });

  it('--help lists the commands and the exit statuses', async () => {
    const r = await cli(['--help']);
    expect(r.code).to.equal(0);
    for (const word of ['demo', 'doctor', 'serve', 'view', '130']) expect(r.stdout).to.include(word);
    expect(r.stdout).not.to.include('demo-producer');
  });

  it('doctor exits 0 and names shm.v1 as available', async () => {
    const r = await cli(['doctor']);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/✔ shm\.v1\s+\S/);
    expect(r.stdout).to.match(/✘ dmabuf\.v1\s+\S/);
    expect(r.stdout).to.match(/addon\s+loaded from .*surfacelink\.node/);
    expect(r.stdout).to.include(process.version);
  });

  it('doctor --json is JSON with the same facts', async () => {
    const r = await cli(['doctor', '--json']);
    expect(r.code, r.stderr).to.equal(0);
    const report = JSON.parse(r.stdout);
    expect(report.ok).to.equal(true);
    expect(report.addon.loaded).to.equal(true);
    expect(report.addon.path).to.be.a('string');
    expect(report.node.version).to.equal(process.version);
    expect(report.socketPath).to.be.a('string').and.match(/\.sock$/);
    const shm = report.mechanisms.find((m: { name: string }) => m.name === 'shm.v1');
    expect(shm).to.include({ available: true });
    expect(shm.reason).to.be.a('string').and.not.empty;
    for (const m of report.mechanisms) expect(m).to.have.keys('name', 'available', 'reason');
  });

  it('demo --duration 2 runs both processes, verifies the counter and exits 0', async () => {
    const r = await cli(['demo', '--duration', '2', '--width', '320', '--height', '240']);
    expect(r.code, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`).to.equal(0);
    const lines = r.stdout.trim().split('\n');
    const summary = lines[lines.length - 1];
    expect(summary).to.match(/^surfacelink demo: shm\.v1 320x240, \d+ frames/);
    const fps = Number(/\(([\d.]+) fps\)/.exec(summary)?.[1]);
    expect(fps).to.be.greaterThan(0);
    expect(summary).to.match(/latency p50 \d+ µs p99 \d+ µs/);
    expect(summary).to.include('counter OK');
    // At least one once-a-second status line (stdout is a pipe, so no \r rewriting).
    expect(r.stdout).to.match(/^shm\.v1 320x240 {2}[\d.]+ fps {2}latency p50 \d+ p99 \d+ µs {2}dropped \d+ {2}counter OK$/m);
    expect(r.stdout).not.to.include('\r');
    const dir = demoDir(r.stdout);
    expect(fs.existsSync(dir), `${dir} left behind`).to.equal(false);
    expect(processesMentioning(dir)).to.deep.equal([]);
  });

  it('demo stops both children and removes its dir on SIGINT (exit 130)', async () => {
    const c = start(['demo', '--width', '160', '--height', '120']);
    await c.waitFor(/counter OK/);
    const dir = demoDir(c.stdout);
    expect(processesMentioning(dir)).to.have.length(2); // producer and consumer
    c.child.kill('SIGINT');
    const r = await c.done;
    expect(r.code, r.stderr).to.equal(130);
    expect(r.stdout).to.match(/surfacelink demo: shm\.v1 160x120, \d+ frames .* counter OK/);
    expect(fs.existsSync(dir)).to.equal(false);
    expect(processesMentioning(dir)).to.deep.equal([]);
  });

  it('demo exits 1 and says why when a child dies', async () => {
    const c = start(['demo', '--width', '160', '--height', '120']);
    await c.waitFor(/counter OK/);
    const dir = demoDir(c.stdout);
    const producer = processesMentioning(dir).find((pid) => fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('demo-producer'));
    expect(producer).to.be.a('number');
    process.kill(producer!, 'SIGKILL');
    const r = await c.done;
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/the producer \(pid \d+\) was killed by SIGKILL/);
    expect(fs.existsSync(dir)).to.equal(false);
    expect(processesMentioning(dir)).to.deep.equal([]);
  });

  it('serve and view: negotiation, stats, clients coming and going, clean shutdown', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-cli-test-'));
    try {
      const socketPath = path.join(dir, 'pattern.sock');
      const serve = start(['serve', '--path', socketPath, '--width', '200', '--height', '100', '--fps', '30']);
      await serve.waitFor(/^serving 200x100 XRGB8888 at 30 fps via shm\.v1 on /m);
      const view = start(['view', '--path', socketPath]);
      await view.waitFor(/counter OK/);
      expect(view.stdout).to.match(/^mechanism shm\.v1: .+/m);
      await serve.waitFor(/^\+ client 1 "surfacelink-view-\d+" \(pid \d+\): shm\.v1 \(.+\)$/m);
      serve.child.kill('SIGINT');
      const [s, v] = await Promise.all([serve.done, view.done]);
      expect(s.code, s.stderr).to.equal(130);
      expect(v.code, v.stderr).to.equal(0);
      expect(v.stdout).to.match(/the server shut down; shm\.v1 200x100, \d+ frames/);
      expect(s.stdout).to.match(/^- client 1 .* left: E_SHUTDOWN/m);
      expect(fs.existsSync(socketPath)).to.equal(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('view without a server exits 1 with the error code', async () => {
    const r = await cli(['view', '--path', path.join(os.tmpdir(), `sl-nobody-${process.pid}.sock`)]);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.include('E_CONNECT');
  });

  it('an unknown subcommand prints usage on stderr and exits 2', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).to.equal(2);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.include('unknown command "frobnicate"');
    expect(r.stderr).to.include('Usage: surfacelink <command>');
  });

  it('bad options and values exit 2', async () => {
    for (const args of [['demo', '--width', 'wide'], ['demo', '--fps', '0'], ['doctor', '--bogus'], [], ['help', 'nope']]) {
      const r = await cli(args);
      expect(r.code, `surfacelink ${args.join(' ')}: ${r.stderr}`).to.equal(2);
      expect(r.stderr).to.match(/^surfacelink: /);
    }
  });
});

describe('demo test pattern', () => {
  const width = 203; // odd sizes and a padded stride catch row/stride mix-ups
  const height = 97;
  const stride = 1024;
  const layout = patternLayout(width, height);

  const full = (frame: number): Uint8Array => {
    const px = new Uint8Array(stride * height);
    drawPattern(layout, px, stride, frame);
    return px;
  };

  it('reads back the counter it drew', () => {
    for (const frame of [1, 9, 10, 12345, 9876543210]) expect(readCounter(layout, full(frame), stride)).to.equal(frame);
    expect(readCounter(layout, new Uint8Array(stride * height), stride)).to.equal(-1);
  });

  it('repaints a reused buffer to exactly the full frame and never writes the padding', () => {
    const px = new Uint8Array(stride * height).fill(0xa5);
    drawPattern(layout, px, stride, 1);
    let shown = 1;
    for (const frame of [2, 3, 7, 8, 40, 41, 300]) {
      drawPattern(layout, px, stride, frame, shown);
      shown = frame;
      const expected = full(frame);
      for (let y = 0; y < height; y++) {
        const row = y * stride;
        expect(Buffer.compare(px.subarray(row, row + width * 4), expected.subarray(row, row + width * 4)), `frame ${frame} row ${y}`).to.equal(0);
        expect(px.subarray(row + width * 4, row + stride).every((b) => b === 0xa5), `padding of row ${y}`).to.equal(true);
      }
    }
  });

  it('damage covers every pixel that changed since the previous frame', () => {
    const rects = damageRects(layout);
    for (const frame of [2, 17, 64, 65, 500]) {
      const n = patternDamage(layout, frame, rects);
      expect(n).to.equal(layout.damageCount);
      const before = full(frame - 1);
      const after = full(frame);
      for (let y = 0; y < height; y++)
        for (let x = 0; x < width; x++) {
          const i = y * stride + x * 4;
          if (before[i] === after[i] && before[i + 1] === after[i + 1] && before[i + 2] === after[i + 2] && before[i + 3] === after[i + 3]) continue;
          const inside = rects.slice(0, n).some((r) => x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height);
          expect(inside, `frame ${frame}: pixel ${x},${y} changed outside the damage`).to.equal(true);
        }
    }
    expect(patternDamage(layout, 1, rects)).to.equal(0);
  });

  it('keeps the box inside the surface', () => {
    for (let frame = 0; frame < 2000; frame += 7) {
      expect(boxX(layout, frame)).to.be.within(0, width - layout.box);
      expect(boxY(layout, frame)).to.be.within(0, height - layout.box);
    }
  });
});
