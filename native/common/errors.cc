#include "errors.h"

#include <cerrno>
#include <cstring>

namespace surfacelink {

const char* ErrnoName(int err) {
  switch (err) {
#define SL_ERRNO(e) \
  case e:           \
    return #e;
    SL_ERRNO(EPERM) SL_ERRNO(ENOENT) SL_ERRNO(EINTR) SL_ERRNO(EIO) SL_ERRNO(EBADF)
    SL_ERRNO(EAGAIN) SL_ERRNO(ENOMEM) SL_ERRNO(EACCES) SL_ERRNO(EFAULT) SL_ERRNO(EBUSY)
    SL_ERRNO(EEXIST) SL_ERRNO(ENODEV) SL_ERRNO(ENOTDIR) SL_ERRNO(EINVAL) SL_ERRNO(ENFILE)
    SL_ERRNO(EMFILE) SL_ERRNO(EFBIG) SL_ERRNO(ENOSPC) SL_ERRNO(ESPIPE) SL_ERRNO(EROFS)
    SL_ERRNO(EPIPE) SL_ERRNO(ERANGE) SL_ERRNO(ENAMETOOLONG) SL_ERRNO(ENOSYS)
    SL_ERRNO(ENOTSOCK) SL_ERRNO(EMSGSIZE) SL_ERRNO(EPROTOTYPE) SL_ERRNO(EOPNOTSUPP)
    SL_ERRNO(EADDRINUSE) SL_ERRNO(EADDRNOTAVAIL) SL_ERRNO(ECONNABORTED) SL_ERRNO(ECONNRESET)
    SL_ERRNO(ENOBUFS) SL_ERRNO(ENOTCONN) SL_ERRNO(ETIMEDOUT) SL_ERRNO(ECONNREFUSED)
    SL_ERRNO(ENOTTY) SL_ERRNO(ETXTBSY)
#undef SL_ERRNO
    default:
      return "E?";
  }
}

Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message,
                      const char* syscall, int sys_errno) {
  std::string text = message;
  if (syscall != nullptr && sys_errno != 0) {
    if (!text.empty()) text += ": ";
    text += std::string(syscall) + " failed: " + std::strerror(sys_errno) + " (" +
            ErrnoName(sys_errno) + ")";
  }
  Napi::Error error = Napi::Error::New(env, text);
  error.Set("code", Napi::String::New(env, code));
  if (syscall != nullptr) error.Set("syscall", Napi::String::New(env, syscall));
  if (sys_errno != 0) {
    error.Set("errno", Napi::Number::New(env, sys_errno));
    error.Set("errnoName", Napi::String::New(env, ErrnoName(sys_errno)));
  }
  return error;
}

void ThrowSyscall(Napi::Env env, const char* syscall, const std::string& what) {
  int err = errno;
  throw MakeError(env, "E_SYSTEM", what, syscall, err);
}

void Throw(Napi::Env env, const char* code, const std::string& message) {
  throw MakeError(env, code, message);
}

}  // namespace surfacelink
