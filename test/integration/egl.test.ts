/**
 * EGL + OpenGL ES through koffi (src/gl): a surfaceless context on the system's EGL (Mesa
 * llvmpipe on a machine without a GPU), capabilities decided from extension strings only,
 * the EGLImage → texture path (an EGLImage made from a GL texture, which works without a GPU),
 * and dma-buf import — refused with E_UNSUPPORTED where EGL_EXT_image_dma_buf_import is not
 * advertised, and a real import + readback where it is (skipped, with the reason, elsewhere).
 *
 * If the EGL libraries are missing the suite fails with the loader's error: CI installs them.
 */
import { expect } from 'chai';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { dmabufMechanism } from '../../src/mechanisms/dmabuf/index.js';
import { handleFd } from '../../src/handles.js';
import { SurfaceLinkError } from '../../src/errors.js';
import { FORMATS, MODIFIER_INVALID, MODIFIER_LINEAR, fourcc } from '../../src/formats.js';
import type { NativeFd } from '../../src/native/index.js';
import {
  CAPABILITY_EXTENSIONS,
  EGL,
  GpuContext,
  createTexture,
  deleteTexture,
  dmabufImageAttributes,
  eglImageFromTexture,
  importDmabufTexture,
  loadGlLibraries,
  queryDmabufFormats,
  readTexture,
  textureFromEglImage,
  type GpuCapabilityName,
} from '../../src/gl/index.js';
import { ROOT } from '../helpers.js';

const hasRenderNode = (): boolean => {
  try {
    return fs.readdirSync('/dev/dri').some((n) => n.startsWith('renderD'));
  } catch {
    return false;
  }
};

/** A stand-in for a NativeFd where only the attribute list is built (nothing is imported). */
const fakeFd = (n: number): NativeFd => ({ closed: false, debugNumber: n }) as unknown as NativeFd;

function expectError(fn: () => unknown, code: string): SurfaceLinkError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(SurfaceLinkError);
    expect((error as SurfaceLinkError).code, (error as Error).message).to.equal(code);
    return error as SurfaceLinkError;
  }
  expect.fail(`expected ${code}`);
}

/** Pixels that differ in every byte position, so swapped channels or rows show. */
function pattern(width: number, height: number): Uint8Array {
  const out = new Uint8Array(width * height * 4);
  for (let i = 0; i < out.length; i++) out[i] = (i * 37 + 11) & 0xff;
  return out;
}

describe('EGL / OpenGL ES (koffi → libEGL, libGLESv2)', function () {
  this.timeout(30000);
  let ctx: GpuContext;

  before(() => {
    // No skip here: missing libraries fail the suite with the loader's message.
    ctx = GpuContext.open();
  });

  after(() => ctx?.close());

  it('importing src/gl loads neither koffi nor libEGL', () => {
    const script = [
      "require('./src/gl/index.ts');",
      "const maps = require('node:fs').readFileSync('/proc/self/maps', 'utf8');",
      "process.stdout.write(JSON.stringify({ egl: maps.includes('libEGL'), koffi: maps.includes('koffi') }));",
    ].join('\n');
    const r = spawnSync(process.execPath, ['--import', 'tsx', '-e', script], { cwd: ROOT, encoding: 'utf8' });
    expect(r.status, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ egl: false, koffi: false });
  });

  it('opens a surfaceless context and reads vendor, renderer and version', () => {
    expect(ctx.closed).to.equal(false);
    expect(ctx.eglVersion).to.match(/^1\.[4-9]\b/);
    expect(ctx.version).to.match(/^OpenGL ES 3\.\d/);
    expect(ctx.vendor).to.be.a('string').and.not.equal('');
    expect(ctx.shadingLanguageVersion).to.match(/^OpenGL ES GLSL ES 3\.\d/);
    expect(ctx.maxTextureSize).to.be.at.least(2048);
    // Without a render node Mesa's surfaceless platform can only be software.
    if (!hasRenderNode()) expect(ctx.renderer).to.include('llvmpipe');
    else expect(ctx.renderer).to.be.a('string').and.not.equal('');
    expect(ctx.extensions.client).to.include('EGL_EXT_platform_base').and.to.include('EGL_MESA_platform_surfaceless');
  });

  it('decides every capability from the extension strings, and nothing else', () => {
    expect(ctx.capabilities.dmabufImport).to.equal(
      ctx.extensions.client.includes('EGL_EXT_image_dma_buf_import') ||
        ctx.extensions.display.includes('EGL_EXT_image_dma_buf_import'),
    );
    expect(ctx.capabilities.dmabufImport).to.equal(ctx.extensions.display.includes('EGL_EXT_image_dma_buf_import'));
    expect(ctx.capabilities.dmabufImportModifiers).to.equal(
      ctx.extensions.display.includes('EGL_EXT_image_dma_buf_import_modifiers'),
    );
    expect(ctx.capabilities.eglImage).to.equal(ctx.extensions.gl.includes('GL_OES_EGL_image'));
    expect(ctx.capabilities.memoryObjectFd).to.equal(ctx.extensions.gl.includes('GL_EXT_memory_object_fd'));
    for (const [name, { list, extension }] of Object.entries(CAPABILITY_EXTENSIONS)) {
      expect(ctx.capabilities[name as GpuCapabilityName], `${name} ↔ ${extension} in ${list} extensions`).to.equal(
        ctx.extensions[list].includes(extension),
      );
    }
    expect(Object.keys(ctx.capabilities).sort()).to.deep.equal(Object.keys(CAPABILITY_EXTENSIONS).sort());
    expect(Object.isFrozen(ctx.capabilities)).to.equal(true);
  });

  it(
    'refuses a dma-buf import with E_UNSUPPORTED naming the missing extension, ' + 'looking up no entry point',
    function () {
      if (ctx.capabilities.dmabufImport) {
        this.test!.title += ` (not applicable: ${ctx.renderer} advertises EGL_EXT_image_dma_buf_import)`;
        this.skip();
      }
      const egl = ctx.api.egl;
      const original = egl.eglGetProcAddress;
      const lookups: string[] = [];
      egl.eglGetProcAddress = (name: string) => {
        lookups.push(name);
        return original(name);
      };
      try {
        const error = expectError(
          () =>
            importDmabufTexture(ctx, {
              width: 16,
              height: 16,
              fourcc: fourcc('AB24'),
              modifier: MODIFIER_LINEAR,
              planes: [{ fd: fakeFd(123456), offset: 0, stride: 64 }],
            }),
          'E_UNSUPPORTED',
        );
        expect(error.message).to.match(/^EGL_EXT_image_dma_buf_import is not advertised by /);
        expect(error.message).to.include(ctx.renderer);
        expect(queryDmabufFormats(ctx)).to.equal(null);
        // The guard every extension entry point goes through refuses before eglGetProcAddress,
        // even for names a glvnd eglGetProcAddress would resolve (calling those crashes: SIGSEGV).
        const guarded = expectError(
          () => ctx.api.extensionProc('eglQueryDmaBufFormatsEXT', ctx.advertised.display, ctx.renderer),
          'E_UNSUPPORTED',
        );
        expect(guarded.message).to.include('EGL_EXT_image_dma_buf_import_modifiers is not advertised');
        expect(lookups).to.deep.equal([]);
      } finally {
        egl.eglGetProcAddress = original;
      }
    },
  );

  it(
    'builds the EGL_LINUX_DMA_BUF_EXT attribute list ' +
      '(modifier attributes only with _modifiers and a real modifier)',
    () => {
      const desc = {
        width: 64,
        height: 32,
        fourcc: fourcc('NV12'),
        modifier: 0x0100000000000002n,
        planes: [
          { fd: fakeFd(40), offset: 0, stride: 64 },
          { fd: fakeFd(41), offset: 2048, stride: 64 },
        ],
      };
      const base = [EGL.WIDTH, 64, EGL.HEIGHT, 32, EGL.LINUX_DRM_FOURCC_EXT, fourcc('NV12')];
      expect([...dmabufImageAttributes(desc, false)]).to.deep.equal([
        ...base,
        0x3272,
        40,
        0x3273,
        0,
        0x3274,
        64,
        0x3275,
        41,
        0x3276,
        2048,
        0x3277,
        64,
        EGL.NONE,
      ]);
      expect([...dmabufImageAttributes(desc, true)]).to.deep.equal([
        ...base,
        0x3272,
        40,
        0x3273,
        0,
        0x3274,
        64,
        0x3443,
        2,
        0x3444,
        0x01000000,
        0x3275,
        41,
        0x3276,
        2048,
        0x3277,
        64,
        0x3445,
        2,
        0x3446,
        0x01000000,
        EGL.NONE,
      ]);
      expect([...dmabufImageAttributes({ ...desc, modifier: MODIFIER_INVALID }, true)]).to.not.include(0x3443);
      // A fourcc and modifier with the top bit set travel as the same 32 bits in a signed EGLint.
      const high = dmabufImageAttributes(
        { ...desc, fourcc: 0x80000001, modifier: 0xffffffff00000000n - 0x0100000000000000n },
        true,
      );
      expect(high[5] >>> 0).to.equal(0x80000001);
      expect([high[12], high[13] >>> 0, high[14], high[15] >>> 0]).to.deep.equal([0x3443, 0, 0x3444, 0xfeffffff]);
    },
  );

  it('binds an EGLImage to a GL texture and reads the pixels back (EGLImage from a texture)', function () {
    for (const needed of ['imageBase', 'textureImage', 'eglImage'] as const) {
      if (!ctx.capabilities[needed]) {
        this.test!.title += ` (needs ${CAPABILITY_EXTENSIONS[needed].extension}: not advertised by ${ctx.renderer})`;
        this.skip();
      }
    }
    const [width, height] = [7, 3];
    const pixels = pattern(width, height);
    const source = createTexture(ctx, width, height, pixels);
    try {
      expect(Buffer.from(readTexture(ctx, source, width, height)).equals(Buffer.from(pixels))).to.equal(true);
      const bound = textureFromEglImage(ctx, eglImageFromTexture(ctx, source));
      expect(bound.texture).to.not.equal(source);
      expect(bound.target).to.equal(0x0de1);
      expect(Buffer.from(readTexture(ctx, bound.texture, width, height)).equals(Buffer.from(pixels))).to.equal(true);
      bound.destroy();
      bound.destroy();
      expect(bound.destroyed).to.equal(true);
      expect(ctx.drainGlErrors()).to.deep.equal([]);
    } finally {
      deleteTexture(ctx, source);
    }
  });

  it('imports a dma-buf into a GL texture and reads the pixels back', function () {
    if (!ctx.capabilities.dmabufImport) {
      // This machine cannot: its EGL offers no dma-buf import (no GPU driver). Allowed under CI=true.
      this.test!.title =
        `imports a dma-buf into a GL texture — needs an EGL advertising ` +
        `EGL_EXT_image_dma_buf_import (a real GPU): not advertised by ${ctx.renderer}`;
      this.skip();
    }
    const probe = dmabufMechanism.probe();
    if (!probe.available) {
      this.test!.title += ` — no dma-buf allocator here: ${probe.reason}`;
      this.skip();
    }
    const [width, height] = [37, 19];
    const buffer = dmabufMechanism.allocate!({ format: FORMATS.ABGR8888, width, height, label: 'egl-import-test' });
    const primary = buffer.exportSame('dmabuf.v1', {
      formats: null,
    }) as import('../../src/mechanisms/types.js').BufferExport;
    try {
      const plane = primary.planes[0];
      const expected = pattern(width, height);
      buffer.beginCpuAccess('write');
      for (let y = 0; y < height; y++) {
        buffer.views[0].set(expected.subarray(y * width * 4, (y + 1) * width * 4), y * plane.layout.stride);
      }
      buffer.endCpuAccess('write');
      const fd = handleFd(primary.handles[plane.handleIndex]);
      const texture = importDmabufTexture(ctx, {
        width,
        height,
        fourcc: FORMATS.ABGR8888.fourcc,
        modifier: primary.modifier,
        planes: [{ fd, offset: plane.layout.offset, stride: plane.layout.stride }],
      });
      try {
        // ABGR8888 is R, G, B, A in memory: GL_RGBA / GL_UNSIGNED_BYTE reads the same bytes, row 0 first.
        expect(Buffer.from(readTexture(ctx, texture.texture, width, height)).equals(Buffer.from(expected))).to.equal(
          true,
        );
      } finally {
        texture.destroy();
      }
      const formats = queryDmabufFormats(ctx);
      if (ctx.capabilities.dmabufImportModifiers)
        expect(formats!.map((f) => f.fourcc)).to.include(FORMATS.ABGR8888.fourcc);
      else expect(formats).to.equal(null);
    } finally {
      buffer.close();
    }
  });

  it('close() is idempotent; a closed context refuses with E_CLOSED and others on the display keep working', () => {
    const second = GpuContext.open();
    expect(second.display).to.equal(ctx.display); // one EGLDisplay per platform per process
    second.close();
    second.close();
    second[Symbol.dispose]();
    expect(second.closed).to.equal(true);
    expectError(() => second.makeCurrent(), 'E_CLOSED');
    expectError(() => importDmabufTexture(second, { width: 1, height: 1, fourcc: 0, planes: [] }), 'E_CLOSED');
    expectError(() => queryDmabufFormats(second), 'E_CLOSED');
    // The shared display was not terminated under the first context.
    const texture = createTexture(ctx, 1, 1, new Uint8Array([1, 2, 3, 4]));
    expect([...readTexture(ctx, texture, 1, 1)]).to.deep.equal([1, 2, 3, 4]);
    deleteTexture(ctx, texture);
    // A texture left alive is destroyed by close().
    const third = GpuContext.open();
    const source = createTexture(third, 2, 2);
    const left = textureFromEglImage(third, eglImageFromTexture(third, source));
    third.close();
    expect(left.destroyed).to.equal(true);
  });

  it('a library that does not load fails with E_NATIVE_UNAVAILABLE listing every pair tried and why', () => {
    const error = expectError(
      () =>
        loadGlLibraries([
          { egl: '/nonexistent/angle/libEGL.so', gles: '/nonexistent/angle/libGLESv2.so', source: 'angle (test)' },
          { egl: 'libEGL.so.1', gles: 'libGLESv2-does-not-exist.so.9', source: 'broken (test)' },
        ]),
      'E_NATIVE_UNAVAILABLE',
    );
    expect(error.message).to.include('[angle (test)] /nonexistent/angle/libEGL.so: ');
    expect(error.message).to.include('[broken (test)] libGLESv2-does-not-exist.so.9: ');
    expect(error.message).to.include('No such file');
    expect(error.message).to.include('apt-get install');
  });
});
