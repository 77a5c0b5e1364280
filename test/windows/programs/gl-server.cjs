/**
 * Process A over the real transport: a SurfaceServer on a named pipe (argv[2]) with one
 * width × height XRGB8888 surface (winshm.v1 shared memory on Windows). When a client connects,
 * it renders the gl-common.cjs picture with ANGLE into an acquired buffer through SurfaceRenderer
 * ('readback' into the shared mapping), checks it, and presents it. Exits when the client goes.
 * argv: pipe width height
 */
const path = require('node:path');
const { gl, emit, picture, compare, open, drawPicture } = require('./gl-common.cjs');

const lib = require(path.join(process.env.SL_LIB, 'index.js'));
const [pipe, w, h] = process.argv.slice(2);
const width = Number(w);
const height = Number(h);

(async () => {
  const { ctx, info } = open();
  emit('context', info);
  const server = await lib.SurfaceServer.listen({ path: pipe, logger: () => {} });
  const surface = server.createSurface({ width, height, format: 'XRGB8888' });
  const renderer = new gl.SurfaceRenderer(ctx);
  emit('listening', { path: server.path, mechanism: surface.mechanism });
  server.on('client', (client) => {
    const buffer = surface.acquire();
    const renderPath = renderer.begin(buffer);
    drawPicture(ctx, renderer, width, height);
    const readBack = renderer.end();
    const result = compare(
      buffer.pixels(0),
      buffer.stride,
      picture(width, height, buffer.stride),
      buffer.stride,
      width,
      height,
    );
    surface.present(buffer);
    emit('presented', {
      client: client.mechanism,
      path: renderPath,
      stride: buffer.stride,
      backing: buffer.backing.kind,
      readBack,
      ...result,
    });
  });
  server.on('clientGone', () => {
    renderer.destroy();
    ctx.close();
    server.close();
    emit('done');
  });
})();
