/**
 * The misbehaving client of `npm run soak` (bench/soak.ts): connects to the server at argv[2] over
 * and over until killed, each time doing one legal-but-costly or broken thing, in turn:
 *   hold      a real SurfaceClient that never releases a frame (dropped at its release deadline)
 *   garbage   HELLO, then random bytes (E_MALFORMED or another stable code)
 *   abrupt    a real SurfaceClient closed 100 ms after it connected
 *   errors    HELLO, then non-fatal ERRORs of 1 KiB of text each, as fast as it can (E_LIMIT)
 *   stalled   HELLO, then never reads again for 3 s (the server's send queue fills)
 * It reports each round's outcome to its parent (process.send).
 */
import net from 'node:net';
import { randomBytes } from 'node:crypto';
import { SurfaceClient } from '../src/index.js';
import { MessageWriter, writeError, writeHello } from '../src/protocol/codec.js';

const path = process.argv[2];
const writer = new MessageWriter(65536);
const MODES = ['hold', 'garbage', 'abrupt', 'errors', 'stalled'] as const;

function hello(name: string): Buffer {
  const n = writeHello(writer, 1, 1, {
    name,
    pid: process.pid,
    platform: process.platform,
    host: { bootId: null, machineId: null },
    mechanisms: [{ name: 'shm.v1' }],
  });
  return Buffer.from(writer.bytes.subarray(0, n));
}

/** A raw socket that says HELLO, then runs `then`; resolves when the server closes it (or after `maxMs`). */
function raw(name: string, then: (socket: net.Socket) => void, maxMs: number): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.createConnection(path);
    const timer = setTimeout(() => socket.destroy(), maxMs);
    socket.on('connect', () => {
      socket.write(hello(name));
      then(socket);
    });
    socket.on('data', () => {});
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
  });
}

async function round(mode: (typeof MODES)[number]): Promise<string> {
  switch (mode) {
    case 'hold': {
      const client = await SurfaceClient.connect({ path, name: 'soak-hold' });
      client.on('frame', () => {}); // held: never released
      return new Promise((resolve) => client.on('disconnect', (d) => resolve(d.code)));
    }
    case 'abrupt': {
      const client = await SurfaceClient.connect({ path, name: 'soak-abrupt' });
      await new Promise((r) => setTimeout(r, 100));
      client.close();
      return 'closed by us';
    }
    case 'garbage':
      return raw('soak-garbage', (s) => s.write(randomBytes(4096)), 5000);
    case 'errors': {
      const text = 'x'.repeat(1024); // the most one ERROR carries (writeError caps it)
      return raw(
        'soak-errors',
        (s) => {
          const flood = () => {
            if (s.destroyed) return;
            const n = writeError(writer, 2, false, text);
            s.write(Buffer.from(writer.bytes.subarray(0, n)), () => setImmediate(flood));
          };
          flood();
        },
        5000,
      );
    }
    case 'stalled':
      return raw('soak-stalled', (s) => s.pause(), 3000);
  }
}

async function main(): Promise<void> {
  for (let i = 0; ; i++) {
    const mode = MODES[i % MODES.length];
    let outcome: string;
    try {
      outcome = await round(mode);
    } catch (error) {
      outcome = `failed: ${(error as { code?: string }).code ?? (error as Error).message}`;
    }
    process.send?.({ mode, outcome });
  }
}

void main();
