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
  /**
   * Libraries to load first, by absolute path, so that the pair's own by-name loads find them
   * already loaded: on Windows the d3dcompiler_47.dll next to ANGLE's DLLs (ANGLE loads it by
   * name, which searches the executable's folder and System32, not ANGLE's folder).
   */
  preload?: readonly string[];
}

/** The system's glvnd/Mesa libraries, by soname (Debian: libegl1, libgles2, libegl-mesa0, libgl1-mesa-dri). */
export const SYSTEM_GL_LIBRARIES: GlLibraries = Object.freeze({
  egl: 'libEGL.so.1',
  gles: 'libGLESv2.so.2',
  source: 'system',
});

/** A native pointer as koffi 3 returns it: a BigInt address, NULL as null. */
export type Ptr = bigint | null;

export { EGL, EGL_ERRORS, GL, GL_ERRORS, eglErrorName, glErrorName } from './constants.js';

// ---------------------------------------------------------------------------------------------
// Typed function tables
// ---------------------------------------------------------------------------------------------

/**
 * Core EGL 1.4 entry points, exported by every libEGL (glvnd's and ANGLE's). Each member is the
 * C function of the same name (see the Khronos reference pages), bound by koffi: EGLBoolean
 * results are EGL.TRUE / EGL.FALSE, handles are bigint addresses with NULL as null, and typed
 * arrays are passed by pointer (outputs are written into them).
 */
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
  eglCreatePbufferFromClientBuffer(
    dpy: bigint,
    bufferType: number,
    buffer: bigint,
    config: bigint,
    attribs: Int32Array,
  ): Ptr;
  eglBindTexImage(dpy: bigint, surface: bigint, buffer: number): number;
  eglReleaseTexImage(dpy: bigint, surface: bigint, buffer: number): number;
  eglDestroySurface(dpy: bigint, surface: bigint): number;
  /** A pbuffer surface: the context's drawable where surfaceless contexts are missing (ANGLE 2.x). */
  eglCreatePbufferSurface(dpy: bigint, config: bigint, attribs: Int32Array): Ptr;
}

/**
 * Core OpenGL ES 2.0/3.0 entry points, exported by libGLESv2. Each member is the C function of
 * the same name (see the Khronos reference pages), bound by koffi; typed arrays are passed by
 * pointer (outputs are written into them). Call them only while a GpuContext of the same
 * libraries is current.
 */
export interface GlesCore {
  glGetString(name: number): string | null;
  glGetError(): number;
  glGetIntegerv(pname: number, out: Int32Array): void;
  glGenTextures(n: number, out: Uint32Array): void;
  glDeleteTextures(n: number, textures: Uint32Array): void;
  glBindTexture(target: number, texture: number): void;
  glTexParameteri(target: number, pname: number, value: number): void;
  glTexImage2D(
    target: number,
    level: number,
    internalFormat: number,
    width: number,
    height: number,
    border: number,
    format: number,
    type: number,
    pixels: Uint8Array | null,
  ): void;
  glPixelStorei(pname: number, value: number): void;
  glGenFramebuffers(n: number, out: Uint32Array): void;
  glDeleteFramebuffers(n: number, framebuffers: Uint32Array): void;
  glBindFramebuffer(target: number, framebuffer: number): void;
  glFramebufferTexture2D(target: number, attachment: number, texTarget: number, texture: number, level: number): void;
  glCheckFramebufferStatus(target: number): number;
  glReadPixels(
    x: number,
    y: number,
    width: number,
    height: number,
    format: number,
    type: number,
    pixels: Uint8Array,
  ): void;
  glFinish(): void;
  glFlush(): void;
  glTexSubImage2D(
    target: number,
    level: number,
    x: number,
    y: number,
    width: number,
    height: number,
    format: number,
    type: number,
    pixels: Uint8Array,
  ): void;
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
  /** Names `n` buffer objects. */
  glGenBuffers(n: number, out: Uint32Array): void;
  /** Deletes buffer objects. */
  glDeleteBuffers(n: number, buffers: Uint32Array): void;
  /** Binds a buffer object to `target`. */
  glBindBuffer(target: number, buffer: number): void;
  /** Fills the bound buffer object. */
  glBufferData(target: number, size: number, data: Float32Array, usage: number): void;
  /** Points a vertex attribute at the bound buffer object. */
  glVertexAttribPointer(
    index: number,
    size: number,
    type: number,
    normalized: number,
    stride: number,
    offset: null,
  ): void;
  /** Enables a vertex attribute array. */
  glEnableVertexAttribArray(index: number): void;
}

// Extension function types (fetched with eglGetProcAddress, only when advertised).
/** eglGetPlatformDisplayEXT: the EGLDisplay of `platform` (attribute list ends with EGL_NONE); null on failure. */
export type EglGetPlatformDisplayEXT = (platform: number, nativeDisplay: Ptr, attribs: Int32Array) => Ptr;
/**
 * eglCreateImageKHR: an EGLImage of `buffer` (a dma-buf import: `target` EGL_LINUX_DMA_BUF_EXT,
 * `ctx` and `buffer` null); null on failure.
 */
export type EglCreateImageKHR = (dpy: bigint, ctx: Ptr, target: number, buffer: Ptr, attribs: Int32Array) => Ptr;
/** eglDestroyImageKHR: frees an EGLImage; EGL_TRUE on success. */
export type EglDestroyImageKHR = (dpy: bigint, image: bigint) => number;
/** eglQueryDmaBufFormatsEXT: the DRM fourccs the display imports (`formats` null: only the count). */
export type EglQueryDmaBufFormatsEXT = (
  dpy: bigint,
  maxFormats: number,
  formats: Int32Array | null,
  numFormats: Int32Array,
) => number;
/**
 * eglQueryDmaBufModifiersEXT: the modifiers the display imports for `format`, and which of them are
 * external-only (GL_TEXTURE_EXTERNAL_OES).
 */
export type EglQueryDmaBufModifiersEXT = (
  dpy: bigint,
  format: number,
  maxModifiers: number,
  modifiers: BigUint64Array | null,
  externalOnly: Uint32Array | null,
  numModifiers: Int32Array,
) => number;
/** glEGLImageTargetTexture2DOES: makes `image` the storage of the texture bound to `target`. */
export type GlEGLImageTargetTexture2DOES = (target: number, image: bigint) => void;
/** glCreateMemoryObjectsEXT: `n` new memory object names into `out`. */
export type GlCreateMemoryObjectsEXT = (n: number, out: Uint32Array) => void;
/** glDeleteMemoryObjectsEXT: deletes `n` memory objects. */
export type GlDeleteMemoryObjectsEXT = (n: number, objects: Uint32Array) => void;
/** glMemoryObjectParameterivEXT: sets a memory object parameter (e.g. GL_DEDICATED_MEMORY_OBJECT_EXT). */
export type GlMemoryObjectParameterivEXT = (memory: number, pname: number, params: Int32Array) => void;
/** glTexStorageMem2DEXT: immutable storage for the bound texture, at `offset` in `memory`. */
export type GlTexStorageMem2DEXT = (
  target: number,
  levels: number,
  internalFormat: number,
  width: number,
  height: number,
  memory: number,
  offset: bigint,
) => void;
/** glImportMemoryFdEXT: imports `size` bytes of an opaque fd into `memory`; GL takes ownership of `fd`. */
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
  eglChooseConfig:
    'uint32_t eglChooseConfig(void *dpy, const int *attrib_list, _Out_ void **configs, int config_size, ' +
    '_Out_ int *num_config)',
  eglCreatePbufferFromClientBuffer:
    'void *eglCreatePbufferFromClientBuffer(void *dpy, uint32_t buftype, void *buffer, void *config, ' +
    'const int *attrib_list)',
  eglBindTexImage: 'uint32_t eglBindTexImage(void *dpy, void *surface, int buffer)',
  eglReleaseTexImage: 'uint32_t eglReleaseTexImage(void *dpy, void *surface, int buffer)',
  eglDestroySurface: 'uint32_t eglDestroySurface(void *dpy, void *surface)',
  eglCreatePbufferSurface: 'void *eglCreatePbufferSurface(void *dpy, void *config, const int *attrib_list)',
};

const GLES_CORE: Record<keyof GlesCore, string> = {
  glGetString: 'const char *glGetString(uint32_t name)',
  glGetError: 'uint32_t glGetError(void)',
  glGetIntegerv: 'void glGetIntegerv(uint32_t pname, int *data)',
  glGenTextures: 'void glGenTextures(int n, uint32_t *textures)',
  glDeleteTextures: 'void glDeleteTextures(int n, const uint32_t *textures)',
  glBindTexture: 'void glBindTexture(uint32_t target, uint32_t texture)',
  glTexParameteri: 'void glTexParameteri(uint32_t target, uint32_t pname, int param)',
  glTexImage2D:
    'void glTexImage2D(uint32_t target, int level, int internalformat, int width, int height, int border, ' +
    'uint32_t format, uint32_t type, const void *pixels)',
  glPixelStorei: 'void glPixelStorei(uint32_t pname, int param)',
  glGenFramebuffers: 'void glGenFramebuffers(int n, uint32_t *framebuffers)',
  glDeleteFramebuffers: 'void glDeleteFramebuffers(int n, const uint32_t *framebuffers)',
  glBindFramebuffer: 'void glBindFramebuffer(uint32_t target, uint32_t framebuffer)',
  glFramebufferTexture2D:
    'void glFramebufferTexture2D(uint32_t target, uint32_t attachment, uint32_t textarget, uint32_t texture, ' +
    'int level)',
  glCheckFramebufferStatus: 'uint32_t glCheckFramebufferStatus(uint32_t target)',
  glReadPixels: 'void glReadPixels(int x, int y, int width, int height, uint32_t format, uint32_t type, void *pixels)',
  glFinish: 'void glFinish(void)',
  glFlush: 'void glFlush(void)',
  glTexSubImage2D:
    'void glTexSubImage2D(uint32_t target, int level, int xoffset, int yoffset, int width, int height, ' +
    'uint32_t format, uint32_t type, const void *pixels)',
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
  glGetShaderInfoLog:
    'void glGetShaderInfoLog(uint32_t shader, int bufSize, _Out_ int *length, _Out_ uint8_t *infoLog)',
  glDeleteShader: 'void glDeleteShader(uint32_t shader)',
  glCreateProgram: 'uint32_t glCreateProgram(void)',
  glAttachShader: 'void glAttachShader(uint32_t program, uint32_t shader)',
  glLinkProgram: 'void glLinkProgram(uint32_t program)',
  glGetProgramiv: 'void glGetProgramiv(uint32_t program, uint32_t pname, _Out_ int *params)',
  glGetProgramInfoLog:
    'void glGetProgramInfoLog(uint32_t program, int bufSize, _Out_ int *length, _Out_ uint8_t *infoLog)',
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
  glGenBuffers: 'void glGenBuffers(int n, _Out_ uint32_t *buffers)',
  glDeleteBuffers: 'void glDeleteBuffers(int n, const uint32_t *buffers)',
  glBindBuffer: 'void glBindBuffer(uint32_t target, uint32_t buffer)',
  glBufferData: 'void glBufferData(uint32_t target, intptr_t size, const void *data, uint32_t usage)',
  glVertexAttribPointer:
    'void glVertexAttribPointer(uint32_t index, int size, uint32_t type, uint8_t normalized, int stride, ' +
    'const void *pointer)',
  glEnableVertexAttribArray: 'void glEnableVertexAttribArray(uint32_t index)',
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
    proto:
      'uint32_t PFN_eglQueryDmaBufModifiersEXT(void *dpy, int format, int max_modifiers, uint64_t *modifiers, ' +
      'uint32_t *external_only, int *num_modifiers)',
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
    proto:
      'void PFN_glTexStorageMem2DEXT(uint32_t target, int levels, uint32_t internalFormat, int width, ' +
      'int height, uint32_t memory, uint64_t offset)',
  },
  glImportMemoryFdEXT: {
    extension: 'GL_EXT_memory_object_fd',
    proto: 'void PFN_glImportMemoryFdEXT(uint32_t memory, uint64_t size, uint32_t handleType, int fd)',
  },
} as const;

/** The name of an extension function `GlApi.extensionProc()` can fetch. */
export type ExtensionProcName = keyof typeof EXTENSION_PROCS;

/** The type of each extension function `GlApi.extensionProc()` fetches, with the extension it needs. */
export interface ExtensionProcTypes {
  /** Needs EGL_EXT_platform_base (client extensions). */
  eglGetPlatformDisplayEXT: EglGetPlatformDisplayEXT;
  /** Needs EGL_KHR_image_base. */
  eglCreateImageKHR: EglCreateImageKHR;
  /** Needs EGL_KHR_image_base. */
  eglDestroyImageKHR: EglDestroyImageKHR;
  /** Needs EGL_EXT_image_dma_buf_import_modifiers. */
  eglQueryDmaBufFormatsEXT: EglQueryDmaBufFormatsEXT;
  /** Needs EGL_EXT_image_dma_buf_import_modifiers. */
  eglQueryDmaBufModifiersEXT: EglQueryDmaBufModifiersEXT;
  /** Needs GL_OES_EGL_image. */
  glEGLImageTargetTexture2DOES: GlEGLImageTargetTexture2DOES;
  /** Needs GL_EXT_memory_object. */
  glCreateMemoryObjectsEXT: GlCreateMemoryObjectsEXT;
  /** Needs GL_EXT_memory_object. */
  glDeleteMemoryObjectsEXT: GlDeleteMemoryObjectsEXT;
  /** Needs GL_EXT_memory_object. */
  glMemoryObjectParameterivEXT: GlMemoryObjectParameterivEXT;
  /** Needs GL_EXT_memory_object. */
  glTexStorageMem2DEXT: GlTexStorageMem2DEXT;
  /** Needs GL_EXT_memory_object_fd. */
  glImportMemoryFdEXT: GlImportMemoryFdEXT;
}

/** An extension string, split: which list it is (for messages) and its names. */
export class ExtensionList {
  /** The extension names, in the order given. */
  readonly names: readonly string[];
  private readonly set: ReadonlySet<string>;

  /** Splits `text` (an EGL/GL extension string) into names. */
  constructor(
    /** Which list it is: client (EGL_NO_DISPLAY), display or GL extensions. */
    readonly kind: 'client' | 'display' | 'gl',
    /** The extension string as EGL/GL returned it (null: none). */
    text: string | null,
  ) {
    this.names = Object.freeze((text ?? '').split(/\s+/).filter((n) => n.length > 0));
    this.set = new Set(this.names);
  }

  /** Whether `name` is in the list. */
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

/**
 * A C declaration with the calling convention of EGLAPIENTRY / GL_APIENTRY: `__stdcall` on
 * Windows (KHRONOS_APIENTRY = __stdcall; on x64 there is only one convention and koffi accepts
 * and ignores it, on ia32 it matters), the platform default elsewhere. `platform` is for tests.
 */
export function withApiEntry(decl: string, platform: NodeJS.Platform = process.platform): string {
  if (platform !== 'win32') return decl;
  // 'const char *eglQueryString(…)' → 'const char * __stdcall eglQueryString(…)'
  return decl.replace(/^(.*?)\s*\b([A-Za-z_]\w*)\(/, '$1 __stdcall $2(');
}

/** One loaded EGL + GLES pair with its typed functions. */
export class GlApi {
  private readonly procs = new Map<string, unknown>();

  private constructor(
    /** The pair that was loaded. */
    readonly libraries: GlLibraries,
    /** The core EGL functions. */
    readonly egl: EglCore,
    /** The core GLES functions. Call them only with a GpuContext of these libraries current. */
    readonly gl: GlesCore,
  ) {}

  /** @internal Used by loadGlLibraries. */
  static bind(libraries: GlLibraries, eglLib: Koffi.LibraryHandle, glesLib: Koffi.LibraryHandle): GlApi {
    const bindAll = <T>(lib: Koffi.LibraryHandle, table: Record<string, string>, file: string): T => {
      const out: Record<string, unknown> = {};
      for (const [name, decl] of Object.entries(table)) {
        try {
          out[name] = lib.func(withApiEntry(decl));
        } catch (error) {
          throw new Error(`${file} lacks ${name}: ${(error as Error).message}`, { cause: error });
        }
      }
      return out as T;
    };
    return new GlApi(
      libraries,
      bindAll<EglCore>(eglLib, EGL_CORE, libraries.egl),
      bindAll<GlesCore>(glesLib, GLES_CORE, libraries.gles),
    );
  }

  /**
   * The extension function `name`, fetched with eglGetProcAddress — but only when its
   * extension is in `advertised`. Otherwise throws E_UNSUPPORTED *without* looking the name up:
   * a non-NULL eglGetProcAddress proves nothing under glvnd (see the file comment).
   */
  extensionProc<N extends ExtensionProcName>(
    name: N,
    advertised: ExtensionList,
    what = 'this EGL',
  ): ExtensionProcTypes[N] {
    const { extension, proto } = EXTENSION_PROCS[name];
    if (!advertised.has(extension)) {
      throw new SurfaceLinkError(
        'E_UNSUPPORTED',
        `${extension} is not advertised by ${what} (${advertised.kind} extensions), so ${name} is not called`,
      );
    }
    const cached = this.procs.get(name);
    if (cached) return cached as ExtensionProcTypes[N];
    const address = this.egl.eglGetProcAddress(name);
    if (address === null || address === 0n) {
      throw new SurfaceLinkError(
        'E_UNSUPPORTED',
        `${extension} is advertised by ${what} but eglGetProcAddress("${name}") returned NULL (${this.libraries.egl})`,
      );
    }
    const k = koffi();
    let type = protoCache.get(name);
    if (!type) protoCache.set(name, (type = k.proto(withApiEntry(proto))));
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
  if (list.length === 0)
    throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'libraries must name at least one { egl, gles, source } pair');
  const tried: string[] = [];
  for (const libs of list) {
    const key = `${libs.egl}\0${libs.gles}`;
    const hit = loaded.get(key);
    if (hit) return hit;
    let k: typeof Koffi;
    try {
      k = koffi();
    } catch (error) {
      tried.push(
        `  [${libs.source}] koffi (the FFI module) did not load: ${firstLine(error)} (was the optional ` +
          `dependency @koromix/koffi-${process.platform}-${process.arch} omitted?)`,
      );
      break;
    }
    let eglLib: Koffi.LibraryHandle | undefined;
    let glesLib: Koffi.LibraryHandle | undefined;
    try {
      for (const file of libs.preload ?? []) {
        try {
          // Kept loaded for the life of the process, like the pair itself.
          k.load(file);
        } catch (error) {
          throw new Error(`${file}: ${firstLine(error)}`, { cause: error });
        }
      }
      try {
        eglLib = k.load(libs.egl);
      } catch (error) {
        throw new Error(`${libs.egl}: ${firstLine(error)}`, { cause: error });
      }
      try {
        glesLib = k.load(libs.gles);
      } catch (error) {
        throw new Error(`${libs.gles}: ${firstLine(error)} (${libs.egl} loaded)`, { cause: error });
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
      ...(process.platform === 'win32'
        ? [
            '  - Windows has no system EGL: point SURFACELINK_ANGLE_DIR (or the angleDir option) at a folder with ' +
              "ANGLE's libEGL.dll, libGLESv2.dll and d3dcompiler_47.dll (e.g. from a Chromium/Electron build);",
          ]
        : ['  - install them: `apt-get install -y libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri` (Debian/Ubuntu);']),
      '  - pass GpuContext.open({ libraries: { egl, gles, source } }) with absolute paths to another EGL (e.g. ANGLE).',
    ].join('\n'),
  );
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0];
}
