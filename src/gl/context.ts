/**
 * GpuContext: an EGL display without a window system (surfaceless), an OpenGL ES 3 context
 * made current on it with no surface, and what it can do — decided only from extension strings.
 *
 * The display is chosen by a `GpuDisplaySpec` (default: Mesa's EGL_PLATFORM_SURFACELESS_MESA),
 * so the ANGLE loader can pass `angleSurfacelessDisplay()` with its own `libraries`.
 */
import { SurfaceLinkError } from '../errors.js';
import {
  EGL,
  ExtensionList,
  GL,
  SYSTEM_GL_LIBRARIES,
  eglErrorName,
  glErrorName,
  loadGlLibraries,
  type GlApi,
  type GlLibraries,
  type Ptr,
} from './egl.js';

/** How to get the EGLDisplay: eglGetPlatformDisplayEXT(platform, NULL, attributes). */
export interface GpuDisplaySpec {
  /** For messages, e.g. 'Mesa surfaceless'. */
  name: string;
  /** The EGL platform enum passed to eglGetPlatformDisplayEXT, e.g. EGL.PLATFORM_SURFACELESS_MESA. */
  platform: number;
  /** Attribute pairs, without the closing EGL_NONE. */
  attributes?: readonly number[];
  /** The client extension that must be advertised for `platform` (checked before the call). */
  clientExtension: string;
}

/** Mesa's surfaceless platform: no window system, no DRM device needed (llvmpipe on a machine without a GPU). */
export const SURFACELESS_MESA_DISPLAY: GpuDisplaySpec = Object.freeze({
  name: 'Mesa surfaceless',
  platform: EGL.PLATFORM_SURFACELESS_MESA,
  clientExtension: 'EGL_MESA_platform_surfaceless',
});

/** ANGLE on Vulkan, optionally SwiftShader, with the surfaceless native platform (for the ANGLE loader). */
export function angleSurfacelessDisplay(options: { swiftshader?: boolean } = {}): GpuDisplaySpec {
  return {
    name: options.swiftshader === false ? 'ANGLE Vulkan' : 'ANGLE Vulkan/SwiftShader',
    platform: EGL.PLATFORM_ANGLE_ANGLE,
    attributes: [
      EGL.PLATFORM_ANGLE_TYPE_ANGLE,
      EGL.PLATFORM_ANGLE_TYPE_VULKAN_ANGLE,
      ...(options.swiftshader === false
        ? []
        : [EGL.PLATFORM_ANGLE_DEVICE_TYPE_ANGLE, EGL.PLATFORM_ANGLE_DEVICE_TYPE_SWIFTSHADER_ANGLE]),
      EGL.PLATFORM_ANGLE_NATIVE_PLATFORM_TYPE_ANGLE,
      EGL.PLATFORM_SURFACELESS_MESA,
    ],
    clientExtension: 'EGL_ANGLE_platform_angle',
  };
}

/**
 * ANGLE on Direct3D 11 (Windows), on the default hardware adapter: EGL_PLATFORM_ANGLE_ANGLE
 * with EGL_DEFAULT_DISPLAY and [TYPE = D3D11, DEVICE_TYPE = HARDWARE]. Needs the client
 * extension EGL_ANGLE_platform_angle_d3d. Older ANGLE (2.x, as in Chromium ≤ 60) lacks
 * EGL_KHR_no_config_context / EGL_KHR_surfaceless_context there, so GpuContext.open() makes
 * its context current on a 1x1 pbuffer instead (see `surface`).
 */
export function angleD3D11Display(): GpuDisplaySpec {
  return {
    name: 'ANGLE D3D11',
    platform: EGL.PLATFORM_ANGLE_ANGLE,
    attributes: [
      EGL.PLATFORM_ANGLE_TYPE_ANGLE,
      EGL.PLATFORM_ANGLE_TYPE_D3D11_ANGLE,
      EGL.PLATFORM_ANGLE_DEVICE_TYPE_ANGLE,
      EGL.PLATFORM_ANGLE_DEVICE_TYPE_HARDWARE_ANGLE,
    ],
    clientExtension: 'EGL_ANGLE_platform_angle_d3d',
  };
}

/**
 * ANGLE on Metal (macOS; `backend: 'opengl'` for Apple's deprecated desktop OpenGL), on the default
 * display. IOSurfaces import as 2D textures on Metal and as rectangle textures on OpenGL
 * (EGL_ANGLE_iosurface_client_buffer). UNVERIFIED: never run (no Mac here).
 */
export function angleMacDisplay(backend: 'metal' | 'opengl' = 'metal'): GpuDisplaySpec {
  return {
    name: backend === 'metal' ? 'ANGLE Metal' : 'ANGLE OpenGL (macOS)',
    platform: EGL.PLATFORM_ANGLE_ANGLE,
    attributes: [
      EGL.PLATFORM_ANGLE_TYPE_ANGLE,
      backend === 'metal' ? EGL.PLATFORM_ANGLE_TYPE_METAL_ANGLE : EGL.PLATFORM_ANGLE_TYPE_OPENGL_ANGLE,
    ],
    clientExtension: backend === 'metal' ? 'EGL_ANGLE_platform_angle_metal' : 'EGL_ANGLE_platform_angle',
  };
}

/** How `GpuContext.open()` finds EGL/GLES and which display and GLES version it asks for. */
export interface GpuContextOptions {
  /** Library pairs to try in order (default: the system's libEGL.so.1 / libGLESv2.so.2). */
  libraries?: GlLibraries | readonly GlLibraries[];
  /** Which EGL display to open; default SURFACELESS_MESA_DISPLAY. */
  display?: GpuDisplaySpec;
  /**
   * OpenGL ES version to ask for; default 3.0 (a driver may return a higher compatible one),
   * and 2.0 where no 3.0 context can be made. A version given here is not replaced.
   */
  glesVersion?: {
    /** Major version, e.g. 3. */
    major: number;
    /** Minor version, e.g. 0. */
    minor: number;
  };
}

/**
 * Each capability is exactly "this extension is in that list": `list` is 'client', 'display'
 * or 'gl', `extension` the name. Import/export paths check every extension they use
 * themselves; the table is what `capabilities` reports.
 */
export const CAPABILITY_EXTENSIONS = Object.freeze({
  /** eglCreateImageKHR(EGL_LINUX_DMA_BUF_EXT): import dma-bufs. */
  dmabufImport: { list: 'display', extension: 'EGL_EXT_image_dma_buf_import' },
  /** Explicit format modifiers, a 4th plane, eglQueryDmaBufFormats/ModifiersEXT. */
  dmabufImportModifiers: { list: 'display', extension: 'EGL_EXT_image_dma_buf_import_modifiers' },
  /** eglExportDMABUFImageMESA: EGLImage → dma-buf. */
  dmabufExport: { list: 'display', extension: 'EGL_MESA_image_dma_buf_export' },
  /** eglCreateImageKHR / eglDestroyImageKHR. */
  imageBase: { list: 'display', extension: 'EGL_KHR_image_base' },
  /** An EGLImage from a GL texture (EGL_GL_TEXTURE_2D_KHR). */
  textureImage: { list: 'display', extension: 'EGL_KHR_gl_texture_2D_image' },
  /** EGL sync objects (eglCreateSyncKHR). */
  fenceSync: { list: 'display', extension: 'EGL_KHR_fence_sync' },
  /** EGL syncs ↔ sync_file fds (EGL_SYNC_NATIVE_FENCE_ANDROID). */
  nativeFenceSync: { list: 'display', extension: 'EGL_ANDROID_native_fence_sync' },
  /** glEGLImageTargetTexture2DOES: an EGLImage as a GL_TEXTURE_2D. */
  eglImage: { list: 'gl', extension: 'GL_OES_EGL_image' },
  /** EGLImages as GL_TEXTURE_EXTERNAL_OES (YUV, and formats only sampleable that way). */
  eglImageExternal: { list: 'gl', extension: 'GL_OES_EGL_image_external' },
  /** glEGLImageTargetTexStorageEXT: immutable textures from EGLImages. */
  eglImageStorage: { list: 'gl', extension: 'GL_EXT_EGL_image_storage' },
  /** GL memory objects: textures whose storage is memory imported from outside GL. */
  memoryObject: { list: 'gl', extension: 'GL_EXT_memory_object' },
  /** glImportMemoryFdEXT (Vulkan-style opaque fds; not dma-bufs). */
  memoryObjectFd: { list: 'gl', extension: 'GL_EXT_memory_object_fd' },
  /** GL semaphores, to order GL work against other APIs. */
  semaphore: { list: 'gl', extension: 'GL_EXT_semaphore' },
  /** GL semaphores imported from opaque fds. */
  semaphoreFd: { list: 'gl', extension: 'GL_EXT_semaphore_fd' },
} as const);

/** A capability of a GpuContext: one key of CAPABILITY_EXTENSIONS. */
export type GpuCapabilityName = keyof typeof CAPABILITY_EXTENSIONS;
/** For each capability, whether its extension is advertised. */
export type GpuCapabilities = Readonly<Record<GpuCapabilityName, boolean>>;

/** The extension strings of a GpuContext, split into names. */
export interface GpuExtensions {
  /** eglQueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS). */
  readonly client: readonly string[];
  /** eglQueryString(display, EGL_EXTENSIONS). */
  readonly display: readonly string[];
  /** glGetString(GL_EXTENSIONS). */
  readonly gl: readonly string[];
}

/** A resource that GpuContext.close() destroys if its owner has not. */
export interface GpuResource {
  /** Frees what it holds (GL objects, EGLImages); when GpuContext.close() calls it, errors are ignored. */
  destroy(): void;
}

/** EGL displays are per process and not reference counted by EGL: eglTerminate ends every user's. */
const displayUsers = new Map<bigint, number>();

/**
 * An OpenGL ES 3 context on a surfaceless EGL display, made current with no surface: what
 * surfacelink/gl imports frames into and renders with. Open with `GpuContext.open()`. GL is per
 * thread: use it from the thread that opened it (Node's main thread), and call makeCurrent() if
 * other code may have made another context current. close() (or `using`) frees it.
 */
export class GpuContext implements Disposable {
  /** The loaded libraries and their functions. */
  readonly api: GlApi;
  /** EGLDisplay. */
  readonly display: bigint;
  /** EGLContext. */
  readonly handle: bigint;
  /**
   * The 1x1 pbuffer the context is current on, or null when it is current without a surface
   * (EGL_KHR_surfaceless_context + EGL_KHR_no_config_context: Mesa, ANGLE on Vulkan). Framebuffer
   * 0 is this pbuffer; surfacelink draws only into framebuffers of its own.
   */
  readonly surface: bigint | null;
  /** The OpenGL ES version the context was created for (3.0, or 2.0 where 3.0 could not be made). */
  readonly glesVersion: {
    /** The major version (3, or 2 where ES 3 is unavailable). */
    readonly major: number;
    /** The minor version. */
    readonly minor: number;
  };
  /** The display it was opened on. */
  readonly displaySpec: GpuDisplaySpec;
  /** EGL_VERSION of the display, e.g. '1.5 Mesa 24.2.8'. */
  readonly eglVersion: string;
  /** EGL_VENDOR of the display. */
  readonly eglVendor: string;
  /** GL_VENDOR, GL_RENDERER, GL_VERSION. */
  readonly vendor: string;
  /** GL_RENDERER, e.g. 'llvmpipe (LLVM 19.1.7, 256 bits)': what messages name. */
  readonly renderer: string;
  /** GL_VERSION, e.g. 'OpenGL ES 3.2 Mesa 24.2.8'. */
  readonly version: string;
  /** GL_SHADING_LANGUAGE_VERSION. */
  readonly shadingLanguageVersion: string;
  /** GL_MAX_TEXTURE_SIZE: the largest texture width or height, in pixels. */
  readonly maxTextureSize: number;
  /** The extensions advertised: client, display and GL. */
  readonly extensions: GpuExtensions;
  /** What it can do, decided only from `extensions` (see CAPABILITY_EXTENSIONS). */
  readonly capabilities: GpuCapabilities;
  /** The same lists, for `GlApi.extensionProc()`. */
  readonly advertised: {
    /** Client extensions (eglQueryString(EGL_NO_DISPLAY)). */
    readonly client: ExtensionList;
    /** Display extensions. */
    readonly display: ExtensionList;
    /** GL extensions. */
    readonly gl: ExtensionList;
  };
  private readonly resources = new Set<GpuResource>();
  private isClosed = false;

  private constructor(init: {
    api: GlApi;
    display: bigint;
    handle: bigint;
    surface: bigint | null;
    glesVersion: { major: number; minor: number };
    displaySpec: GpuDisplaySpec;
    eglVersion: string;
    eglVendor: string;
    client: ExtensionList;
    displayExtensions: ExtensionList;
  }) {
    this.api = init.api;
    this.display = init.display;
    this.handle = init.handle;
    this.surface = init.surface;
    this.glesVersion = Object.freeze({ ...init.glesVersion });
    this.displaySpec = init.displaySpec;
    this.eglVersion = init.eglVersion;
    this.eglVendor = init.eglVendor;
    const gl = init.api.gl;
    this.vendor = gl.glGetString(GL.VENDOR) ?? '';
    this.renderer = gl.glGetString(GL.RENDERER) ?? '';
    this.version = gl.glGetString(GL.VERSION) ?? '';
    this.shadingLanguageVersion = gl.glGetString(GL.SHADING_LANGUAGE_VERSION) ?? '';
    const max = new Int32Array(1);
    gl.glGetIntegerv(GL.MAX_TEXTURE_SIZE, max);
    this.maxTextureSize = max[0];
    const glExtensions = new ExtensionList('gl', gl.glGetString(GL.EXTENSIONS));
    this.advertised = Object.freeze({ client: init.client, display: init.displayExtensions, gl: glExtensions });
    this.extensions = Object.freeze({
      client: init.client.names,
      display: init.displayExtensions.names,
      gl: glExtensions.names,
    });
    const caps = {} as Record<GpuCapabilityName, boolean>;
    for (const [name, { list, extension }] of Object.entries(CAPABILITY_EXTENSIONS))
      caps[name as GpuCapabilityName] = this.advertised[list].has(extension);
    this.capabilities = Object.freeze(caps);
    this.drainGlErrors();
  }

  /**
   * Loads the libraries (first use), opens the display, initializes it, creates an OpenGL ES
   * context without a config and makes it current without a surface.
   */
  static open(options: GpuContextOptions = {}): GpuContext {
    const api = loadGlLibraries(options.libraries ?? SYSTEM_GL_LIBRARIES);
    const spec = options.display ?? SURFACELESS_MESA_DISPLAY;
    const versions = options.glesVersion
      ? [options.glesVersion]
      : [
          { major: 3, minor: 0 },
          { major: 2, minor: 0 },
        ];
    const egl = api.egl;
    const where = `${spec.name} via ${api.libraries.egl} [${api.libraries.source}]`;

    // Client extensions (EGL_EXT_client_extensions): NULL where unsupported, with EGL_BAD_DISPLAY.
    const client = new ExtensionList('client', egl.eglQueryString(null, EGL.EXTENSIONS));
    egl.eglGetError();
    if (!client.has(spec.clientExtension)) {
      throw new SurfaceLinkError(
        'E_UNSUPPORTED',
        `${spec.clientExtension} is not advertised by ${api.libraries.egl} [${api.libraries.source}] (client ` +
          `extensions: ${client.names.join(' ') || 'none'}), so the ${spec.name} display cannot be opened`,
      );
    }
    const getPlatformDisplay = api.extensionProc(
      'eglGetPlatformDisplayEXT',
      client,
      `${api.libraries.egl} [${api.libraries.source}]`,
    );
    const display = getPlatformDisplay(spec.platform, null, new Int32Array([...(spec.attributes ?? []), EGL.NONE]));
    if (display === null || display === 0n)
      throw eglFailure(
        api,
        'E_UNSUPPORTED',
        `eglGetPlatformDisplayEXT(0x${spec.platform.toString(16)}) found no ${spec.name} display`,
      );

    const users = displayUsers.get(display) ?? 0;
    if (users === 0) {
      const major = new Int32Array(1);
      const minor = new Int32Array(1);
      if (egl.eglInitialize(display, major, minor) !== EGL.TRUE)
        throw eglFailure(api, 'E_SYSTEM', `eglInitialize failed on ${where}`);
    }
    displayUsers.set(display, users + 1);

    let context: Ptr = null;
    let surface: Ptr = null;
    try {
      const displayExtensions = new ExtensionList('display', egl.eglQueryString(display, EGL.EXTENSIONS));
      const eglVersion = egl.eglQueryString(display, EGL.VERSION) ?? '';
      const eglVendor = egl.eglQueryString(display, EGL.VENDOR) ?? '';
      const apis = egl.eglQueryString(display, EGL.CLIENT_APIS) ?? '';
      if (!apis.split(/\s+/).includes('OpenGL_ES'))
        throw new SurfaceLinkError('E_UNSUPPORTED', `${where} offers no OpenGL ES (client APIs: ${apis || 'none'})`);
      if (egl.eglBindAPI(EGL.OPENGL_ES_API) !== EGL.TRUE)
        throw eglFailure(api, 'E_UNSUPPORTED', `eglBindAPI(EGL_OPENGL_ES_API) failed on ${where}`);
      // Without a config and surface where EGL allows it (Mesa, ANGLE on Vulkan); otherwise
      // (ANGLE 2.x on D3D11 has neither extension) a config and a 1x1 pbuffer to be current on.
      const missing = ['EGL_KHR_no_config_context', 'EGL_KHR_surfaceless_context'].filter(
        (name) => !displayExtensions.has(name),
      );
      // EGL_CONTEXT_MINOR_VERSION is EGL_KHR_create_context's (or EGL 1.5's); EGL 1.4 knows only the major.
      const minorAllowed = displayExtensions.has('EGL_KHR_create_context') || !/^1\.[0-4]\b/.test(eglVersion);
      const failures: string[] = [];
      let version = versions[0];
      for (const candidate of versions) {
        version = candidate;
        let config: bigint | null = null;
        if (missing.length > 0) {
          config = chooseConfig(api, display, candidate.major >= 3 ? EGL.OPENGL_ES3_BIT : EGL.OPENGL_ES2_BIT);
          if (config === null) {
            failures.push(
              `OpenGL ES ${candidate.major}.${candidate.minor}: no RGBA8 pbuffer EGLConfig for it ` +
                `(needed because ${missing.join(' and ')} ${missing.length > 1 ? 'are' : 'is'} not advertised)`,
            );
            continue;
          }
        }
        const attribs = new Int32Array([
          EGL.CONTEXT_MAJOR_VERSION,
          candidate.major,
          ...(minorAllowed ? [EGL.CONTEXT_MINOR_VERSION, candidate.minor] : []),
          EGL.NONE,
        ]);
        context = egl.eglCreateContext(display, config, null, attribs);
        if (context === null || context === 0n) {
          context = null;
          failures.push(
            eglFailure(
              api,
              'E_UNSUPPORTED',
              `eglCreateContext(OpenGL ES ${candidate.major}.${candidate.minor}, ` +
                `${config === null ? 'no config' : 'pbuffer config'}) failed`,
            ).message,
          );
          continue;
        }
        if (config !== null) {
          surface = egl.eglCreatePbufferSurface(
            display,
            config,
            new Int32Array([EGL.WIDTH, 1, EGL.HEIGHT, 1, EGL.NONE]),
          );
          if (surface === null || surface === 0n) {
            surface = null;
            throw eglFailure(api, 'E_SYSTEM', `eglCreatePbufferSurface(1x1) failed on ${where}`);
          }
        }
        break;
      }
      if (context === null)
        throw new SurfaceLinkError('E_UNSUPPORTED', `no OpenGL ES context on ${where}: ${failures.join('; ')}`);
      if (egl.eglMakeCurrent(display, surface, surface, context) !== EGL.TRUE)
        throw eglFailure(
          api,
          'E_SYSTEM',
          `eglMakeCurrent(${surface === null ? 'surfaceless' : '1x1 pbuffer'}) failed on ${where}`,
        );
      return new GpuContext({
        api,
        display,
        handle: context,
        surface,
        glesVersion: version,
        displaySpec: spec,
        eglVersion,
        eglVendor,
        client,
        displayExtensions,
      });
    } catch (error) {
      if (context !== null) {
        egl.eglMakeCurrent(display, null, null, null);
        egl.eglDestroyContext(display, context);
      }
      if (surface !== null) egl.eglDestroySurface(display, surface);
      releaseDisplay(api, display);
      throw error;
    }
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.isClosed;
  }

  /** A short name for messages: 'ANGLE on SwiftShader', 'llvmpipe (Mesa)', … */
  get shortName(): string {
    if (this.renderer.startsWith('ANGLE'))
      return this.renderer.includes('SwiftShader')
        ? 'ANGLE on SwiftShader'
        : `ANGLE (${this.renderer.replace(/^ANGLE \(/, '').split(',')[0]})`;
    return `${this.renderer.split(' (')[0]} (${this.vendor || 'unknown vendor'})`;
  }

  /** Makes this context current on the calling thread if it is not. Throws E_CLOSED after close(). */
  makeCurrent(): void {
    if (this.isClosed) throw new SurfaceLinkError('E_CLOSED', 'this GpuContext is closed');
    const egl = this.api.egl;
    if (egl.eglGetCurrentContext() === this.handle) return;
    if (egl.eglMakeCurrent(this.display, this.surface, this.surface, this.handle) !== EGL.TRUE)
      throw eglFailure(this.api, 'E_SYSTEM', 'eglMakeCurrent failed');
  }

  /** Throws E_SYSTEM naming every pending GL error (glGetError until GL_NO_ERROR), if any. */
  checkGlError(what: string): void {
    const errors = this.drainGlErrors();
    if (errors.length > 0)
      throw new SurfaceLinkError('E_SYSTEM', `${what}: ${errors.map(glErrorName).join(', ')} (${this.renderer})`);
  }

  /** @internal Reads and clears pending GL errors. */
  drainGlErrors(): number[] {
    const errors: number[] = [];
    for (let i = 0; i < 16; i++) {
      const e = this.api.gl.glGetError();
      if (e === GL.NO_ERROR) break;
      errors.push(e);
    }
    return errors;
  }

  /** @internal Destroyed by close() unless destroyed first; the returned function forgets it. */
  track(resource: GpuResource): () => void {
    if (this.isClosed) throw new SurfaceLinkError('E_CLOSED', 'this GpuContext is closed');
    this.resources.add(resource);
    return () => this.resources.delete(resource);
  }

  /** Destroys what is still tracked, the context, and (last user) terminates the display. Idempotent. */
  close(): void {
    if (this.isClosed) return;
    for (const resource of [...this.resources]) {
      try {
        resource.destroy();
      } catch {
        /* closing regardless */
      }
    }
    this.resources.clear();
    this.isClosed = true;
    const egl = this.api.egl;
    if (egl.eglGetCurrentContext() === this.handle) egl.eglMakeCurrent(this.display, null, null, null);
    egl.eglDestroyContext(this.display, this.handle);
    if (this.surface !== null) egl.eglDestroySurface(this.display, this.surface);
    releaseDisplay(this.api, this.display);
  }

  /** Same as close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** An RGBA8 pbuffer config that renders `renderable` (EGL_OPENGL_ES{2,3}_BIT), or null if there is none. */
function chooseConfig(api: GlApi, display: bigint, renderable: number): bigint | null {
  const configs = new BigUint64Array(1);
  const count = new Int32Array(1);
  const attribs = new Int32Array([
    EGL.SURFACE_TYPE,
    EGL.PBUFFER_BIT,
    EGL.RENDERABLE_TYPE,
    renderable,
    EGL.RED_SIZE,
    8,
    EGL.GREEN_SIZE,
    8,
    EGL.BLUE_SIZE,
    8,
    EGL.ALPHA_SIZE,
    8,
    EGL.NONE,
  ]);
  if (api.egl.eglChooseConfig(display, attribs, configs, 1, count) !== EGL.TRUE || count[0] < 1) {
    api.egl.eglGetError();
    return null;
  }
  return configs[0];
}

function releaseDisplay(api: GlApi, display: bigint): void {
  const users = (displayUsers.get(display) ?? 1) - 1;
  if (users > 0) {
    displayUsers.set(display, users);
    return;
  }
  displayUsers.delete(display);
  api.egl.eglTerminate(display);
}

/** A SurfaceLinkError carrying eglGetError()'s name. */
export function eglFailure(
  api: GlApi,
  code: 'E_SYSTEM' | 'E_UNSUPPORTED' | 'E_IMPORT_FAILED',
  message: string,
): SurfaceLinkError {
  const error = api.egl.eglGetError();
  return new SurfaceLinkError(code, `${message}: ${eglErrorName(error)} (0x${error.toString(16)})`);
}
