// Linux sync_file primitives (exports.fence): SYNC_IOC_FILE_INFO, SYNC_IOC_MERGE, and an
// event-loop wait (uv_poll: a sync_file becomes readable once its fence has signalled).
//
// Waiter lifetime: a FenceWaiter is owned by its uv_poll_t (handle->data holds a
// shared_ptr) until libuv's close callback; the JS `cancel` function holds only a weak_ptr,
// so a finished waiter (and its dup of the fd) is freed at once, not when JS collects the
// handle object. A per-waiter env cleanup hook closes the poll handle if the environment
// (e.g. a worker) goes away while it is still waiting, so the loop can close cleanly.
#include <fcntl.h>
#include <linux/sync_file.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "../common/errors.h"
#include "../common/modules.h"
#include "../common/js_call.h"
#include "../posix/unique_fd.h"
#include "../posix/native_fd.h"
#include "dmabuf.h"


namespace surfacelink {

namespace {

std::string FixedString(const char* s, size_t capacity) { return std::string(s, ::strnlen(s, capacity)); }

class FenceWaiter : public std::enable_shared_from_this<FenceWaiter> {
 public:
  enum class State { kWaiting, kCancelling, kDone };

  FenceWaiter(napi_env env, UniqueFd fd, Napi::Function callback)
      : env_(env), fd_(std::move(fd)), callback_(Napi::Persistent(callback)) {
    context_ = std::make_unique<Napi::AsyncContext>(Napi::Env(env), "surfacelink:FenceWait");
  }

  // Starts polling; throws (and leaves nothing behind) on failure.
  void Start(bool ref) {
    Napi::Env env(env_);
    uv_loop_t* loop = nullptr;
    if (napi_get_uv_event_loop(env_, &loop) != napi_ok || loop == nullptr)
      Throw(env, "E_SYSTEM", "no libuv loop for this environment");
    auto* poll = new uv_poll_t();
    int rc = uv_poll_init(loop, poll, fd_.get());
    if (rc != 0) {
      delete poll;
      Throw(env, "E_SYSTEM", std::string("uv_poll_init failed: ") + uv_strerror(rc));
    }
    poll->data = new std::shared_ptr<FenceWaiter>(shared_from_this());
    poll_ = poll;
    rc = uv_poll_start(poll_, UV_READABLE, &FenceWaiter::OnPoll);
    if (rc != 0) {
      state_ = State::kDone;
      ClosePoll(&FenceWaiter::OnClosedQuietly);
      Throw(env, "E_SYSTEM", std::string("uv_poll_start failed: ") + uv_strerror(rc));
    }
    if (!ref) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
    if (napi_add_env_cleanup_hook(env_, &FenceWaiter::OnEnvCleanup, this) == napi_ok) hook_ = true;
  }

  // Stops the wait now; the callback runs with 'E_CANCELLED' from libuv's close callback (so
  // never inside cancel() itself, and even when the handle was unref'd). Idempotent.
  void Cancel() {
    if (state_ != State::kWaiting) return;
    state_ = State::kCancelling;
    ClosePoll(&FenceWaiter::OnClosedAfterCancel);
  }

 private:
  static std::shared_ptr<FenceWaiter> Holder(uv_handle_t* handle) {
    return *static_cast<std::shared_ptr<FenceWaiter>*>(handle->data);
  }

  // Releases the handle's ownership and frees the handle (libuv is done with it).
  static std::shared_ptr<FenceWaiter> ReleaseHandle(uv_handle_t* handle) {
    auto* holder = static_cast<std::shared_ptr<FenceWaiter>*>(handle->data);
    std::shared_ptr<FenceWaiter> self = std::move(*holder);
    delete holder;
    delete reinterpret_cast<uv_poll_t*>(handle);
    self->fd_.reset();  // the poll is gone; our dup of the fence can go too
    return self;
  }

  static void OnPoll(uv_poll_t* handle, int status, int /*events*/) {
    std::shared_ptr<FenceWaiter> self = Holder(reinterpret_cast<uv_handle_t*>(handle));
    if (self->state_ != State::kWaiting) return;
    self->state_ = State::kDone;
    self->ClosePoll(&FenceWaiter::OnClosedQuietly);
    self->RemoveHook();
    if (status < 0)
      self->Deliver("E_SYSTEM", std::string("polling the sync_file failed: ") + uv_strerror(status) + " (" +
                                    uv_err_name(status) + ")");
    else
      self->Deliver(nullptr, "");
  }

  static void OnClosedQuietly(uv_handle_t* handle) { ReleaseHandle(handle); }

  static void OnClosedAfterCancel(uv_handle_t* handle) {
    std::shared_ptr<FenceWaiter> self = ReleaseHandle(handle);
    if (self->state_ != State::kCancelling) return;  // the environment went away meanwhile
    self->state_ = State::kDone;
    self->RemoveHook();
    self->Deliver("E_CANCELLED", "the wait was cancelled");
  }

  static void OnEnvCleanup(void* arg) {
    auto* self = static_cast<FenceWaiter*>(arg);
    std::shared_ptr<FenceWaiter> keep = self->shared_from_this();
    self->hook_ = false;  // Node drops a hook once it has run
    if (self->state_ == State::kWaiting) self->ClosePoll(&FenceWaiter::OnClosedQuietly);
    self->state_ = State::kDone;
    self->callback_.Reset();
    self->context_.reset();
  }

  void ClosePoll(uv_close_cb on_closed) {
    if (poll_ == nullptr) return;
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), on_closed);
    poll_ = nullptr;
  }

  void RemoveHook() {
    if (!hook_) return;
    hook_ = false;
    napi_remove_env_cleanup_hook(env_, &FenceWaiter::OnEnvCleanup, this);
  }

  // Calls the JS callback once, from the loop; a throw becomes an uncaught exception.
  void Deliver(const char* code, const std::string& message) {
    Napi::FunctionReference callback = std::move(callback_);
    std::unique_ptr<Napi::AsyncContext> context = std::move(context_);
    if (callback.IsEmpty() || !CanCallIntoJs(env_)) return;  // a terminating worker: nobody to tell
    Napi::Env env(env_);
    Napi::HandleScope scope(env);
    napi_async_context ctx = context ? static_cast<napi_async_context>(*context) : nullptr;
    if (code == nullptr)
      CallFromLoop(env, callback.Value(), ctx, {env.Null()});
    else
      CallFromLoop(env, callback.Value(), ctx, {Napi::String::New(env, code), Napi::String::New(env, message)});
  }

  napi_env env_;
  UniqueFd fd_;
  uv_poll_t* poll_ = nullptr;
  Napi::FunctionReference callback_;
  std::unique_ptr<Napi::AsyncContext> context_;
  State state_ = State::kWaiting;
  bool hook_ = false;
};

}  // namespace

// info(syncFile) -> { status, name, fences: { driver, timeline, status }[] }
static Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowSyncFile(env, info[0], "syncFile");
  // First call with num_fences = 0: the kernel fills in name, status and the fence count.
  struct sync_file_info file {};
  if (IoctlRetry(fd, SYNC_IOC_FILE_INFO, &file) < 0) ThrowIoctl(env, "ioctl(SYNC_IOC_FILE_INFO)", "");
  std::vector<struct sync_fence_info> fences(file.num_fences);
  if (!fences.empty()) {
    // A sync_file's fence set never changes, so the count from the first call still holds.
    uint32_t count = file.num_fences;
    file = sync_file_info{};
    file.num_fences = count;
    file.sync_fence_info = reinterpret_cast<uintptr_t>(fences.data());
    if (IoctlRetry(fd, SYNC_IOC_FILE_INFO, &file) < 0) ThrowIoctl(env, "ioctl(SYNC_IOC_FILE_INFO)", "");
    fences.resize(std::min<size_t>(fences.size(), file.num_fences));
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("status", Napi::Number::New(env, file.status));
  result.Set("name", FixedString(file.name, sizeof file.name));
  Napi::Array list = Napi::Array::New(env, fences.size());
  for (size_t i = 0; i < fences.size(); i++) {
    Napi::Object fence = Napi::Object::New(env);
    fence.Set("driver", FixedString(fences[i].driver_name, sizeof fences[i].driver_name));
    fence.Set("timeline", FixedString(fences[i].obj_name, sizeof fences[i].obj_name));
    fence.Set("status", Napi::Number::New(env, fences[i].status));
    list.Set(static_cast<uint32_t>(i), fence);
  }
  result.Set("fences", list);
  return result;
}

// merge(a, b, name) -> NativeFd
static Napi::Value Merge(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int a = BorrowSyncFile(env, info[0], "a");
  int b = BorrowSyncFile(env, info[1], "b");
  struct sync_merge_data data {};
  std::string name = RequireShortString(env, info[2], "name", 0, sizeof data.name - 1);
  std::memcpy(data.name, name.data(), name.size());
  data.fd2 = b;
  data.fence = -1;
  if (IoctlRetry(a, SYNC_IOC_MERGE, &data) < 0) ThrowIoctl(env, "ioctl(SYNC_IOC_MERGE)", "");
  // The kernel installs the merged sync_file with O_CLOEXEC.
  return NativeFd::Wrap(env, UniqueFd(data.fence));
}

// wait(syncFile, callback, { ref }) -> { cancel() }
static Napi::Value Wait(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowSyncFile(env, info[0], "syncFile");
  if (!info[1].IsFunction()) Throw(env, "E_INVALID_ARGUMENT", "callback must be a function");
  bool ref = true;
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsObject()) Throw(env, "E_INVALID_ARGUMENT", "options must be an object");
    Napi::Value r = info[2].As<Napi::Object>().Get("ref");
    if (!r.IsUndefined()) {
      if (!r.IsBoolean()) Throw(env, "E_INVALID_ARGUMENT", "options.ref must be a boolean");
      ref = r.As<Napi::Boolean>().Value();
    }
  }
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));  // the caller may close theirs
  if (!copy) ThrowSyscall(env, "fcntl(F_DUPFD_CLOEXEC)");
  auto waiter = std::make_shared<FenceWaiter>(env, std::move(copy), info[1].As<Napi::Function>());
  waiter->Start(ref);
  std::weak_ptr<FenceWaiter> weak = waiter;
  Napi::Object handle = Napi::Object::New(env);
  handle.Set("cancel", Napi::Function::New(
                           env,
                           [weak](const Napi::CallbackInfo& call) -> Napi::Value {
                             if (std::shared_ptr<FenceWaiter> w = weak.lock()) w->Cancel();
                             return call.Env().Undefined();
                           },
                           "cancel"));
  return handle;
}

static void RegisterFence(Napi::Env env, Napi::Object exports) {
  Napi::Object fence = Napi::Object::New(env);
  fence.Set("info", Napi::Function::New(env, Info, "info"));
  fence.Set("merge", Napi::Function::New(env, Merge, "merge"));
  fence.Set("wait", Napi::Function::New(env, Wait, "wait"));
  exports.Set("fence", fence);
}

SURFACELINK_MODULE(fence, RegisterFence);

}  // namespace surfacelink
