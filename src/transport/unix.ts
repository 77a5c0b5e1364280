/**
 * The unix-socket transport: a connected channel carrying messages + fds, plus listening,
 * connecting and the default socket location. Backends never see sockets; this layer
 * never interprets pixels.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SurfaceLinkError } from '../errors.js';
import { loadNative, type NativeChannel, type NativeFd, type SendResult } from '../native.js';
import { DEFAULT_MAX_MESSAGE, MAX_HANDLES } from '../protocol/constants.js';
import { MessageWriter } from '../protocol/codec.js';

export interface MessageHandler {
  /** One whole message at view[start, start+length); valid only during the call. */
  onMessage(view: DataView, start: number, length: number, fds: NativeFd[] | undefined): void;
  /** The channel failed or the peer went away; reading has stopped. */
  onChannelError(error: SurfaceLinkError): void;
}

export interface ChannelOptions {
  maxMessage?: number;
  maxHandles?: number;
  maxQueuedBytes?: number;
}

/** A started channel with its own receive buffer and encode buffer. */
export class MessageChannel {
  readonly writer: MessageWriter;
  private readonly rx: Buffer;
  private readonly view: DataView;

  constructor(
    private readonly native: NativeChannel,
    handler: MessageHandler,
    options: ChannelOptions = {},
  ) {
    const maxMessage = options.maxMessage ?? DEFAULT_MAX_MESSAGE;
    this.rx = Buffer.allocUnsafeSlow(maxMessage * 2);
    this.view = new DataView(this.rx.buffer, this.rx.byteOffset, this.rx.byteLength);
    this.writer = new MessageWriter(maxMessage);
    native.start(
      this.rx,
      (offset, length, fds) => handler.onMessage(this.view, offset, length, fds),
      (code, message, errno) =>
        handler.onChannelError(new SurfaceLinkError(code as SurfaceLinkError['code'], message, errno ? { errno } : undefined)),
      { maxMessage, maxHandles: options.maxHandles ?? MAX_HANDLES, maxQueuedBytes: options.maxQueuedBytes ?? 4 * 1024 * 1024 },
    );
  }

  get peer(): { pid: number; uid: number; gid: number } | null {
    return this.native.peer;
  }

  get closed(): boolean {
    return this.native.closed;
  }

  /** Sends the message just encoded into `writer` (its length as returned by the encoder). */
  send(length: number, fds?: NativeFd[]): SendResult {
    return this.native.send(this.writer.bytes, fds, length);
  }

  close(): void {
    this.native.close();
  }

  ref(): void {
    this.native.ref();
  }

  unref(): void {
    this.native.unref();
  }
}

/** Directory for default sockets: $XDG_RUNTIME_DIR/surfacelink, else a 0700 dir in the temp dir. */
export function defaultSocketDir(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && fs.existsSync(runtime)) return path.join(runtime, 'surfacelink');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return path.join(os.tmpdir(), `surfacelink-${uid}`);
}

export function defaultSocketPath(name = 'default'): string {
  return path.join(defaultSocketDir(), `${name}.sock`);
}

/** Creates `dir` (0700) if needed and refuses one that another user owns or others can write. */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0)
    throw new SurfaceLinkError('E_PERMISSION', `socket directory ${dir} must be a directory owned by uid ${uid} and not writable by others`);
}

/** Binds and listens; replaces a stale socket file (nobody listening) but never a live one. */
export function listenUnix(socketPath: string, backlog = 64) {
  const addon = loadNative();
  try {
    return addon.listen(socketPath, backlog);
  } catch (error) {
    const e = error as { errnoName?: string };
    if (e.errnoName !== 'EADDRINUSE') throw SurfaceLinkError.fromNative(error);
  }
  let live = false;
  try {
    addon.connect(socketPath).close();
    live = true;
  } catch {
    /* nobody is listening: the file is stale */
  }
  if (live) throw new SurfaceLinkError('E_ADDRESS_IN_USE', `another server is already listening on ${socketPath}`);
  if (!fs.lstatSync(socketPath).isSocket())
    throw new SurfaceLinkError('E_ADDRESS_IN_USE', `${socketPath} exists and is not a socket; not removing it`);
  fs.unlinkSync(socketPath);
  try {
    return addon.listen(socketPath, backlog);
  } catch (error) {
    throw SurfaceLinkError.fromNative(error);
  }
}

export function connectUnix(socketPath: string): NativeChannel {
  try {
    return loadNative().connect(socketPath);
  } catch (error) {
    const e = error as { errnoName?: string; message?: string };
    const hint =
      e.errnoName === 'ENOENT' ? 'no server socket there (is the server running?)'
      : e.errnoName === 'ECONNREFUSED' ? 'the socket exists but no server is listening'
      : e.errnoName === 'EACCES' ? 'permission denied (the socket belongs to another user)'
      : e.errnoName === 'EAGAIN' ? 'the server is not accepting connections fast enough; retry'
      : e.message ?? String(error);
    throw new SurfaceLinkError('E_CONNECT', `cannot connect to ${socketPath}: ${hint}`, { cause: error });
  }
}
