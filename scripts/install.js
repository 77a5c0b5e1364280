#!/usr/bin/env node
// surfacelink's install script ("install": "node scripts/install.js").
//
// npm 11 gates dependency install scripts with the project's "allowScripts" policy: a package
// denied there (or, under --strict-allow-scripts, not yet reviewed) never runs this, so the
// runtime loader (dist/native/load.js) finds the prebuilt addon in prebuilds/<platform>-<arch>/
// on its own. When it does run (a git clone; a package not yet reviewed, which npm 11.19 still
// runs with a warning; `npm install-scripts approve surfacelink`; `npm install -g
// --allow-scripts=surfacelink surfacelink`), it:
//   0. in a development checkout (src/ present; never in the package), always builds (step 3);
//   1. exits quietly when the prebuilt addon for this platform loads;
//   2. else exits when a local build (build/Release) already loads;
//   3. else builds from source with cmake-js, if cmake-js, node-addon-api, cmake and a C++
//      compiler are there, showing cmake's progress;
//   4. else says what is missing and how to fix it — and still exits 0: an install never fails
//      because of the addon. The loader and `surfacelink doctor` explain at run time.
//
// Env: SURFACELINK_WERROR=1 (development and CI: build with -Werror, and a failed build fails
// the install); npm's --build-from-source (npm_config_build_from_source) or
// SURFACELINK_BUILD_FROM_SOURCE=1 skip step 1 and 2 and always build.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
const TARGET = `${process.platform}-${process.arch}`;
const ADDON_ABI = 1; // native/common/addon.cc; src/native/load.ts
const strict = process.env.SURFACELINK_WERROR === '1';
const truthy = (v) => v !== undefined && v !== '' && v !== '0' && v !== 'false';
const fromSource =
  truthy(process.env.npm_config_build_from_source) || truthy(process.env.SURFACELINK_BUILD_FROM_SOURCE);

const say = (line) => process.stderr.write(`surfacelink: ${line}\n`);

/** Loads a .node file; returns null when it loads with the right ABI, else why not. */
function tryLoad(file) {
  if (!fs.existsSync(file)) return 'not found';
  try {
    delete require.cache[file]; // a stale build loaded earlier in this process must not answer for a new one
    const addon = require(file);
    return addon && addon.abi === ADDON_ABI ? null : `addon ABI ${addon && addon.abi}, expected ${ADDON_ABI}`;
  } catch (error) {
    return String((error && error.message) || error).split('\n')[0];
  }
}

/** The full path of an executable on PATH, or null. */
function which(name) {
  const exts = process.platform === 'win32' ? (process.env.PATHEXT || '.EXE;.CMD;.BAT').split(';') : [''];
  for (const dir of (process.env.PATH || '').split(path.delimiter)) {
    if (!dir) continue;
    for (const ext of exts) {
      const file = path.join(dir, name + ext);
      try {
        fs.accessSync(file, fs.constants.X_OK);
        if (fs.statSync(file).isFile()) return file;
      } catch {
        // not here
      }
    }
  }
  return null;
}

function resolvePackage(name) {
  try {
    return path.dirname(require.resolve(`${name}/package.json`, { paths: [ROOT] }));
  } catch {
    return null;
  }
}

/** What a source build needs that is missing here, each with how to get it. */
function missingForSourceBuild() {
  const missing = [];
  const cmakeJs = resolvePackage('cmake-js');
  if (!cmakeJs)
    missing.push('the cmake-js package: `npm install cmake-js` in your project (an optional peer dependency)');
  if (!resolvePackage('node-addon-api'))
    missing.push(
      'the node-addon-api package: `npm install node-addon-api` in your project (an optional peer dependency)',
    );
  if (!which('cmake'))
    missing.push(
      'cmake 3.15 or newer (Debian/Ubuntu: apt-get install cmake; macOS: brew install cmake; Windows: ' +
        'cmake.org or winget install Kitware.CMake)',
    );
  if (process.platform !== 'win32') {
    const cxx = process.env.CXX
      ? which(process.env.CXX.split(' ')[0]) || (fs.existsSync(process.env.CXX) && process.env.CXX)
      : null;
    if (!cxx && !which('c++') && !which('g++') && !which('clang++')) {
      missing.push(
        process.platform === 'darwin'
          ? 'a C++17 compiler: xcode-select --install'
          : 'a C++17 compiler (Debian/Ubuntu: apt-get install g++; Fedora: dnf install gcc-c++; Alpine: apk add g++)',
      );
    }
    if (!which('make') && !which('ninja')) missing.push('make or ninja (Debian/Ubuntu: apt-get install make)');
  }
  return { missing, cmakeJs };
}

function explainRuntime() {
  if (tryLoad(path.join(ROOT, 'prebuilds', TARGET, 'surfacelink.node')) === null) {
    say(`meanwhile the prebuilt addon prebuilds/${TARGET}/surfacelink.node is used.`);
  } else {
    say(
      'the addon is not available yet: surfacelink will say so when it is used (`npx surfacelink doctor` shows why).',
    );
  }
}

function main() {
  const prebuilt = path.join(ROOT, 'prebuilds', TARGET, 'surfacelink.node');
  const local = path.join(ROOT, 'build', 'Release', 'surfacelink.node');

  // A git checkout (src/ is never in the package) always builds: development and CI work on
  // build/Release (the VM suite and the benchmarks load it), and the build is incremental.
  const checkout = fs.existsSync(path.join(ROOT, 'src', 'native', 'load.ts'));
  if (checkout) {
    say('a development checkout: building the addon from source (incremental)');
  } else if (!fromSource) {
    const prebuiltWhy = tryLoad(prebuilt);
    if (prebuiltWhy === null) {
      say(`using the prebuilt addon prebuilds/${TARGET}/surfacelink.node`);
      return 0;
    }
    if (tryLoad(local) === null) {
      say(`using the existing build ${path.relative(ROOT, local)}`);
      return 0;
    }
    say(
      `no prebuilt addon loads for ${TARGET} (prebuilds/${TARGET}/surfacelink.node: ${prebuiltWhy}); building ` +
        `from source`,
    );
  } else {
    say('building the addon from source (--build-from-source)');
  }

  const { missing, cmakeJs } = missingForSourceBuild();
  if (missing.length > 0) {
    say('cannot build the native addon from source here; missing:');
    for (const m of missing) say(`  - ${m}`);
    say(
      `then run \`node scripts/install.js\` in ${ROOT}, or \`npm rebuild surfacelink\` (its install script ` +
        `approved: \`npm install-scripts approve surfacelink\`).`,
    );
    explainRuntime();
    return strict ? 1 : 0;
  }

  // configure, then build: cmake-js applies --CD options only when it configures, and the
  // option is always passed, so a build directory configured earlier with -Werror loses it.
  const cmakeJsBin = path.join(cmakeJs, 'bin', 'cmake-js');
  const steps = [
    ['configure', '--log-level', 'warn', `--CDSURFACELINK_WERROR=${strict ? 'ON' : 'OFF'}`],
    ['build', '--log-level', 'warn'],
  ];
  say(`building from source with cmake-js${strict ? ' (-Werror)' : ' (a release build; warnings are not errors)'}`);
  const started = Date.now();
  for (const step of steps) {
    say(`cmake-js ${step.join(' ')}`);
    const result = spawnSync(process.execPath, [cmakeJsBin, ...step], {
      cwd: ROOT,
      stdio: ['ignore', 'inherit', 'inherit'],
    });
    if (result.status !== 0) {
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      say(
        `cmake-js ${step[0]} failed ` +
          `(${result.error ? result.error.message : `exit ${result.status ?? result.signal}`}, ${seconds} s); ` +
          `see the output above.`,
      );
      explainRuntime();
      return strict ? 1 : 0;
    }
  }
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const why = tryLoad(local);
  if (why !== null) {
    say(`built ${path.relative(ROOT, local)} in ${seconds} s, but it does not load: ${why}`);
    explainRuntime();
    return strict ? 1 : 0;
  }
  say(`built ${path.relative(ROOT, local)} in ${seconds} s`);
  return 0;
}

try {
  process.exitCode = main();
} catch (error) {
  // Never fail a user's install because of this script itself.
  say(`install script error: ${(error && error.stack) || error}`);
  explainRuntime();
  process.exitCode = strict ? 1 : 0;
}
