// Mach port rendezvous (module `mach`): how a non-global IOSurface reaches a peer. Mach port
// rights cannot travel over a unix socket, so a session bound to one gets a per-session
// bootstrap service, and the socket only carries the service's name and a nonce:
//
//   machService(prefix, onConnect, onError)   server: bootstrap_check_in of
//                                             "<prefix>.<pid>.<16 hex chars of arc4random>"; every
//                                             valid CONNECT reaches onConnect(nonce, auditToken, client)
//   machConnect(name, nonce, onPorts, onError) client: bootstrap_look_up(name), a receive right of
//                                             its own, one CONNECT carrying a send right to it; every
//                                             valid PORTS reaches onPorts(key, ports). Without onPorts,
//                                             PORTS messages wait in an inbox (at most 64) for
//                                             client.take(key, timeoutMs), which may block the JS
//                                             thread up to timeoutMs: for a consumer that needs a
//                                             SCANOUT's ports synchronously, when the SCANOUT (sent
//                                             after them on the socket) is handled.
//   machSend(client, key, ports)              server: one PORTS message to a client, never blocking
//
// Messages (msgh_id, then the body after mach_msg_header_t; little-endian; 4-byte packing):
//   CONNECT 0x534C4301  client → service. MACH_MSGH_BITS_COMPLEX, no reply port;
//                       mach_msg_body_t { descriptor_count = 1 };
//                       mach_msg_port_descriptor_t { the client's receive port, MACH_MSG_TYPE_MAKE_SEND };
//                       16 bytes: the nonce. msgh_size = 56.
//   PORTS   0x534C5001  service → client. MACH_MSGH_BITS_COMPLEX, no reply port;
//                       mach_msg_body_t { descriptor_count = n, 1 ≤ n ≤ 4 };
//                       n × mach_msg_port_descriptor_t { a send right, MACH_MSG_TYPE_COPY_SEND };
//                       8 bytes: the key (u64). msgh_size = 36 + 12·n.
// A receiver accepts a message only when it is exactly that: the id, the complex bit, no reply
// right, the descriptor count, every descriptor a port descriptor that arrived as a send right
// (MACH_MSG_TYPE_PORT_SEND) with a valid name, and the exact size. Anything else is destroyed
// (mach_msg_destroy: every right it carried is released) and reported to onError as
// E_MALFORMED at most once a second, with the count dropped since the last report. Messages are
// received into a fixed buffer without MACH_RCV_LARGE, so a larger one is destroyed by the
// kernel (MACH_RCV_TOO_LARGE) and counted the same way. The service receives with the audit
// trailer (MACH_RCV_TRAILER_AUDIT): onConnect's auditToken is the kernel's audit_token_t of the
// task that sent the CONNECT (32 bytes), for the caller to compare with the unix socket peer's
// (the channel's peer.auditToken, LOCAL_PEERTOKEN in native/macos/socket_os.cc) together with the nonce.
//
// Threads: each service and client listens on its own serial dispatch queue
// (DISPATCH_SOURCE_TYPE_MACH_RECV) and hands what it received to JS through a thread-safe
// function; neither keeps Node's event loop alive (the session's socket does). close() cancels
// the source; its cancel handler destroys every message still queued (and the rights in them),
// drops the receive right and releases the thread-safe function. For a service, launch(3) says a
// checked-in receive right that its job destroys goes back to launchd, which keeps advertising the
// name: the name may outlive close() (until the process exits), answered by nobody, so a long-lived
// server is better off with one service for all its sessions (the nonce tells them apart). Every right a message
// brought is owned by exactly one thing at any time: the message buffer, an Event on its way to
// JS, or a NativeMachPort.
//
// Also here: NativeMachPort (mach_port.h) and the E_SYSTEM helpers.
// UNVERIFIED: compiled and linked only; nothing here has run on a Mac.
#include <dispatch/dispatch.h>
#include <mach/mach.h>
#include <mach/mach_error.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstddef>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>

#include "../common/errors.h"
#include "../common/js_call.h"
#include "../common/modules.h"
#include "apple_api.h"
#include "mach_port.h"

namespace surfacelink {

// ---------------------------------------------------------------------------------------------
// Per-environment state

namespace {

std::mutex g_env_lock;
// Never destroyed: a static destructor could run after an environment's cleanup hook.
auto* g_envs = new std::unordered_map<napi_env, MacosEnvData*>();

void CleanupEnvData(void* arg) {
  MacosEnvData* data = nullptr;
  {
    std::lock_guard<std::mutex> guard(g_env_lock);
    auto it = g_envs->find(static_cast<napi_env>(arg));
    if (it == g_envs->end()) return;
    data = it->second;
    g_envs->erase(it);
  }
  delete data;
}

}  // namespace

MacosEnvData& GetMacosEnvData(Napi::Env env) {
  napi_env key = env;
  {
    std::lock_guard<std::mutex> guard(g_env_lock);
    auto it = g_envs->find(key);
    if (it != g_envs->end()) return *it->second;
  }
  auto* data = new MacosEnvData();
  {
    std::lock_guard<std::mutex> guard(g_env_lock);
    (*g_envs)[key] = data;
  }
  napi_add_env_cleanup_hook(env, CleanupEnvData, key);
  return *data;
}

// ---------------------------------------------------------------------------------------------
// kern_return_t text and errors

namespace {

const char* KernReturnName(kern_return_t kr) {
  switch (kr) {
#define SL_KR(k) \
  case k:        \
    return #k;
    SL_KR(KERN_SUCCESS) SL_KR(KERN_INVALID_ADDRESS) SL_KR(KERN_PROTECTION_FAILURE) SL_KR(KERN_NO_SPACE)
    SL_KR(KERN_INVALID_ARGUMENT) SL_KR(KERN_FAILURE) SL_KR(KERN_RESOURCE_SHORTAGE) SL_KR(KERN_NOT_RECEIVER)
    SL_KR(KERN_NO_ACCESS) SL_KR(KERN_INVALID_NAME) SL_KR(KERN_INVALID_TASK) SL_KR(KERN_INVALID_RIGHT)
    SL_KR(KERN_INVALID_VALUE) SL_KR(KERN_UREFS_OVERFLOW) SL_KR(KERN_INVALID_CAPABILITY) SL_KR(KERN_RIGHT_EXISTS)
    SL_KR(KERN_NAME_EXISTS) SL_KR(KERN_ABORTED) SL_KR(KERN_OPERATION_TIMED_OUT) SL_KR(KERN_NOT_SUPPORTED)
    SL_KR(MACH_SEND_IN_PROGRESS) SL_KR(MACH_SEND_INVALID_DATA) SL_KR(MACH_SEND_INVALID_DEST)
    SL_KR(MACH_SEND_TIMED_OUT) SL_KR(MACH_SEND_INTERRUPTED) SL_KR(MACH_SEND_MSG_TOO_SMALL)
    SL_KR(MACH_SEND_INVALID_REPLY) SL_KR(MACH_SEND_INVALID_RIGHT) SL_KR(MACH_SEND_INVALID_NOTIFY)
    SL_KR(MACH_SEND_INVALID_MEMORY) SL_KR(MACH_SEND_NO_BUFFER) SL_KR(MACH_SEND_TOO_LARGE)
    SL_KR(MACH_SEND_INVALID_TYPE) SL_KR(MACH_SEND_INVALID_HEADER) SL_KR(MACH_RCV_IN_PROGRESS)
    SL_KR(MACH_RCV_INVALID_NAME) SL_KR(MACH_RCV_TIMED_OUT) SL_KR(MACH_RCV_TOO_LARGE) SL_KR(MACH_RCV_INTERRUPTED)
    SL_KR(MACH_RCV_PORT_CHANGED) SL_KR(MACH_RCV_INVALID_NOTIFY) SL_KR(MACH_RCV_INVALID_DATA)
    SL_KR(MACH_RCV_PORT_DIED) SL_KR(MACH_RCV_HEADER_ERROR) SL_KR(MACH_RCV_BODY_ERROR)
#undef SL_KR
    case apple::kBootstrapNotPrivileged:
      return "BOOTSTRAP_NOT_PRIVILEGED";
    case apple::kBootstrapNameInUse:
      return "BOOTSTRAP_NAME_IN_USE";
    case apple::kBootstrapUnknownService:
      return "BOOTSTRAP_UNKNOWN_SERVICE";
    case apple::kBootstrapServiceActive:
      return "BOOTSTRAP_SERVICE_ACTIVE";
    case apple::kBootstrapBadCount:
      return "BOOTSTRAP_BAD_COUNT";
    case apple::kBootstrapNoMemory:
      return "BOOTSTRAP_NO_MEMORY";
    case apple::kBootstrapNoChildren:
      return "BOOTSTRAP_NO_CHILDREN";
    default:
      return nullptr;
  }
}

}  // namespace

std::string KernReturnText(kern_return_t kr) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%x", static_cast<unsigned>(kr));
  std::string text = hex;
  if (const char* name = KernReturnName(kr)) text += std::string(" ") + name;
  if (kr < 1100 || kr > 1106) {  // mach_error_string knows nothing of bootstrap's codes
    const char* words = ::mach_error_string(kr);
    if (words != nullptr && words[0] != '\0') text += std::string(" (") + words + ")";
  }
  return text;
}

Napi::Error MakeMachError(Napi::Env env, const char* code, const std::string& call, kern_return_t kr,
                          const std::string& context) {
  std::string text = context.empty() ? "" : context + ": ";
  text += call + " failed: " + KernReturnText(kr);
  Napi::Error error = MakeError(env, code, text);
  error.Set("syscall", Napi::String::New(env, call));
  error.Set("errno", Napi::Number::New(env, kr));
  return error;
}

void ThrowMach(Napi::Env env, const char* code, const std::string& call, kern_return_t kr, const std::string& context) {
  throw MakeMachError(env, code, call, kr, context);
}

// ---------------------------------------------------------------------------------------------
// NativeMachPort

namespace {

struct PortInit {
  mach_port_name_t name;
  MachRight right;
  bool taken;
};

}  // namespace

Napi::Function NativeMachPort::Constructor(Napi::Env env) {
  MacosEnvData& data = GetMacosEnvData(env);
  if (data.mach_port_ctor.IsEmpty()) {
    data.mach_port_ctor = Napi::Persistent(DefineClass(env, "NativeMachPort",
                                                       {
                                                           InstanceMethod<&NativeMachPort::Close>("close"),
                                                           InstanceMethod<&NativeMachPort::Dup>("dup"),
                                                           InstanceAccessor<&NativeMachPort::GetClosed>("closed"),
                                                           InstanceAccessor<&NativeMachPort::GetDebugName>("debugName"),
                                                       }));
  }
  return data.mach_port_ctor.Value();
}

NativeMachPort::NativeMachPort(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeMachPort>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    Throw(info.Env(), "E_INVALID_ARGUMENT", "NativeMachPort cannot be constructed from JavaScript");
  PortInit* init = info[0].As<Napi::External<PortInit>>().Data();
  name_ = init->name;
  right_ = init->right;
  init->taken = true;
}

NativeMachPort::~NativeMachPort() { Drop(name_, right_); }

Napi::Object NativeMachPort::Wrap(Napi::Env env, mach_port_name_t name, MachRight right) {
  PortInit init{name, right, false};
  try {
    return Constructor(env).New({Napi::External<PortInit>::New(env, &init)});
  } catch (...) {
    if (!init.taken) Drop(name, right);
    throw;
  }
}

mach_port_name_t NativeMachPort::Borrow(Napi::Env env, Napi::Value value, MachRight right) {
  if (!value.IsObject() || !value.As<Napi::Object>().InstanceOf(Constructor(env)))
    Throw(env, "E_HANDLE_TYPE", "expected a NativeMachPort");
  NativeMachPort* port = Unwrap(value.As<Napi::Object>());
  if (port->name_ == MACH_PORT_NULL) Throw(env, "E_CLOSED", "the handle is closed");
  if (port->right_ != right)
    Throw(env, "E_HANDLE_TYPE", right == MachRight::kSend ? "expected a send right" : "expected a receive right");
  return port->name_;
}

void NativeMachPort::Drop(mach_port_name_t name, MachRight right) {
  if (!MACH_PORT_VALID(name)) return;
  // A send right whose port died is a dead name by now: mach_port_deallocate drops that too.
  if (right == MachRight::kSend)
    ::mach_port_deallocate(mach_task_self(), name);
  else
    ::mach_port_mod_refs(mach_task_self(), name, MACH_PORT_RIGHT_RECEIVE, -1);
}

Napi::Value NativeMachPort::Close(const Napi::CallbackInfo& info) {
  mach_port_name_t name = name_;
  name_ = MACH_PORT_NULL;
  Drop(name, right_);
  return info.Env().Undefined();
}

// dup() -> NativeMachPort: one more user reference of the same send right (a dead name's, if
// the port died meanwhile), owned by the new object.
Napi::Value NativeMachPort::Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (name_ == MACH_PORT_NULL) Throw(env, "E_CLOSED", "the handle is closed");
  if (right_ != MachRight::kSend) Throw(env, "E_HANDLE_TYPE", "only a send right can be duplicated");
  kern_return_t kr = ::mach_port_mod_refs(mach_task_self(), name_, MACH_PORT_RIGHT_SEND, 1);
  if (kr == KERN_INVALID_RIGHT) kr = ::mach_port_mod_refs(mach_task_self(), name_, MACH_PORT_RIGHT_DEAD_NAME, 1);
  if (kr != KERN_SUCCESS) ThrowMach(env, "E_SYSTEM", "mach_port_mod_refs(+1)", kr);
  return Wrap(env, name_, MachRight::kSend);
}

Napi::Value NativeMachPort::GetClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), name_ == MACH_PORT_NULL);
}

Napi::Value NativeMachPort::GetDebugName(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), name_);
}

// ---------------------------------------------------------------------------------------------
// Wire formats

namespace {

constexpr mach_msg_id_t kConnectId = 0x534C4301;  // 'SLC' 1
constexpr mach_msg_id_t kPortsId = 0x534C5001;    // 'SLP' 1
constexpr size_t kNonceSize = 16;
constexpr size_t kAuditTokenSize = 32;
constexpr size_t kKeySize = 8;
constexpr uint32_t kMaxPorts = 4;
constexpr mach_port_msgcount_t kQueueLimit = 64;   // messages a port queues (the default is 5)
constexpr mach_msg_timeout_t kConnectTimeoutMs = 1000;
constexpr int kMaxMessagesPerWakeup = 64;           // then the source fires again
constexpr size_t kMaxEventsQueued = 1024;           // per thread-safe function; beyond: dropped
constexpr size_t kMaxPrefix = 64;
constexpr size_t kMaxInbox = 64;                     // PORTS messages waiting for take(); beyond: dropped
constexpr uint64_t kMaxTakeTimeoutMs = 60000;
constexpr int kMaxDrainOnClose = 4096;                // queued messages destroyed when closing

#pragma pack(push, 4)
struct ConnectMessage {
  mach_msg_header_t header;
  mach_msg_body_t body;
  mach_msg_port_descriptor_t client;
  uint8_t nonce[kNonceSize];
};
#pragma pack(pop)

static_assert(sizeof(mach_msg_header_t) == 24, "mach_msg_header_t");
static_assert(sizeof(mach_msg_body_t) == 4, "mach_msg_body_t");
static_assert(sizeof(mach_msg_port_descriptor_t) == 12, "mach_msg_port_descriptor_t");
static_assert(sizeof(ConnectMessage) == 56, "CONNECT is 56 bytes");
static_assert(sizeof(audit_token_t) == kAuditTokenSize, "audit_token_t is 32 bytes");

constexpr size_t kDescriptorsOffset = sizeof(mach_msg_header_t) + sizeof(mach_msg_body_t);

constexpr size_t PortsSize(uint32_t count) {
  return kDescriptorsOffset + count * sizeof(mach_msg_port_descriptor_t) + kKeySize;
}

// Room for the largest valid message and the largest trailer, with margin; anything larger is
// MACH_RCV_TOO_LARGE (destroyed by the kernel: no MACH_RCV_LARGE).
union ReceiveBuffer {
  mach_msg_header_t header;
  alignas(8) uint8_t bytes[512];
};
static_assert(PortsSize(kMaxPorts) + sizeof(mach_msg_max_trailer_t) <= sizeof(ReceiveBuffer), "receive buffer");

// A PORTS message being built.
union PortsBuffer {
  mach_msg_header_t header;
  alignas(8) uint8_t bytes[PortsSize(kMaxPorts)];
};

constexpr mach_msg_option_t kReceiveOptions = MACH_RCV_MSG | MACH_RCV_TIMEOUT |
                                              MACH_RCV_TRAILER_TYPE(MACH_MSG_TRAILER_FORMAT_0) |
                                              MACH_RCV_TRAILER_ELEMENTS(MACH_RCV_TRAILER_AUDIT);

// [A-Za-z0-9._-]
bool IsNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
         c == '-';
}

bool IsValidName(const std::string& name, size_t max) {
  if (name.empty() || name.size() > max) return false;
  for (char c : name)
    if (!IsNameChar(c)) return false;
  return true;
}

// Best effort: a deeper queue than the default 5 messages before senders see it full.
void RaiseQueueLimit(mach_port_name_t port) {
  mach_port_limits_t limits{};
  limits.mpl_qlimit = kQueueLimit;
  ::mach_port_set_attributes(mach_task_self(), port, MACH_PORT_LIMITS_INFO,
                             reinterpret_cast<mach_port_info_t>(&limits), MACH_PORT_LIMITS_INFO_COUNT);
}

// Sends a message this process built with COPY_SEND/MAKE_SEND dispositions only. On failure the
// message is mach_msg_destroy()ed: when the kernel copied it in and then could not queue it
// (MACH_SEND_TIMED_OUT …) it "pseudo-received" it back into the buffer, giving this task an extra
// reference of every right in it, which destroy drops; when it failed before copying anything
// in, destroy does nothing for COPY_SEND and nets to nothing for MAKE_SEND. No leak either way.
mach_msg_return_t SendMessage(mach_msg_header_t* header, mach_msg_size_t size, mach_msg_timeout_t timeout) {
  mach_msg_return_t mr =
      ::mach_msg(header, MACH_SEND_MSG | MACH_SEND_TIMEOUT, size, 0, MACH_PORT_NULL, timeout, MACH_PORT_NULL);
  if (mr != MACH_MSG_SUCCESS) ::mach_msg_destroy(header);
  return mr;
}

// ---------------------------------------------------------------------------------------------
// Receiving

// What a receiver hands to JS. Owns the send rights in `ports` until taken.
struct Event {
  enum class Type { kConnect, kPorts, kError };
  Type type = Type::kError;
  uint8_t nonce[kNonceSize] = {};
  uint8_t audit[kAuditTokenSize] = {};
  uint64_t key = 0;
  mach_port_name_t ports[kMaxPorts] = {};
  uint32_t port_count = 0;
  std::string code;
  std::string message;
  kern_return_t kr = 0;

  Event() = default;
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
  ~Event() {
    for (uint32_t i = 0; i < port_count; i++) NativeMachPort::Drop(ports[i], MachRight::kSend);
  }
  mach_port_name_t Take(uint32_t i) {
    mach_port_name_t name = ports[i];
    ports[i] = MACH_PORT_NULL;
    return name;
  }
};

class Receiver;

// The JS side of a receiver: its callbacks. The thread-safe function's context; deleted by its
// finalizer, on the JS thread.
struct JsSide {
  std::shared_ptr<Receiver> receiver;
  Napi::FunctionReference on_event;
  Napi::FunctionReference on_error;
  std::unique_ptr<Napi::AsyncContext> async_context;
};

class Receiver {
 public:
  enum class Kind { kService, kClient };

  // `inbox`: a client whose PORTS wait for Take() instead of going to onPorts.
  Receiver(Kind kind, mach_port_name_t port, bool inbox = false) : kind_(kind), inbox_mode_(inbox), port_(port) {}

  // JS thread: starts listening on the receive right this object was made with (owned from
  // now on). On failure the right is destroyed and this throws.
  // `on_event` / `on_error` may be empty (inbox mode; no error reports).
  static void Start(Napi::Env env, const std::shared_ptr<Receiver>& self, Napi::Function on_event,
                    Napi::Function on_error, const char* resource_name);

  // Stops listening (the receive right is destroyed on the queue). Idempotent; any thread.
  void Close();
  bool closed() const { return closed_.load(); }
  bool inbox_mode() const { return inbox_mode_; }

  // JS thread, inbox mode: the PORTS event with `key`, waiting up to `timeout` for it; null on
  // timeout or once closed. Discards whatever is queued with a smaller key.
  std::unique_ptr<Event> Take(uint64_t key, std::chrono::milliseconds timeout);

 private:
  static void OnEvent(void* context);
  static void OnCancel(void* context);
  static void CallJs(napi_env raw_env, napi_value js_cb, void* context, void* data);
  static void Finalize(napi_env env, void* finalize_data, void* hint);

  // Queue: receives what is pending (bounded), validates, posts.
  void Drain();
  // Queue: the message in `buffer` as an Event, or null when invalid (`why` says why); the
  // caller destroys an invalid message.
  std::unique_ptr<Event> ParseConnect(ReceiveBuffer& buffer, mach_msg_size_t size, const char** why);
  std::unique_ptr<Event> ParsePorts(ReceiveBuffer& buffer, mach_msg_size_t size, const char** why);
  // Queue: hands `event` to JS, or drops it (and its rights).
  void Post(std::unique_ptr<Event> event);
  // Queue: one dropped message or failure; reports at most one onError a second.
  void Report(const char* code, const std::string& message, kern_return_t kr);

  const Kind kind_;
  const bool inbox_mode_;
  mach_port_name_t port_;  // the receive right; destroyed by OnCancel (or by Start on failure)
  dispatch_queue_t queue_ = nullptr;
  dispatch_source_t source_ = nullptr;
  std::atomic<bool> closed_{false};

  std::mutex lock_;                          // guards tsfn_ and cancelled_
  napi_threadsafe_function tsfn_ = nullptr;  // null once released, closing, or finalized
  bool cancelled_ = false;                   // dispatch_source_cancel called (or no source)

  // The queue's own (serial): the onError bound.
  bool reported_ = false;
  std::chrono::steady_clock::time_point last_report_{};
  uint64_t dropped_ = 0;

  // Inbox mode: PORTS events in arrival order, filled by the queue, emptied by Take().
  std::mutex inbox_lock_;
  std::condition_variable inbox_cv_;
  std::deque<std::unique_ptr<Event>> inbox_;
};

void Receiver::Start(Napi::Env env, const std::shared_ptr<Receiver>& self, Napi::Function on_event,
                     Napi::Function on_error, const char* resource_name) {
  JsSide* js = nullptr;
  try {
    js = new JsSide{self, Napi::FunctionReference(), Napi::FunctionReference(),
                    std::make_unique<Napi::AsyncContext>(env, resource_name)};
    if (!on_event.IsEmpty()) js->on_event = Napi::Persistent(on_event);
    if (!on_error.IsEmpty()) js->on_error = Napi::Persistent(on_error);
  } catch (...) {
    delete js;
    self->cancelled_ = true;
    NativeMachPort::Drop(self->port_, MachRight::kReceive);
    self->port_ = MACH_PORT_NULL;
    throw;
  }
  napi_threadsafe_function tsfn = nullptr;
  napi_status status =
      napi_create_threadsafe_function(env, nullptr, nullptr, Napi::String::New(env, resource_name), kMaxEventsQueued,
                                      1, js, &Receiver::Finalize, js, &Receiver::CallJs, &tsfn);
  if (status != napi_ok) {
    delete js;
    self->cancelled_ = true;
    NativeMachPort::Drop(self->port_, MachRight::kReceive);
    self->port_ = MACH_PORT_NULL;
    Throw(env, "E_SYSTEM", "napi_create_threadsafe_function failed");
  }
  // The session's socket keeps the loop alive; a listener alone does not.
  napi_unref_threadsafe_function(env, tsfn);

  const char* label = self->kind_ == Kind::kService ? "surfacelink.mach.service" : "surfacelink.mach.client";
  dispatch_queue_t queue = ::dispatch_queue_create(label, DISPATCH_QUEUE_SERIAL);
  dispatch_source_t source =
      queue != nullptr ? ::dispatch_source_create(DISPATCH_SOURCE_TYPE_MACH_RECV, self->port_, 0, queue) : nullptr;
  if (source == nullptr) {
    if (queue != nullptr) ::dispatch_release(queue);
    {
      std::lock_guard<std::mutex> guard(self->lock_);
      self->cancelled_ = true;  // nothing to cancel: the finalizer must not try
    }
    napi_release_threadsafe_function(tsfn, napi_tsfn_abort);  // the finalizer deletes `js`
    NativeMachPort::Drop(self->port_, MachRight::kReceive);
    self->port_ = MACH_PORT_NULL;
    Throw(env, "E_SYSTEM", "dispatch_source_create(DISPATCH_SOURCE_TYPE_MACH_RECV) failed");
  }
  {
    std::lock_guard<std::mutex> guard(self->lock_);
    self->tsfn_ = tsfn;
    self->queue_ = queue;
    self->source_ = source;
  }
  // The source's own reference; deleted by OnCancel.
  ::dispatch_set_context(source, new std::shared_ptr<Receiver>(self));
  ::dispatch_source_set_event_handler_f(source, &Receiver::OnEvent);
  ::dispatch_source_set_cancel_handler_f(source, &Receiver::OnCancel);
  ::dispatch_resume(source);
}

void Receiver::Close() {
  closed_ = true;
  {
    std::lock_guard<std::mutex> guard(inbox_lock_);
    inbox_.clear();  // drops the rights nobody took
  }
  inbox_cv_.notify_all();
  std::lock_guard<std::mutex> guard(lock_);
  if (cancelled_) return;
  cancelled_ = true;
  ::dispatch_source_cancel(source_);
}

std::unique_ptr<Event> Receiver::Take(uint64_t key, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock<std::mutex> guard(inbox_lock_);
  for (;;) {
    for (auto it = inbox_.begin(); it != inbox_.end();) {
      if ((*it)->key == key) {
        std::unique_ptr<Event> event = std::move(*it);
        inbox_.erase(it);
        return event;
      }
      if ((*it)->key < key)
        it = inbox_.erase(it);  // never to be taken: its rights are dropped
      else
        ++it;
    }
    if (closed_ || inbox_cv_.wait_until(guard, deadline) == std::cv_status::timeout) {
      if (closed_) return nullptr;
      // One last look: it may have arrived with the timeout.
      for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
        if ((*it)->key == key) {
          std::unique_ptr<Event> event = std::move(*it);
          inbox_.erase(it);
          return event;
        }
      }
      return nullptr;
    }
  }
}

void Receiver::OnEvent(void* context) { static_cast<std::shared_ptr<Receiver>*>(context)->get()->Drain(); }

// Runs once the event handler can no longer run: only now may the receive right go.
void Receiver::OnCancel(void* context) {
  auto* holder = static_cast<std::shared_ptr<Receiver>*>(context);
  Receiver* self = holder->get();
  // Destroy what is still queued, with the rights in it, before the receive right goes. Dropping
  // the right would destroy them too, except where launchd armed a port-destroyed notification on
  // a checked-in service port: then the right (and its queue) goes back to launchd instead.
  for (int i = 0; i < kMaxDrainOnClose; i++) {
    ReceiveBuffer buffer;
    std::memset(&buffer.header, 0, sizeof buffer.header);
    mach_msg_return_t mr =
        ::mach_msg(&buffer.header, MACH_RCV_MSG | MACH_RCV_TIMEOUT, 0, sizeof buffer, self->port_, 0, MACH_PORT_NULL);
    if (mr == MACH_MSG_SUCCESS)
      ::mach_msg_destroy(&buffer.header);
    else if (mr != MACH_RCV_TOO_LARGE && mr != MACH_RCV_INTERRUPTED && (mr & ~MACH_MSG_MASK) != MACH_RCV_HEADER_ERROR &&
             (mr & ~MACH_MSG_MASK) != MACH_RCV_BODY_ERROR)
      break;  // MACH_RCV_TIMED_OUT: empty
  }
  NativeMachPort::Drop(self->port_, MachRight::kReceive);
  self->port_ = MACH_PORT_NULL;
  {
    // Under the lock: the finalizer (environment teardown) may be nulling tsfn_ right now.
    std::lock_guard<std::mutex> guard(self->lock_);
    if (self->tsfn_ != nullptr) napi_release_threadsafe_function(self->tsfn_, napi_tsfn_release);
    self->tsfn_ = nullptr;
  }
  ::dispatch_release(self->source_);
  ::dispatch_release(self->queue_);
  delete holder;
}

void Receiver::Finalize(napi_env /*env*/, void* finalize_data, void* /*hint*/) {
  auto* js = static_cast<JsSide*>(finalize_data);
  Receiver* self = js->receiver.get();
  {
    std::lock_guard<std::mutex> guard(self->lock_);
    self->tsfn_ = nullptr;
    if (!self->cancelled_) {  // the environment is going away with the listener open
      self->cancelled_ = true;
      self->closed_ = true;
      ::dispatch_source_cancel(self->source_);
    }
  }
  delete js;
}

void Receiver::CallJs(napi_env raw_env, napi_value /*js_cb*/, void* context, void* data) {
  std::unique_ptr<Event> event(static_cast<Event*>(data));
  // Null env: the function is being torn down, and `context` may already be gone.
  if (raw_env == nullptr || event == nullptr) return;
  auto* js = static_cast<JsSide*>(context);
  if (js->receiver->closed() || !CanCallIntoJs(raw_env)) return;  // the event's rights are dropped
  Napi::FunctionReference& target = event->type == Event::Type::kError ? js->on_error : js->on_event;
  if (target.IsEmpty()) return;  // inbox mode without onError
  Napi::Env env(raw_env);
  Napi::HandleScope scope(env);
  napi_async_context async = static_cast<napi_async_context>(*js->async_context);
  try {
    switch (event->type) {
      case Event::Type::kConnect: {
        Napi::Object client = NativeMachPort::Wrap(env, event->Take(0), MachRight::kSend);
        Napi::Value nonce = Napi::Buffer<uint8_t>::Copy(env, event->nonce, kNonceSize);
        Napi::Value audit = Napi::Buffer<uint8_t>::Copy(env, event->audit, kAuditTokenSize);
        CallFromLoop(env, js->on_event.Value(), async, {nonce, audit, client});
        break;
      }
      case Event::Type::kPorts: {
        Napi::Array ports = Napi::Array::New(env, event->port_count);
        for (uint32_t i = 0; i < event->port_count; i++)
          ports.Set(i, NativeMachPort::Wrap(env, event->Take(i), MachRight::kSend));
        Napi::Value key = Napi::BigInt::New(env, event->key);
        CallFromLoop(env, js->on_event.Value(), async, {key, ports});
        break;
      }
      case Event::Type::kError: {
        CallFromLoop(env, js->on_error.Value(), async,
                     {Napi::String::New(env, event->code), Napi::String::New(env, event->message),
                      Napi::Number::New(env, event->kr)});
        break;
      }
    }
  } catch (const Napi::Error& e) {
    napi_fatal_exception(raw_env, e.Value());
  }
}

void Receiver::Post(std::unique_ptr<Event> event) {
  if (inbox_mode_ && event->type == Event::Type::kPorts) {
    {
      std::lock_guard<std::mutex> guard(inbox_lock_);
      if (closed_ || inbox_.size() >= kMaxInbox) return;  // dropped with its rights
      inbox_.push_back(std::move(event));
    }
    inbox_cv_.notify_all();
    return;
  }
  std::lock_guard<std::mutex> guard(lock_);
  if (tsfn_ == nullptr) return;  // dropped with its rights
  napi_status status = napi_call_threadsafe_function(tsfn_, event.get(), napi_tsfn_nonblocking);
  if (status == napi_ok) {
    event.release();  // CallJs owns it now
    return;
  }
  // napi_closing: the function is going away and counted this thread out; never call it again.
  if (status != napi_queue_full) tsfn_ = nullptr;
}

void Receiver::Report(const char* code, const std::string& message, kern_return_t kr) {
  dropped_++;
  auto now = std::chrono::steady_clock::now();
  if (reported_ && now - last_report_ < std::chrono::seconds(1)) return;
  auto event = std::make_unique<Event>();
  event->type = Event::Type::kError;
  event->code = code;
  event->message = message;
  if (dropped_ > 1) event->message += " (" + std::to_string(dropped_) + " dropped or failed since the last report)";
  event->kr = kr;
  reported_ = true;
  last_report_ = now;
  dropped_ = 0;
  Post(std::move(event));
}

void Receiver::Drain() {
  for (int i = 0; i < kMaxMessagesPerWakeup; i++) {
    ReceiveBuffer buffer;
    std::memset(&buffer.header, 0, sizeof buffer.header);
    mach_msg_return_t mr = ::mach_msg(&buffer.header, kReceiveOptions, 0, sizeof buffer, port_, 0, MACH_PORT_NULL);
    if (mr == MACH_RCV_TIMED_OUT) return;  // nothing more queued
    if (mr == MACH_RCV_INTERRUPTED) continue;
    if (mr == MACH_RCV_TOO_LARGE) {  // destroyed by the kernel
      Report("E_MALFORMED", "a Mach message larger than " + std::to_string(sizeof buffer) + " bytes was dropped", 0);
      continue;
    }
    if (mr == MACH_RCV_INVALID_NAME || mr == MACH_RCV_PORT_DIED || mr == MACH_RCV_PORT_CHANGED) return;  // closing
    if (mr != MACH_MSG_SUCCESS) {
      // MACH_RCV_HEADER_ERROR / MACH_RCV_BODY_ERROR (e.g. no room for a right): the kernel destroyed it.
      Report("E_SYSTEM", "mach_msg(MACH_RCV_MSG) failed: " + KernReturnText(mr), mr);
      if ((mr & ~MACH_MSG_MASK) == MACH_RCV_HEADER_ERROR || (mr & ~MACH_MSG_MASK) == MACH_RCV_BODY_ERROR) continue;
      return;
    }
    mach_msg_size_t size = buffer.header.msgh_size;
    const char* why = nullptr;
    std::unique_ptr<Event> event =
        kind_ == Kind::kService ? ParseConnect(buffer, size, &why) : ParsePorts(buffer, size, &why);
    if (event == nullptr) {
      ::mach_msg_destroy(&buffer.header);
      char id[16];
      std::snprintf(id, sizeof id, "0x%08x", static_cast<unsigned>(buffer.header.msgh_id));
      Report("E_MALFORMED", std::string("an invalid Mach message (id ") + id + ") was dropped: " + why, 0);
      continue;
    }
    Post(std::move(event));
  }
}

// The checks both message kinds share: id, complex, no reply right, descriptor count in
// [1, max_count], exact size. Returns the count, or 0 (and `*why`).
uint32_t CheckShape(const ReceiveBuffer& buffer, mach_msg_size_t size, mach_msg_id_t id, uint32_t max_count,
                    size_t (*expected_size)(uint32_t), const char** why) {
  const mach_msg_header_t& h = buffer.header;
  if (h.msgh_id != id) {
    *why = "unexpected msgh_id";
    return 0;
  }
  if ((h.msgh_bits & MACH_MSGH_BITS_COMPLEX) == 0) {
    *why = "not a complex message";
    return 0;
  }
  if (MACH_MSGH_BITS_REMOTE(h.msgh_bits) != 0 || MACH_PORT_VALID(h.msgh_remote_port)) {
    *why = "it carries a reply right";
    return 0;
  }
  if (size < kDescriptorsOffset || size > sizeof buffer.bytes) {
    *why = "bad size";
    return 0;
  }
  mach_msg_body_t body;
  std::memcpy(&body, buffer.bytes + sizeof(mach_msg_header_t), sizeof body);
  if (body.msgh_descriptor_count < 1 || body.msgh_descriptor_count > max_count) {
    *why = "bad descriptor count";
    return 0;
  }
  if (size != expected_size(body.msgh_descriptor_count)) {
    *why = "bad size";
    return 0;
  }
  return body.msgh_descriptor_count;
}

// Descriptor `i` as a send right's name, or MACH_PORT_NULL when it is anything else.
mach_port_name_t SendRightAt(const ReceiveBuffer& buffer, uint32_t i) {
  mach_msg_port_descriptor_t d;
  std::memcpy(&d, buffer.bytes + kDescriptorsOffset + i * sizeof d, sizeof d);
  if (d.type != MACH_MSG_PORT_DESCRIPTOR || d.disposition != MACH_MSG_TYPE_PORT_SEND || !MACH_PORT_VALID(d.name))
    return MACH_PORT_NULL;
  return d.name;
}

size_t ConnectSize(uint32_t /*count*/) { return sizeof(ConnectMessage); }

std::unique_ptr<Event> Receiver::ParseConnect(ReceiveBuffer& buffer, mach_msg_size_t size, const char** why) {
  if (CheckShape(buffer, size, kConnectId, 1, ConnectSize, why) == 0) return nullptr;
  mach_port_name_t client = SendRightAt(buffer, 0);
  if (client == MACH_PORT_NULL) {
    *why = "the descriptor is not a send right";
    return nullptr;
  }
  // The audit trailer follows the message, at its size rounded up to 4 bytes.
  size_t trailer_at = (static_cast<size_t>(size) + 3) & ~static_cast<size_t>(3);
  if (trailer_at + sizeof(mach_msg_audit_trailer_t) > sizeof buffer.bytes) {
    *why = "no room for the audit trailer";
    return nullptr;
  }
  mach_msg_audit_trailer_t trailer;
  std::memcpy(&trailer, buffer.bytes + trailer_at, sizeof trailer);
  if (trailer.msgh_trailer_type != MACH_MSG_TRAILER_FORMAT_0 ||
      trailer.msgh_trailer_size < sizeof(mach_msg_audit_trailer_t)) {
    *why = "no audit trailer";
    return nullptr;
  }
  auto event = std::make_unique<Event>();
  event->type = Event::Type::kConnect;
  std::memcpy(event->nonce, buffer.bytes + offsetof(ConnectMessage, nonce), kNonceSize);
  std::memcpy(event->audit, &trailer.msgh_audit, kAuditTokenSize);
  event->ports[0] = client;  // from now on owned by the event (the buffer is not destroyed)
  event->port_count = 1;
  return event;
}

std::unique_ptr<Event> Receiver::ParsePorts(ReceiveBuffer& buffer, mach_msg_size_t size, const char** why) {
  uint32_t count = CheckShape(buffer, size, kPortsId, kMaxPorts, PortsSize, why);
  if (count == 0) return nullptr;
  mach_port_name_t names[kMaxPorts] = {};
  for (uint32_t i = 0; i < count; i++) {
    names[i] = SendRightAt(buffer, i);
    if (names[i] == MACH_PORT_NULL) {
      *why = "a descriptor is not a send right";
      return nullptr;
    }
  }
  auto event = std::make_unique<Event>();
  event->type = Event::Type::kPorts;
  const uint8_t* key = buffer.bytes + kDescriptorsOffset + count * sizeof(mach_msg_port_descriptor_t);
  for (size_t b = 0; b < kKeySize; b++) event->key |= static_cast<uint64_t>(key[b]) << (8 * b);
  for (uint32_t i = 0; i < count; i++) event->ports[i] = names[i];
  event->port_count = count;
  return event;
}

// ---------------------------------------------------------------------------------------------
// NativeMachService / NativeMachClient

struct EndpointInit {
  std::shared_ptr<Receiver> receiver;
  std::string name;
  bool taken = false;
};

// Makes the JS object for `init` with `ctor`; if that fails, the receiver is closed.
Napi::Object WrapEndpoint(Napi::Env env, Napi::Function ctor, EndpointInit* init) {
  try {
    return ctor.New({Napi::External<EndpointInit>::New(env, init)});
  } catch (...) {
    if (!init->taken) init->receiver->Close();
    throw;
  }
}

class NativeMachService : public Napi::ObjectWrap<NativeMachService> {
 public:
  static Napi::Function Constructor(Napi::Env env) {
    MacosEnvData& data = GetMacosEnvData(env);
    if (data.mach_service_ctor.IsEmpty()) {
      data.mach_service_ctor = Napi::Persistent(
          DefineClass(env, "NativeMachService",
                      {
                          InstanceMethod<&NativeMachService::Close>("close"),
                          InstanceAccessor<&NativeMachService::GetName>("name"),
                          InstanceAccessor<&NativeMachService::GetClosed>("closed"),
                      }));
    }
    return data.mach_service_ctor.Value();
  }

  explicit NativeMachService(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeMachService>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      Throw(info.Env(), "E_INVALID_ARGUMENT", "NativeMachService cannot be constructed from JavaScript");
    EndpointInit* init = info[0].As<Napi::External<EndpointInit>>().Data();
    receiver_ = init->receiver;
    name_ = init->name;
    init->taken = true;
  }

  ~NativeMachService() override {
    if (receiver_) receiver_->Close();
  }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    receiver_->Close();
    return info.Env().Undefined();
  }
  Napi::Value GetName(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), name_); }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), receiver_->closed()); }

  std::shared_ptr<Receiver> receiver_;
  std::string name_;
};

class NativeMachClient : public Napi::ObjectWrap<NativeMachClient> {
 public:
  static Napi::Function Constructor(Napi::Env env) {
    MacosEnvData& data = GetMacosEnvData(env);
    if (data.mach_client_ctor.IsEmpty()) {
      data.mach_client_ctor =
          Napi::Persistent(DefineClass(env, "NativeMachClient",
                                       {
                                           InstanceMethod<&NativeMachClient::Close>("close"),
                                           InstanceMethod<&NativeMachClient::Take>("take"),
                                           InstanceAccessor<&NativeMachClient::GetClosed>("closed"),
                                       }));
    }
    return data.mach_client_ctor.Value();
  }

  explicit NativeMachClient(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeMachClient>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      Throw(info.Env(), "E_INVALID_ARGUMENT", "NativeMachClient cannot be constructed from JavaScript");
    EndpointInit* init = info[0].As<Napi::External<EndpointInit>>().Data();
    receiver_ = init->receiver;
    init->taken = true;
  }

  ~NativeMachClient() override {
    if (receiver_) receiver_->Close();
  }

 private:
  Napi::Value Close(const Napi::CallbackInfo& info) {
    receiver_->Close();
    return info.Env().Undefined();
  }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), receiver_->closed()); }

  // take(key, timeoutMs) -> NativeMachPort[] | null: the PORTS message with `key` from the inbox,
  // waiting (blocking this thread) up to timeoutMs for it; null on timeout. Discards queued
  // messages with a smaller key. Only for a client made without onPorts (E_UNEXPECTED).
  Napi::Value Take(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsBigInt()) Throw(env, "E_INVALID_ARGUMENT", "take(key: bigint, timeoutMs: number)");
    bool lossless = false;
    uint64_t key = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) Throw(env, "E_INVALID_ARGUMENT", "key must be a u64 (0 to 2^64-1)");
    if (!info[1].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "timeoutMs must be a number");
    double timeout = info[1].As<Napi::Number>().DoubleValue();
    if (!(timeout >= 0) || timeout != std::floor(timeout) || timeout > static_cast<double>(kMaxTakeTimeoutMs))
      Throw(env, "E_INVALID_ARGUMENT", "timeoutMs must be an integer from 0 to 60000");
    if (!receiver_->inbox_mode())
      Throw(env, "E_UNEXPECTED", "take() is for a client made without onPorts (its ports go to onPorts)");
    if (receiver_->closed()) Throw(env, "E_CLOSED", "the client is closed");
    std::unique_ptr<Event> event =
        receiver_->Take(key, std::chrono::milliseconds(static_cast<int64_t>(timeout)));
    if (event == nullptr) {
      if (receiver_->closed()) Throw(env, "E_CLOSED", "the client is closed");
      return env.Null();
    }
    Napi::Array ports = Napi::Array::New(env, event->port_count);
    for (uint32_t i = 0; i < event->port_count; i++)
      ports.Set(i, NativeMachPort::Wrap(env, event->Take(i), MachRight::kSend));
    return ports;
  }

  std::shared_ptr<Receiver> receiver_;
};

// ---------------------------------------------------------------------------------------------
// Module functions

Napi::Function RequireFunction(Napi::Env env, Napi::Value value, const char* name) {
  if (!value.IsFunction()) Throw(env, "E_INVALID_ARGUMENT", std::string(name) + " must be a function");
  return value.As<Napi::Function>();
}

// machService(prefix, onConnect, onError) -> NativeMachService
Napi::Value MachService(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) Throw(env, "E_INVALID_ARGUMENT", "machService(prefix: string, onConnect, onError)");
  std::string prefix = info[0].As<Napi::String>().Utf8Value();
  if (!IsValidName(prefix, kMaxPrefix))
    Throw(env, "E_INVALID_ARGUMENT", "prefix must be 1 to 64 characters of [A-Za-z0-9._-]");
  Napi::Function on_connect = RequireFunction(env, info[1], "onConnect");
  Napi::Function on_error = RequireFunction(env, info[2], "onError");

  uint8_t random[8];
  ::arc4random_buf(random, sizeof random);
  char suffix[2 * sizeof random + 1];
  for (size_t i = 0; i < sizeof random; i++) std::snprintf(suffix + 2 * i, 3, "%02x", random[i]);
  std::string name = prefix + "." + std::to_string(::getpid()) + "." + suffix;  // ≤ 64 + 1 + 10 + 1 + 16

  mach_port_t port = MACH_PORT_NULL;
  kern_return_t kr = ::bootstrap_check_in(bootstrap_port, name.c_str(), &port);
  if (kr != KERN_SUCCESS) ThrowMach(env, "E_SYSTEM", "bootstrap_check_in", kr, "cannot register " + name);
  RaiseQueueLimit(port);
  auto receiver = std::make_shared<Receiver>(Receiver::Kind::kService, port);
  Receiver::Start(env, receiver, on_connect, on_error, "surfacelink:MachService");  // owns `port` now
  EndpointInit init{receiver, name, false};
  return WrapEndpoint(env, NativeMachService::Constructor(env), &init);
}

// machSend(client, key, ports): one PORTS message; never blocks.
Napi::Value MachSend(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  mach_port_name_t client = NativeMachPort::Borrow(env, info[0], MachRight::kSend);
  if (!info[1].IsBigInt()) Throw(env, "E_INVALID_ARGUMENT", "key must be a bigint");
  bool lossless = false;
  uint64_t key = info[1].As<Napi::BigInt>().Uint64Value(&lossless);
  if (!lossless) Throw(env, "E_INVALID_ARGUMENT", "key must be a u64 (0 to 2^64-1)");
  if (!info[2].IsArray()) Throw(env, "E_INVALID_ARGUMENT", "ports must be an array of NativeMachPort");
  Napi::Array list = info[2].As<Napi::Array>();
  uint32_t count = list.Length();
  if (count < 1 || count > kMaxPorts) Throw(env, "E_INVALID_ARGUMENT", "ports must hold 1 to 4 send rights");
  mach_port_name_t names[kMaxPorts] = {};
  for (uint32_t i = 0; i < count; i++) names[i] = NativeMachPort::Borrow(env, list.Get(i), MachRight::kSend);

  PortsBuffer message;
  std::memset(&message, 0, sizeof message);
  message.header.msgh_bits = MACH_MSGH_BITS_SET(MACH_MSG_TYPE_COPY_SEND, 0, 0, MACH_MSGH_BITS_COMPLEX);
  message.header.msgh_size = static_cast<mach_msg_size_t>(PortsSize(count));
  message.header.msgh_remote_port = client;
  message.header.msgh_local_port = MACH_PORT_NULL;
  message.header.msgh_id = kPortsId;
  mach_msg_body_t body{};
  body.msgh_descriptor_count = count;
  std::memcpy(message.bytes + sizeof(mach_msg_header_t), &body, sizeof body);
  for (uint32_t i = 0; i < count; i++) {
    mach_msg_port_descriptor_t d{};
    d.name = names[i];
    d.disposition = MACH_MSG_TYPE_COPY_SEND;  // the caller keeps its rights
    d.type = MACH_MSG_PORT_DESCRIPTOR;
    std::memcpy(message.bytes + kDescriptorsOffset + i * sizeof d, &d, sizeof d);
  }
  uint8_t* key_bytes = message.bytes + kDescriptorsOffset + count * sizeof(mach_msg_port_descriptor_t);
  for (size_t b = 0; b < kKeySize; b++) key_bytes[b] = static_cast<uint8_t>(key >> (8 * b));

  mach_msg_return_t mr = SendMessage(&message.header, message.header.msgh_size, 0);
  if (mr == MACH_MSG_SUCCESS) return env.Undefined();
  if (mr == MACH_SEND_TIMED_OUT)
    throw MakeMachError(env, "E_BACKPRESSURE", "mach_msg(MACH_SEND_MSG)", mr, "the client's queue is full");
  if (mr == MACH_SEND_INVALID_DEST)
    throw MakeMachError(env, "E_PEER_CLOSED", "mach_msg(MACH_SEND_MSG)", mr, "the client is gone");
  ThrowMach(env, "E_SYSTEM", "mach_msg(MACH_SEND_MSG)", mr, "cannot send PORTS");
}

// machConnect(name, nonce, onPorts, onError) -> NativeMachClient
Napi::Value MachConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) Throw(env, "E_INVALID_ARGUMENT", "machConnect(name: string, nonce, onPorts, onError)");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  if (!IsValidName(name, apple::kBootstrapMaxNameLen - 1))
    Throw(env, "E_INVALID_ARGUMENT", "name must be 1 to 127 characters of [A-Za-z0-9._-]");
  if (!info[1].IsTypedArray() || info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
    Throw(env, "E_INVALID_ARGUMENT", "nonce must be a Buffer");
  Napi::Uint8Array nonce = info[1].As<Napi::Uint8Array>();
  if (nonce.ByteLength() != kNonceSize) Throw(env, "E_INVALID_ARGUMENT", "nonce must be 16 bytes");
  // Both callbacks are optional: without onPorts, PORTS messages wait for client.take().
  Napi::Function on_ports = info[2].IsUndefined() ? Napi::Function() : RequireFunction(env, info[2], "onPorts");
  Napi::Function on_error = info[3].IsUndefined() ? Napi::Function() : RequireFunction(env, info[3], "onError");

  mach_port_t service = MACH_PORT_NULL;
  kern_return_t kr = ::bootstrap_look_up(bootstrap_port, name.c_str(), &service);
  if (kr == apple::kBootstrapUnknownService)
    throw MakeMachError(env, "E_IMPORT_FAILED", "bootstrap_look_up", kr, "no service named " + name);
  if (kr != KERN_SUCCESS) ThrowMach(env, "E_SYSTEM", "bootstrap_look_up", kr, "cannot look up " + name);

  mach_port_name_t port = MACH_PORT_NULL;
  kr = ::mach_port_allocate(mach_task_self(), MACH_PORT_RIGHT_RECEIVE, &port);
  if (kr != KERN_SUCCESS) {
    NativeMachPort::Drop(service, MachRight::kSend);
    ThrowMach(env, "E_SYSTEM", "mach_port_allocate(MACH_PORT_RIGHT_RECEIVE)", kr);
  }
  RaiseQueueLimit(port);

  ConnectMessage message;
  std::memset(&message, 0, sizeof message);
  message.header.msgh_bits = MACH_MSGH_BITS_SET(MACH_MSG_TYPE_COPY_SEND, 0, 0, MACH_MSGH_BITS_COMPLEX);
  message.header.msgh_size = sizeof message;
  message.header.msgh_remote_port = service;
  message.header.msgh_local_port = MACH_PORT_NULL;
  message.header.msgh_id = kConnectId;
  message.body.msgh_descriptor_count = 1;
  message.client.name = port;
  message.client.disposition = MACH_MSG_TYPE_MAKE_SEND;  // the service gets the only send right
  message.client.type = MACH_MSG_PORT_DESCRIPTOR;
  std::memcpy(message.nonce, nonce.Data(), kNonceSize);
  mach_msg_return_t mr = SendMessage(&message.header, sizeof message, kConnectTimeoutMs);
  NativeMachPort::Drop(service, MachRight::kSend);  // only needed for this one message
  if (mr != MACH_MSG_SUCCESS) {
    NativeMachPort::Drop(port, MachRight::kReceive);
    if (mr == MACH_SEND_INVALID_DEST)
      throw MakeMachError(env, "E_PEER_CLOSED", "mach_msg(MACH_SEND_MSG)", mr, "the service " + name + " is gone");
    if (mr == MACH_SEND_TIMED_OUT)
      throw MakeMachError(env, "E_BACKPRESSURE", "mach_msg(MACH_SEND_MSG)", mr,
                          "the service's queue stayed full for 1 s");
    ThrowMach(env, "E_SYSTEM", "mach_msg(MACH_SEND_MSG)", mr, "cannot send CONNECT to " + name);
  }

  auto receiver = std::make_shared<Receiver>(Receiver::Kind::kClient, port, on_ports.IsEmpty());
  Receiver::Start(env, receiver, on_ports, on_error, "surfacelink:MachClient");  // owns `port` now
  EndpointInit init{receiver, name, false};
  return WrapEndpoint(env, NativeMachClient::Constructor(env), &init);
}

void RegisterMach(Napi::Env env, Napi::Object exports) {
  exports.Set("machService", Napi::Function::New(env, MachService, "machService"));
  exports.Set("machSend", Napi::Function::New(env, MachSend, "machSend"));
  exports.Set("machConnect", Napi::Function::New(env, MachConnect, "machConnect"));
}

}  // namespace

SURFACELINK_MODULE(mach, RegisterMach);

}  // namespace surfacelink
