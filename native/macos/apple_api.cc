// Loads CoreFoundation and IOSurface with dlopen/dlsym at first use (apple_api.h). The addon
// links neither framework, so it loads on any macOS; what could not be loaded is reported by
// AppleApiMissingReason() (iosurfaceMissingReason() in JS) and every IOSurface call then
// throws E_UNSUPPORTED with that text.
// UNVERIFIED: compiled and linked only; nothing here has run on a Mac.
#include "apple_api.h"

#include <dlfcn.h>

#include <mutex>
#include <string>

namespace surfacelink {

namespace {

constexpr const char* kCoreFoundationPath = "/System/Library/Frameworks/CoreFoundation.framework/CoreFoundation";
constexpr const char* kIOSurfacePath = "/System/Library/Frameworks/IOSurface.framework/IOSurface";

std::once_flag g_once;
apple::Api g_api{};
bool g_loaded = false;
std::string g_missing;  // empty when g_loaded

// dlerror() as text ("" when it has none).
std::string DlError() {
  const char* e = ::dlerror();
  return e != nullptr ? e : "";
}

// Loads one symbol of `lib` (opened from `path`) into `*slot`; records the first failure.
template <typename T>
bool Load(void* lib, const char* path, const char* symbol, T* slot) {
  ::dlerror();  // clear
  void* address = ::dlsym(lib, symbol);
  if (address == nullptr) {
    g_missing = std::string("dlsym(") + symbol + ") failed in " + path;
    std::string why = DlError();
    if (!why.empty()) g_missing += ": " + why;
    return false;
  }
  // A function's address as a function pointer, or a variable's address as a pointer to it.
  *slot = reinterpret_cast<T>(address);
  return true;
}

void* Open(const char* path) {
  // RTLD_LOCAL: nothing of the framework joins the global namespace; never dlclose()d.
  void* lib = ::dlopen(path, RTLD_LAZY | RTLD_LOCAL);
  if (lib == nullptr) {
    g_missing = std::string("dlopen(") + path + ") failed";
    std::string why = DlError();
    if (!why.empty()) g_missing += ": " + why;
  }
  return lib;
}

#define SL_LOAD(lib, path, member) Load(lib, path, #member, &api.member)

void LoadAll() {
  apple::Api api{};
  void* cf = Open(kCoreFoundationPath);
  if (cf == nullptr) return;
  bool ok = SL_LOAD(cf, kCoreFoundationPath, CFDictionaryCreate) && SL_LOAD(cf, kCoreFoundationPath, CFNumberCreate) &&
            SL_LOAD(cf, kCoreFoundationPath, CFRetain) && SL_LOAD(cf, kCoreFoundationPath, CFRelease) &&
            SL_LOAD(cf, kCoreFoundationPath, kCFBooleanTrue) &&
            SL_LOAD(cf, kCoreFoundationPath, kCFTypeDictionaryKeyCallBacks) &&
            SL_LOAD(cf, kCoreFoundationPath, kCFTypeDictionaryValueCallBacks);
  if (!ok) return;
  void* ios = Open(kIOSurfacePath);
  if (ios == nullptr) return;
  ok = SL_LOAD(ios, kIOSurfacePath, IOSurfaceCreate) && SL_LOAD(ios, kIOSurfacePath, IOSurfaceLookup) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetID) && SL_LOAD(ios, kIOSurfacePath, IOSurfaceLock) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceUnlock) && SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetBaseAddress) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetWidth) && SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetHeight) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetBytesPerRow) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetBytesPerElement) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetPixelFormat) && SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetAllocSize) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetPlaneCount) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceIncrementUseCount) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceDecrementUseCount) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceGetUseCount) && SL_LOAD(ios, kIOSurfacePath, IOSurfaceIsInUse) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceCreateMachPort) &&
       SL_LOAD(ios, kIOSurfacePath, IOSurfaceLookupFromMachPort) && SL_LOAD(ios, kIOSurfacePath, kIOSurfaceWidth) &&
       SL_LOAD(ios, kIOSurfacePath, kIOSurfaceHeight) && SL_LOAD(ios, kIOSurfacePath, kIOSurfaceBytesPerElement) &&
       SL_LOAD(ios, kIOSurfacePath, kIOSurfaceBytesPerRow) && SL_LOAD(ios, kIOSurfacePath, kIOSurfacePixelFormat) &&
       SL_LOAD(ios, kIOSurfacePath, kIOSurfaceIsGlobal);
  if (!ok) return;
  g_api = api;
  g_loaded = true;
}

#undef SL_LOAD

}  // namespace

namespace apple {

const Api* GetApi() {
  std::call_once(g_once, LoadAll);
  return g_loaded ? &g_api : nullptr;
}

}  // namespace apple

const char* AppleApiMissingReason() {
  std::call_once(g_once, LoadAll);
  return g_loaded ? nullptr : g_missing.c_str();
}

}  // namespace surfacelink
