// One I/O completion port per addon instance, drained by one thread that hands completions to
// the JS thread through one thread-safe function (signalled only when its queue goes non-empty).
//
// Every overlapped operation is an IoOp issued on the JS thread; its Complete() runs on the JS
// thread. An op outlives its owner: when a channel closes with I/O pending, it cancels the I/O
// (CancelIoEx), detaches its ops (owner-specific) and the op frees itself when the (aborted)
// completion is dequeued. Synchronous successes still post a completion (no
// FILE_SKIP_COMPLETION_PORT_ON_SUCCESS), so Complete() is the one place results are handled.
#pragma once

#include "handle.h"

#include <napi.h>

#include <deque>
#include <mutex>
#include <thread>

namespace surfacelink {

struct IoOp {
  OVERLAPPED overlapped{};
  IoOp() = default;
  IoOp(const IoOp&) = delete;
  IoOp& operator=(const IoOp&) = delete;
  virtual ~IoOp() = default;
  // On the JS thread. `error` is 0 on success, else the Win32 error. The op may delete itself.
  virtual void Complete(Napi::Env env, DWORD bytes, DWORD error) = 0;
  void Reset() { overlapped = OVERLAPPED{}; }
};

class Iocp {
 public:
  // The environment's port (created, with its thread, on first use).
  static Iocp& Get(Napi::Env env);

  // Associates a handle (pipe) with the port. False with GetLastError() set on failure.
  bool Associate(HANDLE h);
  // Queues a completion for `op` by hand (e.g. ConnectNamedPipe's ERROR_PIPE_CONNECTED).
  bool Post(IoOp* op, DWORD bytes, DWORD error);

  // Keep-alive counting: while > 0 the thread-safe function (hence the event loop) is ref'd.
  void Ref();
  void Unref();

 private:
  struct Completion {
    IoOp* op;
    DWORD bytes;
    DWORD error;
  };

  explicit Iocp(Napi::Env env);
  void Run();  // the completion thread
  void Drain(napi_env env);
  static void CallJs(napi_env env, napi_value js_cb, void* context, void* data);
  static void Cleanup(void* arg);

  napi_env env_;
  HANDLE port_ = nullptr;
  std::thread thread_;
  napi_threadsafe_function tsfn_ = nullptr;
  std::mutex mutex_;
  std::deque<Completion> queue_;
  bool signalled_ = false;
  bool stopped_ = false;
  int refs_ = 0;
};

}  // namespace surfacelink
