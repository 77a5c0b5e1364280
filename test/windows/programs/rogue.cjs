/**
 * A rogue server speaking the wire protocol by hand over the named pipe (the native channel and
 * the codec, no SurfaceServer): argv[2] the pipe path, argv[3] the scenario. It answers HELLO
 * with a WELCOME choosing winshm.v1, then sends the scenario's bad SCANOUT (or raw bytes), and
 * reports the client's reply (its ERROR) and its own handle count before and after.
 */
const path = require('node:path');
const { native, emit } = require('./common.cjs');

const codec = require(path.join(process.env.SL_LIB, 'protocol', 'codec.js'));
const { MessageType } = require(path.join(process.env.SL_LIB, 'protocol', 'constants.js'));

const pipe = process.argv[2];
const scenario = process.argv[3];
const addon = native();
const XRGB8888 = 0x34325258;

function scanout(over = {}) {
  const width = over.width ?? 64;
  const height = over.height ?? 32;
  const stride = over.stride ?? 256;
  return {
    surfaceId: 1,
    bufferId: 1,
    generation: 1,
    width,
    height,
    format: over.format ?? XRGB8888,
    modifier: 0n,
    orientation: 0,
    visible: { x: 0, y: 0, width, height },
    planes: [
      {
        handleIndex: over.handleIndex ?? 0,
        stride,
        offset: over.offset ?? 0,
        size: over.size ?? stride * height,
      },
    ],
  };
}

const listener = addon.pipeListen(pipe.slice('\\\\.\\pipe\\'.length));
emit('listening', { handles: addon.processHandleCount() });
listener.start((channel) => {
  if (!channel) return;
  listener.close();
  const w = new codec.MessageWriter(65536);
  const rx = Buffer.allocUnsafe(131072);
  const view = new DataView(rx.buffer, rx.byteOffset, rx.byteLength);
  const sent = [];
  let welcomed = false;
  const finish = (reply) => {
    for (const h of sent) h.close();
    channel.close();
    // Usage after everything of the session is closed, on the next turn.
    setImmediate(() => {
      emit('reply', { reply, handles: addon.processHandleCount() });
      process.exit(0);
    });
  };
  channel.start(
    rx,
    (offset, length, handles) => {
      if (handles) for (const h of handles) h.close();
      const type = codec.messageType(view, offset);
      if (!welcomed) {
        welcomed = true;
        const n = codec.writeWelcome(w, 1, {
          server: { name: 'rogue', pid: process.pid, platform: 'win32', host: { bootId: null, machineId: null } },
          clientId: 1,
          mechanism: 'winshm.v1',
          reason: 'rogue',
          rejected: [],
          limits: { maxMessage: 65536, maxHandles: 8, releaseTimeoutMs: 2000, maxHeldFrames: 1 },
        });
        channel.send(w.bytes, undefined, n);
        attack();
        return;
      }
      if (type === MessageType.ERROR) {
        const e = codec.readError(view, offset, length);
        finish({ code: e.code, message: e.message });
      } else if (type === MessageType.IMPORT_FAILED) {
        const e = codec.readImportFailed(view, offset, length);
        finish({ importFailed: e.code, message: e.reason });
      }
    },
    (code, message) => finish({ channelError: code, message }),
  );

  function sendScanout(body, handles) {
    const n = codec.writeScanout(w, body, handles.length);
    sent.push(...handles);
    channel.send(w.bytes, handles, n);
  }

  function attack() {
    switch (scenario) {
      case 'beyond-size': // a 4096-byte section for 256 × 32 = 8192 bytes of pixels
        return sendScanout(scanout(), [addon.createSection(4096)]);
      case 'lying-plane-size':
        return sendScanout(scanout({ size: 100 }), [addon.createSection(8192)]);
      case 'zero-size':
        return sendScanout(scanout({ width: 0, height: 0, stride: 0, size: 0 }), [addon.createSection(4096)]);
      case 'huge-size':
        return sendScanout(scanout({ width: 100000, height: 100000, stride: 400000 }), [addon.createSection(4096)]);
      case 'overflow-offset':
        return sendScanout(scanout({ offset: 2 ** 60 }), [addon.createSection(8192)]);
      case 'wrong-type': // a mutex where a section belongs
        return sendScanout(scanout(), [addon.createMutex()]);
      case 'wrong-count':
        return sendScanout(scanout(), [addon.createSection(8192), addon.createSection(8192)]);
      case 'bad-handle-index':
        return sendScanout(scanout({ handleIndex: 3 }), [addon.createSection(8192)]);
      case 'unknown-format':
        return sendScanout(scanout({ format: 0x11223344 }), [addon.createSection(8192)]);
      case 'not-a-handle': {
        // A SCANOUT whose one handle value (appended after the body, §9.2) names nothing in the client.
        const n = codec.writeScanout(w, scanout(), 0);
        const raw = Buffer.alloc(n + 8);
        raw.set(w.bytes.subarray(0, n));
        raw.writeUInt32LE(n + 8, 0);
        raw.writeUInt8(1, 6);
        raw.writeBigUInt64LE(0x7ffff0n, n);
        return channel._sendRaw(raw);
      }
      case 'lying-handle-count': {
        // The header declares 3 handles, but the message is too short to hold their values.
        const n = codec.writeScanout(w, scanout(), 0);
        const raw = Buffer.from(w.bytes.subarray(0, n));
        raw.writeUInt8(3, 6);
        raw.writeUInt32LE(12, 0);
        return channel._sendRaw(raw.subarray(0, 12));
      }
      default:
        emit('fatal', { message: `unknown scenario ${scenario}` });
        process.exit(2);
    }
  }
});
