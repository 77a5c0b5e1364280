/**
 * SharedSurface and its buffer pool (the producer side).
 *
 * Vocabulary (as in wlroots): the producer *acquires* a free buffer, writes it and
 * *presents* it; each client that receives it *holds* it until it *releases* it. A buffer
 * is free when the producer does not have it, it is not the newest presented (front)
 * buffer, and no client holds it. The pool grows on demand up to `maxBuffers`, so
 * acquire() never blocks; past that the client holding the oldest frame is dropped.
 */
import { allocateMemfd, planeViews, shmExport, unmap } from './backends/shm.js';
import type { Backend, BackingIdentity, BufferExport, ExportedBuffer } from './backends/types.js';
import type { NativeFd } from './native.js';
import { assertSyncFile, exportImplicitFence, tryExportImplicitFence } from './backends/fences.js';
import { adoptDmabufs, dmabufBackend, type AllocatorName, type ExternalDmabuf } from './backends/dmabuf.js';
import { SurfaceLinkError, invalidArgument } from './errors.js';
import { MAX_DIMENSION, formatByName, planeMinStride, type FormatInfo, type FormatName, type PlaneLayout } from './formats.js';
import type { Rect } from './protocol/codec.js';
import { MAX_DAMAGE_RECTS } from './protocol/constants.js';
import { validateDamage } from './protocol/validate.js';

export interface SurfaceOptions {
  width: number;
  height: number;
  /** DRM format name; default XRGB8888. */
  format?: FormatName;
  /** Buffers allocated up front (≥ 2; default 3). */
  buffers?: number;
  /** The pool never grows past this (default 8). */
  maxBuffers?: number;
  /** A label for the buffers (visible in /proc/<pid>/fd as memfd:<label>). */
  label?: string;
  /** Back the surface with this mechanism instead of the server's first (e.g. 'shm.v1'). */
  mechanism?: string;
  /** dmabuf.v1: force one allocator ('gbm' | 'dma-heap' | 'udmabuf' | 'vgem') instead of the first that works. */
  allocator?: AllocatorName;
}

/** Dma-bufs made by someone else, adopted as a surface's buffers (see SharedSurface.fromDmabuf). */
export interface DmabufSurfaceOptions {
  width: number;
  height: number;
  format?: FormatName;
  /** DRM modifier of every buffer (default LINEAR). */
  modifier?: bigint;
  /** One entry per buffer; each is validated (real dma-bufs, sizes cover every plane) and duplicated. */
  buffers: ExternalDmabuf[];
  label?: string;
}

export interface PresentOptions {
  /** Changed rectangles since the previous present; omitted or empty: the whole surface. */
  damage?: readonly Rect[];
  /**
   * GPU work still writing the buffer: a sync_file (the server keeps its own duplicate; you
   * keep yours), or 'implicit' to take the fences already attached to the dma-buf. Clients
   * that can wait on fences get it with the frame; for the others the server waits first.
   */
  fence?: NativeFd | 'implicit';
}

/** What the server does for a surface; the surface never touches clients itself. */
export interface SurfaceHost {
  presentFrame(surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number): void;
  retireBuffer(surface: SharedSurface, buffer: SurfaceBuffer): void;
  surfaceClosed(surface: SharedSurface): void;
  /** Frees a buffer of `surface` by dropping the client holding the oldest frame; false if none. */
  reclaimBuffer(surface: SharedSurface): boolean;
}

/** One buffer of a surface's pool. Pixels are shared memory: what you write, clients see. */
export class SurfaceBuffer {
  /** True while the producer has it (between acquire() and present()). */
  acquired = false;
  /** Clients currently holding it. */
  holders = 0;
  /** Release fences from clients that have not signalled yet; the buffer is not free until they have. */
  pendingFences = 0;
  /** Clients that already received its handles (SCANOUT). Keyed by client session. */
  readonly knownBy = new Set<object>();
  retired = false;
  /** Bumped on every present of this buffer: what a shadow copy is compared against. */
  contentVersion = 0;
  /** The acquire fence given with the newest present of this buffer, until it is presented again. */
  fence: NativeFd | null = null;
  /** The fence has signalled (or there is none): clients that cannot wait on fences may have it. */
  fenceReady = true;
  private closed = false;
  private shadow: { fd: NativeFd; memory: ArrayBuffer; views: Uint8Array[]; export: BufferExport; version: number } | null = null;

  constructor(
    readonly surface: SharedSurface,
    readonly id: number,
    readonly generation: number,
    readonly width: number,
    readonly height: number,
    readonly format: FormatInfo,
    /** @internal */ readonly exported: ExportedBuffer,
  ) {}

  get planes(): readonly PlaneLayout[] {
    return this.exported.planes;
  }

  /** Bytes per row of plane 0. */
  get stride(): number {
    return this.exported.planes[0].stride;
  }

  /** The fds behind the planes (a memfd, or the dma-bufs), owned by the buffer; for GL import. Borrowed. */
  get handles(): readonly NativeFd[] {
    return this.exported.handles;
  }

  /** The shared object behind the pixels (kind, inode, device, size). */
  get backing(): BackingIdentity {
    return this.exported.identity;
  }

  /** The plane's bytes (rows of `planes[plane].stride` bytes). Valid until the buffer is retired. */
  pixels(plane = 0): Uint8Array {
    const view = this.exported.views[plane];
    if (!view) throw invalidArgument('plane', `0..${this.exported.views.length - 1}`, plane);
    return view;
  }

  /**
   * @internal The shm.v1 description of this buffer for a client that cannot import its
   * own mechanism: the same memory when the backend has a memfd (zero-copy), otherwise a
   * shadow memfd brought up to date by a copy (once per present, shared by every such client).
   */
  shmExport(): BufferExport {
    if (this.exported.shm) return this.exported.shm;
    if (!this.shadow) {
      const m = allocateMemfd(this.format, this.width, this.height, `${this.surface.label}-shadow`);
      this.shadow = { fd: m.fd, memory: m.memory, views: planeViews(m.memory, m.planes), export: shmExport(m.fd, m.planes), version: -1 };
    }
    if (this.shadow.version !== this.contentVersion) {
      const shadowPlanes = this.shadow.export.planes;
      this.exported.beginCpuAccess('read');
      try {
        for (let i = 0; i < this.shadow.views.length; i++) {
          const src = this.exported.planes[i];
          const dst = shadowPlanes[i].layout;
          copyPlane(this.exported.views[i], src.stride, this.shadow.views[i], dst.stride, planeMinStride(this.format, i, this.width), dst.height);
        }
      } finally {
        this.exported.endCpuAccess('read');
      }
      this.shadow.version = this.contentVersion;
    }
    return this.shadow.export;
  }

  /** @internal Frees the memory; called once nobody uses the buffer any more. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.fence?.close();
    this.fence = null;
    if (this.shadow) {
      unmap(this.shadow.memory);
      this.shadow.fd.close();
      this.shadow = null;
    }
    this.exported.close();
  }

  get destroyed(): boolean {
    return this.closed;
  }
}

/** Copies `rows` rows of `rowBytes` between two layouts (one set() when the strides agree). */
function copyPlane(src: Uint8Array, srcStride: number, dst: Uint8Array, dstStride: number, rowBytes: number, rows: number): void {
  if (srcStride === dstStride) {
    dst.set(src.subarray(0, Math.min(src.length, dst.length)));
    return;
  }
  for (let r = 0; r < rows; r++) dst.set(src.subarray(r * srcStride, r * srcStride + rowBytes), r * dstStride);
}

let nextSurfaceId = 1;

export class SharedSurface {
  readonly id: number;
  readonly format: FormatInfo;
  readonly label: string;
  private widthValue: number;
  private heightValue: number;
  private generationValue = 1;
  private readonly pool: SurfaceBuffer[] = [];
  /** Retired by a resize but still held by a client: destroyed on release, or on close(). */
  private readonly retiredHeld = new Set<SurfaceBuffer>();
  private nextBufferId = 1;
  private readonly maxBuffers: number;
  private closedValue = false;
  /** The newest presented buffer. */
  front: SurfaceBuffer | null = null;
  /** Sequence number of the newest present (1 for the first). */
  sequence = 0;
  /** When the newest present happened (monotonic ns). */
  lastPresentNs = 0;
  private readonly fullDamage: Rect[] = [];

  private readonly allocator: AllocatorName | undefined;
  /** The pool is the producer's own dma-bufs: it can neither grow nor be resized. */
  readonly external: boolean;

  /** @internal Use server.createSurface() or SharedSurface.fromDmabuf(). */
  constructor(
    private readonly host: SurfaceHost,
    private readonly backend: Backend,
    options: SurfaceOptions,
    adopted?: { modifier: bigint; buffers: ExternalDmabuf[] },
  ) {
    checkSize(options.width, options.height);
    this.format = formatByName(options.format ?? 'XRGB8888');
    this.id = nextSurfaceId++;
    this.label = options.label ?? `surfacelink-${this.id}`;
    this.widthValue = options.width;
    this.heightValue = options.height;
    this.allocator = options.allocator;
    this.external = adopted !== undefined;
    if (adopted) {
      if (adopted.buffers.length < 1 || adopted.buffers.length > 64) throw invalidArgument('buffers', '1..64 dma-buf sets', adopted.buffers.length);
      this.maxBuffers = adopted.buffers.length;
      this.fillPool(adopted.buffers.length, (i) => this.wrap(adoptDmabufs(this.format, this.widthValue, this.heightValue, adopted.modifier, adopted.buffers[i])));
      return;
    }
    const initial = options.buffers ?? 3;
    this.maxBuffers = options.maxBuffers ?? Math.max(8, initial);
    if (!Number.isInteger(initial) || initial < 2 || initial > 64) throw invalidArgument('buffers', 'an integer in 2..64', initial);
    if (!Number.isInteger(this.maxBuffers) || this.maxBuffers < initial || this.maxBuffers > 64)
      throw invalidArgument('maxBuffers', `an integer in ${initial}..64`, this.maxBuffers);
    this.fillPool(initial);
  }

  /**
   * A surface whose buffers are dma-bufs made by someone else (a GPU driver, QEMU, a vfio
   * vGPU), served to every client like any other: dmabuf.v1 clients get the fds, shm.v1
   * clients a copy. The pool is exactly these buffers.
   */
  static fromDmabuf(server: { createDmabufSurface(options: DmabufSurfaceOptions): SharedSurface }, options: DmabufSurfaceOptions): SharedSurface {
    return server.createDmabufSurface(options);
  }

  get width(): number {
    return this.widthValue;
  }
  get height(): number {
    return this.heightValue;
  }
  get generation(): number {
    return this.generationValue;
  }
  get closed(): boolean {
    return this.closedValue;
  }
  /** Buffers currently in the pool. */
  get bufferCount(): number {
    return this.pool.length;
  }
  get mechanism(): string {
    return this.backend.name;
  }

  private allocate(): SurfaceBuffer {
    const exported =
      this.backend === dmabufBackend
        ? dmabufBackend.allocateWith(this.format, this.widthValue, this.heightValue, this.label, { allocator: this.allocator })
        : this.backend.allocate(this.format, this.widthValue, this.heightValue, this.label);
    return this.wrap(exported);
  }

  /** Fills the empty pool with `count` buffers; on failure frees the ones made and rethrows. */
  private fillPool(count: number, make: (i: number) => SurfaceBuffer = () => this.allocate()): void {
    try {
      for (let i = 0; i < count; i++) this.pool.push(make(i));
    } catch (error) {
      for (const b of this.pool) b.destroy();
      this.pool.length = 0;
      throw error;
    }
  }

  private wrap(exported: ExportedBuffer): SurfaceBuffer {
    return new SurfaceBuffer(this, this.nextBufferId++, this.generationValue, this.widthValue, this.heightValue, this.format, exported);
  }

  /** Nobody uses it: not the producer, no client, no pending fence or GPU work. */
  private unused(b: SurfaceBuffer): boolean {
    // A buffer that still has GPU work or a client's release fence pending is busy: taking
    // it would make the producer's CPU access wait, and acquire() never waits.
    return !b.acquired && b.holders === 0 && b.pendingFences === 0 && !(b.exported.busy?.() ?? false);
  }

  private isFree(b: SurfaceBuffer): boolean {
    return b !== this.front && this.unused(b);
  }

  private take(b: SurfaceBuffer): SurfaceBuffer {
    b.acquired = true;
    b.exported.beginCpuAccess('rw');
    return b;
  }

  /**
   * A free buffer for the producer to write. Never blocks: grows the pool when every
   * buffer is busy, and past `maxBuffers` drops the client holding the oldest frame.
   */
  acquire(): SurfaceBuffer {
    this.assertOpen();
    for (;;) {
      for (const b of this.pool) if (this.isFree(b)) return this.take(b);
      // Adopted buffers cannot be multiplied: the producer may rewrite the front buffer
      // (as a VM display does) once no client holds it.
      if (this.external && this.front && this.unused(this.front)) {
        const b = this.front;
        this.front = null;
        return this.take(b);
      }
      if (this.pool.length < this.maxBuffers) {
        const b = this.allocate();
        this.pool.push(b);
        return this.take(b);
      }
      if (!this.host.reclaimBuffer(this))
        throw new SurfaceLinkError('E_POOL_EXHAUSTED', `all ${this.pool.length} buffers are acquired by the producer or are the newest frame; present or discard some`);
    }
  }

  /** Gives an acquired buffer back without presenting it. */
  discard(buffer: SurfaceBuffer): void {
    this.assertOwnAcquired(buffer);
    buffer.exported.endCpuAccess('rw');
    buffer.acquired = false;
    if (buffer.retired) this.collect(buffer);
  }

  /** Publishes `buffer` as the newest frame. Damage outside the surface is an error. */
  present(buffer: SurfaceBuffer, options?: PresentOptions): void {
    this.assertOwnAcquired(buffer);
    if (buffer.retired) {
      buffer.exported.endCpuAccess('rw');
      buffer.acquired = false;
      this.collect(buffer);
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', `buffer ${buffer.id} belongs to generation ${buffer.generation}; the surface was resized (generation ${this.generationValue})`);
    }
    const damage = options?.damage ?? this.fullDamage;
    if (damage.length > 0) validateDamage(damage, this.widthValue, this.heightValue);
    // With no fence given, GPU work still attached to a dma-buf becomes the fence: nobody may
    // start CPU access on it before it signals (that would block the JS thread).
    const fence =
      options?.fence !== undefined ? this.takeFence(buffer, options.fence)
      : buffer.exported.busy?.() ? tryExportImplicitFence(buffer.exported.dmabuf as NativeFd)
      : null;
    try {
      buffer.exported.endCpuAccess('rw');
    } catch (error) {
      fence?.close();
      throw error;
    }
    buffer.acquired = false;
    buffer.contentVersion++;
    buffer.fence?.close();
    buffer.fence = fence;
    this.front = buffer;
    this.sequence++;
    // More rectangles than a FRAME can carry: send the whole surface instead.
    this.host.presentFrame(this, buffer, damage, damage.length > MAX_DAMAGE_RECTS ? 0 : damage.length);
  }

  private takeFence(buffer: SurfaceBuffer, fence: NativeFd | 'implicit'): NativeFd {
    if (fence === 'implicit') {
      if (!buffer.exported.dmabuf) throw new SurfaceLinkError('E_INVALID_ARGUMENT', `fence 'implicit' needs a dma-buf backed surface; this one is ${this.backend.name}`);
      return exportImplicitFence(buffer.exported.dmabuf);
    }
    assertSyncFile(fence, 'a fence');
    return fence.dup();
  }

  /** Changes the size: a new generation; old buffers are retired once nobody holds them. */
  resize(width: number, height: number): void {
    this.assertOpen();
    if (this.external) throw new SurfaceLinkError('E_INVALID_ARGUMENT', 'a surface of adopted dma-bufs cannot be resized; create a new one');
    checkSize(width, height);
    this.generationValue++;
    this.widthValue = width;
    this.heightValue = height;
    this.front = null;
    const old = this.pool.splice(0);
    for (const b of old) {
      b.retired = true;
      this.host.retireBuffer(this, b);
      this.retiredHeld.add(b);
      this.collect(b);
    }
    for (let i = 0; i < Math.min(old.length, 3); i++) this.pool.push(this.allocate());
  }

  /** @internal Destroys a retired buffer once neither producer nor clients use it. */
  collect(buffer: SurfaceBuffer): void {
    if (buffer.retired && !buffer.acquired && buffer.holders === 0) {
      buffer.destroy();
      this.retiredHeld.delete(buffer);
    }
  }

  /** @internal All buffers, for the server's bookkeeping. */
  buffers(): readonly SurfaceBuffer[] {
    return this.pool;
  }

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

  [Symbol.dispose](): void {
    this.close();
  }

  private assertOpen(): void {
    if (this.closedValue) throw new SurfaceLinkError('E_CLOSED', `surface ${this.id} is closed`);
  }

  private assertOwnAcquired(buffer: SurfaceBuffer): void {
    this.assertOpen();
    if (!(buffer instanceof SurfaceBuffer) || buffer.surface !== this) throw invalidArgument('buffer', `a buffer of surface ${this.id}`, buffer);
    if (!buffer.acquired) throw new SurfaceLinkError('E_INVALID_ARGUMENT', `buffer ${buffer.id} was not acquired (present each acquired buffer once)`);
  }
}

function checkSize(width: number, height: number): void {
  if (!Number.isInteger(width) || width < 1 || width > MAX_DIMENSION) throw invalidArgument('width', `an integer in 1..${MAX_DIMENSION}`, width);
  if (!Number.isInteger(height) || height < 1 || height > MAX_DIMENSION) throw invalidArgument('height', `an integer in 1..${MAX_DIMENSION}`, height);
}
