/**
 * Rendering into a SharedSurface's buffers with GL. SurfaceRenderer gives each producer buffer
 * a framebuffer, by the best path:
 *
 *   'memory-object'  the framebuffer's texture *is* the buffer's memfd (ANGLE on SwiftShader,
 *                    GL_EXT_memory_object_fd): GL draws straight into the shared memory;
 *                    end() waits for GL (glFinish) so the pixels are there before present().
 *   'readback'       the framebuffer is a texture of its own (one per buffer, first filled with
 *                    the buffer's pixels, so both paths show the buffer's previous contents);
 *                    end() reads back only the damaged rectangles with glReadPixels straight
 *                    into the shared mapping (GL_PACK_ROW_LENGTH = stride / 4, PACK_SKIP_*).
 *
 * Channel order: what is drawn lands in memory as GL's R, G, B, A bytes, and shared formats are
 * in memory order (XRGB8888 = B, G, R, X). So draw colours in the buffer's byte order, or use
 * fillRect(), which takes RGB and writes the format's order. GL row y is surface row y.
 *
 * Usage, per frame:
 *   const buffer = surface.acquire();
 *   renderer.begin(buffer);          // framebuffer bound, viewport = the buffer
 *   ... GL drawing ...
 *   renderer.end(damage);            // memory-object: glFinish; readback: read the damage back
 *   surface.present(buffer, { damage });
 */
import { SurfaceLinkError } from '../errors.js';
import type { Rect } from '../protocol/codec.js';
import type { SurfaceBuffer } from '../surface.js';
import type { GpuContext } from './context.js';
import { framebufferFor, isRgba32, setNearest } from './draw.js';
import { GL } from './egl.js';
import {
  importMemoryTexture,
  memoryObjectLayoutProblem,
  memoryObjectUnavailable,
  type BufferLayout,
} from './memory-object.js';
import { checkSize } from './texture.js';

/**
 * How SurfaceRenderer draws into a buffer: 'memory-object' (straight into the memfd) or 'readback'
 * (into a texture of its own, damage read back). See the module comment.
 */
export type RenderPath = 'memory-object' | 'readback';

/** A producer buffer as the renderer needs it (surfacelink's SurfaceBuffer is one). */
export interface RenderableBuffer extends BufferLayout {
  /** Bytes per row of plane 0. */
  readonly stride: number;
  /** The plane's bytes (the shared mapping): what 'readback' fills the texture from and reads damage back into. */
  pixels(plane?: number): Uint8Array;
}

interface Target {
  readonly buffer: RenderableBuffer;
  readonly framebuffer: number;
  readonly path: RenderPath;
  readonly reason: string;
  readonly destroy: () => void;
  /** True when the format stores B before R (memory order B, G, R, X/A). */
  readonly bgr: boolean;
}

/** Which paths a SurfaceRenderer may use. */
export interface SurfaceRendererOptions {
  /** Paths allowed (default both; 'readback' is the fallback and always allowed). */
  allow?: readonly RenderPath[];
}

function checkRect(r: Rect | undefined, i: number, width: number, height: number): asserts r is Rect {
  if (!r || r.x < 0 || r.y < 0 || r.width < 0 || r.height < 0 || r.x + r.width > width || r.y + r.height > height) {
    throw new SurfaceLinkError('E_OUT_OF_BOUNDS', `damage rectangle ${i} lies outside the ${width}x${height} buffer`);
  }
}

/** Framebuffers over producer buffers; one per GpuContext. See the file comment. */
export class SurfaceRenderer implements Disposable {
  /** The path of the buffer last begun, and why (null before the first). */
  path: RenderPath | null = null;
  /** Why that path (for 'readback': why not 'memory-object'). */
  reason = '';
  /** Why the context cannot render into memfds at all, or null when it can. */
  readonly memoryObjectUnavailable: string | null;
  private readonly targets = new Map<object, Target>();
  /**
   * Whether glReadPixels honours GL_PACK_ROW_LENGTH / SKIP_* (ES 3.0 core; ANGLE 2.x on D3D11
   * answers GL_INVALID_OPERATION): probed on the first readback. Without them, each rectangle is
   * read into a packed scratch buffer and copied into the mapping row by row.
   */
  private packParameters: boolean | undefined;
  private scratch = new Uint8Array(0);
  private current: Target | null = null;
  private closed = false;
  private readonly untrack: () => void;

  /** A renderer on `ctx` (one per context); tracked by it, so GpuContext.close() destroys it. */
  constructor(
    /** The context it renders with. */
    readonly ctx: GpuContext,
    options: SurfaceRendererOptions = {},
  ) {
    const allow = new Set(options.allow ?? ['memory-object', 'readback']);
    this.memoryObjectUnavailable = allow.has('memory-object')
      ? memoryObjectUnavailable(ctx)
      : "'memory-object' is not allowed by the caller";
    this.untrack = ctx.track(this);
  }

  /**
   * Binds a framebuffer over `buffer` (an acquired SurfaceBuffer, or any RenderableBuffer) and
   * sets the viewport to it; scissor and blending are left off. The first begin() of a buffer
   * sets it up (an import, or a texture filled from its pixels); later ones only bind.
   */
  begin(buffer: SurfaceBuffer | RenderableBuffer): RenderPath {
    if (this.closed) throw new SurfaceLinkError('E_CLOSED', 'this SurfaceRenderer is closed');
    if (this.current) throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'begin() again before end()');
    this.ctx.makeCurrent();
    let target = this.targets.get(buffer);
    if (!target) {
      this.prune();
      target = this.setUp(buffer);
      this.targets.set(buffer, target);
    }
    const gl = this.ctx.api.gl;
    gl.glBindFramebuffer(GL.FRAMEBUFFER, target.framebuffer);
    gl.glViewport(0, 0, target.buffer.width, target.buffer.height);
    gl.glDisable(GL.SCISSOR_TEST);
    gl.glDisable(GL.BLEND);
    this.current = target;
    this.path = target.path;
    this.reason = target.reason;
    return target.path;
  }

  /**
   * Fills a rectangle of the bound buffer with an RGB(A) colour (components 0–255), written in
   * the buffer's byte order: a scissored clear, exact to the byte.
   */
  fillRect(x: number, y: number, width: number, height: number, r: number, g: number, b: number, a = 255): void {
    const t = this.current;
    if (!t) throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'fillRect() outside begin()/end()');
    if (width <= 0 || height <= 0) return;
    const gl = this.ctx.api.gl;
    gl.glEnable(GL.SCISSOR_TEST);
    gl.glScissor(x, y, width, height);
    if (t.bgr) gl.glClearColor(b / 255, g / 255, r / 255, a / 255);
    else gl.glClearColor(r / 255, g / 255, b / 255, a / 255);
    gl.glClear(GL.COLOR_BUFFER_BIT);
    gl.glDisable(GL.SCISSOR_TEST);
  }

  /**
   * Makes what was drawn since begin() the buffer's pixels: 'memory-object' waits for GL
   * (glFinish); 'readback' reads `damage` (default or empty: everything) into the buffer —
   * its first `count` rectangles, so a preallocated list can be reused. Unbinds the
   * framebuffer. Returns the bytes read back (0 on the zero-copy path).
   */
  end(damage?: readonly Rect[], count = damage?.length ?? 0): number {
    const t = this.current;
    if (!t) throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'end() without begin()');
    this.current = null;
    const gl = this.ctx.api.gl;
    let bytes = 0;
    try {
      if (t.path === 'memory-object') {
        gl.glFinish();
        return 0;
      }
      const { width, height } = t.buffer;
      const pixels = t.buffer.pixels();
      gl.glPixelStorei(GL.PACK_ALIGNMENT, 4);
      this.packParameters ??= this.probePackParameters();
      if (!this.packParameters) {
        const rects = !damage || count === 0 ? [{ x: 0, y: 0, width, height }] : damage.slice(0, count);
        for (let i = 0; i < rects.length; i++) {
          const r = rects[i];
          checkRect(r, i, width, height);
          if (r.width === 0 || r.height === 0) continue;
          bytes += this.readPacked(r, pixels, t.buffer.stride);
        }
        return bytes;
      }
      gl.glPixelStorei(GL.PACK_ROW_LENGTH, t.buffer.stride / 4);
      if (!damage || count === 0) {
        gl.glPixelStorei(GL.PACK_SKIP_PIXELS, 0);
        gl.glPixelStorei(GL.PACK_SKIP_ROWS, 0);
        gl.glReadPixels(0, 0, width, height, GL.RGBA, GL.UNSIGNED_BYTE, pixels);
        bytes = width * height * 4;
      } else {
        for (let i = 0; i < count; i++) {
          const r = damage[i];
          checkRect(r, i, width, height);
          if (r.width === 0 || r.height === 0) continue;
          gl.glPixelStorei(GL.PACK_SKIP_PIXELS, r.x);
          gl.glPixelStorei(GL.PACK_SKIP_ROWS, r.y);
          gl.glReadPixels(r.x, r.y, r.width, r.height, GL.RGBA, GL.UNSIGNED_BYTE, pixels);
          bytes += r.width * r.height * 4;
        }
      }
      return bytes;
    } finally {
      if (t.path === 'readback') {
        gl.glPixelStorei(GL.PACK_ROW_LENGTH, 0);
        gl.glPixelStorei(GL.PACK_SKIP_PIXELS, 0);
        gl.glPixelStorei(GL.PACK_SKIP_ROWS, 0);
      }
      gl.glBindFramebuffer(GL.FRAMEBUFFER, 0);
    }
  }

  /** Reads 1x1 with GL_PACK_ROW_LENGTH 2 from the bound framebuffer: true when GL accepts it. */
  private probePackParameters(): boolean {
    const gl = this.ctx.api.gl;
    this.ctx.drainGlErrors();
    gl.glPixelStorei(GL.PACK_ROW_LENGTH, 2);
    gl.glReadPixels(0, 0, 1, 1, GL.RGBA, GL.UNSIGNED_BYTE, new Uint8Array(8));
    gl.glPixelStorei(GL.PACK_ROW_LENGTH, 0);
    return this.ctx.drainGlErrors().length === 0;
  }

  /** Reads rectangle `r` packed into the scratch buffer, then copies its rows into `pixels` (stride `stride`). */
  private readPacked(r: Rect, pixels: Uint8Array, stride: number): number {
    const rowBytes = r.width * 4;
    const size = rowBytes * r.height;
    if (this.scratch.byteLength < size) this.scratch = new Uint8Array(size);
    const scratch = this.scratch;
    this.ctx.api.gl.glReadPixels(r.x, r.y, r.width, r.height, GL.RGBA, GL.UNSIGNED_BYTE, scratch);
    for (let row = 0; row < r.height; row++) {
      const from = row * rowBytes;
      pixels.set(scratch.subarray(from, from + rowBytes), (r.y + row) * stride + r.x * 4);
    }
    return size;
  }

  private setUp(buffer: RenderableBuffer): Target {
    if (!isRgba32(buffer.format))
      throw new SurfaceLinkError(
        'E_UNSUPPORTED_FORMAT',
        `GL rendering takes 32-bit RGBA-order formats; ${buffer.format.name} is not one`,
      );
    checkSize(this.ctx, buffer.width, buffer.height);
    if (buffer.stride % 4 !== 0)
      throw new SurfaceLinkError('E_BAD_GEOMETRY', `stride ${buffer.stride} is not a multiple of 4`);
    const bgr = buffer.format.planes[0].gl.format === GL.BGRA_EXT;
    const gl = this.ctx.api.gl;
    let why = this.memoryObjectUnavailable ?? memoryObjectLayoutProblem(buffer);
    if (why === null) {
      try {
        const memory = importMemoryTexture(this.ctx, buffer);
        try {
          const framebuffer = framebufferFor(this.ctx, memory.texture, 'the imported memfd');
          const reason =
            `GL renders into the memfd itself (GL_EXT_memory_object_fd on ${this.ctx.renderer}; ` +
            `stride ${buffer.stride} = SwiftShader's pitch)`;
          return {
            buffer,
            framebuffer,
            path: 'memory-object',
            reason,
            bgr,
            destroy: () => {
              gl.glDeleteFramebuffers(1, new Uint32Array([framebuffer]));
              memory.destroy();
            },
          };
        } catch (error) {
          memory.destroy();
          throw error;
        }
      } catch (error) {
        why = (error as Error).message;
      }
    }
    // Readback: a texture of its own, starting as a copy of the buffer.
    this.ctx.drainGlErrors();
    const ids = new Uint32Array(1);
    gl.glGenTextures(1, ids);
    const texture = ids[0];
    gl.glBindTexture(GL.TEXTURE_2D, texture);
    setNearest(this.ctx);
    gl.glTexStorage2D(GL.TEXTURE_2D, 1, GL.RGBA8, buffer.width, buffer.height);
    gl.glPixelStorei(GL.UNPACK_ALIGNMENT, 4);
    gl.glPixelStorei(GL.UNPACK_ROW_LENGTH, buffer.stride / 4);
    gl.glTexSubImage2D(GL.TEXTURE_2D, 0, 0, 0, buffer.width, buffer.height, GL.RGBA, GL.UNSIGNED_BYTE, buffer.pixels());
    gl.glPixelStorei(GL.UNPACK_ROW_LENGTH, 0);
    gl.glBindTexture(GL.TEXTURE_2D, 0);
    let framebuffer: number;
    try {
      this.ctx.checkGlError('creating the readback texture');
      framebuffer = framebufferFor(this.ctx, texture, `a ${buffer.width}x${buffer.height} RGBA8 texture`);
    } catch (error) {
      gl.glDeleteTextures(1, ids);
      throw error;
    }
    return {
      buffer,
      framebuffer,
      path: 'readback',
      bgr,
      reason: `rendered into a texture of its own, damage read back into the buffer (memory-object: ${why})`,
      destroy: () => {
        gl.glDeleteFramebuffers(1, new Uint32Array([framebuffer]));
        gl.glDeleteTextures(1, new Uint32Array([texture]));
      },
    };
  }

  /** Frees the framebuffers of buffers the surface has destroyed. */
  private prune(): void {
    for (const [key, target] of this.targets) {
      if ((key as { destroyed?: boolean }).destroyed === true) {
        this.targets.delete(key);
        target.destroy();
      }
    }
  }

  /** Frees one buffer's framebuffer (and texture or import). */
  forget(buffer: SurfaceBuffer | RenderableBuffer): void {
    const target = this.targets.get(buffer);
    if (!target) return;
    if (this.current === target) throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'forget() between begin() and end()');
    this.targets.delete(buffer);
    if (!this.ctx.closed) {
      this.ctx.makeCurrent();
      target.destroy();
    }
  }

  /** Frees everything. Idempotent; GpuContext.close() does it too. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.current = null;
    this.untrack();
    if (this.ctx.closed) return;
    this.ctx.makeCurrent();
    for (const target of this.targets.values()) target.destroy();
    this.targets.clear();
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
