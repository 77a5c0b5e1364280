/**
 * Frame: one received frame, and the imported buffer it shows. Vocabulary as in wlroots: a
 * client *holds* a frame from its `frame` event until it *releases* it; the producer never
 * waits for that, but drops a client that holds one past its deadline.
 */
import { SurfaceLinkError, invalidArgument } from './errors.js';
import type { FormatInfo, PlaneLayout } from './formats.js';
import type { BufferKey, OsHandle } from './handles.js';
import type { BackingIdentity, ConsumerBuffer } from './mechanisms/types.js';
import type { NativeFd } from './native/index.js';
import type { Rect } from './protocol/codec.js';
import type { Orientation } from './surface.js';

/** @internal An imported buffer of the server's, shared by every frame that shows it. */
export class ImportedSurfaceBuffer {
  held = false;
  retired = false;
  /** Cancels the wait for this buffer's acquire fence, while one is pending. */
  cancelWait: (() => void) | null = null;

  constructor(
    readonly key: BufferKey,
    readonly surfaceId: number,
    readonly bufferId: number,
    readonly generation: number,
    readonly width: number,
    readonly height: number,
    readonly format: FormatInfo,
    readonly orientation: Orientation,
    readonly visible: Readonly<Rect>,
    readonly imported: ConsumerBuffer,
  ) {}

  get views(): Uint8Array[] {
    return this.imported.views;
  }

  close(): void {
    this.cancelWait?.();
    this.cancelWait = null;
    this.imported.close();
  }
}

/** Who a frame goes back to on release. */
export interface FrameOwner {
  releaseFrame(frame: Frame, fence?: NativeFd | OsHandle): void;
}

/** One received frame. Read its pixels, then release() it (once). */
export class Frame {
  private releasedValue = false;
  /** @internal A CPU read bracket is open on the buffer (closed by release). */
  cpuAccess = false;
  /** @internal When its FRAME was read (telemetry's monotonicMs(): one clock for the client's stages). */
  receivedMs = 0;
  /** @internal When it was handed to the application (monotonic ms), for telemetry. */
  importedMs = 0;

  /** @internal Made by SurfaceClient. */
  constructor(
    private readonly owner: FrameOwner,
    /** @internal */ readonly buffer: ImportedSurfaceBuffer,
    /** The producer's sequence number of this frame; it continues across resizes. */
    readonly sequence: number,
    /** Rectangles that changed since the previous frame you received; empty means everything. */
    readonly damage: readonly Rect[],
    /** The mechanism that carried it ('shm.v1', 'dmabuf.v1', …). */
    readonly mechanism: string,
    /** Server's CLOCK_MONOTONIC at present (ns); comparable with ours only on the same host. */
    readonly presentTimeNs: number,
    /** Our CLOCK_MONOTONIC when the frame arrived (ns). */
    readonly receiveTimeNs: number,
  ) {}

  /** The surface it shows (`SharedSurface.id` in the producer). */
  get surfaceId(): number {
    return this.buffer.surfaceId;
  }
  /** The buffer within the surface (`SurfaceBuffer.id` in the producer). */
  get bufferId(): number {
    return this.buffer.bufferId;
  }
  /** The surface generation (bumped by each resize/reconfigure). */
  get generation(): number {
    return this.buffer.generation;
  }
  /** The producer's name for the buffer behind this frame: the key for caches of imported buffers. */
  get bufferKey(): BufferKey {
    return this.buffer.key;
  }
  /** Width in pixels of the buffer. */
  get width(): number {
    return this.buffer.width;
  }
  /** Height in pixels of the buffer. */
  get height(): number {
    return this.buffer.height;
  }
  /** Pixel format of the buffer. */
  get format(): FormatInfo {
    return this.buffer.format;
  }
  /** Which way rows run in memory ('bottom-up': row 0 is the bottom of the picture). */
  get orientation(): Orientation {
    return this.buffer.orientation;
  }
  /** The part of the buffer that is the picture. */
  get visible(): Readonly<Rect> {
    return this.buffer.visible;
  }
  /** Per-plane layout (offset, stride, size, width, height) within the objects in `handles`. */
  get planes(): readonly PlaneLayout[] {
    return this.buffer.imported.planes;
  }
  /** For each plane, the index in `handles` of the object it lives in. */
  get planeHandles(): readonly number[] {
    return this.buffer.imported.planeHandles;
  }
  /** Bytes per row of plane 0. */
  get stride(): number {
    return this.buffer.imported.planes[0].stride;
  }
  /** The shared object behind the pixels (kind, inode, device): proof of zero-copy. */
  get backing(): BackingIdentity {
    return this.buffer.imported.identity;
  }
  /**
   * The handles behind the planes (a memfd, or the dma-bufs), owned by the buffer: what GL import
   * uses. Borrowed: valid until the buffer is retired; duplicate one to keep it longer.
   */
  get handles(): readonly OsHandle[] {
    return this.buffer.imported.handles;
  }
  /**
   * macOS IOSurface frames (iosurface.v1, iosurface-pipe.v1): the IOSurfaceRef's address, for a
   * zero-copy GL import (`surfacelink/gl`: SurfaceImporter, importIOSurfaceTexture); else undefined.
   */
  get ioSurface(): bigint | undefined {
    return this.buffer.imported.ioSurface;
  }
  /** True once release() was called. */
  get released(): boolean {
    return this.releasedValue;
  }
  /** True when `damage` lists rectangles; false when the whole surface changed. */
  get partial(): boolean {
    return this.damage.length > 0;
  }

  /**
   * The plane's bytes: a read-only view by contract (a write stays private to this process and
   * detaches that page from the producer's). Invalid after release().
   */
  pixels(plane = 0): Uint8Array {
    if (this.releasedValue) throw new SurfaceLinkError('E_CLOSED', `frame ${this.sequence} was released`);
    if (!this.cpuAccess)
      throw new SurfaceLinkError(
        'E_UNSUPPORTED',
        `${this.mechanism} frames are not readable by the CPU here; import them (surfacelink/gl)`,
      );
    const view = this.buffer.views[plane];
    if (!view) throw invalidArgument('plane', `0..${this.buffer.views.length - 1}`, plane);
    return view;
  }

  /**
   * Gives the buffer back to the producer. Idempotent. `fence`: a fence that signals when your GPU
   * has finished reading (mechanisms with sync_file fences only); we send a duplicate, you keep yours.
   */
  release(options?: { fence?: NativeFd | OsHandle }): void {
    if (this.releasedValue) return;
    this.owner.releaseFrame(this, options?.fence);
    this.releasedValue = true;
  }

  /** Same as release(), for `using`. */
  [Symbol.dispose](): void {
    this.release();
  }
}
