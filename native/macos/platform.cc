// macOS registration: the POSIX fd owner here, then every module this build compiled in: the
// SCM_RIGHTS channel (native/posix/channel.cc, over native/macos/socket_os.cc), the other POSIX
// modules the source list names, `iosurface` (native/macos/iosurface.cc: IOSurface through
// dlopen()ed frameworks, apple_api.cc) and `mach` (native/macos/mach_rendezvous.cc: the
// per-session bootstrap service that carries IOSurface Mach ports). memfd, dma-buf, DRM and
// sync_file are Linux's. Cross-built with Zig (cmake/zig-macos.cmake).
#include "../common/addon.h"
#include "../common/modules.h"
#include "../posix/native_fd.h"

namespace surfacelink {

const char* RegisterPlatform(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function native_fd = NativeFd::Define(env);
  data.native_fd_ctor = Napi::Persistent(native_fd);
  exports.Set("NativeFd", native_fd);
  exports.Set("unmap", Napi::Function::New(env, DetachMapping, "unmap"));
  exports.Set("adoptFd", Napi::Function::New(env, AdoptFd, "adoptFd"));
  RegisterModules(env, exports);
  return "darwin";
}

}  // namespace surfacelink
