// Windows registration. The Windows backend (named-pipe channel with DuplicateHandle,
// file mappings, D3D11 shared textures) is not written yet, so this registers nothing:
// the addon loads and reports `platform: "win32"`, and the TypeScript layer says at run
// time that no mechanism is available on this OS yet. Cross-built with mingw-w64
// (cmake/mingw-w64-x86_64.cmake) and loaded under wine by test/package/.
#include "../common/addon.h"
#include "../common/modules.h"

namespace surfacelink {

const char* RegisterPlatform(Napi::Env env, Napi::Object exports, AddonData& /*data*/) {
  RegisterModules(env, exports);  // none are built for this OS yet
  return "win32";
}

}  // namespace surfacelink
