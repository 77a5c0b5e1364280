// The UTM-compatible way to name an IOSurface over a unix socket (iosurface-pipe.v1,
// docs/protocol.md §9.1.2). SCM_RIGHTS carries fds, not IOSurfaces, so UTM's QEMU writes the
// surface's 32-bit IOSurfaceID into a pipe and sends the pipe's read end where a dma-buf would
// go. The producer keeps the write end open for as long as the surface lives: when it closes,
// every holder of a read end sees POLLHUP, i.e. "this ID is stale, do not look it up".
//
// Only the pipe half lives here, and it is plain POSIX: it builds and runs on Linux too, so the
// wrapping is tested across processes there (test/integration/iosurface-pipe.test.ts). The
// IOSurface half (IOSurfaceLookup) is native/macos/iosurface.cc.
//
// Nothing here ever blocks: a peer that sends a pipe with nothing in it, half an ID, or an ID
// followed by more bytes gets E_MALFORMED at once, never a stalled reader.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <string>

#include "../common/errors.h"
#include "../common/modules.h"
#include "fd_kind.h"
#include "native_fd.h"

namespace surfacelink {

namespace {

constexpr size_t kIdBytes = 4;  // IOSurfaceID is a uint32_t

UniqueFd CloexecFd(Napi::Env env, int fd) {
  UniqueFd owned(fd);
  if (::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) ThrowSyscall(env, "fcntl(F_SETFD)");
  return owned;
}

// The fd inside `value`, which must be an open NativeFd for a pipe (or FIFO).
int BorrowPipe(Napi::Env env, Napi::Value value) {
  FdKind kind = FdKind::kOther;
  int fd = NativeFd::BorrowClassified(env, value, &kind);
  if (kind != FdKind::kPipe)
    Throw(env, "E_HANDLE_TYPE", std::string("a surface-ID pipe must be a pipe, not a ") + FdKindName(kind));
  return fd;
}

// poll() once without waiting; EINTR retried.
short PollNow(Napi::Env env, int fd) {
  struct pollfd p {};
  p.fd = fd;
  p.events = POLLIN;
  int n;
  do n = ::poll(&p, 1, 0);
  while (n < 0 && errno == EINTR);
  if (n < 0) ThrowSyscall(env, "poll");
  return n == 0 ? 0 : p.revents;
}

// read() that never blocks: only called after poll() said POLLIN (a pipe then returns what is
// there, up to `size`, or 0 at end of file).
ssize_t ReadSome(Napi::Env env, int fd, uint8_t* out, size_t size) {
  ssize_t n;
  do n = ::read(fd, out, size);
  while (n < 0 && errno == EINTR);
  if (n < 0) ThrowSyscall(env, "read");
  return n;
}

}  // namespace

// createIdPipe(id) -> [readEnd, writeEnd]: a pipe holding the 4 bytes of `id` (little-endian,
// the byte order of every Mac UTM runs on). The caller sends readEnd with the frame and keeps
// writeEnd open exactly as long as the surface lives.
static Napi::Value CreateIdPipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "createIdPipe(id: number)");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 1) || d > 4294967295.0 || d != std::floor(d))
    Throw(env, "E_INVALID_ARGUMENT", "an IOSurfaceID is an integer in 1..2^32-1");
  auto id = static_cast<uint32_t>(d);
  int fds[2];
  if (::pipe(fds) != 0) ThrowSyscall(env, "pipe");
  UniqueFd read_end = CloexecFd(env, fds[0]);
  UniqueFd write_end = CloexecFd(env, fds[1]);
  const uint8_t bytes[kIdBytes] = {static_cast<uint8_t>(id), static_cast<uint8_t>(id >> 8),
                                   static_cast<uint8_t>(id >> 16), static_cast<uint8_t>(id >> 24)};
  // 4 bytes into an empty pipe: POSIX makes writes up to PIPE_BUF (≥ 512) atomic, so this
  // neither blocks nor writes part.
  ssize_t n;
  do n = ::write(write_end.get(), bytes, kIdBytes);
  while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(kIdBytes)) ThrowSyscall(env, "write");
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, NativeFd::Wrap(env, std::move(read_end)));
  pair.Set(1u, NativeFd::Wrap(env, std::move(write_end)));
  return pair;
}

// readIdPipe(readEnd) -> id: consumes the 4 ID bytes. E_STALE when the producer already closed
// the write end (POLLHUP), even if the ID is still in the pipe: the surface is gone and its ID
// may already name another surface, so it must never be looked up (UTM's rule). E_MALFORMED when
// the pipe holds fewer than 4 bytes while its writer is open, or an ID of 0.
static Napi::Value ReadIdPipe(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowPipe(env, info[0]);
  uint8_t bytes[kIdBytes];
  size_t got = 0;
  while (got < kIdBytes) {
    short revents = PollNow(env, fd);
    if (revents & (POLLHUP | POLLERR | POLLNVAL))
      Throw(env, "E_STALE", "the surface-ID pipe's writer is closed: the surface no longer exists");
    if ((revents & POLLIN) == 0)
      Throw(env, "E_MALFORMED", "the surface-ID pipe holds " + std::to_string(got) + " of 4 bytes (nothing more is waiting)");
    ssize_t n = ReadSome(env, fd, bytes + got, kIdBytes - got);
    // End of file without POLLHUP (an OS that reports a closed pipe as readable only).
    if (n == 0) Throw(env, "E_STALE", "the surface-ID pipe's writer is closed: the surface no longer exists");
    got += static_cast<size_t>(n);
  }
  uint32_t id = static_cast<uint32_t>(bytes[0]) | static_cast<uint32_t>(bytes[1]) << 8 |
                static_cast<uint32_t>(bytes[2]) << 16 | static_cast<uint32_t>(bytes[3]) << 24;
  if (id == 0) Throw(env, "E_MALFORMED", "the surface-ID pipe carries IOSurfaceID 0 (never a valid surface)");
  return Napi::Number::New(env, id);
}

// idPipeStale(readEnd) -> boolean, after readIdPipe: true once every write end is closed
// (POLLHUP, or end of file). Bytes beyond the ID are a protocol violation: E_MALFORMED.
static Napi::Value IdPipeStale(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowPipe(env, info[0]);
  short revents = PollNow(env, fd);
  if (revents & (POLLHUP | POLLERR | POLLNVAL)) return Napi::Boolean::New(env, true);
  if (revents & POLLIN) {
    // Readable without POLLHUP: either more bytes (a violation) or end of file on an OS that
    // reports a closed pipe as readable only; one read tells them apart.
    uint8_t extra[16];
    ssize_t n = ReadSome(env, fd, extra, sizeof extra);
    if (n > 0) Throw(env, "E_MALFORMED", "the surface-ID pipe carries bytes after the 4-byte ID");
    return Napi::Boolean::New(env, true);
  }
  return Napi::Boolean::New(env, false);
}

static void RegisterIdPipe(Napi::Env env, Napi::Object exports) {
  exports.Set("createIdPipe", Napi::Function::New(env, CreateIdPipe, "createIdPipe"));
  exports.Set("readIdPipe", Napi::Function::New(env, ReadIdPipe, "readIdPipe"));
  exports.Set("idPipeStale", Napi::Function::New(env, IdPipeStale, "idPipeStale"));
}

SURFACELINK_MODULE(idpipe, RegisterIdPipe);

}  // namespace surfacelink
