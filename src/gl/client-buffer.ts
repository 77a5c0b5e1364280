/**
 * Platform textures bound to GL through ANGLE's client-buffer pbuffers — written against the
 * extension specs, UNVERIFIED: they need macOS (IOSurface) or Windows (D3D11), and nothing here
 * can run on this project's Linux machines. Each checks its extension string first and touches
 * no entry point otherwise (E_UNSUPPORTED naming the extension).
 *
 *   EGL_ANGLE_iosurface_client_buffer: eglCreatePbufferFromClientBuffer(dpy,
 *     EGL_IOSURFACE_ANGLE, IOSurfaceRef, config, [WIDTH, HEIGHT, IOSURFACE_PLANE_ANGLE,
 *     TEXTURE_TARGET (the display's EGL_BIND_TO_TEXTURE_TARGET_ANGLE: TEXTURE_RECTANGLE_ANGLE on
 *     ANGLE's desktop-GL backend, TEXTURE_2D on Metal), TEXTURE_INTERNAL_FORMAT_ANGLE GL_BGRA_EXT,
 *     TEXTURE_FORMAT RGBA, TEXTURE_TYPE_ANGLE GL_UNSIGNED_BYTE]), then eglBindTexImage.
 *   EGL_ANGLE_d3d_texture_client_buffer: eglCreatePbufferFromClientBuffer(dpy,
 *     EGL_D3D_TEXTURE_ANGLE, ID3D11Texture2D*, config, [TEXTURE_FORMAT RGBA, TEXTURE_TARGET
 *     TEXTURE_2D]) (size taken from the texture), then eglBindTexImage.
 *
 * The pbuffer needs an EGLConfig that can bind RGBA textures (EGL_BIND_TO_TEXTURE_RGBA); the
 * context itself was made without a config (EGL_KHR_no_config_context), which allows that.
 * Ownership: the caller keeps its IOSurfaceRef / texture alive while the ClientBufferTexture exists;
 * destroy() (or GpuContext.close()) releases the pbuffer and the GL texture.
 */
import { SurfaceLinkError } from '../errors.js';
import { eglFailure, type GpuContext } from './context.js';
import { EGL, GL } from './egl.js';
import { setNearest } from './draw.js';

/**
 * A platform texture (IOSurface, D3D11) bound to a GL texture through an ANGLE client-buffer
 * pbuffer. Free it with destroy(); the caller keeps the platform object alive until then.
 */
export interface ClientBufferTexture {
  /** GL texture name, bound to the pbuffer's image. */
  readonly texture: number;
  /** GL_TEXTURE_2D, or GL_TEXTURE_RECTANGLE_ANGLE (0x84F5) on ANGLE's desktop-GL backend. */
  readonly target: number;
  /** The EGLSurface (pbuffer) made from the client buffer. */
  readonly surface: bigint;
  /**
   * Releases the texture image, destroys the pbuffer and deletes the texture. Idempotent;
   * GpuContext.close() does it too.
   */
  destroy(): void;
}

const GL_TEXTURE_RECTANGLE_ANGLE = 0x84f5;

function bindableConfig(ctx: GpuContext): bigint {
  const configs = new BigUint64Array(1);
  const count = new Int32Array(1);
  const attribs = new Int32Array([
    EGL.SURFACE_TYPE,
    EGL.PBUFFER_BIT,
    EGL.BIND_TO_TEXTURE_RGBA,
    EGL.TRUE,
    EGL.RENDERABLE_TYPE,
    EGL.OPENGL_ES2_BIT,
    EGL.NONE,
  ]);
  if (ctx.api.egl.eglChooseConfig(ctx.display, attribs, configs, 1, count) !== EGL.TRUE || count[0] < 1) {
    throw eglFailure(ctx.api, 'E_UNSUPPORTED', `no EGLConfig with EGL_BIND_TO_TEXTURE_RGBA on ${ctx.renderer}`);
  }
  return configs[0];
}

function bindPbuffer(
  ctx: GpuContext,
  bufferType: number,
  clientBuffer: bigint,
  attribs: number[],
  target: number,
  what: string,
): ClientBufferTexture {
  const egl = ctx.api.egl;
  const gl = ctx.api.gl;
  ctx.makeCurrent();
  const surface = egl.eglCreatePbufferFromClientBuffer(
    ctx.display,
    bufferType,
    clientBuffer,
    bindableConfig(ctx),
    new Int32Array([...attribs, EGL.NONE]),
  );
  if (surface === null || surface === 0n)
    throw eglFailure(ctx.api, 'E_IMPORT_FAILED', `eglCreatePbufferFromClientBuffer(${what}) failed on ${ctx.renderer}`);
  const ids = new Uint32Array(1);
  gl.glGenTextures(1, ids);
  gl.glBindTexture(target, ids[0]);
  if (target === GL.TEXTURE_2D) setNearest(ctx);
  if (egl.eglBindTexImage(ctx.display, surface, EGL.BACK_BUFFER) !== EGL.TRUE) {
    const error = eglFailure(ctx.api, 'E_IMPORT_FAILED', `eglBindTexImage(${what}) failed on ${ctx.renderer}`);
    gl.glBindTexture(target, 0);
    gl.glDeleteTextures(1, ids);
    egl.eglDestroySurface(ctx.display, surface);
    throw error;
  }
  gl.glBindTexture(target, 0);
  let destroyed = false;
  const result: ClientBufferTexture = {
    texture: ids[0],
    target,
    surface,
    destroy() {
      if (destroyed) return;
      destroyed = true;
      untrack();
      if (ctx.closed) return;
      ctx.makeCurrent();
      egl.eglReleaseTexImage(ctx.display, surface, EGL.BACK_BUFFER);
      gl.glDeleteTextures(1, ids);
      egl.eglDestroySurface(ctx.display, surface);
    },
  };
  // Like every other GL resource here, GpuContext.close() destroys it if its owner has not.
  const untrack = ctx.track(result);
  return result;
}

/**
 * An IOSurface (BGRA8, plane `plane`) as a texture, zero-copy (macOS, ANGLE with
 * EGL_ANGLE_iosurface_client_buffer). `ioSurface` is the IOSurfaceRef's address. UNVERIFIED.
 */
export function importIOSurfaceTexture(
  ctx: GpuContext,
  ioSurface: bigint,
  options: { width: number; height: number; plane?: number; rectangle?: boolean },
): ClientBufferTexture {
  if (!ctx.advertised.display.has('EGL_ANGLE_iosurface_client_buffer')) {
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `EGL_ANGLE_iosurface_client_buffer is not advertised by ${ctx.renderer} (an IOSurface import needs ` +
        `ANGLE on macOS)`,
    );
  }
  // Desktop-GL ANGLE on macOS binds IOSurfaces as rectangle textures; Metal ANGLE as 2D ones.
  const rectangle = options.rectangle ?? false;
  const attribs = [
    EGL.WIDTH,
    options.width,
    EGL.HEIGHT,
    options.height,
    EGL.IOSURFACE_PLANE_ANGLE,
    options.plane ?? 0,
    EGL.TEXTURE_TARGET,
    rectangle ? EGL.TEXTURE_RECTANGLE_ANGLE : EGL.TEXTURE_2D,
    EGL.TEXTURE_INTERNAL_FORMAT_ANGLE,
    GL.BGRA_EXT,
    EGL.TEXTURE_FORMAT,
    EGL.TEXTURE_RGBA,
    EGL.TEXTURE_TYPE_ANGLE,
    GL.UNSIGNED_BYTE,
  ];
  return bindPbuffer(
    ctx,
    EGL.IOSURFACE_ANGLE,
    ioSurface,
    attribs,
    rectangle ? GL_TEXTURE_RECTANGLE_ANGLE : GL.TEXTURE_2D,
    `EGL_IOSURFACE_ANGLE ${options.width}x${options.height}`,
  );
}

/**
 * An ID3D11Texture2D (on ANGLE's own D3D11 device, or opened from a shared handle) as a
 * texture, zero-copy (Windows, ANGLE with EGL_ANGLE_d3d_texture_client_buffer). UNVERIFIED.
 */
export function importD3D11Texture(ctx: GpuContext, texture: bigint): ClientBufferTexture {
  if (!ctx.advertised.display.has('EGL_ANGLE_d3d_texture_client_buffer')) {
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `EGL_ANGLE_d3d_texture_client_buffer is not advertised by ${ctx.renderer} (a D3D11 texture import needs ` +
        `ANGLE's D3D11 backend on Windows)`,
    );
  }
  return bindPbuffer(
    ctx,
    EGL.D3D_TEXTURE_ANGLE,
    texture,
    [EGL.TEXTURE_FORMAT, EGL.TEXTURE_RGBA, EGL.TEXTURE_TARGET, EGL.TEXTURE_2D],
    GL.TEXTURE_2D,
    'EGL_D3D_TEXTURE_ANGLE',
  );
}
