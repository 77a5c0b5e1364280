/**
 * Getting ANGLE (OpenGL ES on Vulkan, here on SwiftShader: a CPU Vulkan) without downloading
 * anything at run time, and choosing between it and the system's EGL (Mesa).
 *
 * Where ANGLE comes from: `bin/swiftshader.tar.br` (brotli over a ustar) of the npm package
 * `@sparticuz/chromium` 147.0.0, which holds exactly the five files ANGLE needs: libEGL.so,
 * libGLESv2.so, libvulkan.so.1, libvk_swiftshader.so and vk_swiftshader_icd.json. Nothing else
 * of that package (its 61 MB Chromium) is used, so surfacelink ships only that archive:
 * `scripts/vendor-angle.js` (the `prepack` script) copies it, hash-checked, into
 * `vendor/angle/swiftshader.tar.br` of the package, and @sparticuz/chromium is only a
 * devDependency. The archive is looked for in this order (ANGLE_ARCHIVE_SHA256 checked on each;
 * a wrong one is skipped, saying why):
 *   1. `<package root>/vendor/angle/swiftshader.tar.br` — an installed surfacelink (the package
 *      root is two levels above this module: dist/gl/angle.js when installed, src/gl/angle.ts in
 *      a checkout run with tsx);
 *   2. `bin/swiftshader.tar.br` of an installed `@sparticuz/chromium@147.0.0` — a development
 *      clone with its devDependencies, before `npm pack` has vendored the archive.
 * On first use the five files are extracted — locally — into a versioned cache folder, each
 * checked against the SHA-256 recorded below, and then loaded with koffi by absolute path (no
 * LD_LIBRARY_PATH, no VK_ICD_FILENAMES: libEGL finds libGLESv2 next to itself, libGLESv2 the
 * bundled libvulkan, ANGLE points the loader at the bundled json).
 *
 * Extraction is safe when processes race: each file is written to a unique temporary name in
 * the cache folder, fsynced and renamed over the final name (atomic), and the final files are
 * hashed afterwards. A corrupted cache is found by its hash and re-extracted. The verified state
 * is remembered per process (re-checked with a stat only), so later calls cost microseconds.
 *
 * Discovery order (locateGl / openGpuContext):
 *   1. an explicit `angleDir` option, else SURFACELINK_ANGLE_DIR — a folder with libEGL and
 *      libGLESv2 (how macOS apps, Electron or Windows builds point at their own ANGLE). It is
 *      strict: if it is unusable the call fails, naming it, instead of silently using another GL;
 *   2. the bundled build (linux-x64 only), extracted into the cache;
 *   3. the system EGL (glvnd → Mesa; llvmpipe without a GPU).
 * `prefer: 'system'` puts 3 before 2. Failures list every path tried and why each failed.
 *
 * Cache folder: `${SURFACELINK_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/surfacelink}/angle/147.0.0/`.
 * Set SURFACELINK_VERBOSE=1 to have extraction say what it does on stderr.
 *
 * Licences: ANGLE (BSD-3-Clause), SwiftShader, the Vulkan loader (Apache-2.0) and LLVM libc++
 * (Apache-2.0 WITH LLVM-exception) — see docs/third-party/ANGLE-NOTICES.md, which is part of the
 * package that redistributes the archive.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as zlib from 'node:zlib';
import { SurfaceLinkError } from '../errors.js';

/** The npm package the ANGLE archive is taken from, and the only version whose files are known here. */
export const ANGLE_PACKAGE = '@sparticuz/chromium';
/** The version of ANGLE_PACKAGE whose archive and files are pinned here. */
export const ANGLE_PACKAGE_VERSION = '147.0.0';
/** The archive inside the package, and its SHA-256 in 147.0.0. */
export const ANGLE_ARCHIVE = 'bin/swiftshader.tar.br';
/** The SHA-256 of ANGLE_ARCHIVE in that version; any other archive is refused. */
export const ANGLE_ARCHIVE_SHA256 = 'f957ea867313f9815b71dc2ed30cce301e01db4f3973fbdb31ffa5391b0ec45a';
/** Where scripts/vendor-angle.js puts a copy of that archive, relative to surfacelink's package root. */
export const ANGLE_VENDORED_ARCHIVE = 'vendor/angle/swiftshader.tar.br';
/** The build inside (for messages and docs). */
export const ANGLE_BUILD = 'ANGLE 2.1.27278 (git 0d61b30acc76), Vulkan backend on SwiftShader 5.0.0';

/**
 * The five files, their sizes and SHA-256s, computed from @sparticuz/chromium 147.0.0's
 * bin/swiftshader.tar.br (they match the shared facts' table).
 */
export const ANGLE_FILES: Readonly<
  Record<
    AngleFileName,
    {
      /** Bytes. */
      readonly size: number;
      /** SHA-256 of the contents, hex. */
      readonly sha256: string;
      /** Permission bits it is extracted with. */
      readonly mode: number;
    }
  >
> = Object.freeze({
  'libEGL.so': {
    size: 360_208,
    sha256: 'b6dc0e4607294eacb39d83206156e0efeed77c11e6cb3e721d01f3fead5c8f72',
    mode: 0o755,
  },
  'libGLESv2.so': {
    size: 7_743_216,
    sha256: '29a18749631bd8919062e4464250248cf450d4d74e255d1e6e8b052eda06486e',
    mode: 0o755,
  },
  'libvk_swiftshader.so': {
    size: 6_026_040,
    sha256: '5b9e8591c7c2d1c9618c3ad485d0cdffb81f5f1ffd6a982fdb6578c2d8d3213e',
    mode: 0o755,
  },
  'libvulkan.so.1': {
    size: 787_592,
    sha256: 'fe17a77c1f2df38d3b6a935140f746fd80aac564bb44eb3e4f6b75a504295a41',
    mode: 0o755,
  },
  'vk_swiftshader_icd.json': {
    size: 107,
    sha256: 'c9eef28b6b984fec220ef0abfecc40b502d46946706e47bfe97707027cb818bd',
    mode: 0o644,
  },
});
/** The five files of the bundled ANGLE build. */
export type AngleFileName =
  'libEGL.so' | 'libGLESv2.so' | 'libvk_swiftshader.so' | 'libvulkan.so.1' | 'vk_swiftshader_icd.json';
const FILE_NAMES = Object.keys(ANGLE_FILES) as AngleFileName[];

/** @internal Says what extraction does on stderr, with SURFACELINK_VERBOSE=1. */
export const verbose = (message: string): void => {
  if (process.env.SURFACELINK_VERBOSE) process.stderr.write(`surfacelink: ${message}\n`);
};

// ---------------------------------------------------------------------------------------------
// Cache folder and package
// ---------------------------------------------------------------------------------------------

/** `${SURFACELINK_CACHE_DIR:-${XDG_CACHE_HOME:-~/.cache}/surfacelink}/angle/<package version>`. */
export function angleCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const root =
    env.SURFACELINK_CACHE_DIR || path.join(env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache'), 'surfacelink');
  return path.resolve(root, 'angle', ANGLE_PACKAGE_VERSION);
}

/**
 * The installed @sparticuz/chromium folder (found without loading its code: its `exports` hide
 * package.json, so the module search path is walked), or an error listing where it looked.
 */
export function findAnglePackage(): {
  /** The package folder. */
  dir: string;
  /** Its version: always ANGLE_PACKAGE_VERSION (other versions are skipped). */
  version: string;
  /** The path of ANGLE_ARCHIVE in it. */
  archive: string;
} {
  const tried: string[] = [];
  const searchPaths = require.resolve.paths(ANGLE_PACKAGE) ?? [];
  for (const base of searchPaths) {
    const dir = path.join(base, ...ANGLE_PACKAGE.split('/'));
    const manifest = path.join(dir, 'package.json');
    let version: string;
    try {
      version = (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version?: string }).version ?? '?';
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      tried.push(`${dir}: ${e.code === 'ENOENT' ? 'not installed there' : firstLine(e)}`);
      continue;
    }
    if (version !== ANGLE_PACKAGE_VERSION) {
      tried.push(
        `${dir}: version ${version}, but only ${ANGLE_PACKAGE_VERSION} is known (its file hashes are recorded ` +
          `in surfacelink)`,
      );
      continue;
    }
    const archive = path.join(dir, ANGLE_ARCHIVE);
    if (!fs.existsSync(archive)) {
      tried.push(`${archive}: missing (was the package installed completely?)`);
      continue;
    }
    return { dir, version, archive };
  }
  throw new AngleLookupError(
    `${ANGLE_PACKAGE}@${ANGLE_PACKAGE_VERSION} is not installed where Node looks for it`,
    tried.length > 0 ? tried : ['(no node_modules folder on the search path)'],
  );
}

/** An internal failure with the paths it looked at. */
class AngleLookupError extends Error {
  constructor(
    message: string,
    readonly details: string[],
  ) {
    super(`${message}:\n${details.map((d) => `      ${d}`).join('\n')}`);
  }
}

/**
 * surfacelink's package root (the folder holding its package.json): two levels above this
 * module, which is dist/gl/angle.js in an installed or built package and src/gl/angle.ts when
 * run from source (tsx). Its `vendor/angle/` holds the archive in a packed/installed surfacelink.
 */
export function surfacelinkPackageRoot(): string {
  return path.resolve(__dirname, '..', '..');
}

/** Where an ANGLE archive was found. */
export interface AngleArchiveLocation {
  /** The archive file (its SHA-256 is ANGLE_ARCHIVE_SHA256). */
  archive: string;
  /**
   * 'vendored': `<package root>/vendor/angle/` (an installed surfacelink); 'package': the
   * installed @sparticuz/chromium (a development clone); 'explicit': the `packageDir` option.
   */
  origin: 'vendored' | 'package' | 'explicit';
}

/** Where findAngleArchive() looks for the ANGLE archive. */
export interface FindAngleArchiveOptions {
  /** surfacelink's package root to look in for vendor/angle/; default surfacelinkPackageRoot(). */
  packageRoot?: string;
  /** An @sparticuz/chromium folder to use instead of looking (nothing else is tried). */
  packageDir?: string;
}

/** The archive's bytes, or an error starting with its path saying why they are not the pinned ones. */
function readVerifiedArchive(archive: string): Buffer {
  const compressed = fs.readFileSync(archive);
  const archiveHash = crypto.createHash('sha256').update(compressed).digest('hex');
  if (archiveHash !== ANGLE_ARCHIVE_SHA256)
    throw new Error(
      `${archive}: sha256 ${archiveHash}, expected ${ANGLE_ARCHIVE_SHA256} (not ` +
        `the ${ANGLE_PACKAGE}@${ANGLE_PACKAGE_VERSION} file)`,
    );
  return compressed;
}

/**
 * The first usable archive, hash-checked, with its bytes: `<package root>/vendor/angle/
 * swiftshader.tar.br`, else `bin/swiftshader.tar.br` of the installed @sparticuz/chromium
 * 147.0.0. A missing or wrong one is skipped; when none is usable the error lists every place
 * looked at and why each failed.
 */
function loadAngleArchive(options: FindAngleArchiveOptions): AngleArchiveLocation & { compressed: Buffer } {
  if (options.packageDir !== undefined) {
    const archive = path.join(options.packageDir, ANGLE_ARCHIVE);
    return { archive, origin: 'explicit', compressed: readVerifiedArchive(archive) };
  }
  const tried: string[] = [];
  const vendored = path.join(
    path.resolve(options.packageRoot ?? surfacelinkPackageRoot()),
    ...ANGLE_VENDORED_ARCHIVE.split('/'),
  );
  try {
    return { archive: vendored, origin: 'vendored', compressed: readVerifiedArchive(vendored) };
  } catch (error) {
    const e = error as NodeJS.ErrnoException;
    tried.push(
      e.code === 'ENOENT'
        ? `${vendored}: missing (a packed or installed surfacelink ships it; ` +
            `in a checkout \`node scripts/vendor-angle.js\` copies it there)`
        : e.code
          ? `${vendored}: ${firstLine(e)}`
          : firstLine(e),
    );
  }
  let pkg: ReturnType<typeof findAnglePackage> | undefined;
  try {
    pkg = findAnglePackage();
  } catch (error) {
    if (error instanceof AngleLookupError) tried.push(...error.details);
    else tried.push(firstLine(error));
  }
  if (pkg) {
    try {
      const compressed = readVerifiedArchive(pkg.archive);
      verbose(`ANGLE archive: ${tried.join('; ')}; using ${pkg.archive}`);
      return { archive: pkg.archive, origin: 'package', compressed };
    } catch (error) {
      tried.push(firstLine(error));
    }
  }
  throw new AngleLookupError(
    `no usable ANGLE archive ` +
      `(${ANGLE_PACKAGE}@${ANGLE_PACKAGE_VERSION} ${path.posix.basename(ANGLE_ARCHIVE)}, ` +
      `sha256 ${ANGLE_ARCHIVE_SHA256}); looked at`,
    tried,
  );
}

/**
 * Where the ANGLE archive would be taken from (see loadAngleArchive for the order), its
 * SHA-256 checked. Throws (with every place looked at) when there is none.
 */
export function findAngleArchive(options: FindAngleArchiveOptions = {}): AngleArchiveLocation {
  try {
    const { archive, origin } = loadAngleArchive(options);
    return { archive, origin };
  } catch (error) {
    throw new SurfaceLinkError('E_NATIVE_UNAVAILABLE', error instanceof Error ? error.message : String(error), {
      cause: error,
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Extraction
// ---------------------------------------------------------------------------------------------

/** What extractAngle() did: the cache folder and which files it had to (re)write. */
export interface AngleExtraction {
  /** The cache folder holding the five files. */
  dir: string;
  /** Files written by this call (empty when the cache was already good). */
  extracted: AngleFileName[];
  /** Why each rewritten file was rewritten ('missing', 'size 12, expected 360208', 'sha256 …'). */
  reasons: Partial<Record<AngleFileName, string>>;
  /** Milliseconds this call took. */
  ms: number;
  /** True when answered from this process's memory of an earlier verification (stat only). */
  memoized: boolean;
  /** The archive this call extracted from; null when nothing had to be extracted. */
  archive: AngleArchiveLocation | null;
}

/** Where extractAngle() takes the archive from and extracts it to. */
export interface AngleExtractOptions {
  /** Default angleCacheDir(). */
  cacheDir?: string;
  /**
   * An @sparticuz/chromium folder to take `bin/swiftshader.tar.br` from, instead of looking
   * (default: `<packageRoot>/vendor/angle/swiftshader.tar.br`, else the installed package).
   */
  packageDir?: string;
  /** surfacelink's package root, whose vendor/angle/ is looked in first; default surfacelinkPackageRoot(). */
  packageRoot?: string;
  /** Hash the files even if this process verified them before (tests, `doctor`). */
  recheck?: boolean;
}

/** Per process: folder → identity of each verified file (dev, inode, size, mtime). */
const verified = new Map<string, string[]>();

const identity = (st: fs.Stats): string => `${st.dev}:${st.ino}:${st.size}:${st.mtimeMs}`;

function sha256File(file: string): string {
  return crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
}

/** Why `file` is not the expected one, or null if it is. */
function checkFile(dir: string, name: AngleFileName): string | null {
  const file = path.join(dir, name);
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : firstLine(error);
  }
  const expected = ANGLE_FILES[name];
  if (!st.isFile()) return 'not a regular file';
  if (st.size !== expected.size) return `size ${st.size}, expected ${expected.size}`;
  const actual = sha256File(file);
  return actual === expected.sha256 ? null : `sha256 ${actual}, expected ${expected.sha256}`;
}

/** The cache folder must not be writable by others: what is in it gets loaded into this process. */
function checkCacheDirOwnership(dir: string): void {
  const st = fs.statSync(dir);
  const uid = process.getuid?.();
  if (uid !== undefined && st.uid !== uid) {
    throw new Error(
      `${dir} is owned by uid ${st.uid}, not by this user (uid ${uid}); refusing to load libraries from it`,
    );
  }
  if ((st.mode & 0o022) !== 0) {
    throw new Error(
      `${dir} is writable by group or others (mode ${(st.mode & 0o777).toString(8)}); refusing to load ` +
        `libraries from it`,
    );
  }
}

/** The five file bodies from the archive's verified bytes (a ustar/GNU tar of regular files), hash-checked. */
function unpackArchive(archive: string, compressed: Buffer): Map<AngleFileName, Buffer> {
  const tar = zlib.brotliDecompressSync(compressed);
  const wanted = new Set<string>(FILE_NAMES);
  const out = new Map<AngleFileName, Buffer>();
  const field = (h: Buffer, from: number, to: number): string =>
    h.subarray(from, to).toString('latin1').replace(/\0.*$/s, '');
  for (let offset = 0; offset + 512 <= tar.length;) {
    const header = tar.subarray(offset, offset + 512);
    if (header.every((b) => b === 0)) break;
    let sum = 0;
    for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : header[i];
    const recorded = parseInt(field(header, 148, 156).trim(), 8);
    if (recorded !== sum) throw new Error(`${archive}: bad tar header checksum at offset ${offset}`);
    const magic = field(header, 257, 263);
    const prefix = magic === 'ustar' ? field(header, 345, 500) : '';
    const name = path.posix
      .normalize(prefix ? `${prefix}/${field(header, 0, 100)}` : field(header, 0, 100))
      .replace(/^\.\//, '');
    const size = parseInt(field(header, 124, 136).trim() || '0', 8);
    const type = header[156];
    const body = offset + 512;
    if (!Number.isSafeInteger(size) || size < 0 || body + size > tar.length)
      throw new Error(`${archive}: bad tar entry size for ${JSON.stringify(name)}`);
    // Only the five known names are taken (so nothing can be written outside the folder).
    if ((type === 0x30 || type === 0) && wanted.has(name))
      out.set(name as AngleFileName, tar.subarray(body, body + size));
    offset = body + Math.ceil(size / 512) * 512;
  }
  for (const name of FILE_NAMES) {
    const data = out.get(name);
    if (!data) throw new Error(`${archive}: has no ${name}`);
    const hash = crypto.createHash('sha256').update(data).digest('hex');
    if (hash !== ANGLE_FILES[name].sha256)
      throw new Error(`${archive}: ${name} has sha256 ${hash}, expected ${ANGLE_FILES[name].sha256}`);
  }
  return out;
}

/** Writes `data` to `dir/name` atomically: unique temp file, fsync, rename. */
function writeAtomically(dir: string, name: AngleFileName, data: Buffer): void {
  const temp = path.join(dir, `.${name}.${process.pid}.${crypto.randomBytes(6).toString('hex')}.tmp`);
  const fd = fs.openSync(
    temp,
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL,
    ANGLE_FILES[name].mode,
  );
  try {
    try {
      for (let done = 0; done < data.length;) done += fs.writeSync(fd, data, done, data.length - done);
      fs.fchmodSync(fd, ANGLE_FILES[name].mode);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    // rename() replaces the final name atomically; a process that already loaded the old file
    // keeps its mapping of the old inode.
    fs.renameSync(temp, path.join(dir, name));
  } catch (error) {
    fs.rmSync(temp, { force: true });
    throw error;
  }
}

function fsyncDir(dir: string): void {
  try {
    const fd = fs.openSync(dir, 'r');
    try {
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    /* best effort: not every filesystem allows fsync on a directory */
  }
}

/**
 * Makes sure the five files are in the cache folder with the recorded hashes, extracting the
 * missing or wrong ones from the installed package. Second call in a process: a stat per file.
 * Throws E_NATIVE_UNAVAILABLE (package missing or different, cache not writable, hash mismatch).
 */
export function extractAngle(options: AngleExtractOptions = {}): AngleExtraction {
  const started = performance.now();
  const dir = path.resolve(options.cacheDir ?? angleCacheDir());
  try {
    return extractAngleOrThrow(dir, options, started);
  } catch (error) {
    throw new SurfaceLinkError(
      'E_NATIVE_UNAVAILABLE',
      `the bundled ANGLE could not be prepared in ${dir}: ${error instanceof Error ? error.message : String(error)}`,
      { cause: error },
    );
  }
}

function extractAngleOrThrow(dir: string, options: AngleExtractOptions, started: number): AngleExtraction {
  const remembered = verified.get(dir);
  if (remembered && !options.recheck) {
    const now = FILE_NAMES.map((name) => {
      try {
        return identity(fs.statSync(path.join(dir, name)));
      } catch {
        return '';
      }
    });
    if (now.every((id, i) => id === remembered[i]))
      return { dir, extracted: [], reasons: {}, ms: performance.now() - started, memoized: true, archive: null };
    verified.delete(dir);
  }

  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  checkCacheDirOwnership(dir);
  const reasons: Partial<Record<AngleFileName, string>> = {};
  for (const name of FILE_NAMES) {
    const why = checkFile(dir, name);
    if (why !== null) reasons[name] = why;
  }
  const extracted = Object.keys(reasons) as AngleFileName[];
  let source: AngleArchiveLocation | null = null;
  if (extracted.length > 0) {
    const { compressed, ...location } = loadAngleArchive(options);
    source = location;
    verbose(
      `extracting ANGLE (${extracted.map((n) => `${n}: ${reasons[n]}`).join('; ')}) from ${location.archive} ` +
        `(${location.origin}) into ${dir}`,
    );
    const files = unpackArchive(location.archive, compressed);
    for (const name of extracted) writeAtomically(dir, name, files.get(name)!);
    fsyncDir(dir);
    // Check what is there now (another process may have renamed its copy over ours: same bytes).
    for (const name of FILE_NAMES) {
      const why = checkFile(dir, name);
      if (why !== null) throw new Error(`${path.join(dir, name)} is still wrong after extraction: ${why}`);
    }
    verbose(`ANGLE ready in ${dir} (${(performance.now() - started).toFixed(0)} ms)`);
  }
  verified.set(
    dir,
    FILE_NAMES.map((name) => identity(fs.statSync(path.join(dir, name)))),
  );
  return { dir, extracted, reasons, ms: performance.now() - started, memoized: false, archive: source };
}

/** @internal For tests: forget what this process verified. */
export function forgetVerifiedAngle(): void {
  verified.clear();
}

function firstLine(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split('\n')[0];
}
