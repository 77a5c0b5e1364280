/**
 * The prebuilt addons `npm run prebuild` cross-builds for the npm package (scripts/prebuild.sh):
 * each is the right kind of binary for its platform, exports the Node-API entry point and needs
 * nothing the user's machine may lack (no C++ runtime, no non-system library, no glibc newer than
 * 2.28). linux-x64 is also loaded and exercised here. Missing prebuilds are skipped with the
 * reason ("run npm run prebuild") — under CI=true, which runs npm run prebuild, they fail.
 * The source layout rules the build relies on are checked too (native/common has no OS header).
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PREBUILT_TARGETS, ROOT, missingTools, requireOrSkip, requirePrebuild, runOk } from './package-helpers';

/** What Linux's addon exports today (native/linux/platform.cc + native/common/addon.cc). */
const LINUX_EXPORTS = [
  'NativeFd',
  'unmap',
  'adoptFd',
  'Channel',
  'Listener',
  'listen',
  'connect',
  'socketpair',
  'socketpairFds',
  'channelFromFd',
  'createMemfd',
  'seals',
  'createShm',
  'mappingTruncated',
  'createIdPipe',
  'readIdPipe',
  'idPipeStale',
  'dmabuf',
  'drm',
  'fence',
  'platform',
  'abi',
];
const ELF_ENTRY_POINTS = ['napi_register_module_v1', 'node_api_module_get_api_version_v1'];

function requireTools(ctx: Mocha.Context, tools: Record<string, string>): void {
  const missing = missingTools(tools);
  requireOrSkip(ctx, missing.length === 0, `missing ${missing.join(', ')}`);
}

async function fileType(file: string): Promise<string> {
  return (await runOk('file', ['-b', file])).stdout.trim();
}

/** A version string like GLIBC_2.17 compared numerically with 2.28. */
function glibcAtMost(version: string, max: [number, number]): boolean {
  const [major, minor] = version.replace('GLIBC_', '').split('.').map(Number);
  return major < max[0] || (major === max[0] && (minor ?? 0) <= max[1]);
}

describe('package: the prebuilt addons (npm run prebuild)', function () {
  this.timeout(60_000);

  for (const { target, fileType: want } of PREBUILT_TARGETS) {
    if (target.startsWith('linux-')) {
      it(
        `${target}: ELF shared object for its arch, exports only the Node-API entry points, no dynamic C++ ` +
          `runtime, glibc ≤ 2.28`,
        async function () {
          const file = requirePrebuild(this, target);
          requireTools(this, { file: 'file', 'llvm-nm': 'llvm', 'llvm-readelf': 'llvm', 'llvm-objdump': 'llvm' });
          expect(await fileType(file)).to.match(want);
          const exported = (await runOk('llvm-nm', ['-D', '--defined-only', file])).stdout
            .split('\n')
            .filter(Boolean)
            .map((line) => line.trim().split(/\s+/).pop());
          expect(exported).to.include('napi_register_module_v1');
          expect(
            exported.filter((name) => !ELF_ENTRY_POINTS.includes(name!)),
            'exports beyond the Node-API entry points',
          ).to.deep.equal([]);
          const needed = [
            ...(await runOk('llvm-readelf', ['-d', file])).stdout.matchAll(
              /\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g,
            ),
          ].map((m) => m[1]);
          expect(needed).to.include('libc.so.6');
          expect(
            needed.filter((lib) => /libstdc\+\+|libc\+\+|libgcc_s/.test(lib)),
            'a dynamically linked C++ runtime',
          ).to.deep.equal([]);
          const versions = [
            ...new Set((await runOk('llvm-objdump', ['-T', file])).stdout.match(/GLIBC_[0-9.]+/g) ?? []),
          ];
          expect(
            versions.filter((v) => !glibcAtMost(v, [2, 28])),
            'glibc symbol versions newer than 2.28',
          ).to.deep.equal([]);
        },
      );
    } else if (target.startsWith('darwin-')) {
      it(
        `${target}: Mach-O dylib for its arch, exports _napi_register_module_v1, loads only system ` +
          `libraries, macOS 11.0+${target === 'darwin-arm64' ? ', code-signed' : ''}`,
        async function () {
          const file = requirePrebuild(this, target);
          requireTools(this, { file: 'file', 'llvm-objdump': 'llvm' });
          expect(await fileType(file)).to.match(want);
          const trie = (await runOk('llvm-objdump', ['--macho', '--exports-trie', file])).stdout;
          expect(trie).to.match(/\s_napi_register_module_v1\s*$/m);
          const headers = (await runOk('llvm-objdump', ['--macho', '--private-headers', file])).stdout;
          // Each load command: "cmd LC_…" followed (for dylib commands) by "name <path> (offset …)".
          const dylibs: string[] = [];
          const commands = headers.split(/\n(?=\s*Load command \d+)/);
          for (const command of commands) {
            const cmd = /^\s*cmd (LC_\w+)/m.exec(command)?.[1];
            if (cmd && /^LC_(LOAD|LOAD_WEAK|REEXPORT|LAZY_LOAD|LOAD_UPWARD)_DYLIB$/.test(cmd))
              dylibs.push(/^\s*name (\S+)/m.exec(command)![1]);
          }
          expect(dylibs).to.include('/usr/lib/libSystem.B.dylib');
          expect(
            dylibs.filter((d) => d !== '/usr/lib/libSystem.B.dylib' && !d.startsWith('/System/Library/Frameworks/')),
            'non-system libraries',
          ).to.deep.equal([]);
          expect(headers).to.match(/^\s*minos 11\.0$/m);
          expect(
            /^\s*name (\S+)/m.exec(commands.find((c) => /cmd LC_ID_DYLIB/.test(c)) ?? '')?.[1],
            'LC_ID_DYLIB (no build-machine path)',
          ).to.equal('@rpath/surfacelink.node');
          if (target === 'darwin-arm64')
            expect(headers, 'arm64 macOS refuses unsigned code').to.match(/cmd LC_CODE_SIGNATURE/);
          // The POSIX channel is in (native/macos/socket_os.cc), and libuv, like Node-API, is looked up in
          // node at load time (-undefined dynamic_lookup: flat namespace), never in a library of its own.
          const binds = (await runOk('llvm-objdump', ['--macho', '--bind', '--lazy-bind', file])).stdout;
          for (const symbol of ['_napi_get_uv_event_loop', '_uv_poll_start'])
            expect(binds, symbol).to.match(new RegExp(`flat-namespace\\s+${symbol}$`, 'm'));
          for (const symbol of ['_getpeereid', '_sendmsg', '_recvmsg'])
            expect(binds, symbol).to.match(new RegExp(`libSystem\\s+${symbol}$`, 'm'));
        },
      );
    } else {
      it(
        `${target}: PE32+ DLL, exports napi_register_module_v1, imports only NODE.EXE and Windows' own DLLs ` +
          `(no MinGW runtime DLLs)`,
        async function () {
          const file = requirePrebuild(this, target);
          requireTools(this, { file: 'file', 'x86_64-w64-mingw32-objdump': 'binutils-mingw-w64-x86-64' });
          expect(await fileType(file)).to.match(want);
          const pe = (await runOk('x86_64-w64-mingw32-objdump', ['-p', file])).stdout;
          expect(pe).to.match(/\]\s+napi_register_module_v1$/m);
          const dlls = [...pe.matchAll(/DLL Name: (\S+)/g)].map((m) => m[1].toUpperCase()).sort();
          // advapi32 (tokens, SIDs, the pipe's DACL), d3d11 (dxgi.v1), ntdll (NtQueryObject): all part of Windows.
          expect(dlls).to.deep.equal([
            'ADVAPI32.DLL',
            'D3D11.DLL',
            'KERNEL32.DLL',
            'MSVCRT.DLL',
            'NODE.EXE',
            'NTDLL.DLL',
          ]);
        },
      );
    }
  }

  it(
    'linux-x64 loads in this Node (a separate process), ' +
      'exports what Linux exports, and its C++ exceptions reach JS as coded errors',
    async function () {
      if (process.platform !== 'linux' || process.arch !== 'x64') this.skip();
      const file = requirePrebuild(this, 'linux-x64');
      const script = `
      const a = require(process.argv[1]);
      const errors = [];
      for (const f of [() => a.createMemfd('x', -1), () => a.adoptFd(1 << 30)]) {
        try { f(); errors.push(null); } catch (e) { errors.push(e.code); }
      }
      const fd = a.createMemfd('package-test', 4096);
      const [x, y] = a.socketpair();
      x.close(); y.close();
      console.log(JSON.stringify({ platform: a.platform, abi: a.abi, keys: Object.keys(a), errors, fd: typeof fd }));`;
      const r = await runOk(process.execPath, ['-e', script, file]);
      const out = JSON.parse(r.stdout);
      expect(out.platform).to.equal('linux');
      expect(out.abi).to.equal(1);
      expect([...out.keys].sort()).to.deep.equal([...LINUX_EXPORTS].sort());
      expect(out.errors).to.deep.equal(['E_BAD_GEOMETRY', 'E_HANDLE_TYPE']);
      expect(out.fd).to.equal('object');
    },
  );
});

describe('package: native/ layout', () => {
  // Headers native/common/ may include: standard C and C++ headers and Node-API's, nothing from an OS.
  const STANDARD = new Set([
    'algorithm',
    'array',
    'atomic',
    'cassert',
    'cerrno',
    'cinttypes',
    'climits',
    'cmath',
    'cstddef',
    'cstdint',
    'cstdio',
    'cstdlib',
    'cstring',
    'deque',
    'functional',
    'initializer_list',
    'limits',
    'map',
    'memory',
    'mutex',
    'optional',
    'set',
    'string',
    'string_view',
    'tuple',
    'type_traits',
    'unordered_map',
    'utility',
    'vector',
    'napi.h',
    'node_api.h',
    'js_native_api.h',
  ]);

  it('native/common/ includes no OS header (only standard C/C++ and Node-API headers, and its own files)', () => {
    const dir = path.join(ROOT, 'native', 'common');
    const offenders: string[] = [];
    for (const name of fs.readdirSync(dir)) {
      const text = fs.readFileSync(path.join(dir, name), 'utf8');
      for (const m of text.matchAll(/^\s*#\s*include\s*([<"])([^>"]+)[>"]/gm)) {
        const [, kind, header] = m;
        const own = kind === '"' && !header.includes('/') && fs.existsSync(path.join(dir, header));
        if (!own && !STANDARD.has(header)) offenders.push(`${name}: ${header}`);
      }
    }
    expect(offenders).to.deep.equal([]);
    expect(fs.existsSync(path.join(ROOT, 'native', 'posix', 'unique_fd.h'))).to.equal(true);
  });

  it('macOS registers the POSIX fd owner and channel and names its platform; Windows names its', () => {
    const windows = fs.readFileSync(path.join(ROOT, 'native', 'windows', 'platform.cc'), 'utf8');
    expect(windows).to.match(/const char\* RegisterPlatform\(/);
    expect(windows).to.include('return "win32";');
    expect(windows).to.include('RegisterModules(env, exports);');
    // Code only: the comments may name what is not registered.
    const source = fs.readFileSync(path.join(ROOT, 'native', 'macos', 'platform.cc'), 'utf8');
    const macos = source.replace(/\/\/.*$/gm, '');
    expect(macos).to.match(/const char\* RegisterPlatform\(/);
    expect(macos).to.include('return "darwin";');
    expect(macos).to.include('RegisterModules(env, exports);');
    // What Linux's platform.cc registers itself (NativeFd, unmap, adoptFd), and nothing Linux-only.
    for (const name of ['NativeFd', 'unmap', 'adoptFd']) expect(macos).to.include(`exports.Set("${name}"`);
    expect(macos).not.to.match(/createMemfd|dmabuf|drm|fence/i);
    // The channel is a module (native/posix/channel.cc, registered by RegisterModules) built for macOS.
    const cmake = fs.readFileSync(path.join(ROOT, 'CMakeLists.txt'), 'utf8');
    const apple = cmake.slice(cmake.indexOf('elseif(APPLE)'), cmake.indexOf('elseif(WIN32)'));
    for (const source of [
      'native/posix/native_fd.cc',
      'native/posix/channel.cc',
      'native/macos/socket_os.cc',
      'native/macos/fd_kind.cc',
      'native/macos/platform.cc',
    ])
      expect(apple).to.include(source);
    expect(apple).not.to.include('native/linux/');
    expect(apple).to.match(/set\(SL_NEEDS_UV ON\)/);
  });
});
