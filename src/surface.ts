/**
 * SharedSurface and its buffer pool (the producer side).
 *
 * Vocabulary (as in wlroots): the producer *acquires* a free buffer, writes it and *presents*
 * it; each client that receives it *holds* it until it *releases* it. A buffer is free when the
 * producer does not have it, it is not the newest presented (front) buffer, and no client holds
 * it. The pool grows on demand up to `maxBuffers`, so acquire() never blocks; past that the
 * producer skips the frame (tryAcquire() returns null, acquire() throws E_POOL_EXHAUSTED): a client
 * is dropped for holding a frame only at its own release deadline, never to free a buffer. Buffers
 * beyond the configured count go back (RETIRE) once no acquire has needed them for `shrinkDelayMs`.
 *
 * A surface's buffers are made by one mechanism (allocated), or are someone else's buffers
 * adopted as they are (dma-bufs, memfds: see SurfaceServer.adoptSurface); an adopted pool can
 * neither grow nor be resized, only replaced (reconfigure with a new backing).
 */
import { SurfaceBuffer } from './buffer.js';
import { SurfaceLinkError, invalidArgument } from './errors.js';
import { MAX_DIMENSION, formatByName, type FormatInfo, type FormatName } from './formats.js';
import { assertFence } from './core/fences.js';
import { closeHandle, dupHandle, type OsHandle } from './handles.js';
import { MAX_CURSOR_SIDE, type CursorImage, type CursorState, type InputMode } from './input.js';
import { asOsHandle } from './mechanisms/external.js';
import type { ExternalBacking, ExternalDmabuf, Mechanism, ProducerBacking } from './mechanisms/types.js';
import type { NativeFd } from './native/index.js';
import type { Rect } from './protocol/codec.js';
import { MAX_DAMAGE_RECTS } from './protocol/constants.js';
import { validateDamage } from './protocol/validate.js';
import { monotonicMs } from './telemetry.js';

export { SurfaceBuffer } from './buffer.js';

/**
 * Which way rows run in memory: 'top-down' (row 0 is the top; the default) or 'bottom-up' (GL's,
 * QEMU's y0_top = false).
 */
export type Orientation = 'top-down' | 'bottom-up';

/** How the buffers are shown: orientation and the part of the buffer that is the picture. */
export interface Viewport {
  /** Default 'top-down'. */
  orientation?: Orientation;
  /** The visible rectangle inside the buffer (default: all of it); clients show only this. */
  visible?: Rect;
}

/** What `SurfaceServer.createSurface()` makes: size, format and the buffer pool. */
export interface SurfaceOptions extends Viewport {
  /** Width in pixels of every buffer (1..16384). */
  width: number;
  /** Height in pixels of every buffer (1..16384). */
  height: number;
  /** DRM format name; default XRGB8888. */
  format?: FormatName;
  /** Buffers allocated up front (≥ 2; default 3). */
  buffers?: number;
  /** The pool never grows past this (default 8, or `buffers` if that is more). */
  maxBuffers?: number;
  /**
   * Buffers the pool grew by beyond `buffers` are given back (RETIRE to the clients that know them,
   * then freed) once no acquire() has needed them for this long: default 2000 ms. It shrinks at most
   * once per this period, never below `buffers`, and only by buffers that are free.
   */
  shrinkDelayMs?: number;
  /** A label for the buffers (visible in /proc/<pid>/fd as memfd:<label>). */
  label?: string;
  /** Back the surface with this mechanism instead of the server's first (e.g. 'shm.v1'). */
  mechanism?: string;
  /**
   * A mechanism's own allocator (dmabuf.v1: 'gbm' | 'dma-heap' | 'udmabuf' | 'vgem') instead of the
   * first that works.
   */
  allocator?: string;
}

/** Buffers made by someone else, shared as they are (see SurfaceServer.adoptSurface). */
export interface AdoptSurfaceOptions extends Viewport {
  /** Width in pixels of every buffer (1..16384). */
  width: number;
  /** Height in pixels of every buffer (1..16384). */
  height: number;
  /** DRM format name; default XRGB8888. */
  format?: FormatName;
  /** The buffers: dma-bufs (each validated and duplicated) or memfds. One entry per buffer of the pool. */
  backing: ExternalBacking;
  /** A label for logs and the buffers' names; default `surfacelink-<id>`. */
  label?: string;
}

/** Dma-bufs made by someone else (the older form of adoptSurface with `backing.kind = 'dmabuf'`). */
export interface DmabufSurfaceOptions extends Viewport {
  /** Width in pixels of every buffer (1..16384). */
  width: number;
  /** Height in pixels of every buffer (1..16384). */
  height: number;
  /** DRM format name; default XRGB8888. */
  format?: FormatName;
  /** DRM modifier of every buffer (default LINEAR). */
  modifier?: bigint;
  /** One entry per buffer; each is validated (real dma-bufs, sizes cover every plane) and duplicated. */
  buffers: ExternalDmabuf[];
  /** A label for logs and the buffers' names; default `surfacelink-<id>`. */
  label?: string;
}

/** A new generation: size, viewport and (adopted surfaces) the new buffers. */
export interface ReconfigureOptions extends Viewport {
  /** New width in pixels; default the current one. */
  width?: number;
  /** New height in pixels; default the current one. */
  height?: number;
  /** Adopted surfaces: the buffers of the new generation (required when the size changes). */
  backing?: ExternalBacking;
}

/** How a frame is published: what changed, and GPU work still writing it. */
export interface PresentOptions {
  /** Changed rectangles since the previous present; omitted or empty: the whole surface. */
  damage?: readonly Rect[];
  /**
   * GPU work still writing the buffer: a fence (Linux: a sync_file; the server keeps its own
   * duplicate, you keep yours), or 'implicit' to take the fences already attached to the
   * buffer (dma-bufs). Clients that can wait on fences get it with the frame; for the others
   * the server waits first.
   */
  fence?: NativeFd | OsHandle | 'implicit';
}

/** What the server does for a surface; the surface never touches clients itself. */
export interface SurfaceHost {
  presentFrame(surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number): void;
  /** RETIRE to the clients that know the buffer; `why` (logged) when it is not a resize's doing. */
  retireBuffer(surface: SharedSurface, buffer: SurfaceBuffer, why?: string): void;
  /** RETIRE to the clients that know a free buffer the pool gives back (shrinking; not a new generation). */
  shrinkBuffer(surface: SharedSurface, buffer: SurfaceBuffer): void;
  /** The pool grew or shrank by `buffer` (for the 'pool' event and the log). */
  poolChanged(surface: SharedSurface, change: 'grew' | 'shrank', buffer: SurfaceBuffer): void;
  surfaceClosed(surface: SharedSurface): void;
  /** The cursor changed: its image (`shapeChanged`), or only its position or visibility. */
  cursorChanged(surface: SharedSurface, shapeChanged: boolean): void;
  /** The input mode changed. */
  inputModeChanged(surface: SharedSurface): void;
}

/** Why a buffer was retired when its memory shrank under the mapping. */
const TRUNCATED = 'its memory shrank under the mapping (another process truncated the shm object)';

/** Cursor positions are i32 on the wire (docs/protocol.md §3.19). */
const I32_MIN = -0x80000000;
const I32_MAX = 0x7fffffff;

/** How a surface gets its buffers: a mechanism allocating, or adopted buffers. */
interface PoolSource {
  mechanism: Mechanism;
  allocator?: string;
  /** Adopted: one entry per buffer. */
  adopted?: ExternalBacking;
}

let nextSurfaceId = 1;

/** A surface's buffer pool, as SharedSurface.poolStats reports it. Plain data. */
export interface PoolStats {
  /** Buffers in the pool now. */
  buffers: number;
  /** The count it shrinks back to: `SurfaceOptions.buffers` (adopted surfaces: all of theirs). */
  configured: number;
  /** The most it may have: `SurfaceOptions.maxBuffers`. */
  maxBuffers: number;
  /** The most it has had at once. */
  peak: number;
  /** Buffers in use now: acquired by the producer, the newest frame, held by a client, or busy. */
  inUse: number;
  /** Buffers added on demand beyond the initial ones, over the surface's life. */
  grown: number;
  /** Buffers given back (RETIRE) after `shrinkDelayMs` without being needed, over the surface's life. */
  shrunk: number;
  /** acquire()/tryAcquire() calls that found every buffer in use at `maxBuffers`: frames the producer skipped. */
  exhausted: number;
}

/**
 * A surface a SurfaceServer serves: a pool of buffers the producer acquires, writes and presents.
 * Every method runs on the event loop and never blocks; close() (or `using`) frees the buffers once
 * clients release them.
 */
export class SharedSurface {
  /** Unique in this process; what clients see in SCANOUT/FRAME. */
  readonly id: number;
  /** Pixel format of every buffer. */
  readonly format: FormatInfo;
  /** Its label (logs, buffer names). */
  readonly label: string;
  private widthValue: number;
  private heightValue: number;
  private generationValue = 1;
  private orientationValue: Orientation;
  private visibleValue: Rect;
  private readonly pool: SurfaceBuffer[] = [];
  /** Retired by a resize but still held by a client: destroyed on release, or on close(). */
  private readonly retiredHeld = new Set<SurfaceBuffer>();
  private nextBufferId = 1;
  private readonly maxBuffers: number;
  /** What the pool shrinks back to. */
  private readonly configuredBuffers: number;
  private readonly shrinkDelayMs: number;
  /** The most buffers an acquire() needed (in use + the one taken) since windowStartMs. */
  private demandPeak = 0;
  private windowStartMs = monotonicMs();
  private peakBuffers = 0;
  private grownCount = 0;
  private shrunkCount = 0;
  private exhaustedCount = 0;
  private closedValue = false;
  private source: PoolSource;
  /** @internal The newest presented buffer. */
  front: SurfaceBuffer | null = null;
  /** Sequence number of the newest present (1 for the first); it continues across resizes. */
  sequence = 0;
  /** @internal When the newest present happened (monotonic ns). */
  lastPresentNs = 0;
  /** @internal The same, as telemetry's monotonicMs() read it (the clock the server's stages use). */
  lastPresentMs = 0;
  private readonly fullDamage: Rect[] = [];
  private inputModeValue: InputMode = 'absolute';
  private cursorValue: Readonly<CursorState> = Object.freeze({ image: null, x: 0, y: 0, visible: false, serial: 0 });
  /** @internal The cursor was ever set or moved: cursor.v1 clients and taps are told about it. */
  cursorSet = false;

  /** @internal Use server.createSurface() or server.adoptSurface(). */
  constructor(
    private readonly host: SurfaceHost,
    mechanism: Mechanism,
    options: SurfaceOptions & { backing?: ExternalBacking },
  ) {
    checkSize(options.width, options.height);
    this.format = formatByName(options.format ?? 'XRGB8888');
    this.id = nextSurfaceId++;
    this.label = options.label ?? `surfacelink-${this.id}`;
    this.widthValue = options.width;
    this.heightValue = options.height;
    this.orientationValue = checkOrientation(options.orientation ?? 'top-down');
    this.visibleValue = checkVisible(options.visible, options.width, options.height);
    this.source = { mechanism, allocator: options.allocator, adopted: options.backing };
    if (options.backing) {
      const list: unknown = options.backing.buffers;
      const count = Array.isArray(list) ? list.length : -1;
      if (count < 1 || count > 64)
        throw invalidArgument('backing.buffers', 'a list of 1..64 buffers', Array.isArray(list) ? count : list);
      this.maxBuffers = count;
      this.configuredBuffers = count;
      this.shrinkDelayMs = 0;
      this.fillPool(count);
      this.peakBuffers = count;
      return;
    }
    const initial = options.buffers ?? 3;
    this.maxBuffers = options.maxBuffers ?? Math.max(8, initial);
    this.configuredBuffers = initial;
    this.shrinkDelayMs = options.shrinkDelayMs ?? 2000;
    if (!Number.isInteger(initial) || initial < 2 || initial > 64)
      throw invalidArgument('buffers', 'an integer in 2..64', initial);
    if (!Number.isInteger(this.maxBuffers) || this.maxBuffers < initial || this.maxBuffers > 64)
      throw invalidArgument('maxBuffers', `an integer in ${initial}..64`, this.maxBuffers);
    if (typeof this.shrinkDelayMs !== 'number' || !(this.shrinkDelayMs >= 0) || !Number.isFinite(this.shrinkDelayMs))
      throw invalidArgument('shrinkDelayMs', 'a number of milliseconds ≥ 0', this.shrinkDelayMs);
    this.fillPool(initial);
    this.peakBuffers = initial;
  }

  /**
   * A surface whose buffers are dma-bufs made by someone else (a GPU driver, QEMU, a vfio vGPU):
   * `server.adoptSurface({ backing: { kind: 'dmabuf', buffers, modifier } })`.
   */
  static fromDmabuf(
    server: { createDmabufSurface(options: DmabufSurfaceOptions): SharedSurface },
    options: DmabufSurfaceOptions,
  ): SharedSurface {
    return server.createDmabufSurface(options);
  }

  /** Width in pixels of the current generation's buffers. */
  get width(): number {
    return this.widthValue;
  }
  /** Height in pixels of the current generation's buffers. */
  get height(): number {
    return this.heightValue;
  }
  /** Bumped by every resize/reconfigure; buffers of older generations are retired. */
  get generation(): number {
    return this.generationValue;
  }
  /** Which way the rows run (carried to clients in SCANOUT). */
  get orientation(): Orientation {
    return this.orientationValue;
  }
  /** The visible rectangle (carried to clients in SCANOUT). */
  get visible(): Readonly<Rect> {
    return this.visibleValue;
  }
  /** True once close() was called. */
  get closed(): boolean {
    return this.closedValue;
  }
  /** Buffers currently in the pool. */
  get bufferCount(): number {
    return this.pool.length;
  }
  /** The pool now and over the surface's life: its size, bounds, growth, shrinking and exhaustion. */
  get poolStats(): PoolStats {
    let inUse = 0;
    for (let i = 0; i < this.pool.length; i++) if (this.pool[i] === this.front || !this.unused(this.pool[i])) inUse++;
    return {
      buffers: this.pool.length,
      configured: this.configuredBuffers,
      maxBuffers: this.maxBuffers,
      peak: this.peakBuffers,
      inUse,
      grown: this.grownCount,
      shrunk: this.shrunkCount,
      exhausted: this.exhaustedCount,
    };
  }
  /** The mechanism whose buffers back the surface. */
  get mechanism(): string {
    return this.source.mechanism.name;
  }
  /** The pool is someone else's buffers (adoptSurface): it can neither grow nor be resized. */
  get external(): boolean {
    return this.source.adopted !== undefined;
  }

  /**
   * Whether the producer wants absolute pointer positions ('absolute', the default: a tablet) or
   * relative motion ('relative': a grabbed mouse). Viewers learn it from `INPUT_MODE` (input.v1);
   * pointer events of the other kind are dropped by the server.
   */
  get inputMode(): InputMode {
    return this.inputModeValue;
  }

  /** Changes the input mode; input.v1 clients and frame taps are told (nothing happens if it is the same). */
  setInputMode(mode: InputMode): void {
    this.assertOpen();
    if (mode !== 'absolute' && mode !== 'relative') throw invalidArgument('mode', "'absolute' or 'relative'", mode);
    if (mode === this.inputModeValue) return;
    this.inputModeValue = mode;
    this.host.inputModeChanged(this);
  }

  /**
   * The cursor as viewers see it: a plane of its own, never drawn into the frames. A snapshot,
   * replaced (not changed) by setCursor() and moveCursor().
   */
  get cursor(): Readonly<CursorState> {
    return this.cursorValue;
  }

  /**
   * Sets the cursor image (ARGB8888, rows of width × 4 bytes; the pixels are copied) with its
   * hotspot, or none (null). Each change goes to every cursor.v1 client once, as a small memfd of
   * its own (CURSOR_SHAPE). An image wider or taller than MAX_CURSOR_SIDE (256), or a hotspot
   * outside it, is E_BAD_GEOMETRY.
   */
  setCursor(image: CursorImage | null): void {
    this.assertOpen();
    let copy: CursorImage | null = null;
    if (image !== null) {
      if (typeof image !== 'object') throw invalidArgument('image', 'a CursorImage or null', image);
      const { width, height, hotspotX, hotspotY, pixels } = image;
      for (const [name, v] of [
        ['width', width],
        ['height', height],
        ['hotspotX', hotspotX],
        ['hotspotY', hotspotY],
      ] as const)
        if (!Number.isInteger(v)) throw invalidArgument(`image.${name}`, 'an integer', v);
      if (width < 1 || height < 1 || width > MAX_CURSOR_SIDE || height > MAX_CURSOR_SIDE)
        throw new SurfaceLinkError(
          'E_BAD_GEOMETRY',
          `a cursor image is 1..${MAX_CURSOR_SIDE} pixels on each side; got ${width}x${height}`,
        );
      if (hotspotX < 0 || hotspotY < 0 || hotspotX >= width || hotspotY >= height)
        throw new SurfaceLinkError(
          'E_BAD_GEOMETRY',
          `the hotspot ${hotspotX},${hotspotY} is not inside the ${width}x${height} cursor image`,
        );
      const size = width * height * 4;
      if (!(pixels instanceof Uint8Array) || pixels.length < size)
        throw invalidArgument('image.pixels', `a Uint8Array of at least ${size} bytes (${width}x${height}x4)`, pixels);
      copy = Object.freeze({ width, height, hotspotX, hotspotY, pixels: pixels.slice(0, size) });
    } else if (this.cursorValue.image === null) {
      return; // no image before, none now: nothing changed
    }
    const c = this.cursorValue;
    this.cursorValue = Object.freeze({ image: copy, x: c.x, y: c.y, visible: c.visible, serial: (c.serial + 1) >>> 0 });
    this.cursorSet = true;
    this.host.cursorChanged(this, true);
  }

  /**
   * Moves the cursor's hotspot to (x, y), pixels of the picture as shown (0, 0 is the top-left
   * pixel of the visible rectangle), and shows or hides it. Clients get the newest position
   * (CURSOR_MOVE): moves are coalesced, a client that reads slowly skips stale ones.
   */
  moveCursor(x: number, y: number, visible = true): void {
    this.assertOpen();
    if (!Number.isInteger(x) || x < I32_MIN || x > I32_MAX) throw invalidArgument('x', 'a 32-bit integer', x);
    if (!Number.isInteger(y) || y < I32_MIN || y > I32_MAX) throw invalidArgument('y', 'a 32-bit integer', y);
    if (typeof visible !== 'boolean') throw invalidArgument('visible', 'a boolean', visible);
    const c = this.cursorValue;
    if (this.cursorSet && c.x === x && c.y === y && c.visible === visible) return;
    this.cursorValue = Object.freeze({ image: c.image, x, y, visible, serial: c.serial });
    this.cursorSet = true;
    this.host.cursorChanged(this, false);
  }

  private make(index: number): SurfaceBuffer {
    const { mechanism, adopted } = this.source;
    const request = { format: this.format, width: this.widthValue, height: this.heightValue, label: this.label };
    let store: ProducerBacking;
    if (adopted) {
      store = mechanism.adopt!({ ...request, backing: adopted, index });
    } else {
      store = mechanism.allocate!({
        ...request,
        ...(this.source.allocator !== undefined ? { allocator: this.source.allocator } : {}),
      });
    }
    return new SurfaceBuffer(
      this,
      this.nextBufferId++,
      this.generationValue,
      this.widthValue,
      this.heightValue,
      this.format,
      store,
    );
  }

  /** Fills the empty pool with `count` buffers; on failure frees the ones made and rethrows. */
  private fillPool(count: number): void {
    try {
      for (let i = 0; i < count; i++) this.pool.push(this.make(i));
    } catch (error) {
      for (const b of this.pool) b.destroy();
      this.pool.length = 0;
      throw error;
    }
  }

  /** Nobody uses it: not the producer, no client, no pending fence or GPU work. */
  private unused(b: SurfaceBuffer): boolean {
    // A buffer that still has GPU work or a client's release fence pending is busy: taking
    // it would make the producer's CPU access wait, and acquire() never waits.
    return !b.acquired && b.holders === 0 && b.pendingFences === 0 && !(b.store.fences?.busy() ?? false);
  }

  private take(b: SurfaceBuffer): SurfaceBuffer {
    b.acquired = true;
    b.store.beginCpuAccess('rw');
    return b;
  }

  /**
   * A free buffer for the producer to write. Never blocks: grows the pool when every buffer is
   * busy (up to `maxBuffers`). When even that is in use — clients hold the rest, each within its
   * release deadline — it throws E_POOL_EXHAUSTED: skip this frame (latest wins) and present the
   * next one; tryAcquire() says the same with null. No client is dropped to free a buffer.
   */
  acquire(): SurfaceBuffer {
    const b = this.tryAcquire();
    if (b) return b;
    throw new SurfaceLinkError(
      'E_POOL_EXHAUSTED',
      `all ${this.pool.length} buffers of surface ${this.id} (maxBuffers ${this.maxBuffers}) are acquired, the ` +
        `newest frame, or held by clients within their release deadlines; skip this frame`,
    );
  }

  /**
   * acquire(), but null instead of E_POOL_EXHAUSTED when every buffer is in use at `maxBuffers`:
   * the producer skips this frame (counted in `poolStats.exhausted`) and tries again at the next.
   */
  tryAcquire(): SurfaceBuffer | null {
    this.assertOpen();
    for (;;) {
      // The first free buffer: the pool's own ones before those it grew by, so those stay free to give back.
      let free: SurfaceBuffer | null = null;
      let inUse = 0;
      for (let i = 0; i < this.pool.length; i++) {
        const b = this.pool[i];
        if (b === this.front || !this.unused(b)) inUse++;
        else free ??= b;
      }
      if (inUse + 1 > this.demandPeak) this.demandPeak = inUse + 1;
      if (free) {
        if (this.retireTruncated(free)) continue;
        return this.take(free);
      }
      // Adopted buffers cannot be multiplied: the producer may rewrite the front buffer
      // (as a VM display does) once no client holds it.
      if (this.external && this.front && this.unused(this.front)) {
        const b = this.front;
        this.front = null;
        return this.take(b);
      }
      if (!this.external && this.pool.length < this.maxBuffers) {
        const b = this.make(this.pool.length);
        this.pool.push(b);
        this.grownCount++;
        if (this.pool.length > this.peakBuffers) this.peakBuffers = this.pool.length;
        this.host.poolChanged(this, 'grew', b);
        return this.take(b);
      }
      this.exhaustedCount++;
      return null;
    }
  }

  /**
   * @internal Gives back buffers beyond the configured count that no acquire() needed during the
   * last `shrinkDelayMs` (the server calls this from its timer): each is free (not the front, not
   * held, not busy), retired (RETIRE to the clients that know it) and freed. At most once per period.
   */
  trim(now = monotonicMs()): void {
    if (this.closedValue || this.external || now - this.windowStartMs < this.shrinkDelayMs) return;
    const target = Math.max(this.configuredBuffers, this.demandPeak);
    this.windowStartMs = now;
    this.demandPeak = 0;
    for (let i = this.pool.length - 1; i >= 0 && this.pool.length > target; i--) {
      const b = this.pool[i];
      if (b === this.front || !this.unused(b)) continue;
      this.pool.splice(i, 1);
      b.retired = true;
      this.host.shrinkBuffer(this, b);
      this.shrunkCount++;
      this.collect(b);
      this.host.poolChanged(this, 'shrank', b);
    }
  }

  /**
   * Retires a buffer whose memory another process shrank (a posix-shm object truncated through the
   * fd a client holds; our mapping is guarded, so the producer did not crash): never reused, RETIRE
   * to the clients that know it, freed once nobody holds it. acquire() makes a new one as needed.
   */
  private retireTruncated(b: SurfaceBuffer): boolean {
    if (this.external || !b.store.truncated?.()) return false;
    const i = this.pool.indexOf(b);
    if (i >= 0) this.pool.splice(i, 1);
    if (this.front === b) this.front = null;
    b.retired = true;
    this.host.retireBuffer(this, b, TRUNCATED);
    this.retiredHeld.add(b);
    this.collect(b);
    return true;
  }

  /**
   * present() of a buffer whose memory shrank since acquire(): what the producer wrote (what the
   * guard's zero pages now hold) is copied to a new buffer, which is presented in its place; the
   * shrunk one is retired.
   */
  private replaceTruncated(old: SurfaceBuffer): SurfaceBuffer {
    const fresh = this.make(this.pool.length);
    old.store.views.forEach((view, i) => fresh.store.views[i]?.set(view.subarray(0, fresh.store.views[i].length)));
    const i = this.pool.indexOf(old);
    if (i >= 0) this.pool[i] = fresh;
    else this.pool.push(fresh);
    old.store.endCpuAccess('rw');
    old.acquired = false;
    old.retired = true;
    this.host.retireBuffer(this, old, TRUNCATED);
    this.retiredHeld.add(old);
    this.collect(old);
    return this.take(fresh);
  }

  /** Gives an acquired buffer back without presenting it. */
  discard(buffer: SurfaceBuffer): void {
    this.assertOwnAcquired(buffer);
    buffer.store.endCpuAccess('rw');
    buffer.acquired = false;
    if (buffer.retired) this.collect(buffer);
  }

  /** Publishes `buffer` as the newest frame. Damage outside the surface is an error. */
  present(buffer: SurfaceBuffer, options?: PresentOptions): void {
    this.assertOwnAcquired(buffer);
    if (buffer.retired) {
      buffer.store.endCpuAccess('rw');
      buffer.acquired = false;
      this.collect(buffer);
      throw new SurfaceLinkError(
        'E_INVALID_ARGUMENT',
        `buffer ${buffer.id} belongs to generation ${buffer.generation}; the surface was resized ` +
          `(generation ${this.generationValue})`,
      );
    }
    const damage = options?.damage ?? this.fullDamage;
    if (damage.length > 0) validateDamage(damage, this.widthValue, this.heightValue);
    // Its memory shrank since acquire() (a client truncated the shm object): present a copy instead.
    if (!this.external && buffer.store.truncated?.()) buffer = this.replaceTruncated(buffer);
    // With no fence given, GPU work still attached to the buffer becomes the fence: nobody may
    // start CPU access on it before it signals (that would block the JS thread).
    const fences = buffer.store.fences;
    const fence =
      options?.fence !== undefined ? this.takeFence(buffer, options.fence) : fences?.busy() ? fences.tryExport() : null;
    try {
      buffer.store.endCpuAccess('rw');
    } catch (error) {
      if (fence) closeHandle(fence);
      throw error;
    }
    buffer.acquired = false;
    buffer.contentVersion++;
    if (buffer.fence) closeHandle(buffer.fence);
    buffer.fence = fence;
    this.front = buffer;
    this.sequence++;
    // More rectangles than a FRAME can carry: send the whole surface instead.
    this.host.presentFrame(this, buffer, damage, damage.length > MAX_DAMAGE_RECTS ? 0 : damage.length);
  }

  private takeFence(buffer: SurfaceBuffer, fence: NativeFd | OsHandle | 'implicit'): OsHandle {
    if (fence === 'implicit') {
      const fences = buffer.store.fences;
      if (!fences)
        throw new SurfaceLinkError(
          'E_INVALID_ARGUMENT',
          `fence 'implicit' needs buffers that carry implicit fences (dmabuf.v1); this surface is ${this.mechanism}`,
        );
      return fences.export();
    }
    const handle = asOsHandle(fence);
    assertFence(handle, 'a fence');
    return dupHandle(handle);
  }

  /** Changes the size: a new generation; old buffers are retired once nobody holds them. */
  resize(width: number, height: number, viewport?: Viewport): void {
    this.reconfigure({ ...viewport, width, height });
  }

  /**
   * Starts a new generation: a new size, orientation or visible rectangle, and for adopted
   * surfaces new buffers. Clients get RETIRE for every buffer they know, then the new buffers'
   * SCANOUT before their first FRAME. `sequence` continues. Omitted viewport fields reset to
   * their defaults (top-down, all of the buffer).
   */
  reconfigure(options: ReconfigureOptions): void {
    this.assertOpen();
    const width = options.width ?? this.widthValue;
    const height = options.height ?? this.heightValue;
    checkSize(width, height);
    if (this.external) {
      if (!options.backing)
        throw new SurfaceLinkError(
          'E_INVALID_ARGUMENT',
          'an adopted surface gets new buffers with each new generation: pass backing',
        );
      if (options.backing.kind !== this.source.adopted!.kind)
        throw invalidArgument('backing.kind', this.source.adopted!.kind, options.backing.kind);
      if (options.backing.buffers.length !== this.maxBuffers)
        throw invalidArgument(
          'backing.buffers',
          `${this.maxBuffers} buffers (the pool's size)`,
          options.backing.buffers.length,
        );
    } else if (options.backing) {
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'backing is only for adopted surfaces');
    }
    const orientation = checkOrientation(options.orientation ?? 'top-down');
    const visible = checkVisible(options.visible, width, height);
    const old = this.pool.splice(0);
    const previous = {
      width: this.widthValue,
      height: this.heightValue,
      generation: this.generationValue,
      source: this.source,
    };
    this.generationValue++;
    this.widthValue = width;
    this.heightValue = height;
    if (options.backing) this.source = { ...this.source, adopted: options.backing };
    try {
      this.fillPool(this.external ? this.maxBuffers : Math.min(Math.max(old.length, 2), 3));
    } catch (error) {
      // Nothing changed for clients: the old generation stays.
      this.pool.push(...old);
      this.generationValue = previous.generation;
      this.widthValue = previous.width;
      this.heightValue = previous.height;
      this.source = previous.source;
      throw error;
    }
    this.orientationValue = orientation;
    this.visibleValue = visible;
    this.front = null;
    for (const b of old) {
      b.retired = true;
      this.host.retireBuffer(this, b);
      this.retiredHeld.add(b);
      this.collect(b);
    }
  }

  /** @internal Destroys a retired buffer once neither producer nor clients use it. */
  collect(buffer: SurfaceBuffer): void {
    if (buffer.retired && !buffer.acquired && buffer.holders === 0) {
      buffer.destroy();
      this.retiredHeld.delete(buffer);
    }
  }

  /** @internal All buffers of the current generation, for the server's bookkeeping. */
  buffers(): readonly SurfaceBuffer[] {
    return this.pool;
  }

  /** Tells clients the surface is gone (SURFACE_GONE) and frees its buffers once released. Idempotent. */
  close(): void {
    if (this.closedValue) return;
    this.closedValue = true;
    this.host.surfaceClosed(this);
    for (const b of this.pool) b.destroy();
    for (const b of this.retiredHeld) b.destroy();
    this.pool.length = 0;
    this.retiredHeld.clear();
    this.front = null;
  }

  /** Same as close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  private assertOpen(): void {
    if (this.closedValue) throw new SurfaceLinkError('E_CLOSED', `surface ${this.id} is closed`);
  }

  private assertOwnAcquired(buffer: SurfaceBuffer): void {
    this.assertOpen();
    if (!(buffer instanceof SurfaceBuffer) || buffer.surface !== this)
      throw invalidArgument('buffer', `a buffer of surface ${this.id}`, buffer);
    if (!buffer.acquired)
      throw new SurfaceLinkError(
        'E_INVALID_ARGUMENT',
        `buffer ${buffer.id} was not acquired (present each acquired buffer once)`,
      );
  }
}

function checkSize(width: number, height: number): void {
  if (!Number.isInteger(width) || width < 1 || width > MAX_DIMENSION)
    throw invalidArgument('width', `an integer in 1..${MAX_DIMENSION}`, width);
  if (!Number.isInteger(height) || height < 1 || height > MAX_DIMENSION)
    throw invalidArgument('height', `an integer in 1..${MAX_DIMENSION}`, height);
}

function checkOrientation(value: Orientation): Orientation {
  if (value !== 'top-down' && value !== 'bottom-up')
    throw invalidArgument('orientation', "'top-down' or 'bottom-up'", value);
  return value;
}

function checkVisible(visible: Rect | undefined, width: number, height: number): Rect {
  if (visible === undefined) return { x: 0, y: 0, width, height };
  const { x, y, width: w, height: h } = visible;
  const ok =
    [x, y, w, h].every((v) => Number.isInteger(v) && v >= 0) && w >= 1 && h >= 1 && x + w <= width && y + h <= height;
  if (!ok) throw invalidArgument('visible', `a rectangle inside ${width}x${height}`, JSON.stringify(visible));
  return { x, y, width: w, height: h };
}
