/**
 * Process B over the real transport: a SurfaceClient on the named pipe argv[2]. It imports the
 * first frame into a GL texture with ANGLE through SurfaceImporter, reads the texture back and
 * checks it against the frame's shared memory and the known picture, pixel by pixel; then
 * releases the frame and disconnects.
 * argv: pipe
 */
const path = require('node:path');
const { gl, emit, picture, compare, open } = require('./gl-common.cjs');

const lib = require(path.join(process.env.SL_LIB, 'index.js'));
const pipe = process.argv[2];

(async () => {
  const { ctx, info } = open();
  emit('context', info);
  const importer = new gl.SurfaceImporter(ctx);
  const client = await lib.SurfaceClient.connect({ path: pipe, name: process.env.SL_NAME });
  emit('connected', { mechanism: client.mechanism });
  client.on('frame', (frame) => {
    const { width, height, stride } = frame;
    const texture = importer.import(frame);
    const back = gl.readTexture(ctx, texture.texture, width, height);
    emit('imported', {
      path: texture.path,
      reason: texture.reason,
      uploadedBytes: texture.uploadedBytes,
      width,
      height,
      stride,
      backing: frame.backing.kind,
      vsFrame: compare(back, width * 4, frame.pixels(0), stride, width, height),
      vsPicture: compare(back, width * 4, picture(width, height, stride), stride, width, height),
    });
    frame.release();
    importer.destroy();
    ctx.close();
    client.close();
    emit('done');
  });
})();
