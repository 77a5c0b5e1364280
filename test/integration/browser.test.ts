/**
 * The browser viewer (web/) in real headless Chromium (Debian's, driven by playwright-core;
 * nothing is downloaded), against a producer + StreamServer in another process
 * (test/fixtures/stream-producer.ts) showing the demo pattern, where frame N is a pure
 * function of N. The viewer reports which sequence its canvas shows, read together with the
 * pixels, so the test can draw the same frame itself and compare:
 *
 * - tiles: every pixel's RGB exact, in two frames, and the picture moves;
 * - H.264: background, grid and the box where the pattern puts it, within codec tolerance,
 *   the counter readable, and the box moving;
 * - a wrong token: the page says so;
 * - a decoder error (corrupted H.264 data): the viewer resets, asks for a keyframe, and
 *   frames continue.
 *
 * Without Chromium the suite is skipped with the reason; with CI=true that is a failure.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import {
  boxX,
  boxY,
  drawPattern,
  patternLayout,
  readCounter,
  counterValue,
  type PatternLayout,
} from '../../src/demo/pattern.js';
import { Peer, eventually } from '../helpers.js';

const CHROMIUM = process.env.SURFACELINK_CHROMIUM ?? '/usr/bin/chromium';
const WIDTH = 640;
const HEIGHT = 360;
const WAIT_MS = 15000;

// The pattern's colours as R, G, B (src/demo/pattern.ts keeps them as B, G, R).
const BG = [0x14, 0x16, 0x1c];
const GRID_LINE = [0x2e, 0x32, 0x3a];
const GRID = 32;
/** Largest per-channel difference allowed for H.264 against the drawn colour (patch means). */
const H264_TOLERANCE = 24;

interface ProducerInfo {
  url: string;
  token: string;
  width: number;
  height: number;
  h264Encoder: string | null;
}

interface ViewerStats {
  state: string;
  codec: string | null;
  encoder: string | null;
  offered: string[];
  width: number;
  height: number;
  framesDrawn: number;
  framesDropped: number;
  errors: number;
  lastError: string | null;
  errorCode: string | null;
  keyframeRequests: number;
  keyframesReceived: number;
  canvasSeq: number;
  latencySamples: number;
  paintMode: 'probe' | 'draw' | 'copy';
  paintProbeMs: { draw: number | null; copy: number | null };
  message: string | null;
}

/** The canvas as the viewer returned it: RGBA and the sequence it shows. */
interface Snapshot {
  seq: number;
  width: number;
  height: number;
  rgba: Buffer;
}

interface Viewer {
  page: Page;
  pageErrors: string[];
  requests: string[];
}

type Rgb = [number, number, number];

function requireOrSkip(ctx: Mocha.Context, available: boolean, reason: string): void {
  if (available) return;
  if (process.env.CI === 'true')
    throw new Error(`CI=true, and this machine should run the browser viewer tests, but: ${reason}`);
  ctx.test!.title += ` — skipped: ${reason}`;
  ctx.skip();
}

/**
 * The pattern's frame `seq` as RGBA, drawn here (the producer draws it as B, G, R, X), on a
 * surface `width` × `height` (larger than the layout after a resize: the rest stays zero).
 */
function expectedRgba(layout: PatternLayout, seq: number, width = layout.width, height = layout.height): Uint8Array {
  const bgrx = new Uint8Array(width * height * 4);
  drawPattern(layout, bgrx, width * 4, seq);
  return bgrxToRgba(bgrx);
}

function bgrxToRgba(bgrx: Uint8Array): Uint8Array {
  const out = new Uint8Array(bgrx.length);
  for (let i = 0; i < bgrx.length; i += 4) {
    out[i] = bgrx[i + 2];
    out[i + 1] = bgrx[i + 1];
    out[i + 2] = bgrx[i];
    out[i + 3] = 0xff;
  }
  return out;
}

function rgbaToBgrx(rgba: Uint8Array): Uint8Array {
  return bgrxToRgba(rgba); // the same swap of bytes 0 and 2
}

/** Mean colour of a w×h patch at (x, y). */
function patchMean(s: Snapshot, x: number, y: number, w: number, h: number): Rgb {
  const sum: Rgb = [0, 0, 0];
  for (let yy = y; yy < y + h; yy++) {
    for (let xx = x; xx < x + w; xx++) {
      const i = (yy * s.width + xx) * 4;
      sum[0] += s.rgba[i];
      sum[1] += s.rgba[i + 1];
      sum[2] += s.rgba[i + 2];
    }
  }
  return sum.map((v) => Math.round(v / (w * h))) as Rgb;
}

const maxDiff = (a: readonly number[], b: readonly number[]): number =>
  Math.max(...a.slice(0, 3).map((v, i) => Math.abs(v - b[i])));
const distance = (a: readonly number[], b: readonly number[]): number =>
  Math.hypot(...a.slice(0, 3).map((v, i) => v - b[i]));
const hex = (c: readonly number[]): string =>
  `#${c
    .slice(0, 3)
    .map((v) => v.toString(16).padStart(2, '0'))
    .join('')}`;

function overlaps(
  ax: number,
  ay: number,
  aw: number,
  ah: number,
  bx: number,
  by: number,
  bw: number,
  bh: number,
): boolean {
  return ax < bx + bw && bx < ax + aw && ay < by + bh && by < ay + ah;
}

describe('browser viewer (web/) in headless Chromium', function () {
  this.timeout(60000);
  const layout = patternLayout(WIDTH, HEIGHT);
  let producer: Peer | null = null;
  let info: ProducerInfo;
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
    producer = new Peer('stream-producer.ts', [
      '--width',
      String(WIDTH),
      '--height',
      String(HEIGHT),
      '--fps',
      '30',
      '--max-fps',
      '30',
    ]);
    info = await producer.waitEvent('ready', () => true, 20000);
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

  /** A fresh browser context on the viewer page, with `query` and the token in the fragment. */
  async function openViewer(query: string, token = info.token): Promise<Viewer> {
    const context = await browser!.newContext({ viewport: { width: 1280, height: 720 } });
    contexts.push(context);
    const page = await context.newPage();
    const viewer: Viewer = { page, pageErrors: [], requests: [] };
    page.on('pageerror', (e) => viewer.pageErrors.push(String(e)));
    page.on('request', (r) => viewer.requests.push(r.url()));
    const url = new URL(info.url);
    url.search = query;
    url.hash = `token=${token}`;
    await page.goto(url.href);
    return viewer;
  }

  function stats(v: Viewer): Promise<ViewerStats> {
    return v.page.evaluate(() => (globalThis as any).surfacelinkViewer.stats());
  }

  /** Waits for `predicate` over the viewer's stats; the error shows the last stats seen. */
  async function waitStats(
    v: Viewer,
    what: string,
    predicate: (s: ViewerStats) => boolean,
    timeoutMs = WAIT_MS,
  ): Promise<ViewerStats> {
    let last: ViewerStats | null = null;
    try {
      await eventually(async () => predicate((last = await stats(v))), timeoutMs, what);
    } catch (error) {
      throw new Error(
        `${(error as Error).message}; viewer stats: ${JSON.stringify(last)}; page errors: ${v.pageErrors.join('; ')}`,
        { cause: error },
      );
    }
    return last!;
  }

  async function snapshot(v: Viewer): Promise<Snapshot> {
    const s = await v.page.evaluate(() => (globalThis as any).surfacelinkViewer.snapshot());
    return { seq: s.seq, width: s.width, height: s.height, rgba: Buffer.from(s.rgba, 'base64') };
  }

  /** Skips (or, under CI, fails) when H.264 cannot run here; otherwise a viewer showing H.264 frames. */
  async function openH264(ctx: Mocha.Context, query = '?codec=h264'): Promise<Viewer> {
    requireOrSkip(
      ctx,
      info.h264Encoder !== null,
      'the server has no H.264 encoder (GStreamer with x264enc: gstreamer1.0-plugins-ugly, python3-gi)',
    );
    const v = await openViewer(query);
    const first = await waitStats(
      v,
      'the viewer started',
      (s) => s.state !== 'starting' && s.state !== 'connecting' && s.state !== 'authenticating',
    );
    requireOrSkip(
      ctx,
      first.state === 'streaming',
      `this Chromium cannot decode H.264 with WebCodecs: ${first.message}`,
    );
    expect(first.codec).to.equal('h264');
    await waitStats(v, 'H.264 frames drawn', (s) => s.framesDrawn >= 10 && s.canvasSeq > 0);
    return v;
  }

  function expectNoPageErrors(v: Viewer): void {
    expect(v.pageErrors, 'uncaught errors in the page').to.deep.equal([]);
    const origin = new URL(info.url).origin;
    expect(
      v.requests.filter((u) => !u.startsWith(`${origin}/`)),
      'requests outside the server',
    ).to.deep.equal([]);
  }

  /** Every pixel's RGB equals the pattern's frame `s.seq`. */
  function expectExact(s: Snapshot): void {
    const want = expectedRgba(layout, s.seq, s.width, s.height);
    let mismatches = 0;
    let first = '';
    for (let i = 0; i < want.length; i += 4) {
      if (s.rgba[i] !== want[i] || s.rgba[i + 1] !== want[i + 1] || s.rgba[i + 2] !== want[i + 2]) {
        if (mismatches++ === 0)
          first =
            `first at ${(i / 4) % s.width},${Math.floor(i / 4 / s.width)}: ` +
            `${hex([...s.rgba.subarray(i, i + 3)])}, expected ${hex([...want.subarray(i, i + 3)])}`;
      }
    }
    expect(mismatches, `pixels differing from frame ${s.seq} (${first})`).to.equal(0);
  }

  /** The box's colour at its place for `seq`, background away from it, a grid line: within tolerance. */
  function expectPatternColours(s: Snapshot): void {
    const b = layout.box;
    const bx = boxX(layout, s.seq);
    const by = boxY(layout, s.seq);
    const c = layout.counter!;
    const problems: string[] = [];
    const check = (what: string, got: Rgb, want: readonly number[]) => {
      if (maxDiff(got, want) > H264_TOLERANCE) problems.push(`${what}: ${hex(got)}, expected ${hex(want)}`);
    };
    // The box's inside (the counter is drawn over it where they meet: sample clear of that).
    const inner = 16;
    const ix = bx + (b - inner) / 2;
    const iy = by + (b - inner) / 2;
    if (!overlaps(ix, iy, inner, inner, c.x, c.y, c.width, c.height)) {
      check(`box interior at ${ix},${iy} (frame ${s.seq})`, patchMean(s, ix, iy, inner, inner), [
        0xff,
        0x60 + ((s.seq * 2) & 0x7f),
        0x20,
      ]);
    }
    // Background: the middles of grid cells far from the box and the counter.
    let backgrounds = 0;
    for (let cy = GRID / 2; cy < HEIGHT && backgrounds < 6; cy += 3 * GRID) {
      for (let cx = GRID / 2; cx < WIDTH && backgrounds < 6; cx += 5 * GRID) {
        const x = cx - 4;
        const y = cy - 4;
        if (overlaps(x - 8, y - 8, 24, 24, bx, by, b, b) || overlaps(x - 8, y - 8, 24, 24, c.x, c.y, c.width, c.height))
          continue;
        check(`background at ${x},${y}`, patchMean(s, x, y, 8, 8), BG);
        backgrounds++;
      }
    }
    expect(backgrounds, 'background samples').to.be.greaterThan(2);
    // A horizontal grid line, away from the box: nearer the line's colour than the background's.
    const lineY = 8 * GRID;
    const lineX = overlaps(32, lineY - 8, 128, 16, bx, by, b, b) ? WIDTH - 32 - 128 : 32;
    const line = patchMean(s, lineX, lineY, 128, 1);
    if (distance(line, GRID_LINE) >= distance(line, BG))
      problems.push(
        `grid line at y=${lineY}: ${hex(line)} is nearer the background ${hex(BG)} than the line ${hex(GRID_LINE)}`,
      );
    expect(problems, `frame ${s.seq}`).to.deep.equal([]);
    // The counter is crisp enough to read back, and shows the sequence the viewer says it drew.
    expect(readCounter(layout, rgbaToBgrx(s.rgba), s.width * 4), 'counter read from the canvas').to.equal(
      counterValue(s.seq),
    );
  }

  it("tiles: the canvas is the producer's frame, pixel for pixel, and moves; fits the window", async () => {
    const v = await openViewer('?codec=tiles');
    await waitStats(v, 'tile frames drawn', (s) => s.framesDrawn >= 3 && s.canvasSeq > 0);
    expect(v.page.url(), 'the token is gone from the address bar').to.not.include('token');
    const st = await stats(v);
    expect(st.codec).to.equal('tiles');
    expect(st.offered).to.deep.equal(['tiles']);

    const a = await snapshot(v);
    expect([a.width, a.height]).to.deep.equal([WIDTH, HEIGHT]);
    expectExact(a);
    await waitStats(v, 'later tile frames', (s) => s.canvasSeq >= a.seq + 5);
    const b = await snapshot(v);
    expectExact(b);
    expect(b.seq).to.be.greaterThan(a.seq);
    expect([boxX(layout, b.seq), boxY(layout, b.seq)], 'the box moved').to.not.deep.equal([
      boxX(layout, a.seq),
      boxY(layout, a.seq),
    ]);
    expect(a.rgba.equals(b.rgba), 'the canvas changed').to.equal(false);

    // Fit to window: the largest size with the surface's aspect ratio, following resizes.
    const cssSize = () =>
      v.page.evaluate(() => {
        const r = (globalThis as any).document.getElementById('screen').getBoundingClientRect();
        return [Math.round(r.width), Math.round(r.height)];
      });
    expect(await cssSize()).to.deep.equal([1280, 720]);
    await v.page.setViewportSize({ width: 500, height: 700 });
    await eventually(async () => (await cssSize())[0] === 500, 5000, 'the canvas followed the window');
    expect(await cssSize()).to.deep.equal([500, Math.floor((500 * HEIGHT) / WIDTH)]);

    // The viewer's once-a-second stats reach the server (StreamServer.clients).
    await eventually(
      async () => {
        const clients = await producer!.call<{ codec: string; viewer: { decoded?: number } | null }[]>('clients');
        return clients.some((c) => c.codec === 'tiles' && (c.viewer?.decoded ?? 0) > 0);
      },
      5000,
      "the server shows the viewer's stats",
    );
    expectNoPageErrors(v);
    await v.page.context().close();
  });

  for (const paint of ['draw', 'copy'] as const)
    it(
      `H.264 painted by ${paint === 'draw' ? 'drawImage' : 'copyTo + putImageData'} (?paint=${paint}): known ` +
        'colours at known places within tolerance, the counter readable, and it moves',
      async function () {
        const v = await openH264(this, `?codec=h264&paint=${paint}`);
        expect((await stats(v)).paintMode).to.equal(paint);
        await expectH264Pattern(v);
      },
    );

  it('H.264 paint probe: both ways timed on the first pictures, the faster kept, stages sampled', async function () {
    const v = await openH264(this);
    const s = await waitStats(v, 'the probe decided', (st) => st.paintMode !== 'probe');
    const { draw, copy } = s.paintProbeMs;
    expect(draw, 'drawImage timed').to.be.a('number');
    expect(copy, 'copyTo timed (this Chromium converts to RGBA)').to.be.a('number');
    expect(s.paintMode).to.equal(copy! < draw! ? 'copy' : 'draw');
    const stages = await v.page.evaluate(() => (globalThis as any).surfacelinkViewer.stageSamples());
    for (const name of ['transit', 'decode', 'draw']) {
      expect(stages[name].length, `${name} samples`).to.be.greaterThan(0);
      for (const ms of stages[name]) expect(ms, name).to.be.within(-50, 10000);
    }
    // The page reports its stage medians to the server once a second.
    await eventually(
      async () => {
        const mine = ((await producer!.call('clients')) as { codec: string; viewer: Record<string, number> | null }[])
          .filter((c) => c.codec === 'h264')
          .map((c) => c.viewer);
        return mine.some(
          (st) => st !== null && ['transitP50Ms', 'decodeP50Ms', 'paintP50Ms'].every((k) => Number.isFinite(st[k])),
        );
      },
      10000,
      'transitP50Ms, decodeP50Ms and paintP50Ms in StreamServer.clients[].viewer',
    );
    // Whichever way won, the picture is right.
    await expectH264Pattern(v);
  });

  async function expectH264Pattern(v: Viewer): Promise<void> {
    const a = await snapshot(v);
    expectPatternColours(a);
    await waitStats(v, 'later H.264 frames', (s) => s.canvasSeq >= a.seq + 10);
    const b = await snapshot(v);
    expectPatternColours(b);
    const moved = [boxX(layout, b.seq), boxY(layout, b.seq)];
    expect(moved, 'the box moved').to.not.deep.equal([boxX(layout, a.seq), boxY(layout, a.seq)]);
    // Where the box was, unless it is still (partly) there, is background again.
    const box = layout.box;
    const [ox, oy] = [boxX(layout, a.seq), boxY(layout, a.seq)];
    const c = layout.counter!;
    const [px, py] = [ox + box / 2 - 4, oy + box / 2 - 4];
    if (
      !overlaps(px - 4, py - 4, 16, 16, moved[0], moved[1], box, box) &&
      !overlaps(px - 4, py - 4, 16, 16, c.x, c.y, c.width, c.height) &&
      (px + 4) % GRID > 8
    ) {
      expect(maxDiff(patchMean(b, px, py, 8, 8), BG), "the box's old place is background").to.be.at.most(
        H264_TOLERANCE,
      );
    }
    const st = await stats(v);
    expect(st.encoder).to.equal(info.h264Encoder);
    expect(st.latencySamples).to.be.greaterThan(0);
    expectNoPageErrors(v);
    await v.page.context().close();
  }

  it('a wrong token: the page shows the authentication error and draws nothing', async () => {
    const v = await openViewer('', '0'.repeat(64));
    const st = await waitStats(v, 'the viewer gave up', (s) => s.state === 'error');
    expect(st.errorCode).to.equal('E_AUTH');
    expect(st.framesDrawn).to.equal(0);
    const message = v.page.locator('#message');
    expect(await message.isVisible()).to.equal(true);
    const text = await message.textContent();
    expect(text).to.include('Not authorised');
    expect(text).to.include('E_AUTH');
    expect(v.page.url()).to.not.include('token');
    expectNoPageErrors(v);
    await v.page.context().close();
  });

  it('H.264 decoder error: the viewer resets, asks for a keyframe, and frames continue', async function () {
    const v = await openH264(this);
    const before = await stats(v);
    // The next access unit reaches the decoder with its slice data scrambled.
    await v.page.evaluate(() => (globalThis as any).surfacelinkViewer.corruptNext(1));
    const failed = await waitStats(v, 'the decoder reported the corrupt access unit', (s) => s.errors > before.errors);
    expect(failed.lastError).to.match(/^decoder: /);
    expect(failed.keyframeRequests).to.be.greaterThan(before.keyframeRequests);
    const recovered = await waitStats(
      v,
      'frames after a new keyframe',
      // Deltas cannot decode after the reset: frames drawn again mean a keyframe came.
      (s) => s.keyframesReceived > before.keyframesReceived && s.framesDrawn >= failed.framesDrawn + 10,
    );
    expect(recovered.canvasSeq).to.be.greaterThan(failed.canvasSeq);
    expect(recovered.state).to.equal('streaming');
    expect(recovered.message).to.equal(null);
    expectPatternColours(await snapshot(v));
    const clients = await producer!.call<{ codec: string; keyframes: number }[]>('clients');
    expect(
      clients.filter((c) => c.codec === 'h264').map((c) => c.keyframes),
      'keyframes the server sent',
    ).to.satisfy((k: number[]) => k.some((n) => n >= 2));
    expectNoPageErrors(v);
    await v.page.context().close();
  });

  // Last: it changes the producer's surface for good.
  it(
    'the surface is resized: both codecs follow (new canvas size, ' + 'keyframe / full refresh), tiles still exact',
    async () => {
      const viewers = [await openViewer('?codec=tiles')];
      if (info.h264Encoder) viewers.push(await openViewer('?codec=h264'));
      for (const v of viewers) await waitStats(v, 'frames drawn', (s) => s.framesDrawn >= 5 && s.canvasSeq > 0);
      const [width, height] = [800, 480];
      await producer!.call('resize', { width, height });
      const drawn = await Promise.all(
        viewers.map((v) =>
          waitStats(
            v,
            'frames at the new size',
            (s) => s.width === width && s.height === height && s.framesDrawn >= 10,
          ),
        ),
      );
      const after = await Promise.all(
        viewers.map((v, i) =>
          waitStats(v, 'more frames at the new size', (s) => s.canvasSeq >= drawn[i].canvasSeq + 5),
        ),
      );
      // The producer keeps drawing its 640x360 layout into the larger (zero-filled) buffers.
      const tiles = await snapshot(viewers[0]);
      expect([tiles.width, tiles.height]).to.deep.equal([width, height]);
      expectExact(tiles);
      if (viewers[1]) {
        expect(after[1].state).to.equal('streaming');
        const h = await snapshot(viewers[1]);
        expect([h.width, h.height]).to.deep.equal([width, height]);
        expectPatternColours(h);
        expect(
          maxDiff(patchMean(h, width - 40, height - 40, 32, 32), [0, 0, 0]),
          'outside the old layout: black',
        ).to.be.at.most(H264_TOLERANCE);
      }
      for (const v of viewers) {
        const box = await v.page.evaluate(() => {
          const r = (globalThis as any).document.getElementById('screen').getBoundingClientRect();
          return [Math.round(r.width), Math.round(r.height)];
        });
        expect(box, 'fits the 1280x720 window').to.deep.equal([1200, 720]);
        expectNoPageErrors(v);
      }
    },
  );
});
