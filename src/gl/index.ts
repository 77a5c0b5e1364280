/**
 * surfacelink/gl: EGL + OpenGL ES through koffi — a surfaceless GpuContext, its capabilities
 * (decided from extension strings only), and dma-buf → GL texture import where EGL offers it.
 */
export {
  GpuContext,
  SURFACELESS_MESA_DISPLAY,
  CAPABILITY_EXTENSIONS,
  angleSurfacelessDisplay,
  angleD3D11Display,
  angleMacDisplay,
  type GpuContextOptions,
  type GpuDisplaySpec,
  type GpuCapabilities,
  type GpuCapabilityName,
  type GpuExtensions,
  type GpuResource,
} from './context.js';
export {
  importDmabufTexture,
  queryDmabufFormats,
  dmabufImageAttributes,
  type DmabufImportDescriptor,
  type DmabufPlane,
  type DmabufTexture,
  type DmabufFormat,
} from './dmabuf-import.js';
export {
  createTexture,
  deleteTexture,
  readTexture,
  textureFromEglImage,
  eglImageFromTexture,
  destroyImage,
  type ImageTexture,
  type TextureTarget,
} from './texture.js';
export {
  EGL,
  GL,
  SYSTEM_GL_LIBRARIES,
  loadGlLibraries,
  withApiEntry,
  eglErrorName,
  glErrorName,
  ExtensionList,
  GlApi,
  type GlLibraries,
  type Ptr,
  type EglCore,
  type GlesCore,
  type ExtensionProcName,
  type ExtensionProcTypes,
  type EglGetPlatformDisplayEXT,
  type EglCreateImageKHR,
  type EglDestroyImageKHR,
  type EglQueryDmaBufFormatsEXT,
  type EglQueryDmaBufModifiersEXT,
  type GlEGLImageTargetTexture2DOES,
  type GlCreateMemoryObjectsEXT,
  type GlDeleteMemoryObjectsEXT,
  type GlMemoryObjectParameterivEXT,
  type GlTexStorageMem2DEXT,
  type GlImportMemoryFdEXT,
} from './egl.js';
export {
  ANGLE_PACKAGE,
  ANGLE_PACKAGE_VERSION,
  ANGLE_ARCHIVE,
  ANGLE_ARCHIVE_SHA256,
  ANGLE_BUILD,
  ANGLE_FILES,
  ANGLE_VENDORED_ARCHIVE,
  findAngleArchive,
  surfacelinkPackageRoot,
  type AngleArchiveLocation,
  type FindAngleArchiveOptions,
  angleCacheDir,
  extractAngle,
  findAnglePackage,
  type AngleFileName,
  type AngleExtraction,
  type AngleExtractOptions,
} from './angle.js';
export {
  angleLibraries,
  locateGl,
  openGpuContext,
  type GlCandidate,
  type LocateGlOptions,
  type LocatedGl,
  type OpenGpuContextOptions,
} from './locate.js';
export {
  SurfaceImporter,
  type ImportPath,
  type ImportableFrame,
  type SurfaceTexture,
  type SurfaceImporterOptions,
} from './surface-texture.js';
export {
  SurfaceRenderer,
  type RenderPath,
  type RenderableBuffer,
  type SurfaceRendererOptions,
} from './render-target.js';
export { RenderTexture, drawTexture, swizzleFor } from './draw.js';
export {
  importMemoryTexture,
  memoryObjectUnavailable,
  memoryObjectLayoutProblem,
  swiftShaderPitch,
  type BufferLayout,
  type MemoryTexture,
} from './memory-object.js';
export { importIOSurfaceTexture, importD3D11Texture, type ClientBufferTexture } from './client-buffer.js';
