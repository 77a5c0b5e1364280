/**
 * SurfaceServer: the producer's end. Owns surfaces, accepts clients, negotiates a mechanism
 * per client, and delivers frames latest-wins: a client that is slow or stuck only ever
 * skips frames; it never blocks the producer or the other clients.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { EventEmitter } from 'eventemitter3';
import { availableBackends, backendByName, unavailableReason } from './backends/index.js';
import type { Backend, BufferExport } from './backends/types.js';
import { assertSyncFile, waitFence } from './backends/fences.js';
import { FormatSet, modifierName } from './format-set.js';
import { ErrorCode, SurfaceLinkError, errorCodeName, invalidArgument, type ErrorCodeName } from './errors.js';
import { hostIdentity, monotonicNs, peerInfo } from './host.js';
import { stderrLogger, type Logger } from './log.js';
import type { NativeChannel, NativeFd } from './native.js';
import {
  checkRelease, messageType, readError, readHello, readImportFailed, releaseBufferId, releaseSequence, releaseSurfaceId,
  writeError, writeFrame, writeMechanism, writeRetire, writeScanout, writeSurfaceGone, writeWelcome, wrongMessage,
  type MechanismOffer, type Rect, type StreamEndpoint,
} from './protocol/codec.js';
import { DEFAULT_MAX_MESSAGE, MAX_DAMAGE_RECTS, MAX_HANDLES, MECHANISMS_WITH_FENCES, Mechanism, MessageType, Orientation, PROTOCOL_VERSION_MAX, PROTOCOL_VERSION_MIN } from './protocol/constants.js';
import { SharedSurface, SurfaceBuffer, type DmabufSurfaceOptions, type PresentOptions, type SurfaceHost, type SurfaceOptions } from './surface.js';
import { dmabufBackend } from './backends/dmabuf.js';
import { MODIFIER_LINEAR } from './formats.js';
import { rethrowLater } from './events.js';
import { MessageChannel, defaultSocketPath, ensurePrivateDir, listenUnix, type MessageHandler } from './transport/unix.js';

export interface ServerOptions {
  /** Socket path; default $XDG_RUNTIME_DIR/surfacelink/<name>.sock (or a 0700 dir under the temp dir). */
  path?: string;
  /** Server name, sent to clients; default "surfacelink". */
  name?: string;
  /** Peer uids allowed besides our own (SO_PEERCRED). Default: only our own uid. */
  allowUids?: number[];
  /** Mode of the socket file; default 0o600. Widen it only together with allowUids. */
  socketMode?: number;
  /** A client holding a frame longer than this is disconnected (E_RELEASE_TIMEOUT). Default 2000 ms. */
  releaseTimeoutMs?: number;
  /** A client that has not said HELLO by then is disconnected (E_TIMEOUT). Default 5000 ms. */
  helloTimeoutMs?: number;
  /** Most clients at once (E_LIMIT beyond). Default 32. */
  maxClients?: number;
  /**
   * Handle mechanisms this server may use, in its own preference order (default: every
   * available one). stream.v1 is offered as soon as a StreamServer is started for this server.
   */
  mechanisms?: string[];
  logger?: Logger;
}

/**
 * An in-process consumer of every presented frame (the remote stream encoders use it): called
 * synchronously once a frame's pixels are readable (its acquire fence, if any, has
 * signalled), inside a CPU read bracket. Copy what you need before returning: the buffer may
 * be reused by the producer afterwards. Must not throw; an exception is reported on the
 * next tick and the tap stays installed.
 */
export interface FrameTap {
  frame(surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number, presentTimeNs: number): void;
  /** The surface was closed (no more frames from it). */
  surfaceClosed?(surface: SharedSurface): void;
}

/** What the server knows about a connected client; also what 'client' events carry. */
export interface ClientInfo {
  readonly id: number;
  readonly pid: number;
  readonly uid: number;
  readonly name: string;
  readonly mechanism: string | null;
  readonly reason: string;
  readonly framesDelivered: number;
  readonly framesSkipped: number;
}

export interface ServerEvents {
  /** A client finished negotiation. */
  client: [ClientInfo];
  /** A client left or was disconnected; `code` says why. */
  clientGone: [ClientInfo, { code: ErrorCodeName; message: string }];
  /** A client's mechanism changed after an import failure. */
  clientMechanism: [ClientInfo];
  /** A client released a frame (presentation feedback). Positional numbers: no allocation per frame. */
  release: [surfaceId: number, bufferId: number, sequence: number, clientId: number];
}

interface SurfaceState {
  held: SurfaceBuffer | null;
  heldSequence: number;
  heldSinceMs: number;
  pending: boolean;
  /** Damage accumulated over frames this client skipped; `accumFull` wins over the list. */
  accum: Rect[];
  accumFull: boolean;
  /** The next frame must carry full damage (the client has not seen this surface yet). */
  needsFull: boolean;
}

class ClientSession implements MessageHandler, ClientInfo {
  readonly id: number;
  readonly pid: number;
  readonly uid: number;
  name = '?';
  mechanism: string | null = null;
  backend: Backend | null = null;
  reason = '';
  offers: MechanismOffer[] = [];
  /** dmabuf.v1: the formats × modifiers this client declared it can import. */
  formats: FormatSet | null = null;
  framesDelivered = 0;
  framesSkipped = 0;
  /** Why handle mechanisms are refused (the client is on another host), or null. */
  otherHost: string | null = null;
  state: 'hello' | 'active' | 'closed' = 'hello';
  readonly surfaces = new Map<number, SurfaceState>();
  readonly channel: MessageChannel;
  helloTimer: NodeJS.Timeout | null = null;

  constructor(
    private readonly server: SurfaceServer,
    native: NativeChannel,
    id: number,
  ) {
    this.id = id;
    const peer = native.peer;
    this.pid = peer?.pid ?? -1;
    this.uid = peer?.uid ?? -1;
    this.channel = new MessageChannel(native, this, { maxMessage: DEFAULT_MAX_MESSAGE, maxHandles: MAX_HANDLES });
  }

  onMessage(view: DataView, start: number, length: number, fds: NativeFd[] | undefined): void {
    if (this.state === 'closed') return closeAll(fds);
    try {
      // The only handle a client may send is one release fence, with RELEASE. (It is accepted
      // whatever the session's mechanism now is: the frame may predate a MECHANISM switch.)
      if (fds && (messageType(view, start) !== MessageType.RELEASE || fds.length !== 1))
        throw new SurfaceLinkError('E_HANDLE_COUNT', `${fds.length} handle(s) came with a message of type 0x${messageType(view, start).toString(16)}; clients send handles only as one release fence with RELEASE`);
      this.server.dispatch(this, view, start, length, fds?.[0]);
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      this.server.disconnect(this, e.code, e.message, true);
    } finally {
      closeAll(fds);
    }
  }

  onChannelError(error: SurfaceLinkError): void {
    // The peer broke framing (we tell it why) or went away (nobody left to tell).
    const gone = error.code === 'E_PEER_CLOSED';
    this.server.disconnect(this, error.code, error.message, !gone);
  }

  surfaceState(surface: SharedSurface): SurfaceState {
    let st = this.surfaces.get(surface.id);
    if (!st) {
      st = { held: null, heldSequence: 0, heldSinceMs: 0, pending: false, accum: [], accumFull: false, needsFull: true };
      this.surfaces.set(surface.id, st);
    }
    return st;
  }

  info(): ClientInfo {
    const { id, pid, uid, name, mechanism, reason, framesDelivered, framesSkipped } = this;
    return { id, pid, uid, name, mechanism, reason, framesDelivered, framesSkipped };
  }
}

function closeAll(fds: NativeFd[] | undefined): void {
  if (fds) for (const fd of fds) fd.close();
}

export class SurfaceServer extends EventEmitter<ServerEvents> implements SurfaceHost {
  readonly path: string;
  readonly name: string;
  private readonly logger: Logger;
  private readonly listener;
  private readonly sessions = new Set<ClientSession>();
  private readonly taps: FrameTap[] = [];
  private streamEndpoint: StreamEndpoint | null = null;
  private readonly surfaces = new Map<number, SharedSurface>();
  private readonly allowUids: Set<number>;
  private readonly releaseTimeoutMs: number;
  private readonly helloTimeoutMs: number;
  private readonly maxClients: number;
  private readonly mechanisms: Backend[];
  private readonly sweepTimer: NodeJS.Timeout;
  private nextClientId = 1;
  private highestSurfaceId = 0;
  private closedValue = false;

  private constructor(options: ServerOptions, socketPath: string) {
    super();
    this.path = socketPath;
    this.name = options.name ?? 'surfacelink';
    this.logger = options.logger ?? stderrLogger;
    const ownUid = typeof process.getuid === 'function' ? process.getuid() : -1;
    this.allowUids = new Set([ownUid, ...(options.allowUids ?? [])]);
    this.releaseTimeoutMs = Math.ceil(positive(options.releaseTimeoutMs ?? 2000, 'releaseTimeoutMs'));
    this.helloTimeoutMs = Math.ceil(positive(options.helloTimeoutMs ?? 5000, 'helloTimeoutMs'));
    this.maxClients = positive(options.maxClients ?? 32, 'maxClients');
    const available = availableBackends();
    this.mechanisms = options.mechanisms
      ? options.mechanisms.map((name) => {
          const b = backendByName(name);
          const why = unavailableReason(name);
          if (!b || why) throw new SurfaceLinkError('E_NO_MECHANISM', `mechanism ${name} cannot be used here: ${why}`);
          return b;
        })
      : available;
    if (this.mechanisms.length === 0) throw new SurfaceLinkError('E_NO_MECHANISM', 'no sharing mechanism is available on this machine (run `surfacelink doctor`)');

    this.listener = listenUnix(socketPath);
    if (options.socketMode !== undefined) fs.chmodSync(socketPath, options.socketMode);
    this.listener.start((native, code, message) => {
      if (native) this.accept(native);
      else {
        this.logger('error', `accepting clients failed (${code}): ${message}; retrying in 100 ms`);
        setTimeout(() => !this.closedValue && this.listener.start((n, c, m) => (n ? this.accept(n) : this.logger('error', `${c}: ${m}`))), 100).unref();
      }
    });
    // One sweep for all release deadlines: no per-frame timers.
    this.sweepTimer = setInterval(() => this.sweepDeadlines(), Math.max(10, Math.min(250, this.releaseTimeoutMs / 4)));
    this.sweepTimer.unref();
  }

  /** Starts listening. Resolves once clients can connect. */
  static async listen(options: ServerOptions = {}): Promise<SurfaceServer> {
    const socketPath = options.path ?? defaultSocketPath(options.name ?? 'default');
    if (typeof socketPath !== 'string' || socketPath.length === 0) throw invalidArgument('path', 'a non-empty string', socketPath);
    if (options.path === undefined) ensurePrivateDir(path.dirname(socketPath));
    return new SurfaceServer(options, socketPath);
  }

  get closed(): boolean {
    return this.closedValue;
  }

  /** Connected clients that finished negotiation. */
  get clients(): ClientInfo[] {
    return [...this.sessions].filter((s) => s.state === 'active').map((s) => s.info());
  }

  /** A new surface, backed by the server's preferred mechanism. */
  createSurface(options: SurfaceOptions): SharedSurface {
    this.assertOpen();
    let backend = this.mechanisms[0];
    if (options.mechanism !== undefined) {
      const b = this.mechanisms.find((m) => m.name === options.mechanism);
      if (!b) throw new SurfaceLinkError('E_NO_MECHANISM', `this server does not serve ${options.mechanism} (${unavailableReason(options.mechanism) ?? 'not configured'})`);
      backend = b;
    } else if (options.allocator !== undefined) {
      backend = dmabufBackend;
    }
    return this.adopt(new SharedSurface(this, backend, options));
  }

  /** A surface of dma-bufs made by someone else; see SharedSurface.fromDmabuf. */
  createDmabufSurface(options: DmabufSurfaceOptions): SharedSurface {
    this.assertOpen();
    const { buffers, modifier, ...rest } = options;
    return this.adopt(new SharedSurface(this, dmabufBackend, { ...rest, buffers: Math.max(2, buffers.length) }, { modifier: modifier ?? MODIFIER_LINEAR, buffers }));
  }

  private adopt(surface: SharedSurface): SharedSurface {
    this.surfaces.set(surface.id, surface);
    this.highestSurfaceId = Math.max(this.highestSurfaceId, surface.id);
    return surface;
  }

  /** Same as `buffer.surface.present(buffer, options)`. */
  present(buffer: SurfaceBuffer, options?: PresentOptions): void {
    buffer.surface.present(buffer, options);
  }

  // ---- SurfaceHost: called by surfaces ------------------------------------------------

  /** @internal */
  presentFrame(surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number): void {
    const now = monotonicNs();
    surface.lastPresentNs = now;
    if (buffer.fence) {
      // Clients that cannot wait on a fence get this frame once it has signalled.
      buffer.fenceReady = false;
      const fenced = buffer.fence;
      waitFence(fenced, () => {
        if (buffer.fence !== fenced) return;
        buffer.fenceReady = true;
        if (surface.front === buffer) {
          this.flushFenceGated(surface, buffer);
          if (this.taps.length > 0) this.runTaps(surface, buffer, [], 0, now);
        }
      });
    } else {
      buffer.fenceReady = true;
      if (this.taps.length > 0) this.runTaps(surface, buffer, damage, count, now);
    }
    for (const session of this.sessions) {
      if (session.state !== 'active') continue;
      const st = session.surfaceState(surface);
      if (st.held === null) {
        this.deliver(session, st, surface, buffer, damage, count);
      } else {
        // Latest wins: remember what changed; the newest frame goes out on release.
        if (st.pending) session.framesSkipped++;
        st.pending = true;
        accumulate(st, damage, count);
      }
    }
  }

  /**
   * Installs a frame tap (see FrameTap); returns the function that removes it. A tap added
   * while a surface already shows a frame is given that frame at once, with full damage.
   */
  addTap(tap: FrameTap): () => void {
    this.assertOpen();
    this.taps.push(tap);
    for (const surface of this.surfaces.values()) {
      const front = surface.front;
      if (front && front.fenceReady) this.runTapsOn([tap], surface, front, [], 0, surface.lastPresentNs);
    }
    return () => {
      const i = this.taps.indexOf(tap);
      if (i >= 0) this.taps.splice(i, 1);
    };
  }

  /**
   * @internal Set by StreamServer.start (null again on its close): clients offering stream.v1
   * are then pointed at it in their WELCOME.
   */
  setStreamEndpoint(endpoint: StreamEndpoint | null): void {
    this.streamEndpoint = endpoint;
  }

  /** The surfaces this server serves (for taps that pick one). */
  get surfaceList(): SharedSurface[] {
    return [...this.surfaces.values()];
  }

  private runTaps(surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number, now: number): void {
    this.runTapsOn(this.taps, surface, buffer, damage, count, now);
  }

  private runTapsOn(taps: readonly FrameTap[], surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number, now: number): void {
    buffer.exported.beginCpuAccess('read');
    try {
      for (let i = 0; i < taps.length; i++) {
        try {
          taps[i].frame(surface, buffer, damage, count, now);
        } catch (error) {
          rethrowLater(error);
        }
      }
    } finally {
      buffer.exported.endCpuAccess('read');
    }
  }

  private flushFenceGated(surface: SharedSurface, buffer: SurfaceBuffer): void {
    for (const session of this.sessions) {
      const st = session.surfaces.get(surface.id);
      if (session.state === 'active' && st && st.pending && st.held === null) this.deliver(session, st, surface, buffer, st.accum, st.accum.length);
    }
  }

  /** @internal */
  retireBuffer(surface: SharedSurface, buffer: SurfaceBuffer): void {
    for (const session of this.sessions) {
      if (!buffer.knownBy.has(session)) continue;
      if (!this.sendOrDrop(session, session.channel.send(writeRetire(session.channel.writer, surface.id, buffer.id)))) continue;
      const st = session.surfaces.get(surface.id);
      if (st) {
        st.needsFull = true;
        st.pending = false;
      }
    }
    buffer.knownBy.clear();
  }

  /** @internal */
  surfaceClosed(surface: SharedSurface): void {
    this.surfaces.delete(surface.id);
    for (const tap of [...this.taps]) {
      try {
        tap.surfaceClosed?.(surface);
      } catch (error) {
        rethrowLater(error);
      }
    }
    for (const session of this.sessions) {
      const st = session.surfaces.get(surface.id);
      if (st) {
        if (st.held) st.held.holders--;
        session.surfaces.delete(surface.id);
      }
      if (session.state === 'active') this.sendOrDrop(session, session.channel.send(writeSurfaceGone(session.channel.writer, surface.id)));
    }
  }

  /**
   * @internal Frees one buffer of `surface` by dropping every client that holds it. Only a
   * buffer that this would actually free (not the front, not the producer's) is chosen:
   * the one whose oldest hold is oldest.
   */
  reclaimBuffer(surface: SharedSurface): boolean {
    let victim: SurfaceBuffer | null = null;
    let oldest = Infinity;
    for (const session of this.sessions) {
      const st = session.surfaces.get(surface.id);
      const held = st?.held;
      if (!held || held === surface.front || held.acquired) continue;
      if (st.heldSinceMs < oldest) {
        oldest = st.heldSinceMs;
        victim = held;
      }
    }
    if (!victim) return false;
    const age = Math.round(performance.now() - oldest);
    for (const session of [...this.sessions]) {
      if (session.surfaces.get(surface.id)?.held === victim)
        this.disconnect(session, 'E_POOL_EXHAUSTED', `surface ${surface.id}'s pool is exhausted; dropping the clients holding its oldest frame (${age} ms)`, true);
    }
    return true;
  }

  // ---- Clients ----------------------------------------------------------------------

  private accept(native: NativeChannel): void {
    if (this.closedValue) return native.close();
    const session = new ClientSession(this, native, this.nextClientId++);
    this.sessions.add(session);
    if (!this.allowUids.has(session.uid)) {
      this.disconnect(session, 'E_PERMISSION', `uid ${session.uid} may not connect (allowed: ${[...this.allowUids].join(', ')})`, true);
      return;
    }
    if (this.sessions.size > this.maxClients) {
      this.disconnect(session, 'E_LIMIT', `too many clients (limit ${this.maxClients})`, true);
      return;
    }
    session.helloTimer = setTimeout(() => this.disconnect(session, 'E_TIMEOUT', `no HELLO within ${this.helloTimeoutMs} ms`, true), this.helloTimeoutMs);
    session.helloTimer.unref();
  }

  /** @internal Handles one message from a client. Throws SurfaceLinkError for protocol violations. */
  dispatch(session: ClientSession, view: DataView, start: number, length: number, fence?: NativeFd): void {
    const type = messageType(view, start);
    if (session.state === 'hello' && type !== MessageType.HELLO)
      throw new SurfaceLinkError('E_UNEXPECTED', `the first message must be HELLO, not type 0x${type.toString(16)}`);
    switch (type) {
      case MessageType.RELEASE:
        checkRelease(view, start, length);
        if (fence) assertSyncFile(fence, 'a release fence');
        return this.release(session, releaseSurfaceId(view, start), releaseBufferId(view, start), releaseSequence(view, start), fence);
      case MessageType.HELLO:
        if (session.state !== 'hello') throw new SurfaceLinkError('E_UNEXPECTED', 'HELLO may be sent only once');
        return this.welcome(session, readHello(view, start, length));
      case MessageType.IMPORT_FAILED:
        return this.importFailed(session, readImportFailed(view, start, length));
      case MessageType.ERROR: {
        const e = readError(view, start, length);
        if (e.fatal) {
          this.disconnect(session, errorCodeName(e.code), `client reported: ${e.message}`, false);
        } else {
          this.logger('warn', `client ${session.id} (${session.name}) reported ${errorCodeName(e.code)}: ${e.message}`);
        }
        return;
      }
      default:
        throw wrongMessage(type, 'server');
    }
  }

  private welcome(session: ClientSession, hello: ReturnType<typeof readHello>): void {
    const version = Math.min(hello.maxVersion, PROTOCOL_VERSION_MAX);
    if (version < Math.max(hello.minVersion, PROTOCOL_VERSION_MIN))
      throw new SurfaceLinkError('E_PROTOCOL_VERSION', `client speaks versions ${hello.minVersion}..${hello.maxVersion}; this server ${PROTOCOL_VERSION_MIN}..${PROTOCOL_VERSION_MAX}`);
    session.name = hello.info.name;
    session.offers = hello.info.mechanisms;
    const rejected: { name: string; reason: string }[] = [];
    const ours = hostIdentity().bootId;
    const theirs = hello.info.host.bootId;
    session.otherHost = ours !== null && theirs !== null && ours !== theirs ? `the client runs on another host (boot id ${theirs}, ours ${ours}): handles cannot cross hosts` : null;
    const choice = this.choose(session.offers, 0, rejected, session.otherHost);
    if (!choice) throw new SurfaceLinkError('E_NO_MECHANISM', `no common mechanism: ${rejected.map((r) => `${r.name}: ${r.reason}`).join('; ')}`);
    session.backend = choice.backend;
    session.mechanism = choice.name;
    session.formats = choice.formats;
    session.reason = choice.reason;
    if (session.helloTimer) clearTimeout(session.helloTimer);
    session.helloTimer = null;
    session.state = 'active';
    const w = session.channel.writer;
    const sent = session.channel.send(
      writeWelcome(w, version, {
        server: peerInfo(this.name),
        clientId: session.id,
        mechanism: session.mechanism,
        reason: session.reason,
        rejected,
        limits: { maxMessage: DEFAULT_MAX_MESSAGE, maxHandles: MAX_HANDLES, releaseTimeoutMs: this.releaseTimeoutMs, maxHeldFrames: 1 },
        ...(choice.backend === null && this.streamEndpoint ? { stream: this.streamEndpoint } : {}),
      }),
    );
    if (!this.sendOrDrop(session, sent)) return;
    this.logger('info', `client ${session.id} "${session.name}" (pid ${session.pid}): ${session.mechanism} — ${session.reason}`);
    this.emit('client', session.info());
    for (const surface of this.surfaces.values()) {
      if (surface.front) this.deliver(session, session.surfaceState(surface), surface, surface.front, [], 0);
    }
  }

  /** The first offer from `from` on that this server can serve, with the reason; rejections noted. */
  private choose(
    offers: MechanismOffer[],
    from: number,
    rejected: { name: string; reason: string }[],
    otherHost: string | null,
  ): { name: string; backend: Backend | null; index: number; reason: string; formats: FormatSet | null } | null {
    for (let i = from; i < offers.length; i++) {
      const offer = offers[i];
      if (offer.name === Mechanism.STREAM_V1) {
        // No handles: the client is pointed at the StreamServer. Only at HELLO, never as a fallback.
        const why = !this.streamEndpoint ? 'this server has no stream endpoint (no StreamServer was started for it)' : from > 0 ? 'stream.v1 is chosen only at HELLO, not as a fallback' : null;
        if (why) {
          rejected.push({ name: offer.name, reason: why });
          continue;
        }
        const skipped = rejected.length ? ` (skipped ${rejected.map((r) => `${r.name}: ${r.reason}`).join('; ')})` : '';
        return { name: offer.name, backend: null, index: i, formats: null, reason: `stream.v1 is the client's ${ordinal(i + 1)} choice: frames come encoded over WebSocket${skipped}` };
      }
      if (otherHost !== null) {
        rejected.push({ name: offer.name, reason: otherHost });
        continue;
      }
      const backend = this.mechanisms.find((b) => b.name === offer.name);
      if (!backend) {
        rejected.push({ name: offer.name, reason: unavailableReason(offer.name) ?? 'this server was configured without it' });
        continue;
      }
      let formats: FormatSet | null = null;
      let detail = '';
      if (backend.formats) {
        // The client declares what it can import; the server keeps what it can also allocate.
        const declared = FormatSet.fromJSON(offer.formats ?? []);
        formats = declared.intersect(backend.formats());
        if (formats.size === 0) {
          rejected.push({ name: offer.name, reason: `no common format × modifier (client: ${declared.toString() || 'none'}; server: ${backend.formats().toString()})` });
          continue;
        }
        detail = `; common formats: ${formats.toString()}`;
      }
      const skipped = rejected.length ? ` (skipped ${rejected.map((r) => r.name).join(', ')})` : '';
      return { name: backend.name, backend, index: i, formats, reason: `${offer.name} is the client's ${ordinal(i + 1)} choice and the server supports it${skipped}${detail}` };
    }
    return null;
  }

  private importFailed(session: ClientSession, report: ReturnType<typeof readImportFailed>): void {
    const code = errorCodeName(report.code);
    this.logger('warn', `client ${session.id} could not import buffer ${report.bufferId} of surface ${report.surfaceId} via ${session.mechanism} (${code}): ${report.reason}`);
    this.fallBack(session, code, report.reason);
  }

  /**
   * Moves a client to the next mechanism in its offers (after the current one) that this
   * server can serve every surface with; tells it why (MECHANISM). With nothing left, the
   * session ends with E_NO_MECHANISM. Returns true if the session goes on.
   */
  private fallBack(session: ClientSession, code: ErrorCodeName, reason: string): boolean {
    const current = session.offers.findIndex((o) => o.name === session.mechanism);
    const rejected: { name: string; reason: string }[] = [];
    const next = this.choose(session.offers, current + 1, rejected, session.otherHost);
    if (!next) {
      this.disconnect(session, 'E_NO_MECHANISM', `client cannot use ${session.mechanism} (${code}: ${reason}) and there is nothing to fall back to`, true);
      return false;
    }
    session.backend = next.backend;
    session.mechanism = next.name;
    session.formats = next.formats;
    session.reason = `fell back from ${session.offers[current]?.name} after ${code}: ${reason}`;
    this.forgetBuffers(session);
    for (const st of session.surfaces.values()) st.needsFull = true;
    this.logger('info', `client ${session.id}: ${session.mechanism} — ${session.reason}`);
    if (!this.sendOrDrop(session, session.channel.send(writeMechanism(session.channel.writer, session.mechanism, session.reason)))) return false;
    this.emit('clientMechanism', session.info());
    return true;
  }

  /**
   * How `buffer` is described to this client: its own mechanism's handles when the client
   * imports them, else the shm.v1 form (same memory, or a shadow copy). null: the client's
   * mechanism cannot carry this buffer (e.g. a format × modifier it did not declare).
   */
  private exportFor(session: ClientSession, surface: SharedSurface, buffer: SurfaceBuffer): BufferExport | string {
    const primary = buffer.exported.primary;
    if (session.mechanism === Mechanism.SHM_V1) {
      if (primary.mechanism === Mechanism.SHM_V1) return primary;
      if (primary.modifier !== MODIFIER_LINEAR) return `surface ${surface.id}'s buffers are tiled (modifier ${modifierName(primary.modifier)}); a shm.v1 copy would be unreadable`;
      return buffer.shmExport();
    }
    if (session.mechanism !== primary.mechanism) return `surface ${surface.id} is ${primary.mechanism}, not ${session.mechanism}`;
    if (session.formats && !session.formats.has(surface.format.fourcc, primary.modifier))
      return `surface ${surface.id} is ${surface.format.name} with modifier ${modifierName(primary.modifier)}, which the client did not declare`;
    return primary;
  }

  private deliver(session: ClientSession, st: SurfaceState, surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number): void {
    if (session.backend === null) return; // stream.v1: its frames go out over the WebSocket
    const withFence = buffer.fence !== null && MECHANISMS_WITH_FENCES.has(session.mechanism ?? '');
    if (buffer.fence !== null && !buffer.fenceReady && !withFence) {
      // This client cannot wait on the fence: hold the frame back until it signals.
      st.pending = true;
      if (damage !== st.accum) accumulate(st, damage, count);
      return;
    }
    const ch = session.channel;
    if (!buffer.knownBy.has(session)) {
      const exp = this.exportFor(session, surface, buffer);
      if (typeof exp === 'string') {
        if (this.fallBack(session, 'E_UNSUPPORTED_FORMAT', exp)) this.deliver(session, st, surface, buffer, damage, count);
        return;
      }
      const length = writeScanout(
        ch.writer,
        {
          surfaceId: surface.id, bufferId: buffer.id, generation: buffer.generation,
          width: buffer.width, height: buffer.height, format: surface.format.fourcc, modifier: exp.modifier,
          orientation: Orientation.TOP_DOWN, visible: { x: 0, y: 0, width: buffer.width, height: buffer.height },
          planes: exp.planes.map((p) => ({ handleIndex: p.handleIndex, stride: p.layout.stride, offset: p.layout.offset, size: p.layout.size })),
        },
        exp.handles.length,
      );
      if (!this.sendOrDrop(session, ch.send(length, exp.handles))) return;
      buffer.knownBy.add(session);
    } else if (session.mechanism === Mechanism.SHM_V1 && buffer.exported.primary.mechanism !== Mechanism.SHM_V1) {
      buffer.shmExport(); // bring the shadow copy up to date (a no-op where the memory is shared)
    }
    // Damage is relative to the last frame this client saw: everything it skipped is included.
    if (st.pending && damage !== st.accum) accumulate(st, damage, count);
    if (st.needsFull || st.accumFull) count = 0;
    else if (st.pending) {
      damage = st.accum;
      count = damage.length;
    }
    const length = writeFrame(ch.writer, surface.id, buffer.id, surface.sequence, surface.lastPresentNs, damage, count, withFence);
    const result = withFence ? ch.send(length, [buffer.fence as NativeFd]) : ch.send(length);
    st.accum.length = 0; // reused: no allocation per frame
    st.accumFull = false;
    st.needsFull = false;
    st.pending = false;
    if (!this.sendOrDrop(session, result)) return;
    st.held = buffer;
    st.heldSequence = surface.sequence;
    st.heldSinceMs = performance.now();
    buffer.holders++;
    session.framesDelivered++;
  }

  /** false if the message could not be sent (the session is then being closed). */
  private sendOrDrop(session: ClientSession, result: number): boolean {
    if (result >= 0) return true;
    if (result === -2) this.disconnect(session, 'E_BACKPRESSURE', 'the client stopped reading and its send queue is full', false);
    // -1: the peer is gone; its channel reports the close and we clean up then.
    return false;
  }

  private release(session: ClientSession, surfaceId: number, bufferId: number, sequence: number, fence?: NativeFd): void {
    const surface = this.surfaces.get(surfaceId);
    const st = session.surfaces.get(surfaceId);
    if (!surface || !st) {
      // A release racing a SURFACE_GONE is normal; a surface that never existed is not.
      if (surfaceId > this.highestSurfaceId || surfaceId === 0) throw new SurfaceLinkError('E_UNKNOWN_BUFFER', `RELEASE names surface ${surfaceId}, which does not exist`);
      return;
    }
    const held = st.held;
    if (!held || held.id !== bufferId || st.heldSequence !== sequence)
      throw new SurfaceLinkError('E_UNEXPECTED', `RELEASE of buffer ${bufferId} frame ${sequence}, which this client does not hold`);
    st.held = null;
    held.holders--;
    if (fence) {
      // The client's reads finish when this fence signals; until then the buffer stays busy.
      held.pendingFences++;
      waitFence(fence, () => {
        held.pendingFences--;
        surface.collect(held);
      });
    }
    surface.collect(held);
    try {
      this.emit('release', surfaceId, bufferId, sequence, session.id);
    } catch (error) {
      rethrowLater(error);
    }
    if (st.pending && surface.front) this.deliver(session, st, surface, surface.front, st.accum, st.accum.length);
  }

  /** @internal Ends a session once: tells the client why (if asked and possible), frees what it held. */
  disconnect(session: ClientSession, code: ErrorCodeName, message: string, tell: boolean): void {
    if (session.state === 'closed') return;
    const wasActive = session.state === 'active';
    session.state = 'closed';
    if (session.helloTimer) clearTimeout(session.helloTimer);
    if (tell && !session.channel.closed) session.channel.send(writeError(session.channel.writer, ErrorCode[code], true, message));
    session.channel.close();
    for (const [surfaceId, st] of session.surfaces) {
      const surface = this.surfaces.get(surfaceId);
      if (st.held) {
        st.held.holders--;
        surface?.collect(st.held);
        st.held = null;
      }
    }
    this.forgetBuffers(session);
    this.sessions.delete(session);
    if (code !== 'E_PEER_CLOSED' && code !== 'E_SHUTDOWN') this.logger('warn', `client ${session.id} (pid ${session.pid}) disconnected: ${code}: ${message}`);
    if (wasActive || code !== 'E_PEER_CLOSED') this.emit('clientGone', session.info(), { code, message });
  }

  /** The client no longer has any buffer's handles: each is announced (SCANOUT) again before use. */
  private forgetBuffers(session: ClientSession): void {
    for (const surface of this.surfaces.values()) for (const b of surface.buffers()) b.knownBy.delete(session);
  }

  private sweepDeadlines(): void {
    const now = performance.now();
    for (const session of this.sessions) {
      for (const [surfaceId, st] of session.surfaces) {
        if (st.held && now - st.heldSinceMs > this.releaseTimeoutMs) {
          this.disconnect(session, 'E_RELEASE_TIMEOUT', `held frame ${st.heldSequence} of surface ${surfaceId} for ${Math.round(now - st.heldSinceMs)} ms (limit ${this.releaseTimeoutMs} ms)`, true);
          break;
        }
      }
    }
  }

  /** Stops listening, tells every client (E_SHUTDOWN), frees all surfaces. Idempotent. */
  close(): void {
    if (this.closedValue) return;
    this.closedValue = true;
    clearInterval(this.sweepTimer);
    this.listener.close();
    try {
      fs.unlinkSync(this.path);
    } catch {
      /* already gone */
    }
    for (const session of [...this.sessions]) this.disconnect(session, 'E_SHUTDOWN', 'the server is shutting down', true);
    for (const surface of [...this.surfaces.values()]) surface.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }

  private assertOpen(): void {
    if (this.closedValue) throw new SurfaceLinkError('E_CLOSED', 'the server is closed');
  }
}

function accumulate(st: SurfaceState, damage: readonly Rect[], count: number): void {
  if (st.accumFull) return;
  if (count === 0 || st.accum.length + count > MAX_DAMAGE_RECTS) {
    st.accumFull = true;
    st.accum = [];
    return;
  }
  for (let i = 0; i < count; i++) {
    const r = damage[i];
    st.accum.push({ x: r.x, y: r.y, width: r.width, height: r.height });
  }
}

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value)) throw invalidArgument(name, 'a positive number', value);
  return value;
}

function ordinal(n: number): string {
  return n === 1 ? '1st' : n === 2 ? '2nd' : n === 3 ? '3rd' : `${n}th`;
}
