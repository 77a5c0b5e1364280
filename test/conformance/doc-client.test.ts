/**
 * Conformance: a Python client written only from docs/protocol.md (test/conformance/doc_client.py)
 * interoperates with the real server, in separate processes.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { Peer, ROOT, tempDir } from '../helpers.js';

const DOC_CLIENT = path.join(ROOT, 'test', 'conformance', 'doc_client.py');

/** doc_client.py as a child process: waits for its stderr progress lines and its final JSON line. */
class DocClient {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  private readonly lineWaiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  readonly done: Promise<{ code: number | null; result: any }>;

  constructor(args: string[]) {
    this.child = spawn('python3', [DOC_CLIENT, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    this.child.stdout!.on('data', (d: Buffer) => (this.stdout += d.toString()));
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      for (let i = this.lineWaiters.length - 1; i >= 0; i--) {
        const m = this.stderr.match(this.lineWaiters[i].re);
        if (m) {
          this.lineWaiters[i].resolve(m);
          this.lineWaiters.splice(i, 1);
        }
      }
    });
    this.done = new Promise((resolve, reject) => {
      this.child.on('error', reject);
      this.child.on('close', (code) => {
        const lines = this.stdout
          .trim()
          .split('\n')
          .filter((l) => l.length > 0);
        if (lines.length !== 1) {
          reject(
            new Error(
              `doc_client printed ${lines.length} stdout lines (exit ${code}); stdout: ${this.stdout}; ` +
                `stderr: ${this.stderr}`,
            ),
          );
          return;
        }
        try {
          resolve({ code, result: JSON.parse(lines[0]) });
        } catch (e) {
          reject(new Error(`doc_client stdout is not JSON: ${this.stdout}; stderr: ${this.stderr}`));
        }
      });
    });
  }

  /** Resolves once a stderr progress line matching `re` has been printed (already or later). */
  waitLine(re: RegExp, timeoutMs = 15000): Promise<RegExpMatchArray> {
    const m = this.stderr.match(re);
    if (m) return Promise.resolve(m);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`doc_client printed no ${re} within ${timeoutMs} ms; stderr: ${this.stderr}`)),
        timeoutMs,
      );
      this.lineWaiters.push({ re, resolve: (x) => (clearTimeout(timer), resolve(x)) });
      this.child.once('close', () => {
        clearTimeout(timer);
        const late = this.stderr.match(re);
        if (late) resolve(late);
        else
          reject(new Error(`doc_client exited before printing ${re}; stdout: ${this.stdout}; stderr: ${this.stderr}`));
      });
    });
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
  }
}

describe('conformance: a client written from docs/protocol.md alone', function () {
  this.timeout(60000);
  let tmp: ReturnType<typeof tempDir>;
  let socketPath: string;
  let server: Peer;
  const clients: DocClient[] = [];

  async function startServer(options: Record<string, unknown> = {}): Promise<void> {
    server = new Peer('server.ts');
    await server.call('listen', { path: socketPath, options });
    await server.call('surface', { width: 64, height: 48 });
  }

  function docClient(args: string[]): DocClient {
    const c = new DocClient(['--path', socketPath, ...args]);
    clients.push(c);
    return c;
  }

  beforeEach(() => {
    tmp = tempDir('sl-conf-');
    socketPath = path.join(tmp.dir, 'server.sock');
  });

  afterEach(async () => {
    for (const c of clients.splice(0)) c.kill();
    await server?.stop();
    tmp.cleanup();
  });

  it('negotiates shm.v1, validates and maps each SCANOUT, reads the pixels, echoes RELEASE', async () => {
    await startServer();
    const c = docClient(['--frames', '3']);
    await c.waitLine(/doc_client: welcome /);
    await server.waitEvent('client');

    const fills = [0x11, 0x5a, 0xc3];
    const damage2 = [
      { x: 1, y: 2, width: 3, height: 4 },
      { x: 10, y: 10, width: 54, height: 38 },
    ];
    const damage3 = [{ x: 0, y: 0, width: 64, height: 1 }];
    const presented: any[] = [];
    presented.push(await server.call('present', { fill: fills[0] }));
    await c.waitLine(/doc_client: released surface=\d+ buffer=\d+ sequence=1\n/);
    presented.push(await server.call('present', { fill: fills[1], damage: damage2 }));
    await c.waitLine(/doc_client: released surface=\d+ buffer=\d+ sequence=2\n/);
    presented.push(await server.call('present', { fill: fills[2], damage: damage3 }));

    const { code, result } = await c.done;
    expect(result.errors, c.stderr).to.deep.equal([]);
    expect(result.ok, JSON.stringify(result)).to.equal(true);
    expect(code).to.equal(0);
    expect(result.mechanism).to.equal('shm.v1');
    expect(result.reason).to.match(/shm\.v1 is the client's 1st choice/);
    expect(result.limits.releaseTimeoutMs).to.equal(2000);
    expect(result.frames).to.have.length(3);

    result.frames.forEach((f: any, i: number) => {
      expect(f.sequence, `frame ${i}`).to.equal(presented[i].sequence);
      expect(f.buffer, `frame ${i}`).to.equal(presented[i].bufferId);
      expect(String(f.inode), `frame ${i} inode`).to.equal(presented[i].inode);
      expect(f.width).to.equal(64);
      expect(f.height).to.equal(48);
      expect(f.stride).to.be.at.least(64 * 4);
      expect(f.format).to.equal('XR24');
      expect(f.seals & 0x2, 'F_SEAL_SHRINK').to.equal(0x2);
      expect(f.fd_link).to.match(/^\/memfd:/);
      const b = fills[i];
      expect(f.pixel0, `frame ${i} pixel0`).to.deep.equal([b, b, b, b]);
      expect(f.pixel_at).to.deep.equal({ x: 10, y: 5, bgrx: [b, b, b, b] });
      expect(f.distinct_bytes, `frame ${i}: every byte of the image is the fill`).to.deep.equal([b]);
    });
    expect(result.frames[0].damage, 'first frame: whole surface').to.deep.equal([]);
    expect(result.frames[1].damage).to.deep.equal(damage2.map((r) => [r.x, r.y, r.width, r.height]));
    expect(result.frames[2].damage).to.deep.equal(damage3.map((r) => [r.x, r.y, r.width, r.height]));

    // The server saw a normal departure, and every frame was released.
    const gone = await server.waitEvent('clientGone');
    expect(gone.code).to.not.match(/RELEASE_TIMEOUT|UNEXPECTED|MALFORMED|UNKNOWN/);
    const stats = await server.call('stats');
    expect(stats.holders).to.equal(0);
  });

  it('receives the front buffer right after WELCOME when it connects late', async () => {
    await startServer();
    const presented = await server.call('present', { fill: 0x42, damage: [{ x: 0, y: 0, width: 2, height: 2 }] });
    const c = docClient(['--frames', '1']);
    const { code, result } = await c.done;
    expect(result.ok, JSON.stringify(result)).to.equal(true);
    expect(code).to.equal(0);
    expect(result.frames).to.have.length(1);
    const f = result.frames[0];
    expect(f.sequence).to.equal(presented.sequence);
    expect(String(f.inode)).to.equal(presented.inode);
    expect(f.damage, 'first frame a client receives: whole surface').to.deep.equal([]);
    expect(f.pixel0).to.deep.equal([0x42, 0x42, 0x42, 0x42]);
  });

  it('gets ERROR(E_RELEASE_TIMEOUT = 13, fatal) when it holds its first frame past the deadline', async () => {
    await startServer({ releaseTimeoutMs: 300 });
    const c = docClient(['--frames', '2', '--hold-first', '5000']);
    await c.waitLine(/doc_client: welcome /);
    await server.call('present', { fill: 0x33 });
    const t0 = Date.now();
    const { code, result } = await c.done;
    const elapsed = Date.now() - t0;

    expect(result.ok).to.equal(false);
    expect(code).to.equal(1);
    expect(result.limits.releaseTimeoutMs, 'WELCOME announces the configured deadline').to.equal(300);
    expect(result.errors, 'the server itself broke no rule').to.deep.equal([]);
    expect(result.server_error).to.include({ code: 13, name: 'E_RELEASE_TIMEOUT', fatal: true });
    expect(result.frames).to.have.length(1);
    expect(result.frames[0].pixel0).to.deep.equal([0x33, 0x33, 0x33, 0x33]);
    expect(elapsed, 'cut well before the 5 s hold ended').to.be.below(4000);

    const gone = await server.waitEvent('clientGone');
    expect(gone.code).to.equal('E_RELEASE_TIMEOUT');
  });
});
