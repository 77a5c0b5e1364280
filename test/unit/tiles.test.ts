/** The lossless tile codec (src/stream/tiles.ts, docs/remote.md §4): encode → decode is exact. */
import { expect } from 'chai';
import * as zlib from 'node:zlib';
import { SurfaceLinkError } from '../../src/errors.js';
import {
  FLAG_KEYFRAME,
  FRAME_HEADER_SIZE,
  FrameKind,
  readFrameHeader,
  type FrameHeader,
} from '../../src/stream/protocol.js';
import {
  TILE_PAYLOAD_HEADER,
  TILE_RECORD_SIZE,
  TileDamage,
  TileEncoder,
  applyTiles,
  applyTilesSync,
} from '../../src/stream/tiles.js';

/** Encodes one frame and resolves with the binary frame and its tile count. */
function encodeOnce(
  image: Uint8Array,
  stride: number,
  damage: TileDamage,
  sequence = 7,
  presentMs = 123.5,
): Promise<{ frame: Buffer; tiles: number } | null> {
  return new Promise((resolve, reject) => {
    const encoder = new TileEncoder((error, frame, tiles) =>
      error ? reject(error) : resolve({ frame: frame!, tiles }),
    );
    if (encoder.encode(image, stride, damage, sequence, presentMs) === 0) resolve(null);
  });
}

/** Pixels that differ everywhere (no solid tiles), deterministic. */
function noisy(_width: number, height: number, stride: number, seed = 1): Uint8Array {
  const out = new Uint8Array(stride * height);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

function expectSameRows(
  a: Uint8Array,
  b: Uint8Array,
  width: number,
  height: number,
  strideA: number,
  strideB: number,
): void {
  for (let y = 0; y < height; y++) {
    const ra = Buffer.from(a.buffer, a.byteOffset + y * strideA, width * 4);
    const rb = Buffer.from(b.buffer, b.byteOffset + y * strideB, width * 4);
    if (!ra.equals(rb)) expect.fail(`row ${y} differs`);
  }
}

function records(frame: Buffer): { x: number; y: number; w: number; h: number; encoding: number; value: number }[] {
  const n = frame.readUInt32LE(FRAME_HEADER_SIZE);
  const out = [];
  for (let i = 0; i < n; i++) {
    const at = FRAME_HEADER_SIZE + TILE_PAYLOAD_HEADER + i * TILE_RECORD_SIZE;
    out.push({
      x: frame.readUInt16LE(at),
      y: frame.readUInt16LE(at + 2),
      w: frame.readUInt16LE(at + 4),
      h: frame.readUInt16LE(at + 6),
      encoding: frame[at + 8],
      value: frame.readUInt32LE(at + 12),
    });
  }
  return out;
}

describe('tile codec (unit)', () => {
  it('a full refresh of an odd-sized image round-trips exactly, edge tiles included', async () => {
    const [w, h, stride] = [200, 131, 832]; // 4x3 tiles, the last column 8 wide and the last row 3 tall
    const image = noisy(w, h, stride);
    const damage = new TileDamage(w, h);
    const out = await encodeOnce(image, stride, damage);
    const hd = readFrameHeader(out!.frame, {} as FrameHeader);
    expect(hd).to.include({
      kind: FrameKind.TILES,
      flags: FLAG_KEYFRAME,
      sequence: 7,
      presentMs: 123.5,
      width: w,
      height: h,
    });
    expect(out!.tiles).to.equal(4 * 3);
    const recs = records(out!.frame);
    expect(recs.at(-1)).to.include({ x: 192, y: 128, w: 8, h: 3, encoding: 1 });
    const decoded = new Uint8Array(w * 4 * h);
    await applyTiles(out!.frame.subarray(FRAME_HEADER_SIZE), decoded, w * 4, w, h);
    expectSameRows(image, decoded, w, h, stride, w * 4);
    expect(damage.pending).to.equal(false);
  });

  it('solid tiles carry their colour and no pixels', async () => {
    const [w, h] = [128, 64];
    const image = new Uint8Array(w * h * 4);
    new Uint32Array(image.buffer).fill(0xff112233); // B=33 G=22 R=11 X=ff in memory
    image.set([1, 2, 3, 4], (10 * w + 100) * 4); // one pixel makes the right tile raw
    const out = await encodeOnce(image, w * 4, new TileDamage(w, h));
    const recs = records(out!.frame);
    expect(recs[0]).to.deep.equal({ x: 0, y: 0, w: 64, h: 64, encoding: 0, value: 0xff112233 });
    expect(recs[1]).to.include({ x: 64, encoding: 1 });
    expect(
      zlib.inflateRawSync(out!.frame.subarray(FRAME_HEADER_SIZE + TILE_PAYLOAD_HEADER + 2 * TILE_RECORD_SIZE)).length,
    ).to.equal(64 * 64 * 4);
    const decoded = new Uint8Array(w * h * 4);
    applyTilesSync(out!.frame.subarray(FRAME_HEADER_SIZE), decoded, w * 4, w, h);
    expect(Buffer.from(decoded).equals(Buffer.from(image))).to.equal(true);
  });

  it('an all-solid frame has no compressed part', async () => {
    const image = new Uint8Array(70 * 70 * 4).fill(9);
    const out = await encodeOnce(image, 70 * 4, new TileDamage(70, 70));
    expect(out!.frame.readUInt32LE(FRAME_HEADER_SIZE + 4)).to.equal(0);
    const decoded = new Uint8Array(70 * 70 * 4);
    await applyTiles(out!.frame.subarray(FRAME_HEADER_SIZE), decoded, 70 * 4, 70, 70);
    expect(decoded.every((b) => b === 9)).to.equal(true);
  });

  it('damage selects only the tiles it touches, accumulated over several adds', async () => {
    const [w, h] = [256, 256];
    const damage = new TileDamage(w, h);
    damage.clear();
    expect(await encodeOnce(new Uint8Array(w * h * 4), w * 4, damage)).to.equal(null); // nothing dirty
    damage.add([{ x: 63, y: 0, width: 2, height: 1 }], 1); // straddles tiles (0,0) and (1,0)
    damage.add(
      [
        { x: 200, y: 200, width: 100, height: 100 },
        { x: 0, y: 0, width: 1, height: 1 },
      ],
      2,
    ); // clipped; a repeat
    const image = noisy(w, h, w * 4, 3);
    const out = await encodeOnce(image, w * 4, damage);
    expect(readFrameHeader(out!.frame, {} as FrameHeader).flags).to.equal(0);
    expect(records(out!.frame).map((r) => [r.x, r.y])).to.deep.equal([
      [0, 0],
      [64, 0],
      [192, 192],
    ]);
    // Applied onto a stale image, only those tiles change.
    const target = new Uint8Array(w * h * 4);
    await applyTiles(out!.frame.subarray(FRAME_HEADER_SIZE), target, w * 4, w, h);
    expect(target[(70 * w + 70) * 4]).to.equal(0);
    expectSameRows(image.subarray((192 * w + 192) * 4), target.subarray((192 * w + 192) * 4), 64, 64, w * 4, w * 4);
  });

  it('count 0 and a resize mean the whole surface', () => {
    const damage = new TileDamage(100, 100);
    damage.clear();
    damage.add([], 0);
    expect(damage.full).to.equal(true);
    damage.clear();
    damage.resize(300, 10);
    expect([damage.cols, damage.rows, damage.full]).to.deep.equal([5, 1, true]);
  });

  it('bad payloads are E_MALFORMED / E_TRUNCATED and leave the image alone', async () => {
    const [w, h] = [64, 64];
    const out = await encodeOnce(noisy(w, h, w * 4), w * 4, new TileDamage(w, h));
    const good = out!.frame.subarray(FRAME_HEADER_SIZE);
    const image = new Uint8Array(w * h * 4);
    const cases: [string, Uint8Array, string][] = [
      ['short', good.subarray(0, 4), 'E_TRUNCATED'],
      ['length mismatch', good.subarray(0, good.length - 1), 'E_MALFORMED'],
      ['tile outside', patch(good, TILE_PAYLOAD_HEADER, (b) => b.writeUInt16LE(32, 0)), 'E_MALFORMED'],
      ['unknown encoding', patch(good, TILE_PAYLOAD_HEADER + 8, (b) => (b[0] = 7)), 'E_MALFORMED'],
      [
        'garbage deflate',
        patch(good, TILE_PAYLOAD_HEADER + TILE_RECORD_SIZE, (b) => b.fill(0xff, 0, 16)),
        'E_MALFORMED',
      ],
    ];
    for (const [what, payload, code] of cases) {
      try {
        await applyTiles(payload, image, w * 4, w, h);
        expect.fail(`${what}: accepted`);
      } catch (error) {
        expect(error, what).to.be.instanceOf(SurfaceLinkError);
        expect((error as SurfaceLinkError).code, `${what}: ${(error as Error).message}`).to.equal(code);
      }
    }
    expect(image.every((b) => b === 0)).to.equal(true);
  });
});

function patch(src: Uint8Array, at: number, edit: (b: Buffer) => void): Uint8Array {
  const copy = Buffer.from(src);
  edit(copy.subarray(at));
  return copy;
}
