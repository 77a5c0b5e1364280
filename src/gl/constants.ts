/**
 * EGL and OpenGL ES constants, with values from the Khronos EGL/GLES registries and the
 * extension specs named beside them, and their error names.
 */

/**
 * EGL constants surfacelink passes to EGL, named without their `EGL_` prefix (`EGL.NONE` is
 * EGL_NONE), grouped by the core version or extension that defines them. Frozen; the values are
 * the registry's, so any EGL implementation accepts them.
 *
 * @enum
 */
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
  // EGL 1.x configs and pbuffers (a context on an EGL without EGL_KHR_no_config_context /
  // EGL_KHR_surfaceless_context, e.g. ANGLE 2.x on D3D11, is made current on a 1x1 pbuffer)
  RED_SIZE: 0x3024,
  GREEN_SIZE: 0x3023,
  BLUE_SIZE: 0x3022,
  ALPHA_SIZE: 0x3021,
  OPENGL_ES3_BIT: 0x0040, // EGL_OPENGL_ES3_BIT_KHR (EGL_KHR_create_context, EGL 1.5)
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
  // EGL_ANGLE_platform_angle_d3d (Windows): ANGLE on Direct3D 11 (or 9), on a hardware device
  PLATFORM_ANGLE_TYPE_D3D9_ANGLE: 0x3207,
  PLATFORM_ANGLE_TYPE_D3D11_ANGLE: 0x3208,
  PLATFORM_ANGLE_DEVICE_TYPE_HARDWARE_ANGLE: 0x320a,
  // EGL_ANGLE_platform_angle_metal / _opengl (macOS): ANGLE on Metal, or on Apple's desktop OpenGL
  PLATFORM_ANGLE_TYPE_METAL_ANGLE: 0x3489,
  PLATFORM_ANGLE_TYPE_OPENGL_ANGLE: 0x320d,
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

/**
 * OpenGL ES constants surfacelink passes to GL, named without their `GL_` prefix (`GL.RGBA` is
 * GL_RGBA), grouped by the core version or extension that defines them. Frozen.
 *
 * @enum
 */
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
  ARRAY_BUFFER: 0x8892,
  STATIC_DRAW: 0x88e4,
  FLOAT: 0x1406,
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

/** The name of an eglGetError() code, e.g. 'EGL_BAD_MATCH', or 'EGL error 0x…' for one it does not know. */
export const eglErrorName = (code: number): string => EGL_ERRORS[code] ?? `EGL error 0x${code.toString(16)}`;
/** The name of a glGetError() code, e.g. 'GL_INVALID_OPERATION', or 'GL error 0x…' for one it does not know. */
export const glErrorName = (code: number): string => GL_ERRORS[code] ?? `GL error 0x${code.toString(16)}`;
