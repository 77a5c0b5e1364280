/**
 * A memfd as GL texture storage (GL_EXT_memory_object + GL_EXT_memory_object_fd): zero-copy,
 * but only on ANGLE over SwiftShader, whose Vulkan "opaque fd" memory *is* a memfd. On a real
 * GPU an opaque fd is driver memory, and Mesa accepts the import but gives a texture whose
 * framebuffer is incomplete, so the path is gated on GL_RENDERER naming SwiftShader as well as
 * on both extension strings (shared facts, angle.md §6–7).
 *
 * Layout SwiftShader gives the texture, measured: linear RGBA8, offset 0, first row at the
 * lowest address (= GL row y 0), row pitch align(width, 2) × 4 bytes. It does not check the
 * size it is given: a memfd smaller than pitch × height makes the next GL read SIGBUS, so
 * every buffer is checked here before it is imported.
 */
import * as fs from 'node:fs';
import { handleFd, handleClosed, type BufferKey, type OsHandle } from '../handles.js';
import { SurfaceLinkError } from '../errors.js';
import type { FormatInfo, PlaneLayout } from '../formats.js';
import type { BackingIdentity } from '../mechanisms/types.js';
import type { GpuContext } from './context.js';
import { GL, glErrorName } from './egl.js';
import { checkSize } from './texture.js';

/** What a shared buffer looks like to the GL import and render paths (a Frame or a SurfaceBuffer's). */
export interface BufferLayout {
  /** Width in pixels. */
  readonly width: number;
  /** Height in pixels. */
  readonly height: number;
  /** Pixel format. */
  readonly format: FormatInfo;
  /** Layout of each plane within its handle's object. */
  readonly planes: readonly PlaneLayout[];
  /** The object behind the pixels (its kind and size decide the zero-copy paths). */
  readonly backing: BackingIdentity;
  /** The handles behind the planes, borrowed (Frame.handles, SurfaceBuffer.handles). */
  readonly handles: readonly OsHandle[];
  /** For each plane, which of `handles` holds it (default: all in the first). */
  readonly planeHandles?: readonly number[];
  /** The producer's name for the buffer (Frame.bufferKey, SurfaceBuffer.bufferKey): what caches key on. */
  readonly bufferKey: BufferKey;
}

/** Why this context cannot use memfd memory objects at all, or null when it can. */
export function memoryObjectUnavailable(ctx: GpuContext): string | null {
  if (process.platform !== 'linux') return `memfd memory objects are Linux-only (this is ${process.platform})`;
  for (const name of ['memoryObject', 'memoryObjectFd'] as const) {
    if (!ctx.capabilities[name])
      return (
        `${name === 'memoryObject' ? 'GL_EXT_memory_object' : 'GL_EXT_memory_object_fd'} is not ` +
        `advertised by ${ctx.renderer}`
      );
  }
  // The extension imports Vulkan opaque fds; only SwiftShader's are plain memfds (Mesa's import of one is unusable).
  if (!ctx.renderer.includes('SwiftShader'))
    return (
      `${ctx.renderer} advertises GL_EXT_memory_object_fd, but only SwiftShader's opaque fds are memfds ` +
      `(a memfd import elsewhere is refused or unusable)`
    );
  return null;
}

/** SwiftShader's row pitch for an RGBA8 image `width` pixels wide. */
export const swiftShaderPitch = (width: number): number => (width + (width & 1)) * 4;

/** Why this buffer's layout cannot be a SwiftShader memory-object texture, or null when it can. */
export function memoryObjectLayoutProblem(buffer: BufferLayout): string | null {
  const { width, height, format, planes, backing } = buffer;
  if (backing.kind !== 'memfd') return `the buffer is a ${backing.kind}, not a memfd`;
  if (planes.length !== 1 || format.planes[0].bytesPerPixel !== 4)
    return `${format.name} is not a single-plane 32-bit format`;
  const plane = planes[0];
  const pitch = swiftShaderPitch(width);
  if (plane.offset !== 0) return `plane 0 starts at offset ${plane.offset}; SwiftShader's textures start at 0`;
  if (plane.stride !== pitch)
    return (
      `stride ${plane.stride} differs from SwiftShader's row pitch ${pitch} (align(${width}, 2) × 4): ` +
      `widths whose rows are a multiple of 64 bytes match`
    );
  if (backing.size < pitch * height)
    return (
      `the memfd holds ${backing.size} bytes, fewer than ${pitch} × ${height} (SwiftShader would read ` +
      `past its end)`
    );
  return null;
}

/** A texture whose storage is a memfd; destroy() deletes both (GL closes its fd). */
export interface MemoryTexture {
  /** GL_TEXTURE_2D name (RGBA8 over the memfd's bytes). */
  readonly texture: number;
  /** The GL memory object holding the memfd. */
  readonly memory: number;
  /** Deletes the texture and the memory object. Idempotent; does nothing once the context is closed. */
  destroy(): void;
}

/**
 * Imports `buffer`'s memfd as an RGBA8 texture (levels 1, linear tiling) with the memfd as its
 * memory. GL takes ownership of the fd it is given, so it gets a duplicate of the buffer's
 * memfd (NativeFd.dupRaw; SwiftShader maps it shared). Throws E_UNSUPPORTED when the
 * context or layout does not allow it (see the two checks above), E_IMPORT_FAILED on a GL error.
 */
export function importMemoryTexture(ctx: GpuContext, buffer: BufferLayout): MemoryTexture {
  const unavailable = memoryObjectUnavailable(ctx) ?? memoryObjectLayoutProblem(buffer);
  if (unavailable) throw new SurfaceLinkError('E_UNSUPPORTED', `memory-object import: ${unavailable}`);
  checkSize(ctx, buffer.width, buffer.height);
  const api = ctx.api;
  const gl = api.gl;
  const list = ctx.advertised.gl;
  const create = api.extensionProc('glCreateMemoryObjectsEXT', list, ctx.renderer);
  const remove = api.extensionProc('glDeleteMemoryObjectsEXT', list, ctx.renderer);
  const parameter = api.extensionProc('glMemoryObjectParameterivEXT', list, ctx.renderer);
  const importFd = api.extensionProc('glImportMemoryFdEXT', list, ctx.renderer);
  const storage = api.extensionProc('glTexStorageMem2DEXT', list, ctx.renderer);

  const handle = buffer.handles[0];
  if (handle === undefined || handleClosed(handle))
    throw new SurfaceLinkError(
      'E_IMPORT_FAILED',
      `the buffer (memfd inode ${buffer.backing.inode}) has no open fd to import`,
    );
  // Before the dup: from here on nothing may throw until the try that closes the duplicate.
  ctx.makeCurrent();
  ctx.drainGlErrors();
  let fd: number;
  try {
    fd = handleFd(handle, 'a memfd for GL').dupRaw();
  } catch (error) {
    throw new SurfaceLinkError(
      'E_IMPORT_FAILED',
      `cannot duplicate the memfd (inode ${buffer.backing.inode}) for GL: ${(error as Error).message}`,
    );
  }
  const ids = new Uint32Array(1);
  let memory = 0;
  let texture = 0;
  let fdGiven = false;
  try {
    create(1, ids);
    memory = ids[0];
    if (memory === 0)
      throw new SurfaceLinkError('E_IMPORT_FAILED', `glCreateMemoryObjectsEXT returned no object (${ctx.renderer})`);
    parameter(memory, GL.DEDICATED_MEMORY_OBJECT_EXT, new Int32Array([1]));
    importFd(memory, BigInt(buffer.backing.size), GL.HANDLE_TYPE_OPAQUE_FD_EXT, fd);
    // A successful import owns the fd; a failed one leaves it to us (GL_EXT_memory_object_fd).
    const errors = ctx.drainGlErrors();
    fdGiven = errors.length === 0;
    if (errors.length > 0)
      throw new SurfaceLinkError(
        'E_IMPORT_FAILED',
        `glImportMemoryFdEXT refused the memfd: ${errors.map(glErrorName).join(', ')} (${ctx.renderer})`,
      );
    gl.glGenTextures(1, ids);
    texture = ids[0];
    gl.glBindTexture(GL.TEXTURE_2D, texture);
    gl.glTexParameteri(GL.TEXTURE_2D, GL.TEXTURE_TILING_EXT, GL.LINEAR_TILING_EXT);
    storage(GL.TEXTURE_2D, 1, GL.RGBA8, buffer.width, buffer.height, memory, 0n);
    gl.glBindTexture(GL.TEXTURE_2D, 0);
    const storageErrors = ctx.drainGlErrors();
    if (storageErrors.length > 0)
      throw new SurfaceLinkError(
        'E_IMPORT_FAILED',
        `glTexStorageMem2DEXT(${buffer.width}x${buffer.height}) ` +
          `failed: ${storageErrors.map(glErrorName).join(', ')} (${ctx.renderer})`,
      );
  } catch (error) {
    if (texture !== 0) gl.glDeleteTextures(1, new Uint32Array([texture]));
    if (memory !== 0) remove(1, new Uint32Array([memory]));
    if (!fdGiven) fs.closeSync(fd);
    throw error;
  }
  let destroyed = false;
  return {
    texture,
    memory,
    destroy() {
      if (destroyed || ctx.closed) return;
      destroyed = true;
      ctx.makeCurrent();
      gl.glDeleteTextures(1, new Uint32Array([texture]));
      remove(1, new Uint32Array([memory]));
    },
  };
}
