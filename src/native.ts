/**
 * Loads the native addon and types it. Nothing else imports the .node file directly.
 * On failure the error lists every path tried and why each failed, with what to do.
 */
import * as path from 'node:path';
import { SurfaceLinkError } from './errors.js';

/** Owner of one OS file descriptor. The number is never part of the public API. */
export interface NativeFd {
  readonly closed: boolean;
  /** For diagnostics only (fd listings); never use it to address the fd. */
  readonly debugNumber: number;
  close(): void;
  dup(): NativeFd;
  /**
   * A close-on-exec duplicate as a bare fd number, owned by the caller: for C libraries that
   * take ownership of the fd they are given (glImportMemoryFdEXT). Close it if it is not handed over.
   */
  dupRaw(): number;
  stat(): { kind: FdKind; size: number | null; inode: bigint; device: bigint; mode: number };
  seals(): number;
  /** Maps [offset, offset+length). The mapping lives until the ArrayBuffer is detached or collected. */
  map(offset: number, length: number, mode: 'shared' | 'private'): ArrayBuffer;
}

export type FdKind = 'memfd' | 'dmabuf' | 'syncfile' | 'socket' | 'pipe' | 'file' | 'other';

/** 0 written, 1 queued, -1 peer gone (dropped), -2 send queue full (dropped). */
export type SendResult = 0 | 1 | -1 | -2;

export interface ChannelLimits {
  maxMessage?: number;
  maxHandles?: number;
  maxQueuedBytes?: number;
}

export interface NativeChannel {
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
  send(bytes: Uint8Array, fds?: NativeFd[], length?: number): SendResult;
  close(): void;
  ref(): void;
  unref(): void;
}

export interface NativeListener {
  start(onConnection: (channel: NativeChannel | null, code?: string, message?: string) => void): void;
  close(): void;
}

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
  createDumb(card: NativeFd, width: number, height: number, bpp: number): { handle: number; pitch: number; size: number };
  primeExport(card: NativeFd, handle: number): NativeFd;
  closeHandle(card: NativeFd, handle: number): void;
  vgemFenceAttach(card: NativeFd, handle: number, write: boolean): number;
  vgemFenceSignal(card: NativeFd, fenceId: number): void;
}

/** sync_file fences (native/linux/fence.cc). */
export interface NativeFence {
  info(syncFile: NativeFd): { status: number; name: string; fences: { driver: string; timeline: string; status: number }[] };
  merge(a: NativeFd, b: NativeFd, name: string): NativeFd;
  /** Calls back once, from the event loop, when the fence signals (null), is cancelled ('E_CANCELLED'), or fails. */
  wait(syncFile: NativeFd, callback: (errorCode: string | null, message?: string) => void, options?: { ref?: boolean }): { cancel(): void };
}

export interface NativeAddon {
  readonly platform: string;
  readonly abi: number;
  listen(path: string, backlog?: number): NativeListener;
  connect(path: string): NativeChannel;
  socketpair(): [NativeChannel, NativeChannel];
  createMemfd(name: string, size: number): NativeFd;
  /** Takes ownership of an open fd from C code (e.g. libgbm); left open on failure. */
  adoptFd(fd: number): NativeFd;
  /** Detaches a mapping returned by NativeFd.map(); the memory is unmapped once nothing references it. */
  unmap(memory: ArrayBuffer): void;
  readonly seals: { SEAL: number; SHRINK: number; GROW: number; WRITE: number; FUTURE_WRITE: number };
  readonly NativeFd: abstract new (...args: never[]) => NativeFd;
  /** Linux only, and only in builds with the dma-buf module. */
  readonly dmabuf?: NativeDmabuf;
  readonly drm?: NativeDrm;
  readonly fence?: NativeFence;
}

let cached: NativeAddon | undefined;
let cachedPath: string | undefined;
let cachedError: SurfaceLinkError | undefined;

/** Where the addon may be, in order. SURFACELINK_ADDON names one explicitly. */
export function addonCandidates(): string[] {
  const root = path.resolve(__dirname, '..');
  const list = [
    path.join(root, 'build', 'Release', 'surfacelink.node'),
    path.join(root, 'build', 'Debug', 'surfacelink.node'),
    path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'surfacelink.node'),
  ];
  const explicit = process.env.SURFACELINK_ADDON;
  return explicit ? [explicit, ...list] : list;
}

/** The addon, loaded once. Throws E_NATIVE_UNAVAILABLE explaining every path tried. */
export function loadNative(): NativeAddon {
  if (cached) return cached;
  if (cachedError) throw cachedError;
  const tried: string[] = [];
  for (const candidate of addonCandidates()) {
    try {
      cached = require(candidate) as NativeAddon;
      cachedPath = candidate;
      return cached;
    } catch (error) {
      const e = error as NodeJS.ErrnoException;
      tried.push(`  ${candidate}: ${e.code === 'MODULE_NOT_FOUND' ? 'not found' : e.message.split('\n')[0]}`);
    }
  }
  cachedError = new SurfaceLinkError(
    'E_NATIVE_UNAVAILABLE',
    [
      `surfacelink's native addon could not be loaded on ${process.platform}-${process.arch} (Node ${process.version}). Tried:`,
      ...tried,
      'Possible solutions:',
      '  - build it: `npm install` (or `npm run build:native`) in the package directory; it needs cmake and a C++17 compiler;',
      "  - check that Node's headers are installed (uv.h next to node's include/node);",
      '  - point SURFACELINK_ADDON at a surfacelink.node built for this platform.',
    ].join('\n'),
  );
  throw cachedError;
}

/** The addon and where it was loaded from, or the reason it could not be (for `surfacelink doctor`). */
export function probeNative(): { addon?: NativeAddon; path?: string; error?: SurfaceLinkError } {
  try {
    const addon = loadNative();
    return { addon, path: cachedPath };
  } catch (error) {
    return { error: SurfaceLinkError.fromNative(error) };
  }
}
