/**
 * SurfaceClient: the viewer's end. Connects through the platform's transport, negotiates
 * (HELLO → WELCOME), and runs the session features it was granted — frames.v1 imports each
 * buffer once and turns FRAME messages into `frame` events (./core/features/frames-client.ts).
 */
import { EventEmitter } from 'eventemitter3';
import { performance } from 'node:perf_hooks';
import { CursorClient, type CursorClientHost } from './core/features/cursor-client.js';
import { FramesClient, type FramesClientHost } from './core/features/frames-client.js';
import { InputClient, type InputClientHost } from './core/features/input-client.js';
import type { ClientFeature } from './core/features/types.js';
import { IMPLIED_FEATURES } from './core/negotiate.js';
import { ErrorCode, SurfaceLinkError, errorCodeName, type ErrorCodeName } from './errors.js';
import type { FormatSet } from './format-set.js';
import type { Frame } from './frame.js';
import { closeHandles, type OsHandle } from './handles.js';
import { peerInfo } from './host.js';
import type { CursorState, InputMode, TouchEvent } from './input.js';
import { mechanisms as registry } from './mechanisms/index.js';
import { ImportRefused, type CourierClient, type Mechanism } from './mechanisms/types.js';
import {
  messageType,
  readError,
  readWelcome,
  writeError,
  writeHello,
  wrongMessage,
  type StreamEndpoint,
  type WelcomeInfo,
} from './protocol/codec.js';
import {
  DEFAULT_MAX_MESSAGE,
  MAX_HANDLES,
  MessageType,
  PROTOCOL_VERSION_MAX,
  PROTOCOL_VERSION_MIN,
} from './protocol/constants.js';
import type { ClientTelemetry } from './telemetry.js';
import { platformTransport, type MessageChannel, type PeerIdentity, type Transport } from './transport/index.js';

export { Frame } from './frame.js';

/** How `SurfaceClient.connect()` reaches a server, what it offers, and how long it waits. */
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
  /**
   * Give up if negotiation has not finished by then (default 5000 ms), connect retries
   * (`retryConnect`) included.
   */
  timeoutMs?: number;
  /**
   * Retry a connect the server could not take yet, with backoff, until `timeoutMs` has passed
   * (default true): EAGAIN (the server's listen queue is full: many clients connecting at once
   * while its loop is busy) and ECONNREFUSED (the socket file is there but nobody listens yet: a
   * server restarting). The first retry comes after about 5 ms, each next after twice as long (at
   * most 250 ms), each with ±50 % jitter. A missing socket (ENOENT) or a refusal by permission
   * fails at once. False: every connect error fails at once.
   */
  retryConnect?: boolean;
  /** Server uids to trust besides our own and root's. */
  allowServerUids?: number[];
  /**
   * dmabuf.v1 (mechanisms that negotiate formats): the formats × modifiers to declare (default:
   * every known format, LINEAR — what the CPU can read).
   */
  dmabufFormats?: FormatSet;
  /** The transport to connect over (default: this platform's). */
  transport?: Transport;
  /**
   * Session features to ask for, in preference order (docs/protocol.md §4.5). Default: none named,
   * which means frames.v1 and keeps the HELLO of a plain v1 client.
   */
  features?: string[];
  /**
   * Ask for input.v1 (send input with sendKey(), sendPointer(), …): adds it to `features`, or to
   * frames.v1 when `features` is not given. Whether it was granted: `negotiation.features`.
   */
  input?: boolean;
  /** Ask for cursor.v1 ('cursor' events): adds it to `features` like `input`. */
  cursor?: boolean;
}

/** What negotiation decided: the mechanism, why, and what the server granted. */
export interface Negotiation {
  /** The mechanism in use, e.g. 'dmabuf.v1'. */
  mechanism: string;
  /** Why it was chosen (or why the server fell back to it), in words. */
  reason: string;
  /** The offered mechanisms not chosen, each with why. */
  rejected: {
    /** The mechanism. */
    name: string;
    /** Why it was not chosen. */
    reason: string;
  }[];
  /** Who the server says it is. */
  server: WelcomeInfo['server'];
  /** Our id on the server (its `ClientInfo.id`). */
  clientId: number;
  /** Session features granted (frames.v1 unless HELLO asked for others). */
  features: string[];
  /** stream.v1: where the frames are (connect a RemoteStreamClient to `wsUrl` with `token`). */
  stream?: StreamEndpoint;
}

/** Why a session ended. */
export interface DisconnectInfo {
  /** Stable error code: E_CLOSED when we closed, E_SHUTDOWN when the server did, E_PEER_CLOSED when it went away. */
  code: ErrorCodeName;
  /** The same, for people. */
  message: string;
}

/** SurfaceClient's events and their arguments. */
export interface ClientEvents {
  /** Negotiation finished, or the server moved this client to another mechanism. */
  negotiated: [Negotiation];
  /** A new frame: read it, then release() it; the server sends the surface's next (newest) frame after the release. */
  frame: [Frame];
  /** A surface went away (its buffers are released when their frames are). */
  surfaceGone: [
    {
      /** The surface that went away. */
      surfaceId: number;
    },
  ];
  /** A buffer could not be imported; the server was told and may fall back. */
  importFailed: [SurfaceLinkError];
  /** The session ended: the server closed, failed, refused us, or we closed. */
  disconnect: [DisconnectInfo];
  /**
   * A non-fatal error reported by the server (input.v1: E_PERMISSION, E_OUT_OF_BOUNDS), or a local one
   * (E_TRUNCATED: a shm.v1 buffer whose memory shrank under the mapping read zeros and was dropped).
   */
  warning: [SurfaceLinkError];
  /** input.v1: the producer wants this kind of pointer input for the surface (absolute until told). */
  inputMode: [
    {
      /** The surface. */
      surfaceId: number;
      /** 'absolute' (send sendPointer) or 'relative' (send sendPointerMotion). */
      mode: InputMode;
    },
  ];
  /** cursor.v1: a surface's cursor changed: its image (`shapeChanged`), or its position or visibility. */
  cursor: [
    {
      /** The surface. */
      surfaceId: number;
      /** The whole cursor now; `state.image.pixels` is a copy that belongs to the application. */
      state: CursorState;
      /** True when the image changed (a CURSOR_SHAPE), false for a move. */
      shapeChanged: boolean;
    },
  ];
}

/** A feature's client half with its host, as the client drives it. */
interface BoundFeature {
  readonly name: string;
  readonly serverMessages: ReadonlyMap<number, number>;
  onMessage(type: number, view: DataView, start: number, length: number, handles: OsHandle[] | undefined): void;
  end(): void;
}

function bind<H>(feature: ClientFeature<H>, host: H): BoundFeature {
  return {
    name: feature.name,
    serverMessages: feature.serverMessages,
    onMessage: (type, view, start, length, handles) => feature.onMessage(host, type, view, start, length, handles),
    end: () => feature.end(host),
  };
}

/** The features a client's options ask for; undefined when they name none (a plain v1 HELLO). */
function requestedFeatures(options: ClientOptions): string[] | undefined {
  const extra = [options.input ? 'input.v1' : null, options.cursor ? 'cursor.v1' : null].filter(
    (f): f is string => f !== null,
  );
  if (extra.length === 0) return options.features;
  const list = [...(options.features ?? IMPLIED_FEATURES)];
  for (const f of extra) if (!list.includes(f)) list.push(f);
  return list;
}

let nextSerial = 1;

/** Connect retries (ClientOptions.retryConnect): the first delay, doubled up to the last. */
const CONNECT_RETRY_FIRST_MS = 5;
const CONNECT_RETRY_MAX_MS = 250;

/** A connect the server could not take yet: its listen queue was full (EAGAIN) or nobody listened (ECONNREFUSED). */
function retryableConnect(e: SurfaceLinkError): boolean {
  if (e.code !== 'E_CONNECT') return false;
  const name = (e.cause as { errnoName?: unknown } | undefined)?.errnoName;
  return name === 'EAGAIN' || name === 'EWOULDBLOCK' || name === 'ECONNREFUSED';
}

// Not `implements MessageHandler`: its handler methods are tagged internal, so stripInternal removes them from
// the .d.ts, where the clause would then fail to check. `channel.start(this, …)` still checks the shape.
/**
 * The viewer's end: connects to a SurfaceServer, negotiates a mechanism and emits each received
 * frame. Create with `SurfaceClient.connect()`; events come from the event loop. close() (or
 * `using`) ends the session.
 */
export class SurfaceClient extends EventEmitter<ClientEvents> {
  private readonly channel: MessageChannel;
  private readonly offered: Mechanism[];
  private negotiationValue: Negotiation | null = null;
  private mechanismValue: Mechanism | null = null;
  private courier: CourierClient | null = null;
  private state: 'hello' | 'active' | 'closed' = 'hello';
  private disconnectInfo: DisconnectInfo | null = null;
  private readonly ready: Promise<SurfaceClient>;
  private settle: { resolve: (c: SurfaceClient) => void; reject: (e: SurfaceLinkError) => void } | null = null;
  private readonly timer: NodeJS.Timeout;
  private readonly frames: FramesClient;
  private readonly input: InputClient;
  private readonly cursor: CursorClient;
  /** The features this client implements, whether granted or not. */
  private readonly features: readonly BoundFeature[];
  /** Message type → the granted feature that handles it. */
  private readonly handlers = new Map<number, BoundFeature>();
  private readonly requestedFeatures: string[] | undefined;
  private inputGranted = false;

  private constructor(options: ClientOptions, deadlineMs?: number) {
    super();
    this.requestedFeatures = requestedFeatures(options);
    this.offered = options.mechanisms
      ? options.mechanisms.map((name) => {
          const m = registry.get(name);
          if (!m) throw new SurfaceLinkError('E_NO_MECHANISM', `unknown or unimplemented mechanism ${name}`);
          return m;
        })
      : registry.available().filter((m) => m.caps.handles);
    if (this.offered.length === 0)
      throw new SurfaceLinkError(
        'E_NO_MECHANISM',
        'no sharing mechanism is available on this machine (run `surfacelink doctor`)',
      );
    const transport = options.transport ?? platformTransport();
    this.channel = transport.connect({ address: options.path, policy: { allowUids: options.allowServerUids } });
    const owner = this;
    const framesHost: FramesClientHost = {
      channel: this.channel,
      serial: nextSerial++,
      get active() {
        return owner.state === 'active';
      },
      get mechanism() {
        return owner.mechanismValue;
      },
      offered: this.offered,
      declared: options.dmabufFormats,
      get courier() {
        return owner.courier;
      },
      switchMechanism: (mechanism, reason) => this.switchMechanism(mechanism, reason),
      hasFrameListeners: () => this.listenerCount('frame') > 0,
      emitFrame: (frame) => this.emit('frame', frame),
      emitSurfaceGone: (surfaceId) => {
        this.input.surfaceGone(surfaceId);
        this.cursor.surfaceGone(surfaceId);
        this.emit('surfaceGone', { surfaceId });
      },
      emitImportFailed: (error) => this.emit('importFailed', error),
      emitWarning: (error) => this.emit('warning', error),
      fail: (code, message, tell) => this.fail(code, message, tell),
    };
    this.frames = new FramesClient(framesHost);
    const inputHost: InputClientHost = {
      channel: this.channel,
      emitInputMode: (surfaceId, mode) => this.emit('inputMode', { surfaceId, mode }),
    };
    const cursorHost: CursorClientHost = {
      emitCursor: (surfaceId, state, shapeChanged) => this.emit('cursor', { surfaceId, state, shapeChanged }),
      emitWarning: (error) => this.emit('warning', error),
    };
    this.input = new InputClient(inputHost);
    this.cursor = new CursorClient(cursorHost);
    this.features = [bind(this.frames, framesHost), bind(this.input, inputHost), bind(this.cursor, cursorHost)];
    this.channel.start(this, { maxMessage: DEFAULT_MAX_MESSAGE, maxHandles: MAX_HANDLES });
    this.ready = new Promise((resolve, reject) => (this.settle = { resolve, reject }));
    const timeoutMs = options.timeoutMs ?? 5000;
    const where = options.path ?? transport.defaultAddress();
    // After connect retries, only what is left of timeoutMs.
    const leftMs = deadlineMs === undefined ? timeoutMs : Math.max(0, deadlineMs - performance.now());
    this.timer = setTimeout(
      () => this.fail('E_TIMEOUT', `no WELCOME from ${where} within ${timeoutMs} ms`, true),
      leftMs,
    );
    try {
      this.channel.send(
        writeHello(this.channel.writer, PROTOCOL_VERSION_MIN, PROTOCOL_VERSION_MAX, {
          ...peerInfo(options.name ?? `node-${process.pid}`),
          mechanisms: this.offered.map((m) => ({
            ...(m.offer?.({ formats: m.caps.negotiatesFormats ? options.dmabufFormats : undefined }) ?? {}),
            name: m.name,
          })),
          ...(this.requestedFeatures ? { features: this.requestedFeatures } : {}),
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

  /**
   * Connects and negotiates. Resolves once frames can arrive; `negotiated` fires right after. A
   * connect the server cannot take yet is retried within `timeoutMs` (see `retryConnect`).
   */
  static connect(options: ClientOptions = {}): Promise<SurfaceClient> {
    const startMs = performance.now();
    try {
      return new SurfaceClient(options).ready;
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      if (options.retryConnect === false || !retryableConnect(e)) return Promise.reject(e);
      return SurfaceClient.connectRetrying(options, startMs + (options.timeoutMs ?? 5000), e);
    }
  }

  /** The retries of connect(): backoff with jitter until `deadlineMs` (performance.now()). */
  private static async connectRetrying(
    options: ClientOptions,
    deadlineMs: number,
    first: SurfaceLinkError,
  ): Promise<SurfaceClient> {
    let last = first;
    let attempts = 1;
    for (let delayMs = CONNECT_RETRY_FIRST_MS; ; delayMs = Math.min(delayMs * 2, CONNECT_RETRY_MAX_MS)) {
      const waitMs = Math.min(delayMs * (0.5 + Math.random()), deadlineMs - performance.now());
      if (waitMs <= 0) break;
      await new Promise((resolve) => setTimeout(resolve, waitMs));
      let client: SurfaceClient;
      try {
        attempts++;
        client = new SurfaceClient(options, deadlineMs);
      } catch (error) {
        last = SurfaceLinkError.fromNative(error);
        if (!retryableConnect(last)) throw last;
        continue;
      }
      return client.ready;
    }
    throw new SurfaceLinkError(last.code, `${last.message} (${attempts} attempts in ${options.timeoutMs ?? 5000} ms)`, {
      cause: last.cause ?? last,
    });
  }

  /** The mechanism in use and why it was chosen (null before negotiation). */
  get negotiation(): Negotiation | null {
    return this.negotiationValue;
  }
  /** The mechanism in use (null before negotiation). */
  get mechanism(): string | null {
    return this.negotiationValue?.mechanism ?? null;
  }
  /** True once the session ended, whoever ended it. */
  get closed(): boolean {
    return this.state === 'closed';
  }
  /** Why the session ended, once it has. */
  get disconnectReason(): DisconnectInfo | null {
    return this.disconnectInfo;
  }
  /**
   * How long the frames released so far took, stage by stage: present → received (the FRAME read
   * here) → imported (handed to the application: fence signalled, CPU access begun) → released,
   * for all surfaces and for each. Counts, and p50/p99/mean/max of the most recent frames, in ms.
   */
  get telemetry(): ClientTelemetry {
    return this.frames.telemetry();
  }

  /** @internal Messages from the channel. */
  onMessage(view: DataView, start: number, length: number, handles: OsHandle[] | undefined): void {
    try {
      const type = messageType(view, start);
      if (this.state === 'hello' && type !== MessageType.WELCOME && type !== MessageType.ERROR)
        throw new SurfaceLinkError(
          'E_UNEXPECTED',
          `the server's first message must be WELCOME, not type 0x${type.toString(16)}`,
        );
      const feature = this.handlers.get(type);
      if (handles && !(feature && handles.length <= (feature.serverMessages.get(type) ?? 0)))
        throw new SurfaceLinkError(
          'E_HANDLE_COUNT',
          `message type 0x${type.toString(16)} carries no handles; got ${handles.length}`,
        );
      switch (type) {
        case MessageType.WELCOME:
          return this.onWelcome(view, start, length);
        case MessageType.ERROR: {
          const e = readError(view, start, length);
          const err = new SurfaceLinkError(errorCodeName(e.code), e.message);
          if (e.fatal) return this.fail(err.code, `server: ${e.message}`, false);
          this.emit('warning', err);
          return;
        }
        default: {
          if (feature) return feature.onMessage(type, view, start, length, handles);
          const owner = this.features.find((f) => f.serverMessages.has(type));
          if (owner)
            throw new SurfaceLinkError(
              'E_UNEXPECTED',
              `message type 0x${type.toString(16)} belongs to ${owner.name}, which this session did not negotiate`,
            );
          throw wrongMessage(type, 'client');
        }
      }
    } catch (error) {
      closeHandles(handles);
      const e = SurfaceLinkError.fromNative(error);
      this.fail(e.code, e.message, true);
    }
  }

  /** @internal The channel failed or the server went away. */
  onChannelError(error: SurfaceLinkError): void {
    this.fail(
      error.code,
      error.code === 'E_PEER_CLOSED' ? 'the server closed the connection' : error.message,
      error.code !== 'E_PEER_CLOSED',
    );
  }

  private onWelcome(view: DataView, start: number, length: number): void {
    if (this.state !== 'hello') throw new SurfaceLinkError('E_UNEXPECTED', 'WELCOME may be sent only once');
    const { version, info } = readWelcome(view, start, length);
    if (version < PROTOCOL_VERSION_MIN || version > PROTOCOL_VERSION_MAX)
      throw new SurfaceLinkError('E_PROTOCOL_VERSION', `server chose version ${version}, which we do not speak`);
    const mechanism = this.offered.find((m) => m.name === info.mechanism);
    if (!mechanism)
      throw new SurfaceLinkError('E_UNEXPECTED', `server chose ${info.mechanism}, which we did not offer`);
    mechanism.checkWelcome?.(info);
    if (mechanism.courier) this.courier = startCourier(mechanism, info, this.channel.peer);
    const features = info.features ?? [...IMPLIED_FEATURES];
    const asked = this.requestedFeatures ?? IMPLIED_FEATURES;
    const extra = features.filter((f) => !asked.includes(f));
    if (extra.length > 0)
      throw new SurfaceLinkError('E_UNEXPECTED', `server granted ${extra.join(', ')}, which we did not ask for`);
    for (const f of this.features)
      if (features.includes(f.name)) for (const type of f.serverMessages.keys()) this.handlers.set(type, f);
    this.inputGranted = features.includes(this.input.name);
    this.mechanismValue = mechanism;
    this.state = 'active';
    clearTimeout(this.timer);
    this.negotiationValue = {
      mechanism: info.mechanism,
      reason: info.reason,
      rejected: info.rejected,
      server: info.server,
      clientId: info.clientId,
      features,
      ...(info.stream ? { stream: info.stream } : {}),
    };
    this.settle?.resolve(this);
    this.settle = null;
    // After the awaiting code has run (it attaches listeners in that same microtask turn).
    const negotiation = this.negotiationValue;
    queueMicrotask(() => this.state === 'active' && this.emit('negotiated', negotiation));
  }

  private switchMechanism(mechanism: Mechanism, reason: string): void {
    // Fallbacks never go to a courier mechanism (they are chosen only at HELLO).
    this.courier?.close();
    this.courier = null;
    this.mechanismValue = mechanism;
    if (!this.negotiationValue) return;
    this.negotiationValue = { ...this.negotiationValue, mechanism: mechanism.name, reason };
    this.emit('negotiated', this.negotiationValue);
  }

  private fail(code: ErrorCodeName, message: string, tellServer: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearTimeout(this.timer);
    if (tellServer && !this.channel.closed)
      this.channel.send(writeError(this.channel.writer, ErrorCode[code], true, message));
    this.channel.close();
    this.courier?.close();
    for (const f of this.features) f.end();
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
    this.courier?.close();
    for (const f of this.features) f.end();
    this.disconnectInfo = { code: 'E_CLOSED', message: 'closed by this client' };
    this.settle?.reject(new SurfaceLinkError('E_CLOSED', 'closed before negotiation finished'));
    this.settle = null;
  }

  /** Same as close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  // ---- input.v1 (docs/protocol.md §3.11–§3.17). Each call sends one message at once; arguments are
  // checked here (E_INVALID_ARGUMENT), the rest by the server (warnings arrive as 'warning' events).

  /** The input mode the server last announced for a surface ('absolute' until it says otherwise). */
  inputModeOf(surfaceId: number): InputMode {
    return this.input.modes.get(surfaceId) ?? 'absolute';
  }

  /** A key went down (`pressed`) or up: a Linux evdev code, 1..0x2ff (KEY_A = 30). */
  sendKey(surfaceId: number, evdevCode: number, pressed: boolean): void {
    this.assertInput().key(surfaceId, evdevCode, pressed);
  }

  /**
   * The pointer is at (x, y): pixels of the surface's picture as shown, (0, 0) the top-left pixel
   * of its visible rectangle (absolute mode; dropped by the server in relative mode).
   */
  sendPointer(surfaceId: number, position: { x: number; y: number }): void {
    this.assertInput().pointer(surfaceId, position?.x, position?.y);
  }

  /** The pointer moved by (dx, dy) pixels, each within ±16384 (relative mode; dropped in absolute mode). */
  sendPointerMotion(surfaceId: number, motion: { dx: number; dy: number }): void {
    this.assertInput().motion(surfaceId, motion?.dx, motion?.dy);
  }

  /** A mouse button went down or up: an evdev code BTN_LEFT (0x110) .. BTN_TASK (0x117). */
  sendButton(surfaceId: number, button: number, pressed: boolean): void {
    this.assertInput().button(surfaceId, button, pressed);
  }

  /** Wheel notches, each within ±1024: dy > 0 scrolls down, dx > 0 right. */
  sendScroll(surfaceId: number, steps: { dx: number; dy: number }): void {
    this.assertInput().scroll(surfaceId, steps?.dx, steps?.dy);
  }

  /** One touch point (slot 0..15) went down, moved, went up or was cancelled, at (x, y) like sendPointer. */
  sendTouch(surfaceId: number, touch: { phase: TouchEvent['phase']; slot: number; x: number; y: number }): void {
    this.assertInput().touch(surfaceId, touch?.phase, touch?.slot, touch?.x, touch?.y);
  }

  private assertInput(): InputClient {
    if (this.state === 'closed') throw new SurfaceLinkError('E_CLOSED', 'the client is closed');
    if (!this.inputGranted)
      throw new SurfaceLinkError(
        'E_UNSUPPORTED',
        this.requestedFeatures?.includes('input.v1')
          ? 'the server did not grant input.v1, so this session cannot send input'
          : 'this session did not ask for input.v1: connect with { input: true } to send input',
      );
    return this.input;
  }
}

/**
 * The client side of a courier mechanism's handle courier. One that cannot start fails its first
 * SCANOUT instead, which the server hears as an import failure and falls back from.
 */
function startCourier(mechanism: Mechanism, welcome: WelcomeInfo, server: PeerIdentity): CourierClient {
  try {
    return mechanism.courier!.client(welcome, server);
  } catch (error) {
    const e = SurfaceLinkError.fromNative(error);
    const failed = new ImportRefused(e.code, `${mechanism.name}: its handle courier could not start: ${e.message}`);
    return {
      collect() {
        throw failed;
      },
      close() {},
    };
  }
}
