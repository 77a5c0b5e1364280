/**
 * StreamServer: the `stream` mechanism's server (docs/remote.md). Remote viewers connect over
 * a WebSocket, authenticate with a token, and get one surface encoded per client — H.264
 * through GStreamer or the lossless tile codec — concurrently with the SurfaceServer's local
 * clients of the same surface.
 *
 * Pixels reach it through a FrameTap: each presented frame's damage is copied into one
 * mirror per streamed surface (./mirror.ts, shared by every stream client of it), and clients
 * (./session.ts) encode from the mirror when they have room. Latest wins: nothing is queued
 * per client but damage (tiles) or a "dirty" flag (H.264), so a slow viewer gets fewer
 * frames, never a longer queue.
 */
import * as crypto from 'node:crypto';
import * as http from 'node:http';
import * as https from 'node:https';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Duplex } from 'node:stream';
import { EventEmitter } from 'eventemitter3';
import { WebSocketServer, type WebSocket } from 'ws';
import { SurfaceLinkError, invalidArgument, type ErrorCodeName } from '../errors.js';
import { rethrowLater } from '../events.js';
import { PeerLog, peerText, stderrLogger, type Logger } from '../log.js';
import type { InputEvent } from '../input.js';
import type { FrameTap, SurfaceServer } from '../server.js';
import type { SharedSurface } from '../surface.js';
import { probeH264, type H264Probe } from './h264.js';
import { addressKey, hostForUrl, isLoopback, listWebFiles, originAllowed, serveFile, tokenMatches } from './http.js';
import { isEvent, rateExceeded } from './input.js';
import { STREAMABLE, SurfaceMirror } from './mirror.js';
import {
  ACK_TIMEOUT_MS,
  CODECS,
  CloseCode,
  HELLO_TIMEOUT_MS,
  INPUT_TYPES,
  MAX_MESSAGE_RATE,
  MAX_PENDING,
  MAX_PENDING_PER_ADDRESS,
  STREAM_PATH,
  SUBPROTOCOL,
  clockMs,
  closeCodeFor,
  parseClientMessage,
  type Codec,
  type HelloMessage,
  type InputMessage,
} from './protocol.js';
import { StreamSession, type PendingSlot } from './session.js';
import { resolveTls, type StreamCertificateInfo } from './tls.js';
import type { StreamClientInfo, StreamServerEvents, StreamServerOptions, StreamServerStats } from './types.js';

export type {
  StreamClientInfo,
  StreamServerEvents,
  StreamServerOptions,
  StreamServerStats,
  ViewerStats,
} from './types.js';

// Not `implements SessionOwner`: `fail` is tagged internal, so stripInternal removes it from the .d.ts, where
// the clause would then fail to check. `new StreamSession(this, …)` still checks the shape.
/**
 * Serves remote viewers of a SurfaceServer's surfaces over WebSocket (docs/remote.md): each
 * client authenticates with `token` and gets one surface encoded as H.264 or lossless tiles.
 * Create with StreamServer.start(); everything runs on the event loop, and a slow viewer only
 * gets fewer frames. close() (or `using`) is idempotent.
 */
export class StreamServer extends EventEmitter<StreamServerEvents> {
  /** The token clients must present. Secret: whoever has it can watch the surfaces and send them input. */
  readonly token: string;
  /** The view-only token (`options.viewToken`): frames and the cursor, no input; null if none. */
  readonly viewToken: string | null;
  /** The address it is bound to. */
  readonly host: string;
  /** The port it listens on (the one chosen when `options.port` was 0). */
  readonly port: number;
  /** The server name sent in `welcome`. */
  readonly name: string;
  /** The certificate served (`options.tls`), or null for plain HTTP. */
  readonly certificate: StreamCertificateInfo | null;
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<StreamSession>();
  private readonly mirrors = new Map<number, SurfaceMirror<StreamSession>>();
  private readonly allowOrigins: Set<string>;
  private readonly files: Map<string, string>;
  private readonly codecs: Codec[];
  private readonly sweepTimer: NodeJS.Timeout;
  private removeTap: (() => void) | null = null;
  private closedValue = false;
  private readonly tap: FrameTap;
  private readonly logger: Logger;
  /** Log lines remote peers cause, rate-limited per address. */
  private readonly peerLog: PeerLog;
  /** Connections waiting for their hello, per address key (addressKey). */
  private readonly pendingByAddress = new Map<string, number>();
  private pendingCount = 0;
  /** Sessions past a good hello (they hold viewer slots; pending connections never do). */
  private authenticatedCount = 0;
  private readonly counters = { refusedPerAddress: 0, refusedPending: 0, refusedClients: 0, helloTimeouts: 0 };

  private constructor(
    /** The SurfaceServer whose surfaces it streams. */
    readonly surfaceServer: SurfaceServer,
    httpServer: http.Server,
    private readonly options: Required<
      Omit<
        StreamServerOptions,
        'token' | 'viewToken' | 'allowOrigins' | 'webRoot' | 'port' | 'host' | 'name' | 'logger' | 'codecs' | 'tls'
      >
    >,
    settings: {
      token: string;
      viewToken: string | null;
      host: string;
      port: number;
      name: string;
      allowOrigins: string[];
      files: Map<string, string>;
      codecs: Codec[];
      logger: Logger;
      certificate: StreamCertificateInfo | null;
    },
    private readonly h264Probe: H264Probe | null,
    private readonly h264Unavailable: string,
  ) {
    super();
    this.http = httpServer;
    this.token = settings.token;
    this.viewToken = settings.viewToken;
    this.host = settings.host;
    this.port = settings.port;
    this.name = settings.name;
    this.certificate = settings.certificate;
    this.files = settings.files;
    this.codecs = settings.codecs;
    const hostPart = hostForUrl(this.host);
    const scheme = this.certificate ? 'https' : 'http';
    const own = [`${scheme}://${hostPart}:${this.port}`];
    if (isLoopback(this.host))
      own.push(
        `${scheme}://localhost:${this.port}`,
        `${scheme}://127.0.0.1:${this.port}`,
        `${scheme}://[::1]:${this.port}`,
      );
    this.allowOrigins = new Set([...own, ...settings.allowOrigins]);
    this.wss = new WebSocketServer({
      noServer: true,
      // Larger than the 64 KiB message limit so an oversized message gets E_TOO_LARGE, not a bare 1009.
      maxPayload: 1024 * 1024,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    httpServer.on('request', (req, res) => serveFile(this.files, req, res));
    httpServer.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
    httpServer.on('clientError', (_e, socket) => socket.destroy());
    // A failed TLS handshake (a browser that has not accepted the certificate yet, a port scan):
    // nothing to log per peer, the socket is already gone.
    httpServer.on('tlsClientError', (_e, socket) => socket.destroy());
    this.tap = {
      frame: (surface, buffer, damage, count, presentTimeNs) => {
        const m = this.mirrors.get(surface.id);
        // Skip a repeat of the frame the mirror already holds (a re-installed tap replays it), unless
        // the mirror was asked to copy it in (it keeps no copy while its clients read the buffer itself).
        if (
          m &&
          !(
            m.ready &&
            count === 0 &&
            m.sequence === surface.sequence &&
            surface.visible.width === m.width &&
            surface.visible.height === m.height &&
            (m.pixelsValid || !m.needsCopy())
          )
        ) {
          m.update(buffer, damage, count, presentTimeNs);
          this.scheduleFlush(m);
        }
      },
      surfaceClosed: (surface) => this.surfaceGone(surface),
      cursor: (surface, state) => {
        const m = this.mirrors.get(surface.id);
        if (!m) return;
        m.cursor.state = state;
        for (const s of m.sessions) s.cursorChanged();
      },
      inputMode: (surface, mode) => {
        const m = this.mirrors.get(surface.id);
        if (!m) return;
        m.cursor.mode = mode;
        for (const s of m.sessions) s.inputModeChanged();
      },
    };
    this.sweepTimer = setInterval(() => this.sweep(), 1000);
    this.sweepTimer.unref();
    this.logger = settings.logger;
    this.peerLog = new PeerLog(this.logger);
    // Local clients that offer stream.v1 on the unix socket are pointed here (docs/protocol.md §4.4).
    surfaceServer.attach('stream.v1', {
      wsUrl: this.wsUrl,
      token: this.token,
      url: this.url,
      codecs: this.codecs.filter((c) => c !== 'h264' || h264Unavailable === ''),
    });
  }

  /** Starts the HTTP + WebSocket server for `surfaceServer`'s surfaces. */
  static async start(surfaceServer: SurfaceServer, options: StreamServerOptions = {}): Promise<StreamServer> {
    if (surfaceServer.closed) throw new SurfaceLinkError('E_CLOSED', 'the SurfaceServer is closed');
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535)
      throw invalidArgument('port', 'an integer from 0 to 65535', port);
    const token = options.token ?? process.env.SURFACELINK_STREAM_TOKEN ?? crypto.randomBytes(32).toString('hex');
    if (typeof token !== 'string' || token.length < 16)
      throw invalidArgument('token', 'a string of at least 16 characters', token);
    const viewToken = options.viewToken ?? null;
    if (viewToken !== null && (typeof viewToken !== 'string' || viewToken.length < 16 || viewToken === token))
      throw invalidArgument('viewToken', 'a string of at least 16 characters, other than token', '(not shown)');
    const maxMessageRate = positive(options.maxMessageRate ?? MAX_MESSAGE_RATE, 'maxMessageRate');
    const codecs = options.codecs ?? [...CODECS];
    if (!Array.isArray(codecs) || codecs.length === 0 || codecs.some((c) => !CODECS.includes(c)))
      throw invalidArgument('codecs', `a non-empty list of ${CODECS.join(', ')}`, String(codecs));
    const maxFps = positive(options.maxFps ?? 30, 'maxFps');
    const bitrateKbps = positive(options.bitrateKbps ?? 8000, 'bitrateKbps');
    const window = options.window ?? 2;
    if (!Number.isInteger(window) || window < 1 || window > 16)
      throw invalidArgument('window', 'an integer from 1 to 16', window);
    const tileLevel = options.tileLevel ?? 1;
    if (!Number.isInteger(tileLevel) || tileLevel < 1 || tileLevel > 9)
      throw invalidArgument('tileLevel', 'an integer from 1 to 9', tileLevel);
    const adaptiveBitrate = options.adaptiveBitrate ?? true;
    if (typeof adaptiveBitrate !== 'boolean') throw invalidArgument('adaptiveBitrate', 'a boolean', adaptiveBitrate);
    const h264Input = options.h264Input ?? 'shared';
    if (h264Input !== 'shared' && h264Input !== 'copy')
      throw invalidArgument('h264Input', "'shared' | 'copy'", h264Input);
    const maxClients = positive(options.maxClients ?? 16, 'maxClients');
    const ackTimeoutMs = positive(options.ackTimeoutMs ?? ACK_TIMEOUT_MS, 'ackTimeoutMs');
    const helloTimeoutMs = positive(options.helloTimeoutMs ?? HELLO_TIMEOUT_MS, 'helloTimeoutMs');
    const maxPending = positive(options.maxPending ?? MAX_PENDING, 'maxPending');
    const maxPendingPerAddress = positive(
      options.maxPendingPerAddress ?? MAX_PENDING_PER_ADDRESS,
      'maxPendingPerAddress',
    );
    const webRoot = options.webRoot === undefined ? path.join(__dirname, '..', '..', 'web') : options.webRoot;
    const files = webRoot === null ? new Map<string, string>() : listWebFiles(webRoot);

    let probe: H264Probe | null = null;
    let unavailable = 'this server does not offer h264';
    if (codecs.includes('h264')) {
      try {
        probe = await probeH264();
        unavailable = probe.encoder ? '' : `no H.264 encoder here: ${probe.reason}`;
      } catch (error) {
        unavailable = `probing for an H.264 encoder failed: ${(error as Error).message}`;
      }
    }

    let tls: ReturnType<typeof resolveTls> | null = null;
    if (options.tls !== undefined) tls = resolveTls(options.tls, host);
    // A TLS handshake has as long as a hello has: a connection that never finishes one holds nothing longer.
    const httpServer = tls ? https.createServer({ ...tls.pem, handshakeTimeout: helloTimeoutMs }) : http.createServer();
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', (error: NodeJS.ErrnoException) =>
        reject(
          new SurfaceLinkError(
            error.code === 'EADDRINUSE' ? 'E_ADDRESS_IN_USE' : 'E_SYSTEM',
            `cannot listen on ${host}:${port}: ${error.message}`,
            { cause: error },
          ),
        ),
      );
      httpServer.listen(port, host, () => resolve());
    });
    const address = httpServer.address() as AddressInfo;
    return new StreamServer(
      surfaceServer,
      httpServer,
      {
        maxFps,
        bitrateKbps,
        window,
        maxClients,
        tileLevel,
        h264Input,
        adaptiveBitrate,
        ackTimeoutMs,
        helloTimeoutMs,
        maxMessageRate,
        maxPending,
        maxPendingPerAddress,
      },
      {
        token,
        viewToken,
        host,
        port: address.port,
        name: options.name ?? surfaceServer.name,
        allowOrigins: options.allowOrigins ?? [],
        files,
        codecs,
        logger: options.logger ?? stderrLogger,
        certificate: tls?.info ?? null,
      },
      probe,
      unavailable,
    );
  }

  /**
   * The browser viewer's URL, token in the fragment (never sent to the server by a browser),
   * encoded as the viewer decodes it. Bound to every interface (0.0.0.0, ::), it names the
   * loopback address: a wildcard is not an address a browser can open (the CLI lists the others).
   */
  get url(): string {
    return `${this.httpScheme}://${this.advertisedHost}:${this.port}/#${new URLSearchParams({ token: this.token }).toString()}`;
  }

  /** The browser viewer's URL with the view-only token (frames and the cursor, no input); null if there is none. */
  get viewUrl(): string | null {
    if (this.viewToken === null) return null;
    return `${this.httpScheme}://${this.advertisedHost}:${this.port}/#${new URLSearchParams({ token: this.viewToken }).toString()}`;
  }

  /** The WebSocket endpoint (the token goes in the hello, not the URL). */
  get wsUrl(): string {
    return `${this.certificate ? 'wss' : 'ws'}://${this.advertisedHost}:${this.port}${STREAM_PATH}`;
  }

  private get httpScheme(): string {
    return this.certificate ? 'https' : 'http';
  }

  private get advertisedHost(): string {
    if (this.host === '0.0.0.0') return '127.0.0.1';
    if (this.host === '::') return '[::1]';
    return hostForUrl(this.host);
  }

  /** True once close() was called. */
  get closed(): boolean {
    return this.closedValue;
  }

  /** The codecs this server can actually serve, each with why (h264 needs a GStreamer encoder). */
  get availableCodecs(): string[] {
    return this.codecs.map((c) =>
      c === 'h264'
        ? this.h264Unavailable === ''
          ? `h264 (${this.h264Probe?.encoder ?? '?'})`
          : `h264 unavailable: ${this.h264Unavailable}`
        : c,
    );
  }

  /** Connected clients past their hello. */
  get clients(): StreamClientInfo[] {
    return [...this.sessions].filter((s) => s.state === 'active').map((s) => s.info());
  }

  /** Connections now, and what the connection budgets refused so far (docs/remote.md §2.1). */
  get stats(): StreamServerStats {
    return { pending: this.pendingCount, authenticated: this.authenticatedCount, ...this.counters };
  }

  /** The H.264 encoder that h264 clients get, or null (and `availableCodecs` says why). */
  get h264Encoder(): string | null {
    return this.h264Probe?.encoder ?? null;
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const refuse = (status: number, text: string): void => {
      socket.end(
        `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\n` +
          (status === 429 || status === 503 ? 'Retry-After: 1\r\n' : '') +
          `Content-Type: text/plain\r\nContent-Length: ${text.length + 1}\r\n\r\n${text}\n`,
      );
    };
    if (this.closedValue) return refuse(503, 'shutting down');
    let pathname = '';
    try {
      pathname = new URL(req.url ?? '/', 'http://x').pathname;
    } catch {
      /* refused below */
    }
    if (pathname !== STREAM_PATH) return refuse(404, `the stream is at ${STREAM_PATH}`);
    const origin = req.headers.origin;
    if (origin !== undefined && !originAllowed(this.allowOrigins, this.host, origin, req.headers.host))
      return refuse(403, 'origin not allowed');
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(SUBPROTOCOL)) return refuse(400, `the WebSocket subprotocol must be ${SUBPROTOCOL}`);
    // Viewer slots are held by authenticated clients only; connections that have not said a good
    // hello yet are bounded on their own, per address and in total, so they can never fill them.
    if (this.authenticatedCount >= this.options.maxClients) {
      this.counters.refusedClients++;
      return refuse(503, `too many stream clients (maxClients ${this.options.maxClients})`);
    }
    const remoteAddress = req.socket.remoteAddress ?? '?';
    const address = addressKey(remoteAddress);
    if ((this.pendingByAddress.get(address) ?? 0) >= this.options.maxPendingPerAddress) {
      this.counters.refusedPerAddress++;
      return refuse(
        429,
        `too many connections from ${address} waiting for their hello ` +
          `(maxPendingPerAddress ${this.options.maxPendingPerAddress})`,
      );
    }
    if (this.pendingCount >= this.options.maxPending) {
      this.counters.refusedPending++;
      return refuse(503, `too many connections waiting for their hello (maxPending ${this.options.maxPending})`);
    }
    const slot: PendingSlot = { address, released: false };
    this.pendingByAddress.set(address, (this.pendingByAddress.get(address) ?? 0) + 1);
    this.pendingCount++;
    // Whatever becomes of the upgrade (refused by ws, closed before or after its hello), the slot is freed.
    socket.once('close', () => this.releasePending(slot));
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, remoteAddress, slot));
  }

  private releasePending(slot: PendingSlot): void {
    if (slot.released) return;
    slot.released = true;
    this.pendingCount--;
    const n = (this.pendingByAddress.get(slot.address) ?? 1) - 1;
    if (n > 0) this.pendingByAddress.set(slot.address, n);
    else this.pendingByAddress.delete(slot.address);
  }

  // ---- sessions ----

  private accept(ws: WebSocket, remoteAddress: string, slot: PendingSlot): void {
    const session = new StreamSession(this, ws, remoteAddress, {
      maxFps: this.options.maxFps,
      bitrateKbps: this.options.bitrateKbps,
      window: this.options.window,
      tileLevel: this.options.tileLevel,
      maxMessageRate: this.options.maxMessageRate,
      h264Input: this.options.h264Input,
      adaptiveBitrate: this.options.adaptiveBitrate,
    });
    session.pendingSlot = slot;
    this.sessions.add(session);
    session.helloTimer = setTimeout(() => {
      this.counters.helloTimeouts++;
      this.fail(session, 'E_TIMEOUT', `no hello within ${this.options.helloTimeoutMs} ms`);
    }, this.options.helloTimeoutMs);
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(session, data, isBinary));
    ws.on('error', () => {
      /* a protocol violation or a reset; 'close' follows */
    });
    ws.on('close', (code: number) => this.socketClosed(session, code));
  }

  private onMessage(session: StreamSession, data: Buffer, isBinary: boolean): void {
    if (session.state === 'closed') return;
    try {
      // Every message costs the producer's process something: a flood ends the session.
      if (!session.rate.take()) throw rateExceeded(this.options.maxMessageRate);
      if (isBinary) throw new SurfaceLinkError('E_MALFORMED', 'clients send text (JSON) messages only');
      const m = parseClientMessage(data, data.length);
      if (session.state === 'hello') {
        if (m.type !== 'hello') throw new SurfaceLinkError('E_AUTH', `the first message must be hello; got ${m.type}`);
        session.state = 'starting';
        if (session.helloTimer) clearTimeout(session.helloTimer);
        session.helloTimer = null;
        // Checked now, not in a later microtask: a refused hello is answered with its own code before
        // anything else that came in the same read is looked at.
        const admitted = this.admit(session, m);
        this.startStream(session, m, admitted).catch((error) => this.failWith(session, error));
        return;
      }
      switch (m.type) {
        case 'hello':
          throw new SurfaceLinkError('E_MALFORMED', 'hello twice');
        case 'ack':
          if (session.state === 'active') session.ack(m.seq);
          return;
        case 'keyframe':
          if (session.state === 'active') session.requestKeyframe();
          return;
        case 'ping':
          session.sendJson({ type: 'pong', t: m.t, serverMs: clockMs() });
          return;
        case 'stats': {
          const { type: _t, ...stats } = m;
          session.viewer = stats;
          return;
        }
        default:
          if (INPUT_TYPES.has(m.type)) this.input(session, m as InputMessage);
          return;
      }
    } catch (error) {
      this.failWith(session, error);
    }
  }

  private failWith(session: StreamSession, error: unknown): void {
    const e = SurfaceLinkError.fromNative(error);
    this.fail(session, e.code, e.message, (error as { closeCode?: number }).closeCode);
  }

  /** A viewer's input: refused for view-only viewers, checked against its picture, handed to the core. */
  private input(session: StreamSession, m: InputMessage): void {
    // Before the welcome (an encoder starting) the viewer has seen no picture: nothing to point at.
    if (session.state !== 'active' || !session.mirror) return;
    if (!session.inputAllowed)
      return session.warn('E_PERMISSION', 'this viewer connected with the view-only token: its input is dropped');
    const result = session.viewerInput.toEvent(m, session.mirror.surface, session.picture, session.id);
    if (result === null) return;
    if (!isEvent(result)) return session.warn(result.code, result.message);
    this.dispatch(session, result);
  }

  /** Hands an event to the core (which emits 'input'); its E_MALFORMED and such end the session. */
  private dispatch(session: StreamSession, event: InputEvent): void {
    try {
      this.surfaceServer.dispatchInput(event);
    } catch (error) {
      const e = SurfaceLinkError.fromNative(error);
      // A position the core finds outside the picture (the picture changed under us): dropped, as for local clients.
      if (e.code === 'E_OUT_OF_BOUNDS') return session.warn(e.code, `${e.message}; the event was dropped`);
      throw e;
    }
    session.viewerInput.commit(event);
  }

  /** The synchronous half of a hello: the token, a viewer slot, the surface, its format, the codec. */
  private admit(session: StreamSession, m: HelloMessage) {
    // Both compared, whichever matches, so the time taken says nothing about which one was tried.
    const full = tokenMatches(m.token, this.token);
    const viewOnly = this.viewToken !== null && tokenMatches(m.token, this.viewToken);
    if (!full && !viewOnly) throw new SurfaceLinkError('E_AUTH', 'wrong token');
    // Authenticated: from pending to a viewer slot, if one is left.
    if (this.authenticatedCount >= this.options.maxClients) {
      this.counters.refusedClients++;
      throw new SurfaceLinkError('E_LIMIT', `too many stream clients (maxClients ${this.options.maxClients})`);
    }
    if (session.pendingSlot) this.releasePending(session.pendingSlot);
    session.pendingSlot = null;
    session.authenticated = true;
    this.authenticatedCount++;
    session.inputAllowed = full;
    session.name = m.name;
    const surface =
      m.surface === undefined
        ? this.surfaceServer.surfaceList[0]
        : this.surfaceServer.surfaceList.find((s) => s.id === m.surface);
    if (!surface)
      throw Object.assign(
        new SurfaceLinkError(
          'E_INVALID_ARGUMENT',
          m.surface === undefined ? 'the server has no surface yet' : `no surface ${m.surface}`,
        ),
        { closeCode: CloseCode.NO_SURFACE },
      );
    if (!STREAMABLE.has(surface.format.name))
      throw Object.assign(
        new SurfaceLinkError(
          'E_UNSUPPORTED_FORMAT',
          `surface ${surface.id} is ${surface.format.name}; streams carry ${[...STREAMABLE].join(', ')}`,
        ),
        { closeCode: CloseCode.NO_CODEC },
      );
    // Both already clamped to their documented ranges (parseClientMessage).
    if (m.maxFps !== undefined) session.maxFps = Math.min(session.maxFps, m.maxFps);
    if (m.maxBitrateKbps !== undefined) {
      session.bitrateKbps = Math.min(session.bitrateKbps, m.maxBitrateKbps);
      session.tileKbps = m.maxBitrateKbps;
      session.maxBitrateKbps = m.maxBitrateKbps;
    }
    const choice = this.chooseCodec(m.codecs);
    session.reason = choice.reason;
    return { surface, choice };
  }

  /** The asynchronous half: the encoder starts (H.264 may fall back to tiles), then frames flow. */
  private async startStream(
    session: StreamSession,
    m: HelloMessage,
    { surface, choice }: ReturnType<StreamServer['admit']>,
  ): Promise<void> {
    const mirror = this.mirrorFor(surface);
    session.mirror = mirror;
    if (choice.codec === 'h264') {
      try {
        await session.startH264(mirror);
      } catch (error) {
        if (session.state === 'closed') return;
        const why = (error as Error).message;
        if (!m.codecs.includes('tiles') || !this.codecs.includes('tiles'))
          throw new SurfaceLinkError('E_ENCODER', `the H.264 encoder did not start: ${why}`);
        session.reason = `the H.264 encoder did not start (${why}); tiles is next in the client's list`;
        session.h264 = null;
        session.startTiles(mirror);
      }
    } else session.startTiles(mirror);
    if (session.state === 'closed') return;
    // With what it reads from ready: the mirror copies the current frame in if it needs the pixels.
    mirror.addSession(session);
    session.activate(mirror);
    this.peerLog.log(
      `stream ${addressKey(session.remoteAddress)}`,
      'info',
      `stream client ${session.id} "${peerText(session.name)}" from ${session.remoteAddress}: ${session.codec} ` +
        `— ${session.reason}`,
    );
    this.emit('client', session.info());
  }

  private chooseCodec(wanted: string[]): { codec: Codec; reason: string } {
    const skipped: string[] = [];
    for (const name of wanted) {
      if (!(CODECS as readonly string[]).includes(name)) {
        skipped.push(`${name}: unknown`);
        continue;
      }
      const codec = name as Codec;
      if (!this.codecs.includes(codec)) {
        skipped.push(`${codec}: not offered by this server`);
        continue;
      }
      if (codec === 'h264' && this.h264Unavailable) {
        skipped.push(`h264: ${this.h264Unavailable}`);
        continue;
      }
      const what =
        codec === 'h264'
          ? `H.264 via ${this.h264Probe!.encoder}${this.h264Probe!.hardware ? ' (hardware)' : ''}`
          : 'lossless tiles';
      return {
        codec,
        reason: skipped.length === 0 ? `${what}: the client's first choice` : `${what}; not ${skipped.join('; not ')}`,
      };
    }
    throw Object.assign(
      new SurfaceLinkError(
        'E_NO_MECHANISM',
        `no codec in common: ${skipped.join('; ')} (server offers ${this.codecs.join(', ')})`,
      ),
      { closeCode: CloseCode.NO_CODEC },
    );
  }

  /** The mirror of `surface`, created (and the tap installed) for its first stream client. */
  private mirrorFor(surface: SharedSurface): SurfaceMirror<StreamSession> {
    let mirror = this.mirrors.get(surface.id);
    if (!mirror) {
      const m = new SurfaceMirror<StreamSession>(surface);
      mirror = m;
      this.mirrors.set(surface.id, m);
      // (Re-)installing the tap hands it every surface's current frame: the new mirror starts full.
      // A mirror that starts copying later (a tiles client, a buffer that cannot be shared) asks again.
      m.refresh = () => {
        if (this.mirrors.get(surface.id) !== m || this.closedValue) return;
        this.removeTap?.();
        this.removeTap = this.surfaceServer.closed ? null : this.surfaceServer.addTap(this.tap);
      };
      // An encoder gave a buffer back: presentation feedback as from a local client (clientId 0), so a
      // producer that waits for a release to present again (the QEMU bridge's one buffer) goes on.
      m.released = (buffer, sequence) => {
        try {
          this.surfaceServer.emit('release', surface.id, buffer.id, sequence, 0);
        } catch (error) {
          rethrowLater(error);
        }
      };
      m.refresh();
    }
    return mirror;
  }

  private flushPending = new Set<SurfaceMirror<StreamSession>>();
  private flushScheduled = false;
  private readonly flushBound = (): void => {
    this.flushScheduled = false;
    for (const m of this.flushPending) for (const s of m.sessions) s.pump();
    this.flushPending.clear();
  };

  /** Encoding happens after the producer's present() returns, not inside it. */
  private scheduleFlush(mirror: SurfaceMirror<StreamSession>): void {
    this.flushPending.add(mirror);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flushBound);
    }
  }

  private surfaceGone(surface: SharedSurface): void {
    const mirror = this.mirrors.get(surface.id);
    if (!mirror) return;
    this.mirrors.delete(surface.id);
    for (const s of [...mirror.sessions]) {
      s.sendJson({ type: 'gone', reason: `surface ${surface.id} was closed` });
      this.end(s, CloseCode.NORMAL, 'E_SHUTDOWN', `surface ${surface.id} was closed`);
    }
  }

  /** @internal Sends an error, then closes the socket with the code that goes with it (for its sessions). */
  fail(session: StreamSession, code: ErrorCodeName, message: string, closeCode?: number): void {
    if (session.state === 'closed') return;
    session.sendJson({ type: 'error', code, message });
    this.end(session, closeCode ?? closeCodeFor(code), code, message);
  }

  private end(session: StreamSession, closeCode: number, code: ErrorCodeName, message: string): void {
    if (session.state === 'closed') return;
    const wasActive = session.state === 'active';
    session.goneCode = code;
    session.goneMessage = message;
    this.detach(session, wasActive);
    try {
      session.ws.close(closeCode, message.slice(0, 120));
    } catch {
      session.ws.terminate();
    }
  }

  private socketClosed(session: StreamSession, code: number): void {
    if (session.state === 'closed') return;
    if (code !== CloseCode.NORMAL && code !== CloseCode.GOING_AWAY && code !== 1005)
      session.goneMessage = `the connection closed (${code})`;
    this.detach(session, session.state === 'active');
  }

  private detach(session: StreamSession, wasActive: boolean): void {
    session.dispose();
    if (session.pendingSlot) this.releasePending(session.pendingSlot);
    session.pendingSlot = null;
    if (session.authenticated) {
      session.authenticated = false;
      this.authenticatedCount--;
    }
    // What it held down is let go, so the producer is not left with a stuck key or button.
    const surface = session.mirror?.surface;
    if (surface && !surface.closed && !this.surfaceServer.closed)
      for (const event of session.viewerInput.releaseAll(surface.id, session.id)) {
        try {
          this.surfaceServer.dispatchInput(event);
        } catch {
          /* the surface or the server is going away */
        }
      }
    this.sessions.delete(session);
    const mirror = session.mirror;
    if (mirror) {
      mirror.sessions.delete(session);
      if (
        mirror.sessions.size === 0 &&
        this.mirrors.get(mirror.surface.id) === mirror &&
        ![...this.sessions].some((s) => s.mirror === mirror)
      ) {
        this.mirrors.delete(mirror.surface.id);
        if (this.mirrors.size === 0) {
          this.removeTap?.();
          this.removeTap = null;
        }
      }
    }
    if (wasActive) {
      this.peerLog.log(
        `stream ${addressKey(session.remoteAddress)}`,
        'info',
        `stream client ${session.id} "${peerText(session.name)}" left (${session.goneCode}): ${session.goneMessage}`,
      );
      this.emit('clientGone', session.info(), { code: session.goneCode, message: session.goneMessage });
    }
  }

  private sweep(): void {
    const now = clockMs();
    for (const s of this.sessions) {
      const oldest = s.oldestUnackedMs();
      if (s.state === 'active' && oldest > 0 && now - oldest > this.options.ackTimeoutMs)
        this.fail(s, 'E_RELEASE_TIMEOUT', `no ack for ${Math.round(now - oldest)} ms`);
      else s.adaptBitrate(now);
    }
  }

  /** Disconnects every client and stops listening. Idempotent. */
  close(): void {
    if (this.closedValue) return;
    this.closedValue = true;
    clearInterval(this.sweepTimer);
    for (const s of [...this.sessions])
      this.end(s, CloseCode.GOING_AWAY, 'E_SHUTDOWN', 'the stream server is shutting down');
    this.removeTap?.();
    this.removeTap = null;
    this.mirrors.clear();
    this.surfaceServer.attach('stream.v1', null);
    this.wss.close();
    this.http.close();
    this.http.closeAllConnections();
  }

  /** Same as close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0)
    throw invalidArgument(name, 'a positive number', value);
  return value;
}
