/**
 * Finds and loads the native addon, the way koffi and sharp do: a build made on this machine
 * first (a development checkout, or a source build by the install script), then the prebuilt
 * addon shipped in the package for this platform and architecture. Nothing here runs at
 * install time: npm 11 gates dependency install scripts (package.json "allowScripts"), so a
 * user's `npm install surfacelink` may never run scripts/install.js, and this loader must find
 * the prebuilt addon on its own.
 *
 * On failure the error lists every path tried and why each failed, with what to do.
 * The result (addon or error) is cached for the life of the process.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SurfaceLinkError } from '../errors.js';

/** The addon interface version this TypeScript expects (`abi` exported by native/common/addon.cc). */
export const ADDON_ABI = 1;

/** The platform-arch pairs that ship a prebuilt addon in the npm package (scripts/prebuild.sh). */
export const PREBUILT_TARGETS: readonly string[] = [
  'linux-x64',
  'linux-arm64',
  'darwin-x64',
  'darwin-arm64',
  'win32-x64',
];

/**
 * The package's root folder: two levels above this file, which is compiled to
 * dist/native/load.js (and runs from src/native/load.ts under tsx in a checkout).
 */
export function packageRoot(): string {
  return path.resolve(__dirname, '..', '..');
}

/** `<platform>-<arch>` as Node names them, e.g. linux-x64, darwin-arm64, win32-x64. */
export function prebuildTarget(): string {
  return `${process.platform}-${process.arch}`;
}

/**
 * Where the addon may be, in the order they are tried: SURFACELINK_ADDON (when set), a local
 * build (build/Release, build/Debug), then the prebuilt addon for this platform and arch.
 */
export function addonCandidates(): string[] {
  const root = packageRoot();
  const list = [
    path.join(root, 'build', 'Release', 'surfacelink.node'),
    path.join(root, 'build', 'Debug', 'surfacelink.node'),
    path.join(root, 'prebuilds', prebuildTarget(), 'surfacelink.node'),
  ];
  const explicit = process.env.SURFACELINK_ADDON;
  return explicit ? [path.resolve(explicit), ...list] : list;
}

let cached: { addon: unknown; path: string } | undefined;
let cachedError: SurfaceLinkError | undefined;

/**
 * Which platform-arch a binary was built for, read from its header ('linux-arm64', 'darwin-x64',
 * 'win32-x64'…), or undefined when the header is not one of ours. The dynamic loader's own
 * message for a foreign binary is often misleading (glibc says "cannot open shared object
 * file: No such file or directory" for an ELF of another architecture).
 */
export function binaryTarget(file: string): string | undefined {
  let header: Buffer;
  try {
    const fd = fs.openSync(file, 'r');
    try {
      header = Buffer.alloc(4096);
      header = header.subarray(0, fs.readSync(fd, header, 0, header.length, 0));
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return undefined;
  }
  const elfArch: Record<number, string> = {
    0x3e: 'x64',
    0xb7: 'arm64',
    0x03: 'ia32',
    0x28: 'arm',
    0xf3: 'riscv64',
    0x15: 'ppc64',
    0x16: 's390x',
  };
  const machoArch: Record<number, string> = { 0x01000007: 'x64', 0x0100000c: 'arm64' };
  const peArch: Record<number, string> = { 0x8664: 'x64', 0xaa64: 'arm64', 0x14c: 'ia32' };
  if (header.length >= 20 && header.readUInt32BE(0) === 0x7f454c46) {
    const machine = header[5] === 2 ? header.readUInt16BE(18) : header.readUInt16LE(18);
    return `linux-${elfArch[machine] ?? `machine 0x${machine.toString(16)}`}`;
  }
  if (header.length >= 8 && header.readUInt32LE(0) === 0xfeedfacf) {
    const cpu = header.readUInt32LE(4);
    return `darwin-${machoArch[cpu] ?? `cputype 0x${cpu.toString(16)}`}`;
  }
  if (header.length >= 64 && header.toString('latin1', 0, 2) === 'MZ') {
    const pe = header.readUInt32LE(60);
    if (pe + 6 <= header.length && header.toString('latin1', pe, pe + 4) === 'PE\0\0') {
      const machine = header.readUInt16LE(pe + 4);
      return `win32-${peArch[machine] ?? `machine 0x${machine.toString(16)}`}`;
    }
  }
  return undefined;
}

/** Why one candidate did not load, in a few words (the first line of the loader's message). */
function loadFailure(candidate: string, error: unknown): string {
  const e = error as NodeJS.ErrnoException;
  let message = (e?.message ?? String(error)).split('\n')[0];
  if (message.startsWith(`${candidate}: `)) message = message.slice(candidate.length + 2);
  if (e?.code && !message.includes(e.code)) message += ` (${e.code})`;
  const built = binaryTarget(candidate);
  if (!built) return message;
  const [os, arch] = [built.slice(0, built.indexOf('-')), built.slice(built.indexOf('-') + 1)];
  // An ELF header says "ELF", not "Linux" (the BSDs use ELF too): for ELF only the arch is compared.
  const elfHere = process.platform !== 'darwin' && process.platform !== 'win32';
  const foreign = arch !== process.arch || (os === 'linux' ? !elfHere : os !== process.platform);
  return foreign ? `built for ${built}, not ${prebuildTarget()} (the loader said: ${message})` : message;
}

/** glibc or musl on Linux, for the error message (prebuilt Linux addons need glibc). */
function linuxLibc(): string | undefined {
  if (process.platform !== 'linux') return undefined;
  try {
    const header = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header;
    return header?.glibcVersionRuntime ? `glibc ${header.glibcVersionRuntime}` : 'not glibc (musl?)';
  } catch {
    return undefined;
  }
}

function unavailable(tried: string[], explicitOnly: boolean): SurfaceLinkError {
  const target = prebuildTarget();
  const root = packageRoot();
  const libc = linuxLibc();
  const lines = [
    `surfacelink's native addon could not be loaded on ${target}${libc ? ` (${libc})` : ''}, ` +
      `Node ${process.version}. Tried:`,
    ...tried.map((line) => `  ${line}`),
    'Possible solutions:',
  ];
  if (explicitOnly) {
    lines.push(
      '  - SURFACELINK_ADDON is set, so nothing else was tried: point it at a surfacelink.node built for this ' +
        'platform, or unset it.',
    );
  } else {
    if (PREBUILT_TARGETS.includes(target)) {
      lines.push(
        `  - a prebuilt addon for ${target} ships in the package (prebuilds/${target}/surfacelink.node); if ` +
          `it is missing, reinstall surfacelink;` +
          (process.platform === 'linux'
            ? ' on Linux it needs glibc 2.28 or newer (not musl/Alpine): build from source there;'
            : ''),
      );
    } else {
      lines.push(`  - prebuilt addons ship for ${PREBUILT_TARGETS.join(', ')} only; on ${target} build from source:`);
    }
    lines.push(
      `  - build from source: in ${root} run \`node scripts/install.js\` ` +
        `(a release build; \`npm run build:native\` is the same with -Werror, for development).`,
      '    It needs cmake, a C++17 compiler and `npm install cmake-js node-addon-api` in your project ' +
        '(optional peer dependencies);',
      '  - or let npm run the install script, which does that build when no prebuilt addon loads:',
      '    `npm install-scripts approve surfacelink` then `npm rebuild surfacelink` ' +
        '(global installs: `npm install -g --allow-scripts=surfacelink surfacelink`);',
      '  - or point SURFACELINK_ADDON at a surfacelink.node built for this platform.',
    );
  }
  lines.push('`npx surfacelink doctor` shows what this machine can do.');
  return new SurfaceLinkError('E_NATIVE_UNAVAILABLE', lines.join('\n'));
}

/**
 * The addon and where it was loaded from, loaded once per process. Throws E_NATIVE_UNAVAILABLE
 * listing every path tried and why. When SURFACELINK_ADDON is set and that file fails to load,
 * no other candidate is tried: a build named explicitly is never silently replaced by another.
 */
export function loadAddon(): { addon: unknown; path: string } {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  const explicit = process.env.SURFACELINK_ADDON ? path.resolve(process.env.SURFACELINK_ADDON) : undefined;
  const tried: string[] = [];
  for (const candidate of addonCandidates()) {
    let why: string;
    if (!fs.existsSync(candidate)) {
      why = 'not found';
    } else {
      try {
        const addon: unknown = require(candidate);
        const abi = (addon as { abi?: unknown } | null)?.abi;
        if (abi === ADDON_ABI) {
          cached = { addon, path: candidate };
          return cached;
        }
        why =
          `loaded, but its addon ABI is ${String(abi)} where this surfacelink needs ${ADDON_ABI} (an old ` +
          `build: rebuild or delete it)`;
      } catch (error) {
        why = loadFailure(candidate, error);
      }
    }
    tried.push(`${candidate}: ${why}`);
    if (candidate === explicit) {
      cachedError = unavailable(tried, true);
      throw cachedError;
    }
  }
  cachedError = unavailable(tried, false);
  throw cachedError;
}
