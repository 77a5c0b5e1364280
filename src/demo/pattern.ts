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
  return Object.freeze({
    width,
    height,
    box,
    vx: 3 * speed,
    vy: 2 * speed,
    counter: counter && Object.freeze(counter),
    scale: Math.max(scale, 1),
    damageCount: counter ? 3 : 2,
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
  checkTarget(layout, pixels, stride);
  if (previous === undefined || previous < 0) {
    drawBackground(layout, pixels, stride);
  } else if (previous !== frame) {
    const b = layout.box;
    fillBackgroundRect(pixels, stride, boxX(layout, previous), boxY(layout, previous), b, b);
  }
  drawBox(layout, pixels, stride, frame);
  drawCounter(layout, pixels, stride, frame);
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

function drawBox(layout: PatternLayout, pixels: Uint8Array, stride: number, frame: number): void {
  const b = layout.box;
  const x0 = boxX(layout, frame);
  const y0 = boxY(layout, frame);
  // The hue drifts with the frame so a stuck frame is visible even when the box is at rest.
  const g = 0x60 + ((frame * 2) & 0x7f);
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
        pixels[i] = 0x20;
        pixels[i + 1] = g;
        pixels[i + 2] = 0xff;
      }
      pixels[i + 3] = 0xff;
    }
  }
}

function drawCounter(layout: PatternLayout, pixels: Uint8Array, stride: number, frame: number): void {
  const c = layout.counter;
  if (!c) return;
  const s = layout.scale;
  for (let y = c.y; y < c.y + c.height; y++) {
    const row = y * stride;
    for (let x = c.x; x < c.x + c.width; x++) put(pixels, row + x * 4, PANEL);
  }
  // Digits right to left, so no string is built for the number.
  let value = counterValue(frame);
  for (let d = COUNTER_DIGITS - 1; d >= 0; d--) {
    const glyph = GLYPHS[value % 10];
    value = Math.floor(value / 10);
    const x0 = c.x + s + d * (GLYPH_W + 1) * s;
    const y0 = c.y + s;
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
  const b = layout.box;
  let count = 0;
  if (previous === undefined || previous < 0) {
    paintBackground(painter, 0, 0, layout.width, layout.height);
  } else if (previous !== frame) {
    paintBackground(painter, boxX(layout, previous), boxY(layout, previous), b, b);
    setRect(repainted[count++], boxX(layout, previous), boxY(layout, previous), b, b);
  }
  const x0 = boxX(layout, frame);
  const y0 = boxY(layout, frame);
  const edge = Math.max(1, b >> 4);
  painter.fillRect(x0, y0, b, b, 0xff, 0xff, 0xff);
  if (b > 2 * edge)
    painter.fillRect(x0 + edge, y0 + edge, b - 2 * edge, b - 2 * edge, 0xff, 0x60 + ((frame * 2) & 0x7f), 0x20);
  if (previous !== undefined && previous >= 0) setRect(repainted[count++], x0, y0, b, b);
  const c = layout.counter;
  if (!c) return count;
  fill(painter, c.x, c.y, c.width, c.height, PANEL);
  if (previous !== undefined && previous >= 0) setRect(repainted[count++], c.x, c.y, c.width, c.height);
  const s = layout.scale;
  let value = counterValue(frame);
  for (let d = COUNTER_DIGITS - 1; d >= 0; d--) {
    const glyph = GLYPHS[value % 10];
    value = Math.floor(value / 10);
    const gx = c.x + s + d * (GLYPH_W + 1) * s;
    const gy = c.y + s;
    for (let r = 0; r < GLYPH_H; r++) {
      const bits = glyph[r];
      // Runs of lit cells in a row are one fill.
      for (let col = 0; col < GLYPH_W;) {
        if (((bits >> (GLYPH_W - 1 - col)) & 1) === 0) {
          col++;
          continue;
        }
        let end = col + 1;
        while (end < GLYPH_W && ((bits >> (GLYPH_W - 1 - end)) & 1) === 1) end++;
        fill(painter, gx + col * s, gy + r * s, (end - col) * s, s, INK);
        col = end;
      }
    }
  }
  return count;
}

/** The background (with its grid lines) inside one rectangle. */
function paintBackground(p: RectPainter, x0: number, y0: number, w: number, h: number): void {
  fill(p, x0, y0, w, h, BG);
  for (let x = Math.ceil(x0 / GRID) * GRID; x < x0 + w; x += GRID) fill(p, x, y0, 1, h, GRID_LINE);
  for (let y = Math.ceil(y0 / GRID) * GRID; y < y0 + h; y += GRID) fill(p, x0, y, w, 1, GRID_LINE);
}
