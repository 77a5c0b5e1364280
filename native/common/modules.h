// Native modules register themselves, so adding one (a mechanism's or a transport's native
// code) is a new .cc file plus its line in CMakeLists.txt: the per-OS platform.cc never names
// it. A module's file ends with SURFACELINK_MODULE(name, RegisterFn); RegisterPlatform runs them
// all (RegisterModules) in name order. The build's source list decides which modules exist.
#pragma once

#include <napi.h>

namespace surfacelink {

using ModuleInit = void (*)(Napi::Env env, Napi::Object exports);

// Records a module; called from a static initialiser (see SURFACELINK_MODULE). Returns true.
bool AddModule(const char* name, ModuleInit init);

// Runs every recorded module's init on `exports`, in name order.
void RegisterModules(Napi::Env env, Napi::Object exports);

}  // namespace surfacelink

#define SURFACELINK_MODULE(name, init) \
  [[maybe_unused]] static const bool surfacelink_module_registered_##name = ::surfacelink::AddModule(#name, init)
