/**
 * Validation of received surface descriptors, before any handle is mapped or imported.
 * Pure arithmetic: no handles are touched here.
 */
import { SurfaceLinkError } from '../errors.js';
import {
  MAX_DIMENSION,
  formatByFourcc,
  fourccToString,
  planeMinStride,
  planeRows,
  type FormatInfo,
  type PlaneLayout,
} from '../formats.js';
import type { Rect, ScanoutBody } from './codec.js';

/** No stride beyond this (a 16384-wide 16-byte-per-pixel row). */
export const MAX_STRIDE = MAX_DIMENSION * 16;
/** Offsets beyond 2^48 are refused: u64 values past 2^53 would lose precision in JS. */
export const MAX_OFFSET = 2 ** 48;

const geometry = (message: string) => new SurfaceLinkError('E_BAD_GEOMETRY', message);

/** Checks sizes, format, strides and plane extents; returns the format and per-plane layout. */
export function validateDescriptor(desc: ScanoutBody): { format: FormatInfo; planes: PlaneLayout[] } {
  const { width, height } = desc;
  if (width < 1 || height < 1 || width > MAX_DIMENSION || height > MAX_DIMENSION)
    throw geometry(`surface size ${width}x${height} is outside 1..${MAX_DIMENSION}`);
  const format = formatByFourcc(desc.format);
  if (!format)
    throw new SurfaceLinkError(
      'E_UNSUPPORTED_FORMAT',
      `unknown DRM format 0x${desc.format.toString(16)} (${JSON.stringify(fourccToString(desc.format))})`,
    );
  if (desc.planes.length !== format.planes.length)
    throw geometry(`${format.name} has ${format.planes.length} plane(s); the descriptor has ${desc.planes.length}`);
  const v = desc.visible;
  if (v.width < 1 || v.height < 1 || v.x + v.width > width || v.y + v.height > height)
    throw geometry(`visible rectangle ${v.x},${v.y} ${v.width}x${v.height} is not inside ${width}x${height}`);
  const planes = desc.planes.map((p, i): PlaneLayout => {
    const minStride = planeMinStride(format, i, width);
    if (p.stride < minStride || p.stride > MAX_STRIDE)
      throw geometry(
        `plane ${i}: stride ${p.stride} is outside ${minStride}..${MAX_STRIDE} for ${width} pixels of ${format.name}`,
      );
    const rows = planeRows(format, i, height);
    const needed = p.stride * rows; // ≤ 2^22 · 2^14: exact in a double
    if (p.size < needed)
      throw geometry(`plane ${i}: size ${p.size} is less than stride ${p.stride} × ${rows} rows = ${needed}`);
    if (p.offset > MAX_OFFSET || p.size > MAX_OFFSET)
      throw new SurfaceLinkError('E_OUT_OF_BOUNDS', `plane ${i}: offset ${p.offset} or size ${p.size} is beyond 2^48`);
    // The declared size (≥ stride × rows) is what must fit in the handle's object.
    return {
      offset: p.offset,
      stride: p.stride,
      size: p.size,
      width: Math.ceil(width / format.planes[i].xDiv),
      height: rows,
    };
  });
  return { format, planes };
}

/** Every plane of `planes` that uses handle `index` must end within `objectSize` bytes. */
export function checkPlanesFit(
  planes: readonly PlaneLayout[],
  handleOf: (plane: number) => number,
  index: number,
  objectSize: number,
): void {
  planes.forEach((p, i) => {
    if (handleOf(i) !== index) return;
    if (p.offset + p.size > objectSize)
      throw new SurfaceLinkError(
        'E_OUT_OF_BOUNDS',
        `plane ${i}: bytes ${p.offset}..${p.offset + p.size} lie beyond the ${objectSize}-byte buffer`,
      );
  });
}

/** Damage rectangles must be non-empty and inside the surface. */
export function validateDamage(damage: readonly Rect[], width: number, height: number): void {
  for (const r of damage) {
    if (r.width < 1 || r.height < 1 || r.x + r.width > width || r.y + r.height > height)
      throw geometry(`damage rectangle ${r.x},${r.y} ${r.width}x${r.height} is not inside ${width}x${height}`);
  }
}
