/**
 * input.v1 and cursor.v1 messages, byte for byte (docs/protocol.md §3.11–§3.19 and the worked
 * bytes of §8.10): each encoder's output, the decoders' round trip and what they refuse.
 */
import { expect } from 'chai';
import {
  MessageWriter,
  readButton,
  readCursorMove,
  readCursorShape,
  readInputMode,
  readKey,
  readMotion,
  readPointer,
  readScroll,
  readTouch,
  writeButton,
  writeCursorMove,
  writeCursorShape,
  writeInputMode,
  writeKey,
  writeMotion,
  writePointer,
  writeScroll,
  writeTouch,
} from '../../src/protocol/codec.js';
import { MessageType, messageSender } from '../../src/protocol/constants.js';

const w = new MessageWriter(65536);
const view = (): DataView => new DataView(w.bytes.buffer, w.bytes.byteOffset, w.bytes.byteLength);
const hex = (n: number): string => Buffer.from(w.bytes.subarray(0, n)).toString('hex').match(/../g)!.join(' ');

describe('input.v1 / cursor.v1 codec (unit)', () => {
  it('writes the bytes docs/protocol.md §8.10 shows', () => {
    expect(hex(writeKey(w, 1, 30, true))).to.equal('14 00 00 00 30 00 00 00 01 00 00 00 1e 00 00 00 01 00 00 00');
    expect(hex(writePointer(w, 1, 320, 200))).to.equal('14 00 00 00 31 00 00 00 01 00 00 00 40 01 00 00 c8 00 00 00');
    expect(hex(writeMotion(w, 1, -5, 3))).to.equal('14 00 00 00 32 00 00 00 01 00 00 00 fb ff ff ff 03 00 00 00');
    expect(hex(writeButton(w, 1, 0x110, true))).to.equal('14 00 00 00 33 00 00 00 01 00 00 00 10 01 00 00 01 00 00 00');
    expect(hex(writeScroll(w, 1, 0, -1))).to.equal('14 00 00 00 34 00 00 00 01 00 00 00 00 00 00 00 ff ff ff ff');
    expect(hex(writeTouch(w, 1, 0, 2, 100, 50))).to.equal(
      '1c 00 00 00 35 00 00 00 01 00 00 00 00 00 00 00 02 00 00 00 64 00 00 00 32 00 00 00',
    );
    expect(hex(writeInputMode(w, 1, 1))).to.equal('10 00 00 00 36 00 00 00 01 00 00 00 01 00 00 00');
    expect(
      hex(writeCursorShape(w, { surfaceId: 1, serial: 3, width: 12, height: 19, hotspotX: 0, hotspotY: 0 })),
    ).to.equal('20 00 00 00 40 00 01 00 01 00 00 00 03 00 00 00 0c 00 00 00 13 00 00 00 00 00 00 00 00 00 00 00');
    expect(
      hex(writeCursorShape(w, { surfaceId: 1, serial: 4, width: 0, height: 0, hotspotX: 0, hotspotY: 0 })),
    ).to.equal('20 00 00 00 40 00 00 00 01 00 00 00 04 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00');
    expect(hex(writeCursorMove(w, 1, 100, -2, true))).to.equal(
      '18 00 00 00 41 00 00 00 01 00 00 00 64 00 00 00 fe ff ff ff 01 00 00 00',
    );
  });

  it('reads back what it wrote', () => {
    expect(readKey(view(), 0, writeKey(w, 7, 0x2ff, false))).to.deep.equal({ surfaceId: 7, code: 0x2ff, pressed: 0 });
    expect(readPointer(view(), 0, writePointer(w, 7, 0, 16383))).to.deep.equal({ surfaceId: 7, x: 0, y: 16383 });
    expect(readMotion(view(), 0, writeMotion(w, 7, -16384, 16384))).to.deep.equal({
      surfaceId: 7,
      dx: -16384,
      dy: 16384,
    });
    expect(readButton(view(), 0, writeButton(w, 7, 0x117, true))).to.deep.equal({
      surfaceId: 7,
      button: 0x117,
      pressed: 1,
    });
    expect(readScroll(view(), 0, writeScroll(w, 7, 1024, -1024))).to.deep.equal({ surfaceId: 7, dx: 1024, dy: -1024 });
    expect(readTouch(view(), 0, writeTouch(w, 7, 3, 15, 1, 2))).to.deep.equal({
      surfaceId: 7,
      phase: 3,
      slot: 15,
      x: 1,
      y: 2,
    });
    expect(readInputMode(view(), 0, writeInputMode(w, 7, 0))).to.deep.equal({ surfaceId: 7, mode: 0 });
    const shape = { surfaceId: 7, serial: 9, width: 256, height: 1, hotspotX: 255, hotspotY: 0 };
    expect(readCursorShape(view(), 0, writeCursorShape(w, shape))).to.deep.equal(shape);
    expect(readCursorMove(view(), 0, writeCursorMove(w, 7, -2147483648, 2147483647, false))).to.deep.equal({
      surfaceId: 7,
      x: -2147483648,
      y: 2147483647,
      visible: false,
    });
  });

  it('refuses malformed bodies with stable codes', () => {
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return (e as { code?: string }).code;
      }
      return undefined;
    };
    let n = writeKey(w, 1, 30, true);
    expect(code(() => readKey(view(), 0, n - 4))).to.equal('E_MALFORMED');
    w.bytes[7] = 1;
    expect(code(() => readKey(view(), 0, n))).to.equal('E_MALFORMED');
    n = writeInputMode(w, 1, 2);
    expect(code(() => readInputMode(view(), 0, n))).to.equal('E_MALFORMED');
    n = writeCursorMove(w, 1, 0, 0, true);
    w.bytes[20] = 3; // an unknown flag bit
    expect(code(() => readCursorMove(view(), 0, n))).to.equal('E_MALFORMED');
    n = writeCursorShape(w, { surfaceId: 1, serial: 1, width: 4, height: 4, hotspotX: 0, hotspotY: 0 });
    w.bytes[6] = 0; // an image without its memfd
    expect(code(() => readCursorShape(view(), 0, n))).to.equal('E_HANDLE_COUNT');
    n = writeCursorShape(w, { surfaceId: 1, serial: 1, width: 0, height: 0, hotspotX: 0, hotspotY: 0 });
    w.bytes[6] = 1; // no image, yet a handle
    expect(code(() => readCursorShape(view(), 0, n))).to.equal('E_HANDLE_COUNT');
  });

  it('knows who sends each type (a misdirected one is E_UNEXPECTED, not E_UNKNOWN_TYPE)', () => {
    for (const t of ['KEY', 'POINTER', 'MOTION', 'BUTTON', 'SCROLL', 'TOUCH'] as const)
      expect(messageSender(MessageType[t]), t).to.equal('client');
    for (const t of ['INPUT_MODE', 'CURSOR_SHAPE', 'CURSOR_MOVE'] as const)
      expect(messageSender(MessageType[t]), t).to.equal('server');
  });
});
