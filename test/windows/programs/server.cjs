/**
 * A SurfaceServer on a named pipe: argv[2] is the pipe path, argv[3] JSON options
 * { width, height, frames, clients, paceMs, releaseTimeoutMs, usageEveryMs, cursor, buffers }. It waits for
 * `clients` clients, then presents `frames` frames of the common.cjs picture (each frame redraws
 * the whole buffer from its model and reports only the square it changed as damage), one whenever
 * no client holds a frame (or every paceMs), and reports usage every 1000 frames, whenever a
 * client comes or goes, and every usageEveryMs. With `cursor`, the surface has a 24x16 cursor
 * (every pixel 0xff3366cc) at 5,6; every input event a client sends is reported.
 */
const { lib, emit, usage, square, gradient, advance } = require('./common.cjs');

const pipe = process.argv[2];
const opts = JSON.parse(process.argv[3] || '{}');
const width = opts.width ?? 96;
const height = opts.height ?? 64;
const frames = opts.frames ?? 20;
const wantClients = opts.clients ?? 1;

(async () => {
  const server = await lib.SurfaceServer.listen({
    path: pipe,
    logger: () => {},
    ...(opts.releaseTimeoutMs ? { releaseTimeoutMs: opts.releaseTimeoutMs } : {}),
  });
  // `buffers`: a fixed pool of that many (it never grows; a tick with none free is skipped).
  const pool = opts.buffers ? { buffers: opts.buffers, maxBuffers: opts.buffers } : {};
  const surface = server.createSurface({ width, height, format: 'XRGB8888', ...pool });
  const model = gradient(width, height);
  let seq = 0;
  const live = new Set(); // clients past HELLO (a raw peer that never said HELLO is gone without having come)
  let started = false;
  if (opts.cursor) {
    const pixels = new Uint8Array(24 * 16 * 4);
    new Uint32Array(pixels.buffer).fill(0xff3366cc);
    surface.setCursor({ width: 24, height: 16, hotspotX: 2, hotspotY: 3, pixels });
    surface.moveCursor(5, 6);
  }
  server.on('input', (e) => emit('input', { input: e }));
  emit('listening', { path: server.path, mechanism: surface.mechanism, ...usage() });
  if (opts.usageEveryMs)
    setInterval(
      () => emit('usage', { clients: live.size, buffers: surface.bufferCount, ...usage() }),
      opts.usageEveryMs,
    );
  server.on('client', (c) => {
    live.add(c.id);
    emit('client', { id: c.id, mechanism: c.mechanism, clients: live.size, buffers: surface.bufferCount, ...usage() });
    if (!started && live.size >= wantClients) {
      started = true;
      step();
    }
  });
  server.on('clientGone', (c, why) => {
    live.delete(c.id);
    // Usage once the session's handles are gone (the next turn of the loop).
    setImmediate(() =>
      emit('clientGone', { id: c.id, code: why.code, clients: live.size, buffers: surface.bufferCount, ...usage() }),
    );
  });

  function present() {
    let b;
    try {
      b = surface.acquire();
    } catch (e) {
      if (e.code === 'E_POOL_EXHAUSTED') return; // every buffer is held: skip this tick
      throw e;
    }
    seq++;
    advance(model, width, height, seq - 1, seq);
    const px = b.pixels(0);
    const rowBytes = width * 4;
    const bytes = new Uint8Array(model.buffer);
    for (let y = 0; y < height; y++) px.set(bytes.subarray(y * rowBytes, (y + 1) * rowBytes), y * b.stride);
    surface.present(b, seq === 1 ? undefined : { damage: [square(seq, width, height)] });
    if (seq % 1000 === 0) emit('progress', { seq, ...usage() });
  }

  function step() {
    if (seq >= frames) {
      emit('done', { seq, ...usage() });
      return;
    }
    const busy = surface.buffers().some((b) => b.holders > 0);
    if (!busy || opts.paceMs) present();
    if (opts.paceMs) setTimeout(step, opts.paceMs);
    else setImmediate(step);
  }
})();
