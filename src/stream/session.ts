/**
 * StreamSession: one remote viewer of a StreamServer — its codec and encoder, flow control
 * (a window of unacked frames, a frame-rate grid, a byte budget for tiles) and latest-wins
 * pumping from the surface's mirror. Nothing is queued but damage (tiles) or a dirty flag (H.264).
 * H.264 with shared input hands its encoder the producer's newest buffer itself (held until the
 * worker has read it); frames whose buffer cannot be shared go from the mirror's copy.
 */
import type { WebSocket } from 'ws';
import type { ErrorCodeName } from '../errors.js';
import type { Rect } from '../protocol/codec.js';
import { BitrateController, type BitrateState } from './bitrate.js';
import { H264Encoder, type H264AccessUnit, type H264Input, type H264InputFormat } from './h264.js';
import { RateLimit, ViewerInput, WARNING_INTERVAL_MS } from './input.js';
import type { SharedPicture, SurfaceMirror } from './mirror.js';
import {
  FLAG_KEYFRAME,
  FRAME_HEADER_SIZE,
  FrameKind,
  MAX_BUFFERED_BYTES,
  STREAM_VERSION,
  clockMs,
  stampSendMs,
  timerDelay,
  writeFrameHeader,
  type Codec,
} from './protocol.js';
import { SendPacer } from './pacer.js';
import { TileDamage, TileEncoder } from './tiles.js';
import type { StreamClientInfo, StreamServerOptions, ViewerStats } from './types.js';

/** What a session needs from its server. */
export interface SessionOwner {
  readonly name: string;
  /** Sends an error, then closes the session's socket. */
  fail(session: StreamSession, code: ErrorCodeName, message: string, closeCode?: number): void;
}

const BINARY = { binary: true } as const;
/** At most this many cursorMove messages per second per viewer (latest wins in between). */
const CURSOR_MOVES_PER_SECOND = 120;

interface InFlight {
  sequence: number;
  /** Server clock when it was handed to the socket; 0 while still encoding. */
  sentMs: number;
  /** Its size on the wire, once sent (the bitrate controller counts acked bytes). */
  bytes: number;
}

/** A connection counted as pending (no good hello yet), from its upgrade until it authenticates or closes. */
export interface PendingSlot {
  /** The address key it counts against (addressKey). */
  readonly address: string;
  released: boolean;
}

let nextSessionId = 1;

/** One remote client. */
export class StreamSession implements StreamClientInfo {
  readonly id = nextSessionId++;
  state: 'hello' | 'starting' | 'active' | 'closed' = 'hello';
  name = '';
  codec: Codec | null = null;
  reason = '';
  mirror: SurfaceMirror<StreamSession> | null = null;
  encoder: string | null = null;
  maxFps: number;
  bitrateKbps: number;
  /** Tiles: a cap only when the client asked for one. */
  tileKbps = 0;
  /** The client's `hello.maxBitrateKbps`, clamped; null if it gave none. */
  maxBitrateKbps: number | null = null;
  /** Past its hello with a good token: it holds a viewer slot (no longer a pending connection). */
  authenticated = false;
  framesSent = 0;
  framesSkipped = 0;
  keyframes = 0;
  bytesSent = 0;
  viewer: ViewerStats | null = null;
  readonly remoteAddress: string;
  readonly window: number;
  // Flow control.
  readonly inFlightList: InFlight[] = [];
  private readonly pacer = new SendPacer();
  private lastSequence = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  helloTimer: NodeJS.Timeout | null = null;
  /** Its place among the pending connections until its hello authenticates it (StreamServer). */
  pendingSlot: PendingSlot | null = null;
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
  /** Frames handed to its encoders as shared buffers, and as copies (every encoder it had). */
  framesShared = 0;
  framesCopied = 0;
  /** H.264 with adaptiveBitrate: the controller (made at the first sample), and what it is fed each second. */
  bitrateControl: BitrateController | null = null;
  private ackedBytes = 0;
  private framesReady = 0;
  private windowStalls = 0;
  private bitrateSkip = false;
  goneCode: ErrorCodeName = 'E_PEER_CLOSED';
  goneMessage = 'the client closed the connection';
  // Input.
  /** Whether its token allows input (set at hello). */
  inputAllowed = false;
  readonly viewerInput = new ViewerInput();
  /** Every message it sends takes a token (docs/remote.md §3.1). */
  readonly rate: RateLimit;
  /** Server clock when a resize was last announced to it. */
  resizedAtMs = 0;
  // Cursor: what this viewer was last sent, and what is waiting (latest wins).
  private cursorSerialSent: number | null = null;
  private cursorImageSent: unknown = undefined;
  private cursorMovePending = false;
  private cursorInFlight = false;
  private cursorTimer: NodeJS.Timeout | null = null;
  private nextCursorMs = 0;
  private modeSent: string | null = null;
  private readonly cursorSent = (): void => {
    this.cursorInFlight = false;
    this.scheduleCursor();
  };
  private readonly cursorFlushBound = (): void => {
    this.cursorTimer = null;
    this.flushCursor();
  };

  private readonly pumpBound = (): void => this.pump();
  private readonly retryBound = (): void => {
    this.retryTimer = null;
    this.pump();
  };
  private readonly onSent = (error?: Error): void => {
    if (!error) this.pump();
  };

  constructor(
    readonly server: SessionOwner,
    readonly ws: WebSocket,
    remoteAddress: string,
    readonly options: Required<
      Pick<
        StreamServerOptions,
        'maxFps' | 'bitrateKbps' | 'window' | 'tileLevel' | 'maxMessageRate' | 'h264Input' | 'adaptiveBitrate'
      >
    >,
  ) {
    this.remoteAddress = remoteAddress;
    this.window = options.window;
    this.maxFps = options.maxFps;
    this.bitrateKbps = options.bitrateKbps;
    this.rate = new RateLimit(options.maxMessageRate);
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
  get inputEvents(): number {
    return this.viewerInput.events;
  }
  get input(): boolean {
    return this.inputAllowed;
  }
  /** What it encodes from (SurfaceMirror): the producer's buffers (H.264, shared input) or the mirror's copy. */
  get source(): 'pixels' | 'shared' {
    if (this.codec !== 'h264') return 'pixels';
    // Between encoders (a resize) the next one is expected to take what this one took.
    return (this.h264?.input ?? this.options.h264Input) === 'shared' ? 'shared' : 'pixels';
  }
  /** H.264: how the newest frame reached the encoder; null for tiles or before the first frame. */
  get h264Input(): H264Input | null {
    return this.h264?.lastInput ?? null;
  }
  /** H.264: copies of the newest frame's picture out of the producer's memory (0 shared, 1 copied). */
  get copiesPerFrame(): number | null {
    const path = this.h264Input;
    return path === null ? null : path === 'shared' ? 0 : 1;
  }
  /** H.264: why its frames are copied, or null while they are shared (and for tiles). */
  get h264InputReason(): string | null {
    const h = this.h264;
    if (!h || h.lastInput !== 'copy') return null;
    if (h.input === 'copy') return h.inputReason;
    return this.mirror?.notShared || 'the newest buffer could not be handed over';
  }
  /** The picture size this viewer was last told (welcome / resize): input coordinates are checked against it. */
  get picture(): { width: number; height: number; resizedAtMs: number } {
    return { width: this.knownWidth, height: this.knownHeight, resizedAtMs: this.resizedAtMs };
  }

  info(): StreamClientInfo {
    const {
      id,
      name,
      remoteAddress,
      codec,
      reason,
      surfaceId,
      encoder,
      encoderPid,
      maxFps,
      maxBitrateKbps,
      window,
      framesSent,
      framesSkipped,
      keyframes,
      bytesSent,
      inFlight,
      bufferedAmount,
      viewer,
      inputEvents,
      h264Input,
      copiesPerFrame,
      h264InputReason,
      framesShared,
      framesCopied,
      targetBitrateKbps,
    } = this;
    return {
      id,
      name,
      remoteAddress,
      codec,
      reason,
      surfaceId,
      encoder,
      encoderPid,
      maxFps,
      maxBitrateKbps,
      window,
      framesSent,
      framesSkipped,
      keyframes,
      bytesSent,
      inFlight,
      bufferedAmount,
      viewer: viewer && { ...viewer },
      input: this.inputAllowed,
      inputEvents,
      h264Input,
      copiesPerFrame,
      h264InputReason,
      framesShared,
      framesCopied,
      targetBitrateKbps,
      bitrate: this.bitrate,
    };
  }

  /** H.264 with adaptiveBitrate: what the controller saw and did; else null. */
  get bitrate(): BitrateState | null {
    return this.bitrateControl?.state ?? null;
  }

  /** H.264: the encoder's target now (the adaptive controller's, else the cap); null for tiles. */
  get targetBitrateKbps(): number | null {
    if (this.codec !== 'h264') return null;
    return this.bitrateControl?.targetKbps ?? this.bitrateKbps;
  }

  /**
   * Once a second (the server's sweep): what this client's connection drained, to the bitrate
   * controller; a new target goes to the encoder at once (docs/remote.md §5.1).
   */
  adaptBitrate(nowMs: number): void {
    if (this.state !== 'active' || this.codec !== 'h264' || !this.options.adaptiveBitrate) return;
    this.bitrateControl ??= new BitrateController({ maxKbps: this.bitrateKbps });
    // An encoder restarting (a worker died, a resize) sends nothing for a moment: not the connection's doing.
    if (this.bitrateSkip || this.h264Restarting || !this.h264 || !this.h264.working) {
      this.bitrateSkip = false;
      this.ackedBytes = this.framesReady = this.windowStalls = 0;
      return this.bitrateControl.skip(nowMs);
    }
    const next = this.bitrateControl.sample({
      nowMs,
      ackedBytes: this.ackedBytes,
      framesReady: this.framesReady,
      windowStalls: this.windowStalls,
    });
    this.ackedBytes = this.framesReady = this.windowStalls = 0;
    if (next !== null && this.h264 && !this.h264.closed) this.h264.setBitrate(next);
  }

  sendJson(message: object | string, sent?: (error?: Error) => void): void {
    if (this.ws.readyState === this.ws.OPEN)
      this.ws.send(typeof message === 'string' ? message : JSON.stringify(message), sent);
  }

  // ---- set-up ----

  startTiles(mirror: SurfaceMirror<StreamSession>): void {
    this.codec = 'tiles';
    this.tiles = new TileDamage(mirror.width, mirror.height);
    this.tileEncoder = new TileEncoder((error, frame) => this.tileDone(error, frame), {
      level: this.options.tileLevel,
    });
  }

  async startH264(mirror: SurfaceMirror<StreamSession>): Promise<void> {
    this.codec = 'h264';
    const encoder = await H264Encoder.start({
      width: mirror.width,
      height: mirror.height,
      format: mirror.surface.format.name as H264InputFormat,
      fps: this.maxFps,
      // A replacement encoder (a resize) starts where the controller is, not at the cap.
      bitrateKbps: this.bitrateControl?.targetKbps ?? this.bitrateKbps,
      input: this.options.h264Input,
    });
    if (this.state === 'closed') return void encoder.close();
    this.attachH264(encoder);
  }

  private attachH264(encoder: H264Encoder): void {
    this.h264 = encoder;
    this.encoder = encoder.element;
    this.h264Dirty = true;
    encoder.on('au', (au) => this.h264Out(encoder, au));
    // A frame it held while busy went to the worker now: it takes its window slot now.
    encoder.on('dequeued', (sequence) => {
      if (this.h264 !== encoder) return;
      this.inFlightList.push({ sequence, sentMs: 0, bytes: 0 });
      this.framesShared++;
    });
    encoder.on('restart', (reason) => {
      if (this.h264 !== encoder) return;
      // Nothing was sent while it restarted: that second says nothing about the connection.
      this.bitrateSkip = true;
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
  activate(mirror: SurfaceMirror<StreamSession>): void {
    this.state = 'active';
    // H.264: the size its encoder was started at. A resize while it started is then announced,
    // and the encoder replaced, by the first pump(), instead of fed frames of another size.
    this.knownWidth = this.h264?.width ?? mirror.width;
    this.knownHeight = this.h264?.height ?? mirror.height;
    const s = mirror.surface;
    this.sendJson({
      type: 'welcome',
      version: STREAM_VERSION,
      server: this.server.name,
      codec: this.codec,
      reason: this.reason,
      surface: { id: s.id, width: this.knownWidth, height: this.knownHeight, format: s.format.name },
      encoder: this.encoder,
      maxFps: this.maxFps,
      bitrateKbps: this.codec === 'h264' ? this.bitrateKbps : null,
      window: this.window,
      serverMs: clockMs(),
      input: this.inputAllowed,
      inputMode: mirror.cursor.mode,
      maxMessageRate: this.options.maxMessageRate,
    });
    this.modeSent = mirror.cursor.mode;
    this.cursorChanged();
    if (mirror.ready) this.pump();
  }

  // ---- cursor and input mode ----

  /**
   * A non-fatal `warning` (the connection stays): E_PERMISSION once in all (view only: its input is
   * dropped from then on), others at most once per WARNING_INTERVAL_MS.
   */
  warn(code: ErrorCodeName, message: string): void {
    const input = this.viewerInput;
    if (code === 'E_PERMISSION') {
      if (input.refused) return;
      input.refused = true;
    } else {
      const now = clockMs();
      if (now - input.lastWarningMs < WARNING_INTERVAL_MS) return;
      input.lastWarningMs = now;
    }
    this.sendJson({ type: 'warning', code, message });
  }

  /** The surface's input mode changed: tell this viewer, unless it already knows. */
  inputModeChanged(): void {
    const mode = this.mirror?.cursor.mode;
    if (this.state !== 'active' || !mode || mode === this.modeSent) return;
    this.modeSent = mode;
    this.sendJson({ type: 'inputMode', mode });
  }

  /** The cursor moved or changed shape: sent soon, latest wins. */
  cursorChanged(): void {
    if (this.state !== 'active' || !this.mirror?.cursor.state) return;
    this.cursorMovePending = true;
    this.scheduleCursor();
  }

  /**
   * Cursor messages are paced: at most one batch (shape if it changed, then position) waits in
   * the socket at a time, and at most CURSOR_MOVES_PER_SECOND batches go out; in between only
   * the newest state is kept, so a viewer that reads slowly gets fewer moves, never a queue.
   */
  private scheduleCursor(): void {
    if (this.cursorTimer || this.cursorInFlight || !this.cursorMovePending || this.state !== 'active') return;
    this.cursorTimer = setTimeout(this.cursorFlushBound, timerDelay(this.nextCursorMs - clockMs()));
  }

  private flushCursor(): void {
    const cursor = this.mirror?.cursor;
    const state = cursor?.state;
    if (this.state !== 'active' || !cursor || !state || this.ws.readyState !== this.ws.OPEN) return;
    this.cursorMovePending = false;
    this.nextCursorMs = clockMs() + 1000 / CURSOR_MOVES_PER_SECOND;
    this.cursorInFlight = true;
    if (state.serial !== this.cursorSerialSent || state.image !== this.cursorImageSent) {
      this.cursorSerialSent = state.serial;
      this.cursorImageSent = state.image;
      this.sendJson(cursor.shapeMessage());
    }
    // Picture pixels on both sides (SharedSurface.moveCursor): sent as the producer gave them.
    this.sendJson({ type: 'cursorMove', x: state.x, y: state.y, visible: state.visible }, this.cursorSent);
  }

  // ---- frames ----

  /** The mirror took new damage (count 0: all of it). */
  damaged(damage: readonly Rect[], count: number): void {
    if (this.tiles) return this.tiles.add(damage, count);
    this.framesReady++;
    // The frame waiting for the encoder is replaced unsent because the client has not acked: a
    // stall of the window, which the bitrate controller reads as a connection that does not drain.
    if (this.h264Dirty && (this.inFlightList.length >= this.window || this.ws.bufferedAmount > MAX_BUFFERED_BYTES))
      this.windowStalls++;
    this.h264Dirty = true;
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
    while (n < list.length && list[n].sentMs > 0 && list[n].sequence <= sequence) this.ackedBytes += list[n++].bytes;
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
    // No room: an ack or the send callback resumes.
    if (this.inFlightList.length >= this.window || this.ws.bufferedAmount > MAX_BUFFERED_BYTES) return;
    // While a replacement encoder starts, a further resize waits for it (pump() runs when it is up):
    // starting a second one at once would orphan the first.
    if (this.h264Restarting) return;
    // A tile frame still compressing is of the size the client knows: it goes out (tileDone → transmit
    // → pump) before a resize is announced, so nothing at the old size follows the `resize` message.
    if (this.tiles && this.tileEncoder!.busy) return;
    if (mirror.width !== this.knownWidth || mirror.height !== this.knownHeight) return this.resized(mirror);
    // What this frame is encoded from: the mirror's copy, or (H.264, shared input) the producer's buffer.
    let shared: SharedPicture | null = null;
    if (this.tiles) {
      if (!this.tiles.pending) return;
    } else {
      if (!this.h264Dirty || !this.h264) return;
      if (this.h264.input === 'shared' && mirror.picture) {
        shared = mirror.sharedFrame();
        // The producer took it back, or a newer frame is on its way: the tap pumps again.
        if (!shared || shared.width !== this.h264.width || shared.height !== this.h264.height) return;
      }
    }
    if (!shared && !mirror.pixelsValid) return mirror.requestPixels();
    const now = clockMs();
    const wait = this.pacer.admit(now, this.maxFps);
    if (wait > 0) {
      // Clamped: the wait comes from the client's maxFps / maxBitrateKbps; a longer one is re-checked when it fires.
      if (!this.retryTimer) this.retryTimer = setTimeout(this.retryBound, timerDelay(wait));
      return;
    }
    if (this.tiles) {
      if (this.tileEncoder!.encode(mirror.pixels, mirror.stride, this.tiles, mirror.sequence, mirror.presentMs) === 0)
        return;
    } else if (shared) {
      // The producer's buffer itself, held until the worker has read it.
      const result = this.h264!.encodeShared(shared, mirror.sequence, mirror.presentMs);
      if (result === 'refused') return;
      this.h264Dirty = false;
      // Held as the encoder's next frame: its window slot is taken when it goes ('dequeued').
      if (result === 'queued') return;
      this.framesShared++;
    } else {
      if (!this.h264!.encode(mirror.pixels, mirror.stride, mirror.sequence, mirror.presentMs)) return;
      this.h264Dirty = false;
      this.framesCopied++;
    }
    this.inFlightList.push({ sequence: mirror.sequence, sentMs: 0, bytes: 0 });
  }

  private resized(mirror: SurfaceMirror<StreamSession>): void {
    this.knownWidth = mirror.width;
    this.knownHeight = mirror.height;
    this.resizedAtMs = clockMs();
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
      (error: Error) =>
        this.server.fail(
          this,
          'E_ENCODER',
          `the H.264 encoder did not restart at ${mirror.width}x${mirror.height}: ${error.message}`,
        ),
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
    writeFrameHeader(
      frame,
      FrameKind.H264,
      au.keyframe ? FLAG_KEYFRAME : 0,
      au.sequence,
      au.presentMs,
      encoder.width,
      encoder.height,
    );
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
      slot.bytes = frame.length;
    } else this.inFlightList.push({ sequence, sentMs: now, bytes: frame.length });
    if (this.lastSequence > 0 && sequence > this.lastSequence + 1)
      this.framesSkipped += sequence - this.lastSequence - 1;
    this.lastSequence = sequence;
    this.framesSent++;
    if (keyframe) this.keyframes++;
    this.bytesSent += frame.length;
    // A byte budget on top of the frame-rate cap, if the client asked for one (tiles).
    this.pacer.charge(now, frame.length, this.tileKbps);
    this.ws.send(frame, BINARY, this.onSent);
    // The encoder may have more damage by now.
    if (this.tiles) process.nextTick(this.pumpBound);
  }

  /** Frees timers and the encoder; the socket is being closed or is closed. */
  dispose(): void {
    this.state = 'closed';
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.helloTimer) clearTimeout(this.helloTimer);
    if (this.cursorTimer) clearTimeout(this.cursorTimer);
    this.retryTimer = this.helloTimer = this.cursorTimer = null;
    const h = this.h264;
    this.h264 = null;
    h?.close();
    this.tileEncoder?.release();
  }
}
