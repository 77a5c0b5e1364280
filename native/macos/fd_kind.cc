// macOS: classify fds with fstat, and POSIX shm objects with libproc. There is no memfd, dma-buf
// or sync_file on macOS (and no fstatfs magic or /proc to tell them apart), so an fd is a socket,
// a pipe, a shm object, a regular file or something else. XNU's fstat of a shm object reports its
// size and only permission bits in st_mode (no S_IFREG), so fstat alone cannot name it: libproc's
// proc_pidfdinfo(PROC_PIDFDPSHMINFO) answers with a whole struct pshm_fdinfo only for a pshm fd.
// (Unverified at run time here: no Mac. Anything unrecognised stays 'other', which map() refuses.)
#include "../posix/fd_kind.h"

#include <libproc.h>
#include <sys/proc_info.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace surfacelink {

static bool IsPosixShm(int fd) {
  struct pshm_fdinfo info {};
  int n = ::proc_pidfdinfo(::getpid(), fd, PROC_PIDFDPSHMINFO, &info, static_cast<int>(sizeof info));
  return n == static_cast<int>(sizeof info);
}

FdKind ClassifyFd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return FdKind::kOther;
  if (S_ISSOCK(st.st_mode)) return FdKind::kSocket;
  if (S_ISFIFO(st.st_mode)) return FdKind::kPipe;
  // Before S_ISREG: should some XNU report a pshm's type as regular, it is still a shm object.
  if (IsPosixShm(fd)) return FdKind::kShm;
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
