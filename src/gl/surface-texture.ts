/**
 * Shared surfaces as GL textures: SurfaceImporter takes the frames a SurfaceClient receives
 * (or any buffer with the same shape) and gives back a texture, by the best path this context
 * and this buffer allow, and says which path and why:
 *
 *   'memory-object'     zero-copy: the memfd itself is the texture's storage
 *                       (GL_EXT_memory_object_fd; ANGLE on SwiftShader only, see memory-object.ts).
 *                       Imported once per buffer, then every frame of that buffer is free.
 *   'dmabuf-egl-image'  zero-copy: a dma-buf as an EGLImage (EGL_EXT_image_dma_buf_import), for
 *                       dmabuf.v1 frames where the EGL advertises it (a GPU driver; unverified here).
 *   'upload'            one texture per surface, updated with glTexSubImage2D of the frame's
 *                       damage rectangles only, straight from the shared mapping
 *                       (GL_UNPACK_ROW_LENGTH = stride / 4, GL_UNPACK_SKIP_PIXELS/ROWS).
 *
 *   'iosurface'         zero-copy: a macOS IOSurface frame bound as a texture
 *                       (EGL_ANGLE_iosurface_client_buffer; written, never run: no Mac here).
 *
 * Windows D3D11 textures have their own entry point (client-buffer.ts).
 *
 * Textures hold the buffer's bytes in memory order and sample as RGBA through their swizzle
 * (draw.ts). Rows: GL row y is surface row y (the first row in memory), so a damage rectangle's
 * (x, y) is used as is. On the zero-copy paths the texture shows the shared memory live: draw
 * from it while you hold the frame (before frame.release()).
 */
import { handleClosed, handleFd, type BufferKey, type OsHandle } from '../handles.js';
import { SurfaceLinkError } from '../errors.js';
import type { Rect } from '../protocol/codec.js';
import { importIOSurfaceTexture } from './client-buffer.js';
import type { GpuContext } from './context.js';
import { importDmabufTexture } from './dmabuf-import.js';
import { isRgba32, setNearest, setSwizzle } from './draw.js';
import { GL } from './egl.js';
import {
  importMemoryTexture,
  memoryObjectLayoutProblem,
  memoryObjectUnavailable,
  type BufferLayout,
} from './memory-object.js';
import { checkSize } from './texture.js';

/**
 * How SurfaceImporter made a frame a texture: zero-copy ('memory-object', 'dmabuf-egl-image',
 * 'iosurface', 'd3d11') or a copy of the damage ('upload'). See the module comment.
 */
export type ImportPath = 'memory-object' | 'dmabuf-egl-image' | 'iosurface' | 'd3d11' | 'upload';

/** A received frame as the importer needs it. surfacelink's `Frame` is one. */
export interface ImportableFrame extends BufferLayout {
  /** Bytes per row of plane 0. */
  readonly stride: number;
  /** What changed since the previous frame of this surface; empty = everything. */
  readonly damage: readonly Rect[];
  /** Frames of different surfaces get different upload textures (default 0). */
  readonly surfaceId?: number;
  /** The plane's bytes (the shared mapping), for 'upload'. */
  pixels(plane?: number): Uint8Array;
  /** macOS IOSurface frames: the IOSurfaceRef's address, for 'iosurface'. */
  readonly ioSurface?: bigint;
}

/**
 * The texture a frame was imported as. The same object is returned for every frame of a buffer (or
 * surface, when uploading).
 */
export interface SurfaceTexture {
  /** GL_TEXTURE_2D name. Do not delete it: the importer owns it. */
  readonly texture: number;
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** How it was imported. */
  readonly path: ImportPath;
  /** Why this path (for 'upload': why no zero-copy path could be used). */
  readonly reason: string;
  /** Bytes copied by the latest import: 0 on zero-copy paths. */
  readonly uploadedBytes: number;
}

/** Which paths a SurfaceImporter may use, and how many zero-copy textures it keeps. */
export interface SurfaceImporterOptions {
  /** Paths the importer may use, in any order (default: all). 'upload' is the fallback and always allowed. */
  allow?: readonly ImportPath[];
  /** Zero-copy textures kept (one per shared buffer); the least recently used beyond this are deleted. Default 16. */
  maxCached?: number;
}

interface MutableTexture {
  texture: number;
  width: number;
  height: number;
  path: ImportPath;
  reason: string;
  uploadedBytes: number;
}

interface ZeroCopyEntry {
  size: number;
  result: MutableTexture;
  destroy: () => void;
  lastUse: number;
  /** The frame's own handle: closed once the client has let go of a retired buffer. */
  source: OsHandle | undefined;
}

interface UploadEntry {
  result: MutableTexture;
  format: string;
  /** False after zero-copy frames of the surface: the texture misses their changes. */
  current: boolean;
}

/** Imports frames as textures; one per GpuContext (and thread). See the file comment. */
export class SurfaceImporter implements Disposable {
  /** The path the latest import took, and why (null before the first). */
  path: ImportPath | null = null;
  /** Why that path (for 'upload': why no zero-copy path could be used). */
  reason = '';
  private readonly allow: ReadonlySet<ImportPath>;
  private readonly maxCached: number;
  /** By the producer's buffer key: a zero-copy texture, or null = this buffer is uploaded (reason in `refused`). */
  private readonly zeroCopy = new Map<BufferKey, ZeroCopyEntry | null>();
  private readonly refused = new Map<BufferKey, string>();
  private readonly uploads = new Map<number, UploadEntry>();
  private uses = 0;
  private closed = false;
  private readonly untrack: () => void;
  /** Why the context itself cannot do memory objects (null: it can). */
  readonly memoryObjectUnavailable: string | null;

  /** An importer into `ctx` (one per context); tracked by it, so GpuContext.close() destroys it. */
  constructor(
    /** The context it imports into. */
    readonly ctx: GpuContext,
    options: SurfaceImporterOptions = {},
  ) {
    this.allow = new Set(options.allow ?? ['memory-object', 'dmabuf-egl-image', 'iosurface', 'd3d11', 'upload']);
    this.maxCached = options.maxCached ?? 16;
    this.memoryObjectUnavailable = this.allow.has('memory-object')
      ? memoryObjectUnavailable(ctx)
      : "'memory-object' is not allowed by the caller";
    this.untrack = ctx.track(this);
  }

  /**
   * The frame as a texture. Zero-copy where this buffer allows it (imported on its first frame,
   * reused after), otherwise its damage uploaded into the surface's texture. Import every frame
   * you receive, or pass `full: true` after skipping some (damage is relative to the previous
   * frame). Throws E_UNSUPPORTED_FORMAT for formats other than 32-bit RGBA orders; GL failures
   * are E_SYSTEM / E_IMPORT_FAILED, and leave the importer usable.
   */
  import(frame: ImportableFrame, options?: { full?: boolean }): SurfaceTexture {
    if (this.closed) throw new SurfaceLinkError('E_CLOSED', 'this SurfaceImporter is closed');
    if (!isRgba32(frame.format))
      throw new SurfaceLinkError(
        'E_UNSUPPORTED_FORMAT',
        `GL import takes 32-bit RGBA-order formats; ${frame.format.name} is not one`,
      );
    this.ctx.makeCurrent();
    const key = frame.bufferKey;
    let entry = this.zeroCopy.get(key);
    if (
      entry !== undefined &&
      entry !== null &&
      (entry.size !== frame.backing.size || entry.result.width !== frame.width || entry.result.height !== frame.height)
    ) {
      this.forgetBuffer(key);
      entry = undefined;
    }
    if (entry === undefined) entry = this.importZeroCopy(frame);
    if (entry !== null) {
      entry.lastUse = ++this.uses;
      const upload = this.uploads.get(frame.surfaceId ?? 0);
      if (upload) upload.current = false;
      this.path = entry.result.path;
      this.reason = entry.result.reason;
      return entry.result;
    }
    return this.upload(frame, this.refused.get(key) ?? 'no zero-copy path', options?.full === true);
  }

  /** Tries the zero-copy paths for a buffer seen for the first time; null = upload it. */
  private importZeroCopy(frame: ImportableFrame): ZeroCopyEntry | null {
    const backing = frame.backing;
    const key = frame.bufferKey;
    const why: string[] = [];
    const remember = (result: ZeroCopyEntry | null): ZeroCopyEntry | null => {
      if (result === null) {
        this.refused.set(key, why.join('; '));
        // Verdicts are cheap to remake: keep a bounded number, so those of retired buffers do not pile up.
        if (this.refused.size > Math.max(64, 4 * this.maxCached)) this.forgetBuffer(this.refused.keys().next().value!);
      }
      this.zeroCopy.set(key, result);
      if (result !== null) this.evict();
      return result;
    };
    if (backing.kind === 'iosurface') {
      const problem = !this.allow.has('iosurface')
        ? 'not allowed by the caller'
        : !frame.ioSurface
          ? 'the frame does not carry its IOSurfaceRef'
          : null;
      if (problem === null) {
        try {
          // UNVERIFIED (no Mac here): ANGLE's Metal backend binds IOSurfaces as 2D textures.
          const texture = importIOSurfaceTexture(this.ctx, frame.ioSurface!, {
            width: frame.width,
            height: frame.height,
          });
          this.ctx.api.gl.glBindTexture(texture.target, texture.texture);
          setSwizzle(this.ctx, frame.format);
          this.ctx.api.gl.glBindTexture(texture.target, 0);
          const reason = `IOSurface bound as a texture (EGL_ANGLE_iosurface_client_buffer on ${this.ctx.renderer})`;
          return remember(this.entry(texture.texture, frame, 'iosurface', reason, () => texture.destroy()));
        } catch (error) {
          why.push(`iosurface: ${(error as Error).message}`);
        }
      } else why.push(`iosurface: ${problem}`);
      return remember(null);
    }
    if (backing.kind === 'dmabuf') {
      const problem = !this.allow.has('dmabuf-egl-image')
        ? 'not allowed by the caller'
        : !this.ctx.capabilities.dmabufImport
          ? `EGL_EXT_image_dma_buf_import is not advertised by ${this.ctx.renderer}`
          : null;
      if (problem === null) {
        try {
          const texture = importDmabufTexture(this.ctx, {
            width: frame.width,
            height: frame.height,
            fourcc: frame.format.fourcc,
            planes: frame.planes.map((p, i) => ({
              fd: handleFd(frame.handles[frame.planeHandles?.[i] ?? 0], 'a dma-buf'),
              offset: p.offset,
              stride: p.stride,
            })),
          });
          this.ctx.api.gl.glBindTexture(GL.TEXTURE_2D, texture.texture);
          setSwizzle(this.ctx, frame.format);
          this.ctx.api.gl.glBindTexture(GL.TEXTURE_2D, 0);
          const reason = `dma-buf imported as an EGLImage (EGL_EXT_image_dma_buf_import on ${this.ctx.renderer})`;
          return remember(this.entry(texture.texture, frame, 'dmabuf-egl-image', reason, () => texture.destroy()));
        } catch (error) {
          why.push(`dmabuf-egl-image: ${(error as Error).message}`);
        }
      } else why.push(`dmabuf-egl-image: ${problem}`);
    }
    const problem = this.memoryObjectUnavailable ?? memoryObjectLayoutProblem(frame);
    if (problem !== null) {
      why.push(`memory-object: ${problem}`);
      return remember(null);
    }
    try {
      const memory = importMemoryTexture(this.ctx, frame);
      const gl = this.ctx.api.gl;
      gl.glBindTexture(GL.TEXTURE_2D, memory.texture);
      setNearest(this.ctx);
      setSwizzle(this.ctx, frame.format);
      gl.glBindTexture(GL.TEXTURE_2D, 0);
      const reason =
        `memfd is the texture's storage (GL_EXT_memory_object_fd on ${this.ctx.renderer}; ` +
        `stride ${frame.stride} = SwiftShader's pitch)`;
      return remember(this.entry(memory.texture, frame, 'memory-object', reason, () => memory.destroy()));
    } catch (error) {
      why.push(`memory-object: ${(error as Error).message}`);
      return remember(null);
    }
  }

  private entry(
    texture: number,
    frame: ImportableFrame,
    path: ImportPath,
    reason: string,
    destroy: () => void,
  ): ZeroCopyEntry {
    return {
      size: frame.backing.size,
      result: { texture, width: frame.width, height: frame.height, path, reason, uploadedBytes: 0 },
      destroy,
      lastUse: ++this.uses,
      source: frame.handles[0],
    };
  }

  /**
   * Deletes the textures of buffers the client has let go of (retired: their fd is closed, and
   * only GL's duplicate keeps the memory alive), then the least recently used beyond maxCached.
   */
  private evict(): void {
    let live = 0;
    for (const [key, e] of this.zeroCopy) {
      if (e?.source && handleClosed(e.source)) this.forgetBuffer(key);
      else if (e) live++;
    }
    while (live > this.maxCached) {
      let oldest: BufferKey | null = null;
      let oldestUse = Infinity;
      for (const [key, e] of this.zeroCopy) {
        if (e && e.lastUse < oldestUse) {
          oldest = key;
          oldestUse = e.lastUse;
        }
      }
      if (oldest === null) return;
      this.forgetBuffer(oldest);
      live--;
    }
  }

  private upload(frame: ImportableFrame, reason: string, full: boolean): SurfaceTexture {
    const gl = this.ctx.api.gl;
    const stride = frame.stride;
    if (stride % 4 !== 0 || stride < frame.width * 4)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `stride ${stride} is not a multiple of 4 bytes of at least ${frame.width * 4}`,
      );
    const surfaceId = frame.surfaceId ?? 0;
    let entry = this.uploads.get(surfaceId);
    if (
      entry &&
      (entry.result.width !== frame.width || entry.result.height !== frame.height || entry.format !== frame.format.name)
    ) {
      this.deleteUpload(surfaceId);
      entry = undefined;
    }
    if (!entry) {
      checkSize(this.ctx, frame.width, frame.height);
      this.ctx.drainGlErrors();
      const ids = new Uint32Array(1);
      gl.glGenTextures(1, ids);
      gl.glBindTexture(GL.TEXTURE_2D, ids[0]);
      setNearest(this.ctx);
      setSwizzle(this.ctx, frame.format);
      gl.glTexStorage2D(GL.TEXTURE_2D, 1, GL.RGBA8, frame.width, frame.height);
      gl.glBindTexture(GL.TEXTURE_2D, 0);
      try {
        this.ctx.checkGlError(`glTexStorage2D(RGBA8, ${frame.width}x${frame.height})`);
      } catch (error) {
        gl.glDeleteTextures(1, ids);
        throw error;
      }
      entry = {
        result: {
          texture: ids[0],
          width: frame.width,
          height: frame.height,
          path: 'upload',
          reason: '',
          uploadedBytes: 0,
        },
        format: frame.format.name,
        current: false,
      };
      this.uploads.set(surfaceId, entry);
    }
    const result = entry.result;
    result.reason = reason;
    const pixels = frame.pixels();
    const damage = frame.damage;
    const everything = full || !entry.current || damage.length === 0;
    // Checked before any GL state changes: a bad rectangle uploads nothing and leaves the unpack state alone.
    if (!everything) {
      for (let i = 0; i < damage.length; i++) {
        const r = damage[i];
        if (
          r.x < 0 ||
          r.y < 0 ||
          r.width < 0 ||
          r.height < 0 ||
          r.x + r.width > frame.width ||
          r.y + r.height > frame.height
        ) {
          throw new SurfaceLinkError(
            'E_OUT_OF_BOUNDS',
            `damage rectangle ${i} lies outside the ${frame.width}x${frame.height} surface`,
          );
        }
      }
    }
    gl.glBindTexture(GL.TEXTURE_2D, result.texture);
    gl.glPixelStorei(GL.UNPACK_ALIGNMENT, 4);
    gl.glPixelStorei(GL.UNPACK_ROW_LENGTH, stride / 4);
    let bytes = 0;
    gl.glPixelStorei(GL.UNPACK_SKIP_PIXELS, 0);
    gl.glPixelStorei(GL.UNPACK_SKIP_ROWS, 0);
    if (everything) {
      gl.glTexSubImage2D(GL.TEXTURE_2D, 0, 0, 0, frame.width, frame.height, GL.RGBA, GL.UNSIGNED_BYTE, pixels);
      bytes = frame.width * frame.height * 4;
    } else {
      for (let i = 0; i < damage.length; i++) {
        const r = damage[i];
        if (r.width === 0 || r.height === 0) continue;
        // The pointer is the rectangle's first pixel in the mapping (a view, no copy), and
        // GL_UNPACK_ROW_LENGTH steps over the rest of each row. Not GL_UNPACK_SKIP_PIXELS/ROWS:
        // ANGLE 2.x on D3D11 does not honour them (the rectangle was not updated).
        gl.glTexSubImage2D(
          GL.TEXTURE_2D,
          0,
          r.x,
          r.y,
          r.width,
          r.height,
          GL.RGBA,
          GL.UNSIGNED_BYTE,
          pixels.subarray(r.y * stride + r.x * 4),
        );
        bytes += r.width * r.height * 4;
      }
    }
    gl.glPixelStorei(GL.UNPACK_ROW_LENGTH, 0);
    gl.glPixelStorei(GL.UNPACK_SKIP_PIXELS, 0);
    gl.glPixelStorei(GL.UNPACK_SKIP_ROWS, 0);
    gl.glBindTexture(GL.TEXTURE_2D, 0);
    entry.current = true;
    result.uploadedBytes = bytes;
    this.path = 'upload';
    this.reason = reason;
    return result;
  }

  /** Deletes the zero-copy texture of one buffer (by its key), e.g. after the producer retired it. */
  forget(key: BufferKey): void {
    this.forgetBuffer(key);
  }

  private forgetBuffer(key: BufferKey): void {
    const entry = this.zeroCopy.get(key);
    this.zeroCopy.delete(key);
    this.refused.delete(key);
    if (entry) entry.destroy();
  }

  private deleteUpload(surfaceId: number): void {
    const entry = this.uploads.get(surfaceId);
    this.uploads.delete(surfaceId);
    if (entry && !this.ctx.closed) {
      this.ctx.makeCurrent();
      this.ctx.api.gl.glDeleteTextures(1, new Uint32Array([entry.result.texture]));
    }
  }

  /** Zero-copy textures currently held (one per shared buffer seen). */
  get cachedBuffers(): number {
    let n = 0;
    for (const e of this.zeroCopy.values()) if (e) n++;
    return n;
  }

  /** Deletes every texture. Idempotent; GpuContext.close() does it too. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.untrack();
    if (this.ctx.closed) return;
    for (const key of [...this.zeroCopy.keys()]) this.forgetBuffer(key);
    for (const id of [...this.uploads.keys()]) this.deleteUpload(id);
  }

  /** Same as destroy(). */
  close(): void {
    this.destroy();
  }

  /** Same as destroy(), for `using`. */
  [Symbol.dispose](): void {
    this.destroy();
  }
}
