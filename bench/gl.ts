/**
 * GL import and readback costs, at 1080p and 4K, on ANGLE/SwiftShader and on the system's Mesa:
 *   import+draw  SurfaceImporter.import(frame) + a 1:1 textured quad into an offscreen
 *                framebuffer + glFinish, per frame, by each path:
 *                  memory-object   zero-copy (the memfd is the texture; ANGLE/SwiftShader only)
 *                  upload-full     glTexSubImage2D of the whole frame
 *                  upload-damage   glTexSubImage2D of a typical damage (two 64x64 boxes and a
 *                                  256x36 counter, as in the demo)
 *   import only  the same with a 1-pixel draw instead of the whole frame: the import's own cost
 *                (ANGLE defers uploads until the texture is used, so something must sample it)
 *   readback     glReadPixels of the whole frame into memory (GB/s), as SurfaceRenderer's
 *                readback path does with full damage.
 * Medians and the ratios upload ÷ zero-copy, measured in the same run. GL only: no sockets (the
 * handoff is bench/run.ts); the buffers are real shm.v1 memfds of a SurfaceServer.
 * BENCH_QUICK=1: fewer iterations. Writes bench/results/<ISO time>-gl.json.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SurfaceServer, type Rect, type SurfaceBuffer } from '../src/index.js';
import {
  RenderTexture,
  SurfaceImporter,
  drawTexture,
  openGpuContext,
  type GpuContext,
  type ImportPath,
  type ImportableFrame,
} from '../src/gl/index.js';

const ROOT = path.resolve(__dirname, '..');
const QUICK = process.env.BENCH_QUICK === '1';
const ITERATIONS = QUICK ? 8 : 40;
const WARMUP = QUICK ? 2 : 5;
const SIZES = [
  { name: '1080p', width: 1920, height: 1080 },
  { name: '4K', width: 3840, height: 2160 },
];
const DAMAGE: Rect[] = [
  { x: 100, y: 100, width: 64, height: 64 },
  { x: 103, y: 102, width: 64, height: 64 },
  { x: 8, y: 8, width: 256, height: 36 },
];

interface Row {
  gl: string;
  renderer: string;
  size: string;
  case: string;
  path: string | null;
  p50_ms: number;
  mean_ms: number;
  /** readback only */
  gb_per_s?: number;
  note?: string;
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const round = (v: number, digits = 3): number => Math.round(v * 10 ** digits) / 10 ** digits;

function frameOf(buffer: SurfaceBuffer, damage: readonly Rect[]): ImportableFrame {
  return {
    width: buffer.width,
    height: buffer.height,
    format: buffer.format,
    planes: buffer.planes,
    backing: buffer.backing,
    handles: buffer.handles,
    bufferKey: buffer.bufferKey,
    stride: buffer.stride,
    damage,
    surfaceId: 1,
    pixels: () => buffer.pixels(),
  };
}

function time(iterations: number, fn: (i: number) => void): number[] {
  for (let i = 0; i < WARMUP; i++) fn(i);
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) {
    const t = performance.now();
    fn(i);
    samples.push(performance.now() - t);
  }
  return samples;
}

/**
 * `drawPixels`: the whole frame (import + draw), or 1 (import + a 1-pixel draw: forces deferred
 * uploads, isolates the import).
 */
function importCase(
  ctx: GpuContext,
  buffer: SurfaceBuffer,
  target: RenderTexture,
  allow: ImportPath[],
  damage: readonly Rect[],
  onePixel = false,
): { samples: number[]; path: string | null; reason: string } {
  const importer = new SurfaceImporter(ctx, { allow });
  const frame = frameOf(buffer, damage);
  const px = buffer.pixels();
  try {
    const samples = time(ITERATIONS, (i) => {
      px[(i * 4) % px.length] = i & 0xff; // the frame changes every time
      const texture = importer.import(frame);
      target.bind();
      if (onePixel) drawTexture(ctx, texture.texture, 1, 1);
      else drawTexture(ctx, texture.texture, texture.width, texture.height);
      ctx.api.gl.glFinish();
    });
    return { samples, path: importer.path, reason: importer.reason };
  } finally {
    importer.destroy();
  }
}

async function benchGl(which: 'angle' | 'system', server: SurfaceServer, rows: Row[]): Promise<void> {
  let ctx: GpuContext;
  try {
    ctx = openGpuContext({ prefer: which });
  } catch (error) {
    console.log(`${which}: skipped, no usable GL: ${(error as Error).message.split('\n')[0]}`);
    return;
  }
  const name = which === 'angle' ? 'ANGLE' : 'Mesa';
  if (ctx.api.libraries.source.startsWith('angle') !== (which === 'angle')) {
    console.log(`${which}: skipped, discovery gave ${ctx.api.libraries.source} instead`);
    ctx.close();
    return;
  }
  try {
    for (const size of SIZES) {
      if (size.width > ctx.maxTextureSize) continue;
      const surface = server.createSurface({ width: size.width, height: size.height, format: 'XRGB8888', buffers: 2 });
      const buffer = surface.acquire();
      buffer.pixels().fill(0x5a);
      const target = new RenderTexture(ctx, size.width, size.height);
      const add = (
        label: string,
        r: { samples: number[]; path: string | null; reason: string },
        note?: string,
      ): void => {
        rows.push({
          gl: name,
          renderer: ctx.renderer,
          size: size.name,
          case: label,
          path: r.path,
          p50_ms: round(median(r.samples)),
          mean_ms: round(r.samples.reduce((a, b) => a + b, 0) / r.samples.length),
          ...(note ? { note } : {}),
        });
      };
      const zero = importCase(ctx, buffer, target, ['memory-object'], []);
      if (zero.path === 'memory-object') add('import+draw memory-object', zero);
      else
        rows.push({
          gl: name,
          renderer: ctx.renderer,
          size: size.name,
          case: 'import+draw memory-object',
          path: null,
          p50_ms: NaN,
          mean_ms: NaN,
          note: `unavailable: ${zero.reason}`,
        });
      add('import+draw upload-full', importCase(ctx, buffer, target, ['upload'], []));
      const zeroImport = importCase(ctx, buffer, target, ['memory-object'], [], true);
      if (zeroImport.path === 'memory-object') add('import only memory-object', zeroImport);
      add('import only upload-full', importCase(ctx, buffer, target, ['upload'], [], true));
      add('import only upload-damage', importCase(ctx, buffer, target, ['upload'], DAMAGE, true));
      // Damage-only uploads need the texture current: the first import is full, the rest damage only.
      add(
        'import+draw upload-damage',
        importCase(ctx, buffer, target, ['upload'], DAMAGE),
        `${DAMAGE.length} rects, ${DAMAGE.reduce((a, r) => a + r.width * r.height, 0)} px`,
      );
      const out = new Uint8Array(size.width * size.height * 4);
      const samples = time(ITERATIONS, () => target.read(out));
      rows.push({
        gl: name,
        renderer: ctx.renderer,
        size: size.name,
        case: 'readback full frame',
        path: null,
        p50_ms: round(median(samples)),
        mean_ms: round(samples.reduce((a, b) => a + b, 0) / samples.length),
        gb_per_s: round(out.length / (median(samples) / 1000) / 1e9, 2),
      });
      target.destroy();
      surface.discard(buffer);
      surface.close();
      process.stdout.write(`  ${name} ${size.name} done\n`);
    }
  } finally {
    ctx.close();
  }
}

async function main(): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sl-bench-gl-'));
  const server = await SurfaceServer.listen({ path: path.join(dir, 'bench.sock') });
  const rows: Row[] = [];
  console.log(
    `surfacelink GL bench: ${ITERATIONS} frames per case after ${WARMUP} ` +
      `warm-up${QUICK ? ' (BENCH_QUICK)' : ''}; ${os.cpus().length} CPUs, ${os.cpus()[0]?.model ?? '?'}, ` +
      `Node ${process.version}`,
  );
  try {
    await benchGl('angle', server, rows);
    await benchGl('system', server, rows);
  } finally {
    server.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const p50 = (gl: string, size: string, label: string): number =>
    rows.find((r) => r.gl === gl && r.size === size && r.case === label)?.p50_ms ?? NaN;
  console.log('\n| GL | size | case | path | p50 ms | mean ms | readback GB/s | ÷ memory-object p50 |');
  console.log('|---|---|---|---|---:|---:|---:|---:|');
  for (const r of rows) {
    const zero = p50(
      r.gl,
      r.size,
      r.case.startsWith('import only') ? 'import only memory-object' : 'import+draw memory-object',
    );
    const ratio =
      r.case.startsWith('import') && Number.isFinite(zero) && Number.isFinite(r.p50_ms)
        ? `${round(r.p50_ms / zero, 2)}x`
        : '–';
    console.log(
      `| ${r.gl} | ${r.size} | ${r.case} | ${r.path ?? '–'} ` +
        `| ${Number.isFinite(r.p50_ms) ? r.p50_ms : 'unavailable (reason in the JSON)'} ` +
        `| ${Number.isFinite(r.mean_ms) ? r.mean_ms : '–'} | ${r.gb_per_s ?? '–'} | ${ratio} |`,
    );
  }
  const record = {
    date: new Date().toISOString(),
    host: { cpus: os.cpus().length, model: os.cpus()[0]?.model ?? null, node: process.version },
    iterations: ITERATIONS,
    warmup: WARMUP,
    quick: QUICK,
    damage: DAMAGE,
    results: rows,
  };
  const out = path.join(ROOT, 'bench', 'results', `${record.date.replace(/[:.]/g, '-')}-gl.json`);
  fs.mkdirSync(path.dirname(out), { recursive: true });
  fs.writeFileSync(
    out,
    JSON.stringify(record, (_k, v) => (typeof v === 'number' && !Number.isFinite(v) ? null : v), 2) + '\n',
  );
  console.log(`\nrecorded ${path.relative(ROOT, out)}`);
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
