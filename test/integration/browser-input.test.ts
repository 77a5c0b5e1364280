/**
 * The browser viewer's input and cursor (web/input.js, web/keymap.js) in real headless Chromium
 * (Debian's, driven by playwright-core), against a producer + StreamServer in another process
 * (test/fixtures/stream-producer.ts) that records the 'input' events it gets.
 *
 * The surface under test is bottom-up with a visible rectangle off (0, 0), and each buffer pixel
 * encodes its buffer coordinates, so a click can be checked end to end: the canvas pixel under
 * the mouse and the buffer pixel the producer finds at the event's position must be the same one.
 * The window is 1000x700 and the picture 300x160, so the canvas is scaled (by 3.33) and offset.
 *
 * Without Chromium the suite is skipped with the reason; with CI=true that is a failure.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import type { InputEvent } from '../../src/input.js';
import type { StreamClientInfo } from '../../src/stream/types.js';
import { Peer, eventually, sleep } from '../helpers.js';

const CHROMIUM = process.env.SURFACELINK_CHROMIUM ?? '/usr/bin/chromium';
const HEADER = '/usr/include/linux/input-event-codes.h';
const VIEW_TOKEN = 'view-only-token-for-the-browser';
const WINDOW = { width: 1000, height: 700 };
const BUFFER = { width: 320, height: 200 };
const VISIBLE = { x: 12, y: 20, width: 300, height: 160 };
const BTN_LEFT = 0x110;
const BTN_RIGHT = 0x111;
const BTN_MIDDLE = 0x112;

type Recorded = InputEvent & { at?: { x: number; y: number; value: number } };

interface InputState {
  connected: boolean;
  allowed: boolean;
  mode: string;
  captured: boolean;
  locked: boolean;
  lockRequests: number;
  lockError: string | null;
  heldKeys: number[];
  heldButtons: number[];
  sent: Record<string, number>;
  status: string | null;
  canvasCursor: string;
  cursor: {
    image: { width: number; height: number; hotspotX: number; hotspotY: number } | null;
    x: number;
    y: number;
    visible: boolean;
    shown: boolean;
    rect: Rect;
    canvasRect: Rect;
  };
}

interface Rect {
  left: number;
  top: number;
  width: number;
  height: number;
}

/**
 * The keys of a standard 105-key (ISO) keyboard (the 104-key ANSI one less IntlBackslash), by
 * KeyboardEvent.code, with the evdev name each must send.
 */
const KEYBOARD_105: Record<string, string> = {
  Escape: 'KEY_ESC',
  ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`F${i + 1}`, `KEY_F${i + 1}`])),
  PrintScreen: 'KEY_SYSRQ',
  ScrollLock: 'KEY_SCROLLLOCK',
  Pause: 'KEY_PAUSE',
  Backquote: 'KEY_GRAVE',
  ...Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`Digit${i}`, `KEY_${i}`])),
  Minus: 'KEY_MINUS',
  Equal: 'KEY_EQUAL',
  Backspace: 'KEY_BACKSPACE',
  Tab: 'KEY_TAB',
  ...Object.fromEntries([...'QWERTYUIOPASDFGHJKLZXCVBNM'].map((c) => [`Key${c}`, `KEY_${c}`])),
  BracketLeft: 'KEY_LEFTBRACE',
  BracketRight: 'KEY_RIGHTBRACE',
  Backslash: 'KEY_BACKSLASH',
  CapsLock: 'KEY_CAPSLOCK',
  Semicolon: 'KEY_SEMICOLON',
  Quote: 'KEY_APOSTROPHE',
  Enter: 'KEY_ENTER',
  ShiftLeft: 'KEY_LEFTSHIFT',
  IntlBackslash: 'KEY_102ND',
  Comma: 'KEY_COMMA',
  Period: 'KEY_DOT',
  Slash: 'KEY_SLASH',
  ShiftRight: 'KEY_RIGHTSHIFT',
  ControlLeft: 'KEY_LEFTCTRL',
  MetaLeft: 'KEY_LEFTMETA',
  AltLeft: 'KEY_LEFTALT',
  Space: 'KEY_SPACE',
  AltRight: 'KEY_RIGHTALT',
  MetaRight: 'KEY_RIGHTMETA',
  ContextMenu: 'KEY_COMPOSE',
  ControlRight: 'KEY_RIGHTCTRL',
  Insert: 'KEY_INSERT',
  Home: 'KEY_HOME',
  PageUp: 'KEY_PAGEUP',
  Delete: 'KEY_DELETE',
  End: 'KEY_END',
  PageDown: 'KEY_PAGEDOWN',
  ArrowUp: 'KEY_UP',
  ArrowLeft: 'KEY_LEFT',
  ArrowDown: 'KEY_DOWN',
  ArrowRight: 'KEY_RIGHT',
  NumLock: 'KEY_NUMLOCK',
  NumpadDivide: 'KEY_KPSLASH',
  NumpadMultiply: 'KEY_KPASTERISK',
  NumpadSubtract: 'KEY_KPMINUS',
  NumpadAdd: 'KEY_KPPLUS',
  NumpadEnter: 'KEY_KPENTER',
  NumpadDecimal: 'KEY_KPDOT',
  ...Object.fromEntries(Array.from({ length: 10 }, (_, i) => [`Numpad${i}`, `KEY_KP${i}`])),
};

/** The other keys the table has, with their evdev names. */
const EXTRA_KEYS: Record<string, string> = {
  NumpadEqual: 'KEY_KPEQUAL',
  NumpadComma: 'KEY_KPCOMMA',
  IntlRo: 'KEY_RO',
  IntlYen: 'KEY_YEN',
  Convert: 'KEY_HENKAN',
  NonConvert: 'KEY_MUHENKAN',
  KanaMode: 'KEY_KATAKANAHIRAGANA',
  Lang1: 'KEY_HANGEUL',
  Lang2: 'KEY_HANJA',
  ...Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`F${i + 13}`, `KEY_F${i + 13}`])),
  AudioVolumeMute: 'KEY_MUTE',
  AudioVolumeDown: 'KEY_VOLUMEDOWN',
  AudioVolumeUp: 'KEY_VOLUMEUP',
  MediaTrackNext: 'KEY_NEXTSONG',
  MediaPlayPause: 'KEY_PLAYPAUSE',
  MediaTrackPrevious: 'KEY_PREVIOUSSONG',
  MediaStop: 'KEY_STOPCD',
  BrowserBack: 'KEY_BACK',
  BrowserForward: 'KEY_FORWARD',
  BrowserRefresh: 'KEY_REFRESH',
  BrowserHome: 'KEY_HOMEPAGE',
  BrowserSearch: 'KEY_SEARCH',
  Power: 'KEY_POWER',
  Sleep: 'KEY_SLEEP',
  WakeUp: 'KEY_WAKEUP',
  OSLeft: 'KEY_LEFTMETA',
  OSRight: 'KEY_RIGHTMETA',
};

/** Buffer coordinates as the coordinate pattern encodes them, read from a canvas RGBA pixel. */
function decodeRgba(rgba: number[]): { x: number; y: number; value: number } {
  const [r, g, b] = rgba;
  return { x: b | ((r & 0xf) << 8), y: g | ((r >> 4) << 8), value: b | (g << 8) | (r << 16) };
}

const withoutAt = (events: Recorded[]): InputEvent[] => events.map(({ at: _at, ...e }) => e as InputEvent);

describe('browser viewer input and cursor (web/input.js) in headless Chromium', function () {
  this.timeout(60000);
  let producer: Peer | null = null;
  let info: { url: string; token: string };
  let surfaceId: number;
  let browser: Browser | null = null;
  const contexts: BrowserContext[] = [];
  let unavailable: string | null = null;

  before(async function () {
    if (!fs.existsSync(CHROMIUM)) {
      unavailable = `no Chromium at ${CHROMIUM} (apt-get install chromium, or set SURFACELINK_CHROMIUM)`;
      if (process.env.CI === 'true')
        throw new Error(`CI=true, and this machine should run the browser viewer tests, but: ${unavailable}`);
      return;
    }
    producer = new Peer('stream-producer.ts', ['--codecs', 'tiles', '--view-token', VIEW_TOKEN]);
    info = await producer.waitEvent('ready', () => true, 20000);
    ({ surfaceId } = await producer.call('addSurface', { ...BUFFER, orientation: 'bottom-up', visible: VISIBLE }));
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
  });

  beforeEach(function () {
    if (unavailable === null) return;
    this.currentTest!.title += ` — skipped: ${unavailable}`;
    this.skip();
  });

  after(async () => {
    await Promise.all(contexts.splice(0).map((c) => c.close().catch(() => {})));
    await browser?.close();
    await producer?.stop();
  });

  interface Viewer {
    page: Page;
    pageErrors: string[];
    /** The stream client id the server gave this page. */
    clientId: number;
  }

  /** A page showing the coordinate surface, drawn at least once; its stream client id found. */
  async function openViewer(token = info.token, options: { hasTouch?: boolean } = {}): Promise<Viewer> {
    const before = new Set((await producer!.call<StreamClientInfo[]>('clients')).map((c) => c.id));
    const context = await browser!.newContext({ viewport: WINDOW, hasTouch: options.hasTouch });
    contexts.push(context);
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    const url = new URL(info.url);
    url.search = `?codec=tiles&surface=${surfaceId}`;
    url.hash = `token=${token}`;
    await page.goto(url.href);
    await eventually(
      async () => (await page.evaluate(() => (globalThis as any).surfacelinkViewer.stats().framesDrawn)) > 0,
      15000,
      'the first frame drawn',
    );
    let clientId = -1;
    await eventually(
      async () => {
        const fresh = (await producer!.call<StreamClientInfo[]>('clients')).filter((c) => !before.has(c.id));
        if (fresh.length === 1) clientId = fresh[0].id;
        return clientId >= 0;
      },
      5000,
      'the page among the stream clients',
    );
    return { page, pageErrors, clientId };
  }

  const inputState = (v: Viewer): Promise<InputState> =>
    v.page.evaluate(() => (globalThis as any).surfacelinkViewer.input());

  async function inputCount(): Promise<number> {
    return (await producer!.call<Recorded[]>('inputEvents', { from: 0 })).length;
  }

  /** This page's input events from index `from`, once `n` have come (and a little longer, for strays). */
  async function eventsOf(v: Viewer, from: number, n: number, settleMs = 250): Promise<Recorded[]> {
    const mine = async () =>
      (await producer!.call<Recorded[]>('inputEvents', { from })).filter((e) => e.clientId === v.clientId);
    let got: Recorded[] = [];
    try {
      await eventually(async () => (got = await mine()).length >= n, 10000, `${n} input events`);
    } catch (error) {
      throw new Error(`${(error as Error).message}; got ${JSON.stringify(withoutAt(got))}`, { cause: error });
    }
    await sleep(settleMs);
    return mine();
  }

  /** The client position of the middle of picture pixel (x, y) on the canvas at `r`. */
  function pointOn(r: Rect, x: number, y: number): [number, number] {
    return [r.left + ((x + 0.5) * r.width) / VISIBLE.width, r.top + ((y + 0.5) * r.height) / VISIBLE.height];
  }

  /** The client position of the middle of picture pixel (x, y) on the fitted canvas. */
  async function clientPoint(v: Viewer, x: number, y: number): Promise<[number, number]> {
    return pointOn((await inputState(v)).cursor.canvasRect, x, y);
  }

  /** The canvas's RGBA at picture pixel (x, y). */
  async function canvasPixel(v: Viewer, x: number, y: number): Promise<number[]> {
    const s = await v.page.evaluate((p) => (globalThis as any).surfacelinkViewer.sample([p]), [x, y]);
    return s.colours[0];
  }

  function expectNoPageErrors(v: Viewer): void {
    expect(v.pageErrors, 'uncaught errors in the page').to.deep.equal([]);
  }

  it('the key table: every key of a 105-key keyboard, each the evdev code its KEY_ name has', async function () {
    const v = await openViewer();
    const table: Record<string, number> = await v.page.evaluate(() => (globalThis as any).surfacelinkViewer.keyTable());
    expect(Object.keys(KEYBOARD_105)).to.have.length(105);
    const missing = Object.keys(KEYBOARD_105).filter((code) => !(code in table));
    expect(missing, 'keys of the 105-key keyboard not in the table').to.deep.equal([]);
    const named = { ...KEYBOARD_105, ...EXTRA_KEYS };
    expect(
      Object.keys(table).filter((code) => !(code in named)),
      'entries this test does not know',
    ).to.deep.equal([]);
    if (!fs.existsSync(HEADER)) {
      this.test!.title += ` — the values not checked: no ${HEADER}`;
      return;
    }
    const defined = new Map<string, number>();
    for (const m of fs.readFileSync(HEADER, 'utf8').matchAll(/^#define\s+(KEY_\w+)\s+(0x[0-9a-fA-F]+|\d+)\b/gm))
      defined.set(m[1], Number(m[2]));
    const wrong = Object.entries(table)
      .filter(([code, value]) => defined.get(named[code]) !== value)
      .map(([code, value]) => `${code}: ${value}, ${named[code]} is ${defined.get(named[code])}`);
    expect(wrong).to.deep.equal([]);
    await v.page.context().close();
  });

  it(
    'keyboard: typing "ab" into the focused canvas gives KEY_A and KEY_B press/release; ' +
      'Tab stays; Ctrl+Alt+G releases',
    async () => {
      const v = await openViewer();
      const base = { surfaceId, source: 'remote', clientId: v.clientId };
      const hint = await inputState(v);
      expect(hint).to.include({ connected: true, allowed: true, captured: false, mode: 'absolute' });
      expect(hint.status).to.match(/click the picture to type/);
      // Not focused: typing goes nowhere.
      let from = await inputCount();
      await v.page.keyboard.type('x');
      await v.page.locator('#screen').focus();
      expect((await inputState(v)).status).to.match(/keyboard captured: Ctrl\+Alt\+G releases it/);
      await v.page.keyboard.type('ab');
      const typed = await eventsOf(v, from, 4);
      expect(withoutAt(typed)).to.deep.equal([
        { ...base, kind: 'key', code: 30, pressed: true },
        { ...base, kind: 'key', code: 30, pressed: false },
        { ...base, kind: 'key', code: 48, pressed: true },
        { ...base, kind: 'key', code: 48, pressed: false },
      ]);
      // Keys the page would act on are the producer's while captured: Tab does not move the focus.
      from = await inputCount();
      await v.page.keyboard.press('Tab');
      await v.page.keyboard.press('Shift+Digit1');
      expect(withoutAt(await eventsOf(v, from, 6))).to.deep.equal([
        { ...base, kind: 'key', code: 15, pressed: true },
        { ...base, kind: 'key', code: 15, pressed: false },
        { ...base, kind: 'key', code: 42, pressed: true },
        { ...base, kind: 'key', code: 2, pressed: true },
        { ...base, kind: 'key', code: 2, pressed: false },
        { ...base, kind: 'key', code: 42, pressed: false },
      ]);
      expect(await v.page.evaluate(() => (globalThis as any).document.activeElement.id)).to.equal('screen');
      // Held keys repeat in the browser, not on the wire.
      from = await inputCount();
      await v.page.keyboard.down('KeyQ');
      await v.page.evaluate(() => {
        const d = (globalThis as any).document;
        const opts = { code: 'KeyQ', key: 'q', repeat: true, bubbles: true, cancelable: true };
        for (let i = 0; i < 3; i++)
          d.activeElement.dispatchEvent(new (globalThis as any).KeyboardEvent('keydown', opts));
      });
      await v.page.keyboard.up('KeyQ');
      expect(
        withoutAt(await eventsOf(v, from, 2)).map((e) => [e.kind, (e as any).code, (e as any).pressed]),
      ).to.deep.equal([
        ['key', 16, true],
        ['key', 16, false],
      ]);
      // The escape: Ctrl+Alt+G lets go of the keyboard (Ctrl and Alt released to the producer; G never sent).
      from = await inputCount();
      await v.page.keyboard.down('Control');
      await v.page.keyboard.down('Alt');
      await v.page.keyboard.press('KeyG');
      const released = await eventsOf(v, from, 4);
      expect(withoutAt(released).map((e) => [(e as any).code, (e as any).pressed])).to.have.deep.members([
        [29, true],
        [56, true],
        [29, false],
        [56, false],
      ]);
      expect(released.map((e) => (e as any).code)).to.not.include(34);
      await v.page.keyboard.up('Alt');
      await v.page.keyboard.up('Control');
      const st = await inputState(v);
      expect(st).to.include({ captured: false });
      expect(st.heldKeys).to.deep.equal([]);
      from = await inputCount();
      await v.page.keyboard.type('zz');
      await sleep(300);
      expect(await eventsOf(v, from, 0), 'after the release').to.deep.equal([]);
      expectNoPageErrors(v);
      await v.page.context().close();
    },
  );

  it(
    'mouse: clicks and moves on the scaled canvas land on the pixel under the mouse; ' + 'buttons, wheel, drag',
    async () => {
      const v = await openViewer();
      const base = { surfaceId, source: 'remote', clientId: v.clientId };
      const st = await inputState(v);
      const r = st.cursor.canvasRect;
      // Fitted: 1000 wide (scale 3.33), centred vertically.
      expect(Math.round(r.width)).to.equal(1000);
      expect(r.top).to.be.greaterThan(50);
      const points: [number, number][] = [
        [0, 0],
        [VISIBLE.width - 1, VISIBLE.height - 1],
        [123, 77],
        [299, 3],
      ];
      for (const [x, y] of points) {
        const from = await inputCount();
        const [cx, cy] = await clientPoint(v, x, y);
        await v.page.mouse.move(cx, cy);
        await v.page.mouse.down();
        await v.page.mouse.up();
        const got = await eventsOf(v, from, 3);
        expect(withoutAt(got), `click at picture ${x},${y}`).to.deep.equal([
          { ...base, kind: 'pointer', x, y },
          { ...base, kind: 'button', button: BTN_LEFT, pressed: true },
          { ...base, kind: 'button', button: BTN_LEFT, pressed: false },
        ]);
        // The pixel the canvas shows there is the buffer pixel the producer finds at the event's position.
        expect(got[0].at, `picture ${x},${y}`).to.deep.equal(decodeRgba(await canvasPixel(v, x, y)));
      }
      // Right and middle buttons; no context menu.
      let from = await inputCount();
      await v.page.mouse.click(...(await clientPoint(v, 50, 60)), { button: 'right' });
      await v.page.mouse.click(...(await clientPoint(v, 50, 60)), { button: 'middle' });
      const buttons = withoutAt(await eventsOf(v, from, 5)).filter((e) => e.kind === 'button');
      expect(buttons.map((e) => [(e as any).button, (e as any).pressed])).to.deep.equal([
        [BTN_RIGHT, true],
        [BTN_RIGHT, false],
        [BTN_MIDDLE, true],
        [BTN_MIDDLE, false],
      ]);
      // Wheel: whole notches of 100 pixels, the remainder kept.
      from = await inputCount();
      await v.page.mouse.wheel(0, 250);
      await v.page.mouse.wheel(0, 50);
      await v.page.mouse.wheel(-100, 0);
      const scrolls = withoutAt(await eventsOf(v, from, 3)).filter((e) => e.kind === 'scroll');
      expect(scrolls.map((e) => [(e as any).dx, (e as any).dy])).to.deep.equal([
        [0, 2],
        [0, 1],
        [-1, 0],
      ]);
      // A drag that leaves the canvas goes on, clamped to the edge, and the release is sent outside it.
      from = await inputCount();
      await v.page.mouse.move(...(await clientPoint(v, 100, 100)));
      await v.page.mouse.down();
      await v.page.mouse.move(r.left + 400, 5, { steps: 2 }); // above the canvas
      await sleep(50);
      await v.page.mouse.up();
      const drag = withoutAt(await eventsOf(v, from, 4));
      expect(drag[0]).to.deep.include({ kind: 'pointer', x: 100, y: 100 });
      expect(drag.at(-1)).to.deep.include({ kind: 'button', button: BTN_LEFT, pressed: false });
      expect(drag.filter((e) => e.kind === 'pointer').at(-1)).to.deep.include({ y: 0 });
      // Moves are coalesced: 200 moves within one task (well inside 16 ms) give the first and the last position.
      from = await inputCount();
      const path = [...Array.from({ length: 200 }, (_, i) => pointOn(r, 10 + i, 40)), pointOn(r, 250, 150)];
      await v.page.evaluate((points) => {
        const g = globalThis as any;
        const canvas = g.document.getElementById('screen');
        for (const [clientX, clientY] of points)
          canvas.dispatchEvent(new g.MouseEvent('mousemove', { clientX, clientY, bubbles: true }));
      }, path);
      await eventually(
        async () => (await eventsOf(v, from, 1, 0)).some((e) => e.kind === 'pointer' && e.x === 250),
        5000,
        'the last move',
      );
      const moves = withoutAt(await eventsOf(v, from, 1));
      expect(moves.map((e) => [(e as any).x, (e as any).y])).to.deep.equal([
        [10, 40],
        [250, 150],
      ]);
      expectNoPageErrors(v);
      await v.page.context().close();
    },
  );

  it('touch: two fingers get slots 0 and 1, positions on the scaled canvas', async () => {
    const v = await openViewer(info.token, { hasTouch: true });
    const base = { surfaceId, source: 'remote', clientId: v.clientId };
    const cdp = await v.page.context().newCDPSession(v.page);
    const [ax, ay] = await clientPoint(v, 20, 30);
    const [bx, by] = await clientPoint(v, 200, 100);
    const [mx, my] = await clientPoint(v, 25, 35);
    const from = await inputCount();
    await cdp.send('Input.dispatchTouchEvent', {
      type: 'touchStart',
      touchPoints: [
        { x: ax, y: ay, id: 1 },
        { x: bx, y: by, id: 2 },
      ],
    });
    await cdp.send('Input.dispatchTouchEvent', {
      type: 'touchMove',
      touchPoints: [
        { x: mx, y: my, id: 1 },
        { x: bx, y: by, id: 2 },
      ],
    });
    await cdp.send('Input.dispatchTouchEvent', { type: 'touchEnd', touchPoints: [] });
    const got = await eventsOf(v, from, 5);
    expect(withoutAt(got)).to.deep.equal([
      { ...base, kind: 'touch', phase: 'down', slot: 0, x: 20, y: 30 },
      { ...base, kind: 'touch', phase: 'down', slot: 1, x: 200, y: 100 },
      { ...base, kind: 'touch', phase: 'move', slot: 0, x: 25, y: 35 },
      { ...base, kind: 'touch', phase: 'up', slot: 0, x: 25, y: 35 },
      { ...base, kind: 'touch', phase: 'up', slot: 1, x: 200, y: 100 },
    ]);
    expect(got[0].at).to.deep.equal(decodeRgba(await canvasPixel(v, 20, 30)));
    // No emulated mouse events reached the producer.
    expect(got.filter((e) => e.kind === 'button' || e.kind === 'pointer')).to.deep.equal([]);
    expectNoPageErrors(v);
    await v.page.context().close();
  });

  it('relative mode: a click asks for pointer lock; locked, mouse movement becomes motion (scaled)', async function () {
    const v = await openViewer();
    const base = { surfaceId, source: 'remote', clientId: v.clientId };
    await producer!.call('setInputMode', { surfaceId, mode: 'relative' });
    try {
      await eventually(async () => (await inputState(v)).mode === 'relative', 5000, 'relative mode');
      expect((await inputState(v)).status).to.match(/click the picture to capture the mouse/);
      const from = await inputCount();
      await v.page.mouse.click(...(await clientPoint(v, 150, 80)));
      await eventually(async () => (await inputState(v)).lockRequests === 1, 5000, 'a pointer lock request');
      let locked = false;
      try {
        await eventually(async () => (await inputState(v)).locked, 3000, 'pointer lock');
        locked = true;
      } catch {
        /* reported below */
      }
      if (!locked) {
        // Does this browser grant pointer lock at all? A bare page asks the same way, on a click.
        const probe = await v.page.context().newPage();
        await probe.setContent(
          '<canvas id="c" style="width:200px;height:200px"></canvas><script>' +
            "document.getElementById('c').onclick = (e) => e.target.requestPointerLock();</script>",
        );
        await probe.mouse.click(100, 100);
        await sleep(500);
        const granted = await probe.evaluate(() => (globalThis as any).document.pointerLockElement !== null);
        await probe.close();
        expect(granted, 'a bare page got pointer lock where the viewer did not').to.equal(false);
        // What can be checked without the lock: the request was made, and nothing was sent for that click.
        expect(await eventsOf(v, from, 0)).to.deep.equal([]);
        this.test!.title += ` — headless Chromium did not grant pointer lock (${(await inputState(v)).lockError})`;
        return;
      }
      expect(await v.page.evaluate(() => (globalThis as any).document.pointerLockElement?.id)).to.equal('screen');
      expect((await inputState(v)).status).to.match(/mouse captured/);
      // The click that took the lock was not sent; movement is, scaled to surface pixels (1000 CSS px = 300).
      await v.page.mouse.move(
        ...((await clientPoint(v, 150, 80)).map((c, i) => c + (i === 0 ? 100 : -50)) as [number, number]),
      );
      await v.page.mouse.move(
        ...((await clientPoint(v, 150, 80)).map((c, i) => c + (i === 0 ? 200 : -50)) as [number, number]),
      );
      await v.page.mouse.down();
      await v.page.mouse.up();
      const got = withoutAt(await eventsOf(v, from, 3, 400));
      const motion = got.filter((e) => e.kind === 'motion');
      const dx = motion.reduce((s, e) => s + (e as any).dx, 0);
      const dy = motion.reduce((s, e) => s + (e as any).dy, 0);
      const scale = VISIBLE.width / (await inputState(v)).cursor.canvasRect.width;
      expect(dx).to.be.within(Math.floor(200 * scale) - 1, Math.ceil(200 * scale));
      expect(dy).to.be.within(Math.floor(-50 * scale) - 1, Math.ceil(-50 * scale) + 1);
      expect(
        got.filter((e) => e.kind === 'pointer'),
        'no absolute positions in relative mode',
      ).to.deep.equal([]);
      expect(got.filter((e) => e.kind === 'button')).to.deep.equal([
        { ...base, kind: 'button', button: BTN_LEFT, pressed: true },
        { ...base, kind: 'button', button: BTN_LEFT, pressed: false },
      ]);
      // Back to absolute: the lock is let go.
      await producer!.call('setInputMode', { surfaceId, mode: 'absolute' });
      await eventually(async () => !(await inputState(v)).locked, 5000, 'the lock released');
      expectNoPageErrors(v);
    } finally {
      await producer!.call('setInputMode', { surfaceId, mode: 'absolute' });
      await v.page.context().close();
    }
  });

  it(
    "the cursor: drawn on its own layer at the producer's position, scaled, with its image; " + 'hidden when hidden',
    async () => {
      const v = await openViewer();
      // 8x6, hotspot (2, 3): opaque colours, each pixel its own, and one transparent column.
      const [w, h] = [8, 6];
      const argb = Buffer.alloc(w * h * 4);
      for (let i = 0; i < w * h; i++) {
        const x = i % w;
        argb[i * 4] = 0x20 + i; // B
        argb[i * 4 + 1] = 0x80; // G
        argb[i * 4 + 2] = 0xf0 - i; // R
        argb[i * 4 + 3] = x === 7 ? 0 : 0xff; // A
      }
      await producer!.call('setCursor', {
        surfaceId,
        image: { width: w, height: h, hotspotX: 2, hotspotY: 3, pixels: argb.toString('base64') },
      });
      await producer!.call('moveCursor', { surfaceId, x: 100, y: 50, visible: true });
      await eventually(async () => (await inputState(v)).cursor.shown, 5000, 'the cursor shown');
      const st = await inputState(v);
      const r = st.cursor.canvasRect;
      const sx = r.width / VISIBLE.width;
      const sy = r.height / VISIBLE.height;
      expect(st.cursor.rect.left).to.be.closeTo(r.left + (100 - 2) * sx, 0.6);
      expect(st.cursor.rect.top).to.be.closeTo(r.top + (50 - 3) * sy, 0.6);
      expect(st.cursor.rect.width).to.be.closeTo(w * sx, 0.6);
      expect(st.cursor.rect.height).to.be.closeTo(h * sy, 0.6);
      expect(st.canvasCursor, "the local pointer hidden over the canvas while the producer's shows").to.equal('none');
      // Its image, as drawn on the overlay (RGBA).
      const px = await v.page.evaluate(() => (globalThis as any).surfacelinkViewer.cursorPixels());
      const rgba = Buffer.from(px.rgba, 'base64');
      expect([px.width, px.height]).to.deep.equal([w, h]);
      for (let i = 0; i < w * h; i++) {
        const want = i % w === 7 ? [0, 0, 0, 0] : [argb[i * 4 + 2], argb[i * 4 + 1], argb[i * 4], 0xff];
        expect([...rgba.subarray(i * 4, i * 4 + 4)], `cursor pixel ${i % w},${Math.floor(i / w)}`).to.deep.equal(want);
      }
      // On screen: the cursor's colour over the picture at the hotspot's place, and never in the frame canvas.
      const [hx, hy] = await clientPoint(v, 100, 50);
      const shot = await v.page.screenshot({ clip: { x: Math.floor(hx), y: Math.floor(hy), width: 1, height: 1 } });
      const onScreen = await v.page.evaluate(async (b64) => {
        const g = globalThis as any;
        const img = new g.Image();
        img.src = `data:image/png;base64,${b64}`;
        await img.decode();
        const c = g.document.createElement('canvas');
        c.width = c.height = 1;
        const ctx = c.getContext('2d');
        ctx.drawImage(img, 0, 0);
        return Array.from(ctx.getImageData(0, 0, 1, 1).data);
      }, shot.toString('base64'));
      const hotspot = 3 * w + 2;
      expect(onScreen.slice(0, 3), 'the screen at the hotspot').to.deep.equal([
        argb[hotspot * 4 + 2],
        argb[hotspot * 4 + 1],
        argb[hotspot * 4],
      ]);
      expect(decodeRgba(await canvasPixel(v, 100, 50)).x, 'the frame canvas still shows the surface there').to.equal(
        VISIBLE.x + 100,
      );
      // Moved: follows. Hidden: gone, and the local pointer is back.
      await producer!.call('moveCursor', { surfaceId, x: 10, y: 150, visible: true });
      await eventually(async () => (await inputState(v)).cursor.x === 10, 5000, 'moved');
      const moved = await inputState(v);
      expect(moved.cursor.rect.top).to.be.closeTo(r.top + (150 - 3) * sy, 0.6);
      await producer!.call('moveCursor', { surfaceId, x: 10, y: 150, visible: false });
      await eventually(async () => !(await inputState(v)).cursor.shown, 5000, 'hidden');
      expect(await v.page.locator('#cursor').isVisible()).to.equal(false);
      expect((await inputState(v)).canvasCursor).to.equal('');
      await producer!.call('setCursor', { surfaceId, image: null });
      expectNoPageErrors(v);
      await v.page.context().close();
    },
  );

  it('view-only token: the page says "view only" and sends no input', async () => {
    const v = await openViewer(VIEW_TOKEN);
    const st = await inputState(v);
    expect(st).to.include({ connected: true, allowed: false });
    expect(st.status).to.equal('view only');
    expect(await v.page.locator('#input-status').isVisible()).to.equal(true);
    const from = await inputCount();
    await v.page.locator('#screen').focus();
    await v.page.keyboard.type('ab');
    await v.page.mouse.click(...(await clientPoint(v, 10, 10)));
    await v.page.mouse.wheel(0, 300);
    await sleep(300);
    expect(await eventsOf(v, from, 0)).to.deep.equal([]);
    expect(
      Object.values((await inputState(v)).sent).reduce((a, b) => a + b, 0),
      'messages sent',
    ).to.equal(0);
    expectNoPageErrors(v);
    await v.page.context().close();
  });
});
