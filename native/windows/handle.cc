// NtHandle: the JS owner of one HANDLE, and the Windows error/type/SID helpers (handle.h).
#include "handle.h"

#include <sddl.h>
#include <winternl.h>

#include <cstdio>
#include <vector>

#include "../common/addon.h"
#include "../common/errors.h"

namespace surfacelink {

namespace {

const char* WinErrorName(DWORD err) {
  switch (err) {
#define SL_WINERR(e) \
  case e:            \
    return #e;
    SL_WINERR(ERROR_FILE_NOT_FOUND) SL_WINERR(ERROR_PATH_NOT_FOUND) SL_WINERR(ERROR_ACCESS_DENIED)
    SL_WINERR(ERROR_INVALID_HANDLE) SL_WINERR(ERROR_NOT_ENOUGH_MEMORY) SL_WINERR(ERROR_INVALID_PARAMETER)
    SL_WINERR(ERROR_BROKEN_PIPE) SL_WINERR(ERROR_PIPE_BUSY) SL_WINERR(ERROR_NO_DATA)
    SL_WINERR(ERROR_PIPE_NOT_CONNECTED) SL_WINERR(ERROR_MORE_DATA) SL_WINERR(ERROR_PIPE_CONNECTED)
    SL_WINERR(ERROR_OPERATION_ABORTED) SL_WINERR(ERROR_IO_PENDING) SL_WINERR(ERROR_SEM_TIMEOUT)
    SL_WINERR(ERROR_BAD_PATHNAME) SL_WINERR(ERROR_INVALID_NAME) SL_WINERR(ERROR_NO_SYSTEM_RESOURCES)
    SL_WINERR(ERROR_COMMITMENT_LIMIT) SL_WINERR(ERROR_NOT_SUPPORTED) SL_WINERR(ERROR_INVALID_FUNCTION)
#undef SL_WINERR
    default:
      return nullptr;
  }
}

}  // namespace

std::string WinErrorText(DWORD err) {
  char* text = nullptr;
  DWORD n = ::FormatMessageA(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                             nullptr, err, MAKELANGID(LANG_ENGLISH, SUBLANG_ENGLISH_US), reinterpret_cast<LPSTR>(&text), 0,
                             nullptr);
  std::string result;
  if (n > 0 && text != nullptr) {
    result.assign(text, n);
    while (!result.empty() && (result.back() == '\n' || result.back() == '\r' || result.back() == ' ' || result.back() == '.'))
      result.pop_back();
  }
  if (text != nullptr) ::LocalFree(text);
  if (result.empty()) result = "Windows error";
  const char* name = WinErrorName(err);
  result += " (";
  if (name != nullptr) result += std::string(name) + ", ";
  result += std::to_string(err) + ")";
  return result;
}

Napi::Error MakeWinError(Napi::Env env, const char* code, const std::string& what, const char* syscall, DWORD err) {
  std::string text = what;
  if (syscall != nullptr) {
    if (!text.empty()) text += ": ";
    text += std::string(syscall) + " failed: " + WinErrorText(err);
  }
  Napi::Error error = Napi::Error::New(env, text);
  error.Set("code", Napi::String::New(env, code));
  if (syscall != nullptr) error.Set("syscall", Napi::String::New(env, syscall));
  if (err != 0) {
    error.Set("errno", Napi::Number::New(env, static_cast<double>(err)));
    const char* name = WinErrorName(err);
    if (name != nullptr) error.Set("errnoName", Napi::String::New(env, name));
  }
  return error;
}

void ThrowWin(Napi::Env env, const char* code, const std::string& what, const char* syscall, DWORD err) {
  throw MakeWinError(env, code, what, syscall, err);
}

void ThrowLastError(Napi::Env env, const char* syscall, const std::string& what) {
  DWORD err = ::GetLastError();
  ThrowWin(env, "E_SYSTEM", what, syscall, err);
}

std::wstring ObjectTypeName(HANDLE h) {
  alignas(16) unsigned char buffer[1024];
  ULONG needed = 0;
  NTSTATUS status = ::NtQueryObject(h, ObjectTypeInformation, buffer, sizeof buffer, &needed);
  if (status < 0) return std::wstring();
  const auto* info = reinterpret_cast<const PUBLIC_OBJECT_TYPE_INFORMATION*>(buffer);
  if (info->TypeName.Buffer == nullptr) return std::wstring();
  return std::wstring(info->TypeName.Buffer, info->TypeName.Length / sizeof(wchar_t));
}

const char* ObjectKind(HANDLE h) {
  std::wstring name = ObjectTypeName(h);
  if (name == L"Section") return "section";
  if (name == L"Event") return "event";
  if (name == L"Process") return "process";
  if (name == L"File") return "file";
  if (name == L"Mutant") return "mutant";
  return "other";
}

std::string TokenUserSid(HANDLE token) {
  DWORD size = 0;
  ::GetTokenInformation(token, TokenUser, nullptr, 0, &size);
  if (size == 0) return std::string();
  std::vector<unsigned char> buffer(size);
  if (!::GetTokenInformation(token, TokenUser, buffer.data(), size, &size)) return std::string();
  const auto* user = reinterpret_cast<const TOKEN_USER*>(buffer.data());
  char* text = nullptr;
  if (!::ConvertSidToStringSidA(user->User.Sid, &text) || text == nullptr) return std::string();
  std::string sid = text;
  ::LocalFree(text);
  return sid;
}

std::string ProcessUserSid(HANDLE process) {
  HANDLE token = nullptr;
  if (!::OpenProcessToken(process, TOKEN_QUERY, &token)) return std::string();
  UniqueHandle owned(token);
  return TokenUserSid(token);
}

// ---------------------------------------------------------------------------------------
// NtHandle

Napi::Function NtHandle::Define(Napi::Env env) {
  return DefineClass(env, "NtHandle",
                     {
                         InstanceMethod<&NtHandle::Close>("close"),
                         InstanceMethod<&NtHandle::Dup>("dup"),
                         InstanceMethod<&NtHandle::Type>("type"),
                         InstanceAccessor<&NtHandle::GetClosed>("closed"),
                         InstanceAccessor<&NtHandle::GetDebugValue>("debugValue"),
                     });
}

NtHandle::NtHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NtHandle>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    Throw(info.Env(), "E_INVALID_ARGUMENT", "NtHandle cannot be constructed from JavaScript");
  handle_ = *info[0].As<Napi::External<HANDLE>>().Data();
}

NtHandle::~NtHandle() {
  if (handle_ != nullptr) ::CloseHandle(handle_);
}

Napi::Value NtHandle::Close(const Napi::CallbackInfo& info) {
  if (handle_ != nullptr) {
    ::CloseHandle(handle_);
    handle_ = nullptr;
  }
  return info.Env().Undefined();
}

Napi::Value NtHandle::Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (handle_ == nullptr) Throw(env, "E_CLOSED", "the handle is closed");
  HANDLE copy = nullptr;
  if (!::DuplicateHandle(::GetCurrentProcess(), handle_, ::GetCurrentProcess(), &copy, 0, FALSE, DUPLICATE_SAME_ACCESS))
    ThrowLastError(env, "DuplicateHandle");
  return WrapHandle(env, copy);
}

Napi::Value NtHandle::Type(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (handle_ == nullptr) Throw(env, "E_CLOSED", "the handle is closed");
  return Napi::String::New(env, ObjectKind(handle_));
}

Napi::Value NtHandle::GetClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), handle_ == nullptr);
}

Napi::Value NtHandle::GetDebugValue(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(reinterpret_cast<uintptr_t>(handle_)));
}

Napi::Object WrapHandle(Napi::Env env, HANDLE h) {
  UniqueHandle owned(h);
  HANDLE raw = h;
  Napi::Object object = GetAddonData(env).nt_handle_ctor.New({Napi::External<HANDLE>::New(env, &raw)});
  owned.release();  // the NtHandle owns it now
  return object;
}

HANDLE UnwrapHandle(Napi::Env env, Napi::Value value) {
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(GetAddonData(env).nt_handle_ctor.Value()))
    Throw(env, "E_INVALID_ARGUMENT", "expected an NtHandle");
  NtHandle* handle = NtHandle::Unwrap(value.As<Napi::Object>());
  if (handle == nullptr || handle->handle() == nullptr) Throw(env, "E_CLOSED", "the handle is closed");
  return handle->handle();
}

}  // namespace surfacelink
