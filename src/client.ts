/**
 * SurfaceClient: the viewer's end. Connects, negotiates, imports each buffer once (on
 * SCANOUT) and turns FRAME messages into `frame` events. Each frame must be released;
 * the server never waits for it, but drops a client that holds one past its deadline.
 */
import { EventEmitter } from 'eventemitter3';
import { availableBackends, backendByName } from './backends/index.js';
import { ImportRefused, type Backend, type BackingIdentity, type ImportedBuffer } from './backends/types.js';
import { ErrorCode, SurfaceLinkError, errorCodeName, invalidArgument, type ErrorCodeName } from './errors.js';
import { formatByFourcc, type FormatInfo, type PlaneLayout } from './formats.js';
import { monotonicNs, peerInfo } from './host.js';
import type { NativeFd } from './native.js';
import {
  messageType, readError, readFrame, readMechanism, readRetire, readScanout, readSurfaceGone, readWelcome,
  writeError, writeHello, writeImportFailed, writeRelease, wrongMessage, type Rect, type StreamEndpoint, type WelcomeInfo,
} from './protocol/codec.js';
import { DEFAULT_MAX_MESSAGE, MAX_HANDLES, MECHANISMS_WITH_FENCES, Mechanism, MessageType, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from './protocol/constants.js';
import { assertSyncFile, waitFence } from './backends/fences.js';
import { rethrowLater } from './events.js';
import type { FormatSet } from './format-set.js';
import { validateDamage } from './protocol/validate.js';
import { MessageChannel, connectUnix, defaultSocketPath, type MessageHandler } from './transport/unix.js';

/** What the client offers for stream.v1: a name, no backend (frames come over WebSocket). */
const STREAM_OFFER = { name: Mechanism.STREAM_V1 } as const;
type Offer = Backend | typeof STREAM_OFFER;
const isBackend = (offer: Offer): offer is Backend => offer !== STREAM_OFFER;

export interface ClientOptions {
  /** Server socket; default the default server's path (see SurfaceServer.listen). */
  path?: string;
  /** Our name, shown in the server's logs. */
  name?: string;
  /**
   * Mechanisms to offer, most preferred first (default: every available handle mechanism).
   * `stream.v1` asks for no handles: the negotiation then carries `stream`, the WebSocket
   * endpoint and token to give RemoteStreamClient, and no frames arrive on this connection.
   */
  mechanisms?: string[];
  /** Give up if negotiation has not finished by then (default 5000 ms). */
  timeoutMs?: number;
  /** Server uids to trust besides our own and root's. */
  allowServerUids?: number[];
  /** dmabuf.v1: the formats × modifiers to declare (default: every known format, LINEAR — what the CPU can read). */
  dmabufFormats?: FormatSet;
}

export interface Negotiation {
  mechanism: string;
  reason: string;
  rejected: { name: string; reason: string }[];
  server: WelcomeInfo['server'];
  clientId: number;
  /** stream.v1: where the frames are (connect a RemoteStreamClient to `wsUrl` with `token`). */
  stream?: StreamEndpoint;
}

export interface DisconnectInfo {
  code: ErrorCodeName;
  message: string;
}

export interface ClientEvents {
  negotiated: [Negotiation];
  frame: [Frame];
  /** A surface went away (its buffers are released when their frames are). */
  surfaceGone: [{ surfaceId: number }];
  /** A buffer could not be imported; the server was told and may fall back. */
  importFailed: [SurfaceLinkError];
  /** The session ended: the server closed, failed, refused us, or we closed. */
  disconnect: [DisconnectInfo];
  /** A non-fatal error reported by the server. */
  warning: [SurfaceLinkError];
}

/** An imported buffer of the server's, shared by every frame that shows it. */
class ImportedSurfaceBuffer {
  held = false;
  retired = false;
  /** Cancels the wait for this buffer's acquire fence, while one is pending. */
  cancelWait: (() => void) | null = null;

  constructor(
    readonly surfaceId: number,
    readonly bufferId: number,
    readonly generation: number,
    readonly width: number,
    readonly height: number,
    readonly format: FormatInfo,
    readonly imported: ImportedBuffer,
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

/** One received frame. Read its pixels, then release() it (once). */
export class Frame {
  private releasedValue = false;
  /** @internal A CPU read bracket is open on the buffer (closed by release). */
  cpuAccess = false;

  constructor(
    private readonly client: SurfaceClient,
    /** @internal */ readonly buffer: ImportedSurfaceBuffer,
    readonly sequence: number,
    /** Rectangles that changed since the previous frame you received; empty means everything. */
    readonly damage: readonly Rect[],
    readonly mechanism: string,
    /** Server's CLOCK_MONOTONIC at present (ns); comparable with ours only on the same host. */
    readonly presentTimeNs: number,
    readonly receiveTimeNs: number,
  ) {}

  get surfaceId(): number {
    return this.buffer.surfaceId;
  }
  get bufferId(): number {
    return this.buffer.bufferId;
  }
  get generation(): number {
    return this.buffer.generation;
  }
  get width(): number {
    return this.buffer.width;
  }
  get height(): number {
    return this.buffer.height;
  }
  get format(): FormatInfo {
    return this.buffer.format;
  }
  get planes(): readonly PlaneLayout[] {
    return this.buffer.imported.planes;
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
   * The fds behind the planes (a memfd, or the dma-bufs), owned by the buffer: what GL import
   * uses. Borrowed: valid until the buffer is retired; dup() one to keep it longer.
   */
  get handles(): readonly NativeFd[] {
    return this.buffer.imported.handles;
  }
  get released(): boolean {
    return this.releasedValue;
  }
  /** True when `damage` lists rectangles; false when the whole surface changed. */
  get partial(): boolean {
    return this.damage.length > 0;
  }

  /**
   * The plane's bytes: a read-only view by contract (a write stays private to this process
   * and detaches that page from the producer's). Invalid after release().
   */
  pixels(plane = 0): Uint8Array {
    if (this.releasedValue) throw new SurfaceLinkError('E_CLOSED', `frame ${this.sequence} was released`);
    const view = this.buffer.views[plane];
    if (!view) throw invalidArgument('plane', `0..${this.buffer.views.length - 1}`, plane);
    return view;
  }

  /**
   * Gives the buffer back to the producer. Idempotent. `fence`: a sync_file that signals
   * when your GPU has finished reading (dmabuf.v1 only); we send a duplicate, you keep yours.
   */
  release(options?: { fence?: NativeFd }): void {
    if (this.releasedValue) return;
    const fence = options?.fence;
    if (fence && !MECHANISMS_WITH_FENCES.has(this.mechanism)) throw new SurfaceLinkError('E_INVALID_ARGUMENT', `${this.mechanism} has no release fences`);
    if (fence) assertSyncFile(fence, 'a release fence');
    this.releasedValue = true;
    this.client.releaseFrame(this, fence);
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

export class SurfaceClient extends EventEmitter<ClientEvents> implements MessageHandler {
  private readonly channel: MessageChannel;
  private readonly offered: Offer[];
  private readonly imports = new Map<number, Map<number, ImportedSurfaceBuffer>>();
  /** Buffers we told the server we could not import; their FRAMEs (already in flight) are released unseen. */
  private readonly failedImports = new Map<number, Set<number>>();
  private negotiationValue: Negotiation | null = null;
  private backend: Backend | null = null;
  private state: 'hello' | 'active' | 'closed' = 'hello';
  private disconnectInfo: DisconnectInfo | null = null;
  private readonly ready: Promise<SurfaceClient>;
  private settle: { resolve: (c: SurfaceClient) => void; reject: (e: SurfaceLinkError) => void } | null = null;
  private readonly timer: NodeJS.Timeout;
  /** What we declared we can import (dmabuf.v1); a buffer outside it is refused. */
  private readonly declared: FormatSet | undefined;

  private constructor(options: ClientOptions) {
    super();
    const socketPath = options.path ?? defaultSocketPath();
    this.offered = options.mechanisms
      ? options.mechanisms.map((name) => {
          if (name === Mechanism.STREAM_V1) return STREAM_OFFER;
          const b = backendByName(name);
          if (!b) throw new SurfaceLinkError('E_NO_MECHANISM', `unknown or unimplemented mechanism ${name}`);
          return b;
        })
      : availableBackends();
    if (this.offered.length === 0) throw new SurfaceLinkError('E_NO_MECHANISM', 'no sharing mechanism is available on this machine (run `surfacelink doctor`)');
    this.declared = options.dmabufFormats;
    const native = connectUnix(socketPath);
    const trusted = new Set([0, typeof process.getuid === 'function' ? process.getuid() : -1, ...(options.allowServerUids ?? [])]);
    const serverUid = native.peer?.uid ?? -1;
    if (!trusted.has(serverUid)) {
      native.close();
      throw new SurfaceLinkError('E_PERMISSION', `the server at ${socketPath} runs as uid ${serverUid}, which is not trusted`);
    }
    this.channel = new MessageChannel(native, this, { maxMessage: DEFAULT_MAX_MESSAGE, maxHandles: MAX_HANDLES });
    this.ready = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    const timeoutMs = options.timeoutMs ?? 5000;
    this.timer = setTimeout(() => this.fail('E_TIMEOUT', `no WELCOME from ${socketPath} within ${timeoutMs} ms`, true), timeoutMs);
    try {
      this.channel.send(
        writeHello(this.channel.writer, PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, {
          ...peerInfo(options.name ?? `node-${process.pid}`),
          mechanisms: this.offered.map((b) =>
            isBackend(b) ? { ...(b.offer?.() ?? {}), ...(b.formats && options.dmabufFormats ? { formats: options.dmabufFormats.toJSON() } : {}), name: b.name } : { name: b.name },
          ),
        }),
      );
    } catch (error) {
      // E.g. a name too long for HELLO: nobody will await `ready`, so nothing may settle it later.
      this.settle = null;
      clearTimeout(this.timer);
      this.channel.close();
      throw error;
    }
  }

  /** Connects and negotiates. Resolves once frames can arrive; `negotiated` fires right after. */
  static connect(options: ClientOptions = {}): Promise<SurfaceClient> {
    try {
      return new SurfaceClient(options).ready;
    } catch (error) {
      return Promise.reject(SurfaceLinkError.fromNative(error));
    }
  }

  /** The mechanism in use and why it was chosen (null before negotiation). */
  get negotiation(): Negotiation | null {
    return this.negotiationValue;
  }
  get mechanism(): string | null {
    return this.negotiationValue?.mechanism ?? null;
  }
  get closed(): boolean {
    return this.state === 'closed';
  }
  /** Why the session ended, once it has. */
  get disconnectReason(): DisconnectInfo | null {
    return this.disconnectInfo;
  }

  // ---- MessageHandler ------------------------------------------------------------------

  onMessage(view: DataView, start: number, length: number, fds: NativeFd[] | undefined): void {
    try {
      const type = messageType(view, start);
      if (this.state === 'hello' && type !== MessageType.WELCOME && type !== MessageType.ERROR)
        throw new SurfaceLinkError('E_UNEXPECTED', `the server's first message must be WELCOME, not type 0x${type.toString(16)}`);
      if (fds && type !== MessageType.SCANOUT && type !== MessageType.FRAME)
        throw new SurfaceLinkError('E_HANDLE_COUNT', `message type 0x${type.toString(16)} carries no handles; got ${fds.length}`);
      switch (type) {
        case MessageType.FRAME:
          return this.onFrame(view, start, length, fds?.[0]);
        case MessageType.SCANOUT:
          return this.onScanout(view, start, length, fds ?? []);
        case MessageType.WELCOME:
          return this.onWelcome(view, start, length);
        case MessageType.ERROR: {
          const e = readError(view, start, length);
          const err = new SurfaceLinkError(errorCodeName(e.code), e.message);
          if (e.fatal) return this.fail(err.code, `server: ${e.message}`, false);
          this.emit('warning', err);
          return;
        }
        case MessageType.RETIRE: {
          const { surfaceId, bufferId } = readRetire(view, start, length);
          const b = this.imports.get(surfaceId)?.get(bufferId);
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
          this.emit('surfaceGone', { surfaceId });
          return;
        }
        case MessageType.MECHANISM: {
          const m = readMechanism(view, start, length);
          const backend = backendByName(m.mechanism);
          // The server never falls back to stream.v1 (it needs the WELCOME's endpoint).
          if (!backend || !this.offered.includes(backend)) throw new SurfaceLinkError('E_UNEXPECTED', `server switched to ${m.mechanism}, which we did not offer`);
          this.backend = backend;
          if (this.negotiationValue) this.negotiationValue = { ...this.negotiationValue, mechanism: m.mechanism, reason: m.reason };
          for (const surfaceId of [...this.imports.keys()]) this.dropSurface(surfaceId);
          this.failedImports.clear();
          if (this.negotiationValue) this.emit('negotiated', this.negotiationValue);
          return;
        }
        default:
          throw wrongMessage(type, 'client');
      }
    } catch (error) {
      if (fds) for (const fd of fds) fd.close();
      const e = SurfaceLinkError.fromNative(error);
      this.fail(e.code, e.message, true);
    }
  }

  onChannelError(error: SurfaceLinkError): void {
    this.fail(error.code, error.code === 'E_PEER_CLOSED' ? 'the server closed the connection' : error.message, error.code !== 'E_PEER_CLOSED');
  }

  private onWelcome(view: DataView, start: number, length: number): void {
    if (this.state !== 'hello') throw new SurfaceLinkError('E_UNEXPECTED', 'WELCOME may be sent only once');
    const { version, info } = readWelcome(view, start, length);
    if (version < PROTOCOL_VERSION_MIN || version > PROTOCOL_VERSION_MAX) throw new SurfaceLinkError('E_PROTOCOL_VERSION', `server chose version ${version}, which we do not speak`);
    const backend = this.offered.find((b) => b.name === info.mechanism);
    if (!backend) throw new SurfaceLinkError('E_UNEXPECTED', `server chose ${info.mechanism}, which we did not offer`);
    this.backend = isBackend(backend) ? backend : null;
    this.state = 'active';
    clearTimeout(this.timer);
    this.negotiationValue = {
      mechanism: info.mechanism,
      reason: info.reason,
      rejected: info.rejected,
      server: info.server,
      clientId: info.clientId,
      ...(info.stream ? { stream: info.stream } : {}),
    };
    this.settle?.resolve(this);
    this.settle = null;
    // After the awaiting code has run (it attaches listeners in that same microtask turn).
    const negotiation = this.negotiationValue;
    queueMicrotask(() => this.state === 'active' && this.emit('negotiated', negotiation));
  }

  private onScanout(view: DataView, start: number, length: number, fds: NativeFd[]): void {
    if (this.backend === null) throw new SurfaceLinkError('E_UNEXPECTED', `SCANOUT on a ${this.mechanism} connection, which carries no handles`);
    const desc = readScanout(view, start, length, fds.length);
    const format = formatByFourcc(desc.format);
    if (!format) throw new SurfaceLinkError('E_UNSUPPORTED_FORMAT', `unknown DRM format 0x${desc.format.toString(16)}`);
    let imported: ImportedBuffer;
    try {
      imported = (this.backend as Backend).importBuffer(desc, format, fds, { accepts: this.declared });
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      // An invalid descriptor or handle is a protocol violation. A valid buffer we cannot
      // take (a modifier we did not declare, a mapping the system refused) is reported to
      // the server, which falls back to another mechanism.
      if (e.code !== 'E_SYSTEM' && !(e instanceof ImportRefused)) throw e;
      for (const fd of fds) fd.close();
      let failed = this.failedImports.get(desc.surfaceId);
      if (!failed) this.failedImports.set(desc.surfaceId, (failed = new Set()));
      failed.add(desc.bufferId);
      this.channel.send(writeImportFailed(this.channel.writer, desc.surfaceId, desc.bufferId, ErrorCode[e.code], e.message));
      this.emit('importFailed', e);
      return;
    }
    let perSurface = this.imports.get(desc.surfaceId);
    if (!perSurface) this.imports.set(desc.surfaceId, (perSurface = new Map()));
    perSurface.get(desc.bufferId)?.close(); // a re-announced buffer replaces the old import
    perSurface.set(desc.bufferId, new ImportedSurfaceBuffer(desc.surfaceId, desc.bufferId, desc.generation, desc.width, desc.height, format, imported));
  }

  private onFrame(view: DataView, start: number, length: number, fence: NativeFd | undefined): void {
    try {
      this.receiveFrame(view, start, length, fence);
    } finally {
      fence?.close(); // a pending wait holds its own duplicate
    }
  }

  private receiveFrame(view: DataView, start: number, length: number, fence: NativeFd | undefined): void {
    const f = readFrame(view, start, length);
    if (fence) assertSyncFile(fence, 'an acquire fence');
    const buffer = this.imports.get(f.surfaceId)?.get(f.bufferId);
    if (!buffer) {
      if (this.failedImports.get(f.surfaceId)?.has(f.bufferId)) {
        // Sent before the server read our IMPORT_FAILED: hand it straight back.
        this.channel.send(writeRelease(this.channel.writer, f.surfaceId, f.bufferId, f.sequence));
        return;
      }
      throw new SurfaceLinkError('E_UNKNOWN_BUFFER', `FRAME names buffer ${f.bufferId} of surface ${f.surfaceId}, which was never announced`);
    }
    if (buffer.held) throw new SurfaceLinkError('E_UNEXPECTED', `FRAME for buffer ${f.bufferId}, which we still hold`);
    validateDamage(f.damage, buffer.width, buffer.height);
    buffer.held = true;
    const frame = new Frame(this, buffer, f.sequence, f.damage, (this.backend as Backend).name, f.presentTimeNs, monotonicNs());
    if (!fence) return this.deliverFrame(frame);
    // The producer's GPU may still be writing: wait for the fence on the event loop.
    buffer.cancelWait = waitFence(fence, (error) => {
      buffer.cancelWait = null;
      if (error === 'E_CANCELLED' || this.state !== 'active') return;
      if (error) return this.fail('E_SYSTEM', `waiting for the acquire fence of frame ${f.sequence} failed: ${error}`, true);
      this.deliverFrame(frame);
    });
  }

  private deliverFrame(frame: Frame): void {
    // Nobody is looking: give it straight back so the server never has to time us out.
    if (this.listenerCount('frame') === 0) return frame.release();
    frame.buffer.imported.beginCpuAccess('read');
    frame.cpuAccess = true;
    try {
      this.emit('frame', frame);
    } catch (error) {
      rethrowLater(error);
    }
  }

  /** @internal Called by Frame.release(). */
  releaseFrame(frame: Frame, fence?: NativeFd): void {
    const buffer = frame.buffer;
    buffer.held = false;
    buffer.cancelWait?.();
    buffer.cancelWait = null;
    if (frame.cpuAccess) buffer.imported.endCpuAccess('read');
    const w = this.channel.writer;
    if (this.state === 'active') this.channel.send(writeRelease(w, buffer.surfaceId, buffer.bufferId, frame.sequence, fence !== undefined), fence ? [fence] : undefined);
    if (buffer.retired || this.state === 'closed') buffer.close();
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

  private fail(code: ErrorCodeName, message: string, tellServer: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.timer);
    if (tellServer && !this.channel.closed) this.channel.send(writeError(this.channel.writer, ErrorCode[code], true, message));
    this.channel.close();
    for (const surfaceId of [...this.imports.keys()]) this.dropSurface(surfaceId);
    this.disconnectInfo = { code, message };
    if (this.settle) {
      this.settle.reject(new SurfaceLinkError(code, message));
      this.settle = null;
      return;
    }
    this.emit('disconnect', this.disconnectInfo);
  }

  /** Ends the session. Frames still held stay readable until released. Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.timer);
    this.channel.close();
    for (const surfaceId of [...this.imports.keys()]) this.dropSurface(surfaceId);
    this.disconnectInfo = { code: 'E_CLOSED', message: 'closed by this client' };
    this.settle?.reject(new SurfaceLinkError('E_CLOSED', 'closed before negotiation finished'));
    this.settle = null;
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
