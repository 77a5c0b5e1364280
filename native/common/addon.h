// Per-addon-instance state (one per Node environment / worker) and the per-OS entry point.
#pragma once

#include <napi.h>

namespace surfacelink {

class Iocp;  // native/windows/iocp.h

struct AddonData {
  Napi::FunctionReference native_fd_ctor;
  Napi::FunctionReference channel_ctor;
  Napi::FunctionReference listener_ctor;
  // Windows (native/windows): HANDLE owner, named-pipe classes, and the one completion port.
  Napi::FunctionReference nt_handle_ctor;
  Napi::FunctionReference pipe_channel_ctor;
  Napi::FunctionReference pipe_listener_ctor;
  Iocp* iocp = nullptr;  // created on first use; stopped by an env cleanup hook
};

inline AddonData& GetAddonData(Napi::Env env) { return *env.GetInstanceData<AddonData>(); }

// Implemented once per OS (native/linux, native/macos, native/windows): registers that
// OS's classes and functions on `exports` and returns the platform name.
const char* RegisterPlatform(Napi::Env env, Napi::Object exports, AddonData& data);

}  // namespace surfacelink
