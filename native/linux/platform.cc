// Linux registration: the POSIX fd owner here, then every module this build compiled in
// (the SCM_RIGHTS channel, memfd, dma-buf, DRM, sync_file: each registers itself).
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
  return "linux";
}

}  // namespace surfacelink
