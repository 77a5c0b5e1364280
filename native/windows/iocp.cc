// The completion port and its thread (iocp.h).
#include "iocp.h"

#include "../common/addon.h"
#include "../common/errors.h"
#include "../common/js_call.h"

namespace surfacelink {

namespace {
constexpr ULONG_PTR kQuitKey = 1;  // posted with no OVERLAPPED to stop the thread
constexpr ULONG_PTR kManualKey = 2;  // Post(): the error travels in the completion key's bytes
}  // namespace

Iocp& Iocp::Get(Napi::Env env) {
  AddonData& data = GetAddonData(env);
  if (data.iocp == nullptr) data.iocp = new Iocp(env);  // never deleted: see Cleanup
  return *data.iocp;
}

Iocp::Iocp(Napi::Env env) : env_(env) {
  port_ = ::CreateIoCompletionPort(INVALID_HANDLE_VALUE, nullptr, 0, 1);
  if (port_ == nullptr) ThrowLastError(env, "CreateIoCompletionPort");
  napi_value name = Napi::String::New(env, "surfacelink:iocp");
  napi_status status = napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, nullptr, this,
                                                       &Iocp::CallJs, &tsfn_);
  if (status != napi_ok) {
    ::CloseHandle(port_);
    Throw(env, "E_SYSTEM", "napi_create_threadsafe_function failed");
  }
  napi_unref_threadsafe_function(env, tsfn_);  // idle until something is ref'd
  // Added after the thread-safe function: cleanup hooks run in reverse order, so this one
  // stops the thread before Node closes the function.
  napi_add_env_cleanup_hook(env, &Iocp::Cleanup, this);
  thread_ = std::thread([this] { Run(); });
}

bool Iocp::Associate(HANDLE h) { return ::CreateIoCompletionPort(h, port_, 0, 0) != nullptr; }

bool Iocp::Post(IoOp* op, DWORD bytes, DWORD error) {
  // A hand-posted completion carries its error in the key (real ones have key 0).
  return ::PostQueuedCompletionStatus(port_, bytes, error == 0 ? 0 : (static_cast<ULONG_PTR>(error) << 8) | kManualKey,
                                      &op->overlapped) != FALSE;
}

void Iocp::Ref() {
  if (refs_++ == 0 && !stopped_) napi_ref_threadsafe_function(env_, tsfn_);
}

void Iocp::Unref() {
  if (refs_ > 0 && --refs_ == 0 && !stopped_) napi_unref_threadsafe_function(env_, tsfn_);
}

void Iocp::Run() {
  for (;;) {
    DWORD bytes = 0;
    ULONG_PTR key = 0;
    OVERLAPPED* overlapped = nullptr;
    BOOL ok = ::GetQueuedCompletionStatus(port_, &bytes, &key, &overlapped, INFINITE);
    DWORD error = ok ? 0 : ::GetLastError();
    if (overlapped == nullptr) {
      if (key == kQuitKey || !ok) return;  // quit, or the port itself failed
      continue;
    }
    if ((key & 0xff) == kManualKey) error = static_cast<DWORD>(key >> 8);
    IoOp* op = CONTAINING_RECORD(overlapped, IoOp, overlapped);
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back({op, bytes, error});
    if (!signalled_) {
      signalled_ = true;
      napi_call_threadsafe_function(tsfn_, nullptr, napi_tsfn_nonblocking);
    }
  }
}

void Iocp::CallJs(napi_env env, napi_value /*js_cb*/, void* context, void* /*data*/) {
  if (env == nullptr) return;  // being torn down
  static_cast<Iocp*>(context)->Drain(env);
}

void Iocp::Drain(napi_env raw_env) {
  std::deque<Completion> batch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    batch.swap(queue_);
    signalled_ = false;
  }
  if (!CanCallIntoJs(raw_env)) return;  // the environment is going away; ops are leaked with it
  Napi::Env env(raw_env);
  for (const Completion& c : batch) {
    Napi::HandleScope scope(env);
    try {
      c.op->Complete(env, c.bytes, c.error);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env, e.Value());
    }
  }
}

void Iocp::Cleanup(void* arg) {
  auto* self = static_cast<Iocp*>(arg);
  self->stopped_ = true;
  ::PostQueuedCompletionStatus(self->port_, 0, kQuitKey, nullptr);
  if (self->thread_.joinable()) self->thread_.join();
  napi_release_threadsafe_function(self->tsfn_, napi_tsfn_abort);
  // The port stays open (pending ops still point into it, and the kernel may finish them);
  // the object is leaked with the pending ops: the environment is going away.
}

}  // namespace surfacelink
