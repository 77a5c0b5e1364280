/**
 * Shared by the programs test/windows/harness.ts runs in a Windows node.exe: the library from
 * SL_LIB (the repository's dist/), JSON-line events to SL_OUT (a file: node.exe under wine cannot
 * write to a Unix pipe), and the deterministic picture every frame test draws and checks.
 */
const fs = require('node:fs');
const path = require('node:path');

const out = process.env.SL_OUT;
const lib = require(path.join(process.env.SL_LIB, 'index.js'));
const native = () => require(path.join(process.env.SL_LIB, 'native', 'index.js')).loadNative();

function emit(event, fields = {}) {
  fs.appendFileSync(out, JSON.stringify({ event, t: Date.now(), ...fields }) + '\n');
}

process.on('uncaughtException', (e) => {
  emit('fatal', { code: e.code, message: String(e.stack || e) });
  process.exit(70);
});
process.on('unhandledRejection', (e) => {
  emit('fatal', { code: e && e.code, message: String((e && e.stack) || e) });
  process.exit(70);
});

/** What this process holds: kernel handles and memory. */
function usage() {
  const addon = native();
  // (The same programs run on Linux as the benchmark's baseline: there the count is of open fds.)
  const handles = addon.processHandleCount ? addon.processHandleCount() : fs.readdirSync('/proc/self/fd').length;
  return { handles, rss: process.memoryUsage().rss };
}

/**
 * The picture at sequence `seq` (1 = a full gradient; each later frame fills one 16x16 square
 * with a colour of its own), as 32-bit XRGB pixels, and the square frame `seq` changed.
 */
function square(seq, width, height) {
  return { x: (seq * 37) % (width - 16), y: (seq * 23) % (height - 16), width: 16, height: 16 };
}
function colour(seq) {
  return (Math.imul(seq, 2654435761) >>> 8) | 0xff000000;
}
function gradient(width, height) {
  const px = new Uint32Array(width * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) px[y * width + x] = 0xff000000 | (x << 16) | (y << 8) | ((x ^ y) & 0xff);
  return px;
}
/** Advances `model` (the picture at sequence `from`) to sequence `to`. */
function advance(model, width, height, from, to) {
  for (let s = Math.max(from + 1, 2); s <= to; s++) {
    const r = square(s, width, height);
    const c = colour(s) >>> 0;
    for (let y = r.y; y < r.y + r.height; y++) model.fill(c, y * width + r.x, y * width + r.x + r.width);
  }
}

module.exports = { lib, native, emit, usage, square, colour, gradient, advance };
