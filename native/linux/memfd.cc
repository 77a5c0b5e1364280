// Linux: sealed memfd creation for the shm.v1 mechanism.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <string>

#include "../common/errors.h"
#include "../common/modules.h"
#include "../posix/native_fd.h"
#include <sys/syscall.h>

#ifndef MFD_ALLOW_SEALING
#define MFD_ALLOW_SEALING 0x0002U
#endif
#ifndef F_ADD_SEALS
#define F_ADD_SEALS 1033
#define F_SEAL_SEAL 0x0001
#define F_SEAL_SHRINK 0x0002
#define F_SEAL_GROW 0x0004
#endif

namespace surfacelink {

// createMemfd(name, size): an anonymous shared-memory object of exactly `size` bytes,
// sealed so that nobody (not even us) can shrink or grow it, or change the seals. A
// consumer that maps it can therefore never fault on a truncated page.
static Napi::Value CreateMemfd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "surfacelink";
  if (!info[1].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "size must be a number");
  double size = info[1].As<Napi::Number>().DoubleValue();
  if (!(size > 0) || size != std::floor(size) || size > 4294967296.0)
    Throw(env, "E_BAD_GEOMETRY", "memfd size must be an integer in 1..4 GiB");
  UniqueFd fd(static_cast<int>(::syscall(SYS_memfd_create, name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING)));
  if (!fd) ThrowSyscall(env, "memfd_create");
  if (::ftruncate(fd.get(), static_cast<off_t>(size)) != 0) ThrowSyscall(env, "ftruncate");
  if (::fcntl(fd.get(), F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) ThrowSyscall(env, "fcntl(F_ADD_SEALS)");
  return NativeFd::Wrap(env, std::move(fd));
}

static void RegisterMemfd(Napi::Env env, Napi::Object exports) {
  exports.Set("createMemfd", Napi::Function::New(env, CreateMemfd, "createMemfd"));
  Napi::Object seals = Napi::Object::New(env);
  seals.Set("SEAL", F_SEAL_SEAL);
  seals.Set("SHRINK", F_SEAL_SHRINK);
  seals.Set("GROW", F_SEAL_GROW);
  seals.Set("WRITE", 0x0008);
  seals.Set("FUTURE_WRITE", 0x0010);
  exports.Set("seals", seals);
}

SURFACELINK_MODULE(memfd, RegisterMemfd);

}  // namespace surfacelink
