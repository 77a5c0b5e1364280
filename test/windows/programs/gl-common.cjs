/**
 * Shared by the GL programs of test/windows/gl.test.ts (run in a Windows node.exe by
 * harness.ts): surfacelink/gl from SL_LIB (the repository's dist/), JSON-line events to SL_OUT,
 * the known picture both processes check, and CPU buffers/frames in the shape SurfaceRenderer and
 * SurfaceImporter take.
 *
 * koffi: under wine, `require('koffi')` must find koffi's win32-x64 binary, which npm did not
 * install on Linux. When SL_KOFFI names a koffi entry point (test/windows/fixtures.ts builds a
 * private tree with it), 'koffi' resolves there; on Windows SL_KOFFI is unset and the installed
 * koffi is used.
 */
const fs = require('node:fs');
const path = require('node:path');
const Module = require('node:module');

if (process.env.SL_KOFFI) {
  const target = process.env.SL_KOFFI;
  const resolve = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    return request === 'koffi' ? target : resolve.call(this, request, ...rest);
  };
}

const out = process.env.SL_OUT;
const gl = require(path.join(process.env.SL_LIB, 'gl', 'index.js'));
const { FORMATS } = require(path.join(process.env.SL_LIB, 'formats.js'));

function emit(event, fields = {}) {
  fs.appendFileSync(out, JSON.stringify({ event, t: Date.now(), ...fields }) + '\n');
}
process.on('uncaughtException', (e) => {
  emit('fatal', { code: e.code, message: String(e.stack || e) });
  process.exit(70);
});

/** The colour (r, g, b) of block (bx, by) of the 8x8-pixel grid process A fills. */
function blockColour(bx, by) {
  const h = Math.imul(bx * 31 + by * 17 + 5, 2654435761) >>> 0;
  return [h & 0xff, (h >>> 8) & 0xff, (h >>> 16) & 0xff];
}
/** Bytes of the texture process A draws with a shader into the lower right 32x32 (RGBA, alpha 255). */
function tilePixel(x, y) {
  return [(x * 8 + y) & 0xff, (y * 8 + 3) & 0xff, (x * y) & 0xff, 255];
}
const TILE = 32;

/**
 * The picture as XRGB8888 memory bytes (B, G, R, X) with `stride`: the block grid, then the
 * shader-drawn tile. GL row y is surface row y.
 */
function picture(width, height, stride) {
  const bytes = new Uint8Array(stride * height);
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const o = y * stride + x * 4;
      const inTile = x >= width - TILE && y >= height - TILE;
      if (inTile) bytes.set(tilePixel(x - (width - TILE), y - (height - TILE)), o);
      else {
        const [r, g, b] = blockColour(x >> 3, y >> 3);
        bytes.set([b, g, r, 255], o);
      }
    }
  return bytes;
}

/** A CPU buffer in the shape of a SurfaceBuffer / Frame (XRGB8888, one plane). */
function cpuBuffer(width, height, stride, bytes, key) {
  return {
    width,
    height,
    stride,
    format: FORMATS.XRGB8888,
    planes: [{ offset: 0, stride, size: stride * height, width, height }],
    backing: { kind: 'cpu', inode: 0n, device: 0n, size: bytes.byteLength },
    handles: [],
    bufferKey: key,
    surfaceId: 1,
    damage: [],
    pixels: () => bytes,
  };
}

/** Rows of `width` pixels compared: how many pixels differ, and the first few. */
function compare(actual, actualStride, expected, expectedStride, width, height) {
  let mismatches = 0;
  const first = [];
  for (let y = 0; y < height; y++)
    for (let x = 0; x < width; x++) {
      const a = y * actualStride + x * 4;
      const e = y * expectedStride + x * 4;
      for (let c = 0; c < 4; c++)
        if (actual[a + c] !== expected[e + c]) {
          mismatches++;
          if (first.length < 5)
            first.push({ x, y, actual: [...actual.subarray(a, a + 4)], expected: [...expected.subarray(e, e + 4)] });
          break;
        }
    }
  return { mismatches, pixels: width * height, first };
}

/**
 * Draws the picture into the buffer `renderer` has begun (width × height): 8x8 scissored clears
 * in the buffer's byte order, then the tile with drawTexture's shader.
 */
function drawPicture(ctx, renderer, width, height) {
  for (let by = 0; by * 8 < height; by++)
    for (let bx = 0; bx * 8 < width; bx++) {
      const [r, g, b] = blockColour(bx, by);
      renderer.fillRect(bx * 8, by * 8, 8, 8, r, g, b);
    }
  const tile = new Uint8Array(TILE * TILE * 4);
  for (let y = 0; y < TILE; y++) for (let x = 0; x < TILE; x++) tile.set(tilePixel(x, y), (y * TILE + x) * 4);
  const texture = gl.createTexture(ctx, TILE, TILE, tile);
  gl.drawTexture(ctx, texture, TILE, TILE, width - TILE, height - TILE);
  gl.deleteTexture(ctx, texture);
  ctx.checkGlError('drawing the picture');
}

/** The GL context on SURFACELINK_ANGLE_DIR, described. */
function open() {
  const ctx = gl.openGpuContext();
  const info = {
    renderer: ctx.renderer,
    version: ctx.version,
    eglVersion: ctx.eglVersion,
    display: ctx.displaySpec.name,
    glesVersion: ctx.glesVersion,
    pbuffer: ctx.surface !== null,
    maxTextureSize: ctx.maxTextureSize,
    displayExtensions: ctx.extensions.display,
  };
  return { ctx, info };
}

module.exports = { gl, emit, picture, tilePixel, blockColour, cpuBuffer, compare, open, drawPicture, TILE };
