/**
 * scripts/flake-hunt.sh (npm run flake-hunt): runs shared out between workers in fresh clones, each
 * run's outcome read from what the summary reporter leaves, the report's counts, streak and failed
 * tests, its exit status, and its refusal of bad options. The runs here are a stand-in suite
 * (test/fixtures/flake-hunt-run.cjs) with --setup none; the hunt itself runs the real suite.
 */
import { expect } from 'chai';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ROOT } from '../helpers.js';

const SCRIPT = path.join(ROOT, 'scripts', 'flake-hunt.sh');
const FIXTURE = path.join(ROOT, 'test', 'fixtures', 'flake-hunt-run.cjs');

function hunt(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [SCRIPT, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

interface Row {
  worker: string;
  run: string;
  commit: string;
  exit: string;
  passed: string;
  failed: string;
  skipped: string;
  failed_tests: string;
}

function rows(out: string): Row[] {
  const [head, ...lines] = fs.readFileSync(path.join(out, 'summary.tsv'), 'utf8').trim().split('\n');
  const keys = head.split('\t');
  return lines.map((l) => Object.fromEntries(l.split('\t').map((v, i) => [keys[i], v])) as unknown as Row);
}

describe('flake hunt (scripts/flake-hunt.sh)', function () {
  this.timeout(60_000);
  let tmp: string;
  before(function () {
    // The hunt clones a commit: it needs the repository, which a source tree without .git is not.
    const git = spawnSync('git', ['-C', ROOT, 'rev-parse', '--verify', 'HEAD^{commit}'], { encoding: 'utf8' });
    if (git.status === 0) return;
    const reason = `no git repository at ${ROOT} (${(git.error?.message ?? git.stderr).trim()})`;
    if (process.env.CI === 'true') throw new Error(`CI=true, and this machine should run the hunt, but: ${reason}`);
    console.log(`      skipped: ${reason}`);
    this.skip();
  });
  beforeEach(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'surfacelink-hunt-test-'))));
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('reports each run, the failed tests and their counts, the longest green streak; fails on a red run', async () => {
    const out = path.join(tmp, 'h');
    const r = await hunt(['--runs', '5', '--setup', 'none', '--out', out, '--command', `node ${FIXTURE}`]);
    expect(r.code, r.stderr).to.equal(1);
    const byRun = new Map(rows(out).map((row) => [row.run, row]));
    expect([...byRun.keys()].sort()).to.deep.equal(['1', '2', '3', '4', '5']);
    const head = (await hunt(['--help'])).stdout;
    expect(head).to.match(/--runs N/);
    const commit = /on ([0-9a-f]{7}),/.exec(r.stderr)?.[1];
    expect(commit).to.be.a('string');
    for (const row of byRun.values()) expect(row.commit).to.equal(commit);
    expect(byRun.get('1')).to.include({ exit: '0', passed: '2', failed: '0', skipped: '1', failed_tests: '' });
    expect(byRun.get('2')).to.include({ exit: '1', passed: '1', failed: '1', failed_tests: 'suite B is flaky' });
    expect(byRun.get('5')).to.include({ exit: '3', passed: '-', failed: '-' });
    expect(byRun.get('5')!.failed_tests).to.match(/^\(exit 3 without a failed test: see .*run-5\.log\)$/);
    // G R G G C in order: three green, two red, the longest streak is runs 3-4.
    expect(r.stdout).to.contain('5 run(s): 3 green, 2 red; longest green streak 2');
    expect(r.stdout).to.contain('failed 1x: suite B is flaky');
    expect(r.stdout).to.contain('failed 1x: (exit 3 without a failed test');
    expect(r.stderr).to.contain('w1 run 2/5: exit 1, 1 passed, 1 failed, 1 skipped');
    // The run's results file is kept beside its log, in the worker's clone of the commit.
    expect(JSON.parse(fs.readFileSync(path.join(out, 'w1', 'run-2.json'), 'utf8'))).to.have.length(3);
    expect(fs.existsSync(path.join(out, 'w1', '.git'))).to.equal(true);
  });

  it('shares the runs between parallel workers, each run once, and exits 0 when all are green', async () => {
    const out = path.join(tmp, 'h');
    // Each run takes 3 s, so the second worker (a clone away) is running long before the first could take all six.
    const green = `sleep 3; node -e 'console.log("1 passed, 0 failed, 0 skipped")'`;
    const r = await hunt(['--runs', '6', '--parallel', '2', '--setup', 'none', '--out', out, '--command', green]);
    expect(r.code, r.stderr).to.equal(0);
    const all = rows(out);
    expect(all.map((row) => Number(row.run)).sort((a, b) => a - b)).to.deep.equal([1, 2, 3, 4, 5, 6]);
    expect([...new Set(all.map((row) => row.worker))].sort()).to.deep.equal(['w1', 'w2']);
    expect(r.stdout).to.contain('6 run(s): 6 green, 0 red; longest green streak 6');
  });

  it('Ctrl-C (SIGINT) ends the runs in progress at once and reports those that finished, exit 130', async () => {
    const out = path.join(tmp, 'h');
    // Run 1 passes at once; run 2 would take a minute.
    const command = 'if [ "$SURFACELINK_HUNT_RUN" = 1 ]; then echo "1 passed, 0 failed, 0 skipped"; else sleep 60; fi';
    const child = spawn('bash', [SCRIPT, '--runs', '3', '--setup', 'none', '--out', out, '--command', command], {
      cwd: ROOT,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    const ran1 = new Promise<void>((resolve) =>
      child.stderr.on('data', (d: Buffer) => {
        stderr += d.toString();
        if (stderr.includes('w1 run 1/3')) resolve();
      }),
    );
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    await ran1;
    const t0 = Date.now();
    child.kill('SIGINT');
    const code = await closed;
    expect(code, stderr).to.equal(130);
    expect(Date.now() - t0, 'ended at once, run 2 killed').to.be.below(20_000);
    expect(stderr).to.contain('interrupted');
    expect(stdout).to.contain('1 run(s): 1 green, 0 red; longest green streak 1');
    expect(rows(out).map((row) => row.run)).to.deep.equal(['1']);
  });

  it('goes on unharmed when its own script is edited while it runs (the tree is worked on during a hunt)', async () => {
    // A clone holding this tree's script, so that the one edited is not the repository's own.
    const repo = path.join(tmp, 'repo');
    const clone = spawnSync('git', ['clone', '-q', ROOT, repo], { encoding: 'utf8' });
    expect(clone.status, clone.stderr).to.equal(0);
    const script = path.join(repo, 'scripts', 'flake-hunt.sh');
    fs.copyFileSync(SCRIPT, script);
    const out = path.join(tmp, 'h');
    const command = 'sleep 1; echo "1 passed, 0 failed, 0 skipped"';
    const child = spawn('bash', [script, '--runs', '3', '--setup', 'none', '--out', out, '--command', command], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      // Once it is running: the file shrunk, then given other text (as an editor saving in place does).
      if (stderr.includes('w1 run 1/3') && fs.statSync(script).size > 100) {
        fs.writeFileSync(script, 'echo x\n');
        fs.appendFileSync(script, ')))) syntax error here (((( \n'.repeat(400));
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(fs.readFileSync(script, 'utf8')).to.contain('syntax error here');
    expect(code, stderr).to.equal(0);
    expect(stderr).to.not.match(/syntax error/);
    expect(stdout).to.contain('3 run(s): 3 green, 0 red; longest green streak 3');
  });

  it('refuses bad options with exit 2 and a reason, and an --out that already holds a hunt', async () => {
    for (const [args, reason] of [
      [['--runs', '0'], /--runs needs a positive integer, got '0'/],
      [['--parallel', 'two'], /--parallel needs a positive integer/],
      [['--setup', 'some'], /--setup is ci or none/],
      [['--ref', 'no-such-ref-anywhere'], /no commit 'no-such-ref-anywhere'/],
      [['--runs'], /--runs needs a value/],
      [['--frobnicate', '1'], /unknown option '--frobnicate'/],
    ] as const) {
      const r = await hunt([...args]);
      expect(r.code, args.join(' ')).to.equal(2);
      expect(r.stderr, args.join(' ')).to.match(reason);
    }
    const out = path.join(tmp, 'h');
    // A run that exits 0 without a summary line is green: the exit status is what a suite reports.
    const once = await hunt(['--runs', '1', '--setup', 'none', '--out', out, '--command', 'true']);
    expect(once.code, once.stderr).to.equal(0);
    expect(once.stdout).to.contain('1 run(s): 1 green, 0 red');
    const again = await hunt(['--runs', '1', '--setup', 'none', '--out', out, '--command', 'true']);
    expect(again.code).to.equal(2);
    expect(again.stderr).to.match(/already holds a hunt/);
  });
});
