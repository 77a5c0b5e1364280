/**
 * The dma-buf suite needs a kernel with udmabuf, dma-heaps, vgem and sync_file, which this
 * machine's lacks: it boots a throw-away VM (scripts/vm/run.sh) once, runs test/vm inside
 * it, and reports every inner check here as its own test. Skipped (with the reason) where a
 * VM cannot start; with CI=true that is a failure instead.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Test } from 'mocha';
import { ROOT } from './helpers.js';

interface InnerResult {
  title: string;
  state: 'passed' | 'failed' | 'skipped';
  error?: string;
}

describe('inside a VM with a real dma-buf kernel (npm run test:vm)', function () {
  this.timeout(30 * 60 * 1000);
  const owner = this;
  let collected = { results: 0, exit: null as number | null, tail: '' };

  before(async function () {
    const available = spawnSync('bash', [path.join(ROOT, 'scripts', 'vm', 'available.sh')], { encoding: 'utf8' });
    if (available.status !== 0) {
      const reason = (available.stdout + available.stderr).trim();
      if (process.env.CI === 'true')
        throw new Error(`CI=true, and this machine should run the VM suite, but: ${reason}`);
      owner.addTest(new Test(`dma-buf suite skipped: ${reason}`));
      this.skip();
    }
    const resultsFile = path.join(ROOT, 'test', 'vm', '.results.json');
    fs.rmSync(resultsFile, { force: true });
    const output = await new Promise<{ code: number | null; text: string }>((resolve) => {
      const child = spawn(
        'bash',
        [path.join(ROOT, 'scripts', 'vm', 'run.sh'), '--timeout', '1500', '--', 'bash', 'test/vm/run-inside.sh'],
        {
          cwd: ROOT,
          stdio: ['ignore', 'pipe', 'pipe'],
          env: {
            ...process.env,
            SURFACELINK_RESULTS_FILE: resultsFile,
            SURFACELINK_VM_ENV: `${process.env.SURFACELINK_VM_ENV ?? ''} SURFACELINK_RESULTS_FILE`,
          },
        },
      );
      let text = '';
      const onData = (d: Buffer) => {
        text += d.toString();
        if (process.env.SURFACELINK_VM_VERBOSE) process.stdout.write(d);
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('exit', (code) => resolve({ code, text }));
    });
    const smoke = /# (\d+) passed, (\d+) failed/.exec(output.text);
    const inner: InnerResult[] = fs.existsSync(resultsFile) ? JSON.parse(fs.readFileSync(resultsFile, 'utf8')) : [];
    fs.rmSync(resultsFile, { force: true });
    collected = { results: inner.length, exit: output.code, tail: output.text.slice(-6000) };
    owner.addTest(
      new Test(
        `native dma-buf/DRM/sync_file checks ` +
          `(test/vm/native-dmabuf.smoke.js): ${smoke ? `${smoke[1]} passed, ${smoke[2]} failed` : 'no result'}`,
        () => {
          expect(smoke, output.text.slice(-4000)).to.not.equal(null);
          expect(Number(smoke![2]), output.text.slice(-4000)).to.equal(0);
        },
      ),
    );
    if (inner.length === 0) {
      owner.addTest(
        new Test('the dmabuf.v1 suite ran in the VM', () =>
          expect.fail(`no results from the VM (exit ${output.code}):\n${output.text.slice(-6000)}`),
        ),
      );
      return;
    }
    for (const r of inner) {
      const test = new Test(`[vm] ${r.title}`, () => {
        if (r.state === 'failed') expect.fail(r.error ?? 'failed in the VM');
      });
      if (r.state === 'skipped') test.pending = true;
      owner.addTest(test);
    }
  });

  it('boots the VM, runs the suite there and collects a result for every test', () => {
    expect(collected.results, `no results from the VM (exit ${collected.exit}):\n${collected.tail}`).to.be.greaterThan(
      0,
    );
    expect(collected.exit, collected.tail).to.equal(0);
  });
});
