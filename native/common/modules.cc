// The module list behind SURFACELINK_MODULE (modules.h).
#include "modules.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace surfacelink {

namespace {

struct Module {
  const char* name;
  ModuleInit init;
};

// Built on first use: static initialisers in other files may run before this file's.
std::vector<Module>& Modules() {
  static std::vector<Module> modules;
  return modules;
}

}  // namespace

bool AddModule(const char* name, ModuleInit init) {
  Modules().push_back({name, init});
  return true;
}

void RegisterModules(Napi::Env env, Napi::Object exports) {
  std::vector<Module> sorted = Modules();
  std::sort(sorted.begin(), sorted.end(), [](const Module& a, const Module& b) { return std::strcmp(a.name, b.name) < 0; });
  for (const Module& m : sorted) m.init(env, exports);
}

}  // namespace surfacelink
