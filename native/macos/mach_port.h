// NativeMachPort: the JS-visible owner of one user reference of a Mach port right in this task
// (a send right, or a receive right), and the E_SYSTEM error helpers the macOS modules share
// (iosurface.cc, mach_rendezvous.cc, which implements all of this). JS never sees the name
// except through debugName (diagnostics). close() is idempotent; the reference is also dropped
// if the object is garbage-collected while open (a safety net, not the contract). dup() (send
// rights only) adds a user reference to the same right and wraps it in a new object.
// UNVERIFIED: compiled and linked only; nothing here has run on a Mac.
#pragma once

#include <mach/mach.h>
#include <napi.h>

#include <string>

namespace surfacelink {

enum class MachRight { kSend, kReceive };

class NativeMachPort : public Napi::ObjectWrap<NativeMachPort> {
 public:
  // The class, made once per Node environment on first use.
  static Napi::Function Constructor(Napi::Env env);
  // A new JS NativeMachPort owning one user reference of `right` named `name`. Ownership
  // passes in every case: if the object cannot be made, the reference is dropped, then this throws.
  static Napi::Object Wrap(Napi::Env env, mach_port_name_t name, MachRight right);
  // The name inside a JS value that must be an open NativeMachPort holding `right`
  // (E_HANDLE_TYPE otherwise, E_CLOSED once closed). The object keeps its reference.
  static mach_port_name_t Borrow(Napi::Env env, Napi::Value value, MachRight right);
  // Drops one user reference of `right` named `name` (mach_port_deallocate for a send right,
  // mach_port_mod_refs(RECEIVE, -1) for a receive right). Nothing for MACH_PORT_NULL/DEAD.
  static void Drop(mach_port_name_t name, MachRight right);

  explicit NativeMachPort(const Napi::CallbackInfo& info);
  ~NativeMachPort() override;

 private:
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Dup(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  Napi::Value GetDebugName(const Napi::CallbackInfo& info);

  mach_port_name_t name_ = MACH_PORT_NULL;
  MachRight right_ = MachRight::kSend;
};

// "0x10000003 MACH_SEND_INVALID_DEST (…mach_error_string…)".
std::string KernReturnText(kern_return_t kr);

// An Error with .code = `code`, .syscall = `call`, .errno = kr and a message naming the call
// and the kern_return_t ("E_SYSTEM" unless the caller maps the failure to something better).
Napi::Error MakeMachError(Napi::Env env, const char* code, const std::string& call, kern_return_t kr,
                          const std::string& context = "");
[[noreturn]] void ThrowMach(Napi::Env env, const char* code, const std::string& call, kern_return_t kr,
                            const std::string& context = "");

// Per-environment state of the macOS modules (classes made on first use).
struct MacosEnvData {
  Napi::FunctionReference mach_port_ctor;
  Napi::FunctionReference mach_service_ctor;
  Napi::FunctionReference mach_client_ctor;
  Napi::FunctionReference iosurface_ctor;
};
// This environment's state; made on first use, deleted by an environment cleanup hook.
MacosEnvData& GetMacosEnvData(Napi::Env env);

}  // namespace surfacelink
