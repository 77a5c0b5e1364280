/**
 * input.v1 and cursor.v1 between processes (test/fixtures/server.ts and client.ts; raw socket
 * peers in this process where a test needs bytes a well-behaved client never sends):
 * every input kind arrives validated; bad input gets its exact code, fatal or not; the input
 * policy; input modes; cursor shapes as memfds once per change, coalesced moves, and a cursor
 * that never reaches the frames' pixels. docs/protocol.md §3.11–§3.19.
 */
import { expect } from 'chai';
import * as net from 'node:net';
import { PeerGroup, MessageReader, eventually, helloBytes, sleep, type Peer } from '../helpers.js';

const base = {
  name: 'raw',
  pid: 1,
  platform: 'linux',
  host: { bootId: null, machineId: null },
  mechanisms: [{ name: 'shm.v1' }],
};

/** A message of `type` whose body is these u32/i32 fields. */
function message(type: number, fields: number[], flags = 0): Buffer {
  const m = Buffer.alloc(8 + 4 * fields.length);
  m.writeUInt32LE(m.length, 0);
  m.writeUInt16LE(type, 4);
  m.writeUInt8(flags, 7);
  fields.forEach((v, i) => m.writeInt32LE(v | 0, 8 + 4 * i));
  return m;
}

/** How long a raw peer waits for a message: generous, for a loaded machine (the fixture server is another process). */
const LOADED_MS = 20000;

const T = { KEY: 0x30, POINTER: 0x31, MOTION: 0x32, BUTTON: 0x33, SCROLL: 0x34, TOUCH: 0x35, INPUT_MODE: 0x36 };
const CODE = { E_MALFORMED: 2, E_OUT_OF_BOUNDS: 10, E_PERMISSION: 14, E_UNEXPECTED: 15, E_UNKNOWN_BUFFER: 16 };

/** A raw peer that said HELLO (with `features`, if given) and read its WELCOME. */
async function rawPeer(socketPath: string, features?: string[]): Promise<{ sock: net.Socket; reader: MessageReader }> {
  const sock = net.createConnection(socketPath);
  await new Promise<void>((r) => sock.once('connect', () => r()));
  const reader = new MessageReader(sock);
  sock.write(helloBytes(features ? { ...base, features } : base));
  const welcome = await reader.next(LOADED_MS);
  expect(welcome.readUInt16LE(4)).to.equal(0x02);
  return { sock, reader };
}

/** The next message of `type` (others are skipped). */
async function nextOf(reader: MessageReader, type: number): Promise<Buffer> {
  for (;;) {
    const m = await reader.next(LOADED_MS);
    if (m.readUInt16LE(4) === type) return m;
  }
}

/** Messages already received, without waiting. */
async function drain(reader: MessageReader): Promise<Buffer[]> {
  const out: Buffer[] = [];
  for (;;) {
    try {
      out.push(await reader.next(50));
    } catch {
      return out;
    }
  }
}

const closed = (sock: net.Socket): Promise<void> =>
  sock.destroyed ? Promise.resolve() : new Promise((r) => sock.once('close', () => r()));

describe('input.v1 between processes', function () {
  this.timeout(120000);
  let group: PeerGroup;
  let server: Peer;
  let surfaceId: number;

  beforeEach(async () => {
    group = new PeerGroup();
    server = await group.server();
    surfaceId = (await server.call('surface', { width: 64, height: 32 })).id;
    await server.call('present', { fill: 0x10 });
  });
  afterEach(() => group.cleanup());

  const inputs = (): any[] => server.events.filter((e) => e.event === 'input').map((e) => e.input);

  it('every kind of input arrives validated, with the client id and source', async () => {
    const client = await group.client({ input: true });
    const { features, clientId } = await client.call('features');
    expect(features).to.deep.equal(['frames.v1', 'input.v1']);
    // The surface was presented before the session started: its mode comes at once.
    await client.waitEvent('inputMode', (e) => e.surfaceId === surfaceId && e.mode === 'absolute');
    const send = async (method: string, ...args: unknown[]) =>
      expect((await client.call('send', { method, args })).code).to.equal(null);
    await send('sendKey', surfaceId, 30, true);
    await send('sendPointer', surfaceId, { x: 63, y: 31 });
    await send('sendButton', surfaceId, 0x110, true);
    await send('sendScroll', surfaceId, { dx: -1, dy: 3 });
    await send('sendTouch', surfaceId, { phase: 'move', slot: 9, x: 5, y: 6 });
    await send('sendKey', surfaceId, 30, false);
    await eventually(() => inputs().length === 6, 15000, 'six input events');
    const common = { surfaceId, source: 'local', clientId };
    expect(inputs()).to.deep.equal([
      { kind: 'key', ...common, code: 30, pressed: true },
      { kind: 'pointer', ...common, x: 63, y: 31 },
      { kind: 'button', ...common, button: 0x110, pressed: true },
      { kind: 'scroll', ...common, dx: -1, dy: 3 },
      { kind: 'touch', ...common, phase: 'move', slot: 9, x: 5, y: 6 },
      { kind: 'key', ...common, code: 30, pressed: false },
    ]);

    // Relative mode: motion is taken, pointer positions are dropped (they may have been in flight).
    await server.call('setInputMode', { mode: 'relative' });
    await client.waitEvent('inputMode', (e) => e.mode === 'relative');
    await send('sendPointer', surfaceId, { x: 1, y: 1 });
    await send('sendPointerMotion', surfaceId, { dx: -16384, dy: 7 });
    await eventually(() => inputs().length === 7, 15000, 'the motion event');
    expect(inputs()[6]).to.deep.equal({ kind: 'motion', ...common, dx: -16384, dy: 7 });
    // ... and absolute mode again drops motion.
    await server.call('setInputMode', { mode: 'absolute' });
    await client.waitEvent('inputMode', (e) => e.mode === 'absolute' && e !== undefined, 5000);
    await send('sendPointerMotion', surfaceId, { dx: 1, dy: 1 });
    await send('sendKey', surfaceId, 31, true);
    await eventually(() => inputs().length === 8, 15000, 'the key after the dropped motion');
    expect(inputs()[7]).to.include({ kind: 'key', code: 31 });
  });

  it("the client's own checks: bad arguments are E_INVALID_ARGUMENT, no input.v1 is E_UNSUPPORTED", async () => {
    const client = await group.client({ input: true });
    for (const [method, args] of [
      ['sendKey', [surfaceId, 0x300, true]],
      ['sendKey', [surfaceId, 30, 1]],
      ['sendPointer', [surfaceId, { x: 1.5, y: 0 }]],
      ['sendPointerMotion', [surfaceId, { dx: 16385, dy: 0 }]],
      ['sendButton', [surfaceId, 0x10f, true]],
      ['sendScroll', [surfaceId, { dx: 0, dy: 1025 }]],
      ['sendTouch', [surfaceId, { phase: 'hover', slot: 0, x: 0, y: 0 }]],
      ['sendTouch', [surfaceId, { phase: 'down', slot: 16, x: 0, y: 0 }]],
      ['sendKey', [0, 30, true]],
    ] as const)
      expect((await client.call('send', { method, args })).code, `${method} ${JSON.stringify(args)}`).to.equal(
        'E_INVALID_ARGUMENT',
      );
    const plain = await group.client();
    const r = await plain.call('send', { method: 'sendKey', args: [surfaceId, 30, true] });
    expect(r.code).to.equal('E_UNSUPPORTED');
    expect(r.message).to.match(/input: true/);
    await sleep(100);
    expect(inputs()).to.have.length(0);
    expect(client.events.some((e) => e.event === 'disconnect')).to.equal(false);
  });

  it('bad input gets its exact code; non-fatal ones keep the session; a bystander survives them all', async () => {
    const bystander = await group.client({ input: true });
    const peer = await rawPeer(group.socketPath, ['frames.v1', 'input.v1']);
    // Out of bounds: a non-fatal ERROR (at most one a second), the event dropped, the session goes on.
    peer.sock.write(message(T.POINTER, [surfaceId, 64, 0]));
    peer.sock.write(message(T.TOUCH, [surfaceId, 0, 0, 0, 32]));
    peer.sock.write(message(T.POINTER, [surfaceId, 0, 99]));
    const warning = await nextOf(peer.reader, 0x03);
    expect(warning.readUInt32LE(8)).to.equal(CODE.E_OUT_OF_BOUNDS);
    expect(warning.readUInt32LE(12)).to.equal(0); // not fatal
    expect(warning.subarray(16).toString()).to.match(/POINTER at 64,0 is outside surface \d+'s 64x32 picture/);
    peer.sock.write(message(T.KEY, [surfaceId, 42, 1]));
    await eventually(() => inputs().length === 1, 15000, 'the key after the warning');
    expect(inputs()[0]).to.include({ kind: 'key', code: 42, pressed: true });
    expect((await drain(peer.reader)).filter((m) => m.readUInt16LE(4) === 0x03)).to.have.length(0);

    // Fatal: each in a session of its own.
    const fatal: [string, Buffer, number, RegExp][] = [
      ['KEY code above KEY_MAX', message(T.KEY, [surfaceId, 0x300, 1]), CODE.E_MALFORMED, /outside 1\.\.0x2ff/],
      ['KEY code 0', message(T.KEY, [surfaceId, 0, 1]), CODE.E_MALFORMED, /evdev code 0/],
      ['KEY pressed 2', message(T.KEY, [surfaceId, 30, 2]), CODE.E_MALFORMED, /pressed must be 0 or 1/],
      ['KEY too long', message(T.KEY, [surfaceId, 30, 1, 0]), CODE.E_MALFORMED, /body is 16 bytes, expected 12/],
      ['KEY header flags', message(T.KEY, [surfaceId, 30, 1], 1), CODE.E_MALFORMED, /flags must be 0/],
      ['BUTTON not a mouse button', message(T.BUTTON, [surfaceId, 0x118, 1]), CODE.E_MALFORMED, /0x110\.\.0x117/],
      ['MOTION too far', message(T.MOTION, [surfaceId, 0, -16385]), CODE.E_MALFORMED, /outside ±16384/],
      ['SCROLL too far', message(T.SCROLL, [surfaceId, 1025, 0]), CODE.E_MALFORMED, /outside ±1024/],
      ['TOUCH phase 4', message(T.TOUCH, [surfaceId, 4, 0, 0, 0]), CODE.E_MALFORMED, /phase 4/],
      ['TOUCH slot 16', message(T.TOUCH, [surfaceId, 0, 16, 0, 0]), CODE.E_MALFORMED, /slot 16/],
      ['POINTER short', message(T.POINTER, [surfaceId, 0]), CODE.E_MALFORMED, /expected 12/],
      ['unknown surface', message(T.KEY, [surfaceId + 99, 30, 1]), CODE.E_UNKNOWN_BUFFER, /does not exist/],
      ['surface 0', message(T.POINTER, [0, 0, 0]), CODE.E_UNKNOWN_BUFFER, /surface 0/],
      ['INPUT_MODE from a client', message(T.INPUT_MODE, [surfaceId, 0]), CODE.E_UNEXPECTED, /sent by servers/],
    ];
    for (const [what, bytes, code, text] of fatal) {
      // input.v1 alone: no SCANOUT with a memfd comes, which a Node socket (read(), not recvmsg) may lose
      // the messages after when the server closes; the fatal ERROR must reach this peer.
      const p = await rawPeer(group.socketPath, ['input.v1']);
      p.sock.write(bytes);
      const error = await nextOf(p.reader, 0x03);
      expect(error.readUInt32LE(8), what).to.equal(code);
      expect(error.readUInt32LE(12), what).to.equal(1); // fatal
      expect(error.subarray(16).toString(), what).to.match(text);
      await closed(p.sock);
      p.sock.destroy();
    }
    // The bystander saw none of it, still sends input and still gets frames.
    expect(bystander.events.filter((e) => e.event === 'disconnect' || e.event === 'warning')).to.deep.equal([]);
    expect((await bystander.call('send', { method: 'sendKey', args: [surfaceId, 57, true] })).code).to.equal(null);
    await eventually(() => inputs().some((e) => e.code === 57), 15000, 'the bystander key');
    const { sequence } = await server.call('present', { fill: 0x20 });
    await bystander.waitEvent('frame', (f) => f.sequence === sequence);
    expect(inputs()).to.have.length(2); // nothing of the bad ones reached the producer
    peer.sock.destroy();
  });

  it('a session without input.v1 that sends input gets E_UNEXPECTED (named or implied features)', async () => {
    for (const features of [['frames.v1'], undefined]) {
      const p = await rawPeer(group.socketPath, features);
      // The surface's SCANOUT (with a memfd) and FRAME come first: take them before the server's fatal ERROR
      // and close, which a Node socket (read(), not recvmsg) may otherwise lose behind the fd.
      await nextOf(p.reader, 0x11);
      p.sock.write(message(T.KEY, [surfaceId, 30, 1]));
      const error = await nextOf(p.reader, 0x03);
      expect(error.readUInt32LE(8)).to.equal(CODE.E_UNEXPECTED);
      expect(error.subarray(16).toString()).to.equal(
        'message type 0x30 belongs to input.v1, which this session did not negotiate',
      );
      p.sock.destroy();
    }
    expect(inputs()).to.have.length(0);
  });
});

describe('input.v1 policy and modes between processes', function () {
  this.timeout(120000);
  let group: PeerGroup;
  afterEach(() => group.cleanup());

  it("policy 'none': one non-fatal E_PERMISSION, no events, the session goes on", async () => {
    group = new PeerGroup();
    const server = await group.server({ input: 'none' });
    const { id } = await server.call('surface', { width: 32, height: 32 });
    await server.call('present', { fill: 1 });
    const client = await group.client({ input: true });
    for (let i = 0; i < 20; i++)
      await client.call('send', {
        method: i % 2 ? 'sendKey' : 'sendPointer',
        args: i % 2 ? [id, 30, true] : [id, { x: 1, y: 1 }],
      });
    await client.waitEvent('warning', (w) => w.code === 'E_PERMISSION');
    await sleep(200);
    expect(client.events.filter((e) => e.event === 'warning')).to.have.length(1);
    expect(server.events.filter((e) => e.event === 'input')).to.have.length(0);
    const logs: string[] = (await server.call('stats')).logs;
    expect(logs.filter((l) => /may not send input/.test(l))).to.have.length(1);
    // Still a session: frames keep coming.
    const { sequence } = await server.call('present', { fill: 2 });
    await client.waitEvent('frame', (f) => f.sequence === sequence);
    expect(client.events.some((e) => e.event === 'disconnect')).to.equal(false);
  });

  it('a policy function decides per client', async () => {
    group = new PeerGroup();
    const server = await group.server({ inputAllowNames: ['trusted'] });
    const { id } = await server.call('surface', { width: 32, height: 32 });
    await server.call('present', { fill: 1 });
    const trusted = await group.client({ input: true, name: 'trusted' });
    const other = await group.client({ input: true, name: 'other' });
    await other.call('send', { method: 'sendKey', args: [id, 2, true] });
    await trusted.call('send', { method: 'sendKey', args: [id, 3, true] });
    await other.waitEvent('warning', (w) => w.code === 'E_PERMISSION');
    await server.waitEvent('input', (e) => e.input.code === 3);
    await sleep(100);
    expect(server.events.filter((e) => e.event === 'input').map((e) => (e as any).input.code)).to.deep.equal([3]);
    expect(trusted.events.some((e) => e.event === 'warning')).to.equal(false);
  });

  it('INPUT_MODE: at a surface first present, on each change, never twice for the same mode', async () => {
    group = new PeerGroup();
    const server = await group.server();
    const { id } = await server.call('surface', { width: 32, height: 32 });
    const client = await group.client({ input: true });
    await sleep(100);
    expect(client.events.filter((e) => e.event === 'inputMode')).to.have.length(0); // not presented yet
    await server.call('setInputMode', { mode: 'relative' }); // before the first present: said with it
    await server.call('present', { fill: 1 });
    await client.waitEvent('inputMode', (e) => e.surfaceId === id && e.mode === 'relative');
    await server.call('setInputMode', { mode: 'relative' });
    await server.call('setInputMode', { mode: 'absolute' });
    await client.waitEvent('inputMode', (e) => e.mode === 'absolute');
    await sleep(100);
    expect(client.events.filter((e) => e.event === 'inputMode').map((e) => e.mode)).to.deep.equal([
      'relative',
      'absolute',
    ]);
    // A client without input.v1 hears nothing of modes.
    const plain = await group.client();
    await server.call('setInputMode', { mode: 'relative' });
    await client.waitEvent('inputMode', (e) => e.mode === 'relative' && client.events.indexOf(e) > 2);
    expect(plain.events.some((e) => e.event === 'inputMode')).to.equal(false);
  });

  it('dispatchInput (remote viewers) validates like the socket and emits source "remote"', async () => {
    group = new PeerGroup();
    const server = await group.server();
    const { id } = await server.call('surface', { width: 32, height: 16 });
    await server.call('present', { fill: 1 });
    const remote = { surfaceId: id, source: 'remote', clientId: 7 };
    const dispatch = async (event: Record<string, unknown>) => (await server.call('dispatchInput', { event })).code;
    expect(await dispatch({ kind: 'key', ...remote, code: 30, pressed: true })).to.equal(null);
    expect(await dispatch({ kind: 'pointer', ...remote, x: 31, y: 15 })).to.equal(null);
    expect(await dispatch({ kind: 'pointer', ...remote, x: 32, y: 0 })).to.equal('E_OUT_OF_BOUNDS');
    expect(await dispatch({ kind: 'touch', ...remote, phase: 'down', slot: 0, x: 0, y: 16 })).to.equal(
      'E_OUT_OF_BOUNDS',
    );
    expect(await dispatch({ kind: 'pointer', ...remote, x: -1, y: 0 })).to.equal('E_OUT_OF_BOUNDS');
    expect(await dispatch({ kind: 'pointer', ...remote, x: 0.5, y: 0 })).to.equal('E_MALFORMED');
    expect(await dispatch({ kind: 'touch', ...remote, phase: 'hover', slot: 0, x: 0, y: 0 })).to.equal('E_MALFORMED');
    expect(await dispatch({ kind: 'key', ...remote, code: 0x300, pressed: true })).to.equal('E_MALFORMED');
    expect(await dispatch({ kind: 'button', ...remote, button: 0x110, pressed: 1 })).to.equal('E_MALFORMED');
    expect(await dispatch({ kind: 'wiggle', ...remote })).to.equal('E_MALFORMED');
    expect(await dispatch({ kind: 'key', ...remote, surfaceId: id + 5, code: 30, pressed: true })).to.equal(
      'E_UNKNOWN_BUFFER',
    );
    expect(await dispatch({ kind: 'motion', ...remote, dx: 1, dy: 1 })).to.equal(null); // absolute: dropped
    const got = server.events.filter((e) => e.event === 'input').map((e) => e.input);
    expect(got).to.deep.equal([
      { kind: 'key', ...remote, code: 30, pressed: true },
      { kind: 'pointer', ...remote, x: 31, y: 15 },
    ]);
  });
});

describe('cursor.v1 between processes', function () {
  this.timeout(120000);
  let group: PeerGroup;
  let server: Peer;
  let surfaceId: number;

  beforeEach(async () => {
    group = new PeerGroup();
    server = await group.server();
    surfaceId = (await server.call('surface', { width: 64, height: 32 })).id;
  });
  afterEach(() => group.cleanup());

  const cursorEvents = (peer: Peer, shape: boolean): any[] =>
    peer.events.filter((e) => e.event === 'cursor' && e.shapeChanged === shape);

  it('the shape arrives as a memfd once per change, moves as they happen, and never in the pixels', async () => {
    // Red, opaque: bytes B, G, R, A.
    await server.call('setCursor', { width: 8, height: 8, hotspotX: 1, hotspotY: 2, fill: [0, 0, 255, 255] });
    await server.call('moveCursor', { x: 3, y: 4 });
    await server.call('present', { fill: 0x42 });
    const client = await group.client({ cursor: true, releaseMode: 'auto' });
    // At session start: the shape, then the position.
    const shape = await client.waitEvent('cursor', (e) => e.shapeChanged);
    expect(shape).to.deep.include({ surfaceId, serial: 1 });
    expect(shape.image).to.deep.equal({
      width: 8,
      height: 8,
      hotspotX: 1,
      hotspotY: 2,
      bytes: 256,
      uniform: -1,
      first: [0, 0, 255, 255],
    });
    await client.waitEvent('cursor', (e) => !e.shapeChanged && e.x === 3 && e.y === 4 && e.visible);
    // The frame shows the producer's pixels only: every byte is the fill, no red anywhere.
    const frame = await client.waitEvent('frame');
    expect(frame.planes).to.deep.equal([0x42]);

    // Moves: each one (separate turns), no shape with them.
    for (const [x, y] of [
      [10, 11],
      [12, 13],
    ])
      await server.call('moveCursor', { x, y });
    await server.call('moveCursor', { x: 12, y: 13, visible: false });
    await client.waitEvent('cursor', (e) => !e.shapeChanged && e.x === 12 && e.y === 13 && !e.visible);
    expect(cursorEvents(client, true)).to.have.length(1);
    expect(cursorEvents(client, false).map((e) => [e.x, e.y, e.visible])).to.deep.equal([
      [3, 4, true],
      [10, 11, true],
      [12, 13, true],
      [12, 13, false],
    ]);
    // A presented frame under the cursor's place: still only the producer's pixels.
    const { sequence } = await server.call('present', { fill: 0x43 });
    const f2 = await client.waitEvent('frame', (f) => f.sequence === sequence);
    expect(f2.planes).to.deep.equal([0x43]);

    // A new shape: exactly one more CURSOR_SHAPE; the position is kept.
    await server.call('setCursor', { width: 2, height: 3, fill: [1, 2, 3, 4] });
    const s2 = await client.waitEvent('cursor', (e) => e.shapeChanged && e.serial === 2);
    expect(s2).to.deep.include({ x: 12, y: 13, visible: false });
    expect(s2.image).to.include({ width: 2, height: 3, bytes: 24 });
    expect(s2.image.first).to.deep.equal([1, 2, 3, 4]);
    await server.call('setCursor', { none: true });
    const s3 = await client.waitEvent('cursor', (e) => e.shapeChanged && e.serial === 3);
    expect(s3.image).to.equal(null);
    await sleep(100);
    const stats = await client.call('stats');
    expect(stats.cursorShapes).to.equal(3);
    // The client copied the pixels out and closed every cursor memfd.
    expect(stats.fdTargets.filter((t: string) => t.includes('surfacelink-cursor'))).to.deep.equal([]);
    // A client without cursor.v1 hears nothing of the cursor.
    const plain = await group.client();
    await server.call('moveCursor', { x: 1, y: 1 });
    await client.waitEvent('cursor', (e) => e.x === 1 && e.y === 1);
    expect(plain.events.some((e) => e.event === 'cursor')).to.equal(false);
  });

  it('the producer is refused an image larger than MAX_CURSOR_SIDE (E_BAD_GEOMETRY)', async () => {
    const error = await server.call('setCursor', { width: 257, height: 1, fill: [0, 0, 0, 0] }).catch((e) => e);
    expect(error.code).to.equal('E_BAD_GEOMETRY');
    const hotspot = await server
      .call('setCursor', { width: 4, height: 4, hotspotX: 4, fill: [0, 0, 0, 0] })
      .catch((e) => e);
    expect(hotspot.code).to.equal('E_BAD_GEOMETRY');
  });

  it('moves coalesce: a held-up client skips stale positions and gets the newest', async () => {
    await server.call('setCursor', { width: 4, height: 4, fill: [9, 9, 9, 255] });
    await server.call('moveCursor', { x: 0, y: 0 });
    const client = await group.client({ cursor: true });
    await client.waitEvent('cursor', (e) => !e.shapeChanged);
    const count = 20000;
    process.kill(client.pid, 'SIGSTOP');
    try {
      // One move per event-loop turn: only the client being behind can make the server skip any.
      await server.call('moveCursorMany', { count, turns: count });
    } finally {
      process.kill(client.pid, 'SIGCONT');
    }
    await client.waitEvent('cursor', (e) => e.x === count - 1 && e.y === count - 1, 20000);
    await sleep(200);
    const { cursorMoves } = await client.call('stats');
    // Without skipping, every one of the 20000 positions would arrive (640 KB queued for this client).
    expect(cursorMoves).to.be.below(count / 4);
    const last: any = client.events.filter((e) => e.event === 'cursor').at(-1);
    expect([last.x, last.y]).to.deep.equal([count - 1, count - 1]);
  });
});
