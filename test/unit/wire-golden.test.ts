/**
 * The wire protocol, byte for byte: what the reference client and server actually put on the
 * socket, compared with bytes recorded from the implementation before the seams redesign
 * (test/unit/wire-golden.json). Only values that differ per run (pids, boot and machine ids,
 * timestamps, surface ids, the socket's temp path) are masked, and each mask is named.
 *
 * The peers here are raw sockets (node:net reads bytes; any fds attached are dropped by the
 * kernel), so this checks bytes, not sharing: the sharing suites use separate processes.
 * Regenerate only for a deliberate protocol change: SURFACELINK_UPDATE_GOLDEN=1.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { SurfaceClient, SurfaceServer } from '../../src/index.js';
import { hostIdentity } from '../../src/host.js';
import { MessageReader as Reader, tempDir } from '../helpers.js';

const GOLDEN = path.join(__dirname, 'wire-golden.json');
const update = process.env.SURFACELINK_UPDATE_GOLDEN === '1';
const golden: Record<string, string> = fs.existsSync(GOLDEN) ? JSON.parse(fs.readFileSync(GOLDEN, 'utf8')) : {};
const recorded: Record<string, string> = {};

/** Replaces per-run values in a message's text form with named placeholders. */
function normalize(
  message: Buffer,
  masks: { at: number; length: number; name: string }[] = [],
  replace: [string, string][] = [],
): string {
  const bytes = Buffer.from(message);
  let hex = '';
  for (let i = 0; i < bytes.length; i++) {
    const mask = masks.find((m) => i >= m.at && i < m.at + m.length);
    if (mask) {
      if (i === mask.at) hex += `<${mask.name}>`;
      continue;
    }
    hex += bytes[i].toString(16).padStart(2, '0');
  }
  // JSON bodies: also give the text, with per-run values replaced.
  let text = '';
  const open = bytes.indexOf(0x7b);
  if (open >= 0 && bytes[bytes.length - 1] === 0x7d) {
    text = bytes.subarray(open).toString('utf8');
    for (const [from, to] of replace) text = text.split(from).join(to);
    // The length field counts the JSON text, whose per-run values differ in length.
    hex = `<length>${hex.slice(8, 2 * open)} {json}`;
  }
  return text ? `${hex} ${text}` : hex;
}

function check(name: string, value: string): void {
  recorded[name] = value;
  if (update) return;
  expect(golden[name], `no golden bytes recorded for ${name}`).to.be.a('string');
  expect(value, name).to.equal(golden[name]);
}

function hostReplacements(pid: number): [string, string][] {
  const host = hostIdentity();
  const r: [string, string][] = [[`"pid":${pid}`, '"pid":<pid>']];
  if (host.bootId) r.push([host.bootId, '<bootId>']);
  if (host.machineId) r.push([host.machineId, '<machineId>']);
  return r;
}

describe('wire protocol golden bytes (unit: raw sockets, no sharing claimed)', () => {
  after(() => {
    if (update) fs.writeFileSync(GOLDEN, `${JSON.stringify({ ...golden, ...recorded }, null, 1)}\n`);
  });

  it("the reference client's HELLO, for each kind of offer", async () => {
    const tmp = tempDir();
    try {
      const socketPath = path.join(tmp.dir, 'raw.sock');
      const hellos: Buffer[] = [];
      const server = net.createServer((s) => {
        const r = new Reader(s);
        r.next().then(
          (m) => {
            hellos.push(m);
            s.destroy();
          },
          () => s.destroy(),
        );
      });
      await new Promise<void>((resolve) => server.listen(socketPath, resolve));
      const cases: [string, string[]][] = [
        ['HELLO shm', ['shm.v1']],
        ['HELLO dmabuf+shm', ['dmabuf.v1', 'shm.v1']],
        ['HELLO stream+shm', ['stream.v1', 'shm.v1']],
      ];
      for (const [name, mechanisms] of cases) {
        const before = hellos.length;
        await SurfaceClient.connect({ path: socketPath, name: 'golden', mechanisms, timeoutMs: 2000 }).catch(
          () => undefined,
        );
        expect(hellos.length).to.equal(before + 1);
        check(name, normalize(hellos[before], [], hostReplacements(process.pid)));
      }
      server.close();
    } finally {
      tmp.cleanup();
    }
  });

  it("the reference server's WELCOME, SCANOUT, FRAME, RETIRE, SURFACE_GONE and ERROR", async () => {
    const tmp = tempDir();
    const socketPath = path.join(tmp.dir, 'server.sock');
    const server = await SurfaceServer.listen({ path: socketPath, name: 'golden-server', logger: () => {} });
    try {
      const sock = net.createConnection(socketPath);
      await new Promise<void>((r) => sock.once('connect', () => r()));
      const r = new Reader(sock);
      const hello = JSON.stringify({
        name: 'raw',
        pid: 1,
        platform: 'linux',
        host: { bootId: null, machineId: null },
        mechanisms: [{ name: 'shm.v1' }],
      });
      const body = Buffer.concat([Buffer.from([0x53, 0x4c, 0x4e, 0x4b, 1, 0, 1, 0]), Buffer.from(hello)]);
      const header = Buffer.alloc(8);
      header.writeUInt32LE(8 + body.length, 0);
      header.writeUInt16LE(0x01, 4);
      sock.write(Buffer.concat([header, body]));
      check('WELCOME', normalize(await r.next(), [], hostReplacements(process.pid)));

      const surface = server.createSurface({ width: 64, height: 32, format: 'XRGB8888', buffers: 2 });
      const sid = { at: 8, length: 4, name: 'surfaceId' };
      const b = surface.acquire();
      b.pixels().fill(7);
      surface.present(b, { damage: [{ x: 1, y: 2, width: 3, height: 4 }] });
      check('SCANOUT 64x32 XRGB8888', normalize(await r.next(), [sid]));
      // The first FRAME a client gets carries full damage (count 0), whatever the producer said.
      check('FRAME first', normalize(await r.next(), [sid, { at: 24, length: 8, name: 'presentTimeNs' }]));

      const release = Buffer.alloc(24);
      release.writeUInt32LE(24, 0);
      release.writeUInt16LE(0x12, 4);
      release.writeUInt32LE(surface.id, 8);
      release.writeUInt32LE(b.id, 12);
      release.writeUInt32LE(1, 16);
      sock.write(release);
      const b2 = surface.acquire();
      surface.present(b2, { damage: [{ x: 1, y: 2, width: 3, height: 4 }] });
      check('SCANOUT second buffer', normalize(await r.next(), [sid]));
      check('FRAME with damage', normalize(await r.next(), [sid, { at: 24, length: 8, name: 'presentTimeNs' }]));

      surface.resize(32, 16);
      check('RETIRE first buffer', normalize(await r.next(), [sid]));
      check('RETIRE second buffer', normalize(await r.next(), [sid]));
      surface.close();
      check('SURFACE_GONE', normalize(await r.next(), [sid]));

      const bogus = Buffer.alloc(8);
      bogus.writeUInt32LE(8, 0);
      bogus.writeUInt16LE(0x7777, 4);
      sock.write(bogus);
      check('ERROR fatal (unknown type)', normalize(await r.next()));
      sock.destroy();
    } finally {
      server.close();
      tmp.cleanup();
    }
  });
});
