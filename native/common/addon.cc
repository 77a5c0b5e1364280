// Addon entry: everything OS-specific is registered by RegisterPlatform, chosen by CMake.
#include "addon.h"

namespace surfacelink {

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  auto* data = new AddonData();
  env.SetInstanceData(data);  // deleted by node-addon-api when the environment goes away
  const char* platform = RegisterPlatform(env, exports, *data);
  exports.Set("platform", Napi::String::New(env, platform));
  exports.Set("abi", Napi::Number::New(env, 1));
  return exports;
}

}  // namespace surfacelink

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return surfacelink::Init(env, exports); }
NODE_API_MODULE(surfacelink, InitModule)
