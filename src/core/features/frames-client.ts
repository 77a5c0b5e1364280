/**
 * frames.v1, the client's half: imports each buffer once (SCANOUT), turns FRAME messages into
 * `frame` events, sends RELEASE, follows RETIRE / SURFACE_GONE / MECHANISM, and reports a
 * valid buffer it cannot import (IMPORT_FAILED) so the server can fall back.
 */
import { ErrorCode, SurfaceLinkError } from '../../errors.js';
import { rethrowLater } from '../../events.js';
import type { FormatSet } from '../../format-set.js';
import { formatByFourcc } from '../../formats.js';
import { Frame, ImportedSurfaceBuffer, type FrameOwner } from '../../frame.js';
import { bufferKey, closeHandles, type OsHandle } from '../../handles.js';
import { monotonicNs } from '../../host.js';
import { asOsHandle } from '../../mechanisms/external.js';
import { ImportRefused, type ConsumerBuffer, type CourierClient, type Mechanism } from '../../mechanisms/types.js';
import type { NativeFd } from '../../native/index.js';
import {
  readFrame,
  readMechanism,
  readRetire,
  readScanout,
  readSurfaceGone,
  writeImportFailed,
  writeRelease,
  type ScanoutBody,
} from '../../protocol/codec.js';
import { MAX_HANDLES, MessageType } from '../../protocol/constants.js';
import { validateDamage } from '../../protocol/validate.js';
import { ClientStages, monotonicMs, type ClientTelemetry } from '../../telemetry.js';
import type { MessageChannel } from '../../transport/types.js';
import { assertFence, waitFence } from '../fences.js';
import type { ClientFeature } from './types.js';

/** What frames.v1 needs from its client. */
export interface FramesClientHost {
  readonly channel: MessageChannel;
  /** Distinguishes this connection's buffers from another's in BufferKeys. */
  readonly serial: number;
  readonly active: boolean;
  /** The mechanism in use. */
  readonly mechanism: Mechanism | null;
  /** Mechanisms offered at HELLO (a MECHANISM switch must name one). */
  readonly offered: readonly Mechanism[];
  /** Formats × modifiers declared for mechanisms that negotiate formats. */
  readonly declared: FormatSet | undefined;
  /** The session's handle courier, for a mechanism whose handles the transport cannot carry; else null. */
  readonly courier: CourierClient | null;
  switchMechanism(mechanism: Mechanism, reason: string): void;
  hasFrameListeners(): boolean;
  emitFrame(frame: Frame): void;
  emitSurfaceGone(surfaceId: number): void;
  emitImportFailed(error: SurfaceLinkError): void;
  /** A local, non-fatal problem (E_TRUNCATED: a buffer whose memory shrank was dropped). */
  emitWarning(error: SurfaceLinkError): void;
  fail(code: SurfaceLinkError['code'], message: string, tellServer: boolean): void;
}

const ORIENTATION = ['top-down', 'bottom-up'] as const; // wire values 0 and 1

export class FramesClient implements ClientFeature<FramesClientHost>, FrameOwner {
  readonly name = 'frames.v1';
  readonly serverMessages: ReadonlyMap<number, number> = new Map([
    [MessageType.SCANOUT, MAX_HANDLES],
    [MessageType.FRAME, MAX_HANDLES], // readFrame checks the count against the fence flag
    [MessageType.RETIRE, 0],
    [MessageType.SURFACE_GONE, 0],
    [MessageType.MECHANISM, 0],
  ]);
  private readonly imports = new Map<number, Map<number, ImportedSurfaceBuffer>>();
  /**
   * Buffers we told the server we could not import, or dropped because their memory shrank under the
   * mapping (E_TRUNCATED): their FRAMEs are released unseen.
   */
  private readonly failedImports = new Map<number, Set<number>>();
  /** Per-stage durations of released frames: all surfaces, and each surface (until it is gone). */
  private readonly stages = new ClientStages();
  private readonly surfaceStages = new Map<number, ClientStages>();

  constructor(private readonly host: FramesClientHost) {}

  /** The per-stage durations of the frames released so far (allocates: for reports). */
  telemetry(): ClientTelemetry {
    return {
      ...this.stages.summary(),
      surfaces: [...this.surfaceStages].map(([surfaceId, stages]) => ({ surfaceId, ...stages.summary() })),
    };
  }

  onMessage(
    _host: FramesClientHost,
    type: number,
    view: DataView,
    start: number,
    length: number,
    handles: OsHandle[] | undefined,
  ): void {
    switch (type) {
      case MessageType.FRAME:
        return this.onFrame(view, start, length, handles?.[0]);
      case MessageType.SCANOUT:
        return this.onScanout(view, start, length, handles ?? []);
      case MessageType.RETIRE: {
        const { surfaceId, bufferId } = readRetire(view, start, length);
        const b = this.imports.get(surfaceId)?.get(bufferId);
        this.failedImports.get(surfaceId)?.delete(bufferId);
        if (b) {
          b.retired = true;
          this.imports.get(surfaceId)?.delete(bufferId);
          if (!b.held) b.close();
        }
        return;
      }
      case MessageType.SURFACE_GONE: {
        const { surfaceId } = readSurfaceGone(view, start, length);
        this.dropSurface(surfaceId);
        this.failedImports.delete(surfaceId);
        this.surfaceStages.delete(surfaceId);
        this.host.emitSurfaceGone(surfaceId);
        return;
      }
      case MessageType.MECHANISM: {
        const m = readMechanism(view, start, length);
        const mechanism = this.host.offered.find((o) => o.name === m.mechanism);
        // The server never falls back to a mechanism that only HELLO may choose (it needs WELCOME's fields).
        if (!mechanism || !mechanism.caps.fallback)
          throw new SurfaceLinkError('E_UNEXPECTED', `server switched to ${m.mechanism}, which we did not offer`);
        for (const surfaceId of [...this.imports.keys()]) this.dropSurface(surfaceId);
        this.failedImports.clear();
        this.host.switchMechanism(mechanism, m.reason);
        return;
      }
    }
  }

  private onScanout(view: DataView, start: number, length: number, handles: OsHandle[]): void {
    const mechanism = this.host.mechanism;
    if (!mechanism?.caps.handles || !mechanism.importBuffer)
      throw new SurfaceLinkError(
        'E_UNEXPECTED',
        `SCANOUT on a ${mechanism?.name} connection, which carries no handles`,
      );
    const courier = this.host.courier;
    if (courier !== null) {
      // A courier mechanism's SCANOUT declares no handles: they came ahead of it (docs/protocol.md §9.1.3).
      if (handles.length > 0) {
        closeHandles(handles);
        throw new SurfaceLinkError('E_HANDLE_COUNT', `a ${mechanism.name} SCANOUT carries no handles on the socket`);
      }
      try {
        handles = courier.collect();
      } catch (error) {
        // Nothing to import: reported like a failed import, so the server falls back to the next offer.
        return this.importFailed(readScanout(view, start, length, MAX_HANDLES), SurfaceLinkError.fromNative(error));
      }
    }
    let desc: ScanoutBody;
    try {
      desc = readScanout(view, start, length, handles.length);
    } catch (error) {
      if (courier !== null) closeHandles(handles);
      throw error;
    }
    const format = formatByFourcc(desc.format);
    if (!format) throw new SurfaceLinkError('E_UNSUPPORTED_FORMAT', `unknown DRM format 0x${desc.format.toString(16)}`);
    if (desc.orientation > 1)
      throw new SurfaceLinkError(
        'E_MALFORMED',
        `SCANOUT: orientation ${desc.orientation} is neither top-down (0) nor bottom-up (1)`,
      );
    let imported: ConsumerBuffer;
    try {
      imported = mechanism.importBuffer(desc, format, handles, { accepts: this.host.declared });
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      // An invalid descriptor or handle is a protocol violation. A valid buffer we cannot take
      // (a modifier we did not declare, a mapping the system refused) is reported to the
      // server, which falls back to another mechanism.
      // Handles from the socket are closed by the caller on a throw; the courier's are ours.
      if (e.code !== 'E_SYSTEM' && !(e instanceof ImportRefused)) {
        if (courier !== null) closeHandles(handles);
        throw e;
      }
      closeHandles(handles);
      return this.importFailed(desc, e);
    }
    let perSurface = this.imports.get(desc.surfaceId);
    if (!perSurface) this.imports.set(desc.surfaceId, (perSurface = new Map()));
    perSurface.get(desc.bufferId)?.close(); // a re-announced buffer replaces the old import
    const key = bufferKey(this.host.serial, desc.surfaceId, desc.bufferId, desc.generation);
    perSurface.set(
      desc.bufferId,
      new ImportedSurfaceBuffer(
        key,
        desc.surfaceId,
        desc.bufferId,
        desc.generation,
        desc.width,
        desc.height,
        format,
        ORIENTATION[desc.orientation],
        desc.visible,
        imported,
      ),
    );
  }

  /** Tells the server this buffer could not be imported (it falls back); its FRAMEs are released unseen. */
  private importFailed(desc: ScanoutBody, e: SurfaceLinkError): void {
    let failed = this.failedImports.get(desc.surfaceId);
    if (!failed) this.failedImports.set(desc.surfaceId, (failed = new Set()));
    failed.add(desc.bufferId);
    this.host.channel.send(
      writeImportFailed(this.host.channel.writer, desc.surfaceId, desc.bufferId, ErrorCode[e.code], e.message),
    );
    this.host.emitImportFailed(e);
  }

  private onFrame(view: DataView, start: number, length: number, fence: OsHandle | undefined): void {
    try {
      this.receiveFrame(view, start, length, fence);
    } finally {
      if (fence) closeHandles([fence]); // a pending wait holds its own duplicate
    }
  }

  private receiveFrame(view: DataView, start: number, length: number, fence: OsHandle | undefined): void {
    const receivedMs = monotonicMs();
    const f = readFrame(view, start, length);
    if (fence) assertFence(fence, 'an acquire fence');
    const buffer = this.imports.get(f.surfaceId)?.get(f.bufferId);
    if (!buffer) {
      if (this.failedImports.get(f.surfaceId)?.has(f.bufferId)) {
        // Sent before the server read our IMPORT_FAILED: hand it straight back.
        this.host.channel.send(writeRelease(this.host.channel.writer, f.surfaceId, f.bufferId, f.sequence));
        return;
      }
      throw new SurfaceLinkError(
        'E_UNKNOWN_BUFFER',
        `FRAME names buffer ${f.bufferId} of surface ${f.surfaceId}, which was never announced`,
      );
    }
    if (buffer.held) throw new SurfaceLinkError('E_UNEXPECTED', `FRAME for buffer ${f.bufferId}, which we still hold`);
    validateDamage(f.damage, buffer.width, buffer.height);
    if (this.dropIfTruncated(buffer)) {
      this.host.channel.send(writeRelease(this.host.channel.writer, f.surfaceId, f.bufferId, f.sequence));
      return;
    }
    buffer.held = true;
    const frame = new Frame(
      this,
      buffer,
      f.sequence,
      f.damage,
      this.host.mechanism!.name,
      f.presentTimeNs,
      monotonicNs(),
    );
    frame.receivedMs = receivedMs;
    if (!fence) return this.deliverFrame(frame);
    // The producer's GPU may still be writing: wait for the fence on the event loop.
    buffer.cancelWait = waitFence(fence, (error) => {
      buffer.cancelWait = null;
      if (error === 'E_CANCELLED' || !this.host.active) return;
      if (error)
        return this.host.fail(
          'E_SYSTEM',
          `waiting for the acquire fence of frame ${f.sequence} failed: ${error}`,
          true,
        );
      this.deliverFrame(frame);
    });
  }

  private deliverFrame(frame: Frame): void {
    frame.importedMs = monotonicMs();
    // Nobody is looking: give it straight back so the server never has to time us out.
    if (!this.host.hasFrameListeners()) return frame.release();
    // Mechanisms the CPU can read get a read bracket for the frame's life (dma-bufs: DMA_BUF_IOCTL_SYNC).
    if (this.host.mechanism?.caps.cpuAccess) {
      frame.buffer.imported.beginCpuAccess('read');
      frame.cpuAccess = true;
    }
    try {
      this.host.emitFrame(frame);
    } catch (error) {
      rethrowLater(error);
    }
  }

  /** Called by Frame.release(): validates, then gives the buffer back. */
  releaseFrame(frame: Frame, given?: NativeFd | OsHandle): void {
    const fence = given === undefined ? undefined : asOsHandle(given);
    if (fence && this.host.offered.find((m) => m.name === frame.mechanism)?.caps.sync !== 'sync_file')
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', `${frame.mechanism} has no release fences`);
    if (fence) assertFence(fence, 'a release fence');
    const buffer = frame.buffer;
    // Frames released before they reached the application (a fence still pending) are not measured.
    if (frame.importedMs > 0) this.record(frame, monotonicMs());
    buffer.held = false;
    buffer.cancelWait?.();
    buffer.cancelWait = null;
    if (frame.cpuAccess) buffer.imported.endCpuAccess('read');
    const ch = this.host.channel;
    if (this.host.active)
      ch.send(
        writeRelease(ch.writer, buffer.surfaceId, buffer.bufferId, frame.sequence, fence !== undefined),
        fence ? [fence] : undefined,
      );
    if (buffer.retired || !this.host.active) buffer.close();
    else this.dropIfTruncated(buffer);
  }

  /** One released frame into the telemetry rings (no allocation but a surface's first). */
  private record(frame: Frame, releasedMs: number): void {
    // The producer's present_time_ns is CLOCK_MONOTONIC of this same host: the one clock, in ms.
    const presentMs = frame.presentTimeNs / 1e6;
    this.stages.record(presentMs, frame.receivedMs, frame.importedMs, releasedMs);
    let perSurface = this.surfaceStages.get(frame.surfaceId);
    if (!perSurface) this.surfaceStages.set(frame.surfaceId, (perSurface = new ClientStages()));
    perSurface.record(presentMs, frame.receivedMs, frame.importedMs, releasedMs);
  }

  /**
   * Drops a buffer whose memory shrank under our mapping (a shm object its producer, or another
   * client holding the fd, truncated): the SIGBUS guard made the mapping read zeros instead of
   * crashing us. Checked when a frame of it is released and when the next one arrives; the buffer
   * is forgotten (later FRAMEs of it are released unseen) and E_TRUNCATED is reported as a warning.
   * The session goes on: the server retires a truncated buffer of its own pool.
   */
  private dropIfTruncated(buffer: ImportedSurfaceBuffer): boolean {
    if (!buffer.imported.truncated?.()) return false;
    const perSurface = this.imports.get(buffer.surfaceId);
    if (perSurface?.get(buffer.bufferId) === buffer) perSurface.delete(buffer.bufferId);
    let failed = this.failedImports.get(buffer.surfaceId);
    if (!failed) this.failedImports.set(buffer.surfaceId, (failed = new Set()));
    failed.add(buffer.bufferId);
    buffer.retired = true;
    if (!buffer.held) buffer.close();
    this.host.emitWarning(
      new SurfaceLinkError(
        'E_TRUNCATED',
        `buffer ${buffer.bufferId} of surface ${buffer.surfaceId} shrank under its mapping (the shm object was ` +
          `truncated by another process); it read zeros and was dropped`,
      ),
    );
    return true;
  }

  private dropSurface(surfaceId: number): void {
    const perSurface = this.imports.get(surfaceId);
    if (!perSurface) return;
    this.imports.delete(surfaceId);
    for (const b of perSurface.values()) {
      b.retired = true;
      // A frame still waiting for its fence never reached the application: nobody will release it.
      if (!b.held || b.cancelWait) b.close();
    }
  }

  end(): void {
    for (const surfaceId of [...this.imports.keys()]) this.dropSurface(surfaceId);
  }
}
