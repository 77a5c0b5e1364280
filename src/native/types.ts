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

/**
 * macOS: native/posix + native/macos: the fd owner and the SCM_RIGHTS channel over macOS's socket
 * shims (FD_CLOEXEC set after receiving, SO_NOSIGPIPE, getpeereid + LOCAL_PEERPID, 104-byte sun_path).
 * No file seals (NativeFd.seals() throws E_UNSUPPORTED) and nothing map() accepts yet: shm_open
 * memory and IOSurface come next.
 */
export interface DarwinAddon extends AddonBase, PosixChannelApi {
  readonly platform: 'darwin';
}

/** What a Windows kernel object is, by the kernel's own answer (NtQueryObject's type name). */
export type NtObjectType = 'section' | 'event' | 'process' | 'file' | 'mutant' | 'other';

/** Owner of one Windows HANDLE in this process (native/windows/handle.cc). The value is never part of the API. */
export interface NativeNtHandle {
  /** True once closed. */
  readonly closed: boolean;
  /** For diagnostics only; never use it to address the handle. */
  readonly debugValue: number;
  /** CloseHandle. Idempotent. */
  close(): void;
  /** A new owner of a DuplicateHandle'd copy (same object, same access). */
  dup(): NativeNtHandle;
  /** What the object is (NtQueryObject ObjectTypeInformation), never what a peer claims. */
  type(): NtObjectType;
}

/** One connected named-pipe instance carrying framed messages with HANDLEs (native/windows/pipe.cc). */
export interface NativePipeChannel {
  /**
   * The peer, from GetNamedPipeClientProcessId/ServerProcessId and its process token, read at connect;
   * null when either is unknown (the process could not be opened). Sending handles needs it.
   */
  readonly peer: { pid: number; sid: string } | null;
  readonly queuedBytes: number;
  readonly closed: boolean;
  /** Same contract as NativeChannel.start (framing of docs/protocol.md §2, handle values per §9.2). */
  start(
    rx: Buffer,
    onMessage: (offset: number, length: number, handles: NativeNtHandle[] | undefined) => void,
    onError: (code: string, message: string, errno: number) => void,
    limits?: ChannelLimits,
  ): void;
  /**
   * Sends bytes[0, length ?? bytes.length), duplicating each handle into the peer process and appending
   * the values (u64 each) to the message; the caller keeps its handles.
   */
  send(bytes: Uint8Array, handles?: readonly NativeNtHandle[], length?: number): SendResult;
  /**
   * Tests only: writes `bytes` to the pipe as they are (no header check, no handle duplication), to play a
   * misbehaving peer (bogus handle values, malformed headers). Returns what send() returns.
   */
  _sendRaw(bytes: Uint8Array): SendResult;
  close(): void;
  ref(): void;
  unref(): void;
}

/** A listening named pipe (instances created one ahead, current-user DACL, remote clients rejected). */
export interface NativePipeListener {
  start(onConnection: (channel: NativePipeChannel | null, code?: string, message?: string) => void): void;
  close(): void;
}

/**
 * One D3D11 texture shared by NT handle with a keyed mutex (native/windows/d3d11.cc), made here
 * (`createTexture`) or opened from a peer's handle (`openTexture`). Its COM references are
 * dropped by close() or when the object is collected.
 */
export interface NativeD3D11Texture {
  /** Width in pixels (GetDesc). */
  readonly width: number;
  /** Height in pixels (GetDesc). */
  readonly height: number;
  /** Its DXGI_FORMAT (GetDesc): what the texture is, never what a peer claims. */
  readonly format: number;
  /** True once closed. */
  readonly closed: boolean;
  /** A new NT handle to the texture (IDXGIResource1::CreateSharedHandle, read + write), owned by the caller. */
  sharedHandle(): NativeNtHandle;
  /**
   * IDXGIKeyedMutex::AcquireSync(key, timeoutMs): true once acquired, false on timeout. E_PEER_CLOSED
   * when abandoned; E_INVALID_ARGUMENT when this object already holds it.
   */
  acquire(key: number | bigint, timeoutMs: number): boolean;
  /** Flushes this device's work on the texture, then IDXGIKeyedMutex::ReleaseSync(key). */
  release(key: number | bigint): void;
  /**
   * Uploads the whole texture from CPU memory (a staging texture, then CopyResource): plane i's
   * rows start at `planes[i].offset` in `source`, `planes[i].stride` bytes apart. Hold the mutex.
   */
  write(source: ArrayBuffer | ArrayBufferView, planes: readonly { offset: number; stride: number }[]): void;
  /** Reads the whole texture into CPU memory (CopyResource to a staging texture, then Map). Hold the mutex. */
  read(target: ArrayBuffer | ArrayBufferView, planes: readonly { offset: number; stride: number }[]): void;
  /** Releases the mutex if this object holds it, then drops the texture. Idempotent. */
  close(): void;
}

/** D3D11/DXGI (native/windows/d3d11.cc): shared textures for dxgi.v1. */
export interface NativeD3D11 {
  /**
   * Creates a device on the default adapter and tries to really share a texture (CreateSharedHandle on a
   * SHARED_NTHANDLE | SHARED_KEYEDMUTEX texture, then OpenSharedResource1 of it on a second device): what
   * dxgi.v1's probe reports. `reason` names the call that failed and its HRESULT; `luid` is 'hhhhhhhh:llllllll'
   * ('' when no device could be made); `wine` is Wine's version under Wine, else null.
   */
  probe(): { available: boolean; reason: string; adapter: string; luid: string; wine: string | null };
  /** The adapter LUID of this process's device (made once, on first use), as 'hhhhhhhh:llllllll'. */
  luid(): string;
  /**
   * A new texture on this process's device, SHARED_NTHANDLE | SHARED_KEYEDMUTEX (key 0 free).
   * Formats: B8G8R8A8, B8G8R8X8, R8G8B8A8, B5G6R5, NV12 (even sizes); E_UNSUPPORTED_FORMAT otherwise.
   */
  createTexture(width: number, height: number, dxgiFormat: number): NativeD3D11Texture;
  /**
   * A peer's texture from its NT handle (OpenSharedResource1; the caller keeps the handle). E_HANDLE_TYPE
   * when the handle is not a shared texture or has no keyed mutex; E_IMPORT_FAILED for other failures.
   */
  openTexture(handle: NativeNtHandle): NativeD3D11Texture;
}

/** Windows: native/windows — named pipes, HANDLEs, file-mapping sections, D3D11. */
export interface Win32Addon extends AddonBase {
  readonly platform: 'win32';
  /** The current process token's user SID ('S-1-5-21-…'). */
  currentUserSid(): string;
  /**
   * Listens on `\\.\pipe\<name>`: FILE_FLAG_FIRST_PIPE_INSTANCE (E_ADDRESS_IN_USE if it exists),
   * PIPE_REJECT_REMOTE_CLIENTS, a DACL granting only the current user (and SYSTEM).
   */
  pipeListen(name: string): NativePipeListener;
  /** Connects to `\\.\pipe\<name>` (E_CONNECT when nobody listens, E_PERMISSION when refused). */
  pipeConnect(name: string): NativePipeChannel;
  /** Two connected channels in this process. */
  pipePair(): [NativePipeChannel, NativePipeChannel];
  /** A pagefile-backed section (CreateFileMapping) of `size` bytes, read-write. */
  createSection(size: number): NativeNtHandle;
  /** The section's size (page-rounded: what a view of it may touch). E_HANDLE_TYPE if not a section. */
  sectionSize(section: NativeNtHandle): number;
  /**
   * Maps [offset, offset+length) of a section: 'write' (FILE_MAP_WRITE), 'read' (FILE_MAP_READ), or 'copy'
   * (FILE_MAP_COPY: copy-on-write like MAP_PRIVATE; the producer's writes show, this process's stay private).
   * Any offset (the view starts at the allocation granularity below it); E_OUT_OF_BOUNDS past sectionSize.
   */
  mapSection(section: NativeNtHandle, offset: number, length: number, mode: 'write' | 'read' | 'copy'): ArrayBuffer;
  /** A new handle to the same section that can only be mapped for reading (SECTION_QUERY | SECTION_MAP_READ). */
  readOnlySection(section: NativeNtHandle): NativeNtHandle;
  /**
   * Unmaps a view returned by mapSection now and detaches the ArrayBuffer. Idempotent; E_INVALID_ARGUMENT for
   * other buffers.
   */
  unmap(memory: ArrayBuffer): void;
  /** An unnamed auto-reset event (CreateEvent): tests send it where a section belongs. */
  createEvent(): NativeNtHandle;
  /**
   * GetProcessHandleCount of this process (tests count leaks with it; under wine, which answers 0, a probe of the
   * handle table).
   */
  processHandleCount(): number;
  /** Present in builds with D3D11. */
  readonly d3d11?: NativeD3D11;
}

/** The addon as loaded: narrow it by `platform`. */
export type NativeAddon = LinuxAddon | DarwinAddon | Win32Addon;
