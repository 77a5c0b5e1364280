/**
 * RemoteStreamClient: a Node viewer of a StreamServer (docs/remote.md). Tiles are applied to
 * a full-surface image it keeps; H.264 is decoded through GStreamer (H264Decoder). Each frame
 * is acked once the 'frame' listeners have run, which is what paces the server (§5).
 *
 * Times: the server's clock is estimated from ping/pong (the sample with the shortest round
 * trip wins), so latencyMs — present on the server → decoded here — holds across hosts.
 */
import type { TLSSocket } from 'node:tls';
import { EventEmitter } from 'eventemitter3';
import WebSocket from 'ws';
import { SurfaceLinkError, invalidArgument, isErrorCodeName, type ErrorCodeName } from '../errors.js';
import { rethrowLater } from '../events.js';
import { MAX_CURSOR_SIDE, type CursorImage, type InputMode } from '../input.js';
import { H264Decoder, type H264DecodedFrame } from './h264.js';
import {
  CODECS,
  FLAG_KEYFRAME,
  FRAME_HEADER_SIZE,
  FrameKind,
  STREAM_PATH,
  SUBPROTOCOL,
  clockMs,
  parseClientMessage,
  readFrameHeader,
  type Codec,
  type FrameHeader,
} from './protocol.js';
import { applyTiles } from './tiles.js';
import { normalizeFingerprint } from './tls.js';

/** How `RemoteStreamClient.connect()` authenticates and what it asks the server for. */
export interface RemoteClientOptions {
  /** The server's token; default the `#token=` of the URL. */
  token?: string;
  /** Codecs in preference order; default ['h264', 'tiles']. */
  codecs?: Codec[];
  /** Our name, shown in the server's client list; default `surfacelink-node-<pid>`. */
  name?: string;
  /** A cap below the server's. */
  maxFps?: number;
  /** A cap on the H.264 bitrate below the server's, in kbit/s. */
  maxBitrateKbps?: number;
  /** Surface id; default the server's first. */
  surface?: number;
  /** connect() gives up after this long; default 10000 ms. */
  timeoutMs?: number;
  /**
   * wss:// only: the SHA-256 fingerprint of the server's certificate (as the server prints it;
   * any case, colons optional). The certificate is then trusted if and only if it matches, checked
   * before the token is sent: how a self-signed certificate (`tls: 'self-signed'`) is pinned.
   */
  fingerprint?: string;
  /** wss:// only: certificates (PEM) to trust besides the system's, e.g. the server's own or its CA. */
  ca?: string | Buffer | Array<string | Buffer>;
}

/** The server's welcome: what it will send this client, and how (docs/remote.md §3). */
export interface RemoteWelcome {
  /** The server's name. */
  server: string;
  /** The codec chosen. */
  codec: Codec;
  /** Why that codec, in words. */
  reason: string;
  /** The surface it streams, at the size frames will have. */
  surface: {
    /** Its id on the server. */
    id: number;
    /** Width in pixels. */
    width: number;
    /** Height in pixels. */
    height: number;
    /** DRM format name of the pixels, e.g. 'XRGB8888'. */
    format: string;
  };
  /** The GStreamer element encoding H.264 for us (e.g. 'x264enc'), else null. */
  encoder: string | null;
  /** Frame cap: the smaller of the server's and ours. */
  maxFps: number;
  /** H.264 target bitrate in kbit/s, else null. */
  bitrateKbps: number | null;
  /** Frames the server sends ahead of our acks. */
  window: number;
  /** Whether the server takes our input (false: we connected with its view-only token, or an older server). */
  input: boolean;
  /** The surface's input mode: 'absolute' (send pointer) or 'relative' (send motion). */
  inputMode: InputMode;
  /** Messages per second the server accepts from us (more is E_LIMIT), or null if it did not say. */
  maxMessageRate: number | null;
}

/** The surface's cursor as the server last described it, in the picture's pixels (top row first). */
export interface RemoteCursor {
  /** Its image (ARGB8888: bytes B, G, R, A; rows of width × 4 bytes; top row first), or null: none defined. */
  image: CursorImage | null;
  /** The server's serial of the image (bumped per change). */
  serial: number;
  /** Where the hotspot is, picture pixels. */
  x: number;
  /** Where the hotspot is, picture pixels. */
  y: number;
  /** Whether the producer shows it. */
  visible: boolean;
}

/** One decoded frame. `pixels` is valid during the 'frame' listeners only: copy what you keep. */
export interface RemoteFrame {
  /** Tiles: the surface's memory order (XRGB8888: B, G, R, X). H.264: BGRx. */
  pixels: Uint8Array;
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Bytes per row of `pixels`. */
  stride: number;
  /** The producer's sequence number of the frame. */
  sequence: number;
  /** Server clock: when the producer presented it. */
  presentMs: number;
  /** Server clock (estimated): when it arrived here. */
  receivedMs: number;
  /** Present on the server → decoded here, in ms. */
  latencyMs: number;
  /** An H.264 keyframe or a full tile refresh (not only damage). */
  keyframe: boolean;
  /** The codec that carried it. */
  codec: Codec;
  /** Bytes of the binary message, header included. */
  bytes: number;
}

/** RemoteStreamClient's events and their arguments. */
export interface RemoteClientEvents {
  /** The server accepted our hello (connect() resolves right after). */
  welcome: [RemoteWelcome];
  /** A decoded frame; it is acked when the listeners return, which paces the server. */
  frame: [RemoteFrame];
  /** The surface changed size or format; the next frame is a keyframe or a full refresh. */
  resize: [
    {
      /** New width in pixels. */
      width: number;
      /** New height in pixels. */
      height: number;
      /** DRM format name. */
      format: string;
    },
  ];
  /** The server's encoder restarted (a keyframe follows). */
  encoder: [
    {
      /** What happened to it: 'restarted'. */
      state: string;
      /** Why. */
      reason: string;
    },
  ];
  /** The cursor's image changed (sent once per change): `image` null means the surface has none. */
  cursor: [
    {
      /** The new image, or null. */
      image: CursorImage | null;
      /** The server's serial of the image. */
      serial: number;
    },
  ];
  /** The cursor moved or was shown or hidden (picture pixels; latest wins: intermediate moves may be skipped). */
  cursorMove: [
    {
      /** Hotspot column. */
      x: number;
      /** Hotspot row. */
      y: number;
      /** Whether it shows. */
      visible: boolean;
    },
  ];
  /** The surface's input mode changed. */
  inputMode: [InputMode];
  /**
   * A non-fatal warning from the server; the connection stays open. E_PERMISSION (once): our input
   * is refused (a view-only token) and dropped from now on; E_OUT_OF_BOUNDS (at most once a
   * second): a position outside the picture, that event dropped.
   */
  warning: [SurfaceLinkError];
  /** The surface was closed on the server. */
  gone: [
    {
      /** Why, in words. */
      reason: string;
    },
  ];
  /** An error the server sent, or one found here (a bad frame: a keyframe is requested). */
  error: [SurfaceLinkError];
  /** The connection closed, whoever closed it; nothing is emitted afterwards. */
  close: [
    {
      /** WebSocket close code: 1000 normal, 4400–4500 after an error (docs/remote.md §3). */
      code: number;
      /** The close reason (the error message, cut to 120 bytes). */
      reason: string;
    },
  ];
}

/** Where to connect and with which token, from a ws:// stream URL or an http:// viewer URL. */
export function parseStreamUrl(url: string): {
  /** The WebSocket endpoint (ws:// or wss://, path /stream). */
  wsUrl: string;
  /** The `#token=` of the URL, or null if it has none. */
  token: string | null;
} {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new SurfaceLinkError('E_INVALID_ARGUMENT', `not a URL: ${JSON.stringify(url)}`);
  }
  const token = new URLSearchParams(u.hash.replace(/^#/, '')).get('token');
  if (u.protocol === 'http:' || u.protocol === 'https:') {
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    u.pathname = STREAM_PATH;
  } else if (u.protocol !== 'ws:' && u.protocol !== 'wss:') {
    throw new SurfaceLinkError(
      'E_INVALID_ARGUMENT',
      `a stream URL is ws://, wss://, http:// or https://; got ${u.protocol}`,
    );
  } else if (u.pathname === '/' || u.pathname === '') u.pathname = STREAM_PATH;
  u.hash = '';
  u.search = '';
  return { wsUrl: u.toString(), token };
}

/** Latency and rate figures over the last second (fps, bitrate) and the last 512 frames. */
export class StreamStats {
  /** Frames received and decoded. */
  frames = 0;
  /** Bytes of those frames' messages. */
  bytes = 0;
  /** Frames that failed to decode. */
  errors = 0;
  private readonly latencies = new Float64Array(512);
  private latencyCount = 0;
  /** Per frame: the server's send → arrival here (server clock), and arrival → decoded. */
  private readonly transits = new Float64Array(512);
  private readonly decodes = new Float64Array(512);
  private readonly times = new Float64Array(512);
  private readonly sizes = new Float64Array(512);
  private timeCount = 0;

  /**
   * Counts one frame: its latency and size, received at `nowMs` (our clock); `transitMs` (the
   * server's send → arrival) and `decodeMs` (arrival → decoded), NaN where unknown.
   */
  record(latencyMs: number, bytes: number, nowMs: number, transitMs = NaN, decodeMs = NaN): void {
    this.frames++;
    this.bytes += bytes;
    const slot = this.latencyCount++ % this.latencies.length;
    this.latencies[slot] = latencyMs;
    this.transits[slot] = transitMs;
    this.decodes[slot] = decodeMs;
    const i = this.timeCount++ % this.times.length;
    this.times[i] = nowMs;
    this.sizes[i] = bytes;
  }

  /** fps and kbit/s over the last second, latency percentiles over the last 512 frames. */
  snapshot(nowMs = clockMs()): {
    /** Frames received in the last second. */
    fps: number;
    /** kbit/s received in the last second. */
    kbps: number;
    /** Median latency (present on the server → decoded here) in ms; NaN before the first frame. */
    latencyP50Ms: number;
    /** 99th-percentile latency in ms; NaN before the first frame. */
    latencyP99Ms: number;
    /** Median of the server's send → arrival here (server clock, via the ping offset), ms; NaN if unknown. */
    transitP50Ms: number;
    /** Median of arrival → decoded (tiles inflated and applied, or H.264 through the decoder), ms; NaN if unknown. */
    decodeP50Ms: number;
    /** Frames received in all. */
    frames: number;
    /** Bytes received in all. */
    bytes: number;
    /** Frames that failed to decode. */
    errors: number;
  } {
    let fps = 0;
    let bits = 0;
    const n = Math.min(this.timeCount, this.times.length);
    for (let i = 0; i < n; i++) {
      if (nowMs - this.times[i] <= 1000) {
        fps++;
        bits += this.sizes[i] * 8;
      }
    }
    const m = Math.min(this.latencyCount, this.latencies.length);
    // The p-quantile of a ring's known (finite) samples; NaN when it has none.
    const quantile = (values: Float64Array, p: number): number => {
      const known = Array.from(values.subarray(0, m))
        .filter(Number.isFinite)
        .sort((a, b) => a - b);
      return known.length === 0 ? NaN : known[Math.min(known.length - 1, Math.floor(p * known.length))];
    };
    return {
      fps,
      kbps: bits / 1000,
      latencyP50Ms: quantile(this.latencies, 0.5),
      latencyP99Ms: quantile(this.latencies, 0.99),
      transitP50Ms: quantile(this.transits, 0.5),
      decodeP50Ms: quantile(this.decodes, 0.5),
      frames: this.frames,
      bytes: this.bytes,
      errors: this.errors,
    };
  }
}

const PING_INTERVAL_MS = 2000;

/**
 * A Node viewer of a StreamServer: connects over WebSocket, decodes tiles or H.264 (through
 * GStreamer) and emits each frame. Create with `RemoteStreamClient.connect()`; events come from the
 * event loop. close() (or `using`) ends it.
 */
export class RemoteStreamClient extends EventEmitter<RemoteClientEvents> {
  /** The WebSocket endpoint it connected to. */
  readonly wsUrl: string;
  /** The server's welcome, once received. */
  welcome: RemoteWelcome | null = null;
  /** What this viewer measured: `stats.snapshot()` gives fps, kbit/s and latency percentiles. */
  readonly stats = new StreamStats();
  /** The surface's cursor (picture pixels), once the server described it; null before. */
  cursor: RemoteCursor | null = null;
  /** The surface's input mode (from the welcome, then `inputMode` messages). */
  inputMode: InputMode = 'absolute';
  private readonly ws: WebSocket;
  private width = 0;
  private height = 0;
  private image: Uint8Array = new Uint8Array(0);
  private decoder: H264Decoder | null = null;
  private decoderReady: Promise<void> = Promise.resolve();
  private chain: Promise<void> = Promise.resolve();
  /** Server clock − our clock, from the ping with the shortest round trip so far. */
  private offsetMs = 0;
  private bestRttMs = Infinity;
  private pingTimer: NodeJS.Timeout | null = null;
  private closedValue = false;
  private keyframeAsked = false;
  private readonly header = {} as FrameHeader;
  /** Arrival times and sizes of H.264 frames in the decoder, by sequence. */
  private readonly pendingH264 = new Map<
    number,
    { receivedMs: number; sendMs: number; bytes: number; keyframe: boolean }
  >();

  private constructor(wsUrl: string, tls: { ca?: RemoteClientOptions['ca']; pinned: boolean }) {
    super();
    this.wsUrl = wsUrl;
    this.ws = new WebSocket(wsUrl, SUBPROTOCOL, {
      perMessageDeflate: false,
      maxPayload: 512 * 1024 * 1024,
      ...(tls.ca !== undefined ? { ca: tls.ca } : {}),
      // A pinned certificate is checked by its fingerprint at the upgrade, instead of by a CA.
      ...(tls.pinned ? { rejectUnauthorized: false } : {}),
    });
  }

  /**
   * Connects to `url` (ws://host:port/stream, or the viewer URL http://host:port/#token=…) and
   * resolves once the server said welcome (also in `.welcome`). Rejects with the server's
   * error (E_AUTH, E_NO_MECHANISM, …) or E_CONNECT.
   */
  static connect(url: string, options: RemoteClientOptions = {}): Promise<RemoteStreamClient> {
    let parsed: ReturnType<typeof parseStreamUrl>;
    try {
      parsed = parseStreamUrl(url);
    } catch (error) {
      return Promise.reject(error);
    }
    const { wsUrl, token } = parsed;
    const secret = options.token ?? token;
    if (!secret)
      return Promise.reject(new SurfaceLinkError('E_AUTH', 'no token: pass options.token or a URL with #token=…'));
    const codecs = options.codecs ?? [...CODECS];
    let pin: string | null = null;
    if (options.fingerprint !== undefined) {
      pin = typeof options.fingerprint === 'string' ? normalizeFingerprint(options.fingerprint) : null;
      if (pin === null)
        return Promise.reject(
          invalidArgument('fingerprint', 'a SHA-256 fingerprint: 64 hex digits, colons optional', options.fingerprint),
        );
      if (!wsUrl.startsWith('wss:'))
        return Promise.reject(invalidArgument('fingerprint', 'a wss:// or https:// URL to go with it', wsUrl));
    }
    const client = new RemoteStreamClient(wsUrl, { ca: options.ca, pinned: pin !== null });
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (error: SurfaceLinkError | null): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        if (error) {
          client.close();
          reject(error);
        } else resolve(client);
      };
      const timer = setTimeout(
        () =>
          settle(new SurfaceLinkError('E_TIMEOUT', `no welcome from ${wsUrl} within ${options.timeoutMs ?? 10000} ms`)),
        options.timeoutMs ?? 10000,
      );
      client.once('welcome', () => settle(null));
      client.on('error', (e) => settle(e));
      client.once('close', ({ code, reason }) =>
        settle(
          new SurfaceLinkError('E_CONNECT', `${wsUrl} closed the connection (${code}${reason ? `: ${reason}` : ''})`),
        ),
      );
      client.ws.on('unexpected-response', (_req, res) => {
        // The server says why in the body (e.g. 429: too many connections from this address waiting for their hello).
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body = (body + d).slice(0, 300)));
        const refused = (): void =>
          settle(
            new SurfaceLinkError(
              res.statusCode === 403 ? 'E_AUTH' : 'E_CONNECT',
              `${wsUrl} refused the upgrade: HTTP ${res.statusCode}${body.trim() ? `: ${body.trim()}` : ''}`,
            ),
          );
        res.on('end', refused);
        res.on('error', refused);
        res.on('close', refused);
      });
      client.ws.on('upgrade', (res) => {
        if (pin === null) return;
        // Before 'open', so before the token leaves: a certificate other than the pinned one gets nothing.
        const cert = (res.socket as TLSSocket).getPeerCertificate?.();
        const seen = cert && 'fingerprint256' in cert ? cert.fingerprint256 : '(none)';
        if (seen === pin) return;
        client.ws.terminate();
        settle(
          new SurfaceLinkError(
            'E_AUTH',
            `${wsUrl} presented a certificate with SHA-256 fingerprint ${seen}, not the pinned ${pin}; ` +
              'nothing was sent to it',
          ),
        );
      });
      client.ws.on('open', () => {
        client.send({
          type: 'hello',
          token: secret,
          name: options.name ?? `surfacelink-node-${process.pid}`,
          codecs,
          surface: options.surface,
          maxFps: options.maxFps,
          maxBitrateKbps: options.maxBitrateKbps,
        });
        client.ping();
        client.pingTimer = setInterval(() => client.ping(), PING_INTERVAL_MS);
        client.pingTimer.unref();
      });
      client.ws.on('error', (error: NodeJS.ErrnoException) => {
        const selfSigned = error.code === 'DEPTH_ZERO_SELF_SIGNED_CERT' || error.code === 'SELF_SIGNED_CERT_IN_CHAIN';
        const hint = selfSigned
          ? ' (pin it with the fingerprint the server printed: options.fingerprint, `view --fingerprint`; ' +
            'or trust it with options.ca, `view --ca`)'
          : '';
        settle(
          new SurfaceLinkError('E_CONNECT', `cannot connect to ${wsUrl}: ${error.message}${hint}`, { cause: error }),
        );
      });
      client.ws.on('message', (data: Buffer, isBinary: boolean) =>
        isBinary ? client.onFrame(data) : client.onText(data),
      );
      client.ws.on('close', (code, reason) => client.onClose(code, reason.toString()));
    });
  }

  /** True once the connection is closed, by either side. */
  get closed(): boolean {
    return this.closedValue;
  }

  /** Server clock (estimated) now. */
  serverNowMs(): number {
    return clockMs() + this.offsetMs;
  }

  /** Asks for a keyframe (H.264) or a full refresh (tiles). */
  requestKeyframe(): void {
    this.send({ type: 'keyframe' });
  }

  /** Tells the server what this viewer measured (shown in StreamServer.clients). */
  sendStats(): void {
    const s = this.stats.snapshot();
    this.send({
      type: 'stats',
      fps: s.fps,
      latencyP50Ms: finite(s.latencyP50Ms),
      latencyP99Ms: finite(s.latencyP99Ms),
      decoded: s.frames,
      errors: s.errors,
      transitP50Ms: finite(s.transitP50Ms),
      decodeP50Ms: finite(s.decodeP50Ms),
    });
  }

  /** Whether the server takes our input (the welcome said so, and no E_PERMISSION warning since); false before. */
  get inputAllowed(): boolean {
    return this.welcome?.input ?? false;
  }

  /** A key went down or up: `code` is a Linux evdev code (KEY_A = 30; docs/remote.md §3.1). */
  sendKey(code: number, pressed: boolean): void {
    this.sendInput({ type: 'key', code, pressed });
  }

  /**
   * The pointer is at (x, y): pixels of the picture (integers; (0, 0) its top-left pixel, as frames show
   * it), inside it (absolute mode; dropped in relative mode).
   */
  sendPointer(x: number, y: number): void {
    this.sendInput({ type: 'pointer', x, y });
  }

  /** The pointer moved by (dx, dy) pixels, integers within ±16384 (relative mode; dropped in absolute mode). */
  sendMotion(dx: number, dy: number): void {
    this.sendInput({ type: 'motion', dx, dy });
  }

  /** A mouse button went down or up: an evdev code, BTN_LEFT 0x110 … BTN_TASK 0x117. */
  sendButton(button: number, pressed: boolean): void {
    this.sendInput({ type: 'button', button, pressed });
  }

  /** Wheel notches, integers within ±1024: dy > 0 scrolls down, dx > 0 right. */
  sendScroll(dx: number, dy: number): void {
    this.sendInput({ type: 'scroll', dx, dy });
  }

  /** A touch point (slot 0–15) went down, moved, went up or was cancelled at (x, y), picture pixels. */
  sendTouch(phase: 'down' | 'move' | 'up' | 'cancel', slot: number, x: number, y: number): void {
    this.sendInput({ type: 'touch', phase, slot, x, y });
  }

  /** Checks an input message as the server will (E_INVALID_ARGUMENT here instead of a closed connection). */
  private sendInput(message: { type: string; [key: string]: unknown }): void {
    try {
      parseClientMessage(JSON.stringify(message), 0);
    } catch (error) {
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', (error as Error).message);
    }
    this.send(message);
  }

  /** Sends a raw message (tests use it for bad input). */
  send(message: object | string | Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(typeof message === 'string' || Buffer.isBuffer(message) ? message : JSON.stringify(message));
  }

  /** Closes the connection (code 1000); `close` is emitted once the socket has closed. Idempotent. */
  close(): void {
    if (this.closedValue) return;
    this.closedValue = true;
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.decoder?.close();
    this.decoder = null;
    if (this.ws.readyState === WebSocket.CONNECTING) this.ws.terminate();
    else this.ws.close(1000);
  }

  /** Same as close(), for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  // ---- incoming ----

  private ping(): void {
    this.send({ type: 'ping', t: clockMs() });
  }

  private onText(data: Buffer): void {
    let m: Record<string, any>;
    try {
      m = JSON.parse(data.toString('utf8'));
    } catch {
      return void this.emit('error', new SurfaceLinkError('E_MALFORMED', 'the server sent a message that is not JSON'));
    }
    const problem = malformedServerMessage(m);
    if (problem !== null) {
      // Acting on it would leave the image or the clock inconsistent: report, and end the session.
      this.emit(
        'error',
        new SurfaceLinkError('E_MALFORMED', `the server sent a malformed ${String(m?.type)}: ${problem}`),
      );
      return this.close();
    }
    switch (m.type) {
      case 'welcome':
        this.welcome = {
          server: m.server,
          codec: m.codec,
          reason: m.reason,
          surface: m.surface,
          encoder: m.encoder,
          maxFps: m.maxFps,
          bitrateKbps: m.bitrateKbps,
          window: m.window,
          input: m.input === true,
          inputMode: m.inputMode === 'relative' ? 'relative' : 'absolute',
          maxMessageRate: typeof m.maxMessageRate === 'number' ? m.maxMessageRate : null,
        };
        this.inputMode = this.welcome.inputMode;
        this.setSize(m.surface.width, m.surface.height);
        if (m.codec === 'h264') this.decoderReady = this.startDecoder();
        this.emit('welcome', this.welcome);
        return;
      case 'pong': {
        const now = clockMs();
        const rtt = now - m.t;
        // The shortest round trip bounds the error best; let old samples age out slowly.
        if (rtt <= this.bestRttMs * 1.25 || this.bestRttMs === Infinity) {
          this.bestRttMs = Math.min(this.bestRttMs, rtt);
          this.offsetMs = m.serverMs - (m.t + now) / 2;
        }
        this.bestRttMs *= 1.01;
        return;
      }
      case 'resize':
        this.setSize(m.width, m.height);
        this.emit('resize', { width: m.width, height: m.height, format: m.format });
        return;
      case 'encoder':
        this.emit('encoder', { state: m.state, reason: m.reason });
        return;
      case 'gone':
        this.emit('gone', { reason: m.reason });
        return;
      case 'cursor': {
        const image: CursorImage | null = m.image && {
          width: m.image.width,
          height: m.image.height,
          hotspotX: m.image.hotspotX,
          hotspotY: m.image.hotspotY,
          pixels: new Uint8Array(Buffer.from(m.image.pixels, 'base64')),
        };
        this.cursor = { x: 0, y: 0, visible: false, ...this.cursor, image, serial: m.serial };
        this.emit('cursor', { image, serial: m.serial });
        return;
      }
      case 'cursorMove':
        this.cursor = { image: null, serial: 0, ...this.cursor, x: m.x, y: m.y, visible: m.visible };
        this.emit('cursorMove', { x: m.x, y: m.y, visible: m.visible });
        return;
      case 'inputMode':
        this.inputMode = m.mode;
        this.emit('inputMode', m.mode);
        return;
      case 'warning': {
        const code: ErrorCodeName = isErrorCodeName(m.code) ? m.code : 'E_UNEXPECTED';
        if (code === 'E_PERMISSION' && this.welcome) this.welcome.input = false;
        this.emit('warning', new SurfaceLinkError(code, String(m.message ?? code)));
        return;
      }
      case 'error': {
        const code: ErrorCodeName = isErrorCodeName(m.code) ? m.code : 'E_UNEXPECTED';
        this.emit('error', new SurfaceLinkError(code, String(m.message ?? code)));
        return;
      }
      default:
        return; // a newer server's message: ignore
    }
  }

  private setSize(width: number, height: number): void {
    if (width === this.width && height === this.height) return;
    if (this.welcome?.codec !== 'h264') this.image = new Uint8Array(width * height * 4);
    this.width = width;
    this.height = height;
  }

  private async startDecoder(): Promise<void> {
    try {
      const d = await H264Decoder.start();
      if (this.closedValue) return void d.close();
      this.decoder = d;
      d.on('frame', (f) => this.onDecoded(f));
      d.on('drop', (info) => {
        this.pendingH264.delete(info.sequence);
        this.stats.errors++;
        this.askKeyframe();
        this.ack(info.sequence);
      });
      d.on('restart', () => this.askKeyframe());
      d.on('error', (e) => {
        // It has closed itself: later units are dropped (and acked) instead of fed to it.
        if (this.decoder === d) this.decoder = null;
        this.emit('error', e);
      });
    } catch (error) {
      this.emit('error', SurfaceLinkError.fromNative(error));
    }
  }

  private askKeyframe(): void {
    if (this.keyframeAsked) return;
    this.keyframeAsked = true;
    this.requestKeyframe();
  }

  private onFrame(data: Buffer): void {
    const receivedMs = this.serverNowMs();
    let h: FrameHeader;
    try {
      h = readFrameHeader(data, this.header);
    } catch (error) {
      return void this.emit('error', SurfaceLinkError.fromNative(error));
    }
    const { kind, sequence, presentMs, sendMs, width, height } = h;
    const keyframe = (h.flags & FLAG_KEYFRAME) !== 0;
    if (keyframe) this.keyframeAsked = false;
    if (kind === FrameKind.H264) {
      this.pendingH264.set(sequence, { receivedMs, sendMs, bytes: data.length, keyframe });
      this.chain = this.chain
        .then(() => this.decoderReady)
        .then(() => {
          let queued = false;
          try {
            queued =
              this.decoder !== null && this.decoder.decode(data.subarray(FRAME_HEADER_SIZE), sequence, presentMs);
          } catch (error) {
            // An empty access unit: a bad frame, like any other. (A throw here would stop the chain.)
            this.stats.errors++;
            this.emit(
              'error',
              new SurfaceLinkError('E_MALFORMED', `H.264 frame ${sequence}: ${(error as Error).message}`, {
                cause: error,
              }),
            );
          }
          if (!queued) {
            this.pendingH264.delete(sequence);
            this.askKeyframe();
            this.ack(sequence);
          }
        });
      return;
    }
    this.chain = this.chain.then(async () => {
      try {
        // Inside the try: a size from a bad header may not be allocatable.
        if (width !== this.width || height !== this.height) this.setSize(width, height);
        await applyTiles(data.subarray(FRAME_HEADER_SIZE), this.image, width * 4, width, height);
      } catch (error) {
        this.stats.errors++;
        this.emit('error', SurfaceLinkError.fromNative(error));
        this.askKeyframe();
        return this.ack(sequence);
      }
      this.deliver(
        this.image,
        width,
        height,
        width * 4,
        sequence,
        presentMs,
        receivedMs,
        sendMs,
        keyframe,
        'tiles',
        data.length,
      );
    });
  }

  private onDecoded(f: H264DecodedFrame): void {
    const p = this.pendingH264.get(f.sequence);
    this.pendingH264.delete(f.sequence);
    this.deliver(
      f.pixels,
      f.width,
      f.height,
      f.width * 4,
      f.sequence,
      f.presentMs,
      p?.receivedMs ?? this.serverNowMs(),
      p?.sendMs ?? NaN,
      p?.keyframe ?? false,
      'h264',
      p?.bytes ?? 0,
    );
  }

  private deliver(
    pixels: Uint8Array,
    width: number,
    height: number,
    stride: number,
    sequence: number,
    presentMs: number,
    receivedMs: number,
    sendMs: number,
    keyframe: boolean,
    codec: Codec,
    bytes: number,
  ): void {
    if (this.closedValue) return;
    const now = this.serverNowMs();
    const latencyMs = now - presentMs;
    this.stats.record(latencyMs, bytes, clockMs(), receivedMs - sendMs, now - receivedMs);
    try {
      this.emit('frame', {
        pixels,
        width,
        height,
        stride,
        sequence,
        presentMs,
        receivedMs,
        latencyMs,
        keyframe,
        codec,
        bytes,
      });
    } catch (error) {
      // The application's bug: thrown on its own, not into the decode chain (which would stop).
      rethrowLater(error);
    }
    this.ack(sequence, now);
  }

  private ack(sequence: number, decodedMs?: number): void {
    this.send(decodedMs === undefined ? { type: 'ack', seq: sequence } : { type: 'ack', seq: sequence, decodedMs });
  }

  private onClose(code: number, reason: string): void {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
    this.decoder?.close();
    this.decoder = null;
    this.closedValue = true;
    this.emit('close', { code, reason });
  }
}

function finite(n: number): number | undefined {
  return Number.isFinite(n) ? n : undefined;
}

const isDimension = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0 && (v as number) <= 65535;

/** What is wrong with a server message this client acts on (docs/remote.md §3), or null. */
function malformedServerMessage(m: Record<string, any> | null): string | null {
  if (typeof m !== 'object' || m === null) return 'not an object';
  switch (m.type) {
    case 'welcome':
      if (m.codec !== 'h264' && m.codec !== 'tiles') return `codec ${JSON.stringify(m.codec)}`;
      if (
        typeof m.surface !== 'object' ||
        m.surface === null ||
        !isDimension(m.surface.width) ||
        !isDimension(m.surface.height)
      )
        return 'no surface with a valid width and height';
      return null;
    case 'resize':
      return isDimension(m.width) && isDimension(m.height) ? null : 'no valid width and height';
    case 'pong':
      return Number.isFinite(m.t) && Number.isFinite(m.serverMs) ? null : 't and serverMs must be numbers';
    case 'cursor':
      return malformedCursor(m);
    case 'cursorMove':
      return Number.isFinite(m.x) && Number.isFinite(m.y) && typeof m.visible === 'boolean'
        ? null
        : 'x and y must be numbers, visible a boolean';
    case 'inputMode':
      return m.mode === 'absolute' || m.mode === 'relative' ? null : `mode ${JSON.stringify(m.mode)}`;
    default:
      return null;
  }
}

const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** What is wrong with a `cursor` message, or null. */
function malformedCursor(m: Record<string, any>): string | null {
  if (!Number.isInteger(m.serial)) return 'serial must be an integer';
  const i = m.image;
  if (i === null) return null;
  if (typeof i !== 'object') return 'image must be an object or null';
  const side = (v: unknown): boolean => Number.isInteger(v) && (v as number) > 0 && (v as number) <= MAX_CURSOR_SIDE;
  if (!side(i.width) || !side(i.height)) return `width and height must be 1 to ${MAX_CURSOR_SIDE}`;
  const inside = (v: unknown, size: number): boolean =>
    Number.isInteger(v) && (v as number) >= 0 && (v as number) < size;
  if (!inside(i.hotspotX, i.width) || !inside(i.hotspotY, i.height)) return 'the hotspot must lie inside the image';
  if (typeof i.pixels !== 'string' || !BASE64.test(i.pixels)) return 'pixels must be base64';
  const bytes = (i.pixels.length / 4) * 3 - (i.pixels.endsWith('==') ? 2 : i.pixels.endsWith('=') ? 1 : 0);
  if (i.pixels.length % 4 !== 0 || bytes !== i.width * i.height * 4)
    return `pixels must hold width × height × 4 = ${i.width * i.height * 4} bytes`;
  return null;
}
