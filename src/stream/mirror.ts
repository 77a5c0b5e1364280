/**
 * SurfaceMirror: the newest frame of one surface, for the stream clients of that surface. Fed
 * from the SurfaceServer's frame tap; clients encode from it when they have room. It keeps the
 * newest buffer (H.264 with shared input reads that buffer itself) and, for clients that need
 * them (tiles, H.264 on copies), a copy of its pixels, damage only.
 */
import type { Rect } from '../protocol/codec.js';
import { MODIFIER_LINEAR } from '../formats.js';
import { linuxNative } from '../native/index.js';
import type { SharedSurface, SurfaceBuffer } from '../surface.js';
import type { H264InputFormat, H264SharedBuffer } from './h264.js';
import { MirrorCursor } from './input.js';

/** What a mirror tells its clients. */
export interface MirrorClient {
  /** The mirror took new damage (count 0: all of it). */
  damaged(damage: readonly Rect[], count: number): void;
  /**
   * What it encodes from: the mirror's copy of the pixels ('pixels', the default), or the
   * producer's buffer itself where it can be shared ('shared': the mirror copies a frame only when
   * its buffer cannot be shared).
   */
  readonly source?: 'pixels' | 'shared';
}

/** Formats the mirror and both codecs handle: 4 bytes per pixel, one plane. */
export const STREAMABLE = new Set<string>(['XRGB8888', 'ARGB8888', 'XBGR8888', 'ABGR8888']);

/** Told when the last hold on a shared picture is released: the frame (`sequence`) it showed. */
export type PictureReleased = (buffer: SurfaceBuffer, sequence: number) => void;

/**
 * A presented buffer as an H.264 worker maps it: the picture's place in the producer's own memory
 * (the visible rectangle is an offset and a stride). A hold is a client hold: the buffer is not
 * handed back to the producer (acquire) until every hold is released, and the last release is
 * reported like a client's (`released`: the server's 'release' event).
 */
export class SharedPicture implements H264SharedBuffer {
  private holds = 0;
  private heldSequence = 0;

  constructor(
    readonly buffer: SurfaceBuffer,
    readonly fd: H264SharedBuffer['fd'],
    readonly dmabuf: boolean,
    readonly size: number,
    readonly offset: number,
    readonly stride: number,
    readonly width: number,
    readonly height: number,
    readonly format: H264InputFormat,
    private readonly released: PictureReleased,
  ) {}

  get live(): boolean {
    return !this.buffer.retired && !this.buffer.destroyed;
  }

  hold(): void {
    // Held only as the newest frame (SurfaceMirror.sharedFrame): the surface's sequence is its own.
    if (this.holds++ === 0) this.heldSequence = this.buffer.surface.sequence;
    this.buffer.holders++;
  }

  release(): void {
    this.buffer.holders--;
    // A buffer retired (resize, shrink) while held is freed once the last hold goes.
    this.buffer.surface.collect(this.buffer);
    if (--this.holds === 0) this.released(this.buffer, this.heldSequence);
  }
}

/**
 * Whether an H.264 worker can read `buffer`'s picture in place: the SharedPicture, or why not (its
 * frames are then copied). Decided once per buffer: orientation, visible rectangle and backing
 * belong to a buffer's generation.
 */
export function sharedPictureOf(buffer: SurfaceBuffer, released: PictureReleased): SharedPicture | string {
  if (process.platform !== 'linux') return `shared buffers are memfds and dma-bufs; this is ${process.platform}`;
  const surface = buffer.surface;
  if (surface.orientation === 'bottom-up')
    return 'the buffer is bottom-up (the encoder reads rows top first: a stride cannot be negative)';
  const kind = buffer.backing.kind;
  const handle = buffer.handles[buffer.planeHandles[0]];
  if (!handle || handle.kind !== 'fd') return `its ${buffer.mechanism} memory has no fd to pass`;
  const fd = handle.fd;
  let dmabuf = false;
  if (kind === 'memfd') {
    // Like shm.v1's clients: a reader of an unsealed memfd could be made to fault (SIGBUS).
    let seals = 0;
    try {
      seals = fd.seals();
    } catch {
      /* not sealable: treated as unsealed */
    }
    if ((seals & linuxNative().seals.SHRINK) === 0) return 'the memfd is not sealed against shrinking';
  } else if (kind === 'dmabuf' || kind.startsWith('dmabuf:')) {
    if (buffer.store.modifier !== MODIFIER_LINEAR)
      return `the dma-buf is tiled or compressed (modifier 0x${buffer.store.modifier.toString(16)}): no rows to read`;
    dmabuf = true;
  } else if (kind === 'shm') {
    return 'a POSIX shm object can be shrunk by its clients: the worker would fault reading it';
  } else return `its memory is ${kind}, which the worker cannot map`;
  const plane = buffer.planes[0];
  const v = surface.visible;
  return new SharedPicture(
    buffer,
    fd,
    dmabuf,
    buffer.backing.size,
    plane.offset + v.y * plane.stride + v.x * 4,
    plane.stride,
    v.width,
    v.height,
    buffer.format.name as H264InputFormat,
    released,
  );
}

/**
 * The newest frame of one surface as a viewer should see it — only the visible rectangle, top
 * row first whatever the buffer's orientation — kept up to date from the tap for the stream
 * clients of that surface: the buffer itself (`buffer`, `picture`) and, while a client needs them,
 * a copy of its pixels (`pixels`: tightly packed rows, 4-byte aligned, damage copied only).
 */
export class SurfaceMirror<Client extends MirrorClient = MirrorClient> {
  width: number;
  height: number;
  stride: number;
  /** The picture's pixels; valid while `pixelsValid` (allocated when first needed). */
  pixels: Buffer = Buffer.alloc(0);
  /** `pixels` hold the newest frame. False while no client needs the copy (nothing is copied then). */
  pixelsValid = false;
  sequence = 0;
  presentMs = 0;
  /** A frame has been presented. */
  ready = false;
  /** The newest frame's buffer (held by nobody here: see sharedFrame()). */
  buffer: SurfaceBuffer | null = null;
  /** The newest frame's buffer as an H.264 worker reads it, or null (then `notShared` says why). */
  picture: SharedPicture | null = null;
  notShared = '';
  readonly sessions = new Set<Client>();
  /** The surface's cursor and input mode, as its viewers get them. */
  readonly cursor: MirrorCursor;
  /** Set by the server: hands the mirror the surface's current frame again (to fill `pixels`). */
  refresh: (() => void) | null = null;
  /** Set by the server: the last hold of an encoder on a buffer was released (presentation feedback). */
  released: PictureReleased = () => {};
  /** Buffer views of the surface's pixel arrays, so copying allocates nothing per frame. */
  private readonly views = new WeakMap<Uint8Array, Buffer>();
  /** Damage in mirror coordinates when the picture is not the buffer as stored (reused objects). */
  private readonly moved: Rect[] = [];
  /** The sequence requestPixels() last asked a refresh for. */
  private refreshedAt = -1;
  /** sharedPictureOf() per buffer, decided once. */
  private readonly pictures = new WeakMap<SurfaceBuffer, SharedPicture | string>();

  constructor(readonly surface: SharedSurface) {
    this.width = surface.visible.width;
    this.height = surface.visible.height;
    this.stride = this.width * 4;
    this.cursor = new MirrorCursor(surface);
  }

  /**
   * Whether the newest frame must be copied: a client encodes from copies, or a client reading
   * shared buffers gets a frame whose buffer cannot be shared.
   */
  needsCopy(): boolean {
    let shared = false;
    for (const s of this.sessions) {
      if (s.source === 'shared') shared = true;
      else return true;
    }
    return shared && this.picture === null;
  }

  /**
   * A client needs `pixels` and they are not there: the current frame is copied in again (refresh),
   * once per frame (a frame whose fence has not signalled yet comes through the tap when it has).
   */
  requestPixels(): void {
    if (this.pixelsValid || this.refreshedAt === this.sequence || !this.needsCopy()) return;
    this.refreshedAt = this.sequence;
    this.refresh?.();
  }

  /** A client starts watching: what it reads from (`source`) is ready for it from the current frame on. */
  addSession(session: Client): void {
    this.sessions.add(session);
    if (this.buffer) this.updatePicture(this.buffer);
    this.requestPixels();
  }

  /**
   * The newest frame's shared picture if it can be handed to an encoder now: still the surface's
   * newest frame, readable (its fence signalled), not taken back by the producer, not retired.
   * Null otherwise (a newer frame is on its way through the tap, or the producer rewrites it).
   */
  sharedFrame(): SharedPicture | null {
    const b = this.buffer;
    const p = this.picture;
    if (!b || !p || b !== this.surface.front || b.acquired || !b.fenceReady || !p.live) return null;
    return p;
  }

  update(buffer: SurfaceBuffer, damage: readonly Rect[], count: number, presentNs: number): void {
    const v = buffer.surface.visible;
    const flip = buffer.surface.orientation === 'bottom-up';
    let full = count === 0 || !this.ready || !this.pixelsValid;
    if (v.width !== this.width || v.height !== this.height) {
      this.width = v.width;
      this.height = v.height;
      this.stride = this.width * 4;
      this.pixelsValid = false;
      full = true;
    }
    this.buffer = buffer;
    this.updatePicture(buffer);
    if (!this.needsCopy()) {
      // Every client reads the buffer itself: nothing to copy.
      this.pixelsValid = false;
      this.stamp(buffer, presentNs);
      for (const s of this.sessions) s.damaged(this.moved, 0);
      return;
    }
    if (this.pixels.length !== this.stride * this.height) this.pixels = Buffer.alloc(this.stride * this.height);
    this.pixelsValid = true;
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

  /** `picture` and `notShared` for the newest buffer, when a client reads shared buffers. */
  private updatePicture(buffer: SurfaceBuffer): void {
    let shared = false;
    for (const s of this.sessions) if (s.source === 'shared') shared = true;
    if (!shared) {
      this.picture = null;
      this.notShared = '';
      return;
    }
    let p = this.pictures.get(buffer);
    if (p === undefined) {
      p = sharedPictureOf(buffer, (b, sequence) => this.released(b, sequence));
      this.pictures.set(buffer, p);
    }
    this.picture = typeof p === 'string' ? null : p;
    this.notShared = typeof p === 'string' ? p : '';
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
