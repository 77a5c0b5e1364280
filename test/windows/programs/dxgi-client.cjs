/**
 * A SurfaceClient offering dxgi.v1 then winshm.v1: argv[2] is the pipe path, argv[3] JSON options
 * { frames, luid }. `luid` replaces the adapter LUID of its dxgi.v1 offer (to play a client on
 * another GPU). Checks every frame pixel-exactly against the common.cjs picture and reports the
 * mechanism each frame came by; exits after `frames` frames.
 */
const path = require('node:path');
const { lib, emit, gradient, advance } = require('./common.cjs');

const pipe = process.argv[2];
const opts = JSON.parse(process.argv[3] || '{}');
if (opts.luid) {
  const dxgi = require(path.join(process.env.SL_LIB, 'mechanisms', 'index.js')).mechanisms.get('dxgi.v1');
  dxgi.offer = () => ({ luid: opts.luid });
}

(async () => {
  const client = await lib.SurfaceClient.connect({ path: pipe, mechanisms: ['dxgi.v1', 'winshm.v1'] });
  emit('connected', {
    mechanism: client.mechanism,
    reason: client.negotiation && client.negotiation.reason,
    rejected: client.negotiation && client.negotiation.rejected,
  });
  let expected = null;
  let expectedSeq = 0;
  let mismatches = 0;
  let frames = 0;
  client.on('importFailed', (e) => emit('importFailed', { code: e.code, message: e.message }));
  client.on('frame', (frame) => {
    const { width, height, stride } = frame;
    if (!expected) {
      expected = gradient(width, height);
      expectedSeq = 1;
    }
    advance(expected, width, height, expectedSeq, frame.sequence);
    expectedSeq = frame.sequence;
    const px = frame.pixels(0);
    const row = new Uint32Array(width);
    const rowBytes = new Uint8Array(row.buffer);
    for (let y = 0; y < height; y++) {
      rowBytes.set(px.subarray(y * stride, y * stride + width * 4));
      for (let x = 0; x < width; x++) if (row[x] !== expected[y * width + x] >>> 0) mismatches++;
    }
    frames++;
    emit('frame', { seq: frame.sequence, mechanism: frame.mechanism, mismatches, identity: frame.identity.kind });
    frame.release();
    if (frames >= (opts.frames ?? 5)) {
      emit('done', { frames, mismatches });
      client.close();
    }
  });
})();
