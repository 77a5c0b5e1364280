/** Baseline peer: the addon's raw channel, echoing a small message for each fd received. */
import { linuxNative as loadNative } from '../src/native/index.js';

const addon = loadNative();
const channel = addon.connect(process.argv[2]);
const reply = Buffer.alloc(16);
reply.writeUInt32LE(16, 0);
reply.writeUInt16LE(0x12, 4);
channel.start(
  Buffer.allocUnsafeSlow(65536),
  (_offset, _length, fds) => {
    if (fds) for (const fd of fds) fd.close();
    channel.send(reply);
  },
  () => process.exit(0),
);
process.send?.('ready');
