import { expect } from 'chai';
import {
  MessageWriter,
  readFrame,
  readHello,
  readScanout,
  readWelcome,
  writeFrame,
  writeHello,
  writeScanout,
  writeWelcome,
  releaseBufferId,
  releaseSequence,
  releaseSurfaceId,
  writeRelease,
  checkRelease,
  readError,
  writeError,
} from '../../src/protocol/codec.js';
import { HEADER_SIZE, MAGIC, MessageType } from '../../src/protocol/constants.js';
import { FORMATS, MODIFIER_INVALID, fourcc, fourccToString, linearLayout } from '../../src/formats.js';
import { validateDescriptor } from '../../src/protocol/validate.js';
import { ErrorCode, errorCodeName } from '../../src/errors.js';

function view(w: MessageWriter): DataView {
  return new DataView(w.bytes.buffer, w.bytes.byteOffset, w.bytes.byteLength);
}

describe('protocol codec (unit)', () => {
  const w = new MessageWriter(65536);

  it('frames every message with length, type and handle count', () => {
    const n = writeRelease(w, 3, 4, 5);
    const v = view(w);
    expect(n).to.equal(24);
    expect(v.getUint32(0, true)).to.equal(24);
    expect(v.getUint16(4, true)).to.equal(MessageType.RELEASE);
    expect(v.getUint8(6)).to.equal(0);
    checkRelease(v, 0, n);
    expect([releaseSurfaceId(v, 0), releaseBufferId(v, 0), releaseSequence(v, 0)]).to.deep.equal([3, 4, 5]);
  });

  it('round-trips HELLO and WELCOME, magic included', () => {
    const info = {
      name: 'viewer',
      pid: 42,
      platform: 'linux',
      host: { bootId: 'b', machineId: null },
      mechanisms: [{ name: 'shm.v1' }],
    };
    let n = writeHello(w, 1, 3, info);
    expect(view(w).getUint32(HEADER_SIZE, true)).to.equal(MAGIC);
    expect(Buffer.from(w.bytes.subarray(8, 12)).toString('latin1')).to.equal('SLNK');
    expect(readHello(view(w), 0, n)).to.deep.equal({ minVersion: 1, maxVersion: 3, info });
    const welcome = {
      server: { name: 's', pid: 1, platform: 'linux', host: { bootId: null, machineId: null } },
      clientId: 7,
      mechanism: 'shm.v1',
      reason: 'because',
      rejected: [{ name: 'dmabuf.v1', reason: 'no' }],
      limits: { maxMessage: 65536, maxHandles: 8, releaseTimeoutMs: 2000, maxHeldFrames: 1 },
    };
    n = writeWelcome(w, 1, welcome);
    expect(readWelcome(view(w), 0, n)).to.deep.equal({ version: 1, info: welcome });
  });

  it('refuses HELLO offers that repeat a mechanism or have absurd names', () => {
    const base = { name: 'v', pid: 1, platform: 'linux', host: { bootId: null, machineId: null } };
    let n = writeHello(w, 1, 1, { ...base, mechanisms: [{ name: 'shm.v1' }, { name: 'shm.v1' }] });
    expect(() => readHello(view(w), 0, n))
      .to.throw(/offered twice/)
      .with.property('code', 'E_MALFORMED');
    n = writeHello(w, 1, 1, { ...base, mechanisms: [{ name: 'x'.repeat(65) }] });
    expect(() => readHello(view(w), 0, n))
      .to.throw()
      .with.property('code', 'E_MALFORMED');
  });

  it('round-trips SCANOUT with a 64-bit modifier and two planes', () => {
    const desc = {
      surfaceId: 1,
      bufferId: 2,
      generation: 3,
      width: 64,
      height: 32,
      format: FORMATS.NV12.fourcc,
      modifier: MODIFIER_INVALID,
      orientation: 1,
      visible: { x: 0, y: 0, width: 64, height: 32 },
      planes: [
        { handleIndex: 0, stride: 64, offset: 0, size: 2048 },
        { handleIndex: 0, stride: 64, offset: 4096, size: 1024 },
      ],
    };
    const n = writeScanout(w, desc, 1);
    expect(n).to.equal(8 + 56 + 2 * 24);
    expect(readScanout(view(w), 0, n, 1)).to.deep.equal(desc);
  });

  it('round-trips FRAME with damage and large timestamps', () => {
    const damage = [{ x: 1, y: 2, width: 3, height: 4 }];
    const n = writeFrame(w, 1, 2, 2 ** 40 + 1, 2 ** 52 + 3, damage, 1);
    expect(readFrame(view(w), 0, n)).to.deep.equal({
      surfaceId: 1,
      bufferId: 2,
      sequence: 2 ** 40 + 1,
      presentTimeNs: 2 ** 52 + 3,
      fenced: false,
      damage,
    });
  });

  it('refuses bodies of the wrong size and nonzero flags with E_MALFORMED', () => {
    let n = writeFrame(w, 1, 2, 3, 4, [{ x: 0, y: 0, width: 1, height: 1 }], 1);
    expect(() => readFrame(view(w), 0, n - 16))
      .to.throw()
      .with.property('code', 'E_MALFORMED');
    n = writeError(w, ErrorCode.E_LIMIT, true, 'x');
    view(w).setUint8(7, 1);
    expect(() => readError(view(w), 0, n))
      .to.throw()
      .with.property('code', 'E_MALFORMED');
  });

  it('maps error numbers both ways, unknown numbers to E_UNEXPECTED', () => {
    for (const [name, n] of Object.entries(ErrorCode)) expect(errorCodeName(n)).to.equal(name);
    expect(errorCodeName(9999)).to.equal('E_UNEXPECTED');
  });
});

describe('formats and validation (unit)', () => {
  it('uses the DRM fourcc values', () => {
    expect(FORMATS.XRGB8888.fourcc).to.equal(0x34325258);
    expect(FORMATS.NV12.fourcc).to.equal(0x3231564e);
    expect(fourccToString(fourcc('AB24'))).to.equal('AB24');
    expect(FORMATS.XRGB8888.pixman).to.equal(0x20020888);
    expect(FORMATS.ARGB8888.dxgi).to.equal(87);
  });

  it('lays out NV12 as two planes with a half-height chroma plane', () => {
    const { planes, totalSize } = linearLayout(FORMATS.NV12, 100, 51);
    expect(planes[0]).to.include({ offset: 0, stride: 128, height: 51 });
    expect(planes[1]).to.include({ stride: 128, height: 26, width: 50 });
    expect(planes[1].offset % 4096).to.equal(0);
    expect(totalSize).to.be.at.least(planes[1].offset + planes[1].size);
  });

  it('validates strides, sizes and overflow before any handle is touched', () => {
    const base = {
      surfaceId: 1,
      bufferId: 1,
      generation: 1,
      width: 10,
      height: 10,
      format: FORMATS.XRGB8888.fourcc,
      modifier: 0n,
      orientation: 0,
      visible: { x: 0, y: 0, width: 10, height: 10 },
      planes: [{ handleIndex: 0, stride: 40, offset: 0, size: 400 }],
    };
    expect(validateDescriptor(base).planes[0].size).to.equal(400);
    const bad = (patch: object, plane: object = {}) => ({
      ...base,
      ...patch,
      planes: [{ ...base.planes[0], ...plane }],
    });
    expect(() => validateDescriptor(bad({}, { stride: 39 })))
      .to.throw()
      .with.property('code', 'E_BAD_GEOMETRY');
    expect(() => validateDescriptor(bad({}, { size: 399 })))
      .to.throw()
      .with.property('code', 'E_BAD_GEOMETRY');
    expect(() => validateDescriptor(bad({}, { offset: 2 ** 60 })))
      .to.throw()
      .with.property('code', 'E_OUT_OF_BOUNDS');
    expect(() => validateDescriptor(bad({ width: 0 })))
      .to.throw()
      .with.property('code', 'E_BAD_GEOMETRY');
    expect(() => validateDescriptor(bad({ format: 1 })))
      .to.throw()
      .with.property('code', 'E_UNSUPPORTED_FORMAT');
    expect(() => validateDescriptor(bad({ visible: { x: 5, y: 0, width: 6, height: 1 } })))
      .to.throw()
      .with.property('code', 'E_BAD_GEOMETRY');
  });
});
