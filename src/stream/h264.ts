/**
 * H.264 for remote streams, through GStreamer: an encoder per remote client (the
 * StreamServer feeds it the frames it taps) and a decoder for the Node remote viewer.
 *
 * Each runs as a worker process (gst/surfacelink_gst.py under Python + PyGObject), fed
 * records over stdin and answering over stdout. A worker that dies or stalls is restarted
 * with backoff and the stream resumes at a keyframe; three deaths within 10 s end it with
 * E_ENCODER. Nothing here blocks the event loop: frames are copied into pooled buffers and
 * written asynchronously, and a full pipeline refuses frames rather than queueing them.
 */
import { EventEmitter } from 'eventemitter3';
import { SurfaceLinkError, invalidArgument } from '../errors.js';
import {
  FLAG_KEYFRAME,
  GstWorkerProcess,
  RECORD_HEADER_BYTES,
  RecordKind,
  RestartPolicy,
  writeHeader,
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

  protected abstract workerArgs(): string[];
  protected abstract onRecord(record: WorkerRecord): void;
  /** The worker went away: forget what was sent to it. */
  protected abstract onWorkerLost(): void;
  /** A replacement worker is ready (the encoder asks it for a keyframe). */
  protected onWorkerReplaced(): void {}

  get closed(): boolean {
    return this.isClosed;
  }

  /** The worker's process id, or null while there is none (restarting, closed). */
  get pid(): number | null {
    return this.worker?.pid ?? null;
  }

  /** Starts the first worker; rejects with E_ENCODER (and closes) if it does not get ready. */
  protected async startWorker(): Promise<void> {
    const worker = this.spawnWorker();
    try {
      await worker.ready;
    } catch (error) {
      this.close();
      throw error;
    }
    this.started = true;
    this.accepting = true;
  }

  private spawnWorker(): GstWorkerProcess {
    const worker = new GstWorkerProcess(this.workerArgs());
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
      const worker = this.spawnWorker();
      worker.ready.then(
        () => {
          if (this.worker !== worker || this.isClosed) return;
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

/**
 * One H.264 encoder: raw frames in, access units out ('au'), one per frame, in order, no
 * B-frames. The first access unit, the first after a restart and the first after
 * requestKeyframe() are IDRs carrying SPS and PPS.
 */
export class H264Encoder extends SupervisedWorker<H264EncoderEvents> {
  readonly element: H264EncoderElement;
  readonly hardware: boolean;
  readonly width: number;
  readonly height: number;
  readonly format: H264InputFormat;
  readonly fps: number;
  readonly maxInFlight: number;
  /** A worker with frames pending and no output for this long is restarted. */
  stallMs = 5000;
  private bitrate: number;
  private readonly frameBytes: number;
  private slots: InputSlot[] = [];
  private readonly pending: InputSlot[] = [];
  private nextToken = 0;
  private lastProgressMs = 0;
  private readonly stallTimer: NodeJS.Timeout;
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
    const encoder = new H264Encoder(element, hardware, width, height, format, fps, bitrateKbps, maxInFlight);
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
    ];
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
    if (!Number.isInteger(sequence) || sequence < 0 || sequence > 0xffffffff)
      throw invalidArgument('sequence', 'a u32', sequence);
    if (!Number.isFinite(presentMs)) throw invalidArgument('presentMs', 'a finite number', presentMs);
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
    if (this.pending.length === 0) this.lastProgressMs = clockMs();
    this.pending.push(slot);
    this.worker.write(slot.buf, slot.written);
    return true;
  }

  /** The next frame encoded after this call is an IDR with SPS and PPS. */
  requestKeyframe(): void {
    if (this.closed) throw new SurfaceLinkError('E_CLOSED', 'the H.264 encoder is closed');
    // Between restarts there is nothing to ask: the replacement starts with a keyframe anyway.
    this.worker?.write(H264Encoder.KEYFRAME_RECORD);
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
    this.worker?.write(record);
  }

  override close(): void {
    clearInterval(this.stallTimer);
    super.close();
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
    if (record.kind !== RecordKind.AU) return;
    // Everything sent up to this frame has been read by the worker: those slots are free.
    while (this.pending.length > 0 && issuedBy(this.pending[0].token, record.token))
      this.pending.shift()!.pending = false;
    const now = clockMs();
    this.lastProgressMs = now;
    this.emit('au', {
      data: record.payload.slice(),
      keyframe: (record.flags & FLAG_KEYFRAME) !== 0,
      sequence: record.sequence,
      presentMs: record.presentMs,
      encodedMs: now,
    });
  }

  protected onWorkerLost(): void {
    for (const slot of this.pending) slot.pending = false;
    this.pending.length = 0;
    // The dead worker's pipe may still hold writes of these buffers: new ones for the next.
    this.slots = [];
  }

  protected override onWorkerReplaced(): void {
    this.worker?.write(H264Encoder.KEYFRAME_RECORD);
  }

  private checkStall(): void {
    if (this.pending.length === 0 || !this.accepting) return;
    const idle = clockMs() - this.lastProgressMs;
    if (idle > this.stallMs)
      this.restart(`stalled: no access unit for ${Math.round(idle)} ms with ${this.pending.length} frames pending`);
  }
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
