/**
 * The bundled ANGLE (src/gl/angle.ts): extraction of the five ANGLE/SwiftShader files from the
 * archive of the pinned @sparticuz/chromium 147.0.0 (vendored into vendor/angle/ at pack time,
 * else the installed devDependency; see angle-vendor.test.ts for that lookup) into a versioned
 * cache, hash verification, repair of a
 * corrupted cache, two processes extracting at once, discovery (explicit folder → bundled →
 * system), and real contexts: ANGLE on SwiftShader and, with prefer 'system', Mesa llvmpipe.
 *
 * Every test runs against a temporary cache folder (SURFACELINK_CACHE_DIR), never ~/.cache.
 * Expected hashes are recomputed here from the files, not read back from surfacelink.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SurfaceLinkError } from '../../src/errors.js';
import {
  ANGLE_FILES,
  ANGLE_PACKAGE_VERSION,
  angleCacheDir,
  createTexture,
  deleteTexture,
  extractAngle,
  findAnglePackage,
  locateGl,
  openGpuContext,
  readTexture,
  type GpuContext,
} from '../../src/gl/index.js';
import { ROOT, tempDir } from '../helpers.js';

/** The five files and their SHA-256 in @sparticuz/chromium 147.0.0 (shared facts §2). */
const EXPECTED: Record<string, { size: number; sha256: string }> = {
  'libEGL.so': { size: 360208, sha256: 'b6dc0e4607294eacb39d83206156e0efeed77c11e6cb3e721d01f3fead5c8f72' },
  'libGLESv2.so': { size: 7743216, sha256: '29a18749631bd8919062e4464250248cf450d4d74e255d1e6e8b052eda06486e' },
  'libvk_swiftshader.so': { size: 6026040, sha256: '5b9e8591c7c2d1c9618c3ad485d0cdffb81f5f1ffd6a982fdb6578c2d8d3213e' },
  'libvulkan.so.1': { size: 787592, sha256: 'fe17a77c1f2df38d3b6a935140f746fd80aac564bb44eb3e4f6b75a504295a41' },
  'vk_swiftshader_icd.json': { size: 107, sha256: 'c9eef28b6b984fec220ef0abfecc40b502d46946706e47bfe97707027cb818bd' },
};

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function expectFiveGoodFiles(dir: string): void {
  expect(fs.readdirSync(dir).sort(), `contents of ${dir} (no temp files left)`).to.deep.equal(
    Object.keys(EXPECTED).sort(),
  );
  for (const [name, { size, sha256: hash }] of Object.entries(EXPECTED)) {
    const file = path.join(dir, name);
    expect(fs.statSync(file).size, `${name} size`).to.equal(size);
    expect(sha256(file), `${name} sha256`).to.equal(hash);
  }
}

function expectError(fn: () => unknown, code: string): SurfaceLinkError & { tried?: string[] } {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(SurfaceLinkError);
    expect((error as SurfaceLinkError).code, (error as Error).message).to.equal(code);
    return error as SurfaceLinkError & { tried?: string[] };
  }
  expect.fail(`expected ${code}`);
}

/** Runs a TypeScript snippet in a fresh Node process; resolves with its exit code and output. */
function runNode(
  script: string,
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '-e', script], {
      cwd: ROOT,
      env: { ...process.env, ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('ANGLE from @sparticuz/chromium 147.0.0 (src/gl/angle.ts)', function () {
  this.timeout(60000);
  const saved: Record<string, string | undefined> = {};
  let cache: { dir: string; cleanup: () => void };
  let angle: GpuContext | undefined;
  let mesa: GpuContext | undefined;

  before(() => {
    for (const name of ['SURFACELINK_CACHE_DIR', 'SURFACELINK_ANGLE_DIR', 'XDG_CACHE_HOME'])
      saved[name] = process.env[name];
    delete process.env.SURFACELINK_ANGLE_DIR;
    cache = tempDir('sl-angle-cache-');
    process.env.SURFACELINK_CACHE_DIR = cache.dir;
  });

  after(() => {
    mesa?.close();
    angle?.close();
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[name];
      else process.env[name] = value;
    }
    cache.cleanup();
  });

  it(
    'records the same hashes as the pinned package (and is pinned exactly, ' +
      'as a devDependency: only its archive ships)',
    () => {
      const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
        dependencies?: Record<string, string>;
        devDependencies?: Record<string, string>;
      };
      expect(manifest.devDependencies?.['@sparticuz/chromium']).to.equal('147.0.0');
      expect(manifest.dependencies?.['@sparticuz/chromium'], 'not a runtime dependency').to.equal(undefined);
      expect(ANGLE_PACKAGE_VERSION).to.equal('147.0.0');
      expect(findAnglePackage().version).to.equal('147.0.0');
      for (const [name, { size, sha256: hash }] of Object.entries(EXPECTED)) {
        expect(ANGLE_FILES[name as keyof typeof ANGLE_FILES], name).to.include({ size, sha256: hash });
      }
    },
  );

  it('puts the cache under SURFACELINK_CACHE_DIR, else XDG_CACHE_HOME, else ~/.cache', () => {
    expect(angleCacheDir({ SURFACELINK_CACHE_DIR: '/x/c', XDG_CACHE_HOME: '/y' })).to.equal('/x/c/angle/147.0.0');
    expect(angleCacheDir({ XDG_CACHE_HOME: '/y' })).to.equal('/y/surfacelink/angle/147.0.0');
    expect(angleCacheDir({})).to.equal(path.join(os.homedir(), '.cache', 'surfacelink', 'angle', '147.0.0'));
    expect(angleCacheDir()).to.equal(path.join(cache.dir, 'angle', '147.0.0'));
  });

  it('extracts the five files into the cache with the right hashes; the second call is a stat check', () => {
    const dir = angleCacheDir();
    expect(fs.existsSync(dir)).to.equal(false);
    const first = extractAngle();
    expect(first.dir).to.equal(dir);
    expect(first.extracted.sort()).to.deep.equal(Object.keys(EXPECTED).sort());
    expect(first.memoized).to.equal(false);
    expectFiveGoodFiles(dir);
    expect(fs.statSync(path.join(dir, 'libEGL.so')).mode & 0o777).to.equal(0o755);
    expect(fs.statSync(path.join(dir, 'vk_swiftshader_icd.json')).mode & 0o777).to.equal(0o644);

    const second = extractAngle();
    expect(second).to.include({ memoized: true });
    expect(second.extracted).to.deep.equal([]);

    const rehashed = extractAngle({ recheck: true });
    expect(rehashed).to.include({ memoized: false });
    expect(rehashed.extracted).to.deep.equal([]);
    console.log(
      `      first extraction ${first.ms.toFixed(0)} ms, warm (stat) ${second.ms.toFixed(2)} ms, full hash ` +
        `check ${rehashed.ms.toFixed(0)} ms`,
    );
  });

  it(
    'detects a corrupted cache by hash ' + '(and a changed file even in a process that verified it) and re-extracts',
    () => {
      const dir = extractAngle().dir;
      // Same size, one byte flipped: only the hash can tell.
      const gles = path.join(dir, 'libGLESv2.so');
      const fd = fs.openSync(gles, 'r+');
      const byte = Buffer.alloc(1);
      fs.readSync(fd, byte, 0, 1, 4096);
      byte[0] ^= 0xff;
      fs.writeSync(fd, byte, 0, 1, 4096);
      fs.closeSync(fd);
      fs.writeFileSync(path.join(dir, 'vk_swiftshader_icd.json'), '{}');
      fs.rmSync(path.join(dir, 'libvulkan.so.1'));

      const repaired = extractAngle({ recheck: true });
      expect(repaired.extracted.sort()).to.deep.equal(['libGLESv2.so', 'libvulkan.so.1', 'vk_swiftshader_icd.json']);
      expect(repaired.reasons['libGLESv2.so']).to.match(/^sha256 [0-9a-f]{64}, expected 29a18749/);
      expect(repaired.reasons['vk_swiftshader_icd.json']).to.equal('size 2, expected 107');
      expect(repaired.reasons['libvulkan.so.1']).to.equal('missing');
      expectFiveGoodFiles(dir);

      // Without recheck: the per-process memory notices the file changed (stat) and re-verifies.
      fs.truncateSync(path.join(dir, 'libEGL.so'), 100);
      const again = extractAngle();
      expect(again.memoized).to.equal(false);
      expect(again.extracted).to.deep.equal(['libEGL.so']);
      expectFiveGoodFiles(dir);
    },
  );

  it('refuses an archive that is not the pinned one, saying which file and why', () => {
    const fake = tempDir('sl-angle-pkg-');
    const cacheDir = tempDir('sl-angle-c2-');
    try {
      fs.mkdirSync(path.join(fake.dir, 'bin'));
      fs.writeFileSync(path.join(fake.dir, 'bin', 'swiftshader.tar.br'), 'not brotli');
      const error = expectError(
        () => extractAngle({ cacheDir: cacheDir.dir, packageDir: fake.dir }),
        'E_NATIVE_UNAVAILABLE',
      );
      expect(error.message).to.include(path.join(fake.dir, 'bin', 'swiftshader.tar.br'));
      expect(error.message).to.match(/sha256 [0-9a-f]{64}, expected f957ea86/);
      expect(fs.readdirSync(cacheDir.dir), 'nothing written').to.deep.equal([]);
    } finally {
      fake.cleanup();
      cacheDir.cleanup();
    }
  });

  it('two processes extracting into the same empty cache at once both succeed', async () => {
    const shared = tempDir('sl-angle-race-');
    try {
      const start = Date.now() + 2500; // both start extracting at the same moment, after tsx has loaded
      const script = [
        "const { extractAngle } = require('./src/gl/angle.ts');",
        `while (Date.now() < ${start}) {}`,
        'const r = extractAngle();',
        'process.stdout.write(JSON.stringify({ extracted: r.extracted.length, ms: r.ms }));',
      ].join('\n');
      const env = { SURFACELINK_CACHE_DIR: shared.dir };
      const [a, b] = await Promise.all([runNode(script, env), runNode(script, env)]);
      expect(a.code, a.stderr).to.equal(0);
      expect(b.code, b.stderr).to.equal(0);
      const ra = JSON.parse(a.stdout) as { extracted: number; ms: number };
      const rb = JSON.parse(b.stdout) as { extracted: number; ms: number };
      // Both found the cache empty and wrote all five (renaming over each other): a real race.
      expect([ra.extracted, rb.extracted]).to.deep.equal([5, 5]);
      expectFiveGoodFiles(path.join(shared.dir, 'angle', '147.0.0'));
      console.log(`      concurrent extractions: ${ra.ms.toFixed(0)} ms and ${rb.ms.toFixed(0)} ms`);
    } finally {
      shared.cleanup();
    }
  });

  it('openGpuContext() opens ANGLE on SwiftShader, surfaceless, with the capabilities of the facts table', () => {
    const started = performance.now();
    angle = openGpuContext();
    const ms = performance.now() - started;
    expect(angle.api.libraries.egl).to.equal(path.join(angleCacheDir(), 'libEGL.so'));
    expect(angle.api.libraries.source).to.equal('angle (@sparticuz/chromium 147.0.0)');
    expect(angle.renderer)
      .to.include('SwiftShader')
      .and.to.match(/^ANGLE \(/);
    expect(angle.version).to.match(/^OpenGL ES 3\.1 \(ANGLE 2\.1\.27278 git hash: 0d61b30acc76\)/);
    expect(angle.maxTextureSize).to.equal(8192);
    expect(angle.eglVersion).to.match(/^1\.5/);
    expect(angle.capabilities).to.deep.equal({
      dmabufImport: false,
      dmabufImportModifiers: false,
      dmabufExport: false,
      imageBase: true,
      textureImage: true,
      fenceSync: true,
      nativeFenceSync: false,
      eglImage: true,
      eglImageExternal: true,
      eglImageStorage: true,
      memoryObject: true,
      memoryObjectFd: true,
      semaphore: true,
      semaphoreFd: true,
    });
    expect(angle.extensions.gl).to.include('GL_ANGLE_memory_object_flags').and.to.include('GL_ANGLE_vulkan_image');
    expect(angle.extensions.display).to.include('EGL_ANGLE_vulkan_image');
    // It renders: a texture upload reads back exactly.
    const pixels = new Uint8Array(8 * 4 * 4).map((_, i) => (i * 37 + 11) & 0xff);
    const texture = createTexture(angle, 8, 4, pixels);
    expect([...readTexture(angle, texture, 8, 4)]).to.deep.equal([...pixels]);
    deleteTexture(angle, texture);
    console.log(`      ANGLE context in ${ms.toFixed(0)} ms: ${angle.renderer}`);
  });

  it("prefer 'system' gives the Mesa llvmpipe context (in the same process as ANGLE)", function () {
    if (fs.existsSync('/dev/dri')) this.test!.title += ' (a /dev/dri exists: renderer may not be llvmpipe)';
    const located = locateGl({ prefer: 'system' });
    expect(located.display).to.equal('system');
    expect(located.libraries).to.deep.equal({ egl: 'libEGL.so.1', gles: 'libGLESv2.so.2', source: 'system' });
    const started = performance.now();
    mesa = openGpuContext({ prefer: 'system' });
    const ms = performance.now() - started;
    expect(mesa.api.libraries.source).to.equal('system');
    if (!fs.existsSync('/dev/dri')) expect(mesa.renderer).to.include('llvmpipe');
    expect(mesa.version).to.match(/^OpenGL ES 3\.2 Mesa/);
    expect(mesa.capabilities).to.include({ dmabufImport: false, semaphoreFd: false, memoryObjectFd: true });
    // Both contexts stay usable side by side.
    angle!.makeCurrent();
    expect(angle!.api.gl.glGetString(0x1f01)).to.include('SwiftShader');
    mesa.makeCurrent();
    expect(mesa.api.gl.glGetString(0x1f01)).to.equal(mesa.renderer);
    console.log(`      Mesa context in ${ms.toFixed(0)} ms: ${mesa.renderer}`);
  });

  it("prefer 'system' does not extract ANGLE; the default prefers the bundled ANGLE", () => {
    const fresh = tempDir('sl-angle-c3-');
    try {
      const system = locateGl({ prefer: 'system', cacheDir: fresh.dir });
      expect(system.display).to.equal('system');
      expect(system.tried).to.deep.equal(['system EGL: libEGL.so.1 + libGLESv2.so.2 (chosen)']);
      expect(fs.readdirSync(fresh.dir)).to.deep.equal([]);
      const angle = locateGl({ cacheDir: fresh.dir });
      expect(angle.display).to.equal('angle');
      expect(angle.libraries.egl).to.equal(path.join(fresh.dir, 'libEGL.so'));
      expect(angle.tried).to.have.length(1);
      expect(angle.tried[0]).to.match(
        /^bundled ANGLE: .* \(extracted 5 file\(s\) from \/.*\/swiftshader\.tar\.br in \d+ ms\) \(chosen\)$/,
      );
    } finally {
      fresh.cleanup();
    }
  });

  it('falls back to the system EGL when the bundled ANGLE cannot be prepared, saying why', () => {
    const blocker = tempDir('sl-angle-c4-');
    try {
      const file = path.join(blocker.dir, 'a-file');
      fs.writeFileSync(file, '');
      const located = locateGl({ cacheDir: path.join(file, 'cache') });
      expect(located.display).to.equal('system');
      expect(located.tried).to.have.length(2);
      expect(located.tried[0])
        .to.include('bundled ANGLE')
        .and.to.include(path.join(file, 'cache'))
        .and.to.include('ENOTDIR');
      expect(located.tried[1]).to.equal('system EGL: libEGL.so.1 + libGLESv2.so.2 (chosen)');
    } finally {
      blocker.cleanup();
    }
  });

  it('SURFACELINK_ANGLE_DIR pointing at an empty folder fails, naming the folder and why, with solutions', () => {
    const empty = tempDir('sl-angle-empty-');
    process.env.SURFACELINK_ANGLE_DIR = empty.dir;
    try {
      for (const call of [() => openGpuContext(), () => locateGl()]) {
        const error = expectError(call, 'E_NATIVE_UNAVAILABLE');
        expect(error.message).to.include(`SURFACELINK_ANGLE_DIR ${empty.dir}: no libEGL.so and no libGLESv2.so in it`);
        expect(error.message).to.include('Possible solutions:').and.to.include('unset SURFACELINK_ANGLE_DIR');
        expect(error.tried).to.deep.equal([
          `SURFACELINK_ANGLE_DIR ${empty.dir}: no libEGL.so and no libGLESv2.so in it`,
        ]);
      }
      // A missing folder says so; the angleDir option overrides the variable.
      const missing = path.join(empty.dir, 'nope');
      expect(expectError(() => locateGl({ angleDir: missing }), 'E_NATIVE_UNAVAILABLE').message).to.include(
        `angleDir ${missing}: no such folder`,
      );
    } finally {
      delete process.env.SURFACELINK_ANGLE_DIR;
      empty.cleanup();
    }
  });

  it('when every candidate fails, the error lists each one with why it failed', () => {
    const broken = tempDir('sl-angle-broken-');
    process.env.SURFACELINK_ANGLE_DIR = broken.dir;
    try {
      fs.writeFileSync(path.join(broken.dir, 'libEGL.so'), '');
      fs.writeFileSync(path.join(broken.dir, 'libGLESv2.so'), '');
      const error = expectError(() => openGpuContext(), 'E_NATIVE_UNAVAILABLE');
      expect(error.tried).to.have.length(1);
      expect(error.tried![0]).to.include(`SURFACELINK_ANGLE_DIR ${broken.dir}: ANGLE Vulkan failed`);
      expect(error.message).to.include(`${path.join(broken.dir, 'libEGL.so')}: Failed to load shared library`);
      expect(error.message.match(/Possible solutions:/g)).to.have.length(1);
    } finally {
      delete process.env.SURFACELINK_ANGLE_DIR;
      broken.cleanup();
    }
  });

  it('SURFACELINK_ANGLE_DIR pointing at an ANGLE folder is used (the extracted cache, by absolute path)', () => {
    const dir = extractAngle().dir;
    process.env.SURFACELINK_ANGLE_DIR = dir;
    try {
      const located = locateGl();
      expect(located.display).to.equal('angle');
      expect(located.libraries.source).to.equal(`angle (SURFACELINK_ANGLE_DIR=${dir})`);
      expect(located.libraries.gles).to.equal(path.join(dir, 'libGLESv2.so'));
      expect(located.displaySpec.name).to.equal('ANGLE Vulkan/SwiftShader');
      const ctx = openGpuContext();
      try {
        expect(ctx.api.libraries.egl).to.equal(path.join(dir, 'libEGL.so'));
        expect(ctx.renderer).to.include('SwiftShader');
      } finally {
        ctx.close();
      }
    } finally {
      delete process.env.SURFACELINK_ANGLE_DIR;
    }
  });
});
