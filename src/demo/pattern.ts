/**
 * The demo's test pattern for XRGB8888 surfaces (bytes B, G, R, X in memory): a dark
 * background with a grid, a box bouncing with the frame number, and the frame number in
 * a 5x7 bitmap font. A consumer reads the number back from the pixels (readCounter) and
 * compares it with the frame's sequence: equal means the pixels it sees are the frame it
 * was told about, intact.
 *
 * Everything is a pure function of (layout, frame number): the producer can repaint any
 * pooled buffer from whatever frame it last held, touching only what differs, and
 * allocates nothing per frame.
 *
 * Once someone interacts with the demo (input.v1), a frame is a Scene instead: the box where
 * the pointer put it, its colour changed by clicks, and the keys held shown as their evdev codes
 * in a panel at the bottom. The plain pattern is the scene sceneOf(frame); drawPattern() and
 * paintPattern() draw exactly what they drew before scenes existed.
 */
import type { Rect } from '../index.js';

/** Digits shown, zero-padded: fixed so the counter's area never changes size. */
export const COUNTER_DIGITS = 10;
const COUNTER_MODULUS = 10 ** COUNTER_DIGITS;
const GLYPH_W = 5;
const GLYPH_H = 7;
const GRID = 32;

// Colours as B, G, R (X is written as 0xff).
const BG = [0x1c, 0x16, 0x14] as const;
const GRID_LINE = [0x3a, 0x32, 0x2e] as const;
const PANEL = [0x00, 0x00, 0x00] as const;
const INK = [0xf0, 0xf0, 0xf0] as const;
/** Box fills a click cycles through (B, G, R); colour 0 is the pattern's own drifting hue. */
const PALETTE: readonly (readonly [number, number, number])[] = [
  [0xff, 0x80, 0x20],
  [0x40, 0xd0, 0x40],
  [0x20, 0x20, 0xe0],
  [0xe0, 0x40, 0xc0],
  [0x20, 0xe0, 0xf0],
];
/** Digits per key code in the keys panel (evdev codes are at most 0x2ff = 767). */
const KEY_DIGITS = 3;
/** Most keys the panel shows. */
const MAX_KEY_SLOTS = 6;

/*
 * Digit glyphs, one string per row, '#' lit. Drawn for this project; every glyph differs
 * from every other in several cells so a single flipped sample cannot turn one digit
 * into another.
 */
const GLYPH_ROWS: readonly string[][] = [
  ['.###.', '#...#', '#..##', '#.#.#', '##..#', '#...#', '.###.'],
  ['..#..', '.##..', '..#..', '..#..', '..#..', '..#..', '.###.'],
  ['.###.', '#...#', '....#', '...#.', '..#..', '.#...', '#####'],
  ['#####', '...#.', '..#..', '...#.', '....#', '#...#', '.###.'],
  ['...#.', '..##.', '.#.#.', '#..#.', '#####', '...#.', '...#.'],
  ['#####', '#....', '####.', '....#', '....#', '#...#', '.###.'],
  ['..##.', '.#...', '#....', '####.', '#...#', '#...#', '.###.'],
  ['#####', '....#', '...#.', '..#..', '.#...', '.#...', '.#...'],
  ['.###.', '#...#', '#...#', '.###.', '#...#', '#...#', '.###.'],
  ['.###.', '#...#', '#...#', '.####', '....#', '...#.', '.##..'],
];

/** GLYPHS[d][row] has bit (4 - col) set where digit d is lit. */
const GLYPHS: readonly Uint8Array[] = GLYPH_ROWS.map((rows) =>
  Uint8Array.from(rows, (row) => [...row].reduce((bits, c) => (bits << 1) | (c === '#' ? 1 : 0), 0)),
);

/** 35-bit glyph code → digit, for reading the counter back. */
const DIGIT_BY_CODE = new Map<number, number>(GLYPHS.map((rows, digit) => [glyphCode(rows), digit]));

function glyphCode(rows: Uint8Array): number {
  let code = 0;
  for (let r = 0; r < GLYPH_H; r++) code = code * 32 + rows[r];
  return code;
}

/** Geometry of the pattern for one surface size; compute once, reuse for every frame. */
export interface PatternLayout {
  readonly width: number;
  readonly height: number;
  /** Side of the bouncing box. */
  readonly box: number;
  /** Box speed in pixels per frame. */
  readonly vx: number;
  readonly vy: number;
  /** The counter's panel, or null when the surface is too small to show it. */
  readonly counter: Readonly<Rect> | null;
  /** Size of one font cell in pixels. */
  readonly scale: number;
  /** Rectangles patternDamage() fills: old box, new box, counter (if any). */
  readonly damageCount: number;
  /** The panel showing held keys (scenes with keys), or null when the surface is too small for it. */
  readonly keys: Readonly<Rect> | null;
  /** How many key codes the panel shows (0 without a panel). */
  readonly keySlots: number;
}

/**
 * What one frame shows. The plain pattern's frame `n` is sceneOf(layout, n); an interactive
 * producer moves the box, changes its colour and shows the keys held.
 */
export interface Scene {
  /** The frame number the counter shows. */
  frame: number;
  /** The box's top-left corner, inside the surface. */
  boxX: number;
  boxY: number;
  /** 0: the pattern's own hue, drifting with the frame; n ≥ 1: palette colour n (cycling). */
  colour: number;
  /** Evdev codes of the keys held, in the order pressed; the panel shows the first layout.keySlots. */
  keys: number[];
}

export function patternLayout(width: number, height: number): PatternLayout {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 1 || height < 1)
    throw new RangeError(`pattern size must be positive integers; got ${width}x${height}`);
  const box = Math.max(1, Math.min(64, Math.floor(Math.min(width, height) / 4)));
  // Speeds that share no factor make the box sweep the whole surface rather than one diagonal.
  const speed = Math.max(1, Math.round(box / 16));
  let counter: Rect | null = null;
  let scale = Math.min(4, Math.max(1, Math.floor(width / 160)));
  for (; scale >= 1; scale--) {
    const margin = 2 * scale;
    const w = COUNTER_DIGITS * (GLYPH_W + 1) * scale + scale;
    const h = (GLYPH_H + 2) * scale;
    if (margin + w <= width && margin + h <= height) {
      counter = { x: margin, y: margin, width: w, height: h };
      break;
    }
  }
  const s = Math.max(scale, 1);
  // The keys panel: bottom left, as many 3-digit codes as fit (each followed by a blank cell), below the counter.
  let keys: Rect | null = null;
  let keySlots = 0;
  const margin = 2 * s;
  const h = (GLYPH_H + 2) * s;
  for (let slots = MAX_KEY_SLOTS; slots >= 1; slots--) {
    const w = (slots * (KEY_DIGITS + 1) - 1) * (GLYPH_W + 1) * s + s;
    const y = height - margin - h;
    const top = counter ? counter.y + counter.height + margin : margin;
    if (margin + w <= width && y >= top) {
      keys = { x: margin, y, width: w, height: h };
      keySlots = slots;
      break;
    }
  }
  return Object.freeze({
    width,
    height,
    box,
    vx: 3 * speed,
    vy: 2 * speed,
    counter: counter && Object.freeze(counter),
    scale: s,
    damageCount: counter ? 3 : 2,
    keys: keys && Object.freeze(keys),
    keySlots,
  });
}

/** Position along a segment of `range` pixels, bouncing at both ends. */
function bounce(travelled: number, range: number): number {
  if (range <= 0) return 0;
  const t = travelled % (2 * range);
  return t <= range ? t : 2 * range - t;
}

export function boxX(layout: PatternLayout, frame: number): number {
  return bounce(frame * layout.vx, layout.width - layout.box);
}

export function boxY(layout: PatternLayout, frame: number): number {
  return bounce(frame * layout.vy, layout.height - layout.box);
}

/**
 * Makes `pixels` show frame `frame`. `previous` is the frame the buffer shows now, if it
 * shows one (a pooled buffer comes back holding an older frame): then only the old box,
 * the new box and the counter are repainted. Without it the whole surface is drawn.
 */
export function drawPattern(
  layout: PatternLayout,
  pixels: Uint8Array,
  stride: number,
  frame: number,
  previous?: number,
): void {
  const shown = previous === undefined || previous < 0 ? undefined : sceneOf(layout, previous, SCRATCH_PREVIOUS);
  drawScene(layout, pixels, stride, sceneOf(layout, frame, SCRATCH_SCENE), shown);
}

/** Scratch scenes for drawPattern/paintPattern: they allocate nothing per frame. */
const SCRATCH_SCENE: Scene = { frame: 0, boxX: 0, boxY: 0, colour: 0, keys: [] };
const SCRATCH_PREVIOUS: Scene = { frame: 0, boxX: 0, boxY: 0, colour: 0, keys: [] };

/** The plain pattern's frame `frame` as a scene (written into `out` if given). */
export function sceneOf(layout: PatternLayout, frame: number, out?: Scene): Scene {
  const scene = out ?? { frame, boxX: 0, boxY: 0, colour: 0, keys: [] };
  scene.frame = frame;
  scene.boxX = boxX(layout, frame);
  scene.boxY = boxY(layout, frame);
  scene.colour = 0;
  scene.keys.length = 0;
  return scene;
}

/** Copies scene `from` into `to` (keys included, no allocation once `to.keys` has grown). */
export function copyScene(from: Scene, to: Scene): Scene {
  to.frame = from.frame;
  to.boxX = from.boxX;
  to.boxY = from.boxY;
  to.colour = from.colour;
  to.keys.length = 0;
  for (let i = 0; i < from.keys.length; i++) to.keys.push(from.keys[i]);
  return to;
}

/** Whether the keys panel shows for this scene. */
const showsKeys = (layout: PatternLayout, scene: Scene): boolean => layout.keys !== null && scene.keys.length > 0;

/**
 * Makes `pixels` show `scene`. `previous` is the scene the buffer shows now, if any: then only
 * the old box, the keys panel, the new box and the counter are repainted; without it all of it.
 */
export function drawScene(
  layout: PatternLayout,
  pixels: Uint8Array,
  stride: number,
  scene: Scene,
  previous?: Scene,
): void {
  checkTarget(layout, pixels, stride);
  checkScene(layout, scene);
  const b = layout.box;
  if (previous === undefined) {
    drawBackground(layout, pixels, stride);
  } else {
    fillBackgroundRect(pixels, stride, previous.boxX, previous.boxY, b, b);
    const k = layout.keys;
    if (k && showsKeys(layout, previous) && !showsKeys(layout, scene))
      fillBackgroundRect(pixels, stride, k.x, k.y, k.width, k.height);
  }
  drawBox(layout, pixels, stride, scene);
  if (showsKeys(layout, scene)) drawKeys(layout, pixels, stride, scene);
  drawCounter(layout, pixels, stride, scene.frame);
}

/**
 * What changed from scene `before` to `after` (the previous present and this one), written into
 * `out` (at least sceneRects(layout).length entries; no allocation): the box's old and new
 * places, the counter, and the keys panel when either scene shows it. Returns the count.
 */
export function sceneDamage(layout: PatternLayout, before: Scene, after: Scene, out: Rect[]): number {
  const b = layout.box;
  let n = 0;
  setRect(out[n++], before.boxX, before.boxY, b, b);
  setRect(out[n++], after.boxX, after.boxY, b, b);
  const c = layout.counter;
  if (c) setRect(out[n++], c.x, c.y, c.width, c.height);
  const k = layout.keys;
  if (k && (showsKeys(layout, before) || showsKeys(layout, after))) setRect(out[n++], k.x, k.y, k.width, k.height);
  return n;
}

/** Enough rectangles for sceneDamage() and paintScene(), allocated once per surface. */
export function sceneRects(layout: PatternLayout): Rect[] {
  return Array.from({ length: layout.damageCount + 1 }, () => ({ x: 0, y: 0, width: 1, height: 1 }));
}

function checkScene(layout: PatternLayout, scene: Scene): void {
  const { boxX: x, boxY: y } = scene;
  if (!Number.isInteger(x) || !Number.isInteger(y) || x < 0 || y < 0 || x > layout.width - layout.box)
    throw new RangeError(`the box at ${x},${y} is not inside the ${layout.width}x${layout.height} surface`);
  if (y > layout.height - layout.box)
    throw new RangeError(`the box at ${x},${y} is not inside the ${layout.width}x${layout.height} surface`);
}

/**
 * What changed from frame `frame - 1` to `frame`, written into `out` (objects reused, no
 * allocation): the box's old and new places and the counter. Returns the number of
 * rectangles filled (layout.damageCount), or 0 for the first frame, which is all new.
 */
export function patternDamage(layout: PatternLayout, frame: number, out: Rect[]): number {
  if (frame <= 1) return 0;
  const b = layout.box;
  setRect(out[0], boxX(layout, frame - 1), boxY(layout, frame - 1), b, b);
  setRect(out[1], boxX(layout, frame), boxY(layout, frame), b, b);
  if (layout.counter) setRect(out[2], layout.counter.x, layout.counter.y, layout.counter.width, layout.counter.height);
  return layout.damageCount;
}

/** Rectangles to hand to patternDamage(), allocated once per surface. */
export function damageRects(layout: PatternLayout): Rect[] {
  return Array.from({ length: layout.damageCount }, () => ({ x: 0, y: 0, width: 1, height: 1 }));
}

/**
 * The frame number drawn in `pixels` (modulo 10^COUNTER_DIGITS), or -1 where the counter
 * cannot be read: the surface is too small to carry one, or the pixels are not the pattern.
 */
export function readCounter(layout: PatternLayout, pixels: Uint8Array, stride: number): number {
  const c = layout.counter;
  if (!c || !fits(layout, pixels, stride)) return -1;
  const s = layout.scale;
  const half = s >> 1;
  let value = 0;
  for (let d = 0; d < COUNTER_DIGITS; d++) {
    const x0 = c.x + s + d * (GLYPH_W + 1) * s;
    const y0 = c.y + s;
    let code = 0;
    for (let r = 0; r < GLYPH_H; r++) {
      let bits = 0;
      const row = (y0 + r * s + half) * stride;
      for (let col = 0; col < GLYPH_W; col++) {
        // The panel is black and the ink white (the box is drawn beneath), so one channel decides.
        const lit = pixels[row + (x0 + col * s + half) * 4 + 1] >= 0x80 ? 1 : 0;
        bits = (bits << 1) | lit;
      }
      code = code * 32 + bits;
    }
    const digit = DIGIT_BY_CODE.get(code);
    if (digit === undefined) return -1;
    value = value * 10 + digit;
  }
  return value;
}

/** The number the counter shows for `frame`. */
export function counterValue(frame: number): number {
  return ((frame % COUNTER_MODULUS) + COUNTER_MODULUS) % COUNTER_MODULUS;
}

// ---- drawing ----------------------------------------------------------------------------

function fits(layout: PatternLayout, pixels: Uint8Array, stride: number): boolean {
  return stride >= layout.width * 4 && pixels.length >= stride * (layout.height - 1) + layout.width * 4;
}

function checkTarget(layout: PatternLayout, pixels: Uint8Array, stride: number): void {
  if (!Number.isInteger(stride) || !fits(layout, pixels, stride))
    throw new RangeError(
      `a ${layout.width}x${layout.height} XRGB8888 pattern needs stride >= ${layout.width * 4} ` +
        `and ${layout.height} rows; got stride ${stride}, ${pixels.length} bytes`,
    );
}

function setRect(r: Rect, x: number, y: number, width: number, height: number): void {
  r.x = x;
  r.y = y;
  r.width = width;
  r.height = height;
}

function put(pixels: Uint8Array, i: number, c: readonly [number, number, number]): void {
  pixels[i] = c[0];
  pixels[i + 1] = c[1];
  pixels[i + 2] = c[2];
  pixels[i + 3] = 0xff;
}

function isGrid(x: number, y: number): boolean {
  return x % GRID === 0 || y % GRID === 0;
}

/** The whole background: one grid row and one plain row, then copied (far cheaper than per pixel). */
function drawBackground(layout: PatternLayout, pixels: Uint8Array, stride: number): void {
  const rowBytes = layout.width * 4;
  for (let x = 0; x < layout.width; x++) put(pixels, x * 4, GRID_LINE);
  if (layout.height < 2) return;
  const plain = stride;
  for (let x = 0; x < layout.width; x++) put(pixels, plain + x * 4, x % GRID === 0 ? GRID_LINE : BG);
  for (let y = 2; y < layout.height; y++) {
    const src = y % GRID === 0 ? 0 : plain;
    pixels.copyWithin(y * stride, src, src + rowBytes);
  }
}

function fillBackgroundRect(pixels: Uint8Array, stride: number, x0: number, y0: number, w: number, h: number): void {
  for (let y = y0; y < y0 + h; y++) {
    const row = y * stride;
    for (let x = x0; x < x0 + w; x++) put(pixels, row + x * 4, isGrid(x, y) ? GRID_LINE : BG);
  }
}

/** The box's inner colour (B, G, R) in `scene`, as three bytes packed 0xBBGGRR. */
function boxFill(scene: Scene): number {
  // The hue drifts with the frame so a stuck frame is visible even when the box is at rest.
  if (scene.colour === 0) return (0x20 << 16) | ((0x60 + ((scene.frame * 2) & 0x7f)) << 8) | 0xff;
  const c = PALETTE[(scene.colour - 1) % PALETTE.length];
  return (c[0] << 16) | (c[1] << 8) | c[2];
}

function drawBox(layout: PatternLayout, pixels: Uint8Array, stride: number, scene: Scene): void {
  const b = layout.box;
  const x0 = scene.boxX;
  const y0 = scene.boxY;
  const fillColour = boxFill(scene);
  const fb = fillColour >> 16;
  const g = (fillColour >> 8) & 0xff;
  const fr = fillColour & 0xff;
  const edge = Math.max(1, b >> 4);
  for (let y = 0; y < b; y++) {
    const row = (y0 + y) * stride;
    const yEdge = y < edge || y >= b - edge;
    for (let x = 0; x < b; x++) {
      const i = row + (x0 + x) * 4;
      if (yEdge || x < edge || x >= b - edge) {
        pixels[i] = 0xff;
        pixels[i + 1] = 0xff;
        pixels[i + 2] = 0xff;
      } else {
        pixels[i] = fb;
        pixels[i + 1] = g;
        pixels[i + 2] = fr;
      }
      pixels[i + 3] = 0xff;
    }
  }
}

function drawCounter(layout: PatternLayout, pixels: Uint8Array, stride: number, frame: number): void {
  const c = layout.counter;
  if (!c) return;
  fillPanel(pixels, stride, c);
  drawDigits(pixels, stride, c.x + layout.scale, c.y + layout.scale, layout.scale, counterValue(frame), COUNTER_DIGITS);
}

/** The keys panel: each held key's code in 3 digits, one blank cell between codes. */
function drawKeys(layout: PatternLayout, pixels: Uint8Array, stride: number, scene: Scene): void {
  const k = layout.keys!;
  const s = layout.scale;
  fillPanel(pixels, stride, k);
  const shown = Math.min(scene.keys.length, layout.keySlots);
  for (let i = 0; i < shown; i++)
    drawDigits(
      pixels,
      stride,
      k.x + s + i * (KEY_DIGITS + 1) * (GLYPH_W + 1) * s,
      k.y + s,
      s,
      scene.keys[i],
      KEY_DIGITS,
    );
}

function fillPanel(pixels: Uint8Array, stride: number, c: Readonly<Rect>): void {
  for (let y = c.y; y < c.y + c.height; y++) {
    const row = y * stride;
    for (let x = c.x; x < c.x + c.width; x++) put(pixels, row + x * 4, PANEL);
  }
}

/** `count` digits of `value` (zero-padded) in cells of scale `s` from (x, y). */
function drawDigits(
  pixels: Uint8Array,
  stride: number,
  x: number,
  y: number,
  s: number,
  value: number,
  count: number,
): void {
  // Digits right to left, so no string is built for the number.
  for (let d = count - 1; d >= 0; d--) {
    const glyph = GLYPHS[value % 10];
    value = Math.floor(value / 10);
    const x0 = x + d * (GLYPH_W + 1) * s;
    const y0 = y;
    for (let r = 0; r < GLYPH_H; r++) {
      const bits = glyph[r];
      for (let col = 0; col < GLYPH_W; col++) {
        if (((bits >> (GLYPH_W - 1 - col)) & 1) === 0) continue;
        for (let dy = 0; dy < s; dy++) {
          const row = (y0 + r * s + dy) * stride;
          for (let dx = 0; dx < s; dx++) put(pixels, row + (x0 + col * s + dx) * 4, INK);
        }
      }
    }
  }
}

// ---- the same pattern drawn with GL ---------------------------------------------------------

/** Something that fills rectangles with an RGB colour, exact to the byte (SurfaceRenderer.fillRect). */
export interface RectPainter {
  fillRect(x: number, y: number, width: number, height: number, r: number, g: number, b: number): void;
}

const fill = (p: RectPainter, x: number, y: number, w: number, h: number, c: readonly [number, number, number]): void =>
  p.fillRect(x, y, w, h, c[2], c[1], c[0]);

/**
 * drawPattern() as rectangle fills (GL scissored clears): the same pixels, byte for byte.
 * Returns how many of `repainted` it filled: the rectangles it painted (old box, new box,
 * counter), or 0 when it drew everything — what a readback has to copy.
 */
export function paintPattern(
  layout: PatternLayout,
  painter: RectPainter,
  frame: number,
  previous: number | undefined,
  repainted: Rect[],
): number {
  const shown = previous === undefined || previous < 0 ? undefined : sceneOf(layout, previous, SCRATCH_PREVIOUS);
  return paintScene(layout, painter, sceneOf(layout, frame, SCRATCH_SCENE), shown, repainted);
}

/**
 * drawScene() as rectangle fills: the same pixels, byte for byte. Returns how many of
 * `repainted` (sceneRects(layout) is enough) it filled, or 0 when it drew everything.
 */
export function paintScene(
  layout: PatternLayout,
  painter: RectPainter,
  scene: Scene,
  previous: Scene | undefined,
  repainted: Rect[],
): number {
  checkScene(layout, scene);
  const b = layout.box;
  let count = 0;
  const k = layout.keys;
  if (previous === undefined) {
    paintBackground(painter, 0, 0, layout.width, layout.height);
  } else {
    paintBackground(painter, previous.boxX, previous.boxY, b, b);
    setRect(repainted[count++], previous.boxX, previous.boxY, b, b);
    if (k && showsKeys(layout, previous) && !showsKeys(layout, scene)) {
      paintBackground(painter, k.x, k.y, k.width, k.height);
      setRect(repainted[count++], k.x, k.y, k.width, k.height);
    }
  }
  const x0 = scene.boxX;
  const y0 = scene.boxY;
  const edge = Math.max(1, b >> 4);
  painter.fillRect(x0, y0, b, b, 0xff, 0xff, 0xff);
  const inner = boxFill(scene);
  if (b > 2 * edge)
    painter.fillRect(x0 + edge, y0 + edge, b - 2 * edge, b - 2 * edge, inner & 0xff, (inner >> 8) & 0xff, inner >> 16);
  if (previous !== undefined) setRect(repainted[count++], x0, y0, b, b);
  const s = layout.scale;
  if (k && showsKeys(layout, scene)) {
    fill(painter, k.x, k.y, k.width, k.height, PANEL);
    if (previous !== undefined) setRect(repainted[count++], k.x, k.y, k.width, k.height);
    const shown = Math.min(scene.keys.length, layout.keySlots);
    for (let i = 0; i < shown; i++)
      paintDigits(painter, k.x + s + i * (KEY_DIGITS + 1) * (GLYPH_W + 1) * s, k.y + s, s, scene.keys[i], KEY_DIGITS);
  }
  const c = layout.counter;
  if (!c) return count;
  fill(painter, c.x, c.y, c.width, c.height, PANEL);
  if (previous !== undefined) setRect(repainted[count++], c.x, c.y, c.width, c.height);
  paintDigits(painter, c.x + s, c.y + s, s, counterValue(scene.frame), COUNTER_DIGITS);
  return count;
}

/** drawDigits() as fills: runs of lit cells in a row are one fill. */
function paintDigits(painter: RectPainter, x: number, y: number, s: number, value: number, count: number): void {
  for (let d = count - 1; d >= 0; d--) {
    const glyph = GLYPHS[value % 10];
    value = Math.floor(value / 10);
    const gx = x + d * (GLYPH_W + 1) * s;
    for (let r = 0; r < GLYPH_H; r++) {
      const bits = glyph[r];
      for (let col = 0; col < GLYPH_W;) {
        if (((bits >> (GLYPH_W - 1 - col)) & 1) === 0) {
          col++;
          continue;
        }
        let end = col + 1;
        while (end < GLYPH_W && ((bits >> (GLYPH_W - 1 - end)) & 1) === 1) end++;
        fill(painter, gx + col * s, y + r * s, (end - col) * s, s, INK);
        col = end;
      }
    }
  }
}

/** The background (with its grid lines) inside one rectangle. */
function paintBackground(p: RectPainter, x0: number, y0: number, w: number, h: number): void {
  fill(p, x0, y0, w, h, BG);
  for (let x = Math.ceil(x0 / GRID) * GRID; x < x0 + w; x += GRID) fill(p, x, y0, 1, h, GRID_LINE);
  for (let y = Math.ceil(y0 / GRID) * GRID; y < y0 + h; y += GRID) fill(p, x0, y, w, 1, GRID_LINE);
}
