// macOS: classify fds with fstat alone. There is no memfd, dma-buf or sync_file on macOS (and
// no fstatfs magic or /proc to tell them apart), so an fd is a socket, a pipe, a regular file or
// something else. How XNU's fstat reports a shm_open object is unverified here (no Mac): it
// lands in 'file' or 'other', neither of which NativeFd.map() accepts.
#include "../posix/fd_kind.h"

#include <sys/stat.h>

#include <cerrno>

namespace surfacelink {

FdKind ClassifyFd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return FdKind::kOther;
  if (S_ISSOCK(st.st_mode)) return FdKind::kSocket;
  if (S_ISFIFO(st.st_mode)) return FdKind::kPipe;
  if (S_ISREG(st.st_mode)) return FdKind::kFile;
  return FdKind::kOther;
}

int64_t FdObjectSize(int fd, FdKind /*kind*/) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return -1;
  return st.st_size;
}

int GetSeals(int /*fd*/) {
  errno = ENOTSUP;
  return -1;
}

const char* NoSealsReason() { return "macOS has no file seals"; }

}  // namespace surfacelink
