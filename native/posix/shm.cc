// POSIX shared memory for shm.v1 where there is no sealed memfd (macOS; Linux when asked, to run
// the macOS rules): createShm() and mappingTruncated(). Compiled on Linux and macOS.
//
// A POSIX shm object has no seals. What makes mapping one safe differs per OS:
//   macOS: XNU sets an object's size with its one ftruncate (a second one fails with EINVAL), so
//          the size fstat reports before mapping stays true; mmap checks offset + length against it.
//   Linux: the object is a tmpfs file under /dev/shm that anyone with a writable fd can shrink.
// Either way NativeFd.map() guards every shm mapping against SIGBUS (sigbus_guard.h): a peer
// that shrinks the object turns the mapping into zeros, never a crash.
#include <fcntl.h>
#include <stdlib.h>  // arc4random_buf (macOS)
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if !defined(__APPLE__)
#include <sys/random.h>  // getrandom
#endif

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

#include "../common/errors.h"
#include "../common/modules.h"
#include "native_fd.h"
#include "sigbus_guard.h"

namespace surfacelink {

namespace {

// macOS's PSHMNAMLEN: longer names fail with ENAMETOOLONG.
constexpr size_t kMaxNameLength = 31;
// EEXIST this many times in a row: something else is going on; give up.
constexpr int kAttempts = 16;

std::atomic<uint32_t> g_counter{0};

uint32_t RandomWord() {
  uint32_t word = 0;
#if defined(__APPLE__)
  arc4random_buf(&word, sizeof word);
#else
  size_t got = 0;
  while (got < sizeof word) {
    ssize_t n = ::getrandom(reinterpret_cast<uint8_t*>(&word) + got, sizeof word - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // ENOSYS on a kernel before 3.17: the pid and counter still keep names apart
    got += static_cast<size_t>(n);
  }
#endif
  return word;
}

// "/sl-<pid>-<counter>-<random>", all hex: at most 4 + 8 + 1 + 6 + 1 + 8 = 28 characters.
bool MakeName(char (&name)[kMaxNameLength + 1]) {
  uint32_t counter = g_counter.fetch_add(1) & 0xffffff;
  int n = std::snprintf(name, sizeof name, "/sl-%x-%x-%08x", static_cast<unsigned>(::getpid()), counter,
                        RandomWord());
  return n > 0 && static_cast<size_t>(n) <= kMaxNameLength;
}

// createShm(label, size): a POSIX shm object of exactly `size` bytes, read-write, close-on-exec,
// already unlinked (nothing is left in the shm namespace, even if this process dies next). The
// label is for symmetry with createMemfd: an unlinked shm object has no name anyone can see.
Napi::Value CreateShm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) Throw(env, "E_INVALID_ARGUMENT", "label must be a string");
  if (!info[1].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "size must be a number");
  double size = info[1].As<Napi::Number>().DoubleValue();
  if (!(size > 0) || size != std::floor(size) || size > 4294967296.0)
    Throw(env, "E_BAD_GEOMETRY", "shm size must be an integer in 1..4 GiB");

  UniqueFd fd;
  for (int attempt = 0; attempt < kAttempts && !fd; attempt++) {
    char name[kMaxNameLength + 1];
    if (!MakeName(name)) Throw(env, "E_SYSTEM", "could not make a shm name");
    // O_EXCL: never open someone else's object. 0600: only this user could open it by name, for
    // the moment it has one.
    int raw = ::shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
    if (raw < 0) {
      if (errno == EEXIST) continue;
      ThrowSyscall(env, "shm_open");
    }
    fd.reset(raw);
    if (::shm_unlink(name) != 0) ThrowSyscall(env, "shm_unlink");  // fd's destructor closes it
  }
  if (!fd)
    Throw(env, "E_SYSTEM",
          "shm_open: " + std::to_string(kAttempts) + " random names in a row already existed");
  int flags = ::fcntl(fd.get(), F_GETFD);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFD, flags | FD_CLOEXEC) != 0) ThrowSyscall(env, "fcntl(F_SETFD)");
  // Once: on macOS a second ftruncate of a shm object fails (EINVAL), so its size is fixed now.
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) ThrowSyscall(env, "ftruncate");
  return NativeFd::Wrap(env, std::move(fd));
}

// mappingTruncated(memory): true once the SIGBUS guard replaced the mapping behind `memory` (an
// ArrayBuffer from NativeFd.map() of a shm object) with zero pages because the object shrank;
// false for any other ArrayBuffer, a detached one included.
Napi::Value MappingTruncated(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) Throw(env, "E_INVALID_ARGUMENT", "mappingTruncated(arrayBuffer)");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  bool detached = false;
  napi_is_detached_arraybuffer(env, buffer, &detached);
  if (detached || buffer.ByteLength() == 0) return Napi::Boolean::New(env, false);
  int slot = FindGuardedMapping(buffer.Data());
  return Napi::Boolean::New(env, slot >= 0 && GuardedMappingTruncated(slot));
}

void RegisterShm(Napi::Env env, Napi::Object exports) {
  exports.Set("createShm", Napi::Function::New(env, CreateShm, "createShm"));
  exports.Set("mappingTruncated", Napi::Function::New(env, MappingTruncated, "mappingTruncated"));
}

}  // namespace

SURFACELINK_MODULE(shm, RegisterShm);

}  // namespace surfacelink
