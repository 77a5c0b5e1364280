'use strict';
/**
 * The test pattern shared by producer.js and viewer.js: a pure function of the frame's
 * sequence number, so the viewer can check every pixel of every frame it receives.
 *
 * XRGB8888, bytes in memory B, G, R, X:
 *  - background: B = x, G = y, R = 0x40, X = 0xff (the same in every frame);
 *  - a 32x32 box that moves 3 px right and 2 px down per frame, bouncing off the edges,
 *    filled with a colour that encodes the frame number: B = n & 0xff, G = (n >> 8) & 0xff,
 *    R = 0x80 | ((n >> 16) & 0x7f), X = 0xff (R >= 0x80, so it never looks like background).
 *
 * From frame n-1 to frame n only the box's old and new places change: that is the damage.
 */

const WIDTH = 256;
const HEIGHT = 144;
const BOX = 32;
const VX = 3;
const VY = 2;

/** Position along a segment of `range` pixels, bouncing at both ends. */
function bounce(travelled, range) {
  const t = travelled % (2 * range);
  return t <= range ? t : 2 * range - t;
}

/** Where the box of frame `n` is. */
function boxRect(n) {
  return { x: bounce(n * VX, WIDTH - BOX), y: bounce(n * VY, HEIGHT - BOX), width: BOX, height: BOX };
}

/** The box colour of frame `n` as [B, G, R, X]. */
function boxColour(n) {
  return [n & 0xff, (n >>> 8) & 0xff, 0x80 | ((n >>> 16) & 0x7f), 0xff];
}

function inside(rect, x, y) {
  return x >= rect.x && x < rect.x + rect.width && y >= rect.y && y < rect.y + rect.height;
}

function fillBackground(pixels, stride, rect) {
  for (let y = rect.y; y < rect.y + rect.height; y++) {
    let i = y * stride + rect.x * 4;
    for (let x = rect.x; x < rect.x + rect.width; x++, i += 4) {
      pixels[i] = x & 0xff;
      pixels[i + 1] = y & 0xff;
      pixels[i + 2] = 0x40;
      pixels[i + 3] = 0xff;
    }
  }
}

function fillBox(pixels, stride, n) {
  const rect = boxRect(n);
  const [b, g, r, a] = boxColour(n);
  for (let y = rect.y; y < rect.y + rect.height; y++) {
    let i = y * stride + rect.x * 4;
    for (let x = 0; x < rect.width; x++, i += 4) {
      pixels[i] = b;
      pixels[i + 1] = g;
      pixels[i + 2] = r;
      pixels[i + 3] = a;
    }
  }
}

/**
 * Makes a buffer show frame `n`. `previous` is the frame the buffer shows now (a pooled
 * buffer comes back holding an older frame), or undefined for a buffer never painted: then
 * the whole surface is drawn; otherwise only the old box is erased and the new one drawn.
 */
function paintFrame(pixels, stride, n, previous) {
  if (previous === undefined) fillBackground(pixels, stride, { x: 0, y: 0, width: WIDTH, height: HEIGHT });
  else if (previous !== n) fillBackground(pixels, stride, boxRect(previous));
  fillBox(pixels, stride, n);
}

/** What changed from frame n-1 to frame n: the box's old and new places. */
function frameDamage(n) {
  return [boxRect(n - 1), boxRect(n)];
}

/**
 * Null if `pixels` (rows of `stride` bytes) show frame `n` exactly, else a description of the
 * first pixel that differs.
 */
function checkFrame(pixels, stride, n) {
  const box = boxRect(n);
  const colour = boxColour(n);
  for (let y = 0; y < HEIGHT; y++) {
    let i = y * stride;
    for (let x = 0; x < WIDTH; x++, i += 4) {
      const inBox = inside(box, x, y);
      const b = inBox ? colour[0] : x & 0xff;
      const g = inBox ? colour[1] : y & 0xff;
      const r = inBox ? colour[2] : 0x40;
      if (pixels[i] !== b || pixels[i + 1] !== g || pixels[i + 2] !== r || pixels[i + 3] !== 0xff) {
        const hex = (bytes) => bytes.map((v) => v.toString(16).padStart(2, '0')).join('');
        return (
          `pixel (${x}, ${y}) is ${hex([...pixels.subarray(i, i + 4)])}, ` +
          `expected ${hex([b, g, r, 0xff])} (B G R X)`
        );
      }
    }
  }
  return null;
}

/**
 * Null if `damage` (relative to frame `previous`, which the viewer saw last, or 0 for none)
 * covers every pixel that differs between frame `previous` and frame `n`, else why not.
 * An empty list means "everything changed" and always covers.
 */
function checkDamage(damage, previous, n) {
  if (damage.length === 0) return null;
  if (previous === 0) return `the first frame carries damage ${JSON.stringify(damage)}; expected [] (everything)`;
  for (const changed of [boxRect(previous), boxRect(n)]) {
    for (let y = changed.y; y < changed.y + changed.height; y++) {
      for (let x = changed.x; x < changed.x + changed.width; x++) {
        if (!damage.some((rect) => inside(rect, x, y)))
          return (
            `pixel (${x}, ${y}) changed since frame ${previous} but is outside the ` +
            `damage ${JSON.stringify(damage)}`
          );
      }
    }
  }
  return null;
}

module.exports = {
  WIDTH,
  HEIGHT,
  FORMAT: 'XRGB8888',
  boxRect,
  boxColour,
  paintFrame,
  frameDamage,
  checkFrame,
  checkDamage,
};
