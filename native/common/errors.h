// One way to raise errors from native code: a JS Error whose `code` is one of the stable
// codes documented in docs/protocol.md (E_SYSTEM for a failed syscall), with `syscall`
// and `errno` attached when an OS call failed.
#pragma once

#include <napi.h>

#include <string>

namespace surfacelink {

// Builds (does not throw) an Error with .code, and .syscall/.errno when sys_errno != 0.
Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message,
                      const char* syscall = nullptr, int sys_errno = 0);

// Throws E_SYSTEM for a failed syscall, reading errno now.
[[noreturn]] void ThrowSyscall(Napi::Env env, const char* syscall, const std::string& what = "");

[[noreturn]] void Throw(Napi::Env env, const char* code, const std::string& message);

// "EMFILE", "EAGAIN", ... (the symbolic errno name; "E?" when unknown).
const char* ErrnoName(int err);

}  // namespace surfacelink
