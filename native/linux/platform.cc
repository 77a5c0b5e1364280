// Linux registration: the POSIX channel and fd owner, plus memfd.
#include "platform.h"

#include "../common/addon.h"
#include "../posix/channel.h"
#include "../posix/native_fd.h"

namespace surfacelink {

const char* RegisterPlatform(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function native_fd = NativeFd::Define(env);
  data.native_fd_ctor = Napi::Persistent(native_fd);
  exports.Set("NativeFd", native_fd);
  exports.Set("unmap", Napi::Function::New(env, DetachMapping, "unmap"));
  exports.Set("adoptFd", Napi::Function::New(env, AdoptFd, "adoptFd"));
  RegisterChannel(env, exports);
  RegisterMemfd(env, exports);
  RegisterDmabuf(env, exports);
  RegisterDrm(env, exports);
  RegisterFence(env, exports);
  return "linux";
}

}  // namespace surfacelink
