/**
 * ConsoleSurface: one QEMU console re-shared as a surface of a SurfaceServer. QEMU pushes pixels
 * (Scanout/Update: copies in the message) or points at its own memory (ScanoutMap/UpdateMap: a
 * memfd) and never waits for us; this side keeps the newest picture and presents it latest-wins:
 * a burst of updates becomes one present, and a buffer a viewer still holds is never written.
 *
 * Each pool buffer remembers the damage it has missed since it was last written ("buffer age"),
 * so bringing a buffer up to date copies only what changed. Where QEMU's pixels live in a message,
 * the bridge keeps its own copy of the whole picture (one copy from the message); from QEMU's
 * memfd it reads the damage straight into the pool buffer with pread — one copy, and a memfd QEMU
 * shrinks meanwhile gives a short read, never SIGBUS.
 */
import type { SurfaceBuffer } from '../../buffer.js';
import { SurfaceLinkError } from '../../errors.js';
import type { CursorImage } from '../../input.js';
import { formatByFourcc, fourccToString } from '../../formats.js';
import type { Logger } from '../../log.js';
import type { NativeFd } from '../../native/index.js';
import type { Rect } from '../../protocol/codec.js';
import type { SurfaceServer } from '../../server.js';
import type { SharedSurface } from '../../surface.js';

/** pixman formats QEMU's D-Bus display uses: x8r8g8b8 and a8r8g8b8 are DRM XRGB8888 / ARGB8888 (B, G, R, X/A bytes). */
export const PIXMAN_X8R8G8B8 = 0x20020888;
export const PIXMAN_A8R8G8B8 = 0x20028888;

/** Damage rectangles kept per buffer before they collapse into "everything". */
const MAX_RECTS = 16;
/** Largest console side taken (QEMU's own limit for most devices is 16384 too). */
export const MAX_SIDE = 16384;
/** Longest wait for QEMU's first drawing into a new surface (its refresh is 30 ms by default). */
const HOLD_MS = 100;

/** How the console's pixels reach this side. */
export type ConsolePath = 'scanout' | 'map-shared' | 'map-copy' | 'dmabuf' | 'none';

/** Where the newest picture is: the bridge's own copy, or QEMU's memfd. */
interface Source {
  width: number;
  height: number;
  /** Copies the rectangle into `dst` (rows of dstStride bytes) at the same position. */
  copy(r: Rect, dst: Uint8Array, dstStride: number): void;
}

/** The damage a buffer has missed: a few rectangles, or everything. */
type Stale = Rect[] | 'full';

export class ConsoleSurface {
  surface: SharedSurface | null = null;
  path: ConsolePath = 'none';
  /** Why the pixels take the path they do (the copy, and why there is no zero-copy). */
  reason = 'no scanout yet';
  /** Messages and pixels taken from QEMU, and presents made (for stats and tests). */
  readonly counts = { scanouts: 0, updates: 0, bytes: 0, presents: 0, coalesced: 0 };
  private source: Source | null = null;
  /** The bridge's copy of the picture (Scanout/Update), tightly packed BGRX. */
  private image: Buffer | null = null;
  private memfd: { fd: NativeFd; offset: number; stride: number } | null = null;
  private pending: Stale = [];
  private readonly stale = new Map<SurfaceBuffer, Stale>();
  private scheduled = false;
  private cursorImage: CursorImage | null = null;
  private cursorPos: { x: number; y: number; visible: boolean } | null = null;
  /** map-shared: the adopted memfd's size (its one buffer is QEMU's memory itself). */
  private shared: { width: number; height: number } | null = null;
  /** The size or path changed since the bridge was last told. */
  private changed = false;
  /** dmabuf: QEMU's rows run bottom-up (y0_top false). */
  private bottomUp = false;
  /**
   * A new surface whose pixels QEMU has not drawn yet: QEMU announces a mode switch
   * (ScanoutMap, or a Scanout of a new size) before it draws into the new surface, then sends the
   * drawing as updates. Presenting in between would show viewers a blank picture, so the present
   * waits for the first update, or HOLD_MS at most (QEMU is never waited for: this only delays us).
   */
  private holdTimer: NodeJS.Timeout | null = null;
  private readonly flushBound = (): void => this.flush();

  constructor(
    private readonly server: SurfaceServer,
    readonly index: number,
    private readonly label: string,
    private readonly logger: Logger,
    /** Called when the console's surface is created, replaced (new id), resized or its path changes. */
    private readonly onSurface: (surface: SharedSurface | null) => void,
  ) {}

  /** Scanout: a whole new picture of `width`×`height`, rows of `stride` bytes in `data`. */
  scanout(width: number, height: number, stride: number, format: number, data: Uint8Array): void {
    this.checkFormat(format);
    checkSize('Scanout', width, height);
    if (stride < width * 4 || data.byteLength < stride * (height - 1) + width * 4)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `Scanout ${width}x${height} stride ${stride}: ${data.byteLength} bytes`,
      );
    this.releaseMemfd();
    this.counts.scanouts++;
    this.counts.bytes += data.byteLength;
    this.setPath('scanout', 'QEMU sends the pixels in its Scanout/Update messages; one copy into the pool buffers');
    if (this.source && (this.source.width !== width || this.source.height !== height)) this.hold();
    this.ensureImage(width, height);
    const img = this.image!;
    const rowBytes = width * 4;
    if (stride === rowBytes) img.set(data.subarray(0, rowBytes * height));
    else for (let y = 0; y < height; y++) img.set(data.subarray(y * stride, y * stride + rowBytes), y * rowBytes);
    this.announce();
    this.damage(null);
  }

  /** Update: a rectangle of the picture (rows of `stride` bytes in `data`). */
  update(x: number, y: number, w: number, h: number, stride: number, format: number, data: Uint8Array): void {
    this.checkFormat(format);
    checkSize('Update', x + w, y + h);
    this.unhold();
    if (x < 0 || y < 0 || w < 1 || h < 1 || stride < w * 4 || data.byteLength < stride * (h - 1) + w * 4)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `Update ${x},${y} ${w}x${h} stride ${stride}: ${data.byteLength} bytes`,
      );
    if (!this.image) return; // before any Scanout there is no picture to update
    this.counts.updates++;
    this.counts.bytes += data.byteLength;
    // QEMU announces some mode changes only through Width/Height (facts §5): grow to cover the update.
    if (x + w > this.source!.width || y + h > this.source!.height)
      this.resize(Math.max(this.source!.width, x + w), Math.max(this.source!.height, y + h));
    const img = this.image;
    const imgStride = this.source!.width * 4;
    for (let r = 0; r < h; r++) img.set(data.subarray(r * stride, r * stride + w * 4), (y + r) * imgStride + x * 4);
    this.damage({ x, y, width: w, height: h });
  }

  /** ScanoutMap: the picture lives in QEMU's memfd (owned by this console from now on). */
  scanoutMap(fd: NativeFd, offset: number, width: number, height: number, stride: number, format: number): void {
    try {
      this.checkFormat(format);
      checkSize('ScanoutMap', width, height);
    } catch (error) {
      fd.close();
      throw error;
    }
    const st = fd.stat();
    if (st.kind !== 'memfd') {
      fd.close();
      throw new SurfaceLinkError('E_HANDLE_TYPE', `ScanoutMap needs a memfd; QEMU sent a ${st.kind}`);
    }
    if (stride < width * 4 || (st.size ?? 0) < offset + stride * (height - 1) + width * 4) {
      fd.close();
      throw new SurfaceLinkError('E_OUT_OF_BOUNDS', `ScanoutMap ${width}x${height} stride ${stride} exceeds the memfd`);
    }
    this.releaseMemfd();
    this.image = null;
    this.counts.scanouts++;
    this.hold();
    const seals = sealsOf(fd);
    if (seals.shrink) {
      // Sealed against shrinking: viewers may map QEMU's own memory. Shared as it is, no copy.
      this.closeSurface();
      this.source = null;
      this.setPath(
        'map-shared',
        "QEMU's display memfd is sealed against shrinking: viewers map QEMU's own memory (no copy)",
      );
      const backing = { kind: 'memfd' as const, buffers: [{ fd, planes: [{ offset, stride }] }] };
      this.surface = this.server.adoptSurface({
        width,
        height,
        format: 'XRGB8888',
        backing,
        label: `qemu-${this.label}`,
      });
      fd.close(); // the surface holds its own duplicate
      this.shared = { width, height };
      this.restoreCursor();
      this.changed = false;
      this.onSurface(this.surface);
      this.damage(null);
      return;
    }
    this.memfd = { fd, offset, stride };
    this.setPath(
      'map-copy',
      'QEMU shares its display memory (ScanoutMap), but the memfd is not sealed against shrinking' +
        (seals.sealed ? ' and cannot be sealed (F_SEAL_SEAL is set)' : '') +
        ': a viewer mapping it could be crashed (SIGBUS) by QEMU or by any other viewer holding the fd, and ' +
        'so could QEMU itself, so the bridge copies the damage from it into sealed buffers with pread ' +
        '(one copy, none over D-Bus)',
    );
    this.setSource(width, height, (r, dst, dstStride) => {
      const m = this.memfd!;
      const from = m.offset + r.y * m.stride + r.x * 4;
      const to = r.y * dstStride + r.x * 4;
      // Same row pitch on both sides: one pread for the whole band (the bytes between the
      // rectangle's rows are the same pixels, from the same newest picture); else one per row.
      const ok =
        m.stride === dstStride
          ? m.fd.readRows(from, 0, (r.height - 1) * dstStride + r.width * 4, 1, dst, to, 0) === 1
          : m.fd.readRows(from, m.stride, r.width * 4, r.height, dst, to, dstStride) === r.height;
      if (!ok) throw new SurfaceLinkError('E_OUT_OF_BOUNDS', "QEMU's display memfd shrank under the bridge");
    });
    this.announce();
    this.damage(null);
  }

  /** UpdateMap: a rectangle of the mapped picture changed. */
  updateMap(x: number, y: number, w: number, h: number): void {
    const size = this.shared ?? (this.memfd ? this.source : null);
    if (!size) return;
    this.unhold();
    if (x < 0 || y < 0 || w < 1 || h < 1 || x + w > size.width || y + h > size.height)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `UpdateMap ${x},${y} ${w}x${h} outside ${size.width}x${size.height}`,
      );
    this.counts.updates++;
    this.damage({ x, y, width: w, height: h });
  }

  /** The console's size changed (QEMU's Width/Height properties), with or without a new Scanout. */
  resize(width: number, height: number): void {
    checkSize('a console size', width, height);
    if (!this.source || (width === this.source.width && height === this.source.height)) return;
    if (this.memfd) return; // a mapped picture's size is the ScanoutMap's; a new ScanoutMap follows
    const old = this.image!;
    const oldW = this.source.width;
    const oldH = this.source.height;
    this.ensureImage(width, height);
    // Keep what fits of the old picture until QEMU repaints.
    const rowBytes = Math.min(oldW, width) * 4;
    for (let y = 0; y < Math.min(oldH, height); y++)
      this.image!.set(old.subarray(y * oldW * 4, y * oldW * 4 + rowBytes), y * width * 4);
    this.announce();
    this.damage(null);
  }

  /**
   * ScanoutDMABUF (QEMU with `gl=on`): the picture is a dma-buf QEMU's GL renders into, shared as it
   * is (adoptSurface: `dmabuf.v1` for viewers that import it, a copy for `shm.v1` ones); its rows
   * run bottom-up unless `y0Top`. The fd is this console's (closed here; the surface keeps its own).
   */
  scanoutDmabuf(
    fd: NativeFd,
    width: number,
    height: number,
    stride: number,
    fourcc: number,
    modifier: bigint,
    y0Top: boolean,
  ): void {
    try {
      checkSize('ScanoutDMABUF', width, height);
      const format = formatByFourcc(fourcc);
      if (!format || format.planes.length !== 1)
        throw new SurfaceLinkError(
          'E_UNSUPPORTED_FORMAT',
          `ScanoutDMABUF of fourcc ${fourccToString(fourcc)}: not a single-plane format surfacelink knows`,
        );
      this.unhold();
      this.releaseMemfd();
      this.image = null;
      this.source = null;
      this.closeSurface();
      this.counts.scanouts++;
      try {
        this.surface = this.server.adoptSurface({
          width,
          height,
          format: format.name,
          backing: { kind: 'dmabuf', buffers: [{ fds: [fd], planes: [{ fdIndex: 0, offset: 0, stride }] }], modifier },
          orientation: y0Top ? 'top-down' : 'bottom-up',
          label: `qemu-${this.label}`,
        });
      } catch (error) {
        this.shared = null;
        this.setPath('none', `QEMU's GL scanout (a dma-buf) cannot be shared here: ${(error as Error).message}`);
        this.changed = false;
        throw error;
      }
    } finally {
      fd.close();
    }
    this.shared = { width, height };
    this.bottomUp = !y0Top;
    this.setPath(
      'dmabuf',
      "QEMU renders with GL and hands over its dma-buf: shared as it is (dmabuf.v1 viewers import QEMU's buffer; " +
        'shm.v1 viewers get a copy)',
    );
    this.changed = false;
    this.restoreCursor();
    this.onSurface(this.surface);
    this.damage(null);
  }

  /** UpdateDMABUF: QEMU rendered into the dma-buf again (damage in QEMU's coordinates). */
  updateDmabuf(x: number, y: number, w: number, h: number): void {
    if (this.path !== 'dmabuf' || !this.shared) return;
    if (x < 0 || y < 0 || w < 1 || h < 1 || x + w > this.shared.width || y + h > this.shared.height)
      throw new SurfaceLinkError(
        'E_BAD_GEOMETRY',
        `UpdateDMABUF ${x},${y} ${w}x${h} outside ${this.shared.width}x${this.shared.height}`,
      );
    this.counts.updates++;
    // Rows stored bottom-up: whether QEMU's rectangle counts rows as stored or as shown is not
    // pinned down by QEMU's interface description, so the whole surface counts as changed.
    this.damage(this.bottomUp ? null : { x, y, width: w, height: h });
  }

  /** Disable: the console shows nothing; its surface goes away (viewers get SURFACE_GONE). */
  disable(): void {
    this.unhold();
    this.releaseMemfd();
    this.image = null;
    this.source = null;
    this.shared = null;
    this.setPath('none', 'QEMU disabled the console');
    this.changed = false;
    this.closeSurface();
  }

  /** CursorDefine: the hardware cursor's image (ARGB32, as CursorImage wants it). */
  cursorDefine(width: number, height: number, hotX: number, hotY: number, data: Uint8Array): void {
    if (width < 1 || height < 1 || width > 256 || height > 256 || data.byteLength < width * height * 4)
      throw new SurfaceLinkError('E_BAD_GEOMETRY', `CursorDefine ${width}x${height} with ${data.byteLength} bytes`);
    this.cursorImage = {
      width,
      height,
      hotspotX: hotX,
      hotspotY: hotY,
      pixels: Uint8Array.from(data.subarray(0, width * height * 4)),
    };
    this.surface?.setCursor(this.cursorImage);
  }

  /** MouseSet: where the hardware cursor is, and whether it shows. */
  mouseSet(x: number, y: number, visible: boolean): void {
    this.cursorPos = { x, y, visible };
    this.surface?.moveCursor(x, y, visible);
  }

  /** Stops: the surface is closed, QEMU's memfd released. */
  close(): void {
    this.disable();
  }

  private checkFormat(format: number): void {
    if (format !== PIXMAN_X8R8G8B8 && format !== PIXMAN_A8R8G8B8)
      throw new SurfaceLinkError(
        'E_UNSUPPORTED_FORMAT',
        `pixman format 0x${format.toString(16)} (only x8r8g8b8/a8r8g8b8)`,
      );
  }

  private ensureImage(width: number, height: number): void {
    if (!this.image || !this.source || this.source.width !== width || this.source.height !== height) {
      const image = Buffer.alloc(width * height * 4);
      this.image = image;
      this.setSource(width, height, (r, dst, dstStride) => {
        const src = width * 4;
        for (let y = r.y; y < r.y + r.height; y++)
          dst.set(image.subarray(y * src + r.x * 4, y * src + (r.x + r.width) * 4), y * dstStride + r.x * 4);
      });
    }
  }

  /** A new picture size or origin: the surface gets a new generation (or is made). */
  private setSource(width: number, height: number, copy: Source['copy']): void {
    const resized = !this.source || this.source.width !== width || this.source.height !== height;
    this.source = { width, height, copy };
    if (!this.surface) {
      this.surface = this.server.createSurface({
        width,
        height,
        format: 'XRGB8888',
        buffers: 3,
        maxBuffers: 6,
        label: `qemu-${this.label}`,
      });
      this.restoreCursor();
      this.stale.clear();
      this.changed = false;
      this.onSurface(this.surface);
    } else if (resized) {
      this.surface.resize(width, height);
      this.stale.clear();
      this.changed = true;
    }
  }

  /** Sets how the pixels travel; a change is announced (announce) once the surface is in place. */
  private setPath(path: ConsolePath, reason: string): void {
    if (path !== this.path || reason !== this.reason) this.changed = true;
    this.path = path;
    this.reason = reason;
  }

  /** Tells the bridge when the size or the path changed on the same surface. */
  private announce(): void {
    if (!this.changed || !this.surface) return;
    this.changed = false;
    this.onSurface(this.surface);
  }

  /** Records changed pixels (null: everything) and schedules one present for the burst. */
  private damage(r: Rect | null): void {
    this.pending = addDamage(this.pending, r);
    for (const [b, s] of this.stale) this.stale.set(b, addDamage(s, r));
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private hold(): void {
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = setTimeout(() => this.unhold(), HOLD_MS);
  }

  /** QEMU drew into the new surface (or HOLD_MS passed): presents may go. */
  private unhold(): void {
    if (!this.holdTimer) return;
    clearTimeout(this.holdTimer);
    this.holdTimer = null;
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private restoreCursor(): void {
    if (this.cursorImage) this.surface?.setCursor(this.cursorImage);
    if (this.cursorPos) this.surface?.moveCursor(this.cursorPos.x, this.cursorPos.y, this.cursorPos.visible);
  }

  /**
   * map-shared: QEMU has already written the memory viewers map; a present only tells them. While
   * a viewer holds the one buffer it cannot be presented again: the damage waits (latest wins) and
   * goes out with QEMU's next update or when that viewer releases it (`retry`).
   */
  private flushShared(surface: SharedSurface): void {
    let b: SurfaceBuffer;
    try {
      b = surface.acquire();
    } catch {
      this.counts.coalesced++;
      return;
    }
    const damage = this.pending;
    this.pending = [];
    surface.present(b, damage === 'full' ? undefined : { damage });
    this.counts.presents++;
  }

  /** A viewer released a frame of this console's surface: a present that had to wait may go now. */
  retry(): void {
    if (this.pending === 'full' || this.pending.length > 0) this.flush();
  }

  private flush(): void {
    this.scheduled = false;
    if (this.holdTimer) return; // unhold() schedules the present
    const surface = this.surface;
    if (!surface || surface.closed || (this.pending !== 'full' && this.pending.length === 0)) return;
    if (this.shared) return this.flushShared(surface);
    const source = this.source;
    if (!source) return;
    let b: SurfaceBuffer;
    try {
      b = surface.acquire();
    } catch (error) {
      // Every buffer is held by a viewer past the pool's size: skip this present (latest wins; the
      // damage stays pending for the next one). QEMU is never made to wait.
      this.counts.coalesced++;
      this.logger('debug', `console ${this.index}: no free buffer (${(error as Error).message}); frame skipped`);
      return;
    }
    const missed = this.stale.get(b) ?? 'full';
    const dst = b.pixels();
    const stride = b.stride;
    try {
      if (missed === 'full') source.copy({ x: 0, y: 0, width: source.width, height: source.height }, dst, stride);
      else for (const r of missed) source.copy(r, dst, stride);
    } catch (error) {
      surface.discard(b);
      this.logger('warn', `console ${this.index}: ${(error as Error).message}`);
      return;
    }
    this.stale.set(b, []);
    const damage = this.pending;
    this.pending = [];
    surface.present(b, damage === 'full' ? undefined : { damage });
    this.counts.presents++;
  }

  private releaseMemfd(): void {
    this.memfd?.fd.close();
    this.memfd = null;
  }

  private closeSurface(): void {
    if (!this.surface) return;
    this.surface.close();
    this.surface = null;
    this.stale.clear();
    this.pending = [];
    this.onSurface(null);
  }
}

/** E_BAD_GEOMETRY unless 1..MAX_SIDE on each side (what QEMU sends is bounded before anything is allocated). */
function checkSize(what: string, width: number, height: number): void {
  if (!(width >= 1 && height >= 1 && width <= MAX_SIDE && height <= MAX_SIDE))
    throw new SurfaceLinkError('E_BAD_GEOMETRY', `${what}: ${width}x${height} (each side 1..${MAX_SIDE})`);
}

/** Adds a rectangle (null: everything) to a damage list, collapsing to 'full' past MAX_RECTS. */
function addDamage(list: Stale, r: Rect | null): Stale {
  if (list === 'full' || r === null) return 'full';
  if (list.length >= MAX_RECTS) return 'full';
  list.push({ x: r.x, y: r.y, width: r.width, height: r.height });
  return list;
}

/** Whether the memfd is sealed against shrinking / sealed for good. */
function sealsOf(fd: NativeFd): { shrink: boolean; sealed: boolean } {
  try {
    const s = fd.seals();
    return { shrink: (s & 0x0002) !== 0, sealed: (s & 0x0001) !== 0 };
  } catch {
    return { shrink: false, sealed: false };
  }
}
