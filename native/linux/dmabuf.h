// Linux dma-buf, DRM (vgem) and sync_file primitives: plain ioctls on kernel uapi, no libdrm.
// Implemented in dmabuf.cc (exports.dmabuf), drm.cc (exports.drm) and fence.cc (exports.fence);
// the helpers below are shared by the three.
//
// The contracts, in TypeScript (src/native.ts declares the same interfaces, tersely; it also
// has dmabuf.idle(fd, access): no fence pending that `access` would wait for, without waiting):
//
//   export type CpuAccess = 'read' | 'write' | 'rw';
//
//   /** Linux dma-buf ioctls (native/linux/dmabuf.cc). */
//   export interface NativeDmabuf {
//     /** UDMABUF_CREATE on /dev/udmabuf over [offset, offset+size) of a memfd. offset and size must be
//      *  page-aligned, size > 0 and within the memfd and within udmabuf.size_limit_mb. The memfd must be
//      *  sealed with F_SEAL_SHRINK and not with F_SEAL_WRITE / F_SEAL_FUTURE_WRITE (E_UNSEALED /
//      *  E_INVALID_ARGUMENT otherwise). No /dev/udmabuf: E_UNSUPPORTED. */
//     createUdmabuf(memfd: NativeFd, offset: number, size: number): NativeFd;
//     /** DMA_HEAP_IOCTL_ALLOC on /dev/dma_heap/<heapName> (/^[a-z0-9_-]{1,64}$/); the kernel rounds size
//      *  up to a page. No such heap: E_UNSUPPORTED. */
//     heapAlloc(heapName: string, size: number): NativeFd;
//     /** DMA_BUF_IOCTL_SYNC: bracket every CPU read/write of a mapping (retries EINTR/EAGAIN). */
//     sync(fd: NativeFd, phase: 'start' | 'end', access: CpuAccess): void;
//     /** The fences currently attached to the buffer, as a sync_file (DMA_BUF_IOCTL_EXPORT_SYNC_FILE,
//      *  Linux 6.0; E_UNSUPPORTED before). 'read' = fences a reader must wait for (writers),
//      *  'write'/'rw' = all fences. An idle buffer gives an already-signalled sync_file. */
//     exportSyncFile(fd: NativeFd, access: CpuAccess): NativeFd;
//     /** Adds a sync_file's fence to the buffer (DMA_BUF_IOCTL_IMPORT_SYNC_FILE, Linux 6.0). */
//     importSyncFile(fd: NativeFd, fence: NativeFd, access: CpuAccess): void;
//     /** DMA_BUF_SET_NAME_B; name: 1..31 UTF-8 bytes, no NUL. */
//     setName(fd: NativeFd, name: string): void;
//     /** From /proc/self/fdinfo (exp_name, name) + lseek(SEEK_END) (size) + fstat (inode). */
//     info(fd: NativeFd): { exporter: string; size: number; name: string | null; inode: bigint };
//   }
//
//   /** DRM nodes and vgem (native/linux/drm.cc). `card` is a NativeFd from drm.open(). */
//   export interface NativeDrm {
//     /** /dev/dri/cardN and /dev/dri/renderDN, sorted by path; [] when /dev/dri is absent. */
//     listNodes(): { path: string; kind: 'card' | 'render' }[];
//     /** open(path, O_RDWR|O_CLOEXEC); the result must be a DRM character device (E_HANDLE_TYPE). */
//     open(path: string): NativeFd;
//     /** DRM_IOCTL_VERSION. */
//     version(card: NativeFd): { name: string; major: number; minor: number; patch: number };
//     /** DRM_IOCTL_MODE_CREATE_DUMB (primary node only: on a render node the kernel says EACCES).
//      *  width/height 1..16384, bpp 1..128. */
//     createDumb(card: NativeFd, width: number, height: number, bpp: number): { handle: number; pitch: number; size: number };
//     /** DRM_IOCTL_PRIME_HANDLE_TO_FD with DRM_CLOEXEC|DRM_RDWR: a dma-buf (exporter 'drm' for vgem). */
//     primeExport(card: NativeFd, handle: number): NativeFd;
//     /** DRM_IOCTL_GEM_CLOSE; dma-bufs already exported stay valid. */
//     closeHandle(card: NativeFd, handle: number): void;
//     /** DRM_IOCTL_VGEM_FENCE_ATTACH: an unsignalled fence on the buffer; returns its id. vgem only
//      *  (E_UNSUPPORTED on other drivers). EBUSY (E_SYSTEM) if a conflicting fence is pending.
//      *  vgem signals it by itself after ~10 s. */
//     vgemFenceAttach(card: NativeFd, handle: number, write: boolean): number;
//     /** DRM_IOCTL_VGEM_FENCE_SIGNAL. ENOENT: unknown/already signalled id; ETIMEDOUT: it had
//      *  already signalled on vgem's timeout (both E_SYSTEM). */
//     vgemFenceSignal(card: NativeFd, fenceId: number): void;
//   }
//
//   /** sync_file fences (native/linux/fence.cc). Non-sync_file handles: E_HANDLE_TYPE. */
//   export interface NativeFence {
//     /** SYNC_IOC_FILE_INFO. status: 1 signalled, 0 active, < 0 a negative errno the fence failed with. */
//     info(syncFile: NativeFd): { status: number; name: string; fences: { driver: string; timeline: string; status: number }[] };
//     /** SYNC_IOC_MERGE: a new sync_file that signals when both have; name 0..31 bytes. */
//     merge(a: NativeFd, b: NativeFd, name: string): NativeFd;
//     /** Calls back exactly once, from the event loop (never from inside wait() or cancel()): null when
//      *  the fence signals (also when it signalled with an error: check info().status), 'E_CANCELLED'
//      *  after cancel(), 'E_SYSTEM' (message in the 2nd argument) if polling failed. The waiter owns a
//      *  dup of the fd: the caller may close its own at once. cancel() is idempotent and stops the wait
//      *  at once. options.ref (default true): false lets the process exit while still waiting. */
//     wait(syncFile: NativeFd, callback: (errorCode: string | null, message?: string) => void,
//          options?: { ref?: boolean }): { cancel(): void };
//   }
//
// Error codes used: E_INVALID_ARGUMENT, E_HANDLE_TYPE (wrong kind of fd), E_CLOSED, E_UNSEALED,
// E_OUT_OF_BOUNDS, E_SYSTEM (+ syscall, errno, errnoName), and E_UNSUPPORTED (+ syscall, errno) when the
// kernel lacks the device or ioctl (ENOENT/ENODEV/ENXIO on the device node, ENOTTY from the ioctl).
#pragma once

#include <napi.h>

#include <cstdint>
#include <string>

namespace surfacelink {

// The fd inside `value`, which must be an open NativeFd holding a dma-buf / sync_file
// (E_HANDLE_TYPE naming `what` and the actual kind otherwise).
int BorrowDmabuf(Napi::Env env, Napi::Value value, const char* what);
int BorrowSyncFile(Napi::Env env, Napi::Value value, const char* what);

// 'read' | 'write' | 'rw' -> DMA_BUF_SYNC_READ / _WRITE / _RW.
uint32_t ParseAccess(Napi::Env env, Napi::Value value, const char* what);

// A JS number that must be an integer in [min, max] (E_INVALID_ARGUMENT otherwise).
uint64_t RequireInteger(Napi::Env env, Napi::Value value, const char* what, uint64_t min, uint64_t max);

// A string of 0 < bytes <= max_bytes (min_bytes may be 0) without NUL (E_INVALID_ARGUMENT otherwise).
std::string RequireShortString(Napi::Env env, Napi::Value value, const char* what, size_t min_bytes,
                               size_t max_bytes);

// Throws for a failed ioctl, reading errno now: E_UNSUPPORTED for ENOTTY (and for EINVAL when
// `einval_is_unsupported`, for ioctl families whose dispatcher answers EINVAL to unknown numbers),
// E_SYSTEM otherwise.
[[noreturn]] void ThrowIoctl(Napi::Env env, const char* ioctl_name, const std::string& what,
                             bool einval_is_unsupported = false);

// ioctl() retried on EINTR (and EAGAIN when `retry_eagain`).
int IoctlRetry(int fd, unsigned long request, void* arg, bool retry_eagain = false);

}  // namespace surfacelink
