/**
 * The real `surfacelink` command, compiled, run as a child process: doctor, demo (two more
 * processes underneath), serve + view, signals, usage errors. Also the demo's test pattern,
 * whose counter is what proves the pixels crossed intact.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  boxX,
  boxY,
  damageRects,
  drawPattern,
  patternDamage,
  patternLayout,
  readCounter,
} from '../../src/demo/pattern.js';
import { Cli, cli, ensureCliBuilt } from '../cli-process.js';

const ROOT = path.resolve(__dirname, '..', '..');
/**
 * The environment for a CLI child with its own $XDG_RUNTIME_DIR (so default sockets do not collide)
 * and no stream token.
 */
function privateEnv(runtimeDir: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, XDG_RUNTIME_DIR: runtimeDir };
  delete env.SURFACELINK_STREAM_TOKEN;
  return env;
}

/** GET `url`; resolves with the status and the body. */
function httpGet(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      })
      .on('error', reject);
  });
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

  before(ensureCliBuilt);

  afterEach(() => {
    for (const c of running.splice(0)) c.kill();
  });

  function start(args: string[], env?: NodeJS.ProcessEnv): Cli {
    const c = new Cli(args, env);
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
    expect(report.socketPath)
      .to.be.a('string')
      .and.match(/\.sock$/);
    const shm = report.mechanisms.find((m: { name: string }) => m.name === 'shm.v1');
    expect(shm).to.include({ available: true });
    expect(shm.reason).to.be.a('string').with.length.greaterThan(0);
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
    expect(r.stdout).to.match(
      /^shm\.v1 320x240 {2}[\d.]+ fps {2}latency p50 \d+ p99 \d+ µs {2}dropped \d+ {2}counter OK$/m,
    );
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
    const producer = processesMentioning(dir).find((pid) =>
      fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('demo-producer'),
    );
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
    expect(r.stderr).to.include('start a server with `surfacelink serve --path');
  });

  it('an unknown subcommand says so on stderr, points at --help and exits 2', async () => {
    const r = await cli(['frobnicate']);
    expect(r.code).to.equal(2);
    expect(r.stdout).to.equal('');
    expect(r.stderr).to.equal('surfacelink: unknown command "frobnicate"\nsee surfacelink --help\n');
  });

  it('no command at all prints the usage on stderr and exits 2', async () => {
    const r = await cli([]);
    expect(r.code).to.equal(2);
    expect(r.stderr).to.match(/^surfacelink: no command given\n/);
    expect(r.stderr).to.include('Usage: surfacelink <command>');
  });

  it('bad options and values exit 2', async () => {
    for (const args of [
      ['demo', '--width', 'wide'],
      ['demo', '--fps', '0'],
      ['doctor', '--bogus'],
      [],
      ['help', 'nope'],
    ]) {
      const r = await cli(args);
      expect(r.code, `surfacelink ${args.join(' ')}: ${r.stderr}`).to.equal(2);
      expect(r.stderr).to.match(/^surfacelink(?: [a-z]+)?: /);
    }
  });

  describe('what a new user hits', () => {
    let runtime: string;
    let env: NodeJS.ProcessEnv;

    beforeEach(() => {
      runtime = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-cli-xdg-'));
      env = privateEnv(runtime);
    });

    afterEach(() => {
      for (const c of running.splice(0)) c.kill();
      fs.rmSync(runtime, { recursive: true, force: true });
    });

    /** The CLI's stderr for a usage error: one line, then where to look. */
    const usage = (line: string, command?: string): string =>
      `${line}\nsee surfacelink${command ? ` ${command}` : ''} --help\n`;

    it('serve and view with no options meet on the default socket, the one their --help names', async () => {
      const defaultSocket = path.join(runtime, 'surfacelink', 'default.sock');
      for (const command of ['serve', 'view']) {
        const h = await cli([command, '--help'], env);
        expect(/--path P\s+socket path \(default (\S+)\)/.exec(h.stdout)?.[1], `${command} --help`).to.equal(
          defaultSocket,
        );
      }
      const serve = start(['serve'], env);
      await serve.waitFor(/^view it with: /m);
      expect(serve.stdout).to.include(` on ${defaultSocket}\n`);
      expect(serve.stdout).to.match(/^view it with: surfacelink view {3}\(Ctrl-C stops\)$/m);
      const view = start(['view'], env);
      await view.waitFor(/counter OK/);
      expect(view.stdout).to.include(`connected to ${defaultSocket}: server "surfacelink-serve"`);
      serve.child.kill('SIGINT');
      const [s, v] = await Promise.all([serve.done, view.done]);
      expect(s.code, s.stderr).to.equal(130);
      expect(v.code, v.stderr).to.equal(0);
      expect(v.stdout).to.match(/the server shut down; shm\.v1 1280x720, \d+ frames/);
    });

    it('serve --path that cannot be a socket says what is wrong and how to fix it, naming --path', async () => {
      const missing = await cli(['serve', '--path', '/nonexistent/dir/x.sock'], env);
      expect(missing.code).to.equal(1);
      expect(missing.stderr).to.equal(
        'surfacelink serve: --path /nonexistent/dir/x.sock: the directory /nonexistent/dir does not exist; ' +
          'create it or choose another --path\n',
      );

      const long = path.join(runtime, `${'a'.repeat(120)}.sock`);
      const tooLong = await cli(['serve', '--path', long], env);
      expect(tooLong.code).to.equal(2);
      expect(tooLong.stderr).to.equal(
        usage(
          `surfacelink serve: --path ${long}: ${Buffer.byteLength(long)} bytes is too long for a unix socket ` +
            `path (at most 107); choose a shorter --path`,
          'serve',
        ),
      );

      const file = path.join(runtime, 'notes.txt');
      fs.writeFileSync(file, 'keep me');
      const notSocket = await cli(['serve', '--path', file], env);
      expect(notSocket.code).to.equal(1);
      expect(notSocket.stderr).to.equal(
        `surfacelink serve: --path ${file}: a file that is not a socket is there; remove it or choose another --path\n`,
      );
      expect(fs.readFileSync(file, 'utf8')).to.equal('keep me');

      const directory = path.join(runtime, 'file-not-dir', 'x.sock');
      fs.writeFileSync(path.dirname(directory), '');
      const notDir = await cli(['serve', '--path', directory], env);
      expect(notDir.code).to.equal(1);
      expect(notDir.stderr).to.equal(
        `surfacelink serve: --path ${directory}: ${path.dirname(directory)} is not a directory; choose ` +
          `another --path\n`,
      );

      const socket = path.join(runtime, 'live.sock');
      const first = start(['serve', '--path', socket, '--width', '64', '--height', '64', '--fps', '10'], env);
      await first.waitFor(/^serving /m);
      const second = await cli(['serve', '--path', socket], env);
      expect(second.code).to.equal(1);
      expect(second.stderr).to.equal(
        `surfacelink serve: --path ${socket}: another server is already listening there; stop it or choose ` +
          `another --path\n`,
      );
    });

    it('serve --path in a directory it may not write to says so, naming --path', async function () {
      if (process.getuid?.() === 0) this.skip(); // root may write anywhere
      const dir = path.join(runtime, 'read-only');
      fs.mkdirSync(dir, { mode: 0o500 });
      const socket = path.join(dir, 'x.sock');
      const r = await cli(['serve', '--path', socket], env);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.equal(
        `surfacelink serve: --path ${socket}: no permission to create a socket in ${dir}; choose a directory ` +
          `you can write to with --path\n`,
      );
    });

    it('serve with no --path and an unsafe default directory says how to fix it, naming --path', async () => {
      const dir = path.join(runtime, 'surfacelink');
      fs.mkdirSync(dir);
      fs.chmodSync(dir, 0o777);
      const r = await cli(['serve'], env);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(
        new RegExp(
          `^surfacelink serve: the default socket directory ${dir} must be owned by you \\(uid \\d+\\) and ` +
            `writable by no one else; run chmod 700 ${dir}, or choose a socket with --path\\n$`,
        ),
      );
    });

    it(
      'numeric options take negative-looking values and reject them with the flag, ' +
        'its range and the value (exit 2)',
      async () => {
        const cases: [string[], string][] = [
          [['serve', '--fps', '-5'], '--fps must be a number in 1..1000; got -5'],
          [['serve', '--fps=-5'], '--fps must be a number in 1..1000; got -5'],
          [['serve', '--fps', '0'], '--fps must be a number in 1..1000; got 0'],
          [['serve', '--fps', 'fast'], '--fps must be a number in 1..1000; got fast'],
          [['serve', '--width', '-1'], '--width must be a whole number in 1..16384; got -1'],
          [['serve', '--width', '12.5'], '--width must be a whole number in 1..16384; got 12.5'],
          [['serve', '--height', '-720'], '--height must be a whole number in 1..16384; got -720'],
          [['serve', '--stream', '--stream-port', '-80'], '--stream-port must be a whole number in 0..65535; got -80'],
          [
            ['serve', '--stream', '--stream-port', '70000'],
            '--stream-port must be a whole number in 0..65535; got 70000',
          ],
          [['demo', '--duration', '-3'], '--duration must be a number in 0.1..1000000000; got -3'],
          [['demo', '--stream-port', '-1'], '--stream-port must be a whole number in 0..65535; got -1'],
          [['demo', '--width', '-0'], '--width must be a whole number in 1..16384; got -0'],
          [
            ['view', '--remote', 'ws://127.0.0.1:1/stream', '--max-fps', '-2'],
            '--max-fps must be a number in 0.1..1000; got -2',
          ],
          [['view', '--stream', '--max-fps', '-2'], '--max-fps must be a number in 0.1..1000; got -2'],
        ];
        for (const [args, line] of cases) {
          const r = await cli(args, env);
          expect(r.code, `surfacelink ${args.join(' ')}: ${r.stderr}`).to.equal(2);
          expect(r.stderr, `surfacelink ${args.join(' ')}`).to.equal(usage(`surfacelink ${args[0]}: ${line}`, args[0]));
          expect(r.stdout).to.equal('');
        }
      },
    );

    it(
      'unknown options and commands, missing values and stray arguments: ' + 'one line and where to look (exit 2)',
      async () => {
        const cases: [string[], string, string | undefined][] = [
          [['serve', '--bogus'], 'surfacelink serve: unknown option --bogus', 'serve'],
          [['serve', '--fsp', '30'], 'surfacelink serve: unknown option --fsp (did you mean --fps?)', 'serve'],
          [['serve', '-x'], 'surfacelink serve: unknown option -x', 'serve'],
          [['serve', '--fps'], 'surfacelink serve: --fps needs a value', 'serve'],
          [['serve', '--fps', '--width', '64'], 'surfacelink serve: --fps needs a value', 'serve'],
          [
            ['serve', '--path', '--stram'],
            'surfacelink serve: --path needs a value (for one that begins with --, write --path=--stram)',
            'serve',
          ],
          [['serve', '--stream=yes'], 'surfacelink serve: --stream takes no value', 'serve'],
          [['serve', '--stream-port', '80'], 'surfacelink serve: --stream-port needs --stream', 'serve'],
          [
            ['serve', '--stream-host', '::', '--stream-self-signed'],
            'surfacelink serve: --stream-host and --stream-self-signed need --stream',
            'serve',
          ],
          [
            ['serve', '--stream', '--stream-cert', '/nonexistent.pem'],
            'surfacelink serve: --stream-cert and --stream-key go together (the certificate and its private key, PEM)',
            'serve',
          ],
          [
            ['serve', '--stream', '--stream-self-signed', '--stream-key', 'k.pem'],
            'surfacelink serve: --stream-self-signed and --stream-cert/--stream-key exclude each other',
            'serve',
          ],
          [
            ['view', '--fingerprint', 'AB'],
            'surfacelink view: --fingerprint and --ca need --remote (an https:// or wss:// URL)',
            'view',
          ],
          [
            ['view', '--remote', 'https://h:1/#token=x', '--fingerprint', 'AB:CD'],
            'surfacelink view: --fingerprint must be a SHA-256 fingerprint (64 hex digits, colons optional); got AB:CD',
            'view',
          ],
          [['view', 'extra'], 'surfacelink view: unexpected argument "extra"', 'view'],
          [
            ['view', '--codec', 'vp9', '--remote', 'ws://x/'],
            'surfacelink view: --codec must be h264 or tiles; got vp9',
            'view',
          ],
          [['frobnicate'], 'surfacelink: unknown command "frobnicate"', undefined],
          [['serv'], 'surfacelink: unknown command "serv" (did you mean serve?)', undefined],
          [['--bogus'], 'surfacelink: unknown option --bogus', undefined],
          [['help', 'nope'], 'surfacelink: unknown command "nope"', undefined],
        ];
        for (const [args, line, command] of cases) {
          const r = await cli(args, env);
          expect(r.code, `surfacelink ${args.join(' ')}: ${r.stderr}`).to.equal(2);
          expect(r.stderr, `surfacelink ${args.join(' ')}`).to.equal(usage(line, command));
        }
      },
    );

    it('view --remote without a token says how to give one on the command line, never a library option', async () => {
      for (const url of ['ws://127.0.0.1:1/stream', 'http://127.0.0.1:1/']) {
        const r = await cli(['view', '--remote', url], env);
        expect(r.code, r.stderr).to.equal(2);
        expect(r.stderr).to.equal(
          usage(
            `surfacelink view: --remote ${url} has no token: ` +
              `pass the whole viewer URL that \`surfacelink serve --stream\` printed (it ends in #token=…), ` +
              `or --token T, or set SURFACELINK_STREAM_TOKEN`,
            'view',
          ),
        );
      }
      const notUrl = await cli(['view', '--remote', 'localhost:8600'], env);
      expect(notUrl.code).to.equal(2);
      expect(notUrl.stderr).to.match(
        /^surfacelink view: --remote localhost:8600 is not a stream URL: give the viewer URL that `surfacelink serve --stream` printed \(http:\/\/host:port\/#token=…\), or ws:\/\/host:port\/stream\n/,
      );
    });

    it('view --remote with a wrong token says the server refused it and where the right one is', async () => {
      const serve = start(
        ['serve', '--stream', '--path', path.join(runtime, 's.sock'), '--width', '64', '--height', '64', '--fps', '10'],
        env,
      );
      await serve.waitFor(/codecs: /);
      const url = /^stream: (http:\/\/\S+)$/m.exec(serve.stdout)![1];
      const wrong = '0'.repeat(64);
      const fromUrl = await cli(['view', '--remote', url.replace(/#token=\w+/, `#token=${wrong}`)], env);
      expect(fromUrl.code).to.equal(1);
      expect(fromUrl.stderr).to.equal(
        `surfacelink view: the server refused the token from the URL's #token= (E_AUTH: wrong token); use the ` +
          `URL \`surfacelink serve --stream\` printed, or give its token with --token\n`,
      );
      const fromFlag = await cli(['view', '--remote', url.replace(/#.*/, ''), '--token', wrong], env);
      expect(fromFlag.code).to.equal(1);
      expect(fromFlag.stderr).to.include('the server refused the token from --token (E_AUTH: wrong token)');
      const fromEnv = await cli(['view', '--remote', url.replace(/#.*/, '')], {
        ...env,
        SURFACELINK_STREAM_TOKEN: wrong,
      });
      expect(fromEnv.code).to.equal(1);
      expect(fromEnv.stderr).to.include(
        'the server refused the token from $SURFACELINK_STREAM_TOKEN (E_AUTH: wrong token)',
      );
      for (const r of [fromUrl, fromFlag, fromEnv]) expect(r.stderr).not.to.match(/options\.|\btoken:/);
      // A token that begins with a dash is a value, not an option.
      const dashed = await cli(['view', '--remote', url.replace(/#.*/, ''), '--token', '-0123456789abcdef'], env);
      expect(dashed.stderr).to.include('the server refused the token from --token');
    });

    it('view --stream from a server without a stream says to start it with --stream', async () => {
      const socket = path.join(runtime, 'plain.sock');
      const serve = start(['serve', '--path', socket, '--width', '64', '--height', '64', '--fps', '10'], env);
      await serve.waitFor(/^serving /m);
      const r = await cli(['view', '--stream', '--path', socket], env);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.match(
        /^surfacelink view: E_NO_MECHANISM: .*\n {2}that server offers no stream: start it with `surfacelink serve --stream`, or leave out --stream\n$/,
      );
    });

    /** Every URL serve printed. */
    const printedUrls = (stdout: string): string[] =>
      stdout.match(/\b(?:https?|wss?):\/\/\S+/g)?.map((u) => u.replace(/'$/, '')) ?? [];

    it(
      'serve --stream --stream-host 0.0.0.0 prints URLs a browser can open; ' + 'the loopback one serves the viewer',
      async () => {
        const serve = start(
          [
            'serve',
            '--stream',
            '--stream-host',
            '0.0.0.0',
            '--path',
            path.join(runtime, 's.sock'),
            '--width',
            '64',
            '--height',
            '64',
            '--fps',
            '10',
          ],
          env,
        );
        await serve.waitFor(/codecs: /);
        const urls = printedUrls(serve.stdout);
        expect(urls.join('\n')).not.to.include('0.0.0.0');
        const loopback = /^stream: (http:\/\/127\.0\.0\.1:(\d+)\/#token=([0-9a-f]{64}))$/m.exec(serve.stdout);
        expect(loopback, serve.stdout).to.not.equal(null);
        const [, url, port, token] = loopback!;
        for (const addresses of Object.values(os.networkInterfaces()))
          for (const a of addresses ?? [])
            if (!a.internal && a.family === 'IPv4')
              expect(urls).to.include(`http://${a.address}:${port}/#token=${token}`);
        for (const u of urls) expect(u, u).to.match(/#token=[0-9a-f]{64}$/);
        expect(serve.stdout).to.match(/HTTPS/);
        const page = await httpGet(url.replace(/#.*/, ''));
        expect(page.status).to.equal(200);
        expect(page.body).to.match(/<html/i);
      },
    );

    it('serve --stream --stream-self-signed: https URLs, the fingerprint; view --fingerprint pins it', async () => {
      const serve = start(
        [
          'serve',
          '--stream',
          '--stream-self-signed',
          '--path',
          path.join(runtime, 's.sock'),
          '--width',
          '64',
          '--height',
          '64',
          '--fps',
          '10',
        ],
        env,
      );
      await serve.waitFor(/codecs: /);
      const printed = /^stream: (https:\/\/127\.0\.0\.1:\d+\/#token=[0-9a-f]{64})$/m.exec(serve.stdout);
      expect(printed, serve.stdout).to.not.equal(null);
      const fingerprint = /certificate: self-signed \(made now\), SHA-256 ((?:[0-9A-F]{2}:){31}[0-9A-F]{2});/.exec(
        serve.stdout,
      );
      expect(fingerprint, serve.stdout).to.not.equal(null);
      expect(serve.stdout).to.include(`--fingerprint ${fingerprint![1]}`);
      expect(serve.stdout, 'no plain-http caveat when serving https').to.not.match(/falls back to tiles/);
      const view = start(['view', '--remote', printed![1], '--fingerprint', fingerprint![1], '--codec', 'tiles'], env);
      await view.waitFor(/^tiles \| .*frames [1-9]/m);
      expect(view.stdout).to.match(/^connected to wss:\/\/127\.0\.0\.1:\d+\/stream/m);
      const unpinned = await cli(['view', '--remote', printed![1]], env);
      expect(unpinned.code).to.equal(1);
      expect(unpinned.stderr).to.match(/E_CONNECT: .*self-signed certificate .*--fingerprint/);
      const wrong = await cli(['view', '--remote', printed![1], '--fingerprint', 'ab'.repeat(32)], env);
      expect(wrong.code).to.equal(1);
      expect(wrong.stderr).to.match(/E_AUTH: .*not the pinned AB:AB:.*nothing was sent/);
    });

    it('serve --stream --stream-host :: prints bracketed IPv6 URLs and no wildcard', async function () {
      const v6 = Object.values(os.networkInterfaces())
        .flatMap((a) => a ?? [])
        .filter((a) => !a.internal && a.family === 'IPv6' && !a.address.startsWith('fe80:'));
      const serve = start(
        [
          'serve',
          '--stream',
          '--stream-host',
          '::',
          '--path',
          path.join(runtime, 's.sock'),
          '--width',
          '64',
          '--height',
          '64',
          '--fps',
          '10',
        ],
        env,
      );
      await serve.waitFor(/codecs: |cannot serve the stream/).catch(() => undefined);
      if (/cannot serve the stream/.test(serve.stderr)) this.skip(); // no IPv6 here
      await serve.waitFor(/codecs: /);
      const urls = printedUrls(serve.stdout);
      expect(urls.join('\n')).not.to.match(/\[::\]|\[0:0:0:0:0:0:0:0\]|fe80:/);
      const loopback = /^stream: (http:\/\/\[::1\]:(\d+)\/#token=[0-9a-f]{64})$/m.exec(serve.stdout);
      expect(loopback, serve.stdout).to.not.equal(null);
      for (const a of v6)
        expect(
          urls.some((u) => u.startsWith(`http://[${a.address}]:${loopback![2]}/#token=`)),
          a.address,
        ).to.equal(true);
      const page = await httpGet(loopback![1].replace(/#.*/, ''));
      expect(page.status).to.equal(200);
    });

    it('serve --stream on a busy port or a foreign address names the flag', async () => {
      const first = start(
        ['serve', '--stream', '--path', path.join(runtime, 'a.sock'), '--width', '64', '--height', '64', '--fps', '10'],
        env,
      );
      await first.waitFor(/codecs: /);
      const port = /^stream: http:\/\/127\.0\.0\.1:(\d+)\//m.exec(first.stdout)![1];
      const busy = await cli(['serve', '--stream', '--stream-port', port, '--path', path.join(runtime, 'b.sock')], env);
      expect(busy.code).to.equal(1);
      expect(busy.stderr).to.equal(
        `surfacelink serve: --stream-port ${port}: 127.0.0.1:${port} is already in use; choose another ` +
          `--stream-port, or leave it out for any free port\n`,
      );
      const foreign = await cli(
        ['serve', '--stream', '--stream-host', '192.0.2.222', '--path', path.join(runtime, 'b.sock')],
        env,
      );
      expect(foreign.code).to.equal(1);
      expect(foreign.stderr).to.equal(
        'surfacelink serve: --stream-host 192.0.2.222: not an address of this machine; give one of its ' +
          'addresses, 127.0.0.1 (this host only) or 0.0.0.0 (every interface)\n',
      );
    });
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
        expect(
          Buffer.compare(px.subarray(row, row + width * 4), expected.subarray(row, row + width * 4)),
          `frame ${frame} row ${y}`,
        ).to.equal(0);
        expect(
          px.subarray(row + width * 4, row + stride).every((b) => b === 0xa5),
          `padding of row ${y}`,
        ).to.equal(true);
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
          if (
            before[i] === after[i] &&
            before[i + 1] === after[i + 1] &&
            before[i + 2] === after[i + 2] &&
            before[i + 3] === after[i + 3]
          )
            continue;
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
