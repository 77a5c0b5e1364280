/**
 * The one pixel-format table: DRM fourcc (what travels) ↔ pixman (QEMU) ↔ DXGI_FORMAT ↔
 * IOSurface OSType ↔ GL. Plane geometry for every format lives here too, so layout and
 * validation never disagree.
 */
import { SurfaceLinkError, invalidArgument } from './errors.js';

/** A pixel format surfacelink knows, by its DRM name (DRM_FORMAT_XRGB8888 is 'XRGB8888'). */
export type FormatName = 'XRGB8888' | 'ARGB8888' | 'XBGR8888' | 'ABGR8888' | 'RGB565' | 'NV12';

/** DRM_FORMAT_MOD_LINEAR. */
export const MODIFIER_LINEAR = 0n;
/** DRM_FORMAT_MOD_INVALID: "implicit", the driver knows. */
export const MODIFIER_INVALID = 0x00ffffffffffffffn;

/** How one plane of a format is laid out and sampled. */
export interface PlaneInfo {
  /** Bytes per pixel of this plane (per sample group for subsampled planes). */
  bytesPerPixel: number;
  /** Horizontal subsampling divisor (2 for NV12's chroma plane). */
  xDiv: number;
  /** Vertical subsampling divisor (2 for NV12's chroma plane). */
  yDiv: number;
  /** GL internal format / format / type for sampling this plane alone. */
  gl: {
    /** For glTexImage2D / glTexStorage2D, e.g. GL_BGRA8_EXT. */
    internalFormat: number;
    /** Pixel format of the data, e.g. GL_BGRA_EXT. */
    format: number;
    /** Component type, e.g. GL_UNSIGNED_BYTE. */
    type: number;
  };
}

/**
 * Everything surfacelink knows about a pixel format: its DRM fourcc, planes, and the matching
 * pixman, DXGI, IOSurface and GL formats.
 */
export interface FormatInfo {
  /** Its DRM name, e.g. 'XRGB8888'. */
  name: FormatName;
  /** DRM fourcc code (what travels in SCANOUT), e.g. fourcc('XR24'). */
  fourcc: number;
  /** Memory order of one pixel, lowest address first (DRM formats are little-endian words). */
  byteOrder: string;
  /** The fourth channel is alpha (ARGB8888) rather than padding (XRGB8888). */
  hasAlpha: boolean;
  /** One entry per plane (NV12 has two: Y, then interleaved UV). */
  planes: PlaneInfo[];
  /** pixman_format_code_t, or null where pixman has none. */
  pixman: number | null;
  /** DXGI_FORMAT. */
  dxgi: number;
  /** IOSurface / CoreVideo pixel format OSType. */
  iosurface: number;
}

/**
 * The DRM fourcc of a four-character code: fourcc('XR24') is DRM_FORMAT_XRGB8888.
 * E_INVALID_ARGUMENT if `code` is not four characters.
 */
export function fourcc(code: string): number {
  if (code.length !== 4) throw invalidArgument('fourcc', 'four characters', code);
  return (
    (code.charCodeAt(0) | (code.charCodeAt(1) << 8) | (code.charCodeAt(2) << 16) | (code.charCodeAt(3) << 24)) >>> 0
  );
}

/** The four-character code of a DRM fourcc: fourccToString(DRM_FORMAT_XRGB8888) is 'XR24'. */
export function fourccToString(value: number): string {
  return String.fromCharCode(value & 0xff, (value >>> 8) & 0xff, (value >>> 16) & 0xff, (value >>> 24) & 0xff);
}

const ostype = (s: string): number =>
  ((s.charCodeAt(0) << 24) | (s.charCodeAt(1) << 16) | (s.charCodeAt(2) << 8) | s.charCodeAt(3)) >>> 0;

const GL = {
  RGBA: 0x1908,
  RGB: 0x1907,
  RG: 0x8227,
  RED: 0x1903,
  BGRA_EXT: 0x80e1,
  RGBA8: 0x8058,
  BGRA8_EXT: 0x93a1,
  RGB565: 0x8d62,
  R8: 0x8229,
  RG8: 0x822b,
  UNSIGNED_BYTE: 0x1401,
  UNSIGNED_SHORT_5_6_5: 0x8363,
};
const bgra8: PlaneInfo = {
  bytesPerPixel: 4,
  xDiv: 1,
  yDiv: 1,
  gl: { internalFormat: GL.BGRA8_EXT, format: GL.BGRA_EXT, type: GL.UNSIGNED_BYTE },
};
const rgba8: PlaneInfo = {
  bytesPerPixel: 4,
  xDiv: 1,
  yDiv: 1,
  gl: { internalFormat: GL.RGBA8, format: GL.RGBA, type: GL.UNSIGNED_BYTE },
};

/** Every format surfacelink knows, by name. */
export const FORMATS: Readonly<Record<FormatName, FormatInfo>> = {
  XRGB8888: {
    name: 'XRGB8888',
    fourcc: fourcc('XR24'),
    byteOrder: 'B G R X',
    hasAlpha: false,
    planes: [bgra8],
    pixman: 0x20020888,
    // B8G8R8A8, not B8G8R8X8: the BGRA format every D3D11 sharing path uses (dxgi.v1); X is ignored.
    dxgi: 87,
    iosurface: ostype('BGRA'),
  },
  ARGB8888: {
    name: 'ARGB8888',
    fourcc: fourcc('AR24'),
    byteOrder: 'B G R A',
    hasAlpha: true,
    planes: [bgra8],
    pixman: 0x20028888,
    dxgi: 87,
    iosurface: ostype('BGRA'),
  },
  XBGR8888: {
    name: 'XBGR8888',
    fourcc: fourcc('XB24'),
    byteOrder: 'R G B X',
    hasAlpha: false,
    planes: [rgba8],
    pixman: 0x20030888,
    dxgi: 28,
    iosurface: ostype('RGBA'),
  },
  ABGR8888: {
    name: 'ABGR8888',
    fourcc: fourcc('AB24'),
    byteOrder: 'R G B A',
    hasAlpha: true,
    planes: [rgba8],
    pixman: 0x20038888,
    dxgi: 28,
    iosurface: ostype('RGBA'),
  },
  RGB565: {
    name: 'RGB565',
    fourcc: fourcc('RG16'),
    byteOrder: 'u16 le: R5 G6 B5 (B in the low bits)',
    hasAlpha: false,
    planes: [
      {
        bytesPerPixel: 2,
        xDiv: 1,
        yDiv: 1,
        gl: { internalFormat: GL.RGB565, format: GL.RGB, type: GL.UNSIGNED_SHORT_5_6_5 },
      },
    ],
    pixman: 0x10020565,
    dxgi: 85,
    iosurface: ostype('L565'),
  },
  NV12: {
    name: 'NV12',
    fourcc: fourcc('NV12'),
    byteOrder: 'plane 0: Y; plane 1: Cb Cr interleaved, 2x2 subsampled',
    hasAlpha: false,
    planes: [
      { bytesPerPixel: 1, xDiv: 1, yDiv: 1, gl: { internalFormat: GL.R8, format: GL.RED, type: GL.UNSIGNED_BYTE } },
      { bytesPerPixel: 2, xDiv: 2, yDiv: 2, gl: { internalFormat: GL.RG8, format: GL.RG, type: GL.UNSIGNED_BYTE } },
    ],
    pixman: null,
    dxgi: 103,
    iosurface: ostype('420v'),
  },
};

const byFourcc = new Map<number, FormatInfo>(Object.values(FORMATS).map((f) => [f.fourcc, f]));

/** The format with DRM fourcc `code`, or undefined if surfacelink does not know it. */
export function formatByFourcc(code: number): FormatInfo | undefined {
  return byFourcc.get(code >>> 0);
}

/** The format called `name` ('XRGB8888', …); E_UNSUPPORTED_FORMAT, listing the known names, if there is none. */
export function formatByName(name: string): FormatInfo {
  const info = (FORMATS as Record<string, FormatInfo | undefined>)[name];
  if (!info)
    throw new SurfaceLinkError(
      'E_UNSUPPORTED_FORMAT',
      `unknown format ${JSON.stringify(name)}; known: ${Object.keys(FORMATS).join(', ')}`,
    );
  return info;
}

/** Largest width or height accepted anywhere (GPU limits are 16384 at most). */
export const MAX_DIMENSION = 16384;

/** Where one plane of a buffer lies in the object that holds it, in bytes. */
export interface PlaneLayout {
  /** Byte offset of the plane's first row. */
  offset: number;
  /** Bytes per row (at least width × bytes per pixel; often padded). */
  stride: number;
  /** Bytes this plane occupies: stride × rows. */
  size: number;
  /** Pixels per row, after subsampling. */
  width: number;
  /** Rows, after subsampling. */
  height: number;
}

/** Rows of plane `index` for a surface `height` pixels tall. */
export function planeRows(format: FormatInfo, index: number, height: number): number {
  return Math.ceil(height / format.planes[index].yDiv);
}

/** Minimum bytes per row of plane `index`. */
export function planeMinStride(format: FormatInfo, index: number, width: number): number {
  const p = format.planes[index];
  return Math.ceil(width / p.xDiv) * p.bytesPerPixel;
}

/**
 * The linear layout used when we allocate: each plane's rows padded to `rowAlign` bytes,
 * planes packed one after another, each starting on a `planeAlign` boundary.
 */
export function linearLayout(
  format: FormatInfo,
  width: number,
  height: number,
  rowAlign = 64,
  planeAlign = 4096,
): {
  /** Layout of each plane. */
  planes: PlaneLayout[];
  /** Bytes the whole buffer needs (the last plane rounded up to `planeAlign`). */
  totalSize: number;
} {
  let offset = 0;
  const planes = format.planes.map((p, index) => {
    const stride = Math.ceil(planeMinStride(format, index, width) / rowAlign) * rowAlign;
    const rows = planeRows(format, index, height);
    const layout: PlaneLayout = { offset, stride, size: stride * rows, width: Math.ceil(width / p.xDiv), height: rows };
    offset = Math.ceil((offset + layout.size) / planeAlign) * planeAlign;
    return layout;
  });
  return { planes, totalSize: offset };
}
