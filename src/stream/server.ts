/**
 * StreamServer: the `stream` mechanism's server (docs/remote.md). Remote viewers connect over
 * a WebSocket, authenticate with a token, and get one surface encoded per client — H.264
 * through GStreamer or the lossless tile codec — concurrently with the SurfaceServer's local
 * clients of the same surface.
 *
 * Pixels reach it through a FrameTap: each presented frame's damage is copied into one
 * mirror per streamed surface (shared by every stream client of it), and clients encode from
 * the mirror when they have room. Latest wins: nothing is queued per client but damage (tiles)
 * or a "dirty" flag (H.264), so a slow viewer gets fewer frames, never a longer queue.
 */
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Duplex } from 'node:stream';
import { EventEmitter } from 'eventemitter3';
import { WebSocketServer, type WebSocket } from 'ws';
import { SurfaceLinkError, invalidArgument, type ErrorCodeName } from '../errors.js';
import type { Logger } from '../log.js';
import { stderrLogger } from '../log.js';
import type { Rect } from '../protocol/codec.js';
import type { FrameTap, SurfaceServer } from '../server.js';
import type { SharedSurface, SurfaceBuffer } from '../surface.js';
import { H264Encoder, probeH264, type H264AccessUnit, type H264InputFormat, type H264Probe } from './h264.js';
import {
  ACK_TIMEOUT_MS, CODECS, CloseCode, FLAG_KEYFRAME, FRAME_HEADER_SIZE, FrameKind, HELLO_TIMEOUT_MS, MAX_BUFFERED_BYTES, STREAM_PATH, STREAM_VERSION, SUBPROTOCOL,
  clockMs, closeCodeFor, parseClientMessage, stampSendMs, writeFrameHeader, type Codec, type HelloMessage,
} from './protocol.js';
import { TileDamage, TileEncoder } from './tiles.js';

export interface StreamServerOptions {
  /** Address to bind; default 127.0.0.1 (this host only). */
  host?: string;
  /** Port; default 0 (any free port: read `.port` / `.url`). */
  port?: number;
  /** The token clients must present; default $SURFACELINK_STREAM_TOKEN, else 32 random bytes as hex. */
  token?: string;
  /** Origins (scheme://host:port) allowed besides the server's own. */
  allowOrigins?: string[];
  /** Codecs this server may use; default both. H.264 also needs an encoder (probeH264). */
  codecs?: Codec[];
  /** Frames per second per client, at most; default 30. */
  maxFps?: number;
  /** H.264 target bitrate per client in kbit/s; default 8000. */
  bitrateKbps?: number;
  /** Frames sent and not yet acked, per client; default 2. */
  window?: number;
  /** Folder of the browser viewer; default the package's web/; null serves no pages. */
  webRoot?: string | null;
  /** Most stream clients at once; default 16. */
  maxClients?: number;
  /** zlib level of the tile codec (1–9); default 1. */
  tileLevel?: number;
  /** A client with frames in flight and no ack for this long is disconnected; default 10000 ms. */
  ackTimeoutMs?: number;
  helloTimeoutMs?: number;
  /** Server name sent in `welcome`; default the SurfaceServer's. */
  name?: string;
  logger?: Logger;
}

/** What the viewer last reported about itself (`stats` messages). */
export interface ViewerStats {
  fps?: number;
  latencyP50Ms?: number;
  latencyP99Ms?: number;
  decoded?: number;
  errors?: number;
}

/** A stream client, as `clients` and the events show it. */
export interface StreamClientInfo {
  readonly id: number;
  readonly name: string;
  readonly remoteAddress: string;
  readonly codec: Codec | null;
  readonly reason: string;
  readonly surfaceId: number | null;
  /** GStreamer element encoding for it (H.264), else null. */
  readonly encoder: string | null;
  /** The H.264 encoder's worker process, else null. */
  readonly encoderPid: number | null;
  readonly maxFps: number;
  readonly window: number;
  readonly framesSent: number;
  /** Frames of its surface it never got (latest wins). */
  readonly framesSkipped: number;
  readonly keyframes: number;
  readonly bytesSent: number;
  readonly inFlight: number;
  readonly bufferedAmount: number;
  readonly viewer: ViewerStats | null;
}

export interface StreamServerEvents {
  /** A client said a good hello and got its welcome. */
  client: [StreamClientInfo];
  /** A client left or was disconnected; code E_PEER_CLOSED when it simply went away. */
  clientGone: [StreamClientInfo, { code: ErrorCodeName; message: string }];
}

const CONTENT_TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json',
  '.map': 'application/json',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8',
};

/** Formats the mirror and both codecs handle: 4 bytes per pixel, one plane. */
const STREAMABLE = new Set<string>(['XRGB8888', 'ARGB8888', 'XBGR8888', 'ABGR8888']);

/**
 * The newest pixels of one surface, kept up to date from the tap (damage only) for the
 * stream clients of that surface. Tightly packed rows, 4-byte aligned.
 */
class SurfaceMirror {
  width: number;
  height: number;
  stride: number;
  pixels: Buffer;
  sequence = 0;
  presentMs = 0;
  /** A frame has been copied in. */
  ready = false;
  readonly sessions = new Set<StreamSession>();
  /** Buffer views of the surface's pixel arrays, so copying allocates nothing per frame. */
  private readonly views = new WeakMap<Uint8Array, Buffer>();

  constructor(readonly surface: SharedSurface) {
    this.width = surface.width;
    this.height = surface.height;
    this.stride = this.width * 4;
    this.pixels = Buffer.alloc(this.stride * this.height);
  }

  update(buffer: SurfaceBuffer, damage: readonly Rect[], count: number, presentNs: number): void {
    let full = count === 0 || !this.ready;
    if (buffer.width !== this.width || buffer.height !== this.height) {
      this.width = buffer.width;
      this.height = buffer.height;
      this.stride = this.width * 4;
      this.pixels = Buffer.alloc(this.stride * this.height);
      full = true;
    }
    const px = buffer.pixels();
    let src = this.views.get(px);
    if (!src) {
      src = Buffer.from(px.buffer, px.byteOffset, px.byteLength);
      this.views.set(px, src);
    }
    const srcStride = buffer.stride;
    if (full) {
      if (srcStride === this.stride) src.copy(this.pixels, 0, 0, this.stride * this.height);
      else for (let y = 0; y < this.height; y++) src.copy(this.pixels, y * this.stride, y * srcStride, y * srcStride + this.stride);
    } else {
      for (let i = 0; i < count; i++) {
        const r = damage[i];
        const x0 = Math.max(0, r.x);
        const x1 = Math.min(this.width, r.x + r.width);
        const y1 = Math.min(this.height, r.y + r.height);
        if (x1 <= x0) continue;
        for (let y = Math.max(0, r.y); y < y1; y++) src.copy(this.pixels, y * this.stride + x0 * 4, y * srcStride + x0 * 4, y * srcStride + x1 * 4);
      }
    }
    this.sequence = buffer.surface.sequence;
    this.presentMs = presentNs / 1e6;
    this.ready = true;
    for (const s of this.sessions) s.damaged(damage, full ? 0 : count);
  }
}

const BINARY = { binary: true } as const;

interface InFlight {
  sequence: number;
  /** Server clock when it was handed to the socket; 0 while still encoding. */
  sentMs: number;
}

let nextSessionId = 1;

/** One remote client. */
class StreamSession implements StreamClientInfo {
  readonly id = nextSessionId++;
  state: 'hello' | 'starting' | 'active' | 'closed' = 'hello';
  name = '';
  codec: Codec | null = null;
  reason = '';
  mirror: SurfaceMirror | null = null;
  encoder: string | null = null;
  maxFps: number;
  bitrateKbps: number;
  /** Tiles: a cap only when the client asked for one. */
  tileKbps = 0;
  framesSent = 0;
  framesSkipped = 0;
  keyframes = 0;
  bytesSent = 0;
  viewer: ViewerStats | null = null;
  readonly remoteAddress: string;
  readonly window: number;
  // Flow control.
  readonly inFlightList: InFlight[] = [];
  private nextAllowedMs = 0;
  private lastSequence = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  helloTimer: NodeJS.Timeout | null = null;
  /** Size the client was last told about (welcome / resize). */
  private knownWidth = 0;
  private knownHeight = 0;
  // Tiles.
  tiles: TileDamage | null = null;
  private tileEncoder: TileEncoder | null = null;
  // H.264.
  h264: H264Encoder | null = null;
  private h264Dirty = false;
  private h264Restarting = false;
  goneCode: ErrorCodeName = 'E_PEER_CLOSED';
  goneMessage = 'the client closed the connection';

  private readonly pumpBound = (): void => this.pump();
  private readonly retryBound = (): void => {
    this.retryTimer = null;
    this.pump();
  };
  private readonly onSent = (error?: Error): void => {
    if (!error) this.pump();
  };

  constructor(
    readonly server: StreamServer,
    readonly ws: WebSocket,
    remoteAddress: string,
    readonly options: Required<Pick<StreamServerOptions, 'maxFps' | 'bitrateKbps' | 'window' | 'tileLevel'>>,
  ) {
    this.remoteAddress = remoteAddress;
    this.window = options.window;
    this.maxFps = options.maxFps;
    this.bitrateKbps = options.bitrateKbps;
  }

  get surfaceId(): number | null {
    return this.mirror?.surface.id ?? null;
  }
  get encoderPid(): number | null {
    return this.h264?.pid ?? null;
  }
  get inFlight(): number {
    return this.inFlightList.length;
  }
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  info(): StreamClientInfo {
    const { id, name, remoteAddress, codec, reason, surfaceId, encoder, encoderPid, maxFps, window, framesSent, framesSkipped, keyframes, bytesSent, inFlight, bufferedAmount, viewer } = this;
    return { id, name, remoteAddress, codec, reason, surfaceId, encoder, encoderPid, maxFps, window, framesSent, framesSkipped, keyframes, bytesSent, inFlight, bufferedAmount, viewer: viewer && { ...viewer } };
  }

  sendJson(message: object): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(message));
  }

  // ---- set-up ----

  startTiles(mirror: SurfaceMirror): void {
    this.codec = 'tiles';
    this.tiles = new TileDamage(mirror.width, mirror.height);
    this.tileEncoder = new TileEncoder((error, frame) => this.tileDone(error, frame), { level: this.options.tileLevel });
  }

  async startH264(mirror: SurfaceMirror): Promise<void> {
    this.codec = 'h264';
    const encoder = await H264Encoder.start({ width: mirror.width, height: mirror.height, format: mirror.surface.format.name as H264InputFormat, fps: this.maxFps, bitrateKbps: this.bitrateKbps });
    if (this.state === 'closed') return void encoder.close();
    this.attachH264(encoder);
  }

  private attachH264(encoder: H264Encoder): void {
    this.h264 = encoder;
    this.encoder = encoder.element;
    this.h264Dirty = true;
    encoder.on('au', (au) => this.h264Out(encoder, au));
    encoder.on('restart', (reason) => {
      if (this.h264 !== encoder) return;
      this.dropUnsent();
      this.h264Dirty = true;
      this.sendJson({ type: 'encoder', state: 'restarted', reason });
      this.pump();
    });
    encoder.on('error', (error) => {
      if (this.h264 === encoder) this.server.fail(this, 'E_ENCODER', `the H.264 encoder failed: ${error.message}`);
    });
  }

  /** Says welcome; frames follow as the surface presents. */
  activate(mirror: SurfaceMirror): void {
    this.state = 'active';
    // H.264: the size its encoder was started at. A resize while it started is then announced,
    // and the encoder replaced, by the first pump(), instead of fed frames of another size.
    this.knownWidth = this.h264?.width ?? mirror.width;
    this.knownHeight = this.h264?.height ?? mirror.height;
    const s = mirror.surface;
    this.sendJson({
      type: 'welcome', version: STREAM_VERSION, server: this.server.name, codec: this.codec, reason: this.reason,
      surface: { id: s.id, width: this.knownWidth, height: this.knownHeight, format: s.format.name },
      encoder: this.encoder, maxFps: this.maxFps, bitrateKbps: this.codec === 'h264' ? this.bitrateKbps : null, window: this.window, serverMs: clockMs(),
    });
    if (mirror.ready) this.pump();
  }

  // ---- frames ----

  /** The mirror took new damage (count 0: all of it). */
  damaged(damage: readonly Rect[], count: number): void {
    if (this.tiles) this.tiles.add(damage, count);
    else this.h264Dirty = true;
  }

  requestKeyframe(): void {
    if (this.tiles) this.tiles.markFull();
    else if (this.h264) {
      this.h264.requestKeyframe();
      this.h264Dirty = true;
    }
    this.pump();
  }

  ack(sequence: number): void {
    const list = this.inFlightList;
    // Cumulative: an ack frees its frame and every older one (a lost ack costs nothing).
    let n = 0;
    while (n < list.length && list[n].sentMs > 0 && list[n].sequence <= sequence) n++;
    if (n > 0) {
      list.splice(0, n);
      this.pump();
    }
  }

  /** Oldest frame still waiting for an ack, server clock; 0 if none. */
  oldestUnackedMs(): number {
    const first = this.inFlightList[0];
    return first && first.sentMs > 0 ? first.sentMs : 0;
  }

  /** Sends the mirror's newest state if the client has room; otherwise leaves it for later. */
  pump(): void {
    const mirror = this.mirror;
    if (this.state !== 'active' || !mirror || !mirror.ready || this.ws.readyState !== this.ws.OPEN) return;
    if (this.inFlightList.length >= this.window || this.ws.bufferedAmount > MAX_BUFFERED_BYTES) return; // an ack or the send callback resumes
    // While a replacement encoder starts, a further resize waits for it (pump() runs when it is up):
    // starting a second one at once would orphan the first.
    if (this.h264Restarting) return;
    if (mirror.width !== this.knownWidth || mirror.height !== this.knownHeight) return this.resized(mirror);
    if (this.tiles) {
      if (!this.tiles.pending || this.tileEncoder!.busy) return;
    } else if (!this.h264Dirty || !this.h264) return;
    const now = clockMs();
    // Sends keep to a grid of 1/maxFps, with a quarter period of slack: a producer presenting at
    // exactly maxFps, with timer jitter, must not be held back a whole period each time.
    const period = 1000 / this.maxFps;
    const slack = period / 4;
    if (now < this.nextAllowedMs - slack) {
      if (!this.retryTimer) this.retryTimer = setTimeout(this.retryBound, Math.ceil(this.nextAllowedMs - slack - now));
      return;
    }
    this.nextAllowedMs = Math.max(this.nextAllowedMs, now - slack) + period;
    if (this.tiles) {
      if (this.tileEncoder!.encode(mirror.pixels, mirror.stride, this.tiles, mirror.sequence, mirror.presentMs) === 0) return;
    } else {
      if (!this.h264!.encode(mirror.pixels, mirror.stride, mirror.sequence, mirror.presentMs)) return;
      this.h264Dirty = false;
    }
    this.inFlightList.push({ sequence: mirror.sequence, sentMs: 0 });
  }

  private resized(mirror: SurfaceMirror): void {
    this.knownWidth = mirror.width;
    this.knownHeight = mirror.height;
    this.sendJson({ type: 'resize', width: mirror.width, height: mirror.height, format: mirror.surface.format.name });
    if (this.tiles) {
      this.tiles.resize(mirror.width, mirror.height);
      return this.pump();
    }
    // H.264: a new encoder for the new size (its first access unit is a keyframe).
    const old = this.h264;
    this.h264 = null;
    old?.close();
    this.dropUnsent();
    this.h264Restarting = true;
    this.startH264(mirror).then(
      () => {
        this.h264Restarting = false;
        this.pump();
      },
      (error: Error) => this.server.fail(this, 'E_ENCODER', `the H.264 encoder did not restart at ${mirror.width}x${mirror.height}: ${error.message}`),
    );
  }

  private dropUnsent(): void {
    const list = this.inFlightList;
    for (let i = list.length - 1; i >= 0; i--) if (list[i].sentMs === 0) list.splice(i, 1);
  }

  private tileDone(error: Error | null, frame: Buffer | null): void {
    if (this.state === 'closed') return;
    if (error || !frame) return this.server.fail(this, 'E_ENCODER', error?.message ?? 'tile encoding failed');
    this.transmit(frame, frame[1] === FLAG_KEYFRAME, frame.readUInt32LE(4));
  }

  private h264Out(encoder: H264Encoder, au: H264AccessUnit): void {
    if (this.state === 'closed' || this.h264 !== encoder) return;
    const frame = Buffer.allocUnsafe(FRAME_HEADER_SIZE + au.data.byteLength);
    writeFrameHeader(frame, FrameKind.H264, au.keyframe ? FLAG_KEYFRAME : 0, au.sequence, au.presentMs, encoder.width, encoder.height);
    frame.set(au.data, FRAME_HEADER_SIZE);
    this.transmit(frame, au.keyframe, au.sequence);
  }

  private transmit(frame: Buffer, keyframe: boolean, sequence: number): void {
    const now = clockMs();
    stampSendMs(frame, now);
    // The slot taken when encoding started (the oldest unsent one if the encoder renumbered).
    let slot: InFlight | null = null;
    for (const f of this.inFlightList) {
      if (f.sentMs !== 0) continue;
      if (f.sequence === sequence) {
        slot = f;
        break;
      }
      slot ??= f;
    }
    if (slot) {
      slot.sequence = sequence;
      slot.sentMs = now;
    } else this.inFlightList.push({ sequence, sentMs: now });
    if (this.lastSequence > 0 && sequence > this.lastSequence + 1) this.framesSkipped += sequence - this.lastSequence - 1;
    this.lastSequence = sequence;
    this.framesSent++;
    if (keyframe) this.keyframes++;
    this.bytesSent += frame.length;
    // A byte budget on top of the frame-rate cap, if the client asked for one (tiles).
    if (this.tileKbps > 0) this.nextAllowedMs = Math.max(this.nextAllowedMs, now + (frame.length * 8) / this.tileKbps);
    this.ws.send(frame, BINARY, this.onSent);
    // The encoder may have more damage by now.
    if (this.tiles) process.nextTick(this.pumpBound);
  }

  /** Frees timers and the encoder; the socket is being closed or is closed. */
  dispose(): void {
    this.state = 'closed';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.helloTimer) clearTimeout(this.helloTimer);
    this.retryTimer = this.helloTimer = null;
    const h = this.h264;
    this.h264 = null;
    h?.close();
    this.tileEncoder?.release();
  }
}

/**
 * Serves remote viewers of a SurfaceServer's surfaces over WebSocket (docs/remote.md).
 * Create with StreamServer.start(); close() is idempotent.
 */
export class StreamServer extends EventEmitter<StreamServerEvents> {
  readonly token: string;
  readonly host: string;
  readonly port: number;
  readonly name: string;
  private readonly http: http.Server;
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<StreamSession>();
  private readonly mirrors = new Map<number, SurfaceMirror>();
  private readonly allowOrigins: Set<string>;
  private readonly files: Map<string, string>;
  private readonly codecs: Codec[];
  private readonly sweepTimer: NodeJS.Timeout;
  private removeTap: (() => void) | null = null;
  private closedValue = false;
  private readonly tap: FrameTap;
  private readonly logger: Logger;

  private constructor(
    readonly surfaceServer: SurfaceServer,
    httpServer: http.Server,
    private readonly options: Required<Omit<StreamServerOptions, 'token' | 'allowOrigins' | 'webRoot' | 'port' | 'host' | 'name' | 'logger' | 'codecs'>>,
    settings: { token: string; host: string; port: number; name: string; allowOrigins: string[]; files: Map<string, string>; codecs: Codec[]; logger: Logger },
    private readonly h264Probe: H264Probe | null,
    private readonly h264Unavailable: string,
  ) {
    super();
    this.http = httpServer;
    this.token = settings.token;
    this.host = settings.host;
    this.port = settings.port;
    this.name = settings.name;
    this.files = settings.files;
    this.codecs = settings.codecs;
    const hostPart = hostForUrl(this.host);
    const own = [`http://${hostPart}:${this.port}`];
    if (isLoopback(this.host)) own.push(`http://localhost:${this.port}`, `http://127.0.0.1:${this.port}`, `http://[::1]:${this.port}`);
    this.allowOrigins = new Set([...own, ...settings.allowOrigins]);
    this.wss = new WebSocketServer({
      noServer: true,
      // Larger than the 64 KiB message limit so an oversized message gets E_TOO_LARGE, not a bare 1009.
      maxPayload: 1024 * 1024,
      perMessageDeflate: false,
      clientTracking: false,
      handleProtocols: (protocols) => (protocols.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    httpServer.on('request', (req, res) => this.serveFile(req, res));
    httpServer.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
    httpServer.on('clientError', (_e, socket) => socket.destroy());
    this.tap = {
      frame: (surface, buffer, damage, count, presentTimeNs) => {
        const m = this.mirrors.get(surface.id);
        // Skip a repeat of the frame the mirror already holds (a re-installed tap replays it).
        if (m && !(m.ready && count === 0 && m.sequence === surface.sequence && buffer.width === m.width && buffer.height === m.height)) {
          m.update(buffer, damage, count, presentTimeNs);
          this.scheduleFlush(m);
        }
      },
      surfaceClosed: (surface) => this.surfaceGone(surface),
    };
    this.sweepTimer = setInterval(() => this.sweep(), 1000);
    this.sweepTimer.unref();
    this.logger = settings.logger;
    // Local clients that offer stream.v1 on the unix socket are pointed here (docs/protocol.md §4.4).
    surfaceServer.setStreamEndpoint({ wsUrl: this.wsUrl, token: this.token, url: this.url, codecs: this.codecs.filter((c) => c !== 'h264' || h264Unavailable === '') });
  }

  /** Starts the HTTP + WebSocket server for `surfaceServer`'s surfaces. */
  static async start(surfaceServer: SurfaceServer, options: StreamServerOptions = {}): Promise<StreamServer> {
    if (surfaceServer.closed) throw new SurfaceLinkError('E_CLOSED', 'the SurfaceServer is closed');
    const host = options.host ?? '127.0.0.1';
    const port = options.port ?? 0;
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw invalidArgument('port', 'an integer from 0 to 65535', port);
    const token = options.token ?? process.env.SURFACELINK_STREAM_TOKEN ?? crypto.randomBytes(32).toString('hex');
    if (typeof token !== 'string' || token.length < 16) throw invalidArgument('token', 'a string of at least 16 characters', token);
    const codecs = options.codecs ?? [...CODECS];
    if (!Array.isArray(codecs) || codecs.length === 0 || codecs.some((c) => !CODECS.includes(c))) throw invalidArgument('codecs', `a non-empty list of ${CODECS.join(', ')}`, String(codecs));
    const maxFps = positive(options.maxFps ?? 30, 'maxFps');
    const bitrateKbps = positive(options.bitrateKbps ?? 8000, 'bitrateKbps');
    const window = options.window ?? 2;
    if (!Number.isInteger(window) || window < 1 || window > 16) throw invalidArgument('window', 'an integer from 1 to 16', window);
    const tileLevel = options.tileLevel ?? 1;
    if (!Number.isInteger(tileLevel) || tileLevel < 1 || tileLevel > 9) throw invalidArgument('tileLevel', 'an integer from 1 to 9', tileLevel);
    const maxClients = positive(options.maxClients ?? 16, 'maxClients');
    const ackTimeoutMs = positive(options.ackTimeoutMs ?? ACK_TIMEOUT_MS, 'ackTimeoutMs');
    const helloTimeoutMs = positive(options.helloTimeoutMs ?? HELLO_TIMEOUT_MS, 'helloTimeoutMs');
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

    const httpServer = http.createServer();
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', (error: NodeJS.ErrnoException) =>
        reject(new SurfaceLinkError(error.code === 'EADDRINUSE' ? 'E_ADDRESS_IN_USE' : 'E_SYSTEM', `cannot listen on ${host}:${port}: ${error.message}`, { cause: error })),
      );
      httpServer.listen(port, host, () => resolve());
    });
    const address = httpServer.address() as AddressInfo;
    return new StreamServer(
      surfaceServer,
      httpServer,
      { maxFps, bitrateKbps, window, maxClients, tileLevel, ackTimeoutMs, helloTimeoutMs },
      { token, host, port: address.port, name: options.name ?? surfaceServer.name, allowOrigins: options.allowOrigins ?? [], files, codecs, logger: options.logger ?? stderrLogger },
      probe,
      unavailable,
    );
  }

  /** The browser viewer's URL, token in the fragment (never sent to the server by a browser). */
  get url(): string {
    return `http://${hostForUrl(this.host)}:${this.port}/#token=${this.token}`;
  }

  /** The WebSocket endpoint (the token goes in the hello, not the URL). */
  get wsUrl(): string {
    return `ws://${hostForUrl(this.host)}:${this.port}${STREAM_PATH}`;
  }

  get closed(): boolean {
    return this.closedValue;
  }

  /** The codecs this server can actually serve, each with why (h264 needs a GStreamer encoder). */
  get availableCodecs(): string[] {
    return this.codecs.map((c) => (c === 'h264' ? (this.h264Unavailable === '' ? `h264 (${this.h264Probe?.encoder ?? '?'})` : `h264 unavailable: ${this.h264Unavailable}`) : c));
  }

  /** Connected clients past their hello. */
  get clients(): StreamClientInfo[] {
    return [...this.sessions].filter((s) => s.state === 'active').map((s) => s.info());
  }

  /** The H.264 encoder that h264 clients get, or null (and `availableCodecs` says why). */
  get h264Encoder(): string | null {
    return this.h264Probe?.encoder ?? null;
  }

  // ---- HTTP ----

  private serveFile(req: http.IncomingMessage, res: http.ServerResponse): void {
    const headers = { 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff', 'Referrer-Policy': 'no-referrer' };
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { ...headers, Allow: 'GET, HEAD' }).end();
      return;
    }
    let pathname: string;
    try {
      pathname = new URL(req.url ?? '/', 'http://x').pathname;
    } catch {
      res.writeHead(400, headers).end();
      return;
    }
    // Only names listed at start: no path from the request ever reaches the file system.
    const file = this.files.get(pathname === '/' ? '/index.html' : pathname);
    if (!file) {
      res.writeHead(pathname === STREAM_PATH ? 426 : 404, { ...headers, 'Content-Type': 'text/plain; charset=utf-8' }).end(pathname === STREAM_PATH ? 'WebSocket only\n' : 'not found\n');
      return;
    }
    fs.readFile(file, (error, body) => {
      if (error) {
        res.writeHead(404, headers).end();
        return;
      }
      res.writeHead(200, { ...headers, 'Content-Type': CONTENT_TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream', 'Content-Length': body.length });
      res.end(req.method === 'HEAD' ? undefined : body);
    });
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => socket.destroy());
    const refuse = (status: number, text: string): void => {
      socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: ${text.length + 1}\r\n\r\n${text}\n`);
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
    if (origin !== undefined && !this.originAllowed(origin, req.headers.host)) return refuse(403, 'origin not allowed');
    const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
    if (!offered.includes(SUBPROTOCOL)) return refuse(400, `the WebSocket subprotocol must be ${SUBPROTOCOL}`);
    if (this.sessions.size >= this.options.maxClients) return refuse(503, 'too many stream clients');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.accept(ws, req.socket.remoteAddress ?? '?'));
  }

  private originAllowed(origin: string, hostHeader: string | undefined): boolean {
    if (this.allowOrigins.has(origin)) return true;
    // Bound to every interface: the page's own origin is whatever IP address it was loaded
    // from. Only IP literals: a DNS name could be rebound to this host by someone else.
    if ((this.host === '0.0.0.0' || this.host === '::') && hostHeader && origin === `http://${hostHeader}`) {
      const name = hostHeader.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
      return /^[\d.]+$/.test(name) || name.includes(':');
    }
    return false;
  }

  // ---- sessions ----

  private accept(ws: WebSocket, remoteAddress: string): void {
    const session = new StreamSession(this, ws, remoteAddress, { maxFps: this.options.maxFps, bitrateKbps: this.options.bitrateKbps, window: this.options.window, tileLevel: this.options.tileLevel });
    this.sessions.add(session);
    session.helloTimer = setTimeout(() => this.fail(session, 'E_TIMEOUT', `no hello within ${this.options.helloTimeoutMs} ms`), this.options.helloTimeoutMs);
    ws.on('message', (data: Buffer, isBinary: boolean) => this.onMessage(session, data, isBinary));
    ws.on('error', () => {
      /* a protocol violation or a reset; 'close' follows */
    });
    ws.on('close', (code: number) => this.socketClosed(session, code));
  }

  private onMessage(session: StreamSession, data: Buffer, isBinary: boolean): void {
    if (session.state === 'closed') return;
    try {
      if (isBinary) throw new SurfaceLinkError('E_MALFORMED', 'clients send text (JSON) messages only');
      const m = parseClientMessage(data, data.length);
      if (session.state === 'hello') {
        if (m.type !== 'hello') throw new SurfaceLinkError('E_AUTH', `the first message must be hello; got ${m.type}`);
        session.state = 'starting';
        if (session.helloTimer) clearTimeout(session.helloTimer);
        session.helloTimer = null;
        this.hello(session, m).catch((error) => this.failWith(session, error));
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
      }
    } catch (error) {
      this.failWith(session, error);
    }
  }

  private failWith(session: StreamSession, error: unknown): void {
    const e = SurfaceLinkError.fromNative(error);
    this.fail(session, e.code, e.message, (error as { closeCode?: number }).closeCode);
  }

  private async hello(session: StreamSession, m: HelloMessage): Promise<void> {
    if (!tokenMatches(m.token, this.token)) throw new SurfaceLinkError('E_AUTH', 'wrong token');
    session.name = m.name;
    const surface = m.surface === undefined ? this.surfaceServer.surfaceList[0] : this.surfaceServer.surfaceList.find((s) => s.id === m.surface);
    if (!surface) throw Object.assign(new SurfaceLinkError('E_INVALID_ARGUMENT', m.surface === undefined ? 'the server has no surface yet' : `no surface ${m.surface}`), { closeCode: CloseCode.NO_SURFACE });
    if (!STREAMABLE.has(surface.format.name))
      throw Object.assign(new SurfaceLinkError('E_UNSUPPORTED_FORMAT', `surface ${surface.id} is ${surface.format.name}; streams carry ${[...STREAMABLE].join(', ')}`), { closeCode: CloseCode.NO_CODEC });
    if (m.maxFps !== undefined) session.maxFps = Math.min(session.maxFps, m.maxFps);
    if (m.maxBitrateKbps !== undefined) {
      session.bitrateKbps = Math.min(session.bitrateKbps, m.maxBitrateKbps);
      session.tileKbps = m.maxBitrateKbps;
    }
    const choice = this.chooseCodec(m.codecs);
    session.reason = choice.reason;
    const mirror = this.mirrorFor(surface);
    session.mirror = mirror;
    if (choice.codec === 'h264') {
      try {
        await session.startH264(mirror);
      } catch (error) {
        if (session.state === 'closed') return;
        const why = (error as Error).message;
        if (!m.codecs.includes('tiles') || !this.codecs.includes('tiles')) throw new SurfaceLinkError('E_ENCODER', `the H.264 encoder did not start: ${why}`);
        session.reason = `the H.264 encoder did not start (${why}); tiles is next in the client's list`;
        session.h264 = null;
        session.startTiles(mirror);
      }
    } else session.startTiles(mirror);
    if (session.state === 'closed') return;
    mirror.sessions.add(session);
    session.activate(mirror);
    this.logger('info', `stream client ${session.id} "${session.name}" from ${session.remoteAddress}: ${session.codec} — ${session.reason}`);
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
      const what = codec === 'h264' ? `H.264 via ${this.h264Probe!.encoder}${this.h264Probe!.hardware ? ' (hardware)' : ''}` : 'lossless tiles';
      return { codec, reason: skipped.length === 0 ? `${what}: the client's first choice` : `${what}; not ${skipped.join('; not ')}` };
    }
    throw Object.assign(new SurfaceLinkError('E_NO_MECHANISM', `no codec in common: ${skipped.join('; ')} (server offers ${this.codecs.join(', ')})`), { closeCode: CloseCode.NO_CODEC });
  }

  /** The mirror of `surface`, created (and the tap installed) for its first stream client. */
  private mirrorFor(surface: SharedSurface): SurfaceMirror {
    let mirror = this.mirrors.get(surface.id);
    if (!mirror) {
      mirror = new SurfaceMirror(surface);
      this.mirrors.set(surface.id, mirror);
      // (Re-)installing the tap hands it every surface's current frame: the new mirror starts full.
      this.removeTap?.();
      this.removeTap = this.surfaceServer.closed ? null : this.surfaceServer.addTap(this.tap);
    }
    return mirror;
  }

  private flushPending = new Set<SurfaceMirror>();
  private flushScheduled = false;
  private readonly flushBound = (): void => {
    this.flushScheduled = false;
    for (const m of this.flushPending) for (const s of m.sessions) s.pump();
    this.flushPending.clear();
  };

  /** Encoding happens after the producer's present() returns, not inside it. */
  private scheduleFlush(mirror: SurfaceMirror): void {
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

  /** Sends an error, then closes the socket with the code that goes with it. */
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
    if (code !== CloseCode.NORMAL && code !== CloseCode.GOING_AWAY && code !== 1005) session.goneMessage = `the connection closed (${code})`;
    this.detach(session, session.state === 'active');
  }

  private detach(session: StreamSession, wasActive: boolean): void {
    session.dispose();
    this.sessions.delete(session);
    const mirror = session.mirror;
    if (mirror) {
      mirror.sessions.delete(session);
      if (mirror.sessions.size === 0 && this.mirrors.get(mirror.surface.id) === mirror && ![...this.sessions].some((s) => s.mirror === mirror)) {
        this.mirrors.delete(mirror.surface.id);
        if (this.mirrors.size === 0) {
          this.removeTap?.();
          this.removeTap = null;
        }
      }
    }
    if (wasActive) {
      this.logger('info', `stream client ${session.id} "${session.name}" left (${session.goneCode}): ${session.goneMessage}`);
      this.emit('clientGone', session.info(), { code: session.goneCode, message: session.goneMessage });
    }
  }

  private sweep(): void {
    const now = clockMs();
    for (const s of this.sessions) {
      const oldest = s.oldestUnackedMs();
      if (s.state === 'active' && oldest > 0 && now - oldest > this.options.ackTimeoutMs) this.fail(s, 'E_RELEASE_TIMEOUT', `no ack for ${Math.round(now - oldest)} ms`);
    }
  }

  /** Disconnects every client and stops listening. Idempotent. */
  close(): void {
    if (this.closedValue) return;
    this.closedValue = true;
    clearInterval(this.sweepTimer);
    for (const s of [...this.sessions]) this.end(s, CloseCode.GOING_AWAY, 'E_SHUTDOWN', 'the stream server is shutting down');
    this.removeTap?.();
    this.removeTap = null;
    this.mirrors.clear();
    this.surfaceServer.setStreamEndpoint(null);
    this.wss.close();
    this.http.close();
    this.http.closeAllConnections();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

// ---- helpers -------------------------------------------------------------------------------

function positive(value: number, name: string): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) throw invalidArgument(name, 'a positive number', value);
  return value;
}

/** Constant time whatever the lengths: both sides are hashed to 32 bytes first. */
function tokenMatches(given: string, expected: string): boolean {
  const a = crypto.createHash('sha256').update(given, 'utf8').digest();
  const b = crypto.createHash('sha256').update(expected, 'utf8').digest();
  return crypto.timingSafeEqual(a, b);
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** URL path → file, for the regular files directly in `root` and one level of folders below it. */
function listWebFiles(root: string): Map<string, string> {
  const files = new Map<string, string>();
  const walk = (dir: string, prefix: string, depth: number): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return; // no viewer installed: only the stream is served
    }
    for (const e of entries) {
      if (e.name.startsWith('.')) continue;
      const full = path.join(dir, e.name);
      if (e.isFile()) files.set(`${prefix}/${encodeURIComponent(e.name).replace(/%2F/gi, '')}`, full);
      else if (e.isDirectory() && depth === 0) walk(full, `${prefix}/${encodeURIComponent(e.name)}`, depth + 1);
    }
  };
  walk(root, '', 0);
  return files;
}
