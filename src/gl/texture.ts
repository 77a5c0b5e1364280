/**
 * GL textures and EGLImages: create, bind an EGLImage to a texture, read a texture back.
 * Shared by the dma-buf importer and by the tests that prove the EGLImage path on a machine
 * without dma-buf import (an EGLImage made from a GL texture, EGL_KHR_gl_texture_2D_image).
 */
import { invalidArgument, SurfaceLinkError } from '../errors.js';
import { eglFailure, type GpuContext } from './context.js';
import { EGL, GL } from './egl.js';

/**
 * Where an EGLImage is bound: a GL_TEXTURE_2D (GL_OES_EGL_image) or GL_TEXTURE_EXTERNAL_OES
 * (GL_OES_EGL_image_external).
 */
export type TextureTarget = 'texture2d' | 'external';

/** A GL texture whose storage is an EGLImage (a dma-buf import, or an EGLImage of another texture). */
export interface ImageTexture {
  /** GL texture name. */
  readonly texture: number;
  /** GL target the texture is bound to: GL_TEXTURE_2D 0x0DE1 or GL_TEXTURE_EXTERNAL_OES 0x8D65. */
  readonly target: number;
  /** EGLImageKHR. */
  readonly image: bigint;
  /** True once destroy() was called. */
  readonly destroyed: boolean;
  /** Deletes the texture and destroys the EGLImage. Idempotent; also done by GpuContext.close(). */
  destroy(): void;
  /** Same as destroy(), for `using`. */
  [Symbol.dispose](): void;
}

export function glTarget(target: TextureTarget): number {
  return target === 'external' ? GL.TEXTURE_EXTERNAL_OES : GL.TEXTURE_2D;
}

export function checkSize(ctx: GpuContext, width: number, height: number): void {
  for (const [name, v] of [
    ['width', width],
    ['height', height],
  ] as const) {
    if (!Number.isInteger(v) || v < 1 || v > ctx.maxTextureSize)
      throw invalidArgument(
        name,
        `an integer in [1, ${ctx.maxTextureSize}] (GL_MAX_TEXTURE_SIZE of ${ctx.renderer})`,
        v,
      );
  }
}

/**
 * A new RGBA8 GL_TEXTURE_2D, filled with `pixels` (width*height*4 bytes, rows bottom-up as GL sees
 * them) or left undefined.
 */
export function createTexture(ctx: GpuContext, width: number, height: number, pixels?: Uint8Array): number {
  checkSize(ctx, width, height);
  if (pixels && pixels.byteLength !== width * height * 4)
    throw invalidArgument(
      'pixels',
      `${width * height * 4} bytes (RGBA8, ${width}x${height})`,
      `${pixels.byteLength} bytes`,
    );
  ctx.makeCurrent();
  ctx.drainGlErrors();
  const gl = ctx.api.gl;
  const ids = new Uint32Array(1);
  gl.glGenTextures(1, ids);
  gl.glBindTexture(GL.TEXTURE_2D, ids[0]);
  setSampling(ctx, GL.TEXTURE_2D);
  gl.glPixelStorei(GL.UNPACK_ALIGNMENT, 1);
  gl.glTexImage2D(GL.TEXTURE_2D, 0, GL.RGBA8, width, height, 0, GL.RGBA, GL.UNSIGNED_BYTE, pixels ?? null);
  gl.glBindTexture(GL.TEXTURE_2D, 0);
  try {
    ctx.checkGlError('glTexImage2D');
  } catch (error) {
    gl.glDeleteTextures(1, ids);
    throw error;
  }
  return ids[0];
}

/** Deletes a texture made by createTexture() (makes `ctx` current first). */
export function deleteTexture(ctx: GpuContext, texture: number): void {
  ctx.makeCurrent();
  ctx.api.gl.glDeleteTextures(1, new Uint32Array([texture]));
}

function setSampling(ctx: GpuContext, target: number): void {
  const gl = ctx.api.gl;
  gl.glTexParameteri(target, GL.TEXTURE_MIN_FILTER, GL.NEAREST);
  gl.glTexParameteri(target, GL.TEXTURE_MAG_FILTER, GL.NEAREST);
  gl.glTexParameteri(target, GL.TEXTURE_WRAP_S, GL.CLAMP_TO_EDGE);
  gl.glTexParameteri(target, GL.TEXTURE_WRAP_T, GL.CLAMP_TO_EDGE);
}

/**
 * Reads a GL_TEXTURE_2D's level 0 through a framebuffer: width*height*4 bytes, RGBA8, rows in
 * GL order (row 0 = lowest address of the source). External textures cannot be attached to a
 * framebuffer (GL_OES_EGL_image_external) and are refused.
 */
export function readTexture(ctx: GpuContext, texture: number, width: number, height: number): Uint8Array {
  checkSize(ctx, width, height);
  ctx.makeCurrent();
  ctx.drainGlErrors();
  const gl = ctx.api.gl;
  const fbo = new Uint32Array(1);
  gl.glGenFramebuffers(1, fbo);
  try {
    gl.glBindFramebuffer(GL.FRAMEBUFFER, fbo[0]);
    gl.glFramebufferTexture2D(GL.FRAMEBUFFER, GL.COLOR_ATTACHMENT0, GL.TEXTURE_2D, texture, 0);
    const status = gl.glCheckFramebufferStatus(GL.FRAMEBUFFER);
    if (status !== GL.FRAMEBUFFER_COMPLETE)
      throw new SurfaceLinkError(
        'E_UNSUPPORTED',
        `texture ${texture} cannot be read back: framebuffer status 0x${status.toString(16)} (${ctx.renderer})`,
      );
    const out = new Uint8Array(width * height * 4);
    gl.glPixelStorei(GL.PACK_ALIGNMENT, 1);
    gl.glReadPixels(0, 0, width, height, GL.RGBA, GL.UNSIGNED_BYTE, out);
    ctx.checkGlError('glReadPixels');
    return out;
  } finally {
    gl.glBindFramebuffer(GL.FRAMEBUFFER, 0);
    gl.glDeleteFramebuffers(1, fbo);
  }
}

/**
 * Binds `image` to a new texture with glEGLImageTargetTexture2DOES (GL_OES_EGL_image; for
 * 'external', GL_OES_EGL_image_external too). Takes ownership of `image`: on failure it is
 * destroyed; on success the returned ImageTexture destroys it.
 */
export function textureFromEglImage(ctx: GpuContext, image: bigint, target: TextureTarget = 'texture2d'): ImageTexture {
  const api = ctx.api;
  const destroyImage = api.extensionProc('eglDestroyImageKHR', ctx.advertised.display, ctx.renderer);
  let texture = 0;
  try {
    if (target === 'external' && !ctx.capabilities.eglImageExternal)
      throw new SurfaceLinkError('E_UNSUPPORTED', `GL_OES_EGL_image_external is not advertised by ${ctx.renderer}`);
    const imageTarget = api.extensionProc('glEGLImageTargetTexture2DOES', ctx.advertised.gl, ctx.renderer);
    ctx.makeCurrent();
    ctx.drainGlErrors();
    const gl = api.gl;
    const ids = new Uint32Array(1);
    gl.glGenTextures(1, ids);
    texture = ids[0];
    const glTgt = glTarget(target);
    gl.glBindTexture(glTgt, texture);
    setSampling(ctx, glTgt);
    imageTarget(glTgt, image);
    gl.glBindTexture(glTgt, 0);
    ctx.checkGlError('glEGLImageTargetTexture2DOES');
    return trackImageTexture(ctx, texture, glTgt, image);
  } catch (error) {
    if (texture !== 0) deleteTexture(ctx, texture);
    destroyImage(ctx.display, image);
    throw error;
  }
}

function trackImageTexture(ctx: GpuContext, texture: number, target: number, image: bigint): ImageTexture {
  let destroyed = false;
  const result: ImageTexture = {
    texture,
    target,
    image,
    get destroyed() {
      return destroyed;
    },
    destroy() {
      if (destroyed) return;
      destroyed = true;
      untrack();
      if (ctx.closed) return;
      deleteTexture(ctx, texture);
      ctx.api.extensionProc('eglDestroyImageKHR', ctx.advertised.display, ctx.renderer)(ctx.display, image);
    },
    [Symbol.dispose]() {
      result.destroy();
    },
  };
  const untrack = ctx.track(result);
  return result;
}

/**
 * An EGLImage whose pixels are a GL texture's level 0 (EGL_KHR_gl_texture_2D_image): the
 * machine-independent way to exercise eglCreateImageKHR + glEGLImageTargetTexture2DOES.
 * The caller destroys it with destroyImage() unless it hands it to textureFromEglImage().
 */
export function eglImageFromTexture(ctx: GpuContext, texture: number): bigint {
  if (!ctx.capabilities.textureImage)
    throw new SurfaceLinkError('E_UNSUPPORTED', `EGL_KHR_gl_texture_2D_image is not advertised by ${ctx.renderer}`);
  const create = ctx.api.extensionProc('eglCreateImageKHR', ctx.advertised.display, ctx.renderer);
  ctx.makeCurrent();
  // EGLClientBuffer = (EGLClientBuffer)(uintptr_t)texture
  const image = create(
    ctx.display,
    ctx.handle,
    EGL.GL_TEXTURE_2D_KHR,
    BigInt(texture),
    new Int32Array([EGL.GL_TEXTURE_LEVEL_KHR, 0, EGL.NONE]),
  );
  if (image === null || image === 0n)
    throw eglFailure(ctx.api, 'E_SYSTEM', `eglCreateImageKHR(EGL_GL_TEXTURE_2D_KHR, texture ${texture}) failed`);
  return image;
}

/** Destroys an EGLImage made by eglImageFromTexture() that was not handed to textureFromEglImage(). */
export function destroyImage(ctx: GpuContext, image: bigint): void {
  ctx.api.extensionProc('eglDestroyImageKHR', ctx.advertised.display, ctx.renderer)(ctx.display, image);
}
