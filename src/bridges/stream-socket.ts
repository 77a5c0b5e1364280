/**
 * ByteStream: a unix stream socket that carries bytes and fds (SCM_RIGHTS) for protocols that
 * frame their own messages — D-Bus and QMP, which the QEMU bridge speaks. It is the native
 * channel (native/posix/channel.cc) in byte-stream mode: driven by Node's event loop, never
 * blocking; received fds are NativeFds owned by the receiver.
 */
import { EventEmitter } from 'eventemitter3';
import { SurfaceLinkError, type ErrorCodeName } from '../errors.js';
import { posixChannels, type NativeChannel, type NativeFd } from '../native/index.js';

/** Events of a ByteStream. */
export interface ByteStreamEvents {
  /** Bytes that arrived, valid only during the call (copy what you keep), with the fds that came with them (yours). */
  data: [chunk: Uint8Array, fds: NativeFd[] | undefined];
  /** The stream ended: the peer closed it or it failed. Nothing arrives afterwards. */
  close: [error: SurfaceLinkError];
}

/** Receive buffer size: the most one read delivers (a message may span several reads). */
const CHUNK = 256 * 1024;

/** A connected byte stream with fd passing. Close it once; close() is idempotent. */
export class ByteStream extends EventEmitter<ByteStreamEvents> {
  private closedValue = false;

  /** @internal Use connectStream() or streamFromFd(). */
  constructor(
    private readonly native: NativeChannel,
    /** Most bytes queued for a slow peer before write() fails (E_BACKPRESSURE). */
    maxQueuedBytes = 64 * 1024 * 1024,
  ) {
    super();
    const rx = Buffer.allocUnsafeSlow(CHUNK);
    native.start(
      rx,
      (offset, length, fds) => this.emit('data', rx.subarray(offset, offset + length), fds),
      (code, message, errno) =>
        this.end(new SurfaceLinkError(code as ErrorCodeName, message, errno ? { errno } : undefined)),
      { stream: true, maxMessage: CHUNK, maxHandles: 16, maxQueuedBytes },
    );
  }

  /** The peer's pid and uid (SO_PEERCRED), or null where the OS does not say. */
  get peer(): { pid: number; uid: number; gid: number } | null {
    return this.native.peer;
  }

  get closed(): boolean {
    return this.closedValue;
  }

  /**
   * Queues `bytes` (copied) with `fds` attached to their first byte; the caller keeps its fds.
   * Throws E_CLOSED after close, E_BACKPRESSURE when the peer has stopped reading.
   */
  write(bytes: Uint8Array, fds?: readonly NativeFd[]): void {
    if (this.closedValue) throw new SurfaceLinkError('E_CLOSED', 'the stream is closed');
    const r = this.native.send(bytes, fds && fds.length > 0 ? fds : undefined, bytes.byteLength);
    if (r === -2) throw new SurfaceLinkError('E_BACKPRESSURE', 'the peer stopped reading and the send queue is full');
    if (r === -1) throw new SurfaceLinkError('E_PEER_CLOSED', 'the peer closed the connection');
  }

  /** Closes the socket. Idempotent; 'close' is emitted once (E_CLOSED when closed here). */
  close(): void {
    this.end(new SurfaceLinkError('E_CLOSED', 'closed by this side'));
  }

  private end(error: SurfaceLinkError): void {
    if (this.closedValue) return;
    this.closedValue = true;
    this.native.close();
    this.emit('close', error);
  }
}

/** Connects to a unix socket path. E_CONNECT with the reason when nothing listens there. */
export function connectStream(path: string): ByteStream {
  let native: NativeChannel;
  try {
    native = posixChannels().connect(path);
  } catch (error) {
    const e = error as { errnoName?: string; message?: string; code?: string };
    if (e.code === 'E_UNSUPPORTED' || e.code === 'E_NATIVE_UNAVAILABLE') throw error;
    throw new SurfaceLinkError('E_CONNECT', `cannot connect to ${path}: ${e.message ?? String(error)}`, {
      cause: error,
    });
  }
  return new ByteStream(native);
}

/** A ByteStream over a duplicate of a connected socket fd (the caller keeps and closes its own). */
export function streamFromFd(fd: NativeFd): ByteStream {
  return new ByteStream(posixChannels().channelFromFd(fd));
}

/** A connected socket pair as fds: keep one end (streamFromFd), give the other to a peer process. */
export function socketPair(): [NativeFd, NativeFd] {
  return posixChannels().socketpairFds();
}
