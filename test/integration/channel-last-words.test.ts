/**
 * A peer's last message before it hangs up is delivered, also when our own write fails first.
 *
 * The native channel (native/posix/channel.cc) handles a wakeup's writable event before its
 * readable one. When the peer has read everything we sent, written its reason (a fatal ERROR,
 * as SurfaceServer does when it drops a client for E_LIMIT) and closed, one wakeup carries all of
 * it: the write of our queued data fails with EPIPE, and the ERROR still waits in our receive
 * buffer. Failing at once with E_PEER_CLOSED lost the reason (issue 13: the flood test's flooder
 * now and then saw E_PEER_CLOSED instead of E_LIMIT).
 *
 * The peer is a separate process (python3) holding the other end of a socket pair. This process
 * blocks its own event loop while the peer drains, answers and closes, so the wakeup is exactly
 * the one above every time (no write of ours can slip in between and leave data unread, which
 * takes the POLLERR path instead).
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { ErrorCode } from '../../src/errors.js';
import { posixChannels } from '../../src/native/index.js';
import { MessageType } from '../../src/protocol/constants.js';
import { MessageWriter, readError } from '../../src/protocol/codec.js';
import { eventually } from '../helpers.js';

const PEER = String.raw`
import fcntl, os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR1])
last_words = bytes.fromhex(sys.argv[1])
print('ready', flush=True)
signal.sigwait([signal.SIGUSR1])
fcntl.fcntl(3, fcntl.F_SETFL, fcntl.fcntl(3, fcntl.F_GETFL) | os.O_NONBLOCK)
drained = 0
while True:
    try:
        chunk = os.read(3, 1 << 20)
    except BlockingIOError:
        break
    if not chunk:
        break
    drained += len(chunk)
os.write(3, last_words)
os.close(3)
print('closed', drained, flush=True)
`;

/** Blocks this thread (and so its event loop) for `ms`. */
function blockLoop(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

describe("channel: the peer's last message before it hangs up (separate processes)", function () {
  this.timeout(20000);

  it('is delivered before E_PEER_CLOSED when our queued write fails first', async () => {
    const api = posixChannels();
    const [ours, theirs] = api.socketpairFds();
    const native = api.channelFromFd(ours);
    ours.close();

    const w = new MessageWriter(4096);
    const reason = 'more than 100 non-fatal ERROR messages per second';
    const n = w.begin(MessageType.ERROR, 0).u32(ErrorCode.E_LIMIT).u32(1).utf8(reason).end();
    const lastWords = Buffer.from(w.bytes.subarray(0, n)).toString('hex');

    const fd3 = theirs.dupRaw();
    const child = spawn('python3', ['-c', PEER, lastWords], { stdio: ['ignore', 'pipe', 'inherit', fd3] });
    fs.closeSync(fd3);
    theirs.close();
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await eventually(async () => out.includes('ready'), 10000, 'the peer started');

      const events: string[] = [];
      const rx = Buffer.alloc(2 * 65536);
      const view = new DataView(rx.buffer, rx.byteOffset, rx.byteLength);
      native.start(
        rx,
        (offset, length) => {
          const type = view.getUint16(offset + 4, true);
          if (type !== MessageType.ERROR) return void events.push(`message 0x${type.toString(16)}`);
          const e = readError(view, offset, length);
          events.push(`ERROR ${e.code} ${e.fatal ? 'fatal' : 'non-fatal'}: ${e.message}`);
        },
        (code) => events.push(`channel ${code}`),
        { maxMessage: 65536, maxHandles: 4, maxQueuedBytes: 4 * 1024 * 1024 },
      );

      // Fill the socket until our own queue holds data (the peer reads nothing yet).
      const filler = new MessageWriter(65536);
      const big = filler
        .begin(MessageType.ERROR, 0)
        .u32(ErrorCode.E_IMPORT_FAILED)
        .u32(0)
        .utf8('x'.repeat(60000))
        .end();
      let queued = false;
      for (let i = 0; i < 1000 && !queued; i++) queued = native.send(filler.bytes, undefined, big) === 1;
      expect(queued, 'a send queued in our channel').to.equal(true);
      expect(native.queuedBytes).to.be.greaterThan(0);

      // The peer drains, answers and closes while this loop cannot run.
      child.kill('SIGUSR1');
      blockLoop(1500);
      await eventually(async () => events.some((e) => e.startsWith('channel ')), 10000, 'the channel ended');
      expect(out, 'the peer drained our data and closed').to.match(/closed \d+/);
      expect(events).to.deep.equal([`ERROR ${ErrorCode.E_LIMIT} fatal: ${reason}`, 'channel E_PEER_CLOSED']);
    } finally {
      native.close();
      child.kill('SIGKILL');
    }
  });
});
