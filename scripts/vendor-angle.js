#!/usr/bin/env node
'use strict';
/**
 * Copies the one file of @sparticuz/chromium that surfacelink uses — bin/swiftshader.tar.br,
 * the ANGLE + SwiftShader build (3.5 MB) — into vendor/angle/swiftshader.tar.br, so the
 * published package carries it and does not depend on the 66 MB Chromium package. Runs as the
 * `prepack` script (before `npm pack` / `npm publish`); @sparticuz/chromium is a devDependency.
 *
 *   node scripts/vendor-angle.js [--out DIR] [--from PACKAGE_DIR]
 *
 * --out   where to write (default <repo>/vendor/angle);
 * --from  the @sparticuz/chromium folder (default: found on Node's module search path from the repo).
 *
 * The package name, version, archive path and SHA-256 are read from src/gl/angle.ts (else from
 * the built dist/gl/angle.js), the same constants the runtime checks, so the two cannot drift.
 * Any mismatch (other version, other bytes, short copy) fails with exit status 1 and nothing
 * left at the destination. Also writes vendor/angle/README.md: origin, hash, licences.
 */
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');

function fail(message) {
  console.error(`vendor-angle: ERROR: ${message}`);
  process.exit(1);
}

function parseArgs(argv) {
  const options = { out: path.join(ROOT, 'vendor', 'angle'), from: undefined };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v === '') fail(`${arg} needs a value`);
      return path.resolve(v);
    };
    if (arg === '--out') options.out = value();
    else if (arg === '--from') options.from = value();
    else fail(`unknown argument ${arg}; usage: node scripts/vendor-angle.js [--out DIR] [--from PACKAGE_DIR]`);
  }
  return options;
}

/** The constants of src/gl/angle.ts (or of the compiled dist/gl/angle.js). */
function readConstants() {
  const sources = [path.join(ROOT, 'src', 'gl', 'angle.ts'), path.join(ROOT, 'dist', 'gl', 'angle.js')];
  const source = sources.find((file) => fs.existsSync(file));
  if (!source) fail(`neither ${sources.join(' nor ')} exists: cannot read the pinned archive's SHA-256`);
  const text = fs.readFileSync(source, 'utf8');
  const constant = (name, pattern) => {
    const match = new RegExp(`(?:export const|exports\\.)\\s*${name}\\s*=\\s*'(${pattern})'`).exec(text);
    if (!match) fail(`${source} has no ${name} constant matching /${pattern}/`);
    return match[1];
  };
  return {
    source,
    packageName: constant('ANGLE_PACKAGE', '[@a-z0-9./_-]+'),
    version: constant('ANGLE_PACKAGE_VERSION', '[0-9A-Za-z.+-]+'),
    archive: constant('ANGLE_ARCHIVE', '[A-Za-z0-9./_-]+'),
    sha256: constant('ANGLE_ARCHIVE_SHA256', '[0-9a-f]{64}'),
    vendored: constant('ANGLE_VENDORED_ARCHIVE', '[A-Za-z0-9./_-]+'),
    build: constant('ANGLE_BUILD', "[^']+"),
  };
}

/** The installed package folder: the first <node_modules>/<name> on the module search path from the repo. */
function findPackage(name) {
  const tried = [];
  for (const base of require.resolve.paths(name) || []) {
    const dir = path.join(base, ...name.split('/'));
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    tried.push(dir);
  }
  fail(
    `${name} is not installed (it is a devDependency: run \`npm install\` first). Looked in:\n  ${tried.join('\n  ')}`,
  );
}

function sha256(data) {
  return crypto.createHash('sha256').update(data).digest('hex');
}

function main() {
  const options = parseArgs(process.argv.slice(2));
  const pinned = readConstants();
  const packageDir = options.from || findPackage(pinned.packageName);

  let manifest;
  try {
    manifest = JSON.parse(fs.readFileSync(path.join(packageDir, 'package.json'), 'utf8'));
  } catch (error) {
    fail(`${packageDir}/package.json cannot be read: ${error.message}`);
  }
  if (manifest.name !== pinned.packageName || manifest.version !== pinned.version)
    fail(
      `${packageDir} is ${manifest.name}@${manifest.version}, but ${pinned.packageName}@${pinned.version} is ` +
        `pinned (${path.relative(ROOT, pinned.source)})`,
    );

  const from = path.join(packageDir, ...pinned.archive.split('/'));
  let data;
  try {
    data = fs.readFileSync(from);
  } catch (error) {
    fail(`${from} cannot be read: ${error.message}`);
  }
  const actual = sha256(data);
  if (actual !== pinned.sha256)
    fail(
      `${from} has sha256 ${actual}, but ${path.relative(ROOT, pinned.source)} records ${pinned.sha256} ` +
        `(ANGLE_ARCHIVE_SHA256). Refusing to vendor a different archive.`,
    );

  const fileName = path.posix.basename(pinned.vendored);
  const target = path.join(options.out, fileName);
  fs.mkdirSync(options.out, { recursive: true });
  // Write beside the target, check what landed on disk, then rename over it (atomic).
  const temp = path.join(options.out, `.${fileName}.${process.pid}.tmp`);
  try {
    fs.writeFileSync(temp, data, { mode: 0o644 });
    const written = sha256(fs.readFileSync(temp));
    if (written !== pinned.sha256)
      throw new Error(`the copy at ${temp} has sha256 ${written}, expected ${pinned.sha256}`);
    fs.renameSync(temp, target);
  } catch (error) {
    fs.rmSync(temp, { force: true });
    fs.rmSync(target, { force: true });
    fail(error.message);
  }

  fs.writeFileSync(
    path.join(options.out, 'README.md'),
    [
      '# vendor/angle (generated by scripts/vendor-angle.js at pack time; not in git)',
      '',
      `\`${fileName}\` is an unmodified copy of \`${pinned.archive}\` from the npm package ` +
        `\`${pinned.packageName}@${pinned.version}\`.`,
      '',
      `- contents: brotli over a tar of the five files of ${pinned.build}, linux-x64:`,
      '  libEGL.so, libGLESv2.so, libvulkan.so.1, libvk_swiftshader.so, vk_swiftshader_icd.json',
      `- bytes: ${data.length}`,
      `- sha256: \`${pinned.sha256}\``,
      '  (checked when copied, and by surfacelink before every extraction: `ANGLE_ARCHIVE_SHA256` in dist/gl/angle.js;',
      '  each extracted file is checked against `ANGLE_FILES`)',
      '',
      'surfacelink extracts the five files into a per-user cache on first use and loads them by absolute path;',
      'see docs/rendering.md ("The bundled ANGLE").',
      '',
      'Licences: ANGLE is BSD-3-Clause; SwiftShader and the Khronos Vulkan loader are Apache-2.0; the LLVM libc++',
      'linked into them is Apache-2.0 WITH LLVM-exception. Their notices and licence texts are in',
      'docs/third-party/ANGLE-NOTICES.md, shipped in this package. The npm package the archive comes from is MIT for',
      'its own JavaScript and carries no notices for these binaries.',
      '',
    ].join('\n'),
  );

  const extra = fs.readdirSync(options.out).filter((name) => name !== fileName && name !== 'README.md');
  if (extra.length > 0)
    console.warn(`vendor-angle: warning: ${options.out} also holds ${extra.join(', ')}, which would be packed too`);
  // On stderr: `npm pack --json` prints its JSON on stdout, after this script's output.
  console.error(
    `vendor-angle: ${path.relative(process.cwd(), target) || target}: ${data.length} bytes, ` +
      `sha256 ${pinned.sha256} (${pinned.packageName}@${pinned.version} ${pinned.archive})`,
  );
}

main();
