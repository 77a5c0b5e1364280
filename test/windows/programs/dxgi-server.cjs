/**
 * A SurfaceServer serving dxgi.v1 then winshm.v1 on a named pipe: argv[2] is the pipe path,
 * argv[3] JSON options { width, height, frames }. Its surface is a dxgi.v1 texture pool; once a
 * client is there it presents `frames` frames of the common.cjs picture, one whenever no client
 * holds a frame, and reports each client's mechanism and the negotiation's reason.
 */
const { lib, emit, square, gradient, advance } = require('./common.cjs');

const pipe = process.argv[2];
const opts = JSON.parse(process.argv[3] || '{}');
const width = opts.width ?? 64;
const height = opts.height ?? 48;
const frames = opts.frames ?? 5;

(async () => {
  const server = await lib.SurfaceServer.listen({ path: pipe, mechanisms: ['dxgi.v1', 'winshm.v1'], logger: () => {} });
  const surface = server.createSurface({ width, height, format: 'XRGB8888', mechanism: 'dxgi.v1' });
  const model = gradient(width, height);
  let seq = 0;
  let started = false;
  emit('listening', { path: server.path, mechanism: surface.mechanism });
  server.on('client', (c) => {
    emit('client', { id: c.id, mechanism: c.mechanism, reason: c.reason });
    if (!started) {
      started = true;
      step();
    }
  });
  function step() {
    if (seq >= frames) return emit('done', { seq });
    if (!surface.buffers().some((b) => b.holders > 0)) {
      seq++;
      advance(model, width, height, seq - 1, seq);
      const b = surface.acquire();
      const px = b.pixels(0);
      const bytes = new Uint8Array(model.buffer);
      for (let y = 0; y < height; y++) px.set(bytes.subarray(y * width * 4, (y + 1) * width * 4), y * b.stride);
      surface.present(b, seq === 1 ? undefined : { damage: [square(seq, width, height)] });
    }
    setTimeout(step, 5);
  }
})();
