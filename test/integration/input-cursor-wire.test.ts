/**
 * input.v1 and cursor.v1 on the wire, byte for byte, with raw socket peers (node:net: bytes only,
 * any fds the kernel drops): a HELLO naming them gets them in WELCOME, in the client's order, and
 * the server's INPUT_MODE, CURSOR_SHAPE and CURSOR_MOVE are exactly as docs/protocol.md
 * §3.17–§3.19 say; a session that names no features gets none of them (its bytes are those of
 * test/unit/wire-golden.test.ts).
 */
import { expect } from 'chai';
import * as net from 'node:net';
import * as path from 'node:path';
import { SurfaceClient, SurfaceServer, type CursorState, type Frame, type SharedSurface } from '../../src/index.js';
import { PatternProducer } from '../../src/demo/producer.js';
import { boxX, boxY, patternLayout } from '../../src/demo/pattern.js';
import { MessageReader, helloBytes, sleep, tempDir } from '../helpers.js';

const base = {
  name: 'raw',
  pid: 1,
  platform: 'linux',
  host: { bootId: null, machineId: null },
  mechanisms: [{ name: 'shm.v1' }],
};

const u32 = (v: number): string =>
  Buffer.from(new Uint32Array([v]).buffer)
    .toString('hex')
    .match(/../g)!
    .join(' ');
const hex = (m: Buffer): string => m.toString('hex').match(/../g)!.join(' ');
const json = (m: Buffer): Record<string, unknown> => JSON.parse(m.subarray(m.indexOf(0x7b)).toString('utf8'));

describe('input.v1 and cursor.v1 bytes (raw socket peer)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let server: SurfaceServer;
  const socks: net.Socket[] = [];

  beforeEach(async () => {
    tmp = tempDir();
    server = await SurfaceServer.listen({ path: path.join(tmp.dir, 's.sock'), logger: () => {} });
  });
  afterEach(() => {
    for (const s of socks.splice(0)) s.destroy();
    server.close();
    tmp.cleanup();
  });

  async function peer(features?: string[]): Promise<{ reader: MessageReader; welcome: Buffer }> {
    const sock = net.createConnection(server.path);
    socks.push(sock);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const reader = new MessageReader(sock);
    sock.write(helloBytes(features ? { ...base, features } : base));
    return { reader, welcome: await reader.next() };
  }

  function presentOne(surface: SharedSurface): void {
    surface.present(surface.acquire());
  }

  it('WELCOME grants frames.v1, input.v1 and cursor.v1 in the order asked; the messages are exact', async () => {
    const surface = server.createSurface({ width: 64, height: 32 });
    const sid = u32(surface.id);
    const { reader, welcome } = await peer(['frames.v1', 'input.v1', 'cursor.v1']);
    expect(welcome.readUInt16LE(4)).to.equal(0x02);
    expect(json(welcome).features).to.deep.equal(['frames.v1', 'input.v1', 'cursor.v1']);
    expect(server.clients[0].features).to.deep.equal(['frames.v1', 'input.v1', 'cursor.v1']);

    // The first present: INPUT_MODE (absolute) before the surface's SCANOUT and FRAME.
    presentOne(surface);
    expect(hex(await reader.next())).to.equal(`10 00 00 00 36 00 00 00 ${sid} 00 00 00 00`);
    expect((await reader.next()).readUInt16LE(4)).to.equal(0x10);
    expect((await reader.next()).readUInt16LE(4)).to.equal(0x11);
    surface.setInputMode('relative');
    expect(hex(await reader.next())).to.equal(`10 00 00 00 36 00 00 00 ${sid} 01 00 00 00`);

    // A 12×19 image with its hotspot at 1, 2: one handle (the memfd, dropped by node:net), serial 1.
    surface.setCursor({ width: 12, height: 19, hotspotX: 1, hotspotY: 2, pixels: new Uint8Array(12 * 19 * 4) });
    expect(hex(await reader.next())).to.equal(
      `20 00 00 00 40 00 01 00 ${sid} 01 00 00 00 0c 00 00 00 13 00 00 00 01 00 00 00 02 00 00 00`,
    );
    // Moves in one event-loop turn: only the newest goes out.
    surface.moveCursor(5, 6);
    surface.moveCursor(-3, 31, true);
    expect(hex(await reader.next())).to.equal(`18 00 00 00 41 00 00 00 ${sid} fd ff ff ff 1f 00 00 00 01 00 00 00`);
    surface.moveCursor(-3, 31, false);
    expect(hex(await reader.next())).to.equal(`18 00 00 00 41 00 00 00 ${sid} fd ff ff ff 1f 00 00 00 00 00 00 00`);
    // No image: width and height 0, no handle, the serial bumped.
    surface.setCursor(null);
    expect(hex(await reader.next())).to.equal(
      `20 00 00 00 40 00 00 00 ${sid} 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`,
    );
  });

  it('a session that starts later gets the mode, the shape and the position at once', async () => {
    const surface = server.createSurface({ width: 16, height: 16 });
    presentOne(surface);
    surface.setCursor({ width: 1, height: 1, hotspotX: 0, hotspotY: 0, pixels: new Uint8Array(4) });
    surface.moveCursor(7, 8);
    const { reader } = await peer(['cursor.v1', 'input.v1']);
    const sid = u32(surface.id);
    // Features start in the client's order: cursor.v1 first.
    expect(hex(await reader.next())).to.equal(
      `20 00 00 00 40 00 01 00 ${sid} 01 00 00 00 01 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00`,
    );
    expect(hex(await reader.next())).to.equal(`18 00 00 00 41 00 00 00 ${sid} 07 00 00 00 08 00 00 00 01 00 00 00`);
    expect(hex(await reader.next())).to.equal(`10 00 00 00 36 00 00 00 ${sid} 00 00 00 00`);
    // No frames.v1: nothing else.
    await sleep(50);
    await reader.next(100).then(
      (m) => expect.fail(`unexpected message type 0x${m.readUInt16LE(4).toString(16)}`),
      () => undefined,
    );
  });

  it('a session without features gets none of it: only frames.v1 bytes', async () => {
    const { reader, welcome } = await peer();
    expect(json(welcome)).to.not.have.property('features');
    const surface = server.createSurface({ width: 16, height: 16 });
    surface.setCursor({ width: 1, height: 1, hotspotX: 0, hotspotY: 0, pixels: new Uint8Array(4) });
    surface.moveCursor(1, 1);
    surface.setInputMode('relative');
    presentOne(surface);
    const types: number[] = [];
    for (;;) {
      try {
        types.push((await reader.next(200)).readUInt16LE(4));
      } catch {
        break;
      }
    }
    expect(types).to.deep.equal([0x10, 0x11]); // SCANOUT, FRAME
  });

  it('frame taps hear cursor and input-mode changes, with a replay when added', () => {
    const a = server.createSurface({ width: 16, height: 16 });
    const b = server.createSurface({ width: 8, height: 8 });
    a.setInputMode('relative');
    a.setCursor({ width: 1, height: 1, hotspotX: 0, hotspotY: 0, pixels: new Uint8Array([1, 2, 3, 4]) });
    a.moveCursor(3, 3);
    const heard: string[] = [];
    const remove = server.addTap({
      frame: () => {},
      cursor: (surface, state, shapeChanged) =>
        heard.push(`cursor ${surface.id} ${state.x},${state.y} ${state.visible} #${state.serial} ${shapeChanged}`),
      inputMode: (surface, mode) => heard.push(`mode ${surface.id} ${mode}`),
    });
    expect(heard).to.deep.equal([`mode ${a.id} relative`, `cursor ${a.id} 3,3 true #1 true`, `mode ${b.id} absolute`]);
    heard.length = 0;
    a.moveCursor(4, 4); // taps are told at every call, not coalesced
    a.moveCursor(5, 5, false);
    a.moveCursor(5, 5, false); // no change: nothing
    b.setInputMode('relative');
    a.setCursor(null);
    expect(heard).to.deep.equal([
      `cursor ${a.id} 4,4 true #1 false`,
      `cursor ${a.id} 5,5 false #1 false`,
      `mode ${b.id} relative`,
      `cursor ${a.id} 5,5 false #2 true`,
    ]);
    expect(a.cursor.image).to.equal(null);
    remove();
    a.moveCursor(1, 1);
    expect(heard).to.have.length(4);
  });

  it('the demo producer answers input: the box follows the pointer, the arrow moves (not in frames)', async () => {
    server.close(); // this test runs the demo's own server
    const producer = await PatternProducer.start({
      path: path.join(tmp.dir, 'demo.sock'),
      width: 160,
      height: 120,
      fps: 60,
    });
    const client = await SurfaceClient.connect({ path: producer.path, input: true, cursor: true });
    try {
      const layout = patternLayout(160, 120);
      const cursors: CursorState[] = [];
      client.on('cursor', ({ state }) => cursors.push(state));
      let latest: { sequence: number; px: Uint8Array; stride: number } | null = null;
      client.on('frame', (f: Frame) => {
        latest = { sequence: f.sequence, px: Uint8Array.from(f.pixels()), stride: f.stride };
        f.release();
      });
      const sid = producer.surface.id;
      // The arrow is there from the start, hidden until the pointer moves.
      await waitFor(() => cursors.length > 0);
      expect(cursors[0].image).to.include({ width: 12, height: 19, hotspotX: 0, hotspotY: 0 });
      expect(cursors.at(-1)!.visible).to.equal(false);
      client.sendPointer(sid, { x: 100, y: 70 });
      await waitFor(() => cursors.some((c) => c.x === 100 && c.y === 70 && c.visible));
      const after = producer.surface.sequence + 2;
      await waitFor(() => latest !== null && latest.sequence >= after);
      const { px, stride, sequence } = latest!;
      // The box's centre is where the pointer is, not where the bouncing pattern would have it.
      const half = layout.box >> 1;
      const at = (x: number, y: number) => [...px.subarray(y * stride + x * 4, y * stride + x * 4 + 3)];
      expect(at(100, 70)).to.not.deep.equal(at(5, 115)); // box colour, not the background
      const bx = 100 - half;
      const by = 70 - half;
      expect([bx, by]).to.not.deep.equal([boxX(layout, sequence), boxY(layout, sequence)]);
      expect(at(bx, by)).to.deep.equal([0xff, 0xff, 0xff]); // the box's white edge at its corner
      // Under the arrow (tip at 100, 70: black outline below it, white fill at 101, 72) the frame shows the box's
      // own fill (B 0x20, R 0xff; G drifts with the frame): the cursor is never drawn into the pixels.
      for (const [x, y] of [
        [100, 70],
        [100, 71],
        [101, 72],
        [102, 74],
      ]) {
        const [b, , r] = at(x, y);
        expect([b, r], `pixel ${x},${y}`).to.deep.equal([0x20, 0xff]);
      }
      // A click changes the box colour.
      client.sendButton(sid, 0x110, true);
      client.sendButton(sid, 0x110, false);
      const clicked = producer.surface.sequence + 2;
      await waitFor(() => latest !== null && latest.sequence >= clicked);
      const now = latest!;
      const centre = 70 * now.stride + 100 * 4;
      expect([...now.px.subarray(centre, centre + 3)]).to.deep.equal([0xff, 0x80, 0x20]); // palette colour 1
    } finally {
      client.close();
      producer.stop();
    }
  });
});

async function waitFor(probe: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(10);
  }
}
