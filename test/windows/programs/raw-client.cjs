/**
 * A client speaking the wire by hand (native pipe channel, raw bytes): argv[2] the pipe path,
 * argv[3] the scenario. It sends one bad message to a real SurfaceServer and reports the
 * server's ERROR.
 */
const path = require('node:path');
const { native, emit } = require('./common.cjs');

const codec = require(path.join(process.env.SL_LIB, 'protocol', 'codec.js'));
const { MessageType } = require(path.join(process.env.SL_LIB, 'protocol', 'constants.js'));

const addon = native();
const channel = addon.pipeConnect(process.argv[2].slice('\\\\.\\pipe\\'.length));
const scenario = process.argv[3];
const rx = Buffer.allocUnsafe(131072);
const view = new DataView(rx.buffer, rx.byteOffset, rx.byteLength);
const done = (reply) => {
  channel.close();
  emit('reply', { reply });
  setImmediate(() => process.exit(0));
};
channel.start(
  rx,
  (offset, length, handles) => {
    if (handles) for (const h of handles) h.close();
    if (codec.messageType(view, offset) === MessageType.ERROR) {
      const e = codec.readError(view, offset, length);
      done({ code: e.code, message: e.message });
    }
  },
  (code, message) => done({ channelError: code, message }),
);
const raw = Buffer.alloc(16);
switch (scenario) {
  case 'not-a-handle': // 16 bytes: an unknown message type with one handle value that names nothing
    raw.writeUInt32LE(16, 0);
    raw.writeUInt16LE(0x7f, 4);
    raw.writeUInt8(1, 6);
    raw.writeBigUInt64LE(0x7ffff0n, 8);
    channel._sendRaw(raw);
    break;
  case 'short-length':
    raw.writeUInt32LE(4, 0);
    channel._sendRaw(raw.subarray(0, 8));
    break;
  case 'huge-length':
    raw.writeUInt32LE(0xffffffff, 0);
    channel._sendRaw(raw.subarray(0, 8));
    break;
  default:
    emit('fatal', { message: `unknown scenario ${scenario}` });
    process.exit(2);
}
