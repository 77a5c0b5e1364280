/**
 * The vendored ANGLE archive: scripts/vendor-angle.js (the prepack script) copies
 * bin/swiftshader.tar.br of @sparticuz/chromium 147.0.0 into vendor/angle/, hash-checked, and
 * src/gl/angle.ts takes the archive from <package root>/vendor/angle/ before looking for the
 * installed @sparticuz/chromium.
 *
 * The last tests build an installed layout in a temporary folder — node_modules/surfacelink with
 * package.json, dist/ and the vendored archive, and no @sparticuz/chromium anywhere on the
 * module path — and open an ANGLE context there through `require('surfacelink/gl')` with no
 * option or variable pointing at the archive: the code path of a real install.
 *
 * Every test uses temporary folders (output, cache, package root), never vendor/ or ~/.cache.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ANGLE_ARCHIVE_SHA256,
  ANGLE_FILES,
  ANGLE_VENDORED_ARCHIVE,
  extractAngle,
  findAngleArchive,
  findAnglePackage,
  surfacelinkPackageRoot,
} from '../../src/gl/angle.js';
import { ROOT, tempDir } from '../helpers.js';

/** The archive's hash in @sparticuz/chromium 147.0.0, written out here rather than read back from surfacelink. */
const PINNED_SHA256 = 'f957ea867313f9815b71dc2ed30cce301e01db4f3973fbdb31ffa5391b0ec45a';

const sha256 = (file: string): string => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

function runNode(
  args: string[],
  cwd = ROOT,
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

const vendor = (...args: string[]): ReturnType<typeof runNode> =>
  runNode([path.join(ROOT, 'scripts', 'vendor-angle.js'), ...args]);

function expectFiveGoodFiles(dir: string): void {
  expect(fs.readdirSync(dir).sort()).to.deep.equal(Object.keys(ANGLE_FILES).sort());
  for (const [name, { sha256: hash }] of Object.entries(ANGLE_FILES))
    expect(sha256(path.join(dir, name)), name).to.equal(hash);
}

function flipByte(file: string, at: number): void {
  const data = fs.readFileSync(file);
  data[at] ^= 0xff;
  fs.writeFileSync(file, data);
}

describe('vendored ANGLE archive (scripts/vendor-angle.js, vendor/angle/ in src/gl/angle.ts)', function () {
  this.timeout(60000);
  const cleanups: (() => void)[] = [];
  const temp = (prefix: string): string => {
    const t = tempDir(prefix);
    cleanups.push(t.cleanup);
    return t.dir;
  };
  after(() => cleanups.splice(0).forEach((c) => c()));

  it(
    'the package root is the checkout (two levels above src/gl/angle.ts); ' +
      'the vendored path is vendor/angle/swiftshader.tar.br',
    () => {
      expect(surfacelinkPackageRoot()).to.equal(ROOT);
      expect(ANGLE_VENDORED_ARCHIVE).to.equal('vendor/angle/swiftshader.tar.br');
      expect(ANGLE_ARCHIVE_SHA256).to.equal(PINNED_SHA256);
    },
  );

  it(
    'vendor-angle.js copies the pinned archive byte for byte, ' + 'with a README naming its origin, hash and licences',
    async () => {
      const out = path.join(temp('sl-vendor-out-'), 'vendor', 'angle');
      const r = await vendor('--out', out);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.include('3490801 bytes').and.to.include(PINNED_SHA256);
      expect(fs.readdirSync(out).sort()).to.deep.equal(['README.md', 'swiftshader.tar.br']);
      const archive = path.join(out, 'swiftshader.tar.br');
      expect(sha256(archive)).to.equal(PINNED_SHA256);
      expect(
        fs
          .readFileSync(archive)
          .equals(fs.readFileSync(path.join(findAnglePackage().dir, 'bin', 'swiftshader.tar.br'))),
      ).to.equal(true);
      const readme = fs.readFileSync(path.join(out, 'README.md'), 'utf8');
      expect(readme)
        .to.include('@sparticuz/chromium@147.0.0')
        .and.to.include(PINNED_SHA256)
        .and.to.include('docs/third-party/ANGLE-NOTICES.md');
      expect(readme).to.include('BSD-3-Clause').and.to.include('Apache-2.0 WITH LLVM-exception');
    },
  );

  it(
    'vendor-angle.js refuses an archive with other bytes, ' + 'or another version of the package, and writes nothing',
    async () => {
      const fake = temp('sl-vendor-fake-');
      const out = path.join(temp('sl-vendor-out-'), 'angle');
      fs.mkdirSync(path.join(fake, 'bin'));
      fs.writeFileSync(
        path.join(fake, 'package.json'),
        JSON.stringify({ name: '@sparticuz/chromium', version: '147.0.0' }),
      );
      // The real archive with one byte changed: same size, only the hash can tell.
      fs.copyFileSync(
        path.join(findAnglePackage().dir, 'bin', 'swiftshader.tar.br'),
        path.join(fake, 'bin', 'swiftshader.tar.br'),
      );
      flipByte(path.join(fake, 'bin', 'swiftshader.tar.br'), 100_000);
      const wrongBytes = await vendor('--from', fake, '--out', out);
      expect(wrongBytes.code).to.equal(1);
      expect(wrongBytes.stderr).to.match(
        /ERROR: .*swiftshader\.tar\.br has sha256 [0-9a-f]{64}, but src\/gl\/angle\.ts records f957ea86/,
      );
      expect(fs.existsSync(out), 'nothing written').to.equal(false);

      fs.writeFileSync(
        path.join(fake, 'package.json'),
        JSON.stringify({ name: '@sparticuz/chromium', version: '147.0.1' }),
      );
      const wrongVersion = await vendor('--from', fake, '--out', out);
      expect(wrongVersion.code).to.equal(1);
      expect(wrongVersion.stderr).to.include(
        'is @sparticuz/chromium@147.0.1, but @sparticuz/chromium@147.0.0 is pinned',
      );
      expect(fs.existsSync(out), 'nothing written').to.equal(false);
    },
  );

  it(
    'extraction takes the vendored archive first, ' + 'and falls back to the installed package when it is damaged',
    async () => {
      const root = temp('sl-vendor-root-');
      const r = await vendor('--out', path.join(root, 'vendor', 'angle'));
      expect(r.code, r.stderr).to.equal(0);
      const vendored = path.join(root, 'vendor', 'angle', 'swiftshader.tar.br');

      expect(findAngleArchive({ packageRoot: root })).to.deep.equal({ archive: vendored, origin: 'vendored' });
      const cache = temp('sl-vendor-cache-');
      const result = extractAngle({ cacheDir: cache, packageRoot: root });
      expect(result.archive).to.deep.equal({ archive: vendored, origin: 'vendored' });
      expect(result.extracted).to.have.length(5);
      expectFiveGoodFiles(cache);

      // A damaged vendored archive is skipped (hash), and a development clone's package is used.
      flipByte(vendored, 4096);
      const pkgArchive = path.join(findAnglePackage().dir, 'bin', 'swiftshader.tar.br');
      expect(findAngleArchive({ packageRoot: root })).to.deep.equal({ archive: pkgArchive, origin: 'package' });
      const cache2 = temp('sl-vendor-cache-');
      expect(extractAngle({ cacheDir: cache2, packageRoot: root }).archive).to.deep.equal({
        archive: pkgArchive,
        origin: 'package',
      });
      expectFiveGoodFiles(cache2);

      // No vendored archive at all: the same.
      const empty = temp('sl-vendor-root-');
      expect(findAngleArchive({ packageRoot: empty }).origin).to.equal('package');
    },
  );

  describe('an installed layout: node_modules/surfacelink with dist/ and vendor/angle/, no @sparticuz/chromium', () => {
    let app: string;
    let pkg: string;

    before(async function () {
      const distAngle = path.join(ROOT, 'dist', 'gl', 'angle.js');
      if (!fs.existsSync(distAngle) || !fs.readFileSync(distAngle, 'utf8').includes('ANGLE_VENDORED_ARCHIVE'))
        throw new Error(
          'dist/ is missing or older than src/gl/angle.ts: run `npm run build:ts` first (this test installs dist/)',
        );
      app = temp('sl-vendor-app-');
      pkg = path.join(app, 'node_modules', 'surfacelink');
      fs.mkdirSync(pkg, { recursive: true });
      fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
      fs.cpSync(path.join(ROOT, 'dist'), path.join(pkg, 'dist'), { recursive: true });
      // surfacelink's runtime dependencies, as npm would install them beside it.
      for (const dep of ['koffi', 'eventemitter3', 'ws'])
        fs.symlinkSync(path.join(ROOT, 'node_modules', dep), path.join(app, 'node_modules', dep));
      const r = await vendor('--out', path.join(pkg, 'vendor', 'angle'));
      expect(r.code, r.stderr).to.equal(0);
    });

    /** Runs `script` with `require('surfacelink/gl')` available, from the app folder; returns its JSON output. */
    async function inApp(script: string, cache: string): Promise<any> {
      const r = await runNode(['-e', script], app, { SURFACELINK_CACHE_DIR: cache, SURFACELINK_ANGLE_DIR: '' });
      expect(r.code, `${r.stderr}\n${r.stdout}`).to.equal(0);
      return JSON.parse(r.stdout);
    }

    const PROBE = `
      const gl = require('surfacelink/gl');
      const out = {};
      try { out.chromium = gl.findAnglePackage().dir; } catch (e) { out.chromium = 'not found: ' + e.message; }
      out.located = gl.locateGl();
      const ctx = gl.openGpuContext();
      out.renderer = ctx.renderer;
      out.egl = ctx.api.libraries.egl;
      out.source = ctx.api.libraries.source;
      ctx.close();
      process.stdout.write(JSON.stringify(out));`;

    it('opens ANGLE on SwiftShader from the vendored archive, with no option or variable pointing at it', async () => {
      const cache = temp('sl-vendor-cache-');
      const out = await inApp(PROBE, cache);
      expect(out.chromium, 'no @sparticuz/chromium reachable from the installed package').to.match(
        /^not found: @sparticuz\/chromium@147\.0\.0 is not installed/,
      );
      const vendored = path.join(fs.realpathSync(pkg), 'vendor', 'angle', 'swiftshader.tar.br');
      expect(out.located.display).to.equal('angle');
      expect(out.located.tried).to.have.length(1);
      expect(out.located.tried[0]).to.include(`(extracted 5 file(s) from ${vendored} in `);
      expect(out.renderer).to.include('SwiftShader');
      expect(out.egl).to.equal(path.join(cache, 'angle', '147.0.0', 'libEGL.so'));
      expect(out.source).to.equal('angle (@sparticuz/chromium 147.0.0)');
      expectFiveGoodFiles(path.join(cache, 'angle', '147.0.0'));
    });

    it(
      'with the vendored archive damaged or missing, ' + 'says so for both places and falls back to the system EGL',
      async () => {
        const vendored = path.join(pkg, 'vendor', 'angle', 'swiftshader.tar.br');
        const saved = fs.readFileSync(vendored);
        try {
          for (const damage of ['flip', 'remove'] as const) {
            if (damage === 'flip') flipByte(vendored, 4096);
            else fs.rmSync(vendored);
            const out = await inApp(
              `const gl = require('surfacelink/gl'); const l = gl.locateGl(); ` +
                `process.stdout.write(JSON.stringify({ display: l.display, tried: l.tried }));`,
              temp('sl-vendor-cache-'),
            );
            expect(out.display, damage).to.equal('system');
            const why: string = out.tried[0];
            const real = path.join(fs.realpathSync(pkg), 'vendor', 'angle', 'swiftshader.tar.br');
            expect(why).to.include('bundled ANGLE').and.to.include('no usable ANGLE archive');
            if (damage === 'flip')
              expect(why).to.match(
                new RegExp(`${real.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: sha256 [0-9a-f]{64}, expected f957ea86`),
              );
            else expect(why).to.include(`${real}: missing`);
            expect(why).to.match(/node_modules\/@sparticuz\/chromium: not installed there/);
            expect(out.tried[1]).to.equal('system EGL: libEGL.so.1 + libGLESv2.so.2 (chosen)');
          }
        } finally {
          fs.writeFileSync(vendored, saved);
        }
      },
    );
  });
});
