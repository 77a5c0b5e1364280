/**
 * Test fixtures for the Windows GL suite (test/windows/gl.test.ts), fetched once into the build
 * cache with `npm pack`, checked against pinned integrities, and never downloaded at test time
 * beyond that (the same pattern as harness.ts's windowsNode()):
 *
 *   - ANGLE for Windows x64: `bin/win/{libEGL.dll, libGLESv2.dll, d3dcompiler_47.dll}` of the npm
 *     package `chromium@3.2171.3008` (a CEF wrapper from 2016: ANGLE 2.1, Direct3D 11). It is the
 *     only x64 Windows ANGLE on npm (shared facts, windows-wine.md §9); it carries no ANGLE licence
 *     file, so it is a test fixture only and is never shipped. Only the three DLLs are extracted
 *     (its install script is never run), each checked against its SHA-256.
 *   - koffi's Windows binary: `@koromix/koffi-win32-x64@3.3.4`, the optional dependency npm skips
 *     on Linux. koffi 3.3.4's loader (node_modules/koffi/src/koffi/index.cjs) looks for it at
 *     `<node_modules>/@koromix/koffi-win32-x64` beside its own package, and honours no variable.
 *     So a test-private tree `<cache>/koffi-win32-x64-3.3.4/node_modules/` holds a copy of the
 *     repository's koffi 3.3.4 JS next to the unpacked binary, and the programs resolve
 *     `require('koffi')` to it when SL_KOFFI names that tree's koffi (gl-common.cjs). The
 *     repository's node_modules is left alone. On Windows itself npm installs the binary
 *     normally and none of this is needed.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ROOT, buildCache, integrityOf, runOk } from '../package/package-helpers';

/** The npm package whose bin/win/ holds the ANGLE fixture, and its tarball's integrity. */
export const ANGLE_WIN = {
  spec: 'chromium@3.2171.3008',
  tarball: 'chromium-3.2171.3008.tgz',
  integrity: 'sha512-Yz3nlRUjgVNtiwqzc384w9wQOn/psf6c4IfInWk6hmGGO5v1a3mXnCq3hokanxG3/cZs7f4B+Ke4Y9YLP8WjWg==',
  /** The three files taken from `package/bin/win/`, with their SHA-256. */
  files: {
    'libEGL.dll': '78e3d04c5b25b8630fb8fd78c83afe71ca9725cc3de048c5ea0b19f17cfb41d5',
    'libGLESv2.dll': 'aa1f3dfc98073b110c215ef4d41cd3d0002090052406e3f3cf42db5a94324608',
    'd3dcompiler_47.dll': 'e994847e01a6f1e4cbdc5a864616ac262f67ee4f14db194984661a8d927ab7f4',
  } as Record<string, string>,
};

/** koffi's win32-x64 binary package (the version of the repository's koffi), and its tarball's integrity. */
export const KOFFI_WIN = {
  version: '3.3.4',
  spec: '@koromix/koffi-win32-x64@3.3.4',
  tarball: 'koromix-koffi-win32-x64-3.3.4.tgz',
  integrity: 'sha512-/SpehfYrO9DtkoB0ZOgGyco4GH4zwhEyFqgCm0x8lbzXnrKiwnHXWmPpfuXhFYohFvoSO5jlLQz/hc1fJ5G0AQ==',
  nodeSha256: 'a77b6bb6f60cdd360a41cc4e9f8a0e2a4c5b8e6dd83f43e756af285c59a7c4c2',
};

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

/** `npm pack`s `spec` into the build cache (once) and checks the tarball's integrity. */
async function packVerified(spec: string, tarball: string, integrity: string): Promise<string> {
  fs.mkdirSync(buildCache(), { recursive: true });
  const tgz = path.join(buildCache(), tarball);
  if (!fs.existsSync(tgz))
    await runOk('npm', ['pack', spec, '--silent', '--pack-destination', buildCache()], { timeoutMs: 300_000 });
  const actual = integrityOf(tgz);
  if (actual !== integrity) {
    fs.renameSync(tgz, `${tgz}.rejected`);
    throw new Error(`${tgz} has integrity ${actual}, expected ${integrity} (moved to .rejected)`);
  }
  return tgz;
}

/** True when every file of `files` is in `dir` with its SHA-256. */
function verified(dir: string, files: Record<string, string>): boolean {
  return Object.entries(files).every(([name, hash]) => {
    const file = path.join(dir, name);
    return fs.existsSync(file) && sha256(file) === hash;
  });
}

/**
 * A folder holding ANGLE 2.1's libEGL.dll, libGLESv2.dll and d3dcompiler_47.dll for Windows x64
 * (what SURFACELINK_ANGLE_DIR names in the tests), fetched and verified once.
 */
export async function angleWindowsFixture(): Promise<string> {
  const dir = path.join(buildCache(), 'angle-win-x64-chromium-3.2171.3008');
  if (verified(dir, ANGLE_WIN.files)) return dir;
  const tgz = await packVerified(ANGLE_WIN.spec, ANGLE_WIN.tarball, ANGLE_WIN.integrity);
  const unpack = fs.mkdtempSync(path.join(buildCache(), 'angle-win-unpack-'));
  try {
    const members = Object.keys(ANGLE_WIN.files).map((name) => `package/bin/win/${name}`);
    await runOk('tar', ['-xzf', tgz, '-C', unpack, '--no-same-owner', ...members]);
    const staged = path.join(unpack, 'package', 'bin', 'win');
    for (const [name, hash] of Object.entries(ANGLE_WIN.files)) {
      const actual = sha256(path.join(staged, name));
      if (actual !== hash) throw new Error(`${ANGLE_WIN.spec} ${name}: sha256 ${actual}, expected ${hash}`);
    }
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(staged, dir);
  } finally {
    fs.rmSync(unpack, { recursive: true, force: true });
  }
  return dir;
}

/**
 * The koffi entry point a Windows node.exe should load (a test-private node_modules tree with
 * koffi 3.3.4's JS and its win32-x64 binary), or null on Windows, where npm installed it.
 */
export async function koffiWindowsFixture(): Promise<string | null> {
  if (process.platform === 'win32') return null;
  const repoKoffi = path.join(ROOT, 'node_modules', 'koffi');
  const version = (JSON.parse(fs.readFileSync(path.join(repoKoffi, 'package.json'), 'utf8')) as { version: string })
    .version;
  if (version !== KOFFI_WIN.version)
    throw new Error(`node_modules/koffi is ${version}, but the pinned Windows binary is for ${KOFFI_WIN.version}`);
  const tree = path.join(buildCache(), `koffi-win32-x64-${KOFFI_WIN.version}`);
  const entry = path.join(tree, 'node_modules', 'koffi', 'index.cjs');
  const binary = path.join(tree, 'node_modules', '@koromix', 'koffi-win32-x64', 'win32_x64', 'koffi.node');
  if (fs.existsSync(entry) && fs.existsSync(binary) && sha256(binary) === KOFFI_WIN.nodeSha256) return entry;
  const tgz = await packVerified(KOFFI_WIN.spec, KOFFI_WIN.tarball, KOFFI_WIN.integrity);
  const unpack = fs.mkdtempSync(path.join(buildCache(), 'koffi-win-unpack-'));
  try {
    const modules = path.join(unpack, 'node_modules');
    fs.mkdirSync(path.join(modules, '@koromix'), { recursive: true });
    await runOk('tar', ['-xzf', tgz, '-C', path.join(modules, '@koromix'), '--no-same-owner']);
    fs.renameSync(path.join(modules, '@koromix', 'package'), path.join(modules, '@koromix', 'koffi-win32-x64'));
    const actual = sha256(path.join(modules, '@koromix', 'koffi-win32-x64', 'win32_x64', 'koffi.node'));
    if (actual !== KOFFI_WIN.nodeSha256)
      throw new Error(`${KOFFI_WIN.spec} koffi.node: sha256 ${actual}, expected ${KOFFI_WIN.nodeSha256}`);
    fs.cpSync(repoKoffi, path.join(modules, 'koffi'), { recursive: true, dereference: true });
    fs.rmSync(tree, { recursive: true, force: true });
    fs.renameSync(unpack, tree);
  } catch (error) {
    fs.rmSync(unpack, { recursive: true, force: true });
    throw error;
  }
  return entry;
}
