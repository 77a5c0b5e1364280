// Windows registration: the HANDLE owner (NtHandle) here, then every module this build compiled
// in (named-pipe channel and listener, sections, D3D11: each registers itself).
// Cross-built with mingw-w64 (cmake/mingw-w64-x86_64.cmake) and tested under wine.
#include "../common/addon.h"
#include "../common/modules.h"
#include "handle.h"

namespace surfacelink {

const char* RegisterPlatform(Napi::Env env, Napi::Object exports, AddonData& data) {
  Napi::Function nt_handle = NtHandle::Define(env);
  data.nt_handle_ctor = Napi::Persistent(nt_handle);
  exports.Set("NtHandle", nt_handle);
  RegisterModules(env, exports);
  return "win32";
}

}  // namespace surfacelink
