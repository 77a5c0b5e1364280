// NativeFd: the JS-visible owner of one file descriptor. JS never sees the number except
// through debugNumber (for diagnostics). close() is idempotent; the fd is also closed if
// the object is garbage-collected while still open (a safety net, not the contract).
#pragma once

#include <napi.h>

#include "unique_fd.h"
#include "fd_kind.h"

namespace surfacelink {

class NativeFd : public Napi::ObjectWrap<NativeFd> {
 public:
  static Napi::Function Define(Napi::Env env);
  // Wraps `fd` in a new JS NativeFd that owns it.
  static Napi::Object Wrap(Napi::Env env, UniqueFd fd);
  // The fd inside a JS value that must be an open NativeFd (throws E_HANDLE_TYPE otherwise).
  static int Borrow(Napi::Env env, Napi::Value value);
  // Borrow() plus what the fd is, classified once per NativeFd: an open fd's kind never
  // changes, and classifying costs several syscalls (a per-frame cost otherwise).
  static int BorrowClassified(Napi::Env env, Napi::Value value, FdKind* kind);

  explicit NativeFd(const Napi::CallbackInfo& info);

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Dup(const Napi::CallbackInfo& info);
  Napi::Value DupRaw(const Napi::CallbackInfo& info);
  Napi::Value Stat(const Napi::CallbackInfo& info);
  Napi::Value Seals(const Napi::CallbackInfo& info);
  Napi::Value Map(const Napi::CallbackInfo& info);
  Napi::Value ReadRows(const Napi::CallbackInfo& info);
  Napi::Value IsClosed(const Napi::CallbackInfo& info);
  Napi::Value DebugNumber(const Napi::CallbackInfo& info);
  int Require(Napi::Env env) const;
  // What `fd` (our own, open) is, classified on first use (see BorrowClassified).
  FdKind Kind(int fd);

  UniqueFd fd_;
  bool kind_known_ = false;
  FdKind kind_ = FdKind::kOther;
};

Napi::Value DetachMapping(const Napi::CallbackInfo& info);
Napi::Value AdoptFd(const Napi::CallbackInfo& info);

}  // namespace surfacelink
