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
   * producer adopting the memory of the program it serves, never for what a peer sends. A shm object
   * (kind 'shm') needs no seal: its size is checked now (fstat), it is always mapped MAP_SHARED (also
   * for 'private': macOS refuses MAP_PRIVATE for shm, so a stray write reaches the object), and the
   * mapping is guarded against SIGBUS (see PosixShmApi.mappingTruncated). E_LIMIT when the guard's
   * registry is full.
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

/**
 * What an fd is, as the kernel says. 'shm': a POSIX shm object (shm_open; Linux: a tmpfs file under
 * /dev/shm, macOS: a pshm, recognised with proc_pidfdinfo).
 */
export type FdKind = 'memfd' | 'shm' | 'dmabuf' | 'syncfile' | 'socket' | 'pipe' | 'file' | 'other';

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
  readonly peer: { pid: number; uid: number; gid: number; auditToken?: Buffer } | null;
  readonly queuedBytes: number;
  /** Every byte handed to the kernel so far (absent in addons built before it existed). */
  readonly sentBytes?: number;
  readonly closed: boolean;
  /**
   * Reads what the peer sent that waits in the socket and delivers it from within this call (absent
   * in addons built before it existed).
   */
  readPending?(): void;
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

/**
 * The surface-ID pipe of iosurface-pipe.v1 (native/posix/id_pipe.cc): plain POSIX, so built on
 * Linux too, where its cross-process behaviour is tested. Nothing here blocks.
 */
export interface IdPipeApi {
  /** A pipe holding `id` as 4 little-endian bytes: send `readEnd`, keep `writeEnd` open while the surface lives. */
  createIdPipe(id: number): [readEnd: NativeFd, writeEnd: NativeFd];
  /** Consumes the 4-byte ID; E_STALE if the writer closed first, E_MALFORMED for short data or ID 0. */
  readIdPipe(readEnd: NativeFd): number;
  /** After readIdPipe: true once every write end is closed (POLLHUP); E_MALFORMED if more bytes follow. */
  idPipeStale(readEnd: NativeFd): boolean;
}

/**
 * POSIX shared memory (native/posix/shm.cc, native/posix/sigbus_guard.cc): shm.v1's backing where
 * there are no sealed memfds (macOS), and on Linux with SURFACELINK_SHM_BACKING=posix-shm.
 */
export interface PosixShmApi {
  /**
   * A POSIX shm object of exactly `size` bytes (1..4 GiB), read-write, close-on-exec, unlinked before
   * this returns (a random name, never reused: nothing is left in the shm namespace). `label` is not
   * visible anywhere (the object has no name once unlinked); it is taken for symmetry with createMemfd.
   */
  createShm(label: string, size: number): NativeFd;
  /**
   * True once the SIGBUS guard replaced the mapping behind `memory` (from NativeFd.map() of a shm
   * object) with zero pages: the object shrank under it. False for unguarded or detached buffers.
   */
  mappingTruncated(memory: ArrayBuffer): boolean;
}

/** Linux: native/posix + native/linux (memfd, dma-buf, DRM, sync_file). */
export interface LinuxAddon extends AddonBase, PosixChannelApi, IdPipeApi, PosixShmApi {
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
 * No file seals (NativeFd.seals() throws E_UNSUPPORTED); map() takes POSIX shm objects (PosixShmApi:
 * XNU fixes their size at the one ftruncate), and IOSurface with its Mach-port rendezvous is
 * below (native/macos/iosurface.cc, mach_rendezvous.cc; UNVERIFIED: never run, compiled only).
 */
export interface DarwinAddon extends AddonBase, PosixChannelApi, IdPipeApi, PosixShmApi {
  readonly platform: 'darwin';
  /**
   * Null when CoreFoundation and IOSurface.framework loaded (dlopen at first use, never linked: the
   * addon links libSystem only), else which dlopen/dlsym failed; every IOSurface call then throws
   * E_UNSUPPORTED with this text (native/macos/apple_api.cc). UNVERIFIED: never run, compiled only.
   */
  iosurfaceMissingReason(): string | null;
  /**
   * A new IOSurface (IOSurfaceCreate). width, height: 1..16384; bytesPerElement: 1..16; pixelFormat: an
   * OSType (FourCC) 0..2^32-1; bytesPerRow, when given: width × bytesPerElement..1 MiB (omitted: IOSurface
   * chooses an aligned one); at most 2 GiB in all. E_INVALID_ARGUMENT for a missing or non-integer number,
   * E_BAD_GEOMETRY out of range, E_SYSTEM when IOSurfaceCreate refuses. `global: true` sets
   * kIOSurfaceIsGlobal, which is INSECURE: any process of any user can IOSurfaceLookup a guessed 32-bit
   * ID. Only for the UTM-compatible mode; share through createMachPort() otherwise.
   * UNVERIFIED: never run, compiled only.
   */
  createIOSurface(options: {
    width: number;
    height: number;
    pixelFormat: number;
    bytesPerElement: number;
    bytesPerRow?: number;
    global?: boolean;
  }): NativeIOSurface;
  /**
   * A global surface by its IOSurfaceID (IOSurfaceLookup); E_IMPORT_FAILED when there is none. The object
   * reports `global: true`. UNVERIFIED: never run, compiled only.
   */
  lookupIOSurface(id: number): NativeIOSurface;
  /**
   * The surface a send right made by IOSurfaceCreateMachPort (in any task) names
   * (IOSurfaceLookupFromMachPort); the caller keeps owning `port`. E_IMPORT_FAILED when it names none,
   * E_HANDLE_TYPE for a receive right. UNVERIFIED: never run, compiled only.
   */
  ioSurfaceFromMachPort(port: NativeMachPort): NativeIOSurface;
  /**
   * Server side of the Mach rendezvous (native/macos/mach_rendezvous.cc): registers the bootstrap service
   * `${prefix}.${pid}.${16 random hex chars}` (`name`; prefix: 1..64 of [A-Za-z0-9._-]) and calls
   * `onConnect` for every valid CONNECT message with its 16-byte nonce, the sender's 32-byte audit token
   * (from the kernel's audit trailer: compare it with the socket's `peer.auditToken`) and a send right to
   * the client (owned by the callee: close it when the session ends). Invalid messages are destroyed and
   * reported to `onError` (E_MALFORMED, E_SYSTEM) at most once a second. Does not keep the event loop alive.
   * E_SYSTEM (errno: the kern_return_t) when bootstrap_check_in fails. UNVERIFIED: never run, compiled only.
   */
  machService(
    prefix: string,
    onConnect: (nonce: Buffer, auditToken: Buffer, client: NativeMachPort) => void,
    onError: (code: string, message: string, errno: number) => void,
  ): NativeMachService;
  /**
   * Sends one PORTS message to a client: `key` (u64) and 1..4 send rights (copied: the caller keeps
   * its own). Never blocks: E_BACKPRESSURE when the client's queue is full (a slow client), E_PEER_CLOSED
   * when the client's port is dead, E_SYSTEM otherwise. UNVERIFIED: never run, compiled only.
   */
  machSend(client: NativeMachPort, key: bigint, ports: readonly NativeMachPort[]): void;
  /**
   * Client side: looks up the service `name` (E_IMPORT_FAILED when absent), sends CONNECT with the 16-byte
   * `nonce` and a send right to a receive port of its own (waits at most 1 s for room in the service's
   * queue: E_BACKPRESSURE; E_PEER_CLOSED if the service died), then calls `onPorts` for every valid PORTS
   * message (the ports are owned by the callee). Without `onPorts`, PORTS messages wait (at most 64) for
   * NativeMachClient.take(). Invalid messages are destroyed and reported to `onError` (when given) at most
   * once a second. Does not keep the event loop alive. UNVERIFIED: never run, compiled only.
   */
  machConnect(
    name: string,
    nonce: Buffer,
    onPorts?: (key: bigint, ports: NativeMachPort[]) => void,
    onError?: (code: string, message: string, errno: number) => void,
  ): NativeMachClient;
}

/**
 * One IOSurface (native/macos/iosurface.cc): owns one reference of its IOSurfaceRef, dropped by
 * release() or when the object is collected. The geometry is read once, when the object is made.
 * UNVERIFIED: never run, compiled only.
 */
export interface NativeIOSurface {
  /** IOSurfaceGetID: the 32-bit ID (what lookupIOSurface takes for a global surface). */
  readonly id: number;
  /** Width in pixels (IOSurfaceGetWidth). */
  readonly width: number;
  /** Height in pixels (IOSurfaceGetHeight). */
  readonly height: number;
  /** The OSType (FourCC) pixel format (IOSurfaceGetPixelFormat). */
  readonly pixelFormat: number;
  /** IOSurfaceGetBytesPerRow: the row stride, as IOSurface aligned it. */
  readonly bytesPerRow: number;
  /** IOSurfaceGetBytesPerElement. */
  readonly bytesPerElement: number;
  /** IOSurfaceGetAllocSize: the bytes lock() exposes. */
  readonly allocSize: number;
  /** IOSurfaceGetPlaneCount (0 for a non-planar surface). */
  readonly planeCount: number;
  /** Made with `global: true`, or found by lookupIOSurface (so global). */
  readonly global: boolean;
  /** True once release() ran. */
  readonly released: boolean;
  /** This process's use count of the surface (IOSurfaceGetUseCount; all objects together); 0 once released. */
  readonly useCount: number;
  /** IOSurfaceIsInUse: in use by any process; false once released. */
  readonly inUse: boolean;
  /** The IOSurfaceRef pointer, for EGL_ANGLE_iosurface_client_buffer; 0n once released. */
  readonly address: bigint;
  /**
   * IOSurfaceLock (kIOSurfaceLockReadOnly when `readOnly`), then an ArrayBuffer over the whole
   * allocation (allocSize bytes) until unlock() or release() detaches it. E_UNEXPECTED when this
   * object already holds a lock; E_SYSTEM (errno: the kern_return_t) when the lock fails.
   */
  lock(readOnly: boolean): ArrayBuffer;
  /** Detaches lock()'s ArrayBuffer, then IOSurfaceUnlock with the lock's options. E_UNEXPECTED when not locked. */
  unlock(): void;
  /** IOSurfaceIncrementUseCount; counted per object. */
  incrementUseCount(): void;
  /** IOSurfaceDecrementUseCount of a count this object added (E_UNEXPECTED when it added none). */
  decrementUseCount(): void;
  /** IOSurfaceCreateMachPort: a new send right naming the surface, owned by the caller. */
  createMachPort(): NativeMachPort;
  /** Unlocks (detaching the buffer), drops the use counts this object added, then its reference. Idempotent. */
  release(): void;
}

/**
 * Owner of one user reference of a Mach port right (send or receive) in this process. The name is
 * never part of the API. UNVERIFIED: never run, compiled only.
 */
export interface NativeMachPort {
  /** True once closed. */
  readonly closed: boolean;
  /** The port name, for diagnostics only. */
  readonly debugName: number;
  /** mach_port_deallocate (send right) or mach_port_mod_refs(RECEIVE, -1). Idempotent. */
  close(): void;
  /** A new owner of one more reference of the same send right (E_HANDLE_TYPE for a receive right). */
  dup(): NativeMachPort;
}

/** A per-session bootstrap service (machService). UNVERIFIED: never run, compiled only. */
export interface NativeMachService {
  /** The registered bootstrap name, `${prefix}.${pid}.${16 hex chars}`: what a client passes to machConnect. */
  readonly name: string;
  /** True once closed. */
  readonly closed: boolean;
  /**
   * Stops listening, destroys what is queued, and drops the receive right. Per launch(3) a checked-in
   * right goes back to launchd, so the name may stay advertised (answered by nobody) until this process
   * exits: prefer one service per process over one per session. Idempotent.
   */
  close(): void;
}

/** The client end of the rendezvous (machConnect). UNVERIFIED: never run, compiled only. */
export interface NativeMachClient {
  /** True once closed. */
  readonly closed: boolean;
  /** Stops listening and drops the receive right (the server's sends then fail with E_PEER_CLOSED). Idempotent. */
  close(): void;
  /**
   * For a client made without `onPorts`: the ports of the PORTS message with `key`, waiting for it up to
   * `timeoutMs` (0..60000; this BLOCKS the JS thread meanwhile), or null on timeout. Messages queued with a
   * smaller key are discarded. E_UNEXPECTED for a client with `onPorts`, E_CLOSED once closed.
   */
  take(key: bigint, timeoutMs: number): NativeMachPort[] | null;
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
  /** An unnamed mutex, not owned (CreateMutex): tests send it where a section belongs and count it exactly. */
  createMutex(): NativeNtHandle;
  /**
   * GetProcessHandleCount of this process (tests count leaks with it; under wine, which answers 0, a probe of the
   * handle table). With `kind`, a probe of the handle table counting only handles to that kind of object (what a
   * peer's message can carry, without the handles a runtime makes and closes on its own threads).
   */
  processHandleCount(kind?: NtObjectType): number;
  /** Present in builds with D3D11. */
  readonly d3d11?: NativeD3D11;
}

/** The addon as loaded: narrow it by `platform`. */
export type NativeAddon = LinuxAddon | DarwinAddon | Win32Addon;
