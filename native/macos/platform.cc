// macOS registration. The macOS backend (unix-socket channel with SCM_RIGHTS, shm_open
// memory, IOSurface) is not written yet, so this registers nothing: the addon loads and
// reports `platform: "darwin"`, and the TypeScript layer says at run time that no
// mechanism is available on this OS yet. Cross-built with Zig (cmake/zig-macos.cmake).
#include "../common/addon.h"
#include "../common/modules.h"

namespace surfacelink {

const char* RegisterPlatform(Napi::Env env, Napi::Object exports, AddonData& /*data*/) {
  RegisterModules(env, exports);  // none are built for this OS yet
  return "darwin";
}

}  // namespace surfacelink
