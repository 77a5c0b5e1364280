/**
 * The lossless tile codec (docs/remote.md §4, kind 2): damage → 64×64 tiles → solid-colour
 * detection → the remaining tiles' pixels concatenated and deflated (raw DEFLATE, on libuv's
 * threadpool, not the JS thread).
 *
 * A client's only state is its accumulated damage (TileDamage: one byte per tile); pixels
 * come from the server's per-surface mirror at encode time, so damage that piles up while a
 * client is blocked costs nothing until it can take a frame. Scratch buffers are reused; the
 * frame's output Buffer is the one allocation per frame (plus what zlib returns).
 */
import * as zlib from 'node:zlib';
import { SurfaceLinkError, invalidArgument } from '../errors.js';
import type { Rect } from '../protocol/codec.js';
import { FLAG_KEYFRAME, FRAME_HEADER_SIZE, FrameKind, writeFrameHeader } from './protocol.js';

export const TILE_SIZE = 64;
const TILE_SHIFT = 6;
export const TILE_RECORD_SIZE = 16;
/** Tile payload: tile count and compressed length in front of the records. */
export const TILE_PAYLOAD_HEADER = 8;
export const TileEncoding = { SOLID: 0, RAW: 1 } as const;

/** Every dirty tile of one client's view of a surface: what it has not been sent yet. */
export class TileDamage {
  width = 0;
  height = 0;
  cols = 0;
  rows = 0;
  /** One byte per tile, row-major: 1 = dirty. */
  dirty = new Uint8Array(0);
  /** The next frame must cover the whole surface (a new client, a resize, a keyframe request). */
  full = true;
  /** Some tile is dirty (or `full`). */
  pending = true;

  constructor(width: number, height: number) {
    this.resize(width, height);
  }

  /** A new size: everything is dirty. */
  resize(width: number, height: number): void {
    this.width = width;
    this.height = height;
    this.cols = (width + TILE_SIZE - 1) >> TILE_SHIFT;
    this.rows = (height + TILE_SIZE - 1) >> TILE_SHIFT;
    if (this.dirty.length < this.cols * this.rows) this.dirty = new Uint8Array(this.cols * this.rows);
    this.markFull();
  }

  markFull(): void {
    this.full = true;
    this.pending = true;
  }

  /** Adds `count` rectangles of `rects`; count 0 means the whole surface. Clipped to the surface. */
  add(rects: readonly Rect[], count: number): void {
    if (count === 0) return this.markFull();
    if (this.full) return;
    for (let i = 0; i < count; i++) {
      const r = rects[i];
      const x0 = Math.max(0, r.x);
      const y0 = Math.max(0, r.y);
      const x1 = Math.min(this.width, r.x + r.width);
      const y1 = Math.min(this.height, r.y + r.height);
      if (x1 <= x0 || y1 <= y0) continue;
      const tx1 = (x1 - 1) >> TILE_SHIFT;
      const ty1 = (y1 - 1) >> TILE_SHIFT;
      for (let ty = y0 >> TILE_SHIFT; ty <= ty1; ty++)
        this.dirty.fill(1, ty * this.cols + (x0 >> TILE_SHIFT), ty * this.cols + tx1 + 1);
      this.pending = true;
    }
  }

  clear(): void {
    this.dirty.fill(0, 0, this.cols * this.rows);
    this.full = false;
    this.pending = false;
  }
}

export interface TileEncoderOptions {
  /** zlib level, 1 (fastest, the default) to 9. */
  level?: number;
}

/**
 * Encodes tile frames for one client. One frame at a time: encode() takes a snapshot of the
 * dirty tiles synchronously (the image may change as soon as it returns), then deflates on
 * the threadpool and calls `done` with the complete binary frame (header included).
 */
export class TileEncoder {
  private records = Buffer.alloc(0);
  private raw = Buffer.alloc(0);
  private image: Uint8Array | null = null;
  private imageBytes: Buffer = Buffer.alloc(0);
  private imageWords: Uint32Array = new Uint32Array(0);
  private readonly zlibOptions: zlib.ZlibOptions;
  private busyValue = false;
  // The frame being compressed.
  private tileCount = 0;
  private header = { flags: 0, sequence: 0, presentMs: 0, width: 0, height: 0 };
  private readonly onDeflated = (error: Error | null, compressed: Buffer): void => this.finish(error, compressed);

  constructor(
    private readonly done: (error: Error | null, frame: Buffer | null, tiles: number) => void,
    options: TileEncoderOptions = {},
  ) {
    const level = options.level ?? 1;
    if (!Number.isInteger(level) || level < 1 || level > 9)
      throw invalidArgument('level', 'an integer from 1 to 9', level);
    // A smaller window and memLevel than the defaults: tiles repeat within a few rows, and
    // this keeps each threadpool job's memory small.
    this.zlibOptions = { level, memLevel: 8, windowBits: 15, strategy: zlib.constants.Z_DEFAULT_STRATEGY };
  }

  /** A frame is being compressed; encode() must not be called until `done` has run. */
  get busy(): boolean {
    return this.busyValue;
  }

  /**
   * Starts a frame from the dirty tiles of `damage` (all of them when damage.full), reading
   * pixels from `image` (rows of `stride` bytes, 4 bytes per pixel, 4-byte aligned), and
   * clears the damage. Returns the number of tiles, 0 when nothing was dirty (then `done` is
   * not called).
   */
  encode(image: Uint8Array, stride: number, damage: TileDamage, sequence: number, presentMs: number): number {
    if (this.busyValue)
      throw new SurfaceLinkError('E_UNEXPECTED', 'TileEncoder.encode() while a frame is still being compressed');
    const { width, height, cols, rows } = damage;
    if (stride % 4 !== 0 || image.byteOffset % 4 !== 0 || image.byteLength < stride * (height - 1) + width * 4)
      throw invalidArgument(
        'image',
        `${width}x${height} pixels at stride ${stride}, 4-byte aligned`,
        `${image.byteLength} bytes at offset ${image.byteOffset}`,
      );
    if (image !== this.image) {
      this.image = image;
      this.imageBytes = Buffer.from(image.buffer, image.byteOffset, image.byteLength);
      this.imageWords = new Uint32Array(image.buffer, image.byteOffset, image.byteLength >> 2);
    }
    const full = damage.full;
    const maxTiles = cols * rows;
    if (this.records.length < maxTiles * TILE_RECORD_SIZE) this.records = Buffer.alloc(maxTiles * TILE_RECORD_SIZE);
    const words = this.imageWords;
    const wordStride = stride >> 2;
    let n = 0;
    let rawLength = 0;
    for (let ty = 0; ty < rows; ty++) {
      for (let tx = 0; tx < cols; tx++) {
        if (!full && damage.dirty[ty * cols + tx] === 0) continue;
        const x = tx << TILE_SHIFT;
        const y = ty << TILE_SHIFT;
        const w = Math.min(TILE_SIZE, width - x);
        const h = Math.min(TILE_SIZE, height - y);
        const rec = n * TILE_RECORD_SIZE;
        this.records.writeUInt16LE(x, rec);
        this.records.writeUInt16LE(y, rec + 2);
        this.records.writeUInt16LE(w, rec + 4);
        this.records.writeUInt16LE(h, rec + 6);
        this.records.writeUInt32LE(0, rec + 8);
        const first = words[y * wordStride + x];
        if (isSolid(words, wordStride, x, y, w, h, first)) {
          this.records.writeUInt32LE(first >>> 0, rec + 12);
        } else {
          this.records[rec + 8] = TileEncoding.RAW;
          this.records.writeUInt32LE(0, rec + 12);
          rawLength = this.copyTile(x, y, w, h, stride, rawLength);
        }
        n++;
      }
    }
    damage.clear();
    if (n === 0) return 0;
    this.tileCount = n;
    const hd = this.header;
    hd.flags = full ? FLAG_KEYFRAME : 0;
    hd.sequence = sequence;
    hd.presentMs = presentMs;
    hd.width = width;
    hd.height = height;
    this.busyValue = true;
    if (rawLength === 0) process.nextTick(this.onDeflated, null, EMPTY);
    else zlib.deflateRaw(this.raw.subarray(0, rawLength), this.zlibOptions, this.onDeflated);
    return n;
  }

  private copyTile(x: number, y: number, w: number, h: number, stride: number, at: number): number {
    const rowBytes = w * 4;
    const need = at + rowBytes * h;
    if (this.raw.length < need) {
      // Grow geometrically, keeping what is already copied.
      const bigger = Buffer.allocUnsafe(Math.max(need, this.raw.length * 2, 256 * 1024));
      this.raw.copy(bigger, 0, 0, at);
      this.raw = bigger;
    }
    let src = y * stride + x * 4;
    for (let r = 0; r < h; r++, src += stride, at += rowBytes) this.imageBytes.copy(this.raw, at, src, src + rowBytes);
    return at;
  }

  private finish(error: Error | null, compressed: Buffer): void {
    this.busyValue = false;
    if (error)
      return this.done(
        new SurfaceLinkError('E_ENCODER', `deflate failed: ${error.message}`, { cause: error }),
        null,
        0,
      );
    const n = this.tileCount;
    const recordBytes = n * TILE_RECORD_SIZE;
    const frame = Buffer.allocUnsafe(FRAME_HEADER_SIZE + TILE_PAYLOAD_HEADER + recordBytes + compressed.length);
    const hd = this.header;
    writeFrameHeader(frame, FrameKind.TILES, hd.flags, hd.sequence, hd.presentMs, hd.width, hd.height);
    frame.writeUInt32LE(n, FRAME_HEADER_SIZE);
    frame.writeUInt32LE(compressed.length, FRAME_HEADER_SIZE + 4);
    this.records.copy(frame, FRAME_HEADER_SIZE + TILE_PAYLOAD_HEADER, 0, recordBytes);
    compressed.copy(frame, FRAME_HEADER_SIZE + TILE_PAYLOAD_HEADER + recordBytes);
    this.done(null, frame, n);
  }

  /** Drops the scratch buffers (the encoder stays usable). */
  release(): void {
    if (this.busyValue) return;
    this.records = Buffer.alloc(0);
    this.raw = Buffer.alloc(0);
    this.image = null;
    this.imageBytes = Buffer.alloc(0);
    this.imageWords = new Uint32Array(0);
  }
}

const EMPTY = Buffer.alloc(0);

function isSolid(
  words: Uint32Array,
  wordStride: number,
  x: number,
  y: number,
  w: number,
  h: number,
  value: number,
): boolean {
  for (let r = 0; r < h; r++) {
    const row = (y + r) * wordStride + x;
    for (let c = 0; c < w; c++) if (words[row + c] !== value) return false;
  }
  return true;
}

// ---- decoding ------------------------------------------------------------------------------

/** A tile payload checked against the image it applies to: what decoding needs. */
interface CheckedPayload {
  count: number;
  rawLength: number;
  compressed: Uint8Array;
  records: DataView;
}

/**
 * Validates a tile payload (the bytes after the 32-byte frame header) for a width×height
 * image: every record inside the image, encodings known, lengths consistent. Throws
 * E_MALFORMED / E_TRUNCATED.
 */
function checkPayload(payload: Uint8Array, width: number, height: number): CheckedPayload {
  if (payload.byteLength < TILE_PAYLOAD_HEADER)
    throw new SurfaceLinkError('E_TRUNCATED', 'a tile payload is at least 8 bytes');
  const v = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  const count = v.getUint32(0, true);
  const compressedLength = v.getUint32(4, true);
  const recordsEnd = TILE_PAYLOAD_HEADER + count * TILE_RECORD_SIZE;
  if (recordsEnd + compressedLength !== payload.byteLength)
    throw new SurfaceLinkError(
      'E_MALFORMED',
      `tile payload: ${count} tiles and ${compressedLength} compressed bytes ` +
        `need ${recordsEnd + compressedLength} bytes; got ${payload.byteLength}`,
    );
  let rawLength = 0;
  for (let i = 0; i < count; i++) {
    const at = TILE_PAYLOAD_HEADER + i * TILE_RECORD_SIZE;
    const x = v.getUint16(at, true);
    const y = v.getUint16(at + 2, true);
    const w = v.getUint16(at + 4, true);
    const h = v.getUint16(at + 6, true);
    const encoding = v.getUint8(at + 8);
    if (w === 0 || h === 0 || x + w > width || y + h > height)
      throw new SurfaceLinkError(
        'E_MALFORMED',
        `tile ${i} (${w}x${h} at ${x},${y}) is outside the ${width}x${height} surface`,
      );
    if (encoding === TileEncoding.RAW) rawLength += w * h * 4;
    else if (encoding !== TileEncoding.SOLID)
      throw new SurfaceLinkError('E_MALFORMED', `tile ${i} has unknown encoding ${encoding}`);
  }
  if ((rawLength === 0) !== (compressedLength === 0))
    throw new SurfaceLinkError(
      'E_MALFORMED',
      `tile payload: ${rawLength} raw bytes but ${compressedLength} compressed bytes`,
    );
  return {
    count,
    rawLength,
    compressed: payload.subarray(recordsEnd),
    records: new DataView(payload.buffer, payload.byteOffset + TILE_PAYLOAD_HEADER, count * TILE_RECORD_SIZE),
  };
}

function paint(p: CheckedPayload, raw: Uint8Array, image: Uint8Array, stride: number): void {
  if (raw.byteLength !== p.rawLength)
    throw new SurfaceLinkError(
      'E_MALFORMED',
      `tile payload inflates to ${raw.byteLength} bytes; its raw tiles need ${p.rawLength}`,
    );
  const v = p.records;
  const words =
    image.byteOffset % 4 === 0 ? new Uint32Array(image.buffer, image.byteOffset, image.byteLength >> 2) : null;
  let from = 0;
  for (let i = 0; i < p.count; i++) {
    const at = i * TILE_RECORD_SIZE;
    const x = v.getUint16(at, true);
    const y = v.getUint16(at + 2, true);
    const w = v.getUint16(at + 4, true);
    const h = v.getUint16(at + 6, true);
    const rowBytes = w * 4;
    if (v.getUint8(at + 8) === TileEncoding.RAW) {
      for (let r = 0; r < h; r++, from += rowBytes)
        image.set(raw.subarray(from, from + rowBytes), (y + r) * stride + x * 4);
    } else {
      const value = v.getUint32(at + 12, true);
      for (let r = 0; r < h; r++) {
        const row = (y + r) * stride + x * 4;
        if (words) words.fill(value, row >> 2, (row >> 2) + w);
        else
          for (let c = 0; c < rowBytes; c += 4) {
            image[row + c] = value & 0xff;
            image[row + c + 1] = (value >>> 8) & 0xff;
            image[row + c + 2] = (value >>> 16) & 0xff;
            image[row + c + 3] = value >>> 24;
          }
      }
    }
  }
}

function checkImage(image: Uint8Array, stride: number, width: number, height: number): void {
  if (
    !Number.isInteger(stride) ||
    stride < width * 4 ||
    stride % 4 !== 0 ||
    image.byteLength < stride * (height - 1) + width * 4
  )
    throw invalidArgument(
      'image',
      `${width}x${height} pixels at a stride (multiple of 4) of at least ${width * 4}`,
      `${image.byteLength} bytes at stride ${stride}`,
    );
}

/**
 * Applies a tile payload to `image` (width×height, rows of `stride` bytes), inflating on the
 * threadpool. The image is untouched if the payload is bad (E_MALFORMED / E_TRUNCATED).
 */
export function applyTiles(
  payload: Uint8Array,
  image: Uint8Array,
  stride: number,
  width: number,
  height: number,
): Promise<void> {
  checkImage(image, stride, width, height);
  const p = checkPayload(payload, width, height);
  if (p.rawLength === 0) {
    paint(p, EMPTY, image, stride);
    return Promise.resolve();
  }
  return new Promise((resolve, reject) => {
    zlib.inflateRaw(p.compressed, { maxOutputLength: p.rawLength + 1 }, (error, raw) => {
      if (error)
        return reject(
          new SurfaceLinkError('E_MALFORMED', `tile payload does not inflate: ${error.message}`, { cause: error }),
        );
      try {
        paint(p, raw, image, stride);
        resolve();
      } catch (e) {
        reject(e);
      }
    });
  });
}

/** applyTiles() on the calling thread (tests, benchmarks). */
export function applyTilesSync(
  payload: Uint8Array,
  image: Uint8Array,
  stride: number,
  width: number,
  height: number,
): void {
  checkImage(image, stride, width, height);
  const p = checkPayload(payload, width, height);
  let raw: Uint8Array = EMPTY;
  if (p.rawLength > 0) {
    try {
      raw = zlib.inflateRawSync(p.compressed, { maxOutputLength: p.rawLength + 1 });
    } catch (error) {
      throw new SurfaceLinkError('E_MALFORMED', `tile payload does not inflate: ${(error as Error).message}`, {
        cause: error,
      });
    }
  }
  paint(p, raw, image, stride);
}
