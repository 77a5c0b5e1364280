/**
 * Linux dma-buf → EGLImage → GL texture (EGL_EXT_image_dma_buf_import, with explicit format
 * modifiers under EGL_EXT_image_dma_buf_import_modifiers).
 *
 * Nothing here reaches an extension function unless its name is in the extension string: the
 * capability is checked first and the entry points come from GlApi.extensionProc(), which
 * checks again. (Mesa llvmpipe and ANGLE/SwiftShader advertise neither extension; a real GPU
 * driver is needed.)
 */
import { invalidArgument, SurfaceLinkError } from '../errors.js';
import { MODIFIER_INVALID, MODIFIER_LINEAR } from '../formats.js';
import type { NativeFd } from '../native/index.js';
import { eglFailure, type GpuContext } from './context.js';
import { EGL } from './egl.js';
import { checkSize, textureFromEglImage, type ImageTexture, type TextureTarget } from './texture.js';

/** One plane of a dma-buf import. */
export interface DmabufPlane {
  /** The dma-buf holding this plane. The caller keeps ownership (see importDmabufTexture). */
  fd: NativeFd;
  /** Bytes from the start of the dma-buf to the plane's first sample. */
  offset: number;
  /** Bytes between the starts of consecutive rows (EGL calls it pitch). */
  stride: number;
}

/** A dma-buf image to import: its size, DRM format and modifier, and where its planes lie. */
export interface DmabufImportDescriptor {
  /** Width in pixels (1..GL_MAX_TEXTURE_SIZE). */
  width: number;
  /** Height in pixels (1..GL_MAX_TEXTURE_SIZE). */
  height: number;
  /** DRM fourcc (drm_fourcc.h), e.g. fourcc('AB24') for ABGR8888. */
  fourcc: number;
  /**
   * DRM format modifier. MODIFIER_INVALID (0x00ffffffffffffff, the default) means "implicit":
   * no modifier attributes are sent. Any other value is sent as MODIFIER_LO/HI on every plane
   * and needs EGL_EXT_image_dma_buf_import_modifiers — except LINEAR (0), which without that
   * extension is imported with the driver's implicit layout.
   */
  modifier?: bigint;
  /** 1 to 3 planes; a 4th needs EGL_EXT_image_dma_buf_import_modifiers. */
  planes: readonly DmabufPlane[];
  /**
   * Default 'texture2d' (GL_OES_EGL_image); 'external' binds GL_TEXTURE_EXTERNAL_OES (needed for
   * YUV on many drivers).
   */
  target?: TextureTarget;
}

/** An imported dma-buf: the texture, its target and the EGLImage behind it. */
export type DmabufTexture = ImageTexture;

const PLANE_ATTRIBUTES = [
  {
    fd: EGL.DMA_BUF_PLANE0_FD_EXT,
    offset: EGL.DMA_BUF_PLANE0_OFFSET_EXT,
    pitch: EGL.DMA_BUF_PLANE0_PITCH_EXT,
    lo: EGL.DMA_BUF_PLANE0_MODIFIER_LO_EXT,
    hi: EGL.DMA_BUF_PLANE0_MODIFIER_HI_EXT,
  },
  {
    fd: EGL.DMA_BUF_PLANE1_FD_EXT,
    offset: EGL.DMA_BUF_PLANE1_OFFSET_EXT,
    pitch: EGL.DMA_BUF_PLANE1_PITCH_EXT,
    lo: EGL.DMA_BUF_PLANE1_MODIFIER_LO_EXT,
    hi: EGL.DMA_BUF_PLANE1_MODIFIER_HI_EXT,
  },
  {
    fd: EGL.DMA_BUF_PLANE2_FD_EXT,
    offset: EGL.DMA_BUF_PLANE2_OFFSET_EXT,
    pitch: EGL.DMA_BUF_PLANE2_PITCH_EXT,
    lo: EGL.DMA_BUF_PLANE2_MODIFIER_LO_EXT,
    hi: EGL.DMA_BUF_PLANE2_MODIFIER_HI_EXT,
  },
  {
    fd: EGL.DMA_BUF_PLANE3_FD_EXT,
    offset: EGL.DMA_BUF_PLANE3_OFFSET_EXT,
    pitch: EGL.DMA_BUF_PLANE3_PITCH_EXT,
    lo: EGL.DMA_BUF_PLANE3_MODIFIER_LO_EXT,
    hi: EGL.DMA_BUF_PLANE3_MODIFIER_HI_EXT,
  },
] as const;

/**
 * The EGL_LINUX_DMA_BUF_EXT attribute list for `desc` (exported for tests and diagnostics).
 * `withModifiers`: EGL_EXT_image_dma_buf_import_modifiers is advertised.
 */
export function dmabufImageAttributes(desc: DmabufImportDescriptor, withModifiers: boolean): Int32Array {
  const modifier = desc.modifier ?? MODIFIER_INVALID;
  const attribs: number[] = [EGL.WIDTH, desc.width, EGL.HEIGHT, desc.height, EGL.LINUX_DRM_FOURCC_EXT, desc.fourcc | 0];
  desc.planes.forEach((plane, i) => {
    const names = PLANE_ATTRIBUTES[i];
    // The fd goes to EGL as a number, which is what NativeFd.debugNumber is; this is the one
    // place it addresses the fd. Ownership stays with the caller. EGL_EXT_image_dma_buf_import
    // (Khronos EGL registry, extensions/EXT/EGL_EXT_image_dma_buf_import.txt): "If
    // eglCreateImageKHR is successful for a EGL_LINUX_DMA_BUF_EXT target, the EGL will take a
    // reference to the dma_buf(s) which it will release at any time while the EGLDisplay is
    // initialized. It is the responsibility of the application to close the dma_buf file
    // descriptors." and Issue 3: "No, EGL does not take ownership of the file descriptors. It
    // is the responsibility of the application to close the file descriptors on success and
    // failure." So the NativeFd may be closed as soon as eglCreateImageKHR has returned.
    attribs.push(names.fd, plane.fd.debugNumber, names.offset, plane.offset, names.pitch, plane.stride);
    if (withModifiers && modifier !== MODIFIER_INVALID) {
      attribs.push(names.lo, Number(modifier & 0xffffffffn) | 0, names.hi, Number(modifier >> 32n) | 0);
    }
  });
  attribs.push(EGL.NONE);
  return new Int32Array(attribs);
}

function validate(ctx: GpuContext, desc: DmabufImportDescriptor): void {
  if (typeof desc !== 'object' || desc === null) throw invalidArgument('descriptor', 'an object', desc);
  checkSize(ctx, desc.width, desc.height);
  if (!Number.isInteger(desc.fourcc) || desc.fourcc < 0 || desc.fourcc > 0xffffffff)
    throw invalidArgument('fourcc', 'a 32-bit DRM fourcc', desc.fourcc);
  const modifier = desc.modifier ?? MODIFIER_INVALID;
  if (typeof modifier !== 'bigint' || modifier < 0n || modifier > 0xffffffffffffffffn)
    throw invalidArgument('modifier', 'a 64-bit bigint', modifier);
  const maxPlanes = ctx.capabilities.dmabufImportModifiers ? 4 : 3;
  if (!Array.isArray(desc.planes) || desc.planes.length < 1 || desc.planes.length > 4)
    throw invalidArgument('planes', 'an array of 1 to 4 planes', desc.planes?.length);
  if (desc.planes.length > maxPlanes)
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `a 4th dma-buf plane needs EGL_EXT_image_dma_buf_import_modifiers, which is not advertised by ${ctx.renderer}`,
    );
  desc.planes.forEach((p, i) => {
    if (typeof p?.fd !== 'object' || p.fd === null || typeof p.fd.debugNumber !== 'number')
      throw invalidArgument(`planes[${i}].fd`, 'a NativeFd', p?.fd);
    if (p.fd.closed) throw new SurfaceLinkError('E_INVALID_ARGUMENT', `planes[${i}].fd is closed`);
    if (!Number.isInteger(p.offset) || p.offset < 0 || p.offset > 0x7fffffff)
      throw invalidArgument(`planes[${i}].offset`, 'an integer in [0, 2^31)', p.offset);
    if (!Number.isInteger(p.stride) || p.stride < 1 || p.stride > 0x7fffffff)
      throw invalidArgument(`planes[${i}].stride`, 'an integer in [1, 2^31)', p.stride);
  });
  if (modifier !== MODIFIER_INVALID && modifier !== MODIFIER_LINEAR && !ctx.capabilities.dmabufImportModifiers) {
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `modifier 0x${modifier.toString(16)} cannot be given: EGL_EXT_image_dma_buf_import_modifiers is not ` +
        `advertised by ${ctx.renderer}`,
    );
  }
}

/**
 * Imports dma-buf planes as an EGLImage (eglCreateImageKHR(dpy, EGL_NO_CONTEXT,
 * EGL_LINUX_DMA_BUF_EXT, NULL, attribs)) bound to a new GL texture. The caller keeps its fds
 * and may close them once this returns; the image holds its own reference to the buffers.
 *
 * Throws E_UNSUPPORTED (touching no extension entry point) when EGL_EXT_image_dma_buf_import is
 * not advertised; E_IMPORT_FAILED with the EGL error when the driver refuses the buffer.
 */
export function importDmabufTexture(ctx: GpuContext, desc: DmabufImportDescriptor): DmabufTexture {
  if (ctx.closed) throw new SurfaceLinkError('E_CLOSED', 'this GpuContext is closed');
  if (!ctx.capabilities.dmabufImport) {
    throw new SurfaceLinkError(
      'E_UNSUPPORTED',
      `EGL_EXT_image_dma_buf_import is not advertised by ${ctx.renderer} (${ctx.displaySpec.name}, ` +
        `EGL ${ctx.eglVersion}); importing dma-bufs needs a GPU driver's EGL`,
    );
  }
  validate(ctx, desc);
  const target = desc.target ?? 'texture2d';
  if (!ctx.capabilities.eglImage)
    throw new SurfaceLinkError('E_UNSUPPORTED', `GL_OES_EGL_image is not advertised by ${ctx.renderer}`);
  if (target === 'external' && !ctx.capabilities.eglImageExternal)
    throw new SurfaceLinkError('E_UNSUPPORTED', `GL_OES_EGL_image_external is not advertised by ${ctx.renderer}`);
  const create = ctx.api.extensionProc('eglCreateImageKHR', ctx.advertised.display, ctx.renderer);
  const attribs = dmabufImageAttributes(desc, ctx.capabilities.dmabufImportModifiers);
  ctx.makeCurrent();
  const image = create(ctx.display, null, EGL.LINUX_DMA_BUF_EXT, null, attribs);
  if (image === null || image === 0n) {
    throw eglFailure(
      ctx.api,
      'E_IMPORT_FAILED',
      `eglCreateImageKHR(EGL_LINUX_DMA_BUF_EXT, ${desc.width}x${desc.height}, fourcc ` +
        `0x${(desc.fourcc >>> 0).toString(16)}, ${desc.planes.length} plane(s)) refused the dma-buf on ${ctx.renderer}`,
    );
  }
  return textureFromEglImage(ctx, image, target);
}

/** A DRM format the display can import, with its modifiers. */
export interface DmabufFormat {
  /** DRM fourcc. */
  fourcc: number;
  /** The modifiers it imports for this format. */
  modifiers: bigint[];
  /** Per modifier: only usable as GL_TEXTURE_EXTERNAL_OES. */
  externalOnly: boolean[];
}

/**
 * What the display can import (eglQueryDmaBufFormatsEXT / eglQueryDmaBufModifiersEXT), or
 * null when EGL_EXT_image_dma_buf_import_modifiers is not advertised (then nothing is called).
 */
export function queryDmabufFormats(ctx: GpuContext): DmabufFormat[] | null {
  if (ctx.closed) throw new SurfaceLinkError('E_CLOSED', 'this GpuContext is closed');
  if (!ctx.capabilities.dmabufImportModifiers) return null;
  const api = ctx.api;
  const queryFormats = api.extensionProc('eglQueryDmaBufFormatsEXT', ctx.advertised.display, ctx.renderer);
  const queryModifiers = api.extensionProc('eglQueryDmaBufModifiersEXT', ctx.advertised.display, ctx.renderer);
  const count = new Int32Array(1);
  if (queryFormats(ctx.display, 0, null, count) !== EGL.TRUE)
    throw eglFailure(api, 'E_SYSTEM', 'eglQueryDmaBufFormatsEXT (count)');
  const formats = new Int32Array(count[0]);
  if (count[0] > 0 && queryFormats(ctx.display, formats.length, formats, count) !== EGL.TRUE)
    throw eglFailure(api, 'E_SYSTEM', 'eglQueryDmaBufFormatsEXT');
  const result: DmabufFormat[] = [];
  for (const format of formats.subarray(0, Math.min(count[0], formats.length))) {
    const n = new Int32Array(1);
    if (queryModifiers(ctx.display, format, 0, null, null, n) !== EGL.TRUE)
      throw eglFailure(api, 'E_SYSTEM', `eglQueryDmaBufModifiersEXT(0x${(format >>> 0).toString(16)}) (count)`);
    const modifiers = new BigUint64Array(n[0]);
    const external = new Uint32Array(n[0]);
    if (n[0] > 0 && queryModifiers(ctx.display, format, modifiers.length, modifiers, external, n) !== EGL.TRUE) {
      throw eglFailure(api, 'E_SYSTEM', `eglQueryDmaBufModifiersEXT(0x${(format >>> 0).toString(16)})`);
    }
    const got = Math.min(n[0], modifiers.length);
    result.push({
      fourcc: format >>> 0,
      modifiers: [...modifiers.subarray(0, got)],
      externalOnly: [...external.subarray(0, got)].map((v) => v !== 0),
    });
  }
  return result;
}
