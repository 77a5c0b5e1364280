/**
 * SurfaceServer: the producer's end. It wires options to a transport listener, the mechanism
 * registry and the session features, owns the surfaces, and turns each present into frames for
 * every client (frames.v1, ./core/features/frames.ts) and every in-process tap. A client that is
 * slow or stuck only ever skips frames; it never blocks the producer or the other clients.
 */
import { EventEmitter } from 'eventemitter3';
import type { SurfaceBuffer } from './buffer.js';
import { CursorServer } from './core/features/cursor.js';
import { FramesServer, type FramesHost } from './core/features/frames.js';
import { InputServer } from './core/features/input.js';
import type { ServerFeature } from './core/features/types.js';
import { waitFence } from './core/fences.js';
import type { ServerOffer } from './core/negotiate.js';
import { ServerSession, type ClientInfo, type SessionHost } from './core/session.js';
import { SurfaceLinkError, invalidArgument, type ErrorCodeName } from './errors.js';
import { rethrowLater } from './events.js';
import { monotonicNs } from './host.js';
import type { CursorState, InputEvent, InputMode } from './input.js';
import { PeerLog, peerText, stderrLogger, type Logger } from './log.js';
import { mechanisms as defaultRegistry, type MechanismRegistry } from './mechanisms/index.js';
import type { Mechanism } from './mechanisms/types.js';
import type { Rect, WelcomeInfo } from './protocol/codec.js';
import { DEFAULT_MAX_MESSAGE, MAX_HANDLES } from './protocol/constants.js';
import {
  SharedSurface,
  type AdoptSurfaceOptions,
  type DmabufSurfaceOptions,
  type PoolStats,
  type PresentOptions,
  type SurfaceHost,
  type SurfaceOptions,
} from './surface.js';
import { monotonicMs } from './telemetry.js';
import { platformTransport, type Listener, type MessageChannel, type Transport } from './transport/index.js';

export type { ClientInfo } from './core/session.js';

/** How `SurfaceServer.listen()` listens, whom it admits, and its limits. */
export interface ServerOptions {
  /** Socket path; default $XDG_RUNTIME_DIR/surfacelink/<name>.sock (or a 0700 dir under the temp dir). */
  path?: string;
  /** Server name, sent to clients; default "surfacelink". */
  name?: string;
  /** Peer uids allowed besides our own (SO_PEERCRED). Default: only our own uid. */
  allowUids?: number[];
  /** Mode of the socket file; default 0o600. Widen it only together with allowUids. */
  socketMode?: number;
  /**
   * A client holding a frame longer than this is disconnected (E_RELEASE_TIMEOUT). Default 2000 ms.
   * Each client is judged by its own frames only, on CLOCK_MONOTONIC, from when the FRAME was handed
   * to the socket until its RELEASE was read; before a client is dropped, what it sent that waits
   * unread is read first, so a loop busy with the producer's work never shortens the deadline.
   * Nothing else drops a client for holding frames (a full pool makes the producer skip a frame).
   */
  releaseTimeoutMs?: number;
  /** A client that has not said HELLO by then is disconnected (E_TIMEOUT). Default 5000 ms. */
  helloTimeoutMs?: number;
  /** Most clients at once (E_LIMIT beyond). Default 32. */
  maxClients?: number;
  /**
   * Connections that may wait to be accepted (the listen backlog): default 4096, which the kernel
   * caps at net.core.somaxconn (4096 since Linux 5.4, 128 before). Clients retry a connect the
   * queue refuses (ClientOptions.retryConnect).
   */
  listenBacklog?: number;
  /**
   * Handle mechanisms this server may use, in its own preference order (default: every
   * available one except those served only when named here: iosurface-pipe.v1, whose surfaces any
   * process on the Mac can read). Mechanisms that carry no handles (stream.v1) are served whenever
   * they can be: stream.v1 as soon as a StreamServer is started for this server.
   */
  mechanisms?: string[];
  /** The transport to listen on (default: this platform's, see transport/index.ts). */
  transport?: Transport;
  /** Where log lines go; default warnings and errors to stderr. */
  logger?: Logger;
  /**
   * Whose input (input.v1) the server takes: 'all' (the default: local clients are already this
   * server's own user or those in allowUids), 'none', or a function asked once per client when
   * its session starts. A refused client is told once (a non-fatal E_PERMISSION) and its input
   * is dropped. Remote viewers' input (StreamServer) is not subject to this.
   */
  input?: 'all' | 'none' | ((client: ClientInfo) => boolean);
}

/**
 * An in-process consumer of every presented frame (the remote stream encoders use it): called
 * synchronously once a frame's pixels are readable (its acquire fence, if any, has signalled),
 * inside a CPU read bracket. Copy what you need before returning: the buffer may be reused by
 * the producer afterwards. Must not throw; an exception is reported on the next tick and the
 * tap stays installed.
 */
export interface FrameTap {
  /**
   * Called for each presented frame whose pixels are readable. `damage` holds `count` valid
   * rectangles (0: the whole surface changed); `presentTimeNs` is CLOCK_MONOTONIC at present.
   */
  frame(
    surface: SharedSurface,
    buffer: SurfaceBuffer,
    damage: readonly Rect[],
    count: number,
    presentTimeNs: number,
  ): void;
  /** The surface was closed (no more frames from it). */
  surfaceClosed?(surface: SharedSurface): void;
  /**
   * The surface's cursor changed (cursor.v1): its image (`shapeChanged`), or its position or
   * visibility. Called at every setCursor()/moveCursor() (not coalesced), and for every surface with
   * a cursor when the tap is added (`shapeChanged` true). `state` is an immutable snapshot.
   */
  cursor?(surface: SharedSurface, state: Readonly<CursorState>, shapeChanged: boolean): void;
  /** The surface's input mode changed (setInputMode); called for every surface when the tap is added. */
  inputMode?(surface: SharedSurface, mode: InputMode): void;
}

/** What the 'pool' event says. */
export interface PoolEvent {
  /** The surface. */
  surfaceId: number;
  /** 'grew': a buffer was added on demand; 'shrank': an unneeded one was given back (RETIRE). */
  change: 'grew' | 'shrank';
  /** The buffer added or given back. */
  bufferId: number;
  /** The pool after the change, with its bounds and counters. */
  pool: PoolStats;
}

/** SurfaceServer's events and their arguments. */
export interface ServerEvents {
  /** A client finished negotiation. */
  client: [ClientInfo];
  /** A client left or was disconnected; `code` says why. */
  clientGone: [
    ClientInfo,
    {
      /** Stable error code: E_PEER_CLOSED when it went away, E_SHUTDOWN when the server closed, … */
      code: ErrorCodeName;
      /** The same, for people. */
      message: string;
    },
  ];
  /** A client's mechanism changed after an import failure. */
  clientMechanism: [ClientInfo];
  /**
   * A client released a frame (presentation feedback); clientId 0: a StreamServer's H.264 encoders,
   * which hold buffers they read in place. Positional numbers: no allocation per frame.
   */
  release: [surfaceId: number, bufferId: number, sequence: number, clientId: number];
  /**
   * A surface's pool grew (every buffer was in use; at most up to `maxBuffers`) or shrank (a buffer
   * it grew by was not needed for `shrinkDelayMs` and was retired). Also logged at 'info'.
   */
  pool: [PoolEvent];
  /**
   * Input from a viewer (input.v1, or a remote viewer through a StreamServer), validated: the
   * surface exists, the codes are in range, positions lie inside the picture, pointer events match
   * the surface's input mode. The event object is the listener's to keep.
   */
  input: [InputEvent];
}

/**
 * The producer's end: listens for clients, owns the surfaces, and sends every present to every
 * client (and tap). Create with `SurfaceServer.listen()`; everything runs on the event loop and
 * nothing waits for a slow client. close() (or `using`) stops it.
 */
export class SurfaceServer extends EventEmitter<ServerEvents> {
  /** Where clients connect (the socket path). */
  readonly path: string;
  /** Its name, sent to clients in WELCOME. */
  readonly name: string;
  private readonly logger: Logger;
  private readonly listener: Listener;
  private readonly sessions = new Set<ServerSession>();
  private readonly taps: FrameTap[] = [];
  private readonly attachments = new Map<string, unknown>();
  private readonly surfaces = new Map<number, SharedSurface>();
  private readonly helloTimeoutMs: number;
  private readonly maxClients: number;
  private readonly registry: MechanismRegistry;
  /** Mechanisms that allocate, in this server's preference order. */
  private readonly allocating: Mechanism[];
  private readonly frames: FramesServer;
  private readonly input: InputServer;
  private readonly cursor: CursorServer;
  private readonly sweepTimer: NodeJS.Timeout;
  private nextClientId = 1;
  private highestSurfaceId = 0;
  private closedValue = false;

  private constructor(options: ServerOptions, transport: Transport) {
    super();
    this.name = options.name ?? 'surfacelink';
    this.logger = options.logger ?? stderrLogger;
    this.registry = defaultRegistry;
    const releaseTimeoutMs = Math.ceil(positive(options.releaseTimeoutMs ?? 2000, 'releaseTimeoutMs'));
    this.helloTimeoutMs = Math.ceil(positive(options.helloTimeoutMs ?? 5000, 'helloTimeoutMs'));
    this.maxClients = positive(options.maxClients ?? 32, 'maxClients');
    const served = this.chooseMechanisms(options.mechanisms);
    this.allocating = served.filter((m) => m.allocate);
    if (this.allocating.length === 0)
      throw new SurfaceLinkError(
        'E_NO_MECHANISM',
        'no sharing mechanism is available on this machine (run `surfacelink doctor`)',
      );

    const offer: ServerOffer = {
      served: new Map(served.map((m) => [m.name, m])),
      // A mechanism that works here but is not served: say why (explicitOnly says how to enable it).
      unavailableReason: (name) => this.registry.unavailableReason(name) ?? this.registry.get(name)?.explicitOnly,
      context: { attachment: (name) => this.attachments.get(name) },
    };
    const limits: WelcomeInfo['limits'] = {
      maxMessage: DEFAULT_MAX_MESSAGE,
      maxHandles: MAX_HANDLES,
      releaseTimeoutMs,
      maxHeldFrames: 1,
    };
    const surfaces = this.surfaces;
    const owner = this;
    const framesHost: FramesHost = {
      surfaces,
      get highestSurfaceId() {
        return owner.highestSurfaceId;
      },
      releaseTimeoutMs,
      logger: this.logger,
      offer,
      released: (surfaceId, bufferId, sequence, clientId) => {
        try {
          this.emit('release', surfaceId, bufferId, sequence, clientId);
        } catch (error) {
          rethrowLater(error);
        }
      },
      mechanismChanged: (session) => this.emit('clientMechanism', session.info()),
    };
    this.frames = new FramesServer(framesHost);
    const policy = inputPolicy(options.input);
    this.input = new InputServer({
      surfaces,
      get highestSurfaceId() {
        return owner.highestSurfaceId;
      },
      logger: this.logger,
      allowed: (session) => policy(session.info()),
      input: (event) => {
        try {
          this.emit('input', event);
        } catch (error) {
          rethrowLater(error);
        }
      },
    });
    this.cursor = new CursorServer({ surfaces, logger: this.logger });
    const features = new Map<string, ServerFeature>(
      [this.frames, this.input, this.cursor].map((f): [string, ServerFeature] => [f.name, f]),
    );
    this.sessionHost = {
      name: this.name,
      logger: this.logger,
      peerLog: new PeerLog(this.logger),
      limits,
      offer,
      features,
      sessionActive: (session) => this.emit('client', session.info()),
      sessionEnded: (session, code, message, wasActive) => this.sessionEnded(session, code, message, wasActive),
    };

    this.listener = transport.listen({
      address: options.path,
      name: options.name ?? 'default',
      policy: { allowUids: options.allowUids, mode: options.socketMode },
      ...(options.listenBacklog !== undefined ? { backlog: options.listenBacklog } : {}),
    });
    this.path = this.listener.address;
    this.listener.start(
      (channel, refusal) => this.accept(channel, refusal),
      (message) => this.logger('error', message),
    );
    // One sweep for all release deadlines and pool shrinking: no per-frame timers.
    this.sweepTimer = setInterval(
      () => {
        this.frames.sweep();
        for (const surface of this.surfaces.values()) surface.trim();
      },
      Math.max(10, Math.min(250, releaseTimeoutMs / 4)),
    );
    this.sweepTimer.unref();
  }

  private readonly sessionHost: SessionHost;

  /** Starts listening. Resolves once clients can connect. */
  static async listen(options: ServerOptions = {}): Promise<SurfaceServer> {
    if (options.path !== undefined && (typeof options.path !== 'string' || options.path.length === 0))
      throw invalidArgument('path', 'a non-empty string', options.path);
    return new SurfaceServer(options, options.transport ?? platformTransport());
  }

  /** The mechanisms this server serves: the named ones (each must be available), or every available one. */
  private chooseMechanisms(names: string[] | undefined): Mechanism[] {
    const available = this.registry.available(this.logger);
    // Some mechanisms are served only when named (iosurface-pipe.v1: it makes surfaces global).
    if (!names) return available.filter((m) => !m.explicitOnly);
    const named = names.map((name) => {
      const m = this.registry.get(name);
      const why = this.registry.unavailableReason(name);
      if (!m || why) throw new SurfaceLinkError('E_NO_MECHANISM', `mechanism ${name} cannot be used here: ${why}`);
      return m;
    });
    // Mechanisms without handles need no configuration: they are served whenever they can be.
    return [...named, ...available.filter((m) => !m.caps.handles && !named.includes(m))];
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.closedValue;
  }

  /** Connected clients that finished negotiation. */
  get clients(): ClientInfo[] {
    return [...this.sessions].filter((s) => s.state === 'active').map((s) => s.info());
  }

  /** A new surface, backed by the server's preferred mechanism (or `options.mechanism`). */
  createSurface(options: SurfaceOptions): SharedSurface {
    this.assertOpen();
    let mechanism = this.allocating[0];
    if (options.mechanism !== undefined) {
      const m = this.allocating.find((x) => x.name === options.mechanism);
      if (!m)
        throw new SurfaceLinkError(
          'E_NO_MECHANISM',
          `this server does not serve ${options.mechanism} ` +
            `(${this.registry.unavailableReason(options.mechanism) ?? 'not configured'})`,
        );
      mechanism = m;
    } else if (options.allocator !== undefined) {
      const m = this.allocating.find((x) => x.allocators?.includes(options.allocator!));
      if (!m)
        throw new SurfaceLinkError(
          'E_NO_MECHANISM',
          `no mechanism this server serves has an allocator called ${options.allocator}`,
        );
      mechanism = m;
    }
    return this.add(new SharedSurface(this.surfaceHost, mechanism, options));
  }

  /**
   * A surface whose buffers are someone else's — dma-bufs from a GPU driver or QEMU, a memfd
   * of QEMU's display — shared as they are: each is validated like a received buffer and
   * duplicated (you keep yours). Clients of the backing's own mechanism map the same memory;
   * clients of a copy-target mechanism (shm.v1) get a copy where the memory cannot be given to
   * them directly (a tiled dma-buf cannot be copied: those clients are moved on or refused).
   * The pool is exactly these buffers; new ones come with `surface.reconfigure({ backing })`.
   */
  adoptSurface(options: AdoptSurfaceOptions): SharedSurface {
    this.assertOpen();
    const kind = options.backing?.kind;
    if (kind === undefined) throw invalidArgument('backing.kind', "'dmabuf' or 'memfd'", kind);
    const mechanism = this.registry.adopterFor(kind);
    if (typeof mechanism === 'string')
      throw new SurfaceLinkError('E_NO_MECHANISM', `cannot adopt ${kind} buffers here: ${mechanism}`);
    return this.add(new SharedSurface(this.surfaceHost, mechanism, options));
  }

  /** A surface of dma-bufs made by someone else: adoptSurface with `backing.kind = 'dmabuf'`. */
  createDmabufSurface(options: DmabufSurfaceOptions): SharedSurface {
    const { buffers, modifier, ...rest } = options;
    return this.adoptSurface({
      ...rest,
      backing: { kind: 'dmabuf', buffers, ...(modifier !== undefined ? { modifier } : {}) },
    });
  }

  private add(surface: SharedSurface): SharedSurface {
    this.surfaces.set(surface.id, surface);
    this.highestSurfaceId = Math.max(this.highestSurfaceId, surface.id);
    return surface;
  }

  /** Same as `buffer.surface.present(buffer, options)`. */
  present(buffer: SurfaceBuffer, options?: PresentOptions): void {
    buffer.surface.present(buffer, options);
  }

  /** The surfaces this server serves (for taps that pick one). */
  get surfaceList(): SharedSurface[] {
    return [...this.surfaces.values()];
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
      if (front && front.fenceReady) this.runTaps([tap], surface, front, [], 0, surface.lastPresentNs);
      if (tap.inputMode) callTap(() => tap.inputMode!(surface, surface.inputMode));
      if (tap.cursor && surface.cursorSet) callTap(() => tap.cursor!(surface, surface.cursor, true));
    }
    return () => {
      const i = this.taps.indexOf(tap);
      if (i >= 0) this.taps.splice(i, 1);
    };
  }

  /**
   * @internal Input from a remote viewer (the StreamServer calls it; `source: 'remote'`): validated
   * like input.v1 input and emitted as 'input'. Throws SurfaceLinkError: E_MALFORMED (a field out of
   * range, an unknown kind), E_UNKNOWN_BUFFER (no such surface ever), E_OUT_OF_BOUNDS (a position
   * outside the picture). Dropped silently, like socket input: a surface closed since, pointer input
   * of the other mode (docs/protocol.md §3.11).
   */
  dispatchInput(event: InputEvent): void {
    this.assertOpen();
    this.input.dispatch(event);
  }

  /** @internal What a server component provides for one mechanism's negotiation (see Mechanism.accept). */
  attach(mechanism: string, value: unknown): void {
    if (value === null || value === undefined) this.attachments.delete(mechanism);
    else this.attachments.set(mechanism, value);
  }

  private readonly surfaceHost: SurfaceHost = {
    presentFrame: (surface, buffer, damage, count) => this.presentFrame(surface, buffer, damage, count),
    retireBuffer: (surface, buffer, why) => {
      if (why) this.logger('warn', `surface ${surface.id}: buffer ${buffer.id} retired: ${why}`);
      this.frames.retire(surface, buffer);
    },
    shrinkBuffer: (surface, buffer) => this.frames.retire(surface, buffer, false),
    poolChanged: (surface, change, buffer) => {
      const pool = surface.poolStats;
      this.logger(
        'info',
        change === 'grew'
          ? `surface ${surface.id}: pool grew to ${pool.buffers} buffers (configured ${pool.configured}, ` +
              `max ${pool.maxBuffers}): every buffer was in use`
          : `surface ${surface.id}: pool shrank to ${pool.buffers} buffers (configured ${pool.configured}): ` +
              `buffer ${buffer.id} was not needed; retired`,
      );
      try {
        this.emit('pool', { surfaceId: surface.id, change, bufferId: buffer.id, pool });
      } catch (error) {
        rethrowLater(error);
      }
    },
    surfaceClosed: (surface) => this.surfaceClosed(surface),
    cursorChanged: (surface, shapeChanged) => {
      if (shapeChanged) this.cursor.shapeChanged(surface);
      else this.cursor.positionChanged(surface);
      for (const tap of this.taps) if (tap.cursor) callTap(() => tap.cursor!(surface, surface.cursor, shapeChanged));
    },
    inputModeChanged: (surface) => {
      this.input.modeChanged(surface);
      for (const tap of this.taps) if (tap.inputMode) callTap(() => tap.inputMode!(surface, surface.inputMode));
    },
  };

  private presentFrame(surface: SharedSurface, buffer: SurfaceBuffer, damage: readonly Rect[], count: number): void {
    const now = monotonicNs();
    surface.lastPresentNs = now;
    surface.lastPresentMs = monotonicMs();
    if (buffer.fence) {
      // Clients that cannot wait on a fence get this frame once it has signalled.
      buffer.fenceReady = false;
      const fenced = buffer.fence;
      waitFence(fenced, () => {
        if (buffer.fence !== fenced) return;
        buffer.fenceReady = true;
        if (surface.front === buffer) {
          this.frames.fenceSignalled(surface, buffer);
          if (this.taps.length > 0) this.runTaps(this.taps, surface, buffer, [], 0, now);
        }
      });
    } else {
      buffer.fenceReady = true;
      if (this.taps.length > 0) this.runTaps(this.taps, surface, buffer, damage, count, now);
    }
    // The surface reaches clients now: input.v1 clients learn its input mode first.
    if (surface.sequence === 1) this.input.surfaceAppeared(surface);
    this.frames.present(surface, buffer, damage, count);
  }

  private runTaps(
    taps: readonly FrameTap[],
    surface: SharedSurface,
    buffer: SurfaceBuffer,
    damage: readonly Rect[],
    count: number,
    now: number,
  ): void {
    buffer.store.beginCpuAccess('read');
    try {
      for (let i = 0; i < taps.length; i++) {
        try {
          taps[i].frame(surface, buffer, damage, count, now);
        } catch (error) {
          rethrowLater(error);
        }
      }
    } finally {
      buffer.store.endCpuAccess('read');
    }
  }

  private surfaceClosed(surface: SharedSurface): void {
    this.surfaces.delete(surface.id);
    for (const tap of [...this.taps]) {
      try {
        tap.surfaceClosed?.(surface);
      } catch (error) {
        rethrowLater(error);
      }
    }
    this.frames.surfaceClosed(surface);
    this.cursor.surfaceClosed(surface);
  }

  private accept(channel: MessageChannel, refusal: string | null): void {
    if (this.closedValue) return channel.close();
    const session = new ServerSession(this.sessionHost, channel, this.nextClientId++);
    this.sessions.add(session);
    channel.start(session, { maxMessage: DEFAULT_MAX_MESSAGE, maxHandles: MAX_HANDLES });
    if (refusal !== null) return session.disconnect('E_PERMISSION', refusal, true);
    if (this.sessions.size > this.maxClients)
      return session.disconnect('E_LIMIT', `too many clients (limit ${this.maxClients})`, true);
    session.helloTimer = setTimeout(
      () => session.disconnect('E_TIMEOUT', `no HELLO within ${this.helloTimeoutMs} ms`, true),
      this.helloTimeoutMs,
    );
    session.helloTimer.unref();
  }

  private sessionEnded(session: ServerSession, code: ErrorCodeName, message: string, wasActive: boolean): void {
    this.sessions.delete(session);
    if (code !== 'E_PEER_CLOSED' && code !== 'E_SHUTDOWN')
      this.sessionHost.peerLog.final(
        session.logPeer,
        'warn',
        `client ${session.id} (pid ${session.pid}) disconnected: ${code}: ${peerText(message, 400)}`,
      );
    if (wasActive || code !== 'E_PEER_CLOSED') this.emit('clientGone', session.info(), { code, message });
  }

  /** Stops listening, tells every client (E_SHUTDOWN), frees all surfaces. Idempotent. */
  close(): void {
    if (this.closedValue) return;
    this.closedValue = true;
    clearInterval(this.sweepTimer);
    this.listener.close();
    for (const session of [...this.sessions]) session.disconnect('E_SHUTDOWN', 'the server is shutting down', true);
    for (const surface of [...this.surfaces.values()]) surface.close();
    this.cursor.close();
  }

  /** Same as close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  private assertOpen(): void {
    if (this.closedValue) throw new SurfaceLinkError('E_CLOSED', 'the server is closed');
  }
}

/** Calls one tap hook; an exception is reported on the next tick and the tap stays. */
function callTap(hook: () => void): void {
  try {
    hook();
  } catch (error) {
    rethrowLater(error);
  }
}

/** ServerOptions.input as a function of the client. */
function inputPolicy(option: ServerOptions['input']): (client: ClientInfo) => boolean {
  if (option === undefined || option === 'all') return () => true;
  if (option === 'none') return () => false;
  if (typeof option === 'function') return option;
  throw invalidArgument('input', "'all', 'none' or a function of the client", option);
}

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !(value > 0) || !Number.isFinite(value))
    throw invalidArgument(name, 'a positive number', value);
  return value;
}
