// Windows HANDLE ownership (NtHandle, a JS object owning one HANDLE), object type queries, and
// the Windows-error flavour of errors.h.
#pragma once

#ifndef _WIN32_WINNT
#define _WIN32_WINNT 0x0A00  // Windows 10: CancelIoEx, GetNamedPipe*ProcessId, PIPE_REJECT_REMOTE_CLIENTS
#endif
#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN
#endif
#ifndef NOMINMAX
#define NOMINMAX
#endif
#include <windows.h>

#include <napi.h>

#include <string>

namespace surfacelink {

// A HANDLE closed on destruction (INVALID_HANDLE_VALUE and NULL both mean "none").
class UniqueHandle {
 public:
  UniqueHandle() = default;
  explicit UniqueHandle(HANDLE h) : h_(h) {}
  UniqueHandle(const UniqueHandle&) = delete;
  UniqueHandle& operator=(const UniqueHandle&) = delete;
  UniqueHandle(UniqueHandle&& o) noexcept : h_(o.release()) {}
  UniqueHandle& operator=(UniqueHandle&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  ~UniqueHandle() { reset(); }
  HANDLE get() const { return h_; }
  explicit operator bool() const { return h_ != nullptr && h_ != INVALID_HANDLE_VALUE; }
  HANDLE release() {
    HANDLE h = h_;
    h_ = nullptr;
    return h;
  }
  void reset(HANDLE h = nullptr) {
    if (*this) ::CloseHandle(h_);
    h_ = h;
  }

 private:
  HANDLE h_ = nullptr;
};

// "The system cannot find the file specified (ERROR_FILE_NOT_FOUND, 2)"-style text.
std::string WinErrorText(DWORD err);

// Builds an Error with .code, .syscall, .errno (the Win32 error code) and a readable message.
Napi::Error MakeWinError(Napi::Env env, const char* code, const std::string& what, const char* syscall, DWORD err);
[[noreturn]] void ThrowWin(Napi::Env env, const char* code, const std::string& what, const char* syscall, DWORD err);
// E_SYSTEM with GetLastError() read now.
[[noreturn]] void ThrowLastError(Napi::Env env, const char* syscall, const std::string& what = "");

// The kernel's object type name of `h` ("Section", "Event", ...); empty if unknown.
std::wstring ObjectTypeName(HANDLE h);
// 'section' | 'event' | 'process' | 'file' | 'mutant' | 'other'
const char* ObjectKind(HANDLE h);

// The SID of a token's user as 'S-1-5-…'; empty on failure.
std::string TokenUserSid(HANDLE token);
std::string ProcessUserSid(HANDLE process);

class NtHandle : public Napi::ObjectWrap<NtHandle> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit NtHandle(const Napi::CallbackInfo& info);
  ~NtHandle() override;

  HANDLE handle() const { return handle_; }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Dup(const Napi::CallbackInfo& info);
  Napi::Value Type(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value GetDebugValue(const Napi::CallbackInfo& info);

  HANDLE handle_ = nullptr;
};

// A new NtHandle owning `h` (ownership passes even if this throws: the handle is then closed).
Napi::Object WrapHandle(Napi::Env env, HANDLE h);
// The HANDLE an NtHandle owns (still owned by it). E_INVALID_ARGUMENT if `value` is not an
// NtHandle, E_CLOSED if it was closed.
HANDLE UnwrapHandle(Napi::Env env, Napi::Value value);

}  // namespace surfacelink
