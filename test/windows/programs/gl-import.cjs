/**
 * Process B: imports the CPU buffer process A wrote (argv[2]) as a GL texture with ANGLE (D3D11
 * on Windows) through SurfaceImporter ('upload': glTexSubImage2D from the bytes), reads the
 * texture back and checks it against the file and the known picture, pixel by pixel; then a
 * damage-only update, and a draw of the texture (its swizzle: XRGB bytes sample as RGB).
 * argv: inFile width height stride
 */
const fs = require('node:fs');
const { gl, emit, picture, cpuBuffer, compare, open } = require('./gl-common.cjs');

const [file, w, h, s] = process.argv.slice(2);
const width = Number(w);
const height = Number(h);
const stride = Number(s);

const { ctx, info } = open();
emit('context', info);
const bytes = new Uint8Array(fs.readFileSync(file));
const frame = cpuBuffer(width, height, stride, bytes, 'b-0');
const importer = new gl.SurfaceImporter(ctx);
const texture = importer.import(frame);
ctx.checkGlError('import');
const back = gl.readTexture(ctx, texture.texture, width, height);
const vsFile = compare(back, width * 4, bytes, stride, width, height);
const vsPicture = compare(back, width * 4, picture(width, height, stride), stride, width, height);
emit('imported', {
  path: texture.path,
  reason: texture.reason,
  uploadedBytes: texture.uploadedBytes,
  vsFile,
  vsPicture,
});

// A damage-only update: one 10x6 rectangle changes in the CPU buffer.
const rect = { x: 5, y: 3, width: 10, height: 6 };
for (let y = rect.y; y < rect.y + rect.height; y++)
  for (let x = rect.x; x < rect.x + rect.width; x++) bytes.set([1, 2, 3, 4], y * stride + x * 4);
const updated = importer.import({ ...frame, damage: [rect] });
const back2 = gl.readTexture(ctx, updated.texture, width, height);
emit('damage', { uploadedBytes: updated.uploadedBytes, ...compare(back2, width * 4, bytes, stride, width, height) });

// Drawn through its swizzle into a render texture: XRGB memory bytes (B, G, R, X) sample as (R, G, B, 1).
const target = new gl.RenderTexture(ctx, width, height);
target.bind();
gl.drawTexture(ctx, updated.texture, width, height);
const drawn = target.read(new Uint8Array(width * height * 4));
const expected = new Uint8Array(width * height * 4);
for (let y = 0; y < height; y++)
  for (let x = 0; x < width; x++) {
    const o = y * stride + x * 4;
    expected.set([bytes[o + 2], bytes[o + 1], bytes[o], 255], (y * width + x) * 4);
  }
emit('drawn', compare(drawn, width * 4, expected, width * 4, width, height));
importer.destroy();
ctx.close();
emit('done');
