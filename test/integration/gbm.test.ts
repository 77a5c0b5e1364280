/**
 * GBM through koffi (src/mechanisms/dmabuf/gbm.ts) on a machine without a GPU: the probe says why
 * GBM is unavailable, allocation refuses cleanly, and the bindings resolve every function
 * they declare against the system's libgbm.so.1. (What GBM does with vgem in the test VM
 * is recorded in the report of this change: it is not a GPU, see gbm.ts.)
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { SurfaceLinkError } from '../../src/errors.js';
import { FORMATS } from '../../src/formats.js';
import { GBM_FUNCTION_NAMES, LIBGBM, gbmAllocate, gbmBindings, gbmProbe } from '../../src/mechanisms/dmabuf/gbm.js';
import { linuxNative as loadNative } from '../../src/native/index.js';
import { ROOT } from '../helpers.js';

const isLinux = process.platform === 'linux';
const renderNodes = (): string[] =>
  isLinux ? (loadNative().drm?.listNodes() ?? []).filter((n) => n.kind === 'render').map((n) => n.path) : [];

/** libgbm loads here (Debian: apt install libgbm1), or the reason it does not. */
function libgbmError(): string | null {
  try {
    gbmBindings();
    return null;
  } catch (e) {
    return (e as Error).message;
  }
}

describe('GBM (koffi → libgbm.so.1)', function () {
  this.timeout(30000);

  it('importing the module loads neither koffi nor libgbm', function () {
    if (!isLinux) this.skip();
    const script = [
      "require('./src/mechanisms/dmabuf/gbm.ts');",
      "const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');",
      "process.stdout.write(JSON.stringify({ gbm: maps.includes('libgbm'), koffi: maps.includes('koffi') }));",
    ].join('\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ gbm: false, koffi: false });
  });

  describe('on a machine without a render node', function () {
    before(function () {
      if (!isLinux || renderNodes().length > 0) this.skip(); // a GPU (or vgem) is present: see test/vm
    });

    it('the probe says unavailable, naming the missing render node', () => {
      const p = gbmProbe();
      expect(p.available).to.equal(false);
      expect(p.reason).to.match(/^no DRM render node in \/dev\/dri/);
      expect(p.renderNode).to.equal(undefined);
      // The reason also says whether libgbm itself could be loaded.
      const lib = libgbmError();
      expect(p.reason).to.include(lib === null ? `${LIBGBM} itself loads` : lib);
    });

    it('gbmAllocate refuses with E_NO_MECHANISM instead of crashing', () => {
      for (const modifiers of [[0n], [], [0n, 0x0100000000000001n]]) {
        let error: unknown;
        try {
          gbmAllocate(FORMATS.XRGB8888, 64, 48, modifiers).close();
        } catch (e) {
          error = e;
        }
        expect(error).to.be.instanceOf(SurfaceLinkError);
        expect((error as SurfaceLinkError).code).to.be.oneOf(['E_NO_MECHANISM', 'E_UNSUPPORTED']);
        expect((error as SurfaceLinkError).message).to.include('render node');
      }
    });
  });

  it('gbmAllocate rejects bad arguments before touching GBM', () => {
    const bad: [number, number, unknown][] = [
      [0, 16, [0n]],
      [16, 1.5, [0n]],
      [16, 99999, [0n]],
      [16, 16, [0]],
      [16, 16, [-1n]],
      [16, 16, 'LINEAR'],
    ];
    for (const [w, h, mods] of bad) {
      expect(() => gbmAllocate(FORMATS.XRGB8888, w, h, mods as bigint[]))
        .to.throw(SurfaceLinkError)
        .with.property('code', 'E_INVALID_ARGUMENT');
    }
  });

  describe('the koffi bindings', function () {
    before(function () {
      if (!isLinux) this.skip();
      const lib = libgbmError();
      // A fresh Debian without libgbm1: nothing to resolve against; the probe reports it.
      if (lib !== null && /cannot open shared object|No such file/.test(lib)) this.skip();
    });

    it('load libgbm.so.1 and resolve every declared function', () => {
      const g = gbmBindings();
      // Debian 12's Mesa 22.3 exports every function we declare, the optional ones included.
      expect(g.missing).to.deep.equal([]);
      for (const name of GBM_FUNCTION_NAMES) {
        const f = (g.fn as Record<string, unknown>)[name] as { info?: { name: string } };
        expect(f, name).to.be.a('function');
        expect(f.info?.name, name).to.equal(name);
      }
      expect(GBM_FUNCTION_NAMES).to.include.members([
        'gbm_create_device',
        'gbm_device_get_backend_name',
        'gbm_device_is_format_supported',
        'gbm_device_destroy',
        'gbm_bo_create',
        'gbm_bo_create_with_modifiers',
        'gbm_bo_create_with_modifiers2',
        'gbm_bo_destroy',
        'gbm_bo_get_fd',
        'gbm_bo_get_fd_for_plane',
        'gbm_bo_get_stride_for_plane',
        'gbm_bo_get_offset',
        'gbm_bo_get_modifier',
        'gbm_bo_get_plane_count',
      ]);
    });

    it('call into libgbm: gbm_create_device(-1) is NULL with EINVAL, and no fd leaks', () => {
      const g = gbmBindings();
      const before = fs.readdirSync('/proc/self/fd').length;
      expect(g.fn.gbm_create_device(-1)).to.equal(null);
      expect(g.errno()).to.equal(22); // EINVAL
      expect(fs.readdirSync('/proc/self/fd').length).to.equal(before);
    });
  });
});
