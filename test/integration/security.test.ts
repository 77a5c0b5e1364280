/** Security defaults: a private socket file, peer uid checks on both ends. */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SurfaceServer, SurfaceClient } from '../../src/index.js';
import { ROOT, tempDir } from '../helpers.js';

const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
const NOBODY = 65534;

describe('security defaults', function () {
  this.timeout(30000);
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => (tmp = tempDir()));
  afterEach(() => tmp.cleanup());

  it('creates the socket with mode 0600', async () => {
    const socketPath = path.join(tmp.dir, 's.sock');
    const server = await SurfaceServer.listen({ path: socketPath, logger: () => {} });
    try {
      expect(fs.statSync(socketPath).mode & 0o777).to.equal(0o600);
    } finally {
      server.close();
    }
    expect(fs.existsSync(socketPath), 'close() removes the socket file').to.equal(false);
  });

  it('uses a private directory under $XDG_RUNTIME_DIR by default', async () => {
    const saved = process.env.XDG_RUNTIME_DIR;
    process.env.XDG_RUNTIME_DIR = tmp.dir;
    try {
      const server = await SurfaceServer.listen({ name: 'default', logger: () => {} });
      try {
        expect(server.path).to.equal(path.join(tmp.dir, 'surfacelink', 'default.sock'));
        expect(fs.statSync(path.dirname(server.path)).mode & 0o777).to.equal(0o700);
        const client = await SurfaceClient.connect({ path: server.path });
        expect(client.mechanism).to.equal('shm.v1');
        client.close();
      } finally {
        server.close();
      }
    } finally {
      if (saved === undefined) delete process.env.XDG_RUNTIME_DIR;
      else process.env.XDG_RUNTIME_DIR = saved;
    }
  });

  it('refuses to replace a live server socket, but replaces a stale one', async () => {
    const socketPath = path.join(tmp.dir, 's.sock');
    const first = await SurfaceServer.listen({ path: socketPath, logger: () => {} });
    try {
      await SurfaceServer.listen({ path: socketPath }).then(
        () => expect.fail('a second server must not take over a live socket'),
        (e) => expect(e.code).to.equal('E_ADDRESS_IN_USE'),
      );
    } finally {
      first.close();
    }
    fs.writeFileSync(path.join(tmp.dir, 'placeholder'), '');
    const stale = spawn(process.execPath, [
      '-e',
      `require('net').createServer().listen(${JSON.stringify(socketPath)}, () => process.kill(process.pid, 'SIGKILL'))`,
    ]);
    await new Promise((r) => stale.on('exit', r));
    expect(fs.existsSync(socketPath), 'a killed server leaves its socket file').to.equal(true);
    const second = await SurfaceServer.listen({ path: socketPath, logger: () => {} });
    second.close();
  });

  (isRoot ? it : it.skip)(
    'refuses a peer of another uid with E_PERMISSION (needs root to run a client as nobody)',
    async () => {
      const socketPath = path.join(tmp.dir, 's.sock');
      fs.chmodSync(tmp.dir, 0o755);
      const server = await SurfaceServer.listen({ path: socketPath, socketMode: 0o666, logger: () => {} });
      const gone = new Promise<{ code: string }>((resolve) => server.on('clientGone', (_c, why) => resolve(why)));
      try {
        const script =
          `require(${JSON.stringify(path.join(ROOT, 'dist', 'index.js'))}).SurfaceClient.connect(` +
          `{ path: ${JSON.stringify(socketPath)} })
        .then(() => { console.log('CONNECTED'); process.exit(1); }, (e) => { console.log(e.code); process.exit(0); });`;
        const child = spawn(process.execPath, ['-e', script], { uid: NOBODY, gid: NOBODY, cwd: '/' });
        let out = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (out += d));
        const code = await new Promise((r) => child.on('exit', r));
        expect(out.trim(), out).to.equal('E_PERMISSION');
        expect(code).to.equal(0);
        expect((await gone).code).to.equal('E_PERMISSION');
      } finally {
        server.close();
      }
    },
  );
});
