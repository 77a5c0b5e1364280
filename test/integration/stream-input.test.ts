/**
 * Remote input and the remote cursor (docs/remote.md §3.1) across processes: a producer
 * (test/fixtures/stream-producer.ts) records the SurfaceServer 'input' events it gets, and sets
 * cursors and input modes on command; RemoteStreamClient and raw WebSocket peers here send input.
 *
 * Positions: the test surface is bottom-up with a visible rectangle that does not start at
 * (0, 0), and every buffer pixel encodes its buffer coordinates. The viewer reads, from the
 * frame it was sent, which buffer pixel it points at; the producer says which buffer pixel its
 * event lands on (its own picture → buffer mapping). They must agree.
 */
import { expect } from 'chai';
import WebSocket from 'ws';
import type { SurfaceLinkError } from '../../src/errors.js';
import type { CursorImage, InputEvent } from '../../src/input.js';
import { RemoteStreamClient, type RemoteFrame } from '../../src/stream/client.js';
import { SUBPROTOCOL } from '../../src/stream/protocol.js';
import { StreamServer, type StreamClientInfo } from '../../src/stream/server.js';
import { SurfaceServer } from '../../src/server.js';
import * as path from 'node:path';
import { Peer, eventually, sleep, tempDir } from '../helpers.js';

interface ProducerInfo {
  url: string;
  wsUrl: string;
  token: string;
  surfaceId: number;
}

type Recorded = InputEvent & { at?: { x: number; y: number; value: number } };

const BTN_LEFT = 0x110;
const BTN_RIGHT = 0x111;
const KEY_A = 30;
const KEY_B = 48;
const KEY_LEFTSHIFT = 42;
const VIEW_TOKEN = 'view-only-token-0123456789';

// The test surface: 96x64 buffers, bottom-up, showing the 70x50 rectangle at (10, 6).
const BUFFER = { width: 96, height: 64 };
const VISIBLE = { x: 10, y: 6, width: 70, height: 50 };

/** A surface's buffer coordinates, as the coordinate pattern encodes them in a pixel (B, G, R, X). */
function decode(pixels: Uint8Array, offset: number): { x: number; y: number; value: number } {
  const [b, g, r] = [pixels[offset], pixels[offset + 1], pixels[offset + 2]];
  return { x: b | ((r & 0xf) << 8), y: g | ((r >> 4) << 8), value: b | (g << 8) | (r << 16) };
}

function nextFrame(client: RemoteStreamClient, timeoutMs = 10000): Promise<RemoteFrame> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no frame within ${timeoutMs} ms`)), timeoutMs);
    client.once('frame', (f) => {
      clearTimeout(timer);
      resolve({ ...f, pixels: Uint8Array.from(f.pixels) });
    });
  });
}

/** A bare WebSocket peer: for floods, bad input and what arrives in which order. */
class RawPeer {
  readonly ws: WebSocket;
  readonly texts: Record<string, any>[] = [];
  binaries = 0;
  readonly closed: Promise<{ code: number; reason: string }>;
  readonly opened: Promise<void>;

  constructor(wsUrl: string) {
    this.ws = new WebSocket(wsUrl, SUBPROTOCOL);
    this.ws.on('message', (data: Buffer, isBinary) => {
      if (!isBinary) return void this.texts.push(JSON.parse(data.toString()));
      this.binaries++;
      this.send({ type: 'ack', seq: data.readUInt32LE(4) });
    });
    this.ws.on('error', () => {});
    this.opened = new Promise((resolve) => this.ws.once('open', () => resolve()));
    this.closed = new Promise((resolve) =>
      this.ws.on('close', (code, reason) => resolve({ code, reason: reason.toString() })),
    );
  }

  send(m: object | string): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(typeof m === 'string' ? m : JSON.stringify(m));
  }

  async hello(token: string, extra: Record<string, unknown> = {}): Promise<Record<string, any>> {
    await this.opened;
    this.send({ type: 'hello', token, name: 'raw', codecs: ['tiles'], ...extra });
    await eventually(() => this.texts.some((t) => t.type === 'welcome' || t.type === 'error'), 10000, 'welcome');
    return this.texts.find((t) => t.type === 'welcome' || t.type === 'error')!;
  }

  async ended(): Promise<{ code: string | undefined; close: number }> {
    const { code } = await this.closed;
    return { code: this.texts.find((t) => t.type === 'error')?.code, close: code };
  }
}

describe('stream input and cursor: remote viewers send input, see the cursor (separate processes)', function () {
  this.timeout(60000);
  const peers: Peer[] = [];
  const clients: RemoteStreamClient[] = [];
  let producer: Peer;
  let info: ProducerInfo;
  let surfaceId: number;

  async function startProducer(args: string[] = []): Promise<{ peer: Peer; info: ProducerInfo }> {
    const peer = new Peer('stream-producer.ts', ['--width', '160', '--height', '120', '--codecs', 'tiles', ...args]);
    peers.push(peer);
    return { peer, info: await peer.waitEvent('ready', () => true, 20000) };
  }

  async function connect(
    options: Parameters<typeof RemoteStreamClient.connect>[1] = {},
    url = info.url,
  ): Promise<RemoteStreamClient> {
    const c = await RemoteStreamClient.connect(url, { codecs: ['tiles'], ...options });
    clients.push(c);
    return c;
  }

  /** The producer's input events from index `from` on, once there are `n` of them (and no more come). */
  async function inputsFrom(p: Peer, from: number, n: number, settleMs = 150): Promise<Recorded[]> {
    let got: Recorded[] = [];
    try {
      await eventually(async () => (got = await p.call('inputEvents', { from })).length >= n, 10000, 'input events');
    } catch (error) {
      throw new Error(`${n} input events expected; got ${JSON.stringify(got)}`, { cause: error });
    }
    await sleep(settleMs);
    return p.call('inputEvents', { from });
  }

  async function inputCount(p: Peer): Promise<number> {
    return (await p.call<Recorded[]>('inputEvents', { from: 0 })).length;
  }

  async function streamClient(p: Peer, name: string): Promise<StreamClientInfo> {
    const all: StreamClientInfo[] = await p.call('clients');
    const me = all.find((c) => c.name === name);
    if (!me) throw new Error(`no stream client "${name}" among ${all.map((c) => c.name).join(', ')}`);
    return me;
  }

  before(async () => {
    ({ peer: producer, info } = await startProducer(['--view-token', VIEW_TOKEN]));
    ({ surfaceId } = await producer.call('addSurface', { ...BUFFER, orientation: 'bottom-up', visible: VISIBLE }));
  });

  afterEach(() => {
    for (const c of clients.splice(0)) c.close();
  });

  after(async () => {
    await Promise.all(peers.splice(0).map((p) => p.stop()));
  });

  it(
    'each input kind reaches the producer as exactly the validated event, ' + 'positions agreeing with the picture',
    async () => {
      await producer.call('setInputMode', { surfaceId, mode: 'absolute' });
      const c = await connect({ surface: surfaceId, name: 'input-kinds' });
      expect(c.welcome).to.include({ input: true, inputMode: 'absolute', maxMessageRate: 1000 });
      expect(c.welcome!.surface).to.include({ id: surfaceId, width: VISIBLE.width, height: VISIBLE.height });
      const frame = await nextFrame(c);
      const me = await streamClient(producer, 'input-kinds');
      expect(me).to.include({ input: true });
      const base = { surfaceId, source: 'remote', clientId: me.id };
      const start = await inputCount(producer);

      // Pointer at the corners and inside: the buffer pixel the viewer sees there is the one the producer finds.
      const points = [
        [0, 0],
        [VISIBLE.width - 1, 0],
        [0, VISIBLE.height - 1],
        [VISIBLE.width - 1, VISIBLE.height - 1],
        [33, 17],
      ];
      for (const [x, y] of points) c.sendPointer(x, y);
      const pointers = await inputsFrom(producer, start, points.length);
      expect(pointers.map(({ at: _at, ...e }) => e)).to.deep.equal(
        points.map(([x, y]) => ({ ...base, kind: 'pointer', x, y })),
      );
      points.forEach(([x, y], i) => {
        const seen = decode(frame.pixels, y * frame.stride + x * 4);
        expect(pointers[i].at, `picture ${x},${y}`).to.deep.equal(seen);
      });
      // Bottom-up and cropped: the top-left picture pixel is the visible rectangle's last buffer row.
      expect(pointers[0].at).to.include({ x: VISIBLE.x, y: VISIBLE.y + VISIBLE.height - 1 });
      expect(pointers[3].at).to.include({ x: VISIBLE.x + VISIBLE.width - 1, y: VISIBLE.y });

      // Keys, buttons, wheel, touch; repeats of a held key or button and releases of unheld ones are dropped.
      const from = await inputCount(producer);
      c.sendKey(KEY_LEFTSHIFT, true);
      c.sendKey(KEY_A, true);
      c.sendKey(KEY_A, true); // already down: dropped
      c.sendKey(KEY_A, false);
      c.sendKey(KEY_B, false); // never pressed: dropped
      c.sendKey(KEY_LEFTSHIFT, false);
      c.sendButton(BTN_LEFT, true);
      c.sendButton(BTN_LEFT, false);
      c.sendButton(BTN_RIGHT, false); // not held: dropped
      c.sendScroll(0, 3);
      c.sendScroll(-2, -1);
      c.sendTouch('down', 3, 5, 6);
      c.sendTouch('move', 3, 7, 8);
      c.sendTouch('move', 4, 1, 1); // slot 4 is not down: dropped
      c.sendTouch('up', 3, 7, 8);
      c.sendMotion(4, -2); // absolute mode: the core drops motion
      const got = await inputsFrom(producer, from, 11, 300);
      const stripped = got.map(({ at: _at, ...e }) => e);
      expect(stripped).to.deep.equal([
        { ...base, kind: 'key', code: KEY_LEFTSHIFT, pressed: true },
        { ...base, kind: 'key', code: KEY_A, pressed: true },
        { ...base, kind: 'key', code: KEY_A, pressed: false },
        { ...base, kind: 'key', code: KEY_LEFTSHIFT, pressed: false },
        { ...base, kind: 'button', button: BTN_LEFT, pressed: true },
        { ...base, kind: 'button', button: BTN_LEFT, pressed: false },
        { ...base, kind: 'scroll', dx: 0, dy: 3 },
        { ...base, kind: 'scroll', dx: -2, dy: -1 },
        { ...base, kind: 'touch', phase: 'down', slot: 3, x: 5, y: 6 },
        { ...base, kind: 'touch', phase: 'move', slot: 3, x: 7, y: 8 },
        { ...base, kind: 'touch', phase: 'up', slot: 3, x: 7, y: 8 },
      ]);
      expect(got[8].at, 'touch lands where the picture shows it').to.deep.equal(
        decode(frame.pixels, 6 * frame.stride + 5 * 4),
      );

      // Relative mode: the viewer is told; motion goes through, absolute pointers are dropped (by the core).
      const mode = new Promise<string>((resolve) => c.once('inputMode', resolve));
      await producer.call('setInputMode', { surfaceId, mode: 'relative' });
      expect(await mode).to.equal('relative');
      expect(c.inputMode).to.equal('relative');
      const rel = await inputCount(producer);
      c.sendPointer(1, 1);
      c.sendMotion(4, -2);
      c.sendMotion(-16384, 16384);
      expect(withoutAt(await inputsFrom(producer, rel, 2, 300))).to.deep.equal([
        { ...base, kind: 'motion', dx: 4, dy: -2 },
        { ...base, kind: 'motion', dx: -16384, dy: 16384 },
      ]);
      // A viewer connecting now learns the mode in its welcome.
      const late = await connect({ surface: surfaceId });
      expect(late.welcome!.inputMode).to.equal('relative');
      await producer.call('setInputMode', { surfaceId, mode: 'absolute' });
      expect((await streamClient(producer, 'input-kinds')).inputEvents).to.equal(points.length + 11 + 2);
    },
  );

  it('what a viewer holds down is released when it leaves', async () => {
    const c = await connect({ surface: surfaceId, name: 'leaver' });
    const me = await streamClient(producer, 'leaver');
    const from = await inputCount(producer);
    c.sendKey(KEY_A, true);
    c.sendButton(BTN_RIGHT, true);
    c.sendTouch('down', 2, 10, 11);
    c.sendKey(KEY_B, true);
    c.sendKey(KEY_B, false);
    await inputsFrom(producer, from, 5, 0);
    c.close();
    const all = await inputsFrom(producer, from, 8);
    const base = { surfaceId, source: 'remote', clientId: me.id };
    expect(withoutAt(all.slice(5))).to.deep.equal([
      { ...base, kind: 'touch', phase: 'cancel', slot: 2, x: 10, y: 11 },
      { ...base, kind: 'button', button: BTN_RIGHT, pressed: false },
      { ...base, kind: 'key', code: KEY_A, pressed: false },
    ]);
  });

  it('bad input is a stable code: malformed ends the session (4400), outside the picture is a warning', async () => {
    const bystander = await connect({ name: 'bystander' }); // the moving pattern: frames keep coming
    await nextFrame(bystander);
    const cases: [string, object][] = [
      ['key code 0', { type: 'key', code: 0, pressed: true }],
      ['key code past KEY_MAX', { type: 'key', code: 0x300, pressed: true }],
      ['key pressed not a boolean', { type: 'key', code: 30, pressed: 1 }],
      ['key without pressed', { type: 'key', code: 30 }],
      ['button below BTN_LEFT', { type: 'button', button: 0x10f, pressed: true }],
      ['button past BTN_TASK', { type: 'button', button: 0x118, pressed: true }],
      ['pointer x negative', { type: 'pointer', x: -1, y: 0 }],
      ['pointer x fractional', { type: 'pointer', x: 1.5, y: 0 }],
      ['pointer y missing', { type: 'pointer', x: 1 }],
      ['motion past ±16384', { type: 'motion', dx: 16385, dy: 0 }],
      ['motion fractional', { type: 'motion', dx: 0.5, dy: 0 }],
      ['scroll past ±1024', { type: 'scroll', dx: 0, dy: -1025 }],
      ['scroll a string', { type: 'scroll', dx: 0, dy: '1' }],
      ['touch phase unknown', { type: 'touch', phase: 'hover', slot: 0, x: 1, y: 1 }],
      ['touch slot 16', { type: 'touch', phase: 'down', slot: 16, x: 1, y: 1 }],
    ];
    const before = await inputCount(producer);
    for (const [what, message] of cases) {
      const p = new RawPeer(info.wsUrl);
      expect((await p.hello(info.token, { surface: surfaceId })).type, what).to.equal('welcome');
      p.send(message);
      expect(await p.ended(), what).to.deep.equal({ code: 'E_MALFORMED', close: 4400 });
    }
    // The client library refuses the same before sending.
    const local = await connect({ surface: surfaceId });
    for (const bad of [() => local.sendKey(0, true), () => local.sendMotion(0.5, 0), () => local.sendScroll(0, 2000)])
      expect(bad).to.throw().with.property('code', 'E_INVALID_ARGUMENT');

    // Outside the picture: a non-fatal warning (at most one a second), the event dropped, the session goes on.
    const p = new RawPeer(info.wsUrl);
    await p.hello(info.token, { surface: surfaceId, name: 'outside' });
    p.send({ type: 'pointer', x: VISIBLE.width, y: 0 });
    p.send({ type: 'touch', phase: 'down', slot: 0, x: 0, y: VISIBLE.height });
    p.send({ type: 'pointer', x: 1, y: 2 });
    await eventually(() => p.texts.some((t) => t.type === 'warning'), 5000, 'a warning');
    const events = await inputsFrom(producer, before, 1);
    expect(withoutAt(events)).to.deep.equal([
      {
        surfaceId,
        source: 'remote',
        clientId: (await streamClient(producer, 'outside')).id,
        kind: 'pointer',
        x: 1,
        y: 2,
      },
    ]);
    const warnings = p.texts.filter((t) => t.type === 'warning');
    expect(warnings).to.have.length(1);
    expect(warnings[0].code).to.equal('E_OUT_OF_BOUNDS');
    expect(p.ws.readyState).to.equal(WebSocket.OPEN);
    p.ws.close();
    // Nothing of it affected the bystander.
    const a = await nextFrame(bystander);
    expect((await nextFrame(bystander)).sequence).to.be.greaterThan(a.sequence);
    expect(bystander.closed).to.equal(false);
  });

  it('view-only token: frames and the cursor, input refused with E_PERMISSION once, then dropped', async () => {
    const c = await connect({ token: VIEW_TOKEN, surface: surfaceId, name: 'watcher' }, info.wsUrl);
    expect(c.welcome).to.include({ input: false });
    expect(c.inputAllowed).to.equal(false);
    await nextFrame(c);
    expect(await streamClient(producer, 'watcher')).to.include({ input: false, inputEvents: 0 });
    const warnings: SurfaceLinkError[] = [];
    c.on('warning', (w) => warnings.push(w));
    const before = await inputCount(producer);
    c.sendKey(KEY_A, true);
    c.sendPointer(1, 1);
    c.sendKey(KEY_A, false);
    await eventually(() => warnings.length > 0, 5000, 'the refusal');
    await sleep(300);
    expect(warnings.map((w) => w.code)).to.deep.equal(['E_PERMISSION']);
    expect(await inputCount(producer), 'input events from the view-only viewer').to.equal(before);
    // Still watching.
    await producer.call('moveCursor', { surfaceId, x: 3, y: 4, visible: true });
    await eventually(() => c.cursor?.x === 3 && c.cursor?.y === 4, 5000, 'the cursor');
    expect(c.closed).to.equal(false);
    // The same server still takes the full token's input.
    const full = await connect({ surface: surfaceId, name: 'typist' });
    expect(full.welcome!.input).to.equal(true);
    full.sendKey(KEY_B, true);
    expect((await inputsFrom(producer, before, 1))[0]).to.include({ kind: 'key', code: KEY_B, pressed: true });
    // Neither token: E_AUTH as before.
    const wrong = await RemoteStreamClient.connect(info.wsUrl, { token: `${VIEW_TOKEN}x` }).then(
      () => null,
      (e: SurfaceLinkError) => e,
    );
    expect(wrong?.code).to.equal('E_AUTH');
  });

  it('a flood of input is E_LIMIT (close 4429); the producer keeps presenting and serving others', async () => {
    const own = await startProducer();
    const { surfaceId: sid } = await own.peer.call('addSurface', { width: 64, height: 48 });
    const watcher = await connect({ name: 'watcher' }, own.info.url);
    // A viewer at a sane rate (200 messages a second for 1.5 s) is never cut off.
    const calm = await connect({ surface: sid, name: 'calm' }, own.info.url);
    for (let i = 0; i < 300; i++) {
      calm.sendPointer(i % 64, i % 48);
      await sleep(5);
    }
    expect(calm.closed).to.equal(false);
    const before = await inputCount(own.peer);
    const presentedBefore = (await own.peer.call('presented')).presented;

    const flood = new RawPeer(own.info.wsUrl);
    await flood.hello(own.info.token, { surface: sid });
    const t0 = Date.now();
    for (let i = 0; i < 20000; i++) flood.send({ type: 'pointer', x: i % 64, y: i % 48 });
    expect(await flood.ended()).to.deep.equal({ code: 'E_LIMIT', close: 4429 });
    const seconds = (Date.now() - t0) / 1000;
    const taken = (await inputCount(own.peer)) - before;
    // The burst (1000) plus what refills while it lasts, not 20000.
    expect(taken).to.be.at.most(1000 + Math.ceil(seconds * 1000) + 10);
    expect(taken).to.be.at.least(900);
    // The producer stayed responsive: it kept presenting, answers at once, and the other viewer gets frames.
    const t1 = Date.now();
    const presented = (await own.peer.call('presented')).presented;
    expect(Date.now() - t1, 'an IPC round trip').to.be.lessThan(500);
    expect(presented).to.be.greaterThan(presentedBefore);
    const a = await nextFrame(watcher);
    const b = await nextFrame(watcher);
    expect(b.sequence).to.be.greaterThan(a.sequence);
    expect(calm.closed).to.equal(false);
  });

  it('the cursor: its image sent once per change, moves latest-wins and paced, in picture pixels', async () => {
    const own = await startProducer();
    const { surfaceId: sid } = await own.peer.call('addSurface', {
      ...BUFFER,
      orientation: 'bottom-up',
      visible: VISIBLE,
    });
    const image = { width: 8, height: 6, hotspotX: 2, hotspotY: 3, pixels: Buffer.alloc(8 * 6 * 4) };
    for (let i = 0; i < 48; i++) image.pixels.writeUInt32LE((0xff000000 | (i * 0x050301)) >>> 0, i * 4);
    const c = await connect({ surface: sid, name: 'cursor-viewer' }, own.info.url);
    const shapes: { image: CursorImage | null; serial: number }[] = [];
    const moves: { x: number; y: number; visible: boolean }[] = [];
    c.on('cursor', (s) => shapes.push(s));
    c.on('cursorMove', (m) => moves.push(m));
    expect(c.cursor, 'no cursor before the producer sets one').to.equal(null);

    await own.peer.call('setCursor', { surfaceId: sid, image: { ...image, pixels: image.pixels.toString('base64') } });
    await own.peer.call('moveCursor', { surfaceId: sid, x: 20, y: 30, visible: true });
    await eventually(() => moves.some((m) => m.x === 20 && m.y === 30), 5000, 'the first move');
    expect(shapes).to.have.length(1);
    expect(shapes[0].image).to.deep.include({ width: 8, height: 6, hotspotX: 2, hotspotY: 3 });
    expect(Buffer.from(shapes[0].image!.pixels).equals(image.pixels), 'the image, byte for byte').to.equal(true);
    expect(c.cursor).to.deep.include({ x: 20, y: 30, visible: true });

    // 5000 moves in one go, then more bursts: a few messages, the last one the last position, no new shape.
    const movesBefore = moves.length;
    const t0 = Date.now();
    for (let burst = 0; burst < 10; burst++) {
      await own.peer.call('cursorBurst', { surfaceId: sid, n: 500, final: { x: 40 + burst, y: 10 } });
      await sleep(20);
    }
    await eventually(() => moves.at(-1)?.x === 49, 5000, 'the last position');
    await sleep(200);
    const elapsed = (Date.now() - t0) / 1000;
    const sent = moves.length - movesBefore;
    expect(sent, 'cursorMove messages for 5000 moves').to.be.at.most(Math.ceil(elapsed * 120) + 2);
    expect(sent).to.be.at.most(20);
    expect(moves.at(-1)).to.deep.equal({ x: 49, y: 10, visible: true });
    expect(shapes, 'no shape resent for moves').to.have.length(1);

    // Hidden, then a new image: one more shape, once.
    await own.peer.call('moveCursor', { surfaceId: sid, x: 49, y: 10, visible: false });
    await eventually(() => moves.at(-1)?.visible === false, 5000, 'hidden');
    const red = { ...image, width: 4, height: 4, hotspotX: 0, hotspotY: 0, pixels: Buffer.alloc(64, 0xff) };
    await own.peer.call('setCursor', { surfaceId: sid, image: { ...red, pixels: red.pixels.toString('base64') } });
    await eventually(() => shapes.length === 2, 5000, 'the new shape');
    await sleep(200);
    expect(shapes).to.have.length(2);
    expect(shapes[1].serial).to.be.greaterThan(shapes[0].serial);
    expect(shapes[1].image).to.deep.include({ width: 4, height: 4 });
    // No image at all.
    await own.peer.call('setCursor', { surfaceId: sid, image: null });
    await eventually(() => shapes.length === 3, 5000, 'no image');
    expect(shapes[2].image).to.equal(null);

    // A viewer arriving later gets the current state at once: one shape, one position.
    await own.peer.call('setCursor', { surfaceId: sid, image: { ...image, pixels: image.pixels.toString('base64') } });
    await own.peer.call('moveCursor', { surfaceId: sid, x: 7, y: 8, visible: true });
    const late = new RawPeer(own.info.wsUrl);
    await late.hello(own.info.token, { surface: sid });
    await eventually(() => late.texts.some((t) => t.type === 'cursorMove'), 5000, 'the late cursor');
    await sleep(200);
    const kinds = late.texts.map((t) => t.type).filter((t) => t !== 'pong');
    expect(kinds).to.deep.equal(['welcome', 'cursor', 'cursorMove']);
    expect(late.texts.find((t) => t.type === 'cursorMove')).to.deep.equal({
      type: 'cursorMove',
      x: 7,
      y: 8,
      visible: true,
    });
    expect(
      Buffer.from(late.texts.find((t) => t.type === 'cursor')!.image.pixels, 'base64').equals(image.pixels),
    ).to.equal(true);
    late.ws.close();
  });

  it('StreamServer options: viewToken and maxMessageRate are checked', async () => {
    const { dir, cleanup } = tempDir();
    const server = await SurfaceServer.listen({ path: path.join(dir, 's.sock') });
    try {
      const token = 't'.repeat(32);
      for (const bad of [
        { viewToken: token },
        { viewToken: 'short' },
        { maxMessageRate: 0 },
        { maxMessageRate: NaN },
      ]) {
        const error = await StreamServer.start(server, { token, codecs: ['tiles'], webRoot: null, ...bad }).then(
          (s) => (s.close(), null),
          (e: SurfaceLinkError) => e,
        );
        expect(error?.code, JSON.stringify(bad)).to.equal('E_INVALID_ARGUMENT');
      }
      const ok = await StreamServer.start(server, {
        token,
        viewToken: 'v'.repeat(16),
        codecs: ['tiles'],
        webRoot: null,
      });
      expect(ok.viewToken).to.equal('v'.repeat(16));
      expect(ok.viewUrl).to.match(/#token=v{16}$/);
      ok.close();
    } finally {
      server.close();
      cleanup();
    }
  });
});

/** Events without the producer's `at` annotation. */
function withoutAt(events: Recorded[]): InputEvent[] {
  return events.map(({ at: _at, ...e }) => e as InputEvent);
}
