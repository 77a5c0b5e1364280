/**
 * The stream mirror (src/stream/mirror.ts) shows the picture, not the buffer: only the visible
 * rectangle, a bottom-up buffer flipped, and damage moved into picture coordinates. Unit test on
 * plain objects shaped like a surface and its buffer.
 */
import { expect } from 'chai';
import type { Rect } from '../../src/protocol/codec.js';
import { SurfaceMirror } from '../../src/stream/mirror.js';
import type { SharedSurface, SurfaceBuffer } from '../../src/surface.js';

const W = 8;
const H = 6;

/** A 4-byte-per-pixel buffer whose pixel (x, y) holds x + 16 * y in its first byte. */
function fixture(orientation: 'top-down' | 'bottom-up', visible: Rect) {
  const stride = W * 4 + 8; // padded rows, as adopted buffers have
  const bytes = new Uint8Array(stride * H);
  const paint = (base: number) => {
    for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) bytes[y * stride + x * 4] = base + x + 16 * y;
  };
  paint(0);
  const surface = { orientation, visible, sequence: 1, width: W, height: H } as unknown as SharedSurface;
  const buffer = { surface, width: W, height: H, stride, pixels: () => bytes } as unknown as SurfaceBuffer;
  const mirror = new SurfaceMirror(surface);
  const seen: { damage: Rect[]; count: number }[] = [];
  mirror.sessions.add({
    damaged: (damage, count) => seen.push({ damage: damage.slice(0, count).map((r) => ({ ...r })), count }),
  });
  const at = (x: number, y: number): number => mirror.pixels[y * mirror.stride + x * 4];
  return { mirror, buffer, seen, at, paint, bytes, stride };
}

describe('stream mirror: the picture as a viewer sees it (unit)', () => {
  it('top-down with the whole buffer visible: rows as stored, damage passed through', () => {
    const f = fixture('top-down', { x: 0, y: 0, width: W, height: H });
    f.mirror.update(f.buffer, [], 0, 0);
    expect([f.mirror.width, f.mirror.height]).to.deep.equal([W, H]);
    expect(f.at(3, 2)).to.equal(3 + 32);
    f.paint(100);
    const damage = [{ x: 1, y: 1, width: 2, height: 2 }];
    f.mirror.update(f.buffer, damage, 1, 0);
    expect(f.at(1, 1)).to.equal(100 + 1 + 16);
    expect(f.at(3, 3)).to.equal(3 + 48); // outside the damage: unchanged
    expect(f.seen[1]).to.deep.equal({ damage, count: 1 });
  });

  it('a visible rectangle crops; bottom-up flips; damage is clipped and moved into picture coordinates', () => {
    const visible = { x: 2, y: 1, width: 4, height: 4 }; // buffer rows 1..4, columns 2..5
    const f = fixture('bottom-up', visible);
    f.mirror.update(f.buffer, [], 0, 0);
    expect([f.mirror.width, f.mirror.height]).to.deep.equal([4, 4]);
    // Picture row 0 is buffer row 4 (the visible rectangle's bottom row), column 0 is buffer column 2.
    expect(f.at(0, 0)).to.equal(2 + 16 * 4);
    expect(f.at(3, 3)).to.equal(5 + 16 * 1);
    f.paint(100);
    // Buffer rows 3..5 × columns 0..3: clipped to rows 3..4 × columns 2..3 → picture rows 0..1, columns 0..1.
    f.mirror.update(
      f.buffer,
      [
        { x: 0, y: 3, width: 4, height: 3 },
        { x: 7, y: 0, width: 1, height: 1 },
      ],
      2,
      0,
    );
    expect(f.seen[1]).to.deep.equal({ damage: [{ x: 0, y: 0, width: 2, height: 2 }], count: 1 });
    expect(f.at(0, 0)).to.equal(100 + 2 + 16 * 4);
    expect(f.at(1, 1)).to.equal(100 + 3 + 16 * 3);
    expect(f.at(2, 0)).to.equal(4 + 16 * 4); // outside the damage: the old frame
  });

  it('damage wholly outside the picture changes nothing and tells no one', () => {
    const f = fixture('top-down', { x: 0, y: 0, width: 4, height: 4 });
    f.mirror.update(f.buffer, [], 0, 0);
    f.mirror.update(f.buffer, [{ x: 6, y: 5, width: 2, height: 1 }], 1, 0);
    expect(f.seen).to.have.length(1);
  });
});
