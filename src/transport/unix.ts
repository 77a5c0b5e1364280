/**
 * The unix-socket transport (Linux and macOS): an AF_UNIX stream socket whose messages carry fds
 * as SCM_RIGHTS (native/posix/channel.cc), the default socket location, the socket file's mode,
 * and the peer-credential policy (SO_PEERCRED on Linux; getpeereid and LOCAL_PEERPID on macOS).
 * Mechanisms never see sockets; this file never interprets pixels.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SurfaceLinkError } from '../errors.js';
import { fdHandle, handleFd } from '../handles.js';
import {
  posixChannels,
  probeNative,
  type NativeChannel,
  type NativeFd,
  type NativeListener,
  type PosixChannelApi,
} from '../native/index.js';
import { FramedChannel } from './channel.js';
import type {
  AccessPolicy,
  ConnectOptions,
  ListenOptions,
  Listener,
  MessageChannel,
  PeerIdentity,
  Transport,
} from './types.js';

/** sun_path is 108 bytes with its NUL on Linux, 104 on macOS. */
const MAX_SOCKET_PATH = process.platform === 'darwin' ? 103 : 107;
/**
 * Connections that may wait to be accepted: enough for hundreds of clients connecting at once while
 * the server's loop is busy. The kernel caps it at net.core.somaxconn (4096 by default since Linux 5.4).
 */
export const DEFAULT_LISTEN_BACKLOG = 4096;

const ownUid = (): number => (typeof process.getuid === 'function' ? process.getuid() : -1);

/** Directory for default sockets: $XDG_RUNTIME_DIR/surfacelink, else a 0700 dir in the temp dir. */
export function defaultSocketDir(): string {
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime && fs.existsSync(runtime)) return path.join(runtime, 'surfacelink');
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0;
  return path.join(os.tmpdir(), `surfacelink-${uid}`);
}

/** `<defaultSocketDir()>/<name>.sock`: where a server listens when given no path, and where clients look. */
export function defaultSocketPath(name = 'default'): string {
  return path.join(defaultSocketDir(), `${name}.sock`);
}

/** Creates `dir` (0700) if needed and refuses one that another user owns or others can write. */
export function ensurePrivateDir(dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  const uid = typeof process.getuid === 'function' ? process.getuid() : st.uid;
  if (!st.isDirectory() || st.uid !== uid || (st.mode & 0o022) !== 0)
    throw new SurfaceLinkError(
      'E_PERMISSION',
      `socket directory ${dir} must be a directory owned by uid ${uid} and not writable by others`,
    );
}

function peerOf(native: NativeChannel): PeerIdentity {
  const p = native.peer;
  const uid = p?.uid ?? -1;
  return { pid: p?.pid ?? -1, uid, user: `uid ${uid}`, ...(p?.auditToken ? { auditToken: p.auditToken } : {}) };
}

function frame(native: NativeChannel): FramedChannel<NativeFd> {
  return new FramedChannel<NativeFd>(native, peerOf(native), fdHandle, (h) =>
    handleFd(h, 'a handle sent over a unix socket'),
  );
}

/** Why a bind/listen on `socketPath` failed, in words that say what to do. */
function listenError(error: unknown, socketPath: string): SurfaceLinkError {
  const e = error as { errnoName?: string; errno?: number; code?: string; message?: string };
  const dir = path.dirname(socketPath);
  const why =
    e.errnoName === 'ENOENT'
      ? `the directory ${dir} does not exist`
      : e.errnoName === 'EACCES' || e.errnoName === 'EPERM'
        ? `permission denied: this user cannot create files in ${dir}`
        : e.errnoName === 'ENOTDIR'
          ? `${dir} is not a directory`
          : e.errnoName === 'EROFS'
            ? `${dir} is on a read-only file system`
            : null;
  if (why === null) return SurfaceLinkError.fromNative(error);
  return new SurfaceLinkError('E_SYSTEM', `cannot listen on ${socketPath}: ${why}`, {
    syscall: 'bind',
    errno: e.errno,
    cause: error,
  });
}

/** Binds and listens; replaces a stale socket file (nobody listening) but never a live one. */
function bindSocket(addon: PosixChannelApi, socketPath: string, backlog: number): NativeListener {
  if (Buffer.byteLength(socketPath) > MAX_SOCKET_PATH)
    throw new SurfaceLinkError(
      'E_INVALID_ARGUMENT',
      `socket path ${socketPath} is ${Buffer.byteLength(socketPath)} bytes; unix sockets allow at ` +
        `most ${MAX_SOCKET_PATH}`,
    );
  try {
    return addon.listen(socketPath, backlog);
  } catch (error) {
    if ((error as { errnoName?: string }).errnoName !== 'EADDRINUSE') throw listenError(error, socketPath);
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
    throw listenError(error, socketPath);
  }
}

class UnixListener implements Listener {
  private closed = false;
  private readonly allowed: ReadonlySet<number>;

  constructor(
    private readonly native: NativeListener,
    readonly address: string,
    policy: AccessPolicy,
  ) {
    this.allowed = new Set([ownUid(), ...(policy.allowUids ?? [])]);
  }

  start(
    onChannel: (channel: MessageChannel, refusal: string | null) => void,
    onError: (message: string) => void,
  ): void {
    const accept = (native: NativeChannel | null, code?: string, message?: string): void => {
      if (this.closed) return native?.close();
      if (native) {
        const channel = frame(native);
        const uid = channel.peer.uid;
        onChannel(
          channel,
          this.allowed.has(uid) ? null : `uid ${uid} may not connect (allowed: ${[...this.allowed].join(', ')})`,
        );
        return;
      }
      // The listening socket failed (e.g. EMFILE): try again shortly rather than stop serving.
      onError(`accepting clients failed (${code}): ${message}; retrying in 100 ms`);
      setTimeout(() => !this.closed && this.native.start(accept), 100).unref();
    };
    this.native.start(accept);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.native.close();
    try {
      fs.unlinkSync(this.address);
    } catch {
      /* already gone */
    }
  }
}

export const unixTransport: Transport = {
  name: 'unix',

  probe() {
    const { addon, error } = probeNative();
    if (!addon)
      return { available: false, reason: `the native addon is not loaded (${error?.code ?? 'E_NATIVE_UNAVAILABLE'})` };
    if (addon.platform === 'darwin')
      return {
        available: true,
        reason: 'AF_UNIX stream socket, fds as SCM_RIGHTS, peers checked with getpeereid (uid) and LOCAL_PEERPID (pid)',
      };
    if (addon.platform !== 'linux')
      return { available: false, reason: `the unix-socket channel is not written for ${addon.platform} yet` };
    return { available: true, reason: 'AF_UNIX stream socket, fds as SCM_RIGHTS, peers checked with SO_PEERCRED' };
  },

  defaultAddress: defaultSocketPath,

  listen(options: ListenOptions): Listener {
    const addon = posixChannels();
    const socketPath = options.address ?? defaultSocketPath(options.name);
    if (typeof socketPath !== 'string' || socketPath.length === 0)
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', `path must be a non-empty string; got ${String(socketPath)}`);
    // The default directory is made private whether the path was given or derived from a name.
    if (path.dirname(socketPath) === defaultSocketDir()) ensurePrivateDir(path.dirname(socketPath));
    // The native side creates the socket 0600 (chmod between bind and listen); a wider mode is the embedder's choice.
    const backlog = options.backlog ?? DEFAULT_LISTEN_BACKLOG;
    if (!Number.isInteger(backlog) || backlog < 1 || backlog > 0x7fffffff)
      throw new SurfaceLinkError('E_INVALID_ARGUMENT', `backlog must be a positive integer; got ${String(backlog)}`);
    const native = bindSocket(addon, socketPath, backlog);
    if (options.policy.mode !== undefined) {
      try {
        fs.chmodSync(socketPath, options.policy.mode);
      } catch (error) {
        native.close();
        throw SurfaceLinkError.fromNative(error);
      }
    }
    return new UnixListener(native, socketPath, options.policy);
  },

  connect(options: ConnectOptions): MessageChannel {
    const socketPath = options.address ?? defaultSocketPath();
    let native: NativeChannel;
    try {
      native = posixChannels().connect(socketPath);
    } catch (error) {
      const e = error as { errnoName?: string; message?: string; code?: string };
      if (e.code === 'E_UNSUPPORTED' || e.code === 'E_NATIVE_UNAVAILABLE') throw error;
      const hint =
        e.errnoName === 'ENOENT'
          ? 'no server socket there (is the server running?)'
          : e.errnoName === 'ECONNREFUSED'
            ? 'the socket exists but no server is listening'
            : e.errnoName === 'EACCES'
              ? 'permission denied (the socket belongs to another user)'
              : e.errnoName === 'EAGAIN'
                ? 'the server is not accepting connections fast enough; retry'
                : (e.message ?? String(error));
      throw new SurfaceLinkError('E_CONNECT', `cannot connect to ${socketPath}: ${hint}`, { cause: error });
    }
    const channel = frame(native);
    const trusted = new Set([0, ownUid(), ...(options.policy.allowUids ?? [])]);
    if (!trusted.has(channel.peer.uid)) {
      channel.close();
      throw new SurfaceLinkError(
        'E_PERMISSION',
        `the server at ${socketPath} runs as uid ${channel.peer.uid}, which is not trusted`,
      );
    }
    return channel;
  },

  pair(): [MessageChannel, MessageChannel] {
    const [a, b] = posixChannels().socketpair();
    return [frame(a), frame(b)];
  },
};
