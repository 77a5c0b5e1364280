/**
 * A SurfaceClient on a named pipe: argv[2] is the pipe path, argv[3] JSON options
 * { frames, hold, every, cursor, input, check, carried }. For every frame it checks the pixels against the picture
 * the server drew at that sequence (pixel-exact) and against its own copy built only from the damage
 * rectangles (damage exact), releases the frame (unless `hold`: then it keeps the first frame
 * and never releases), and reports; it exits after `frames` frames. With `cursor` it reports the
 * cursor it is shown; with `input` it sends a key, a pointer position, a button and a scroll
 * after the first frame. `check: false` skips the pixel checks (bench/windows.ts times delivery
 * alone); `done` then carries the time from the first frame to the last. With `carried` its `disconnect`
 * also reports its handles to sections, mutexes and events before and after the session (the bad-input tests: what a
 * rejected message carried must be closed).
 */
const { lib, native, emit, usage, gradient, advance } = require('./common.cjs');

const pipe = process.argv[2];
const opts = JSON.parse(process.argv[3] || '{}');

/**
 * Handles to what the rogue's messages carry (sections, mutexes), counted by kind: unlike the whole count, which
 * wine moves by one now and then with handles of its own (an event, seen), these change only with what the
 * session received. Events are reported too, not judged.
 */
function carried() {
  if (!opts.carried || process.platform !== 'win32') return null;
  const addon = native();
  return {
    section: addon.processHandleCount('section'),
    mutant: addon.processHandleCount('mutant'),
    event: addon.processHandleCount('event'),
  };
}

(async () => {
  const beforeConnect = usage().handles;
  const carriedBefore = carried();
  const client = await lib.SurfaceClient.connect({
    path: pipe,
    name: process.env.SL_NAME,
    ...(opts.cursor ? { cursor: true } : {}),
    ...(opts.input ? { input: true } : {}),
  });
  client.on('cursor', ({ surfaceId, state, shapeChanged }) => {
    const img = state.image;
    const px = img && new Uint32Array(img.pixels.buffer, img.pixels.byteOffset, img.pixels.length / 4);
    emit('cursor', {
      surfaceId,
      shapeChanged,
      x: state.x,
      y: state.y,
      visible: state.visible,
      image: img && { width: img.width, height: img.height, hotspotX: img.hotspotX, hotspotY: img.hotspotY },
      uniform: px ? px.every((v) => v === px[0]) && px[0] >>> 0 : null,
    });
  });
  emit('connected', {
    mechanism: client.mechanism,
    reason: client.negotiation && client.negotiation.reason,
    ...usage(),
  });
  let expected = null;
  let expectedSeq = 0;
  let damaged = null;
  let frames = 0;
  let pixelMismatches = 0;
  let damageMismatches = 0;
  let held = null;
  let lastSeq = 0;
  let firstAt = 0;
  // Handles once the session is torn down, beside the count before it began: each client is a fresh
  // process, so what differs between bad-input scenarios is what a message leaked. The lowest of a
  // few samples: closing a pipe completes its aborted reads asynchronously.
  client.on('disconnect', (d) => {
    const samples = [];
    const sample = () => {
      samples.push({ handles: usage().handles, carried: carried() });
      if (samples.length < 5) setTimeout(sample, 100);
      else {
        const least = (f) => Math.min(...samples.map(f));
        emit('disconnect', {
          code: d.code,
          message: d.message,
          frames,
          beforeConnect,
          after: least((s) => s.handles),
          carriedBefore,
          carriedAfter: carriedBefore && {
            section: least((s) => s.carried.section),
            mutant: least((s) => s.carried.mutant),
            event: least((s) => s.carried.event),
          },
        });
      }
    };
    setImmediate(sample);
  });
  client.on('importFailed', (e) => emit('importFailed', { code: e.code, message: e.message }));
  client.on('frame', (frame) => {
    const { width, height, stride } = frame;
    const px = frame.pixels(0);
    if (frames === 0) firstAt = performance.now();
    if (opts.check === false) {
      frames++;
      lastSeq = frame.sequence;
      frame.release();
      if (opts.frames && frame.sequence >= opts.frames) {
        emit('done', { frames, lastSeq, elapsedMs: performance.now() - firstAt, ...usage() });
        client.close();
      }
      return;
    }
    if (!expected) {
      expected = gradient(width, height);
      expectedSeq = 1;
      damaged = new Uint32Array(width * height);
    }
    advance(expected, width, height, expectedSeq, frame.sequence);
    expectedSeq = frame.sequence;
    const row = new Uint32Array(width);
    const rowBytes = new Uint8Array(row.buffer);
    const rects = frame.damage && frame.damage.length ? frame.damage : [{ x: 0, y: 0, width, height }];
    for (const r of rects)
      for (let y = r.y; y < r.y + r.height; y++) {
        rowBytes.set(px.subarray(y * stride, y * stride + width * 4));
        damaged.set(row.subarray(r.x, r.x + r.width), y * width + r.x);
      }
    for (let y = 0; y < height; y++) {
      rowBytes.set(px.subarray(y * stride, y * stride + width * 4));
      for (let x = 0; x < width; x++) {
        if (row[x] !== expected[y * width + x] >>> 0) pixelMismatches++;
        if (row[x] !== damaged[y * width + x]) damageMismatches++;
      }
    }
    frames++;
    lastSeq = frame.sequence;
    if (opts.input && frames === 1) {
      const id = frame.surfaceId;
      client.sendKey(id, 30, true);
      client.sendPointer(id, { x: 10, y: 20 });
      client.sendButton(id, 0x110, true);
      client.sendScroll(id, { dx: 0, dy: -2 });
    }
    if (frames === 1 || frames % (opts.every ?? 1000) === 0 || (opts.frames && frame.sequence >= opts.frames))
      emit('frame', {
        seq: frame.sequence,
        frames,
        pixelMismatches,
        damageMismatches,
        mechanism: frame.mechanism,
        width,
        height,
        ...usage(),
      });
    if (opts.hold) {
      if (!held) held = frame;
      else frame.release();
      if (frames === 1) emit('holding', { seq: frame.sequence });
    } else frame.release();
    if (opts.frames && frame.sequence >= opts.frames) {
      emit('done', { frames, lastSeq, pixelMismatches, damageMismatches, ...usage() });
      client.close();
    }
  });
})();
