/**
 * SurfaceMirror: the newest pixels of one surface, for the stream clients of that surface.
 * Fed from the SurfaceServer's frame tap, damage only; clients encode from it when they have room.
 */
import type { Rect } from '../protocol/codec.js';
import type { SharedSurface, SurfaceBuffer } from '../surface.js';
import { MirrorCursor } from './input.js';

/** What a mirror tells its clients. */
export interface MirrorClient {
  /** The mirror took new damage (count 0: all of it). */
  damaged(damage: readonly Rect[], count: number): void;
}

/** Formats the mirror and both codecs handle: 4 bytes per pixel, one plane. */
export const STREAMABLE = new Set<string>(['XRGB8888', 'ARGB8888', 'XBGR8888', 'ABGR8888']);

/**
 * The newest pixels of one surface as a viewer should see them — only the visible rectangle,
 * top row first whatever the buffer's orientation — kept up to date from the tap (damage
 * only) for the stream clients of that surface. Tightly packed rows, 4-byte aligned.
 */
export class SurfaceMirror<Client extends MirrorClient = MirrorClient> {
  width: number;
  height: number;
  stride: number;
  pixels: Buffer;
  sequence = 0;
  presentMs = 0;
  /** A frame has been copied in. */
  ready = false;
  readonly sessions = new Set<Client>();
  /** The surface's cursor and input mode, as its viewers get them. */
  readonly cursor: MirrorCursor;
  /** Buffer views of the surface's pixel arrays, so copying allocates nothing per frame. */
  private readonly views = new WeakMap<Uint8Array, Buffer>();
  /** Damage in mirror coordinates when the picture is not the buffer as stored (reused objects). */
  private readonly moved: Rect[] = [];

  constructor(readonly surface: SharedSurface) {
    this.width = surface.visible.width;
    this.height = surface.visible.height;
    this.stride = this.width * 4;
    this.pixels = Buffer.alloc(this.stride * this.height);
    this.cursor = new MirrorCursor(surface);
  }

  update(buffer: SurfaceBuffer, damage: readonly Rect[], count: number, presentNs: number): void {
    const v = buffer.surface.visible;
    const flip = buffer.surface.orientation === 'bottom-up';
    let full = count === 0 || !this.ready;
    if (v.width !== this.width || v.height !== this.height) {
      this.width = v.width;
      this.height = v.height;
      this.stride = this.width * 4;
      this.pixels = Buffer.alloc(this.stride * this.height);
      full = true;
    }
    const px = buffer.pixels();
    let src = this.views.get(px);
    if (!src) {
      src = Buffer.from(px.buffer, px.byteOffset, px.byteLength);
      this.views.set(px, src);
    }
    const srcStride = buffer.stride;
    // Mirror row y shows buffer row `rowOf(y)`: the visible rectangle, bottom-up buffers flipped.
    const top = flip ? v.y + v.height - 1 : v.y;
    const step = flip ? -1 : 1;
    const asStored = !flip && v.x === 0 && v.y === 0 && v.width === buffer.width && v.height === buffer.height;
    let out = damage;
    let outCount = count;
    if (full) {
      if (asStored && srcStride === this.stride) src.copy(this.pixels, 0, 0, this.stride * this.height);
      else
        for (let y = 0; y < this.height; y++)
          copyRow(src, (top + step * y) * srcStride + v.x * 4, this.pixels, y * this.stride, this.stride);
    } else {
      if (!asStored) {
        out = this.moved;
        outCount = 0;
      }
      for (let i = 0; i < count; i++) {
        const r = damage[i];
        const x0 = Math.max(v.x, r.x);
        const x1 = Math.min(v.x + v.width, r.x + r.width);
        const y0 = Math.max(v.y, r.y);
        const y1 = Math.min(v.y + v.height, r.y + r.height);
        if (x1 <= x0 || y1 <= y0) continue;
        // Buffer row by → mirror row (by - top) * step; rows of a rectangle stay contiguous either way.
        for (let by = y0; by < y1; by++)
          copyRow(
            src,
            by * srcStride + x0 * 4,
            this.pixels,
            (by - top) * step * this.stride + (x0 - v.x) * 4,
            (x1 - x0) * 4,
          );
        if (!asStored) {
          const my0 = flip ? top - (y1 - 1) : y0 - v.y;
          const m = (this.moved[outCount] ??= { x: 0, y: 0, width: 0, height: 0 });
          m.x = x0 - v.x;
          m.y = my0;
          m.width = x1 - x0;
          m.height = y1 - y0;
          outCount++;
        }
      }
      // Damage entirely outside the picture: nothing changed for viewers.
      if (!asStored && outCount === 0) return this.stamp(buffer, presentNs);
    }
    this.stamp(buffer, presentNs);
    for (const s of this.sessions) s.damaged(out, full ? 0 : outCount);
  }

  private stamp(buffer: SurfaceBuffer, presentNs: number): void {
    this.sequence = buffer.surface.sequence;
    this.presentMs = presentNs / 1e6;
    this.ready = true;
  }
}

function copyRow(src: Buffer, from: number, dst: Buffer, to: number, bytes: number): void {
  src.copy(dst, to, from, from + bytes);
}
