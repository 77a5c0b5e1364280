// What an fd really is, decided by the kernel's own answers (fstat / fstatfs / /proc), never
// by what a peer claims. Implemented per OS (native/linux/fd_kind.cc, native/macos/fd_kind.cc).
#pragma once

#include <cstdint>

namespace surfacelink {

// kShm: a POSIX shm object (shm_open): on Linux a tmpfs file under /dev/shm, on macOS a pshm.
enum class FdKind { kMemfd, kDmabuf, kSyncFile, kSocket, kPipe, kFile, kOther, kShm };

// The name JS sees (NativeFd.stat().kind); the same on every OS.
inline const char* FdKindName(FdKind kind) {
  switch (kind) {
    case FdKind::kMemfd: return "memfd";
    case FdKind::kDmabuf: return "dmabuf";
    case FdKind::kSyncFile: return "syncfile";
    case FdKind::kSocket: return "socket";
    case FdKind::kPipe: return "pipe";
    case FdKind::kFile: return "file";
    case FdKind::kOther: return "other";
    case FdKind::kShm: return "shm";
  }
  return "other";
}

FdKind ClassifyFd(int fd);

// Size of the object behind fd in bytes (fstat for files/memfd, lseek(SEEK_END) for dma-buf).
// Returns -1 and sets errno on failure.
int64_t FdObjectSize(int fd, FdKind kind);

// memfd seals (F_GET_SEALS); -1 with errno when the fd does not support sealing.
int GetSeals(int fd);

// nullptr where the OS has file seals (Linux); otherwise why it has none, for E_UNSUPPORTED
// (NativeFd.seals() on macOS).
const char* NoSealsReason();

}  // namespace surfacelink
