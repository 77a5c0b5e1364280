// Linux: classify fds with fstat/fstatfs and the /proc/self/fd link; size dma-bufs with lseek.
#include "../posix/fd_kind.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#ifndef DMA_BUF_MAGIC
#define DMA_BUF_MAGIC 0x444d4142
#endif
#ifndef F_GET_SEALS
#define F_GET_SEALS 1034
#endif

namespace surfacelink {

static bool LinkStartsWith(int fd, const char* prefix) {
  char path[64];
  char target[256];
  std::snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
  ssize_t n = ::readlink(path, target, sizeof target - 1);
  if (n < 0) return false;
  target[n] = '\0';
  return std::strncmp(target, prefix, std::strlen(prefix)) == 0;
}

FdKind ClassifyFd(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return FdKind::kOther;
  if (S_ISSOCK(st.st_mode)) return FdKind::kSocket;
  if (S_ISFIFO(st.st_mode)) return FdKind::kPipe;
  struct statfs fs {};
  if (::fstatfs(fd, &fs) != 0) return FdKind::kOther;
  if (static_cast<unsigned long>(fs.f_type) == DMA_BUF_MAGIC) return FdKind::kDmabuf;
  if (S_ISREG(st.st_mode) &&
      (static_cast<unsigned long>(fs.f_type) == TMPFS_MAGIC ||
       static_cast<unsigned long>(fs.f_type) == HUGETLBFS_MAGIC) &&
      LinkStartsWith(fd, "/memfd:"))
    return FdKind::kMemfd;
  // A POSIX shm object: glibc's (and musl's) shm_open makes a file in the tmpfs at /dev/shm.
  if (S_ISREG(st.st_mode) && static_cast<unsigned long>(fs.f_type) == TMPFS_MAGIC && LinkStartsWith(fd, "/dev/shm/"))
    return FdKind::kShm;
  if (static_cast<unsigned long>(fs.f_type) == ANON_INODE_FS_MAGIC && LinkStartsWith(fd, "anon_inode:sync_file"))
    return FdKind::kSyncFile;
  if (S_ISREG(st.st_mode)) return FdKind::kFile;
  return FdKind::kOther;
}

int64_t FdObjectSize(int fd, FdKind kind) {
  if (kind == FdKind::kDmabuf) {
    // A dma-buf's size is only visible through lseek; fstat reports 0.
    off_t end = ::lseek(fd, 0, SEEK_END);
    if (end < 0) return -1;
    ::lseek(fd, 0, SEEK_SET);
    return end;
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0) return -1;
  return st.st_size;
}

int GetSeals(int fd) { return ::fcntl(fd, F_GET_SEALS); }

const char* NoSealsReason() { return nullptr; }

}  // namespace surfacelink
