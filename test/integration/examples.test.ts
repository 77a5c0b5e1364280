/**
 * examples/: producer.js and viewer.js run as two separate plain-Node processes, loading the
 * package by its name (`require('surfacelink')`, i.e. dist/ through the exports map). The
 * viewer checks every pixel of each frame against its sequence and exits 0 only if all the
 * frames it was asked for matched; the producer must then stop cleanly on SIGTERM.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, tempDir } from '../helpers.js';

interface Run {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function run(script: string, args: string[]): Run {
  const child = spawn(process.execPath, [path.join('examples', script), ...args], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited };
}

/** Resolves once `pattern` appears in the process's output; rejects if it exits first or after `ms`. */
function waitFor(r: Run, pattern: RegExp, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const check = (): boolean => {
      if (!pattern.test(r.output())) return false;
      clearInterval(poll);
      clearTimeout(timer);
      resolve();
      return true;
    };
    const poll = setInterval(check, 20);
    const timer = setTimeout(() => {
      clearInterval(poll);
      reject(new Error(`no ${pattern} within ${ms} ms; output:\n${r.output()}`));
    }, ms);
    void r.exited.then(() => {
      if (!check()) {
        clearInterval(poll);
        clearTimeout(timer);
        reject(new Error(`exited before printing ${pattern}; output:\n${r.output()}`));
      }
    });
  });
}

describe('examples/ (producer.js and viewer.js as separate processes)', function () {
  this.timeout(30000);
  let tmp: { dir: string; cleanup: () => void };
  const started: Run[] = [];

  before(function () {
    if (!fs.existsSync(path.join(ROOT, 'dist', 'index.js')))
      throw new Error('dist/ is not built: run `npm run build:ts` first (the examples load the package by name)');
  });
  beforeEach(() => (tmp = tempDir('sl-examples-')));
  afterEach(async () => {
    for (const r of started.splice(0)) {
      if (r.child.exitCode === null && r.child.signalCode === null) {
        r.child.kill('SIGKILL');
        await r.exited;
      }
    }
    tmp.cleanup();
  });

  it('the viewer verifies 60 frames from the producer and exits 0; the producer stops cleanly on SIGTERM', async () => {
    const socket = path.join(tmp.dir, 'example.sock');
    const producer = run('producer.js', [socket]);
    started.push(producer);
    await waitFor(producer, /^producer: listening on /m, 10000);
    expect(fs.statSync(socket).isSocket(), 'socket file').to.equal(true);

    const viewer = run('viewer.js', [socket, '--frames', '60']);
    started.push(viewer);
    const { code, signal } = await viewer.exited;
    const out = viewer.output();
    expect({ code, signal }, out).to.deep.equal({ code: 0, signal: null });
    expect(out).to.match(/^viewer: negotiated (shm|dmabuf)\.v1: \S/m); // dmabuf.v1 where dma-heaps are usable
    const summary =
      /^viewer: done: received=(\d+) verified=(\d+) mismatched=(\d+) skipped=\d+ mechanism=(\S+) result=(\w+)$/m.exec(
        out,
      );
    expect(summary, out).to.not.equal(null);
    const [, received, verified, mismatched, mechanism, result] = summary!;
    expect(Number(received), out).to.equal(60);
    expect(Number(verified), out).to.be.at.least(60);
    expect(Number(mismatched), out).to.equal(0);
    expect(mechanism).to.match(/^(shm|dmabuf)\.v1$/);
    expect(result).to.equal('OK');
    expect(out).to.not.include('MISMATCH');

    // The producer kept running after the viewer left, and stops on SIGTERM by itself.
    expect(producer.child.exitCode, producer.output()).to.equal(null);
    producer.child.kill('SIGTERM');
    const stopped = await Promise.race([
      producer.exited,
      new Promise<'hung'>((resolve) => setTimeout(() => resolve('hung'), 5000)),
    ]);
    expect(stopped, `producer did not exit within 5 s of SIGTERM; output:\n${producer.output()}`).to.deep.equal({
      code: 0,
      signal: null,
    });
    expect(producer.output()).to.match(
      new RegExp(`^producer: client \\d+ .* uses ${mechanism.replace('.', '\\.')}: `, 'm'),
    );
    expect(producer.output()).to.match(/^producer: stopped \(SIGTERM\) after \d+ frames$/m);
    expect(fs.existsSync(socket), 'socket file removed').to.equal(false);
  });

  it('a viewer with no producer gives up after --wait-ms and exits 1, saying why', async () => {
    const viewer = run('viewer.js', [path.join(tmp.dir, 'nobody.sock'), '--frames', '1', '--wait-ms', '300']);
    started.push(viewer);
    const { code } = await viewer.exited;
    expect(code, viewer.output()).to.equal(1);
    expect(viewer.output()).to.include('E_CONNECT');
  });

  it('a viewer whose producer goes away before --frames is reached exits 1', async () => {
    const socket = path.join(tmp.dir, 'example.sock');
    const producer = run('producer.js', [socket]);
    started.push(producer);
    await waitFor(producer, /^producer: listening on /m, 10000);
    const viewer = run('viewer.js', [socket, '--frames', '100000']);
    started.push(viewer);
    await waitFor(viewer, /^viewer: negotiated /m, 10000);
    producer.child.kill('SIGINT');
    expect(await producer.exited, producer.output()).to.deep.equal({ code: 0, signal: null });
    const { code } = await viewer.exited;
    const out = viewer.output();
    expect(code, out).to.equal(1);
    expect(out).to.match(/^viewer: disconnected: E_SHUTDOWN: /m);
    expect(out).to.match(/^viewer: producer gone: .* mismatched=0 .* result=FAIL$/m);
  });
});
