/**
 * H.264 for remote streams, through GStreamer: an encoder per remote client (the
 * StreamServer feeds it the frames it taps) and a decoder for the Node remote viewer.
 *
 * Each runs as a worker process (gst/surfacelink_gst.py under Python + PyGObject), fed
 * records over stdin and answering over stdout. A worker that dies or stalls is restarted
 * with backoff and the stream resumes at a keyframe; three deaths within 10 s end it with
 * E_ENCODER. Nothing here blocks the event loop: frames are copied into pooled buffers and
 * written asynchronously, and a full pipeline refuses frames rather than queueing them.
 *
 * Shared input (Linux): the encoder's worker also gets a unix socket (its fd 3). A producer's
 * buffer (a memfd or a linear dma-buf) goes to it once, as an fd (BUFFER); each frame is then a
 * 40-byte record naming the buffer (SHARED), and the worker's videoconvert reads the producer's
 * memory itself. The buffer is held from the hand-off until the worker says it has read it (DONE).
 */
import { EventEmitter } from 'eventemitter3';
import { SurfaceLinkError, invalidArgument } from '../errors.js';
import { formatByName } from '../formats.js';
import { posixChannels, type NativeChannel, type NativeFd } from '../native/index.js';
import {
  BUFFER_FLAG_DMABUF,
  BUFFER_INFO_BYTES,
  FLAG_KEYFRAME,
  GstWorkerProcess,
  RECORD_HEADER_BYTES,
  RecordKind,
  RestartPolicy,
  SHARED_INFO_BYTES,
  writeHeader,
  type WorkerReady,
  type WorkerRecord,
} from './gst-worker.js';
import { clockMs } from './protocol.js';

import { probeH264 } from './h264-probe.js';

export { probeH264 };

/** Encoders in order of preference: hardware first, x264enc last. */
export const H264_ENCODERS = ['vah264enc', 'vaapih264enc', 'nvh264enc', 'msdkh264enc', 'x264enc'] as const;
export type H264EncoderElement = (typeof H264_ENCODERS)[number];
/** Pixel formats the encoder takes (DRM names; memory order BGRX, BGRA, RGBX, RGBA). */
export type H264InputFormat = 'XRGB8888' | 'ARGB8888' | 'XBGR8888' | 'ABGR8888';
/**
 * How frames reach the encoder's worker: 'shared' — the producer's own buffer, by fd, read in place
 * (0 copies; frames that cannot be shared are still copied, one by one); 'copy' — every frame's
 * pixels copied and written through a pipe.
 */
export type H264Input = 'shared' | 'copy';

/**
 * A buffer the worker can map itself (H264Encoder.encodeShared): a memfd, or a linear dma-buf,
 * with the picture at `offset`, rows of `stride` bytes. The encoder sends the worker a duplicate of
 * `fd` once per worker, holds the buffer (hold()) from each hand-off until the worker has read it,
 * then release()s it; once `live` is false and it holds it no more, the worker forgets it.
 */
export interface H264SharedBuffer {
  /** The memory; borrowed (the encoder's worker gets a duplicate). */
  readonly fd: NativeFd;
  /** A dma-buf (mapped with DMA_BUF_IOCTL_SYNC brackets), else a memfd. */
  readonly dmabuf: boolean;
  /** Bytes of the object (the worker also checks the kernel's size). */
  readonly size: number;
  /** Where the picture's first pixel is, and bytes per row. */
  readonly offset: number;
  readonly stride: number;
  /** The picture: the encoder's size and format. */
  readonly width: number;
  readonly height: number;
  readonly format: H264InputFormat;
  /** False once the memory may be freed or reused for something else. */
  readonly live: boolean;
  /** The worker is about to read it: nobody may write it until release(). */
  hold(): void;
  /** The worker has read it (or never will). */
  release(): void;
}

/** What encodeShared() did with a frame. */
export type H264SharedResult =
  /** Handed to the worker. */
  | 'sent'
  /** The worker is busy: held as the next frame to send (an older one waiting was let go). */
  | 'queued'
  /** Not taken: the worker is restarting, or the buffer is no longer live. */
  | 'refused';

export interface H264Candidate {
  element: H264EncoderElement;
  usable: boolean;
  hardware: boolean;
  reason: string;
}

export interface H264Probe {
  /** The encoder start() uses by default, or null when none is usable. */
  encoder: H264EncoderElement | null;
  hardware: boolean;
  /** Whether avdec_h264 (the decoder H264Decoder uses) exists. */
  decoder: boolean;
  /** The Python that runs the worker, or null when it could not be run. */
  python: string | null;
  /** GStreamer's version string, or null. */
  gstreamer: string | null;
  /** Why this encoder was chosen, or why none could be. */
  reason: string;
  candidates: H264Candidate[];
}

export interface H264EncoderOptions {
  width: number;
  height: number;
  format: H264InputFormat;
  /** Nominal frame rate (rate control and timestamps); frames may come slower. Default 30. */
  fps?: number;
  /** Target bitrate in kbit/s. Default 8000. */
  bitrateKbps?: number;
  /** Force an encoder element; default: the probe's choice. */
  element?: H264EncoderElement;
  /** Frames queued to the worker and not yet encoded before encode() refuses more. Default 2. */
  maxInFlight?: number;
  /**
   * 'shared' (default where it works: Linux with the native addon) gives the worker a socket for
   * shared buffers (encodeShared) besides the pipe; 'copy' takes copies only, as before. `input`
   * and `inputReason` say what the encoder got.
   */
  input?: H264Input;
}

export interface H264AccessUnit {
  /** One access unit, Annex B byte stream. Owned by the listener (a copy). */
  data: Uint8Array;
  /** An IDR, with SPS and PPS in front. */
  keyframe: boolean;
  sequence: number;
  presentMs: number;
  /** Server clock when the access unit reached Node. */
  encodedMs: number;
}

/** One decoded picture. The object and its pixels are reused: valid only during the 'frame' handler. */
export interface H264DecodedFrame {
  /** BGRx, rows of width × 4 bytes, a view into the reader's buffer: `pixels.slice()` to keep them. */
  pixels: Uint8Array;
  width: number;
  height: number;
  sequence: number;
  presentMs: number;
  /** Server clock (this process's monotonic clock) when the frame reached Node. */
  decodedMs: number;
}

export interface H264EncoderEvents {
  au: (au: H264AccessUnit) => void;
  /** A shared frame encodeShared() held as the next one ('queued') was handed to the worker. */
  dequeued: (sequence: number) => void;
  /** The worker died or stalled and was restarted; the next access unit is a keyframe. */
  restart: (reason: string) => void;
  /** Restarts are exhausted (or the worker cannot start again); the encoder is closed. */
  error: (error: SurfaceLinkError) => void;
}

export interface H264DecoderEvents {
  frame: (frame: H264DecodedFrame) => void;
  /** An access unit produced no picture (undecodable: the viewer should ask for a keyframe). */
  drop: (info: { sequence: number; presentMs: number }) => void;
  restart: (reason: string) => void;
  error: (error: SurfaceLinkError) => void;
}

// ---- shared supervision --------------------------------------------------------------------

const FORMATS: readonly H264InputFormat[] = ['XRGB8888', 'ARGB8888', 'XBGR8888', 'ABGR8888'];
const MAX_SIDE = 16384;
const STALL_CHECK_MS = 1000;

/** True when token `a` was issued no later than `b` (u32 tokens wrap). */
function issuedBy(a: number, b: number): boolean {
  return (b - a) >>> 0 < 0x80000000;
}

/** Minimal typing for the shared events, so the base class can emit them. */
interface SupervisedEvents {
  restart: (reason: string) => void;
  error: (error: SurfaceLinkError) => void;
}

/**
 * A worker process plus the restart policy: the part the encoder and decoder share. A dead
 * worker is replaced after a backoff; while it is, `accepting` is false and input is refused.
 */
abstract class SupervisedWorker<Events extends SupervisedEvents> extends EventEmitter<Events> {
  protected worker: GstWorkerProcess | null = null;
  protected accepting = false;
  private isClosed = false;
  private readonly policy = new RestartPolicy();
  private restartTimer: NodeJS.Timeout | null = null;
  private started = false;
  /** What the newest worker said when it was ready. */
  protected readyInfo: WorkerReady | null = null;

  protected abstract workerArgs(): string[];
  /**
   * One end of a socket pair for the next worker's fd 3, or null for none; the subclass keeps the
   * other end. Called before each spawn; the end returned is closed once the worker has it.
   */
  protected workerSocket(): NativeFd | null {
    return null;
  }
  protected abstract onRecord(record: WorkerRecord): void;
  /** The worker went away: forget what was sent to it. */
  protected abstract onWorkerLost(): void;
  /** A replacement worker is ready (the encoder asks it for a keyframe). */
  protected onWorkerReplaced(): void {}

  get closed(): boolean {
    return this.isClosed;
  }

  /** False while a dead worker is being replaced (input is refused meanwhile), and once closed. */
  get working(): boolean {
    return this.accepting;
  }

  /** The worker's process id, or null while there is none (restarting, closed). */
  get pid(): number | null {
    return this.worker?.pid ?? null;
  }

  /** Starts the first worker; rejects with E_ENCODER (and closes) if it does not get ready. */
  protected async startWorker(): Promise<void> {
    let worker: GstWorkerProcess;
    try {
      worker = this.spawnWorker();
    } catch (error) {
      this.close();
      throw new SurfaceLinkError('E_ENCODER', `cannot start the GStreamer worker: ${(error as Error).message}`, {
        cause: error,
      });
    }
    try {
      this.readyInfo = await worker.ready;
    } catch (error) {
      this.close();
      throw error;
    }
    this.started = true;
    this.accepting = true;
  }

  private spawnWorker(): GstWorkerProcess {
    const socket = this.workerSocket();
    let worker: GstWorkerProcess;
    try {
      worker = new GstWorkerProcess(this.workerArgs(), undefined, socket ?? undefined);
    } finally {
      socket?.close();
    }
    this.worker = worker;
    worker.onRecord = (record) => {
      if (this.worker === worker) this.onRecord(record);
    };
    worker.onExit = (reason) => {
      // Before the first worker is ready, startWorker() reports the failure instead.
      if (this.worker === worker && !this.isClosed && this.started) this.workerDied(reason);
    };
    return worker;
  }

  /** Kills the worker so that supervision replaces it (a stall, a malformed answer). */
  protected restart(reason: string): void {
    if (!this.worker || this.isClosed) return;
    this.workerDied(reason);
  }

  private workerDied(reason: string): void {
    const dead = this.worker;
    this.worker = null;
    this.accepting = false;
    this.onWorkerLost();
    dead?.kill();
    const backoff = this.policy.death();
    if (backoff < 0) {
      const error = new SurfaceLinkError(
        'E_ENCODER',
        `the GStreamer worker failed ${this.policy.maxDeaths} times within ${this.policy.windowMs / 1000} s; ` +
          `last: ${reason}`,
      );
      this.close();
      (this as EventEmitter<SupervisedEvents>).emit('error', error);
      return;
    }
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.isClosed) return;
      let worker: GstWorkerProcess;
      try {
        worker = this.spawnWorker();
      } catch (error) {
        // No socket pair or no process to be had (out of fds): counts as another death.
        return this.workerDied(`cannot start a worker: ${(error as Error).message}`);
      }
      worker.ready.then(
        (info) => {
          if (this.worker !== worker || this.isClosed) return;
          this.readyInfo = info;
          this.accepting = true;
          this.onWorkerReplaced();
          (this as EventEmitter<SupervisedEvents>).emit('restart', reason);
        },
        () => {}, // its onExit counts the failure as another death
      );
    }, backoff);
  }

  /** Stops the worker (killed: nothing it holds is worth waiting for). Idempotent. */
  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.accepting = false;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const worker = this.worker;
    this.worker = null;
    this.onWorkerLost();
    worker?.kill();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}

// ---- encoder -------------------------------------------------------------------------------

/** A pooled input record: header + one frame, reused once the worker has read it and answered. */
interface InputSlot {
  readonly buf: Buffer;
  token: number;
  /** Written to the pipe, not yet completed. */
  writing: boolean;
  /** Sent, its access unit not yet back. */
  pending: boolean;
  readonly written: () => void;
}

/** One frame handed to the worker, until its access unit is back. Pooled: no allocation per frame. */
interface Ticket {
  token: number;
  /** A copied frame: the record its pixels were written from. */
  slot: InputSlot | null;
  /** A shared frame: its buffer, held until the worker has read it (then null). */
  shared: H264SharedBuffer | null;
}

/** Receive buffer of the shared-input socket (the worker sends nothing on it). */
const SOCKET_RX_BYTES = 4096;
/** What the socket may queue: records of a few dozen bytes, never pixels. */
const SOCKET_QUEUE_BYTES = 1 << 20;

let sharedProblem: string | null | undefined;

/** Why this process cannot give a worker shared buffers, or null when it can. */
function sharedInputProblem(): string | null {
  if (sharedProblem !== undefined) return sharedProblem;
  if (process.platform !== 'linux') {
    sharedProblem = `shared input passes memfds and dma-bufs, which ${process.platform} does not have`;
  } else {
    try {
      posixChannels();
      sharedProblem = null;
    } catch (error) {
      sharedProblem = `shared input needs the native addon: ${(error as Error).message}`;
    }
  }
  return sharedProblem;
}

/**
 * One H.264 encoder: raw frames in, access units out ('au'), one per frame, in order, no
 * B-frames. The first access unit, the first after a restart and the first after
 * requestKeyframe() are IDRs carrying SPS and PPS. Frames come as copies (encode()) or, with
 * shared input, as the producer's own buffers (encodeShared()).
 */
export class H264Encoder extends SupervisedWorker<H264EncoderEvents> {
  readonly element: H264EncoderElement;
  readonly hardware: boolean;
  readonly width: number;
  readonly height: number;
  readonly format: H264InputFormat;
  readonly fps: number;
  readonly maxInFlight: number;
  /** What this encoder takes: 'shared' (encodeShared() and encode()) or 'copy' (encode() only). */
  readonly input: H264Input;
  /** Why `input` is 'copy' (asked for, or shared input not possible here); '' when it is 'shared'. */
  readonly inputReason: string;
  /** A worker with frames pending and no output for this long is restarted. */
  stallMs = 5000;
  private bitrate: number;
  private readonly frameBytes: number;
  private slots: InputSlot[] = [];
  private readonly pending: Ticket[] = [];
  private readonly spareTickets: Ticket[] = [];
  private nextToken = 0;
  private lastProgressMs = 0;
  private readonly stallTimer: NodeJS.Timeout;
  // Shared input: the socket to the current worker, and the buffers it has been given.
  private channel: NativeChannel | null = null;
  private readonly socketRx: Buffer | null;
  /** The id the current worker knows each buffer by (BUFFER sent), and the same buffers as a list. */
  private readonly known = new Map<H264SharedBuffer, number>();
  private readonly knownList: H264SharedBuffer[] = [];
  private nextBufferId = 1;
  /** Scratch for socket records (the addon copies what it has to queue). */
  private readonly record = Buffer.alloc(RECORD_HEADER_BYTES + BUFFER_INFO_BYTES);
  private readonly fdList: NativeFd[] = [];
  private readonly fourcc: number;
  /** The newest shared frame offered while the worker was busy: held, sent when there is room. */
  private queued: H264SharedBuffer | null = null;
  private queuedSequence = 0;
  private queuedPresentMs = 0;
  private lastInputValue: H264Input | null = null;
  private sharedCount = 0;
  private copiedCount = 0;
  private heldCount = 0;
  private static readonly KEYFRAME_RECORD = (() => {
    const b = Buffer.alloc(RECORD_HEADER_BYTES);
    writeHeader(b, RecordKind.KEYFRAME, 0, 0, 0, 0);
    return b;
  })();

  /**
   * Starts a worker and resolves once its pipeline is PLAYING. Rejects with E_INVALID_ARGUMENT
   * for bad options and E_ENCODER when no encoder can run (the reason says why).
   */
  static async start(options: H264EncoderOptions): Promise<H264Encoder> {
    const { width, height, format } = options;
    for (const [name, v] of [
      ['width', width],
      ['height', height],
    ] as const) {
      if (!Number.isInteger(v) || v < 2 || v > MAX_SIDE || v % 2 !== 0)
        throw invalidArgument(name, `an even integer in 2..${MAX_SIDE} (4:2:0 H.264)`, v);
    }
    if (!FORMATS.includes(format)) throw invalidArgument('format', FORMATS.join(' | '), format);
    const fps = options.fps ?? 30;
    if (!Number.isInteger(fps) || fps < 1 || fps > 240) throw invalidArgument('fps', 'an integer in 1..240', fps);
    const bitrateKbps = options.bitrateKbps ?? 8000;
    if (!Number.isInteger(bitrateKbps) || bitrateKbps < 1 || bitrateKbps > 1_000_000)
      throw invalidArgument('bitrateKbps', 'an integer in 1..1000000', bitrateKbps);
    const maxInFlight = options.maxInFlight ?? 2;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > 16)
      throw invalidArgument('maxInFlight', 'an integer in 1..16', maxInFlight);
    const wanted = options.input ?? 'shared';
    if (wanted !== 'shared' && wanted !== 'copy') throw invalidArgument('input', "'shared' | 'copy'", wanted);
    const problem = wanted === 'shared' ? sharedInputProblem() : 'copy input was asked for';
    let element = options.element;
    let hardware: boolean;
    if (element !== undefined) {
      if (!H264_ENCODERS.includes(element)) throw invalidArgument('element', H264_ENCODERS.join(' | '), element);
      hardware = element !== 'x264enc';
    } else {
      const probe = await probeH264();
      if (!probe.encoder) throw new SurfaceLinkError('E_ENCODER', `no H.264 encoder available: ${probe.reason}`);
      element = probe.encoder;
      hardware = probe.hardware;
    }
    const encoder = new H264Encoder(element, hardware, width, height, format, fps, bitrateKbps, maxInFlight, problem);
    await encoder.startWorker();
    return encoder;
  }

  private constructor(
    element: H264EncoderElement,
    hardware: boolean,
    width: number,
    height: number,
    format: H264InputFormat,
    fps: number,
    bitrateKbps: number,
    maxInFlight: number,
    copyReason: string | null,
  ) {
    super();
    this.element = element;
    this.hardware = hardware;
    this.width = width;
    this.height = height;
    this.format = format;
    this.fps = fps;
    this.bitrate = bitrateKbps;
    this.maxInFlight = maxInFlight;
    this.input = copyReason === null ? 'shared' : 'copy';
    this.inputReason = copyReason ?? '';
    this.socketRx = copyReason === null ? Buffer.alloc(SOCKET_RX_BYTES) : null;
    this.fourcc = formatByName(format).fourcc;
    this.frameBytes = width * height * 4;
    this.stallTimer = setInterval(() => this.checkStall(), STALL_CHECK_MS);
    this.stallTimer.unref();
  }

  get bitrateKbps(): number {
    return this.bitrate;
  }

  /** Frames handed to the worker whose access units have not come back. */
  get inFlight(): number {
    return this.pending.length;
  }

  /** How the newest frame reached the worker: 'shared' (its memory read in place), 'copy', or null before any. */
  get lastInput(): H264Input | null {
    return this.lastInputValue;
  }

  /** Frames handed over as shared buffers, and as copies, since start (restarts included). */
  get framesShared(): number {
    return this.sharedCount;
  }
  get framesCopied(): number {
    return this.copiedCount;
  }

  /** Shared buffers this encoder holds now (handed over and not yet read, or queued). */
  get held(): number {
    return this.heldCount;
  }

  /**
   * The worker's encoder and videoconvert properties set away from their defaults, as gst-launch-1.0
   * takes them (`name=value`): what a bare pipeline must say to encode the same way. Null if unknown.
   */
  get settings(): { encoder: string[]; convert: string[] } | null {
    return this.readyInfo?.settings ?? null;
  }

  protected workerArgs(): string[] {
    return [
      'encode',
      '--width',
      String(this.width),
      '--height',
      String(this.height),
      '--format',
      this.format,
      '--fps',
      String(this.fps),
      '--bitrate',
      String(this.bitrate),
      '--element',
      this.element,
      '--input',
      this.input,
    ];
  }

  /** Shared input: a fresh socket pair per worker; this side becomes `channel`, the other its fd 3. */
  protected override workerSocket(): NativeFd | null {
    if (this.input !== 'shared') return null;
    this.channel?.close();
    this.channel = null;
    const api = posixChannels();
    const [mine, theirs] = api.socketpairFds();
    try {
      const channel = api.channelFromFd(mine);
      // Nothing comes back on it (answers use stdout); a dead worker is reported by its exit.
      channel.start(
        this.socketRx!,
        () => {},
        () => {},
        { stream: true, maxMessage: SOCKET_RX_BYTES, maxHandles: 0, maxQueuedBytes: SOCKET_QUEUE_BYTES },
      );
      channel.unref();
      this.channel = channel;
    } catch (error) {
      theirs.close();
      throw error;
    } finally {
      mine.close();
    }
    return theirs;
  }

  /**
   * Queues one frame (`height` rows of `stride` bytes; the first width × 4 bytes of each row are
   * pixels), tagged with the frame's sequence and presentMs. The pixels are copied before this
   * returns. Returns false, queueing nothing, when maxInFlight frames are pending or the worker is
   * being restarted: the caller keeps its newest frame and offers it again (latest wins).
   * Throws E_CLOSED after close(), E_INVALID_ARGUMENT for pixels that do not fit.
   */
  encode(pixels: Uint8Array, stride: number, sequence: number, presentMs: number): boolean {
    if (this.closed) throw new SurfaceLinkError('E_CLOSED', 'the H.264 encoder is closed');
    const rowBytes = this.width * 4;
    if (!(pixels instanceof Uint8Array)) throw invalidArgument('pixels', 'a Uint8Array', pixels);
    if (!Number.isInteger(stride) || stride < rowBytes)
      throw invalidArgument('stride', `an integer >= ${rowBytes}`, stride);
    const needed = stride * (this.height - 1) + rowBytes;
    if (pixels.length < needed)
      throw invalidArgument(
        'pixels',
        `at least ${needed} bytes (${this.height} rows of stride ${stride})`,
        `${pixels.length} bytes`,
      );
    checkTag(sequence, presentMs);
    if (!this.accepting || !this.worker || this.pending.length >= this.maxInFlight) return false;
    const slot = this.freeSlot();
    if (!slot) return false;

    const token = this.nextToken;
    this.nextToken = (this.nextToken + 1) >>> 0;
    writeHeader(slot.buf, RecordKind.FRAME, this.frameBytes, sequence, token, presentMs);
    const source = Buffer.from(pixels.buffer, pixels.byteOffset, pixels.byteLength);
    if (stride === rowBytes) {
      source.copy(slot.buf, RECORD_HEADER_BYTES, 0, this.frameBytes);
    } else {
      for (let y = 0, to = RECORD_HEADER_BYTES, from = 0; y < this.height; y++, to += rowBytes, from += stride)
        source.copy(slot.buf, to, from, from + rowBytes);
    }
    slot.token = token;
    slot.pending = true;
    slot.writing = true;
    const ticket = this.ticket(token);
    ticket.slot = slot;
    if (this.pending.length === 0) this.lastProgressMs = clockMs();
    this.pending.push(ticket);
    this.worker.write(slot.buf, slot.written);
    // A worker reading the socket learns there that this frame's pixels are on stdin.
    if (this.channel) {
      writeHeader(this.record, RecordKind.PIPED, 0, sequence, token, presentMs);
      this.sendSocket(RECORD_HEADER_BYTES);
    }
    this.lastInputValue = 'copy';
    this.copiedCount++;
    return true;
  }

  /**
   * Hands the worker one frame in a buffer it maps itself: no pixels are copied. The buffer is
   * held (source.hold()) until the worker has read it, then released; the first time a worker sees
   * a buffer it gets its fd. While maxInFlight frames are pending the frame is held as the next
   * one instead ('queued'; a frame queued before is released: latest wins) and 'dequeued' says
   * when it goes. 'refused' while the worker restarts or when the buffer is no longer live.
   * Throws E_CLOSED after close(), E_UNSUPPORTED when `input` is 'copy', E_INVALID_ARGUMENT for a
   * buffer of another size or format.
   */
  encodeShared(source: H264SharedBuffer, sequence: number, presentMs: number): H264SharedResult {
    if (this.closed) throw new SurfaceLinkError('E_CLOSED', 'the H.264 encoder is closed');
    if (this.input !== 'shared')
      throw new SurfaceLinkError('E_UNSUPPORTED', `this encoder takes copies only: ${this.inputReason}`);
    if (source.width !== this.width || source.height !== this.height || source.format !== this.format)
      throw invalidArgument(
        'source',
        `a ${this.width}x${this.height} ${this.format} buffer`,
        `${source.width}x${source.height} ${source.format}`,
      );
    checkTag(sequence, presentMs);
    if (!this.accepting || !this.worker || !source.live) return 'refused';
    this.take(source);
    if (this.pending.length >= this.maxInFlight) {
      const older = this.queued;
      this.queued = source;
      this.queuedSequence = sequence;
      this.queuedPresentMs = presentMs;
      if (older) this.letGo(older);
      return 'queued';
    }
    return this.sendShared(source, sequence, presentMs) ? 'sent' : 'refused';
  }

  /** The next frame encoded after this call is an IDR with SPS and PPS. */
  requestKeyframe(): void {
    if (this.closed) throw new SurfaceLinkError('E_CLOSED', 'the H.264 encoder is closed');
    // Between restarts there is nothing to ask: the replacement starts with a keyframe anyway.
    this.control(H264Encoder.KEYFRAME_RECORD);
  }

  /**
   * Changes the target bitrate from the next frame on (encoders that cannot change it live keep
   * theirs until a restart).
   */
  setBitrate(kbps: number): void {
    if (this.closed) throw new SurfaceLinkError('E_CLOSED', 'the H.264 encoder is closed');
    if (!Number.isInteger(kbps) || kbps < 1 || kbps > 1_000_000)
      throw invalidArgument('kbps', 'an integer in 1..1000000', kbps);
    this.bitrate = kbps;
    const record = Buffer.alloc(RECORD_HEADER_BYTES);
    writeHeader(record, RecordKind.BITRATE, 0, kbps, 0, 0);
    this.control(record);
  }

  override close(): void {
    clearInterval(this.stallTimer);
    super.close();
  }

  /** A record for the worker: through the socket when it reads one (keeps it in order with frames), else stdin. */
  private control(record: Buffer): void {
    if (!this.worker) return;
    if (this.channel) {
      record.copy(this.record, 0, 0, RECORD_HEADER_BYTES);
      this.sendSocket(RECORD_HEADER_BYTES);
    } else this.worker.write(record);
  }

  /**
   * Sends `this.record[0, length)` (with `fd` attached) on the socket. False if it could not: the
   * worker is gone (its exit restarts it) or stopped reading (the stall check restarts it).
   */
  private sendSocket(length: number, fd?: NativeFd): boolean {
    const channel = this.channel;
    if (!channel || channel.closed) return false;
    if (!fd) return channel.send(this.record, undefined, length) >= 0;
    this.fdList[0] = fd;
    const result = channel.send(this.record, this.fdList, length);
    this.fdList.length = 0;
    return result >= 0;
  }

  /** Sends a shared frame whose hold the caller has taken (take()); on failure lets it go. */
  private sendShared(source: H264SharedBuffer, sequence: number, presentMs: number): boolean {
    this.forgetRetired();
    const b = this.record;
    let id = this.known.get(source);
    if (id === undefined) {
      id = this.nextBufferId;
      this.nextBufferId = this.nextBufferId >= 0xffffffff ? 1 : this.nextBufferId + 1;
      writeHeader(b, RecordKind.BUFFER, BUFFER_INFO_BYTES, id, 0, 0);
      b.writeUInt32LE(source.width, 12);
      b.writeUInt32LE(source.height, 16);
      b.writeUInt32LE(source.size % 0x100000000, RECORD_HEADER_BYTES);
      b.writeUInt32LE(Math.floor(source.size / 0x100000000), RECORD_HEADER_BYTES + 4);
      b.writeUInt32LE(source.offset, RECORD_HEADER_BYTES + 8);
      b.writeUInt32LE(source.stride, RECORD_HEADER_BYTES + 12);
      b.writeUInt32LE(this.fourcc, RECORD_HEADER_BYTES + 16);
      b.writeUInt32LE(source.dmabuf ? BUFFER_FLAG_DMABUF : 0, RECORD_HEADER_BYTES + 20);
      if (!this.sendSocket(RECORD_HEADER_BYTES + BUFFER_INFO_BYTES, source.fd)) {
        this.letGo(source);
        return false;
      }
      this.known.set(source, id);
      this.knownList.push(source);
    }
    const token = this.nextToken;
    this.nextToken = (this.nextToken + 1) >>> 0;
    writeHeader(b, RecordKind.SHARED, SHARED_INFO_BYTES, sequence, token, presentMs);
    b.writeUInt32LE(id, RECORD_HEADER_BYTES);
    b.writeUInt32LE(0, RECORD_HEADER_BYTES + 4);
    if (!this.sendSocket(RECORD_HEADER_BYTES + SHARED_INFO_BYTES)) {
      this.letGo(source);
      return false;
    }
    const ticket = this.ticket(token);
    ticket.shared = source;
    if (this.pending.length === 0) this.lastProgressMs = clockMs();
    this.pending.push(ticket);
    this.lastInputValue = 'shared';
    this.sharedCount++;
    return true;
  }

  /** There is room again: the frame held as the next one goes now. */
  private sendQueued(): void {
    const source = this.queued;
    if (!source || this.pending.length >= this.maxInFlight || !this.accepting) return;
    this.queued = null;
    if (!source.live) return this.letGo(source);
    const sequence = this.queuedSequence;
    if (this.sendShared(source, sequence, this.queuedPresentMs)) this.emit('dequeued', sequence);
  }

  private take(source: H264SharedBuffer): void {
    source.hold();
    this.heldCount++;
  }

  private letGo(source: H264SharedBuffer): void {
    this.heldCount--;
    source.release();
  }

  /** FORGET for every buffer the worker has that is no longer live and not held here. */
  private forgetRetired(): void {
    const list = this.knownList;
    for (let i = list.length - 1; i >= 0; i--) {
      const source = list[i];
      if (source.live || this.holds(source)) continue;
      writeHeader(this.record, RecordKind.FORGET, 0, this.known.get(source)!, 0, 0);
      this.known.delete(source);
      list.splice(i, 1);
      this.sendSocket(RECORD_HEADER_BYTES);
    }
  }

  private holds(source: H264SharedBuffer): boolean {
    if (this.queued === source) return true;
    for (const t of this.pending) if (t.shared === source) return true;
    return false;
  }

  private ticket(token: number): Ticket {
    const t = this.spareTickets.pop() ?? { token: 0, slot: null, shared: null };
    t.token = token;
    return t;
  }

  /** A frame's access unit is back (or its worker is gone): its slot is free, its buffer let go. */
  private retire(t: Ticket): void {
    if (t.slot) t.slot.pending = false;
    if (t.shared) this.letGo(t.shared);
    t.slot = null;
    t.shared = null;
    this.spareTickets.push(t);
  }

  /** A slot neither being written nor awaiting its access unit; the pool grows to maxInFlight + 1. */
  private freeSlot(): InputSlot | null {
    for (const slot of this.slots) if (!slot.writing && !slot.pending) return slot;
    if (this.slots.length > this.maxInFlight) return null;
    const slot: InputSlot = {
      buf: Buffer.allocUnsafeSlow(RECORD_HEADER_BYTES + this.frameBytes),
      token: 0,
      writing: false,
      pending: false,
      written: () => {
        slot.writing = false;
      },
    };
    this.slots.push(slot);
    return slot;
  }

  protected onRecord(record: WorkerRecord): void {
    if (record.kind === RecordKind.DONE) {
      // The worker has read this shared frame, and (in order) every one before it.
      for (const t of this.pending) {
        if (!issuedBy(t.token, record.token)) break;
        if (t.shared) this.letGo(t.shared);
        t.shared = null;
      }
      this.forgetRetired();
      return;
    }
    if (record.kind !== RecordKind.AU) return;
    // Everything sent up to this frame has been read by the worker: those slots are free.
    while (this.pending.length > 0 && issuedBy(this.pending[0].token, record.token)) this.retire(this.pending.shift()!);
    const now = clockMs();
    this.lastProgressMs = now;
    this.sendQueued();
    this.emit('au', {
      data: record.payload.slice(),
      keyframe: (record.flags & FLAG_KEYFRAME) !== 0,
      sequence: record.sequence,
      presentMs: record.presentMs,
      encodedMs: now,
    });
  }

  protected onWorkerLost(): void {
    // Nothing the dead worker had is read any more: every hold is let go, every buffer forgotten.
    for (const t of this.pending) this.retire(t);
    this.pending.length = 0;
    const queued = this.queued;
    this.queued = null;
    if (queued) this.letGo(queued);
    // The dead worker's pipe may still hold writes of these buffers: new ones for the next.
    this.slots = [];
    // The next worker is told about each buffer again (BUFFER) as it is used.
    this.known.clear();
    this.knownList.length = 0;
    this.channel?.close();
    this.channel = null;
  }

  protected override onWorkerReplaced(): void {
    this.control(H264Encoder.KEYFRAME_RECORD);
  }

  private checkStall(): void {
    this.forgetRetired();
    if (this.pending.length === 0 || !this.accepting) return;
    const idle = clockMs() - this.lastProgressMs;
    if (idle > this.stallMs)
      this.restart(`stalled: no access unit for ${Math.round(idle)} ms with ${this.pending.length} frames pending`);
  }
}

function checkTag(sequence: number, presentMs: number): void {
  if (!Number.isInteger(sequence) || sequence < 0 || sequence > 0xffffffff)
    throw invalidArgument('sequence', 'a u32', sequence);
  if (!Number.isFinite(presentMs)) throw invalidArgument('presentMs', 'a finite number', presentMs);
}

// ---- decoder -------------------------------------------------------------------------------

/** Largest access unit decode() takes. */
const MAX_AU_BYTES = 64 * 1024 * 1024;

/**
 * An H.264 decoder (avdec_h264): access units in, BGRx frames out ('frame'), each tagged with
 * its access unit's sequence and presentMs. An access unit that yields no picture (a P-frame
 * without its reference) is reported as 'drop'; after 'drop' or 'restart' the stream needs a
 * keyframe.
 */
export class H264Decoder extends SupervisedWorker<H264DecoderEvents> {
  readonly maxInFlight: number;
  private readonly pending: number[] = [];
  private nextToken = 0;
  private readonly frame: H264DecodedFrame = {
    pixels: new Uint8Array(0),
    width: 0,
    height: 0,
    sequence: 0,
    presentMs: 0,
    decodedMs: 0,
  };

  /** Starts a worker; rejects with E_ENCODER when GStreamer or avdec_h264 cannot run. */
  static async start(options: { maxInFlight?: number } = {}): Promise<H264Decoder> {
    const maxInFlight = options.maxInFlight ?? 16;
    if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > 256)
      throw invalidArgument('maxInFlight', 'an integer in 1..256', maxInFlight);
    const decoder = new H264Decoder(maxInFlight);
    await decoder.startWorker();
    return decoder;
  }

  private constructor(maxInFlight: number) {
    super();
    this.maxInFlight = maxInFlight;
  }

  /** Access units handed to the worker that have given neither a frame nor a drop yet. */
  get inFlight(): number {
    return this.pending.length;
  }

  protected workerArgs(): string[] {
    return ['decode'];
  }

  /**
   * Queues one access unit (Annex B); the bytes are copied before this returns. Returns false,
   * queueing nothing, while the worker is restarting or maxInFlight units are pending: the
   * caller must then resume at a keyframe. Throws E_CLOSED after close(), E_INVALID_ARGUMENT
   * for an empty or oversized unit.
   */
  decode(au: Uint8Array, sequence: number, presentMs: number): boolean {
    if (this.closed) throw new SurfaceLinkError('E_CLOSED', 'the H.264 decoder is closed');
    if (!(au instanceof Uint8Array) || au.length === 0 || au.length > MAX_AU_BYTES)
      throw invalidArgument(
        'au',
        `a non-empty Uint8Array of at most ${MAX_AU_BYTES} bytes`,
        au instanceof Uint8Array ? `${au.length} bytes` : au,
      );
    if (!Number.isInteger(sequence) || sequence < 0 || sequence > 0xffffffff)
      throw invalidArgument('sequence', 'a u32', sequence);
    if (!Number.isFinite(presentMs)) throw invalidArgument('presentMs', 'a finite number', presentMs);
    if (!this.accepting || !this.worker || this.pending.length >= this.maxInFlight) return false;
    const token = this.nextToken;
    this.nextToken = (this.nextToken + 1) >>> 0;
    // One record per unit: the caller may reuse `au` as soon as this returns.
    const record = Buffer.allocUnsafe(RECORD_HEADER_BYTES + au.length);
    writeHeader(record, RecordKind.AU, au.length, sequence, token, presentMs);
    record.set(au, RECORD_HEADER_BYTES);
    this.pending.push(token);
    this.worker.write(record);
    return true;
  }

  protected onRecord(record: WorkerRecord): void {
    if (record.kind !== RecordKind.FRAME && record.kind !== RecordKind.DROP) return;
    while (this.pending.length > 0 && issuedBy(this.pending[0], record.token)) this.pending.shift();
    if (record.kind === RecordKind.DROP) {
      this.emit('drop', { sequence: record.sequence, presentMs: record.presentMs });
      return;
    }
    const f = this.frame;
    f.pixels = record.payload;
    f.width = record.width;
    f.height = record.height;
    f.sequence = record.sequence;
    f.presentMs = record.presentMs;
    f.decodedMs = clockMs();
    this.emit('frame', f);
  }

  protected onWorkerLost(): void {
    this.pending.length = 0;
  }
}
