/**
 * EGL and OpenGL ES bindings, in one place (koffi). Nothing else in surfacelink declares an EGL
 * or GL function.
 *
 * Libraries are loaded lazily, on the first GpuContext.open(), from a `GlLibraries` pair: by
 * default the system's libEGL.so.1 / libGLESv2.so.2 (glvnd → Mesa here); an ANGLE loader passes
 * absolute paths to its own libEGL.so / libGLESv2.so instead. A failure lists every pair tried
 * and why each failed.
 *
 * Extension entry points are only ever reached through `GlApi.extensionProc()`, which refuses
 * (E_UNSUPPORTED) before calling eglGetProcAddress unless the extension's name is in the
 * extension string it is given. Under glvnd a non-NULL eglGetProcAddress proves nothing:
 * `eglExportDMABUFImageQueryMESA` resolves on a Mesa that does not advertise it, and calling it
 * kills the process with SIGSEGV (docs: shared facts, angle.md §7).
 */
import type * as Koffi from 'koffi';
import { SurfaceLinkError } from '../errors.js';

/** A pair of EGL + GLES libraries to load, and where it came from (for messages). */
export interface GlLibraries {
  /** dlopen() name or absolute path of libEGL. */
  egl: string;
  /** dlopen() name or absolute path of libGLESv2. */
  gles: string;
  /** Who chose this pair, e.g. 'system' or 'angle (@sparticuz/chromium 147.0.0)'. */
  source: string;
}

/** The system's glvnd/Mesa libraries, by soname (Debian: libegl1, libgles2, libegl-mesa0, libgl1-mesa-dri). */
export const SYSTEM_GL_LIBRARIES: GlLibraries = Object.freeze({ egl: 'libEGL.so.1', gles: 'libGLESv2.so.2', source: 'system' });

/** A native pointer as koffi 3 returns it: a BigInt address, NULL as null. */
export type Ptr = bigint | null;

// ---------------------------------------------------------------------------------------------
// Constants (values from the Khronos EGL/GLES registries and the extension specs named).
// ---------------------------------------------------------------------------------------------

export const EGL = Object.freeze({
  // EGL 1.x core
  FALSE: 0,
  TRUE: 1,
  NONE: 0x3038,
  SUCCESS: 0x3000,
  VENDOR: 0x3053,
  VERSION: 0x3054,
  EXTENSIONS: 0x3055,
  CLIENT_APIS: 0x308d,
  HEIGHT: 0x3056,
  WIDTH: 0x3057,
  OPENGL_ES_API: 0x30a0,
  CONTEXT_MAJOR_VERSION: 0x3098, // = EGL_CONTEXT_CLIENT_VERSION
  CONTEXT_MINOR_VERSION: 0x30fb,
  // EGL_KHR_image_base / EGL_KHR_gl_texture_2D_image
  IMAGE_PRESERVED_KHR: 0x30d2,
  GL_TEXTURE_2D_KHR: 0x30b1,
  GL_TEXTURE_LEVEL_KHR: 0x30bc,
  // EGL_MESA_platform_surfaceless
  PLATFORM_SURFACELESS_MESA: 0x31dd,
  // EGL_ANGLE_platform_angle (+ _vulkan, _device_type_swiftshader), for the ANGLE loader
  PLATFORM_ANGLE_ANGLE: 0x3202,
  PLATFORM_ANGLE_TYPE_ANGLE: 0x3203,
  PLATFORM_ANGLE_TYPE_VULKAN_ANGLE: 0x3450,
  PLATFORM_ANGLE_DEVICE_TYPE_ANGLE: 0x3209,
  PLATFORM_ANGLE_DEVICE_TYPE_SWIFTSHADER_ANGLE: 0x3487,
  PLATFORM_ANGLE_NATIVE_PLATFORM_TYPE_ANGLE: 0x348f,
  // EGL_EXT_image_dma_buf_import
  LINUX_DMA_BUF_EXT: 0x3270,
  LINUX_DRM_FOURCC_EXT: 0x3271,
  DMA_BUF_PLANE0_FD_EXT: 0x3272,
  DMA_BUF_PLANE0_OFFSET_EXT: 0x3273,
  DMA_BUF_PLANE0_PITCH_EXT: 0x3274,
  DMA_BUF_PLANE1_FD_EXT: 0x3275,
  DMA_BUF_PLANE1_OFFSET_EXT: 0x3276,
  DMA_BUF_PLANE1_PITCH_EXT: 0x3277,
  DMA_BUF_PLANE2_FD_EXT: 0x3278,
  DMA_BUF_PLANE2_OFFSET_EXT: 0x3279,
  DMA_BUF_PLANE2_PITCH_EXT: 0x327a,
  // EGL_EXT_image_dma_buf_import_modifiers
  DMA_BUF_PLANE3_FD_EXT: 0x3440,
  DMA_BUF_PLANE3_OFFSET_EXT: 0x3441,
  DMA_BUF_PLANE3_PITCH_EXT: 0x3442,
  DMA_BUF_PLANE0_MODIFIER_LO_EXT: 0x3443,
  DMA_BUF_PLANE0_MODIFIER_HI_EXT: 0x3444,
  DMA_BUF_PLANE1_MODIFIER_LO_EXT: 0x3445,
  DMA_BUF_PLANE1_MODIFIER_HI_EXT: 0x3446,
  DMA_BUF_PLANE2_MODIFIER_LO_EXT: 0x3447,
  DMA_BUF_PLANE2_MODIFIER_HI_EXT: 0x3448,
  DMA_BUF_PLANE3_MODIFIER_LO_EXT: 0x3449,
  DMA_BUF_PLANE3_MODIFIER_HI_EXT: 0x344a,
  // EGL 1.2 pbuffers bound as textures (client-buffer imports)
  SURFACE_TYPE: 0x3033,
  PBUFFER_BIT: 0x0001,
  RENDERABLE_TYPE: 0x3040,
  OPENGL_ES2_BIT: 0x0004,
  BIND_TO_TEXTURE_RGBA: 0x303a,
  TEXTURE_FORMAT: 0x3080,
  TEXTURE_TARGET: 0x3081,
  TEXTURE_RGBA: 0x305e,
  TEXTURE_2D: 0x305f,
  BACK_BUFFER: 0x3084,
  // EGL_ANGLE_iosurface_client_buffer
  IOSURFACE_ANGLE: 0x3454,
  IOSURFACE_PLANE_ANGLE: 0x345a,
  TEXTURE_RECTANGLE_ANGLE: 0x345b,
  TEXTURE_TYPE_ANGLE: 0x345c,
  TEXTURE_INTERNAL_FORMAT_ANGLE: 0x345d,
  BIND_TO_TEXTURE_TARGET_ANGLE: 0x348d,
  // EGL_ANGLE_d3d_texture_client_buffer
  D3D_TEXTURE_ANGLE: 0x33a3,
});

/** EGL error codes (eglGetError), by value, for messages. */
export const EGL_ERRORS: Readonly<Record<number, string>> = Object.freeze({
  0x3000: 'EGL_SUCCESS',
  0x3001: 'EGL_NOT_INITIALIZED',
  0x3002: 'EGL_BAD_ACCESS',
  0x3003: 'EGL_BAD_ALLOC',
  0x3004: 'EGL_BAD_ATTRIBUTE',
  0x3005: 'EGL_BAD_CONFIG',
  0x3006: 'EGL_BAD_CONTEXT',
  0x3007: 'EGL_BAD_CURRENT_SURFACE',
  0x3008: 'EGL_BAD_DISPLAY',
  0x3009: 'EGL_BAD_MATCH',
  0x300a: 'EGL_BAD_NATIVE_PIXMAP',
  0x300b: 'EGL_BAD_NATIVE_WINDOW',
  0x300c: 'EGL_BAD_PARAMETER',
  0x300d: 'EGL_BAD_SURFACE',
  0x300e: 'EGL_CONTEXT_LOST',
});

export const GL = Object.freeze({
  NO_ERROR: 0,
  VENDOR: 0x1f00,
  RENDERER: 0x1f01,
  VERSION: 0x1f02,
  EXTENSIONS: 0x1f03,
  SHADING_LANGUAGE_VERSION: 0x8b8c,
  MAX_TEXTURE_SIZE: 0x0d33,
  TEXTURE_2D: 0x0de1,
  TEXTURE_EXTERNAL_OES: 0x8d65, // GL_OES_EGL_image_external
  TEXTURE_MIN_FILTER: 0x2801,
  TEXTURE_MAG_FILTER: 0x2800,
  TEXTURE_WRAP_S: 0x2802,
  TEXTURE_WRAP_T: 0x2803,
  NEAREST: 0x2600,
  LINEAR: 0x2601,
  CLAMP_TO_EDGE: 0x812f,
  RGBA: 0x1908,
  RGBA8: 0x8058,
  UNSIGNED_BYTE: 0x1401,
  PACK_ALIGNMENT: 0x0d05,
  UNPACK_ALIGNMENT: 0x0cf5,
  FRAMEBUFFER: 0x8d40,
  COLOR_ATTACHMENT0: 0x8ce0,
  FRAMEBUFFER_COMPLETE: 0x8cd5,
  FRAMEBUFFER_BINDING: 0x8ca6,
  TEXTURE_BINDING_2D: 0x8069,
  BGRA_EXT: 0x80e1, // GL_EXT_texture_format_BGRA8888 / GL_EXT_read_format_bgra
  // Pixel store (ES 3.0): sub-rectangles of a larger client image
  UNPACK_ROW_LENGTH: 0x0cf2,
  UNPACK_SKIP_ROWS: 0x0cf3,
  UNPACK_SKIP_PIXELS: 0x0cf4,
  PACK_ROW_LENGTH: 0x0d02,
  PACK_SKIP_ROWS: 0x0d03,
  PACK_SKIP_PIXELS: 0x0d04,
  // ES 3.0 texture swizzle
  TEXTURE_SWIZZLE_R: 0x8e42,
  TEXTURE_SWIZZLE_G: 0x8e43,
  TEXTURE_SWIZZLE_B: 0x8e44,
  TEXTURE_SWIZZLE_A: 0x8e45,
  RED: 0x1903,
  GREEN: 0x1904,
  BLUE: 0x1905,
  ALPHA: 0x1906,
  ONE: 1,
  // Drawing
  SCISSOR_TEST: 0x0c11,
  BLEND: 0x0be2,
  DEPTH_TEST: 0x0b71,
  COLOR_BUFFER_BIT: 0x4000,
  TRIANGLES: 0x0004,
  TEXTURE0: 0x84c0,
  VERTEX_SHADER: 0x8b31,
  FRAGMENT_SHADER: 0x8b30,
  COMPILE_STATUS: 0x8b81,
  LINK_STATUS: 0x8b82,
  // GL_EXT_memory_object / GL_EXT_memory_object_fd
  TEXTURE_TILING_EXT: 0x9580,
  DEDICATED_MEMORY_OBJECT_EXT: 0x9581,
  OPTIMAL_TILING_EXT: 0x9584,
  LINEAR_TILING_EXT: 0x9585,
  HANDLE_TYPE_OPAQUE_FD_EXT: 0x9586,
});

/** GL error codes (glGetError), by value, for messages. */
export const GL_ERRORS: Readonly<Record<number, string>> = Object.freeze({
  0x0500: 'GL_INVALID_ENUM',
  0x0501: 'GL_INVALID_VALUE',
  0x0502: 'GL_INVALID_OPERATION',
  0x0505: 'GL_OUT_OF_MEMORY',
  0x0506: 'GL_INVALID_FRAMEBUFFER_OPERATION',
  0x0507: 'GL_CONTEXT_LOST',
});

export const eglErrorName = (code: number): string => EGL_ERRORS[code] ?? `EGL error 0x${code.toString(16)}`;
export const glErrorName = (code: number): string => GL_ERRORS[code] ?? `GL error 0x${code.toString(16)}`;

// ---------------------------------------------------------------------------------------------
// Typed function tables
// ---------------------------------------------------------------------------------------------

/** Core EGL 1.4 entry points, exported by every libEGL (glvnd's and ANGLE's). */
export interface EglCore {
  eglGetProcAddress(name: string): Ptr;
  eglQueryString(dpy: Ptr, name: number): string | null;
  eglGetError(): number;
  eglInitialize(dpy: bigint, major: Int32Array, minor: Int32Array): number;
  eglTerminate(dpy: bigint): number;
  eglBindAPI(api: number): number;
  eglCreateContext(dpy: bigint, config: Ptr, shareContext: Ptr, attribs: Int32Array): Ptr;
  eglDestroyContext(dpy: bigint, ctx: bigint): number;
  eglMakeCurrent(dpy: bigint, draw: Ptr, read: Ptr, ctx: Ptr): number;
  eglGetCurrentContext(): Ptr;
  eglChooseConfig(dpy: bigint, attribs: Int32Array, configs: BigUint64Array, size: number, count: Int32Array): number;
  eglCreatePbufferFromClientBuffer(dpy: bigint, bufferType: number, buffer: bigint, config: bigint, attribs: Int32Array): Ptr;
  eglBindTexImage(dpy: bigint, surface: bigint, buffer: number): number;
  eglReleaseTexImage(dpy: bigint, surface: bigint, buffer: number): number;
  eglDestroySurface(dpy: bigint, surface: bigint): number;
}

/** Core OpenGL ES 2.0/3.0 entry points, exported by libGLESv2. Typed arrays are passed by pointer. */
export interface GlesCore {
  glGetString(name: number): string | null;
  glGetError(): number;
  glGetIntegerv(pname: number, out: Int32Array): void;
  glGenTextures(n: number, out: Uint32Array): void;
  glDeleteTextures(n: number, textures: Uint32Array): void;
  glBindTexture(target: number, texture: number): void;
  glTexParameteri(target: number, pname: number, value: number): void;
  glTexImage2D(target: number, level: number, internalFormat: number, width: number, height: number, border: number, format: number, type: number, pixels: Uint8Array | null): void;
  glPixelStorei(pname: number, value: number): void;
  glGenFramebuffers(n: number, out: Uint32Array): void;
  glDeleteFramebuffers(n: number, framebuffers: Uint32Array): void;
  glBindFramebuffer(target: number, framebuffer: number): void;
  glFramebufferTexture2D(target: number, attachment: number, texTarget: number, texture: number, level: number): void;
  glCheckFramebufferStatus(target: number): number;
  glReadPixels(x: number, y: number, width: number, height: number, format: number, type: number, pixels: Uint8Array): void;
  glFinish(): void;
  glFlush(): void;
  glTexSubImage2D(target: number, level: number, x: number, y: number, width: number, height: number, format: number, type: number, pixels: Uint8Array): void;
  glTexStorage2D(target: number, levels: number, internalFormat: number, width: number, height: number): void;
  glEnable(cap: number): void;
  glDisable(cap: number): void;
  glScissor(x: number, y: number, width: number, height: number): void;
  glViewport(x: number, y: number, width: number, height: number): void;
  glClearColor(r: number, g: number, b: number, a: number): void;
  glClear(mask: number): void;
  glCreateShader(type: number): number;
  glShaderSource(shader: number, count: number, sources: string[], lengths: null): void;
  glCompileShader(shader: number): void;
  glGetShaderiv(shader: number, pname: number, out: Int32Array): void;
  glGetShaderInfoLog(shader: number, size: number, length: Int32Array, log: Uint8Array): void;
  glDeleteShader(shader: number): void;
  glCreateProgram(): number;
  glAttachShader(program: number, shader: number): void;
  glLinkProgram(program: number): void;
  glGetProgramiv(program: number, pname: number, out: Int32Array): void;
  glGetProgramInfoLog(program: number, size: number, length: Int32Array, log: Uint8Array): void;
  glDeleteProgram(program: number): void;
  glUseProgram(program: number): void;
  glGetUniformLocation(program: number, name: string): number;
  glUniform1i(location: number, value: number): void;
  glUniform4f(location: number, x: number, y: number, z: number, w: number): void;
  glUniform2i(location: number, x: number, y: number): void;
  glActiveTexture(unit: number): void;
  glDrawArrays(mode: number, first: number, count: number): void;
  glGenVertexArrays(n: number, out: Uint32Array): void;
  glBindVertexArray(array: number): void;
  glDeleteVertexArrays(n: number, arrays: Uint32Array): void;
}

// Extension function types (fetched with eglGetProcAddress, only when advertised).
export type EglGetPlatformDisplayEXT = (platform: number, nativeDisplay: Ptr, attribs: Int32Array) => Ptr;
export type EglCreateImageKHR = (dpy: bigint, ctx: Ptr, target: number, buffer: Ptr, attribs: Int32Array) => Ptr;
export type EglDestroyImageKHR = (dpy: bigint, image: bigint) => number;
export type EglQueryDmaBufFormatsEXT = (dpy: bigint, maxFormats: number, formats: Int32Array | null, numFormats: Int32Array) => number;
export type EglQueryDmaBufModifiersEXT = (
  dpy: bigint,
  format: number,
  maxModifiers: number,
  modifiers: BigUint64Array | null,
  externalOnly: Uint32Array | null,
  numModifiers: Int32Array,
) => number;
export type GlEGLImageTargetTexture2DOES = (target: number, image: bigint) => void;
export type GlCreateMemoryObjectsEXT = (n: number, out: Uint32Array) => void;
export type GlDeleteMemoryObjectsEXT = (n: number, objects: Uint32Array) => void;
export type GlMemoryObjectParameterivEXT = (memory: number, pname: number, params: Int32Array) => void;
export type GlTexStorageMem2DEXT = (target: number, levels: number, internalFormat: number, width: number, height: number, memory: number, offset: bigint) => void;
export type GlImportMemoryFdEXT = (memory: number, size: bigint, handleType: number, fd: number) => void;

const EGL_CORE: Record<keyof EglCore, string> = {
  eglGetProcAddress: 'void *eglGetProcAddress(const char *procname)',
  eglQueryString: 'const char *eglQueryString(void *dpy, int name)',
  eglGetError: 'int eglGetError(void)',
  eglInitialize: 'uint32_t eglInitialize(void *dpy, int *major, int *minor)',
  eglTerminate: 'uint32_t eglTerminate(void *dpy)',
  eglBindAPI: 'uint32_t eglBindAPI(uint32_t api)',
  eglCreateContext: 'void *eglCreateContext(void *dpy, void *config, void *share_context, const int *attrib_list)',
  eglDestroyContext: 'uint32_t eglDestroyContext(void *dpy, void *ctx)',
  eglMakeCurrent: 'uint32_t eglMakeCurrent(void *dpy, void *draw, void *read, void *ctx)',
  eglGetCurrentContext: 'void *eglGetCurrentContext(void)',
  eglChooseConfig: 'uint32_t eglChooseConfig(void *dpy, const int *attrib_list, _Out_ void **configs, int config_size, _Out_ int *num_config)',
  eglCreatePbufferFromClientBuffer: 'void *eglCreatePbufferFromClientBuffer(void *dpy, uint32_t buftype, void *buffer, void *config, const int *attrib_list)',
  eglBindTexImage: 'uint32_t eglBindTexImage(void *dpy, void *surface, int buffer)',
  eglReleaseTexImage: 'uint32_t eglReleaseTexImage(void *dpy, void *surface, int buffer)',
  eglDestroySurface: 'uint32_t eglDestroySurface(void *dpy, void *surface)',
};

const GLES_CORE: Record<keyof GlesCore, string> = {
  glGetString: 'const char *glGetString(uint32_t name)',
  glGetError: 'uint32_t glGetError(void)',
  glGetIntegerv: 'void glGetIntegerv(uint32_t pname, int *data)',
  glGenTextures: 'void glGenTextures(int n, uint32_t *textures)',
  glDeleteTextures: 'void glDeleteTextures(int n, const uint32_t *textures)',
  glBindTexture: 'void glBindTexture(uint32_t target, uint32_t texture)',
  glTexParameteri: 'void glTexParameteri(uint32_t target, uint32_t pname, int param)',
  glTexImage2D: 'void glTexImage2D(uint32_t target, int level, int internalformat, int width, int height, int border, uint32_t format, uint32_t type, const void *pixels)',
  glPixelStorei: 'void glPixelStorei(uint32_t pname, int param)',
  glGenFramebuffers: 'void glGenFramebuffers(int n, uint32_t *framebuffers)',
  glDeleteFramebuffers: 'void glDeleteFramebuffers(int n, const uint32_t *framebuffers)',
  glBindFramebuffer: 'void glBindFramebuffer(uint32_t target, uint32_t framebuffer)',
  glFramebufferTexture2D: 'void glFramebufferTexture2D(uint32_t target, uint32_t attachment, uint32_t textarget, uint32_t texture, int level)',
  glCheckFramebufferStatus: 'uint32_t glCheckFramebufferStatus(uint32_t target)',
  glReadPixels: 'void glReadPixels(int x, int y, int width, int height, uint32_t format, uint32_t type, void *pixels)',
  glFinish: 'void glFinish(void)',
  glFlush: 'void glFlush(void)',
  glTexSubImage2D: 'void glTexSubImage2D(uint32_t target, int level, int xoffset, int yoffset, int width, int height, uint32_t format, uint32_t type, const void *pixels)',
  glTexStorage2D: 'void glTexStorage2D(uint32_t target, int levels, uint32_t internalformat, int width, int height)',
  glEnable: 'void glEnable(uint32_t cap)',
  glDisable: 'void glDisable(uint32_t cap)',
  glScissor: 'void glScissor(int x, int y, int width, int height)',
  glViewport: 'void glViewport(int x, int y, int width, int height)',
  glClearColor: 'void glClearColor(float red, float green, float blue, float alpha)',
  glClear: 'void glClear(uint32_t mask)',
  glCreateShader: 'uint32_t glCreateShader(uint32_t type)',
  glShaderSource: 'void glShaderSource(uint32_t shader, int count, const char **string, const int *length)',
  glCompileShader: 'void glCompileShader(uint32_t shader)',
  glGetShaderiv: 'void glGetShaderiv(uint32_t shader, uint32_t pname, _Out_ int *params)',
  glGetShaderInfoLog: 'void glGetShaderInfoLog(uint32_t shader, int bufSize, _Out_ int *length, _Out_ uint8_t *infoLog)',
  glDeleteShader: 'void glDeleteShader(uint32_t shader)',
  glCreateProgram: 'uint32_t glCreateProgram(void)',
  glAttachShader: 'void glAttachShader(uint32_t program, uint32_t shader)',
  glLinkProgram: 'void glLinkProgram(uint32_t program)',
  glGetProgramiv: 'void glGetProgramiv(uint32_t program, uint32_t pname, _Out_ int *params)',
  glGetProgramInfoLog: 'void glGetProgramInfoLog(uint32_t program, int bufSize, _Out_ int *length, _Out_ uint8_t *infoLog)',
  glDeleteProgram: 'void glDeleteProgram(uint32_t program)',
  glUseProgram: 'void glUseProgram(uint32_t program)',
  glGetUniformLocation: 'int glGetUniformLocation(uint32_t program, const char *name)',
  glUniform1i: 'void glUniform1i(int location, int v0)',
  glUniform4f: 'void glUniform4f(int location, float v0, float v1, float v2, float v3)',
  glUniform2i: 'void glUniform2i(int location, int v0, int v1)',
  glActiveTexture: 'void glActiveTexture(uint32_t texture)',
  glDrawArrays: 'void glDrawArrays(uint32_t mode, int first, int count)',
  glGenVertexArrays: 'void glGenVertexArrays(int n, _Out_ uint32_t *arrays)',
  glBindVertexArray: 'void glBindVertexArray(uint32_t array)',
  glDeleteVertexArrays: 'void glDeleteVertexArrays(int n, const uint32_t *arrays)',
};

/** Extension entry points: C prototype and the extension string that must advertise it. */
const EXTENSION_PROCS = {
  eglGetPlatformDisplayEXT: {
    extension: 'EGL_EXT_platform_base',
    proto: 'void *PFN_eglGetPlatformDisplayEXT(uint32_t platform, void *native_display, const int *attrib_list)',
  },
  eglCreateImageKHR: {
    extension: 'EGL_KHR_image_base',
    proto: 'void *PFN_eglCreateImageKHR(void *dpy, void *ctx, uint32_t target, void *buffer, const int *attrib_list)',
  },
  eglDestroyImageKHR: {
    extension: 'EGL_KHR_image_base',
    proto: 'uint32_t PFN_eglDestroyImageKHR(void *dpy, void *image)',
  },
  eglQueryDmaBufFormatsEXT: {
    extension: 'EGL_EXT_image_dma_buf_import_modifiers',
    proto: 'uint32_t PFN_eglQueryDmaBufFormatsEXT(void *dpy, int max_formats, int *formats, int *num_formats)',
  },
  eglQueryDmaBufModifiersEXT: {
    extension: 'EGL_EXT_image_dma_buf_import_modifiers',
    proto: 'uint32_t PFN_eglQueryDmaBufModifiersEXT(void *dpy, int format, int max_modifiers, uint64_t *modifiers, uint32_t *external_only, int *num_modifiers)',
  },
  glEGLImageTargetTexture2DOES: {
    extension: 'GL_OES_EGL_image',
    proto: 'void PFN_glEGLImageTargetTexture2DOES(uint32_t target, void *image)',
  },
  glCreateMemoryObjectsEXT: {
    extension: 'GL_EXT_memory_object',
    proto: 'void PFN_glCreateMemoryObjectsEXT(int n, _Out_ uint32_t *memoryObjects)',
  },
  glDeleteMemoryObjectsEXT: {
    extension: 'GL_EXT_memory_object',
    proto: 'void PFN_glDeleteMemoryObjectsEXT(int n, const uint32_t *memoryObjects)',
  },
  glMemoryObjectParameterivEXT: {
    extension: 'GL_EXT_memory_object',
    proto: 'void PFN_glMemoryObjectParameterivEXT(uint32_t memoryObject, uint32_t pname, const int *params)',
  },
  glTexStorageMem2DEXT: {
    extension: 'GL_EXT_memory_object',
    proto: 'void PFN_glTexStorageMem2DEXT(uint32_t target, int levels, uint32_t internalFormat, int width, int height, uint32_t memory, uint64_t offset)',
  },
  glImportMemoryFdEXT: {
    extension: 'GL_EXT_memory_object_fd',
    proto: 'void PFN_glImportMemoryFdEXT(uint32_t memory, uint64_t size, uint32_t handleType, int fd)',
  },
} as const;

export type ExtensionProcName = keyof typeof EXTENSION_PROCS;

interface ExtensionProcTypes {
  eglGetPlatformDisplayEXT: EglGetPlatformDisplayEXT;
  eglCreateImageKHR: EglCreateImageKHR;
  eglDestroyImageKHR: EglDestroyImageKHR;
  eglQueryDmaBufFormatsEXT: EglQueryDmaBufFormatsEXT;
  eglQueryDmaBufModifiersEXT: EglQueryDmaBufModifiersEXT;
  glEGLImageTargetTexture2DOES: GlEGLImageTargetTexture2DOES;
  glCreateMemoryObjectsEXT: GlCreateMemoryObjectsEXT;
  glDeleteMemoryObjectsEXT: GlDeleteMemoryObjectsEXT;
  glMemoryObjectParameterivEXT: GlMemoryObjectParameterivEXT;
  glTexStorageMem2DEXT: GlTexStorageMem2DEXT;
  glImportMemoryFdEXT: GlImportMemoryFdEXT;
}

/** An extension string, split: which list it is (for messages) and its names. */
export class ExtensionList {
  readonly names: readonly string[];
  private readonly set: ReadonlySet<string>;

  constructor(
    readonly kind: 'client' | 'display' | 'gl',
    text: string | null,
  ) {
    this.names = Object.freeze((text ?? '').split(/\s+/).filter((n) => n.length > 0));
    this.set = new Set(this.names);
  }

  has(name: string): boolean {
    return this.set.has(name);
  }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

let koffiModule: typeof Koffi | undefined;
function koffi(): typeof Koffi {
  // Required lazily so that importing surfacelink never loads koffi's native part.
  return (koffiModule ??= require('koffi') as typeof Koffi);
}

const protoCache = new Map<string, Koffi.TypeObject>();

/** One loaded EGL + GLES pair with its typed functions. */
export class GlApi {
  private readonly procs = new Map<string, unknown>();

  private constructor(
    readonly libraries: GlLibraries,
    readonly egl: EglCore,
    readonly gl: GlesCore,
  ) {}

  /** @internal Used by loadGlLibraries. */
  static bind(libraries: GlLibraries, eglLib: Koffi.LibraryHandle, glesLib: Koffi.LibraryHandle): GlApi {
    const bindAll = <T>(lib: Koffi.LibraryHandle, table: Record<string, string>, file: string): T => {
      const out: Record<string, unknown> = {};
      for (const [name, decl] of Object.entries(table)) {
        try {
          out[name] = lib.func(decl);
        } catch (error) {
          throw new Error(`${file} lacks ${name}: ${(error as Error).message}`);
        }
      }
      return out as T;
    };
    return new GlApi(libraries, bindAll<EglCore>(eglLib, EGL_CORE, libraries.egl), bindAll<GlesCore>(glesLib, GLES_CORE, libraries.gles));
  }

  /**
   * The extension function `name`, fetched with eglGetProcAddress — but only when its
   * extension is in `advertised`. Otherwise throws E_UNSUPPORTED *without* looking the name up:
   * a non-NULL eglGetProcAddress proves nothing under glvnd (see the file comment).
   */
  extensionProc<N extends ExtensionProcName>(name: N, advertised: ExtensionList, what = 'this EGL'): ExtensionProcTypes[N] {
    const { extension, proto } = EXTENSION_PROCS[name];
    if (!advertised.has(extension)) {
      throw new SurfaceLinkError('E_UNSUPPORTED', `${extension} is not advertised by ${what} (${advertised.kind} extensions), so ${name} is not called`);
    }
    const cached = this.procs.get(name);
    if (cached) return cached as ExtensionProcTypes[N];
    const address = this.egl.eglGetProcAddress(name);
    if (address === null || address === 0n) {
      throw new SurfaceLinkError('E_UNSUPPORTED', `${extension} is advertised by ${what} but eglGetProcAddress("${name}") returned NULL (${this.libraries.egl})`);
    }
    const k = koffi();
    let type = protoCache.get(name);
    if (!type) protoCache.set(name, (type = k.proto(proto)));
    const fn = k.decode(address, type) as ExtensionProcTypes[N];
    this.procs.set(name, fn);
    return fn;
  }
}

const loaded = new Map<string, GlApi>();

/**
 * Loads the first pair of `candidates` that loads completely (both libraries, every core
 * function). Cached per pair: a pair is loaded once per process. Throws E_NATIVE_UNAVAILABLE
 * listing every pair tried and why each failed.
 */
export function loadGlLibraries(candidates: GlLibraries | readonly GlLibraries[] = SYSTEM_GL_LIBRARIES): GlApi {
  const list: readonly GlLibraries[] = Array.isArray(candidates) ? candidates : [candidates as GlLibraries];
  if (list.length === 0) throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'libraries must name at least one { egl, gles, source } pair');
  const tried: string[] = [];
  for (const libs of list) {
    const key = `${libs.egl}\0${libs.gles}`;
    const hit = loaded.get(key);
    if (hit) return hit;
    let k: typeof Koffi;
    try {
      k = koffi();
    } catch (error) {
      tried.push(`  [${libs.source}] koffi (the FFI module) did not load: ${firstLine(error)} (was the optional dependency @koromix/koffi-linux-x64 omitted?)`);
      break;
    }
    let eglLib: Koffi.LibraryHandle | undefined;
    let glesLib: Koffi.LibraryHandle | undefined;
    try {
      try {
        eglLib = k.load(libs.egl);
      } catch (error) {
        throw new Error(`${libs.egl}: ${firstLine(error)}`);
      }
      try {
        glesLib = k.load(libs.gles);
      } catch (error) {
        throw new Error(`${libs.gles}: ${firstLine(error)} (${libs.egl} loaded)`);
      }
      const api = GlApi.bind(libs, eglLib, glesLib);
      loaded.set(key, api);
      return api;
    } catch (error) {
      tried.push(`  [${libs.source}] ${firstLine(error)}`);
      for (const lib of [glesLib, eglLib]) {
        try {
          lib?.unload();
        } catch {
          /* best effort */
        }
      }
    }
  }
  throw new SurfaceLinkError(
    'E_NATIVE_UNAVAILABLE',
    [
      `EGL/OpenGL ES libraries could not be loaded on ${process.platform}-${process.arch}. Tried:`,
      ...tried,
      'Possible solutions:',
      '  - install them: `apt-get install -y libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri` (Debian/Ubuntu);',
      '  - pass GpuContext.open({ libraries: { egl, gles, source } }) with absolute paths to another EGL (e.g. ANGLE).',
    ].join('\n'),
  );
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0];
}
