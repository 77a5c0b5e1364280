/**
 * Process A: renders the gl-common.cjs picture with ANGLE (D3D11 on Windows) into a CPU buffer
 * through SurfaceRenderer ('readback': draw, then glReadPixels into the buffer's bytes), checks it
 * pixel by pixel, and writes the buffer's bytes to argv[2] for process B.
 * argv: outFile width height stride
 */
const fs = require('node:fs');
const { gl, emit, picture, cpuBuffer, compare, open, drawPicture } = require('./gl-common.cjs');

const [file, w, h, s] = process.argv.slice(2);
const width = Number(w);
const height = Number(h);
const stride = Number(s);

const { ctx, info } = open();
emit('context', info);

// The client-buffer import of D3D11 textures is guarded by its extension.
let d3d11Import;
try {
  gl.importD3D11Texture(ctx, 1n);
  d3d11Import = 'imported?!';
} catch (e) {
  d3d11Import = `${e.code}: ${e.message}`;
}

const bytes = new Uint8Array(stride * height).fill(0x55);
const buffer = cpuBuffer(width, height, stride, bytes, 'a-0');
const renderer = new gl.SurfaceRenderer(ctx);
const path = renderer.begin(buffer);
drawPicture(ctx, renderer, width, height);
const readBack = renderer.end();
ctx.checkGlError('readback');
const result = compare(bytes, stride, picture(width, height, stride), stride, width, height);
fs.writeFileSync(file, bytes);
emit('rendered', { path, reason: renderer.reason, readBack, ...result, d3d11Import });
renderer.destroy();
ctx.close();
emit('done');
