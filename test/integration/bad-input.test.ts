/**
 * Bad input from a peer written against the wire format alone (test/fixtures/raw_peer.py):
 * each case gets its exact error code, closes only that peer, and the server keeps serving.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { SurfaceClient } from '../../src/client.js';
import { ErrorCode, type ErrorCodeName, type SurfaceLinkError } from '../../src/errors.js';
import { Peer, ROOT, openFdCount, run, sleep, tempDir } from '../helpers.js';

const RAW_PEER = path.join(ROOT, 'test', 'fixtures', 'raw_peer.py');

describe('bad input', function () {
  this.timeout(60000);

  describe('sent to a server', () => {
    let tmp: ReturnType<typeof tempDir>;
    let socketPath: string;
    let server: Peer;
    let frameNo = 0;

    before(async () => {
      tmp = tempDir();
      socketPath = path.join(tmp.dir, 'server.sock');
      server = new Peer('server.ts');
      await server.call('listen', { path: socketPath });
      await server.call('surface', { width: 32, height: 32 });
    });

    after(async () => {
      await server.stop();
      tmp.cleanup();
    });

    /** After every bad input: a well-behaved client still connects and gets frames. */
    async function goodClientStillServed(): Promise<void> {
      const good = new Peer('client.ts');
      try {
        await good.call('connect', { path: socketPath });
        const fill = ++frameNo;
        await server.call('present', { fill });
        expect((await good.waitEvent('frame', (f) => f.first === fill)).first).to.equal(fill);
      } finally {
        await good.stop();
      }
    }

    const cases: [scenario: string, code: ErrorCodeName, what: string][] = [
      ['garbage', 'E_TOO_LARGE', 'HTTP bytes read as a huge length'],
      ['short-length', 'E_MALFORMED', 'a length shorter than the header'],
      ['oversized', 'E_TOO_LARGE', 'a 1 MiB message'],
      ['huge-length', 'E_TOO_LARGE', 'length 2^32-1'],
      ['unknown-type', 'E_UNKNOWN_TYPE', 'message type 0x7f'],
      ['release-before-hello', 'E_UNEXPECTED', 'RELEASE before HELLO'],
      ['bad-magic', 'E_MALFORMED', 'HELLO with the wrong magic'],
      ['bad-json', 'E_MALFORMED', 'HELLO whose JSON does not parse'],
      ['version', 'E_PROTOCOL_VERSION', 'no common protocol version'],
      ['no-mechanism', 'E_NO_MECHANISM', 'only an unknown mechanism offered'],
      ['flags', 'E_MALFORMED', 'reserved header flags set'],
      ['release-not-held', 'E_UNEXPECTED', 'RELEASE of a frame never delivered'],
      ['release-short', 'E_MALFORMED', 'RELEASE with a short body'],
      ['fd-undeclared', 'E_HANDLE_COUNT', 'an fd no message declares'],
      ['fd-missing', 'E_HANDLE_COUNT', 'a message declaring 2 fds with none attached'],
      ['fd-too-many', 'E_HANDLE_COUNT', '12 fds on one message (MSG_CTRUNC)'],
      ['fd-wrong-type', 'E_HANDLE_TYPE', 'a pipe attached to RELEASE as its release fence'],
    ];

    for (const [scenario, code, what] of cases) {
      it(`${what} → ${code}, and the server keeps serving`, async () => {
        const gone = server.waitEvent('clientGone', (e) => e.code === code && !(e as { seen?: boolean }).seen);
        const result = await run('python3', [RAW_PEER, 'attack', socketPath, scenario]);
        expect(result.code, result.stderr).to.equal(0);
        const reply = JSON.parse(result.stdout).reply;
        expect(reply, 'the server answers with ERROR').to.not.equal(null);
        expect(reply.code).to.equal(ErrorCode[code]);
        expect(reply.fatal).to.equal(true);
        const event = await gone;
        event.seen = true;
        await goodClientStillServed();
      });
    }

    it('a peer that disconnects mid-message → E_TRUNCATED, and the server keeps serving', async () => {
      const gone = server.waitEvent('clientGone', (e) => e.code === 'E_TRUNCATED');
      const result = await run('python3', [RAW_PEER, 'attack', socketPath, 'truncated']);
      expect(result.code, result.stderr).to.equal(0);
      expect((await gone).code).to.equal('E_TRUNCATED');
      await goodClientStillServed();
    });

    it(
      'a client whose HELLO cannot be encoded (a 70,000-character name) gets E_TOO_LARGE: ' +
        'no later crash, no fd left open',
      async () => {
        const before = openFdCount();
        const unhandled: unknown[] = [];
        const onUnhandled = (reason: unknown): void => void unhandled.push(reason);
        process.on('unhandledRejection', onUnhandled);
        try {
          const error = await SurfaceClient.connect({ path: socketPath, name: 'x'.repeat(70000), timeoutMs: 200 }).then(
            () => null,
            (e: SurfaceLinkError) => e,
          );
          expect(error?.code).to.equal('E_TOO_LARGE');
          await sleep(500); // past the handshake timeout: nothing may fire any more
          expect(unhandled, 'unhandled rejections').to.deep.equal([]);
          expect(openFdCount(), 'fds').to.equal(before);
        } finally {
          process.off('unhandledRejection', onUnhandled);
        }
        await goodClientStillServed();
      },
    );

    it('a HELLO dribbled one byte at a time is accepted (partial reads)', async () => {
      const result = await run('python3', [RAW_PEER, 'attack', socketPath, 'dribble']);
      expect(result.code, result.stderr).to.equal(0);
      expect(JSON.parse(result.stdout).firstType).to.equal(0x02);
    });

    it('logged each bad client once', async () => {
      const { logs } = await server.call('stats');
      const warnings = (logs as string[]).filter((l) => l.startsWith('warn: client'));
      expect(warnings.length).to.equal(cases.length + 1);
    });
  });

  describe('sent to a client by a rogue server', () => {
    const cases: [scenario: string, code: ErrorCodeName, what: string][] = [
      ['unsealed', 'E_UNSEALED', 'a memfd without F_SEAL_SHRINK'],
      ['shrunk-unsealed', 'E_UNSEALED', 'an unsealed memfd shrunk after sending (no SIGBUS)'],
      ['beyond-size', 'E_OUT_OF_BOUNDS', 'stride × height beyond the memfd'],
      ['lying-plane-size', 'E_BAD_GEOMETRY', 'a plane size smaller than stride × rows'],
      ['zero-size', 'E_BAD_GEOMETRY', 'a 0x0 surface'],
      ['huge-size', 'E_BAD_GEOMETRY', 'a 100000x100000 surface'],
      ['overflow-offset', 'E_OUT_OF_BOUNDS', 'an offset near 2^64'],
      ['overflow-stride', 'E_BAD_GEOMETRY', 'stride 2^32-1'],
      ['wrong-type', 'E_HANDLE_TYPE', 'a pipe instead of a memfd'],
      ['wrong-count', 'E_HANDLE_COUNT', 'two fds for a one-fd mechanism'],
      ['bad-handle-index', 'E_HANDLE_COUNT', 'a plane naming a handle that was not sent'],
      ['unknown-format', 'E_UNSUPPORTED_FORMAT', 'an unknown fourcc'],
      ['frame-unknown-buffer', 'E_UNKNOWN_BUFFER', 'a FRAME for a buffer never announced'],
      ['damage-outside', 'E_BAD_GEOMETRY', 'damage outside the surface'],
    ];

    for (const [scenario, code, what] of cases) {
      it(`${what} → ${code}; the client survives and says why`, async () => {
        const tmp = tempDir();
        const socketPath = path.join(tmp.dir, 'rogue.sock');
        const rogue = spawn('python3', [RAW_PEER, 'rogue', socketPath, scenario], {
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let out = '';
        let err = '';
        rogue.stdout.on('data', (d) => (out += d));
        rogue.stderr.on('data', (d) => (err += d));
        const client = new Peer('client.ts');
        try {
          while (!out.includes('listening')) await new Promise((r) => setTimeout(r, 20));
          await client.call('connect', { path: socketPath });
          const d = await client.waitEvent('disconnect');
          expect(d.code).to.equal(code);
          await new Promise((r) => rogue.on('exit', r));
          const reply = JSON.parse(out.trim().split('\n').pop()!).reply;
          expect(reply?.code, err).to.equal(ErrorCode[code]);
          // The client process is alive and answers.
          expect((await client.call('stats')).frames).to.equal(0);
        } finally {
          rogue.kill();
          await client.stop();
          tmp.cleanup();
        }
      });
    }
  });
});
