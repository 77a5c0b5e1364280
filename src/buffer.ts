/**
 * SurfaceBuffer: one buffer of a producer's pool — a backing a mechanism allocated or adopted,
 * plus what the server tracks about it (who holds it, who knows its handles, its fence).
 * `exportAs` describes it for any mechanism's clients: the same memory where the backing has
 * a form for that mechanism, else a CPU copy (./mechanisms/cpu-copy.ts) where the mechanism
 * is a copy target, else a refusal with the reason.
 */
import { invalidArgument } from './errors.js';
import type { FormatInfo, PlaneLayout } from './formats.js';
import { bufferKey, closeHandle, type BufferKey, type OsHandle } from './handles.js';
import { CpuCopy } from './mechanisms/cpu-copy.js';
import type {
  BackingIdentity,
  BufferExport,
  Mechanism,
  PeerParams,
  ProducerBacking,
  Refusal,
} from './mechanisms/types.js';
import type { SharedSurface } from './surface.js';

/** One buffer of a surface's pool. Pixels are shared memory: what you write, clients see. */
export class SurfaceBuffer {
  /** @internal True while the producer has it (between acquire() and present()). */
  acquired = false;
  /** @internal Clients currently holding it. */
  holders = 0;
  /** @internal Release fences from clients that have not signalled yet; the buffer is not free until they have. */
  pendingFences = 0;
  /** @internal Sessions that already received its handles (SCANOUT). */
  readonly knownBy = new Set<object>();
  /** @internal Retired by a resize: destroyed once nobody holds it. */
  retired = false;
  /** @internal Bumped on every present of this buffer: what a copy is compared against. */
  contentVersion = 0;
  /** @internal The acquire fence given with the newest present of this buffer, until it is presented again. */
  fence: OsHandle | null = null;
  /** @internal The fence has signalled (or there is none): clients that cannot wait on fences may have it. */
  fenceReady = true;
  private closed = false;
  private copies: CpuCopy | null = null;
  /** The producer's name for this buffer (session 0: this process), as GL caches key on it. */
  readonly bufferKey: BufferKey;

  /** @internal Made by SharedSurface. */
  constructor(
    /** The surface whose pool it belongs to. */
    readonly surface: SharedSurface,
    /** Its id within the surface (what FRAME and RELEASE name). */
    readonly id: number,
    /** The surface generation it belongs to (bumped by resize/reconfigure). */
    readonly generation: number,
    /** Width in pixels. */
    readonly width: number,
    /** Height in pixels. */
    readonly height: number,
    /** Pixel format. */
    readonly format: FormatInfo,
    /** @internal The mechanism's buffer. */
    readonly store: ProducerBacking,
  ) {
    this.bufferKey = bufferKey(0, surface.id, id, generation);
  }

  /** Per-plane layout (offset, stride, size, width, height). */
  get planes(): readonly PlaneLayout[] {
    return this.store.planes;
  }

  /** Bytes per row of plane 0. */
  get stride(): number {
    return this.store.planes[0].stride;
  }

  /** For each plane, the index in `handles` of the object it lives in. */
  get planeHandles(): readonly number[] {
    return this.store.planeHandles;
  }

  /** The handles behind the planes (a memfd, or the dma-bufs), owned by the buffer; for GL import. Borrowed. */
  get handles(): readonly OsHandle[] {
    return this.store.handles;
  }

  /** The shared object behind the pixels (kind, inode, device, size). */
  get backing(): BackingIdentity {
    return this.store.identity;
  }

  /** The mechanism the buffer was made by ('shm.v1', 'dmabuf.v1', …). */
  get mechanism(): string {
    return this.store.mechanism;
  }

  /** The plane's bytes (rows of `planes[plane].stride` bytes). Valid until the buffer is retired. */
  pixels(plane = 0): Uint8Array {
    const view = this.store.views[plane];
    if (!view) throw invalidArgument('plane', `0..${this.store.views.length - 1}`, plane);
    return view;
  }

  /**
   * @internal This buffer described for `mechanism`'s clients: the same memory where the
   * backing has a form for it, else (copy targets) a shadow copy brought up to date, else why not.
   */
  exportAs(mechanism: Mechanism, peer: PeerParams): BufferExport | Refusal {
    const same = this.store.exportSame(mechanism.name, peer);
    if (same !== null && (!('refused' in same) || !mechanism.caps.copyTarget)) return same;
    if (!mechanism.caps.copyTarget)
      return { refused: `the buffers are ${this.store.mechanism}, not ${mechanism.name}` };
    this.copies ??= new CpuCopy(this.copySource());
    return this.copies.exportFor(mechanism);
  }

  /** @internal How `mechanism`'s clients get this buffer: 'same memory', 'copy', or why not at all. */
  sharing(mechanism: Mechanism, peer: PeerParams): { how: 'same memory' | 'copy' | 'refused'; reason: string } {
    const same = this.store.exportSame(mechanism.name, peer);
    if (same !== null && !('refused' in same))
      return { how: 'same memory', reason: `${mechanism.name} clients map the producer's own memory` };
    if (!mechanism.caps.copyTarget)
      return {
        how: 'refused',
        reason: same?.refused ?? `the buffers are ${this.store.mechanism}, not ${mechanism.name}`,
      };
    return {
      how: 'copy',
      reason:
        same?.refused ?? `${this.store.mechanism} buffers have no ${mechanism.name} form; its clients get a CPU copy`,
    };
  }

  private copySource() {
    // A live view of this buffer: the copy compares contentVersion at each export.
    const owner = this;
    return {
      backing: this.store,
      format: this.format,
      width: this.width,
      height: this.height,
      get label() {
        return owner.surface.label;
      },
      get contentVersion() {
        return owner.contentVersion;
      },
    };
  }

  /** @internal Frees the memory; called once nobody uses the buffer any more. */
  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.fence) closeHandle(this.fence);
    this.fence = null;
    this.copies?.close();
    this.copies = null;
    this.store.close();
  }

  /** True once the buffer's memory was freed. */
  get destroyed(): boolean {
    return this.closed;
  }
}
