/**
 * The native addon's shape, per OS. What exists where is in the types: a Linux-only function
 * cannot be called on macOS or Windows without first narrowing the addon by its `platform`
 * (see `linuxNative()` / `posixChannels()` in ./index.ts). Each interface mirrors exactly what
 * `native/<os>/platform.cc` registers.
 */

/** Owner of one POSIX file descriptor. The number is never part of the public API. */
export interface NativeFd {
  /** True once closed. */
  readonly closed: boolean;
  /** For diagnostics only (fd listings); never use it to address the fd. */
  readonly debugNumber: number;
  /** Closes the fd. Idempotent. */
  close(): void;
  /** A new owner of a close-on-exec duplicate (same open file: same inode, same offset). */
  dup(): NativeFd;
  /**
   * A close-on-exec duplicate as a bare fd number, owned by the caller: for C libraries that
   * take ownership of the fd they are given (glImportMemoryFdEXT). Close it if it is not handed over.
   */
  dupRaw(): number;
  /** What the fd is, by the kernel's own answers (fstat/fstatfs), never by what a peer claims. */
  stat(): {
    /** What the object is. */
    kind: FdKind;
    /** Its size in bytes (st_size); null where the kernel reports none. */
    size: number | null;
    /** st_ino: equal for every duplicate of the object, in any process. */
    inode: bigint;
    /** st_dev of the inode. */
    device: bigint;
    /** st_mode (type and permission bits). */
    mode: number;
  };
  /** memfd seals (F_GET_SEALS); throws where the fd cannot be sealed. */
  seals(): number;
  /**
   * Maps [offset, offset+length). The mapping lives until the ArrayBuffer is detached or collected.
   * A memfd must be sealed against shrinking, unless `trustUnsealed` (shared mappings only): for a
   * producer adopting the memory of the program it serves, never for what a peer sends.
   */
  map(offset: number, length: number, mode: 'shared' | 'private', trustUnsealed?: boolean): ArrayBuffer;
  /**
   * Copies `rows` rows of `rowBytes` from the object (row r at `offset + r * stride`) into `target`
   * (row r at `targetOffset + r * targetStride`) with pread(2) — no mapping, so an object another
   * process shrinks meanwhile gives a short count instead of SIGBUS. Returns the rows copied whole.
   */
  readRows(
    offset: number,
    stride: number,
    rowBytes: number,
    rows: number,
    target: Uint8Array,
    targetOffset: number,
    targetStride: number,
  ): number;
}

/** What an fd is, as the kernel says. */
export type FdKind = 'memfd' | 'dmabuf' | 'syncfile' | 'socket' | 'pipe' | 'file' | 'other';

/** 0 written, 1 queued, -1 peer gone (dropped), -2 send queue full (dropped). */
export type SendResult = 0 | 1 | -1 | -2;

/** Bounds a channel enforces on what it receives and queues. */
export interface ChannelLimits {
  /** Largest message accepted, in bytes; a larger one fails the channel with E_TOO_LARGE. */
  maxMessage?: number;
  /** Most handles one message may carry (E_HANDLE_COUNT beyond). */
  maxHandles?: number;
  /** Most bytes queued for sending before send() drops messages (SendResult -2). */
  maxQueuedBytes?: number;
  /**
   * Byte-stream mode: no surfacelink framing. Each callback gets the bytes that arrived (at offset 0)
   * with the fds that came with them, and send() takes any bytes. For protocols that frame messages
   * themselves and pass fds (D-Bus, QMP).
   */
  stream?: boolean;
}

/** One connected AF_UNIX stream socket carrying messages with fds attached (native/posix/channel.cc). */
export interface NativeChannel {
  /** The peer's credentials (SO_PEERCRED), read once at connect/accept; null if unknown. */
  readonly peer: { pid: number; uid: number; gid: number } | null;
  readonly queuedBytes: number;
  readonly closed: boolean;
  start(
    rx: Buffer,
    onMessage: (offset: number, length: number, fds: NativeFd[] | undefined) => void,
    onError: (code: string, message: string, errno: number) => void,
    limits?: ChannelLimits,
  ): void;
  /** Sends bytes[0, length ?? bytes.length) with `fds` attached to its first byte; the caller keeps its fds. */
  send(bytes: Uint8Array, fds?: readonly NativeFd[], length?: number): SendResult;
  close(): void;
  ref(): void;
  unref(): void;
}

/** A listening AF_UNIX socket. */
export interface NativeListener {
  start(onConnection: (channel: NativeChannel | null, code?: string, message?: string) => void): void;
  close(): void;
}

/** CPU access direction for dma-buf sync brackets. */
export type CpuAccess = 'read' | 'write' | 'rw';

/** Linux dma-buf ioctls (native/linux/dmabuf.cc). */
export interface NativeDmabuf {
  /** A dma-buf over [offset, offset+size) of a memfd sealed with F_SEAL_SHRINK (/dev/udmabuf). */
  createUdmabuf(memfd: NativeFd, offset: number, size: number): NativeFd;
  /** A dma-buf from /dev/dma_heap/<heapName>. */
  heapAlloc(heapName: string, size: number): NativeFd;
  /** DMA_BUF_IOCTL_SYNC: bracket every CPU read/write of a mapping. */
  sync(fd: NativeFd, phase: 'start' | 'end', access: CpuAccess): void;
  /** The fences currently attached to the buffer, as a sync_file (DMA_BUF_IOCTL_EXPORT_SYNC_FILE). */
  exportSyncFile(fd: NativeFd, access: CpuAccess): NativeFd;
  /** Attaches a sync_file's fence to the buffer (DMA_BUF_IOCTL_IMPORT_SYNC_FILE). */
  importSyncFile(fd: NativeFd, fence: NativeFd, access: CpuAccess): void;
  setName(fd: NativeFd, name: string): void;
  /** No fence pending that `access` would wait for (poll on the dma-buf, no waiting). */
  idle(fd: NativeFd, access: CpuAccess): boolean;
  info(fd: NativeFd): { exporter: string; size: number; name: string | null; inode: bigint };
}

/** DRM nodes and vgem (native/linux/drm.cc). */
export interface NativeDrm {
  listNodes(): { path: string; kind: 'card' | 'render' }[];
  open(path: string): NativeFd;
  version(card: NativeFd): { name: string; major: number; minor: number; patch: number };
  createDumb(
    card: NativeFd,
    width: number,
    height: number,
    bpp: number,
  ): { handle: number; pitch: number; size: number };
  primeExport(card: NativeFd, handle: number): NativeFd;
  closeHandle(card: NativeFd, handle: number): void;
  vgemFenceAttach(card: NativeFd, handle: number, write: boolean): number;
  vgemFenceSignal(card: NativeFd, fenceId: number): void;
}

/** sync_file fences (native/linux/fence.cc). */
export interface NativeFence {
  info(syncFile: NativeFd): {
    status: number;
    name: string;
    fences: { driver: string; timeline: string; status: number }[];
  };
  merge(a: NativeFd, b: NativeFd, name: string): NativeFd;
  /** Calls back once, from the event loop, when the fence signals (null), is cancelled ('E_CANCELLED'), or fails. */
  wait(
    syncFile: NativeFd,
    callback: (errorCode: string | null, message?: string) => void,
    options?: { ref?: boolean },
  ): { cancel(): void };
}

interface AddonBase {
  /** The OS this build is for (process.platform's name for it). */
  readonly platform: string;
  /** Bumped when the addon's JS-visible interface changes incompatibly. */
  readonly abi: number;
}

/** The POSIX fd owner and the SCM_RIGHTS channel (native/posix). */
export interface PosixChannelApi {
  listen(path: string, backlog?: number): NativeListener;
  connect(path: string): NativeChannel;
  socketpair(): [NativeChannel, NativeChannel];
  /** A connected socket pair as plain fds (one end to give to another process). */
  socketpairFds(): [NativeFd, NativeFd];
  /** A channel over a duplicate of a connected socket fd (the caller keeps its fd); E_HANDLE_TYPE if not a socket. */
  channelFromFd(fd: NativeFd): NativeChannel;
  /** Takes ownership of an open fd from C code (e.g. libgbm); left open on failure. */
  adoptFd(fd: number): NativeFd;
  /** Detaches a mapping returned by NativeFd.map(); the memory is unmapped once nothing references it. */
  unmap(memory: ArrayBuffer): void;
  readonly NativeFd: abstract new (...args: never[]) => NativeFd;
}

/** Linux: native/posix + native/linux (memfd, dma-buf, DRM, sync_file). */
export interface LinuxAddon extends AddonBase, PosixChannelApi {
  readonly platform: 'linux';
  createMemfd(name: string, size: number): NativeFd;
  readonly seals: { SEAL: number; SHRINK: number; GROW: number; WRITE: number; FUTURE_WRITE: number };
  /** Present in builds with the dma-buf module. */
  readonly dmabuf?: NativeDmabuf;
  readonly drm?: NativeDrm;
  readonly fence?: NativeFence;
}

/** macOS: native/macos. No backend is written yet (IOSurface and the unix-socket channel come next). */
export interface DarwinAddon extends AddonBase {
  readonly platform: 'darwin';
}

/** Windows: native/windows. No backend is written yet (named pipes and DXGI come next). */
export interface Win32Addon extends AddonBase {
  readonly platform: 'win32';
}

/** The addon as loaded: narrow it by `platform`. */
export type NativeAddon = LinuxAddon | DarwinAddon | Win32Addon;
