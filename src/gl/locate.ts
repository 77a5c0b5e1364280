/**
 * Which GL to load, in the order src/gl/angle.ts describes: an explicit ANGLE folder
 * (strict), the bundled ANGLE extracted from its archive, the system EGL. Every failure lists
 * each candidate tried and why it failed.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { SurfaceLinkError } from '../errors.js';
import {
  ANGLE_PACKAGE,
  ANGLE_PACKAGE_VERSION,
  ANGLE_VENDORED_ARCHIVE,
  extractAngle,
  verbose,
  type AngleExtraction,
} from './angle.js';
import {
  GpuContext,
  SURFACELESS_MESA_DISPLAY,
  angleD3D11Display,
  angleMacDisplay,
  angleSurfacelessDisplay,
  type GpuDisplaySpec,
} from './context.js';
import { SYSTEM_GL_LIBRARIES, type GlLibraries } from './egl.js';

/** File names of an ANGLE build on each platform. */
function angleFileNames(platform: NodeJS.Platform = process.platform): { egl: string; gles: string } {
  if (platform === 'darwin') return { egl: 'libEGL.dylib', gles: 'libGLESv2.dylib' };
  if (platform === 'win32') return { egl: 'libEGL.dll', gles: 'libGLESv2.dll' };
  return { egl: 'libEGL.so', gles: 'libGLESv2.so' };
}

/** The library pair of an ANGLE folder. */
export function angleLibraries(dir: string, source = `angle (${dir})`): GlLibraries {
  const names = angleFileNames();
  const libraries: GlLibraries = { egl: path.join(dir, names.egl), gles: path.join(dir, names.gles), source };
  // ANGLE's D3D backends load the HLSL compiler by name; the folder's own copy is loaded first
  // so that it is the one used (else System32's, or under wine, wine's own, whose HLSL
  // compiler rejects ANGLE 2.x's shaders).
  const compiler = path.join(dir, 'd3dcompiler_47.dll');
  if (process.platform === 'win32' && fs.existsSync(compiler)) libraries.preload = [compiler];
  return libraries;
}

/** Which GL locateGl() and openGpuContext() may choose, and in which order. */
export interface LocateGlOptions {
  /** A folder with ANGLE's libEGL and libGLESv2 (overrides SURFACELINK_ANGLE_DIR). Strict: no fallback if unusable. */
  angleDir?: string;
  /** Which to try first when no ANGLE folder is named: the bundled ANGLE (default) or the system EGL. */
  prefer?: 'angle' | 'system';
  /** Cache folder for the bundled ANGLE; default angleCacheDir(). */
  cacheDir?: string;
}

/** A GL to try: a library pair and the display to open on it. */
export interface GlCandidate {
  /** The EGL + GLES libraries. */
  libraries: GlLibraries;
  /** Which kind it is: ANGLE (bundled or from a folder) or the system EGL. */
  display: 'angle' | 'system';
  /** The EGL display to open on these libraries. */
  displaySpec: GpuDisplaySpec;
}

/** What locateGl() chose, and every candidate it looked at. */
export interface LocatedGl extends GlCandidate {
  /** Every candidate looked at, in order, with what happened ('ok …' for the one returned). */
  tried: string[];
}

const BUNDLED_SOURCE = `angle (${ANGLE_PACKAGE} ${ANGLE_PACKAGE_VERSION})`;

/** The explicit folder, if usable; otherwise throws with why. */
function explicitCandidate(dir: string, origin: string): GlCandidate {
  const abs = path.resolve(dir);
  const libraries = angleLibraries(abs, `angle (${origin}=${abs})`);
  let st: fs.Stats;
  try {
    st = fs.statSync(abs);
  } catch (error) {
    throw new Error(
      `${origin} ${abs}: ${(error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such folder' : firstLine(error)}`,
      { cause: error },
    );
  }
  if (!st.isDirectory()) throw new Error(`${origin} ${abs}: not a folder`);
  const missing = [libraries.egl, libraries.gles].filter((f) => !fs.existsSync(f)).map((f) => path.basename(f));
  if (missing.length > 0) throw new Error(`${origin} ${abs}: no ${missing.join(' and no ')} in it`);
  return { libraries, display: 'angle', displaySpec: angleDisplayFor(abs) };
}

/**
 * The display to open on an ANGLE folder: D3D11 on Windows (verified under wine with ANGLE 2.1;
 * docs/gl-windows.md); Vulkan elsewhere, on SwiftShader when its ICD is alongside (as in the
 * bundled build), else ANGLE's default device. macOS (Metal) is not verified.
 */
function angleDisplayFor(dir: string, platform: NodeJS.Platform = process.platform): GpuDisplaySpec {
  if (platform === 'win32') return angleD3D11Display();
  if (platform === 'darwin') return angleMacDisplay('metal');
  const swiftshader = fs.existsSync(path.join(dir, 'vk_swiftshader_icd.json'));
  return angleSurfacelessDisplay({ swiftshader });
}

function bundledCandidate(cacheDir: string | undefined): { candidate: GlCandidate; note: string } {
  if (process.platform !== 'linux' || process.arch !== 'x64') {
    throw new Error(
      `bundled ANGLE (${ANGLE_PACKAGE} ${ANGLE_PACKAGE_VERSION}): linux-x64 only, ` +
        `this is ${process.platform}-${process.arch}` +
        (process.platform === 'win32'
          ? ' (the package vendors no ANGLE for Windows: set SURFACELINK_ANGLE_DIR or the angleDir option to ' +
            "a folder with ANGLE's libEGL.dll and libGLESv2.dll)"
          : process.platform === 'darwin'
            ? " (on macOS ANGLE is the embedding app's, as UTM bundles one: set SURFACELINK_ANGLE_DIR or the " +
              'angleDir option to the folder with its libEGL.dylib and libGLESv2.dylib)'
            : ''),
    );
  }
  let result: AngleExtraction;
  try {
    result = extractAngle({ cacheDir });
  } catch (error) {
    throw new Error(
      `bundled ANGLE (${ANGLE_PACKAGE} ${ANGLE_PACKAGE_VERSION}): ` +
        `${error instanceof SurfaceLinkError ? error.message : firstLine(error)}`,
      { cause: error },
    );
  }
  const note = result.memoized
    ? 'verified earlier in this process'
    : result.archive
      ? `extracted ${result.extracted.length} file(s) from ${result.archive.archive} in ${result.ms.toFixed(0)} ms`
      : `hashes verified in ${result.ms.toFixed(0)} ms`;
  return {
    candidate: {
      libraries: angleLibraries(result.dir, BUNDLED_SOURCE),
      display: 'angle',
      displaySpec: angleSurfacelessDisplay({ swiftshader: true }),
    },
    note: `${result.dir} (${note})`,
  };
}

const SYSTEM_CANDIDATE: GlCandidate = Object.freeze({
  libraries: SYSTEM_GL_LIBRARIES,
  display: 'system',
  displaySpec: SURFACELESS_MESA_DISPLAY,
});

/** A candidate, prepared on demand (the bundled one is extracted only when it is reached). */
type Preparer = () => { candidate: GlCandidate; note: string };

/**
 * The candidates in discovery order. An explicit folder is the only candidate, and if it is
 * unusable this throws (an explicit choice is never replaced silently).
 */
function candidates(options: LocateGlOptions, tried: string[]): Preparer[] {
  const explicit = options.angleDir ?? process.env.SURFACELINK_ANGLE_DIR;
  if (explicit !== undefined && explicit !== '') {
    const origin = options.angleDir !== undefined ? 'angleDir' : 'SURFACELINK_ANGLE_DIR';
    try {
      const candidate = explicitCandidate(explicit, origin);
      return [() => ({ candidate, note: `${origin} ${path.dirname(candidate.libraries.egl)}` })];
    } catch (error) {
      tried.push(firstLine(error));
      throw locateError(
        tried,
        `${origin} names an ANGLE folder that cannot be used, and an explicit choice is not replaced silently`,
        [
          `  - point ${origin} at the folder holding ${Object.values(angleFileNames()).join(' and ')} (with ` +
            `their Vulkan loader/ICD next to them on Linux);`,
          `  - or ${origin === 'angleDir' ? 'leave angleDir out' : 'unset SURFACELINK_ANGLE_DIR'} to use the ` +
            `bundled ANGLE (${ANGLE_PACKAGE} ${ANGLE_PACKAGE_VERSION}) or the system EGL.`,
        ],
      );
    }
  }
  const bundled: Preparer = () => {
    const { candidate, note } = bundledCandidate(options.cacheDir);
    return { candidate, note: `bundled ANGLE: ${note}` };
  };
  const system: Preparer = () => {
    if (process.platform === 'win32')
      throw new Error('system EGL: Windows has none (OpenGL ES on Windows comes from an ANGLE build)');
    if (process.platform === 'darwin')
      throw new Error("system EGL: macOS has none (OpenGL ES on macOS comes from an ANGLE build, e.g. the app's own)");
    return {
      candidate: SYSTEM_CANDIDATE,
      note: `system EGL: ${SYSTEM_GL_LIBRARIES.egl} + ${SYSTEM_GL_LIBRARIES.gles}`,
    };
  };
  return options.prefer === 'system' ? [system, bundled] : [bundled, system];
}

function locateError(tried: string[], summary: string, solutions: string[]): SurfaceLinkError {
  const error = new SurfaceLinkError(
    'E_NATIVE_UNAVAILABLE',
    [
      `No usable EGL/OpenGL ES on ${process.platform}-${process.arch}: ${summary}. Tried:`,
      ...tried.map((t) => `  ${t}`),
      'Possible solutions:',
      ...solutions,
    ].join('\n'),
  );
  Object.defineProperty(error, 'tried', { value: [...tried], enumerable: true });
  return error;
}

const WINDOWS_SOLUTIONS = [
  "  - point SURFACELINK_ANGLE_DIR (or the angleDir option) at a folder holding ANGLE's libEGL.dll and " +
    'libGLESv2.dll (an Electron or Chromium build has them; d3dcompiler_47.dll next to them or in System32);',
  '  - surfacelink vendors no ANGLE for Windows, and Windows has no system EGL.',
];

const GENERAL_SOLUTIONS = [
  `  - reinstall surfacelink: its package ships ${ANGLE_VENDORED_ARCHIVE}; in a development clone ` +
    `run \`npm install\` (devDependency ${ANGLE_PACKAGE}@${ANGLE_PACKAGE_VERSION}, not omitted) ` +
    `or \`node scripts/vendor-angle.js\`;`,
  '  - make the cache folder writable by this user, or point SURFACELINK_CACHE_DIR at one that is;',
  '  - point SURFACELINK_ANGLE_DIR (or the angleDir option) at a folder holding an ANGLE libEGL + libGLESv2;',
  '  - install the system EGL: `apt-get install -y libegl1 libgles2 libegl-mesa0 libgl1-mesa-dri` (Debian/Ubuntu).',
];

/**
 * Which EGL/GLES libraries to use, by the discovery order above. Prepares (extracts and
 * verifies) the bundled ANGLE when it is reached, but loads nothing: the system EGL is
 * returned without being loaded (GpuContext.open() reports if it is absent).
 */
export function locateGl(options: LocateGlOptions = {}): LocatedGl {
  const tried: string[] = [];
  for (const prepare of candidates(options, tried)) {
    try {
      const { candidate, note } = prepare();
      tried.push(`${note} (chosen)`);
      return { ...candidate, tried };
    } catch (error) {
      tried.push(error instanceof Error ? error.message : String(error));
    }
  }
  throw locateError(
    tried,
    'no candidate could be prepared',
    process.platform === 'win32' ? WINDOWS_SOLUTIONS : GENERAL_SOLUTIONS,
  );
}

/** What openGpuContext() may choose, and the GLES version it asks for. */
export interface OpenGpuContextOptions extends LocateGlOptions {
  /** OpenGL ES version to ask for (default 3.0). */
  glesVersion?: {
    /** Major version, e.g. 3. */
    major: number;
    /** Minor version, e.g. 0. */
    minor: number;
  };
}

/**
 * A GpuContext on the first candidate that opens: ANGLE on Vulkan/SwiftShader (surfaceless),
 * else the system EGL (Mesa surfaceless), or the other way round with `prefer: 'system'`.
 * Throws E_NATIVE_UNAVAILABLE listing every candidate and why each failed; the error carries
 * the list as `tried`.
 */
export function openGpuContext(options: OpenGpuContextOptions = {}): GpuContext {
  const tried: string[] = [];
  for (const prepare of candidates(options, tried)) {
    let prepared: { candidate: GlCandidate; note: string };
    try {
      prepared = prepare();
    } catch (error) {
      tried.push(error instanceof Error ? error.message : String(error));
      continue;
    }
    const { candidate, note } = prepared;
    const started = performance.now();
    try {
      const ctx = GpuContext.open({
        libraries: candidate.libraries,
        display: candidate.displaySpec,
        ...(options.glesVersion ? { glesVersion: options.glesVersion } : {}),
      });
      verbose(
        `GL context on ${candidate.displaySpec.name} [${candidate.libraries.source}]: ${ctx.renderer} ` +
          `(${(performance.now() - started).toFixed(0)} ms)`,
      );
      return ctx;
    } catch (error) {
      // The inner error's own "Possible solutions" are replaced by the combined ones below.
      const message = (error instanceof Error ? error.message : String(error)).split('\nPossible solutions:')[0];
      tried.push(`${note}: ${candidate.displaySpec.name} failed: ${message.split('\n').join('\n    ')}`);
    }
  }
  const explicit = options.angleDir ?? process.env.SURFACELINK_ANGLE_DIR;
  const solutions = explicit
    ? [
        `  - check that ${explicit} holds a complete ANGLE build for ${process.platform}-${process.arch} ` +
          `(libEGL, libGLESv2 and, on Linux, libvulkan.so.1 + an ICD such as SwiftShader's; on Windows ` +
          `D3D11 with d3dcompiler_47.dll);`,
        `  - or ${options.angleDir !== undefined ? 'leave angleDir out' : 'unset SURFACELINK_ANGLE_DIR'} to ` +
          `use the bundled ANGLE (${ANGLE_PACKAGE} ${ANGLE_PACKAGE_VERSION}) or the system EGL.`,
      ]
    : process.platform === 'win32'
      ? WINDOWS_SOLUTIONS
      : GENERAL_SOLUTIONS;
  throw locateError(tried, 'every candidate failed', solutions);
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0];
}
