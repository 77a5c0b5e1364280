/**
 * The keyed-mutex order of dxgi.v1 between two processes, below the session layer: argv[2] is
 * 'owner' or 'peer', argv[3] the pipe path, argv[4] JSON options { holdMs }.
 *
 * owner: creates a 32x32 B8G8R8A8 shared texture, listens on the pipe, sends the peer one message
 *   carrying the texture's NT handle (the transport DuplicateHandles it into the peer), then
 *   acquires key 0, writes pattern A, emits 'holding', keeps the mutex `holdMs`, releases key 0
 *   and emits 'released'.
 * peer: receives the handle, opens the texture (OpenSharedResource1), waits for the owner's
 *   'holding' (file SL_HOLDING appears), then tries AcquireSync(0, 50 ms) — which must time out
 *   while the owner holds it — and AcquireSync(0, 10 s), which must succeed only after the owner
 *   released, and reads pattern A back pixel-exactly.
 */
const fs = require('node:fs');
const path = require('node:path');
const { emit, native } = require('./common.cjs');

const role = process.argv[2];
const pipe = process.argv[3];
const opts = JSON.parse(process.argv[4] || '{}');
const holdMs = opts.holdMs ?? 1500;
const W = 32;
const H = 32;
const planes = [{ offset: 0, stride: W * 4 }];
const pattern = () => {
  const px = new Uint32Array(W * H);
  for (let i = 0; i < px.length; i++) px[i] = (0xff000000 | (i * 2654435761)) >>> 0;
  return px;
};
const transport = require(path.join(process.env.SL_LIB, 'transport', 'index.js')).platformTransport();
const d3d11 = native().d3d11;
const holdingFlag = process.env.SL_HOLDING;

if (role === 'owner') {
  const texture = d3d11.createTexture(W, H, 87);
  const handle = { kind: 'nt', handle: texture.sharedHandle() };
  const listener = transport.listen({ address: pipe, policy: {} });
  listener.start(
    (channel) => {
      channel.start({ onMessage() {}, onChannelError() {} });
      channel.send(channel.writer.begin(0x10, 1).end(), [handle]);
      emit('sent');
      if (!texture.acquire(0, 5000)) throw new Error('the owner could not acquire key 0');
      texture.write(pattern(), planes);
      emit('holding');
      fs.writeFileSync(holdingFlag, '1');
      setTimeout(() => {
        texture.release(0);
        emit('released', { at: Date.now() });
        setTimeout(() => process.exit(0), 3000);
      }, holdMs);
    },
    (message) => emit('listenError', { message }),
  );
  emit('listening');
} else {
  const channel = transport.connect({ address: pipe, policy: {} });
  channel.start({
    onMessage(view, start, length, handles) {
      const texture = d3d11.openTexture(handles[0].handle);
      emit('opened', { width: texture.width, height: texture.height, format: texture.format });
      const waitHolding = () => {
        if (!fs.existsSync(holdingFlag)) return setTimeout(waitHolding, 10);
        const early = texture.acquire(0, 50);
        const started = Date.now();
        const later = early ? true : texture.acquire(0, 10000);
        const acquiredAt = Date.now();
        const got = new Uint32Array(W * H);
        texture.read(got, planes);
        texture.release(0);
        const want = pattern();
        let mismatches = 0;
        for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) mismatches++;
        emit('result', { early, later, waitedMs: acquiredAt - started, acquiredAt, mismatches });
        texture.close();
        channel.close();
      };
      waitHolding();
    },
    onChannelError(e) {
      emit('channelError', { code: e.code, message: e.message });
    },
  });
  emit('connected');
}
