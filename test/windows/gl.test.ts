/**
 * surfacelink/gl on Windows: ANGLE's Direct3D 11 backend loaded with koffi in a Windows node.exe
 * (under wine 8 + Xvfb on Linux, natively on the Windows runner), through the same
 * SurfaceRenderer / SurfaceImporter as Linux, on their CPU paths:
 *
 *   process A  opens ANGLE D3D11 (SURFACELINK_ANGLE_DIR), renders a known picture (scissored
 *              clears + a shader draw) into a CPU buffer ('readback': glReadPixels into its
 *              bytes), checks every pixel, and hands the bytes over in a file;
 *   process B  opens its own ANGLE D3D11 display, imports those bytes as a texture ('upload':
 *              glTexSubImage2D), reads it back — every pixel checked against the file and the
 *              picture — then a damage-only upload and a swizzled draw of the texture;
 *   A → B      the same picture over a SurfaceServer / SurfaceClient on a named pipe (winshm.v1).
 *
 * Each process opens one display: ANGLE returns the first display again for a second
 * eglGetPlatformDisplayEXT with other attributes in the same process (facts, windows-wine §9).
 * The GL side is the same for the file and the transport: a CPU view of the bytes.
 *
 * Fixtures (test/windows/fixtures.ts): ANGLE 2.1 from chromium@3.2171.3008 and koffi's
 * win32-x64 binary, both `npm pack`ed once into the build cache and integrity-checked.
 * Skipped without wine/Xvfb (or dist/); under CI=true that is a failure.
 */
import { expect } from 'chai';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { withApiEntry } from '../../src/gl/egl';
import { CI, ROOT, missingTools, prebuildPath } from '../package/package-helpers';
import { angleWindowsFixture, koffiWindowsFixture } from './fixtures';
import { WindowsSession, type ProgramEvent } from './harness';

const WIDTH = 96;
const HEIGHT = 64;
/** Rows padded past the width (512 > 96 × 4), as shared buffers' strides are. */
const STRIDE = 512;

function unavailable(): string | null {
  if (!fs.existsSync(path.join(ROOT, 'dist', 'gl', 'index.js'))) return 'dist/ is missing: run `npm run build:ts`';
  if (process.platform === 'win32') return null;
  if (process.platform !== 'linux') return `needs wine on Linux or Windows itself, not ${process.platform}`;
  const missing = missingTools({ wine: 'wine wine64', wineserver: 'wine wine64', Xvfb: 'xvfb' });
  return missing.length > 0 ? `missing ${missing.join(', ')}` : null;
}

describe('gl on Windows: the calling convention of EGL/GLES entry points', function () {
  it('declares __stdcall on win32 (EGLAPIENTRY), nothing elsewhere', function () {
    expect(withApiEntry('const char *eglQueryString(void *dpy, int name)', 'win32')).to.equal(
      'const char * __stdcall eglQueryString(void *dpy, int name)',
    );
    expect(withApiEntry('void glFinish(void)', 'win32')).to.equal('void __stdcall glFinish(void)');
    expect(withApiEntry('void glFinish(void)', 'linux')).to.equal('void glFinish(void)');
  });
});

describe('gl on Windows: ANGLE D3D11, render in one process, import in another (CPU paths)', function () {
  this.timeout(300_000);
  let session: WindowsSession | undefined;
  let env: NodeJS.ProcessEnv = {};
  let dir = '';

  before(async function () {
    const why = unavailable();
    if (why !== null) {
      if (CI) throw new Error(`CI=true: the Windows GL suite must run here, but ${why}`);
      console.log(`      skipped: ${why}`);
      this.skip();
    }
    const angle = await angleWindowsFixture();
    const koffi = await koffiWindowsFixture();
    session = await WindowsSession.start();
    env = {
      SURFACELINK_ANGLE_DIR: session.toWindows(angle),
      ...(koffi ? { SL_KOFFI: session.toWindows(koffi) } : {}),
    };
    dir = session.dir;
  });

  after(async function () {
    await session?.close();
  });

  async function runProgram(name: string, program: string, args: string[]): Promise<ProgramEvent[]> {
    const p = session!.spawn(name, program, args, env);
    await p.waitFor('done', () => true, 120_000);
    const code = await p.finished(60_000);
    expect(code, `${name} exit code\n${p.log()}`).to.equal(0);
    return p.events();
  }

  const frameFile = (): string => path.join(dir, 'frame.bin');

  it('A: ANGLE D3D11 context (ES 3.0, pbuffer) renders the picture into a CPU buffer pixel-exact', async function () {
    const events = await runProgram('render', 'gl-render.cjs', [
      session!.toWindows(frameFile()),
      String(WIDTH),
      String(HEIGHT),
      String(STRIDE),
    ]);
    const context = events.find((e) => e.event === 'context')!;
    const rendered = events.find((e) => e.event === 'rendered')!;
    console.log(
      `      A: ${String(context.renderer)}, ${String(context.version)}, EGL ${String(context.eglVersion)}; ` +
        `${String(rendered.pixels)} pixels, ${String(rendered.mismatches)} wrong`,
    );
    expect(context.display).to.equal('ANGLE D3D11');
    expect(context.renderer).to.match(/Direct3D11/);
    expect(context.glesVersion).to.deep.equal({ major: 3, minor: 0 });
    expect(rendered.path).to.equal('readback');
    expect(rendered.mismatches, JSON.stringify(rendered.first)).to.equal(0);
    expect(rendered.pixels).to.equal(WIDTH * HEIGHT);
    expect(rendered.readBack).to.equal(WIDTH * HEIGHT * 4);
    // Zero-copy D3D11 import is guarded by its extension (absent in ANGLE 2.1): a clear refusal.
    const display = context.displayExtensions as string[];
    if (!display.includes('EGL_ANGLE_d3d_texture_client_buffer'))
      expect(rendered.d3d11Import).to.match(/^E_UNSUPPORTED: EGL_ANGLE_d3d_texture_client_buffer is not advertised/);
    expect(fs.statSync(frameFile()).size).to.equal(STRIDE * HEIGHT);
  });

  it("B: another process imports A's buffer as a texture ('upload') and reads it back pixel-exact", async function () {
    if (!fs.existsSync(frameFile())) this.skip();
    const events = await runProgram('import', 'gl-import.cjs', [
      session!.toWindows(frameFile()),
      String(WIDTH),
      String(HEIGHT),
      String(STRIDE),
    ]);
    const imported = events.find((e) => e.event === 'imported')!;
    const damage = events.find((e) => e.event === 'damage')!;
    const drawn = events.find((e) => e.event === 'drawn')!;
    const vsFile = imported.vsFile as { mismatches: number; pixels: number; first: unknown[] };
    const vsPicture = imported.vsPicture as { mismatches: number; pixels: number; first: unknown[] };
    console.log(
      `      B: ${vsFile.pixels} pixels imported, ${vsFile.mismatches} differ from A's buffer, ` +
        `${vsPicture.mismatches} from the picture; damage upload ${String(damage.mismatches)} wrong, ` +
        `swizzled draw ${String(drawn.mismatches)} wrong`,
    );
    expect(imported.path).to.equal('upload');
    expect(imported.uploadedBytes).to.equal(WIDTH * HEIGHT * 4);
    expect(vsFile.pixels).to.equal(WIDTH * HEIGHT);
    expect(vsFile.mismatches, JSON.stringify(vsFile.first)).to.equal(0);
    expect(vsPicture.mismatches, JSON.stringify(vsPicture.first)).to.equal(0);
    expect(damage.uploadedBytes).to.equal(10 * 6 * 4);
    expect(damage.mismatches, JSON.stringify(damage.first)).to.equal(0);
    expect(drawn.mismatches, JSON.stringify(drawn.first)).to.equal(0);
  });

  it('C: SurfaceServer → SurfaceClient, named pipe + winshm.v1: A renders, B imports, exact', async function () {
    if (process.platform !== 'win32' && !fs.existsSync(prebuildPath('win32-x64'))) {
      if (CI) throw new Error('CI=true, but prebuilds/win32-x64 is missing');
      console.log('      skipped: prebuilds/win32-x64 is missing (npm run prebuild -- win32-x64)');
      this.skip();
    }
    const pipe = `\\\\.\\pipe\\sl-gl-${process.pid}-${Date.now()}`;
    const server = session!.spawn('gl-server', 'gl-server.cjs', [pipe, String(WIDTH), String(HEIGHT)], env);
    await server.waitFor('listening', () => true, 120_000);
    const client = session!.spawn('gl-client', 'gl-client.cjs', [pipe], { ...env, SL_NAME: 'gl-client' });
    const imported = await client.waitFor('imported', () => true, 120_000);
    const presented = await server.waitFor('presented', () => true, 60_000);
    await server.waitFor('done', () => true, 60_000);
    expect(await client.finished(60_000), client.log()).to.equal(0);
    expect(await server.finished(60_000), server.log()).to.equal(0);
    const vsFrame = imported.vsFrame as { mismatches: number; pixels: number; first: unknown[] };
    const vsPicture = imported.vsPicture as { mismatches: number; pixels: number; first: unknown[] };
    console.log(
      `      C: ${String(presented.client)} (${String(presented.backing)}, stride ${String(presented.stride)}): ` +
        `A rendered ${String(presented.pixels)} pixels, ${String(presented.mismatches)} wrong; B imported ` +
        `${vsFrame.pixels}, ${vsFrame.mismatches} differ from the shared memory, ` +
        `${vsPicture.mismatches} from the picture`,
    );
    expect(presented.client).to.equal('winshm.v1');
    expect(presented.path).to.equal('readback');
    expect(presented.mismatches, JSON.stringify(presented.first)).to.equal(0);
    expect(imported.path).to.equal('upload');
    expect(vsFrame.pixels).to.equal(WIDTH * HEIGHT);
    expect(vsFrame.mismatches, JSON.stringify(vsFrame.first)).to.equal(0);
    expect(vsPicture.mismatches, JSON.stringify(vsPicture.first)).to.equal(0);
  });
});
