/**
 * The GStreamer worker process (gst/surfacelink_gst.py) seen from Node: spawning it, its
 * record framing on stdin/stdout (documented at the top of the .py) and, for shared input, on
 * a unix socket given to it as fd 3, and the restart policy the encoder and decoder share.
 * Internal to src/stream.
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SurfaceLinkError } from '../errors.js';
import type { NativeFd } from '../native/index.js';
import { clockMs } from './protocol.js';

export const RECORD_HEADER_BYTES = 32;

/** Record kinds, as in the worker. */
export const RecordKind = {
  FRAME: 1,
  AU: 2,
  KEYFRAME: 3,
  BITRATE: 4,
  QUIT: 5,
  /** Shared input (socket): a buffer's fd and layout, once per buffer per worker. */
  BUFFER: 6,
  /** Shared input: the worker drops a buffer (unmaps it, closes its fd). */
  FORGET: 7,
  /** Shared input: a frame in a buffer the worker has. */
  SHARED: 8,
  /** Shared input: this frame's pixels were copied after all; its FRAME record follows on stdin. */
  PIPED: 9,
  READY: 16,
  DROP: 17,
  ERROR: 18,
  /** The worker has finished reading a shared frame's memory. */
  DONE: 19,
} as const;

/** Payload bytes of a BUFFER record (u64 size, u32 offset, stride, fourcc, flags) and of a SHARED one (u32 id, 0). */
export const BUFFER_INFO_BYTES = 24;
export const SHARED_INFO_BYTES = 8;
/** BUFFER flags: the fd is a dma-buf (else a memfd). */
export const BUFFER_FLAG_DMABUF = 1;

export const FLAG_KEYFRAME = 1;

/** Largest record payload either side accepts: one 16384×16384 RGBA frame. */
const MAX_PAYLOAD = 16384 * 16384 * 4;
const STDERR_TAIL_BYTES = 4096;

/** The worker script: gst/ at the package root, beside src/ and dist/. */
export const WORKER_SCRIPT = path.resolve(__dirname, '..', '..', 'gst', 'surfacelink_gst.py');

/** The Python that runs the worker: $SURFACELINK_PYTHON, else the system one (which has gi). */
export function workerPython(): string {
  return process.env.SURFACELINK_PYTHON || (process.platform === 'win32' ? 'python' : '/usr/bin/python3');
}

/** Writes a record header into `target` at `offset`. */
export function writeHeader(
  target: Buffer,
  kind: number,
  length: number,
  sequence: number,
  token: number,
  presentMs: number,
  offset = 0,
): void {
  target.writeUInt8(kind, offset);
  target.writeUInt8(0, offset + 1);
  target.writeUInt16LE(0, offset + 2);
  target.writeUInt32LE(length, offset + 4);
  target.writeUInt32LE(sequence >>> 0, offset + 8);
  target.writeUInt32LE(0, offset + 12);
  target.writeUInt32LE(0, offset + 16);
  target.writeUInt32LE(token >>> 0, offset + 20);
  target.writeDoubleLE(presentMs, offset + 24);
}

/** One record out of the worker. `payload` is a view into the reader's buffer: valid during the callback only. */
export interface WorkerRecord {
  kind: number;
  flags: number;
  sequence: number;
  width: number;
  height: number;
  token: number;
  presentMs: number;
  payload: Uint8Array;
}

/**
 * Reassembles records from stdout chunks, which split records anywhere. One growable buffer
 * is reused; the record object handed to `onRecord` is reused too.
 */
export class RecordReader {
  private buf = Buffer.allocUnsafeSlow(64 * 1024);
  private start = 0;
  private end = 0;
  private readonly record: WorkerRecord = {
    kind: 0,
    flags: 0,
    sequence: 0,
    width: 0,
    height: 0,
    token: 0,
    presentMs: 0,
    payload: new Uint8Array(0),
  };

  constructor(
    private readonly onRecord: (record: WorkerRecord) => void,
    private readonly onMalformed: (message: string) => void,
  ) {}

  push(chunk: Buffer): void {
    this.reserve(chunk.length);
    chunk.copy(this.buf, this.end);
    this.end += chunk.length;
    while (this.end - this.start >= RECORD_HEADER_BYTES) {
      const h = this.start;
      const length = this.buf.readUInt32LE(h + 4);
      if (length > MAX_PAYLOAD) {
        this.onMalformed(`worker sent a record of ${length} bytes`);
        this.start = this.end = 0;
        return;
      }
      const total = RECORD_HEADER_BYTES + length;
      if (this.end - h < total) {
        this.reserve(total - (this.end - h));
        break;
      }
      const r = this.record;
      r.kind = this.buf.readUInt8(h);
      r.flags = this.buf.readUInt8(h + 1);
      r.sequence = this.buf.readUInt32LE(h + 8);
      r.width = this.buf.readUInt32LE(h + 12);
      r.height = this.buf.readUInt32LE(h + 16);
      r.token = this.buf.readUInt32LE(h + 20);
      r.presentMs = this.buf.readDoubleLE(h + 24);
      // A plain Uint8Array, not a Buffer: a listener's .slice() must copy (Buffer#slice is a view).
      r.payload = new Uint8Array(this.buf.buffer, this.buf.byteOffset + h + RECORD_HEADER_BYTES, length);
      this.start += total;
      this.onRecord(r);
    }
    if (this.start === this.end) this.start = this.end = 0;
  }

  /** Room for `more` bytes after `end`: compacts first, grows (doubling) only when that is not enough. */
  private reserve(more: number): void {
    if (this.end + more <= this.buf.length) return;
    const live = this.end - this.start;
    if (live + more <= this.buf.length) {
      this.buf.copyWithin(0, this.start, this.end);
    } else {
      let size = this.buf.length;
      while (size < live + more) size *= 2;
      const grown = Buffer.allocUnsafeSlow(size);
      this.buf.copy(grown, 0, this.start, this.end);
      this.buf = grown;
    }
    this.start = 0;
    this.end = live;
  }
}

export interface WorkerReady {
  element: string;
  hardware?: boolean;
  gstreamer?: string;
  /** How frames reach it: 'shared' (the socket on fd 3) or 'copy' (stdin only). */
  input?: string;
  /** Properties set away from their defaults, as gst-launch-1.0 takes them ("name=value"). */
  settings?: { encoder: string[]; convert: string[] };
}

/**
 * One worker process. `ready` settles when the pipeline is PLAYING (or rejects with
 * E_ENCODER and the worker's reason); `onExit` fires once, with a reason, however it ends.
 */
export class GstWorkerProcess {
  readonly child: ChildProcessWithoutNullStreams;
  readonly ready: Promise<WorkerReady>;
  private stderrTail = '';
  private errorMessage: string | null = null;
  private exited = false;
  private settleReady!: (value: WorkerReady | SurfaceLinkError) => void;
  onRecord: (record: WorkerRecord) => void = () => {};
  onExit: (reason: string) => void = () => {};

  /**
   * `socket`: one end of a unix socket pair, given to the worker as its fd 3 (shared input); the
   * caller keeps its own NativeFd and closes it once this returns.
   */
  constructor(args: string[], readyTimeoutMs = 20000, socket?: NativeFd) {
    this.ready = new Promise<WorkerReady>((resolve, reject) => {
      this.settleReady = (v) => (v instanceof SurfaceLinkError ? reject(v) : resolve(v));
    });
    // Until start() awaits it, a failed start must not surface as an unhandled rejection.
    this.ready.catch(() => {});
    const python = workerPython();
    // A close-on-exec duplicate that spawn() dup2()s to the child's fd 3 (which clears the flag there).
    const fd3 = socket ? socket.dupRaw() : -1;
    try {
      this.child = spawn(python, [WORKER_SCRIPT, ...args], {
        stdio: fd3 >= 0 ? ['pipe', 'pipe', 'pipe', fd3] : ['pipe', 'pipe', 'pipe'],
        env: process.env,
      }) as ChildProcessWithoutNullStreams;
    } finally {
      if (fd3 >= 0) fs.closeSync(fd3);
    }
    const reader = new RecordReader(
      (r) => this.dispatch(r),
      (message) => this.fail(message),
    );
    this.child.stdout.on('data', (chunk: Buffer) => reader.push(chunk));
    this.child.stderr.on('data', (chunk: Buffer) => {
      this.stderrTail = (this.stderrTail + chunk.toString()).slice(-STDERR_TAIL_BYTES);
    });
    // EPIPE when the worker dies with writes queued: the exit handler reports the death.
    this.child.stdin.on('error', () => {});
    this.child.on('error', (error: NodeJS.ErrnoException) => {
      const reason =
        error.code === 'ENOENT'
          ? `cannot run ${python}: not found (set SURFACELINK_PYTHON)`
          : `cannot run ${python}: ${error.message}`;
      this.finish(reason);
    });
    // 'close', not 'exit': the error record a dying worker writes last must be read first.
    this.child.on('close', (code, signal) => {
      const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
      const detail = this.errorMessage ?? this.stderrTail.trim().split('\n').slice(-3).join(' | ');
      this.finish(`GStreamer worker ${how}${detail ? `: ${detail}` : ''}`);
    });
    const timer = setTimeout(() => {
      this.fail(`GStreamer worker not ready within ${readyTimeoutMs} ms`);
    }, readyTimeoutMs);
    timer.unref();
    this.ready.then(
      () => clearTimeout(timer),
      () => clearTimeout(timer),
    );
  }

  get pid(): number | null {
    return this.exited ? null : (this.child.pid ?? null);
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** Queues bytes for the worker; `done` runs once the kernel has them (or the write failed). */
  write(data: Uint8Array, done?: () => void): void {
    if (this.exited || !this.child.stdin.writable) {
      done?.();
      return;
    }
    this.child.stdin.write(data, done);
  }

  /** Ends the worker now (nothing it holds is worth waiting for). Idempotent. */
  kill(): void {
    if (this.exited) return;
    this.child.stdin.destroy();
    this.child.kill('SIGKILL');
  }

  private dispatch(record: WorkerRecord): void {
    if (record.kind === RecordKind.READY) {
      let info: WorkerReady;
      try {
        info = JSON.parse(Buffer.from(record.payload).toString()) as WorkerReady;
      } catch {
        info = { element: 'unknown' };
      }
      this.settleReady(info);
    } else if (record.kind === RecordKind.ERROR) {
      try {
        this.errorMessage = String(
          (JSON.parse(Buffer.from(record.payload).toString()) as { message?: unknown }).message,
        );
      } catch {
        this.errorMessage = 'unreadable error record';
      }
    } else {
      this.onRecord(record);
    }
  }

  private fail(message: string): void {
    this.errorMessage ??= message;
    this.kill();
  }

  private finish(reason: string): void {
    if (this.exited) return;
    this.exited = true;
    this.settleReady(new SurfaceLinkError('E_ENCODER', reason));
    this.onExit(reason);
  }
}

/**
 * Restart policy: a worker may die `maxDeaths - 1` times within `windowMs` and be restarted
 * (after 100 ms, 200 ms, … backoff); the next death in the window is final.
 */
export class RestartPolicy {
  private readonly deaths: number[] = [];

  constructor(
    readonly maxDeaths = 3,
    readonly windowMs = 10000,
  ) {}

  /** Records a death; returns the backoff before restarting, or -1 when restarts are exhausted. */
  death(now = clockMs()): number {
    this.deaths.push(now);
    while (this.deaths.length > 0 && now - this.deaths[0] > this.windowMs) this.deaths.shift();
    if (this.deaths.length >= this.maxDeaths) return -1;
    return 100 * 2 ** (this.deaths.length - 1);
  }
}
