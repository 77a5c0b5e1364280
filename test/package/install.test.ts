/**
 * "A package that installs anywhere": `npm pack`, then `npm install <tarball> --offline` into an
 * empty project whose PATH has node, npm and sh only (no cmake, cc, c++, gcc, g++, make), and the
 * addon loads from the package's prebuilds/linux-x64/ — whether npm runs the install script
 * (npm's default for an unreviewed package; approved in "allowScripts") or not (denied there,
 * as `npm install-scripts deny surfacelink` writes). Then the other paths of scripts/install.js:
 * no prebuild and no compiler (the install still succeeds and the run time says why), and no
 * prebuild with compilers (a source build with cmake-js, timed for comparison).
 *
 * npm 11.19 refuses `--allow-scripts=<pkg>` in project installs (EALLOWSCRIPTS: "Add the entries
 * to the allowScripts field in package.json"), so the project's package.json carries the policy;
 * and it still runs an unreviewed package's install script, with a warning (the default case).
 * The npm cache is primed first (the only step that may use the network); every measured
 * install is --offline. Sizes and times are logged.
 *
 * Needs the prebuilds (npm run prebuild): skipped with that reason, failed under CI=true.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  PREBUILT_TARGETS,
  ROOT,
  duKiB,
  prebuildPath,
  requireOrSkip,
  run,
  runOk,
  tempDir,
  which,
  type RunResult,
} from './package-helpers';

const NO_BUILD_TOOLS = ['cmake', 'cc', 'c++', 'gcc', 'g++', 'make', 'ninja', 'clang', 'clang++'];
const rootPackage = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
/** The source-build helpers, at the versions this repository develops with. */
const BUILD_DEPS = ['cmake-js', 'node-addon-api'].map((name) => `${name}@${rootPackage.devDependencies[name]}`);

/** The environment of a user's shell: no npm_* variables from an outer `npm test`, no surfacelink overrides. */
function userEnv(pathValue: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_/i.test(key) || key === 'INIT_CWD' || key.startsWith('SURFACELINK_') || key === 'CXX' || key === 'CC')
      continue;
    env[key] = value;
  }
  env.PATH = pathValue;
  return env;
}

interface Installed {
  project: string;
  pkg: string;
  install: RunResult;
  scriptRan: boolean;
}

const mib = (kib: number): string => `${(kib / 1024).toFixed(1)} MiB`;

describe('package: npm pack → npm install --offline, no compiler on PATH', function () {
  this.timeout(900_000);

  let unavailable: string | null = null;
  let work: { dir: string; cleanup: () => void } | undefined;
  let tarball = '';
  let bareTarball = ''; // the same package without prebuilds/
  let packed: { size: number; unpackedSize: number; files: { path: string }[] } | undefined;
  let noToolsPath = '';

  before(async function () {
    if (process.platform !== 'linux' || process.arch !== 'x64') {
      unavailable = `this test installs on linux-x64; this is ${process.platform}-${process.arch}`;
      return;
    }
    const missing = PREBUILT_TARGETS.map((t) => t.target).filter((t) => !fs.existsSync(prebuildPath(t)));
    if (missing.length > 0) {
      unavailable = `prebuilds missing for ${missing.join(', ')}: run npm run prebuild`;
      return;
    }
    work = tempDir('sl-pack-');

    // npm pack (runs `prepare`: tsc) — JSON on stdout, lifecycle output on stderr.
    const pack = await runOk('npm', ['pack', '--json', '--pack-destination', work.dir], { timeoutMs: 300_000 });
    const info = JSON.parse(pack.stdout)[0];
    packed = info;
    tarball = path.join(work.dir, info.filename);

    // The same tarball without prebuilds/, for the source-build paths.
    const unpack = path.join(work.dir, 'unpacked');
    fs.mkdirSync(unpack);
    await runOk('tar', ['-xzf', tarball, '-C', unpack]);
    fs.rmSync(path.join(unpack, 'package', 'prebuilds'), { recursive: true, force: true });
    bareTarball = path.join(work.dir, 'surfacelink-noprebuilds.tgz');
    await runOk('tar', ['-czf', bareTarball, '-C', unpack, 'package']);

    // A bin folder with node, npm, npx and sh only (npm runs scripts with `sh -c`).
    const bin = path.join(work.dir, 'bin');
    fs.mkdirSync(bin);
    for (const tool of ['node', 'npm', 'npx', 'sh']) {
      const real = tool === 'node' ? process.execPath : which(tool);
      if (!real) throw new Error(`${tool} is not on PATH`);
      fs.symlinkSync(real, path.join(bin, tool));
    }
    noToolsPath = bin;

    // Prime the npm cache with everything these installs resolve (network allowed only here).
    const prime = path.join(work.dir, 'prime');
    fs.mkdirSync(prime);
    fs.writeFileSync(
      path.join(prime, 'package.json'),
      JSON.stringify({ name: 'sl-prime', version: '1.0.0', private: true }),
    );
    await runOk(
      'npm',
      ['install', tarball, ...BUILD_DEPS, '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
      {
        cwd: prime,
        env: userEnv(process.env.PATH ?? ''),
        timeoutMs: 300_000,
      },
    );
  });

  after(() => work?.cleanup());

  /**
   * An empty project and `npm install <tgz> ...deps --offline` in it. `scripts`: surfacelink's
   * entry in the project's "allowScripts" (undefined: none, npm's default for an unreviewed
   * package). npm matches a dependency's resolved identity, which for a tarball is
   * `file:<absolute path>` — what `npm install-scripts approve|deny surfacelink` writes for it.
   */
  async function install(
    name: string,
    tgz: string,
    options: { scripts?: boolean; deps?: string[]; pathValue: string },
  ): Promise<Installed> {
    const project = path.join(work!.dir, name);
    fs.mkdirSync(project);
    const manifest: Record<string, unknown> = { name: `sl-${name}`, version: '1.0.0', private: true };
    if (options.scripts !== undefined) manifest.allowScripts = { [`file:${tgz}`]: options.scripts };
    fs.writeFileSync(path.join(project, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    const r = await run(
      'npm',
      ['install', tgz, ...(options.deps ?? []), '--offline', '--foreground-scripts', '--no-audit', '--no-fund'],
      {
        cwd: project,
        env: userEnv(options.pathValue),
        timeoutMs: 600_000,
      },
    );
    expect(
      r.code,
      `npm install exited ${r.code ?? r.signal}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`,
    ).to.equal(0);
    const output = r.stdout + r.stderr;
    return {
      project,
      pkg: path.join(project, 'node_modules', 'surfacelink'),
      install: r,
      scriptRan: /> surfacelink@[^\s]+ install\n/.test(output),
    };
  }

  /** In the project: require('surfacelink') works, and the package's loader says where the addon came from. */
  async function loaderResult(
    inst: Installed,
    pathValue: string,
  ): Promise<{ path?: string; platform?: string; code?: string; message?: string }> {
    const script = `
      require('surfacelink');
      const { loadAddon } = require(require('path').join(process.argv[1], 'dist', 'native', 'load.js'));
      try { const r = loadAddon(); console.log(JSON.stringify({ path: r.path, platform: r.addon.platform })); }
      catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;
    const r = await runOk('node', ['-e', script, inst.pkg], { cwd: inst.project, env: userEnv(pathValue) });
    return JSON.parse(r.stdout);
  }

  /** `npx surfacelink doctor --json` in the project: its addon part (GL and H.264 may be unavailable here). */
  async function doctorAddon(
    inst: Installed,
    pathValue: string,
  ): Promise<{ loaded: boolean; path: string | null; platform: string | null; error: string | null }> {
    const r = await run('npx', ['--offline', 'surfacelink', 'doctor', '--json'], {
      cwd: inst.project,
      env: userEnv(pathValue),
      timeoutMs: 120_000,
    });
    let report: { addon: { loaded: boolean; path: string | null; platform: string | null; error: string | null } };
    try {
      report = JSON.parse(r.stdout);
    } catch {
      throw new Error(
        `doctor --json printed no JSON (exit ${r.code})\n${r.stdout.slice(-2000)}\n${r.stderr.slice(-2000)}`,
      );
    }
    return report.addon;
  }

  async function logSizes(label: string, inst: Installed): Promise<void> {
    const all = await duKiB(path.join(inst.project, 'node_modules'));
    const own = await duKiB(inst.pkg);
    console.log(
      `      ${label}: install ${(inst.install.ms / 1000).toFixed(1)} s; node_modules ${mib(all)} ` +
        `(surfacelink ${mib(own)}); install script ${inst.scriptRan ? 'ran' : 'did not run'}`,
    );
  }

  it(
    'the tarball holds the five prebuilt addons, the sources for a source build, the vendored ANGLE ' +
      'and notices, and no local build',
    function () {
      requireOrSkip(this, unavailable === null, unavailable!);
      const files = packed!.files.map((f) => f.path);
      for (const { target } of PREBUILT_TARGETS) expect(files).to.include(`prebuilds/${target}/surfacelink.node`);
      for (const f of [
        'scripts/install.js',
        'CMakeLists.txt',
        'cmake/exports.map',
        'native/common/addon.cc',
        'native/linux/platform.cc',
        'native/macos/platform.cc',
        'native/windows/platform.cc',
        'dist/native/load.js',
        'vendor/angle/swiftshader.tar.br',
        'LICENSE',
        'CHANGELOG.md',
        'docs/third-party/ANGLE-NOTICES.md',
        'docs/third-party/MINGW-W64-NOTICES.md',
      ])
        expect(files).to.include(f);
      expect(
        files.filter((f) => f.startsWith('build/') || (f.endsWith('.node') && !f.startsWith('prebuilds/'))),
      ).to.deep.equal([]);
      const tgzBytes = fs.statSync(tarball).size;
      console.log(
        `      tarball ${(tgzBytes / 1024).toFixed(0)} KiB (${packed!.files.length} ` +
          `files, ${(packed!.unpackedSize / 1024).toFixed(0)} KiB unpacked); ` +
          'prebuilds ' +
          PREBUILT_TARGETS.map(
            (t) => `${t.target} ${(fs.statSync(prebuildPath(t.target)).size / 1024).toFixed(0)} KiB`,
          ).join(', '),
      );
      expect(packed!.size).to.equal(tgzBytes);
    },
  );

  it('PATH for the installs has node and npm but no cmake, cc, c++, gcc, g++, make, ninja or clang', function () {
    requireOrSkip(this, unavailable === null, unavailable!);
    expect(NO_BUILD_TOOLS.filter((tool) => which(tool, noToolsPath))).to.deep.equal([]);
    expect(which('node', noToolsPath)).to.be.a('string');
    expect(which('npm', noToolsPath)).to.be.a('string');
  });

  for (const variant of [
    { name: 'default', title: "npm's default script policy (no allowScripts entry)", scripts: undefined },
    {
      name: 'denied',
      title: 'install script denied (allowScripts false, as `npm install-scripts deny` writes)',
      scripts: false,
    },
    {
      name: 'allowed',
      title: 'install script allowed (allowScripts true, as `npm install-scripts approve` writes)',
      scripts: true,
    },
  ]) {
    it(
      `${variant.title}: installs offline with no compiler; require('surfacelink') works; the loader and ` +
        `doctor use prebuilds/linux-x64`,
      async function () {
        requireOrSkip(this, unavailable === null, unavailable!);
        const inst = await install(variant.name, tarball, { scripts: variant.scripts, pathValue: noToolsPath });
        await logSizes(variant.title, inst);
        const expected = path.join(inst.pkg, 'prebuilds', 'linux-x64', 'surfacelink.node');
        const output = inst.install.stdout + inst.install.stderr;
        if (variant.name === 'denied') {
          expect(inst.scriptRan, 'the denied install script ran').to.equal(false);
        }
        if (variant.name === 'allowed') {
          expect(inst.scriptRan, 'the allowed install script did not run').to.equal(true);
        }
        if (inst.scriptRan)
          expect(output).to.include('surfacelink: using the prebuilt addon prebuilds/linux-x64/surfacelink.node');
        expect(fs.existsSync(path.join(inst.pkg, 'build')), 'a build/ folder in the installed package').to.equal(false);
        expect(await loaderResult(inst, noToolsPath)).to.deep.equal({ path: expected, platform: 'linux' });
        const addon = await doctorAddon(inst, noToolsPath);
        expect(addon.error).to.equal(null);
        expect(addon.loaded).to.equal(true);
        expect(addon.path).to.equal(expected);
        expect(addon.platform).to.equal('linux');
      },
    );
  }

  it(
    'no prebuild and no compiler, scripts allowed: the install still succeeds, ' +
      'says what is missing, and the run time explains (E_NATIVE_UNAVAILABLE)',
    async function () {
      requireOrSkip(this, unavailable === null, unavailable!);
      const inst = await install('no-prebuild-no-compiler', bareTarball, {
        scripts: true,
        deps: BUILD_DEPS,
        pathValue: noToolsPath,
      });
      await logSizes('no prebuild, no compiler', inst);
      const output = inst.install.stdout + inst.install.stderr;
      expect(inst.scriptRan).to.equal(true);
      expect(output).to.include('cannot build the native addon from source here; missing:');
      expect(output).to.match(/- cmake 3\.15 or newer/);
      expect(output).to.match(/- a C\+\+17 compiler/);
      const loaded = await loaderResult(inst, noToolsPath);
      expect(loaded.code).to.equal('E_NATIVE_UNAVAILABLE');
      expect(loaded.message).to.include(
        `${path.join(inst.pkg, 'prebuilds', 'linux-x64', 'surfacelink.node')}: not found`,
      );
      expect(loaded.message).to.include('Possible solutions:');
      const addon = await doctorAddon(inst, noToolsPath);
      expect(addon.loaded).to.equal(false);
      expect(addon.error).to.match(/^E_NATIVE_UNAVAILABLE: /);
    },
  );

  it(
    'no prebuild, compilers present, scripts allowed: ' +
      'builds from source with cmake-js (no -Werror) — timed for comparison',
    async function () {
      requireOrSkip(this, unavailable === null, unavailable!);
      const tools = ['cmake', 'c++'].filter((t) => !which(t));
      requireOrSkip(this, tools.length === 0, `missing ${tools.join(', ')} for a source build`);
      const inst = await install('from-source', bareTarball, {
        scripts: true,
        deps: BUILD_DEPS,
        pathValue: process.env.PATH ?? '',
      });
      await logSizes('no prebuild, built from source', inst);
      const output = inst.install.stdout + inst.install.stderr;
      expect(output).to.match(/surfacelink: built build\/Release\/surfacelink\.node in [0-9.]+ s/);
      expect(fs.readFileSync(path.join(inst.pkg, 'build', 'CMakeCache.txt'), 'utf8')).to.include(
        'SURFACELINK_WERROR:BOOL=OFF',
      );
      const expected = path.join(inst.pkg, 'build', 'Release', 'surfacelink.node');
      expect(await loaderResult(inst, process.env.PATH ?? '')).to.deep.equal({ path: expected, platform: 'linux' });
      expect((await doctorAddon(inst, process.env.PATH ?? '')).path).to.equal(expected);
    },
  );
});
