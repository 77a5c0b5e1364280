/**
 * SurfaceMirror: the newest pixels of one surface, for the stream clients of that surface.
 * Fed from the SurfaceServer's frame tap, damage only; clients encode from it when they have room.
 */
import type { Rect } from '../protocol/codec.js';
import type { SharedSurface, SurfaceBuffer } from '../surface.js';

/** What a mirror tells its clients. */
export interface MirrorClient {
  /** The mirror took new damage (count 0: all of it). */
  damaged(damage: readonly Rect[], count: number): void;
}

/** Formats the mirror and both codecs handle: 4 bytes per pixel, one plane. */
export const STREAMABLE = new Set<string>(['XRGB8888', 'ARGB8888', 'XBGR8888', 'ABGR8888']);

/**
 * The newest pixels of one surface, kept up to date from the tap (damage only) for the
 * stream clients of that surface. Tightly packed rows, 4-byte aligned.
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
  /** Buffer views of the surface's pixel arrays, so copying allocates nothing per frame. */
  private readonly views = new WeakMap<Uint8Array, Buffer>();

  constructor(readonly surface: SharedSurface) {
    this.width = surface.width;
    this.height = surface.height;
    this.stride = this.width * 4;
    this.pixels = Buffer.alloc(this.stride * this.height);
  }

  update(buffer: SurfaceBuffer, damage: readonly Rect[], count: number, presentNs: number): void {
    let full = count === 0 || !this.ready;
    if (buffer.width !== this.width || buffer.height !== this.height) {
      this.width = buffer.width;
      this.height = buffer.height;
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
    if (full) {
      if (srcStride === this.stride) src.copy(this.pixels, 0, 0, this.stride * this.height);
      else for (let y = 0; y < this.height; y++) src.copy(this.pixels, y * this.stride, y * srcStride, y * srcStride + this.stride);
    } else {
      for (let i = 0; i < count; i++) {
        const r = damage[i];
        const x0 = Math.max(0, r.x);
        const x1 = Math.min(this.width, r.x + r.width);
        const y1 = Math.min(this.height, r.y + r.height);
        if (x1 <= x0) continue;
        for (let y = Math.max(0, r.y); y < y1; y++) src.copy(this.pixels, y * this.stride + x0 * 4, y * srcStride + x0 * 4, y * srcStride + x1 * 4);
      }
    }
    this.sequence = buffer.surface.sequence;
    this.presentMs = presentNs / 1e6;
    this.ready = true;
    for (const s of this.sessions) s.damaged(damage, full ? 0 : count);
  }
}
