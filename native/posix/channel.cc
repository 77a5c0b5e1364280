#include "channel.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "../common/addon.h"
#include "../common/modules.h"
#include "../common/errors.h"
#include "../common/js_call.h"
#include "native_fd.h"

namespace surfacelink {

namespace {

uint32_t ReadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) |
         (static_cast<uint32_t>(p[2]) << 16) | (static_cast<uint32_t>(p[3]) << 24);
}

bool IsWouldBlock(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

// Calls a JS callback from a libuv callback (see js_call.h).
void CallFromLoop(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext* context,
                  const std::initializer_list<napi_value>& args) {
  if (fn.IsEmpty()) return;
  surfacelink::CallFromLoop(env, fn.Value(), context ? static_cast<napi_async_context>(*context) : nullptr, args);
}

uv_loop_t* LoopOf(Napi::Env env) {
  uv_loop_t* loop = nullptr;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok || loop == nullptr)
    Throw(env, "E_SYSTEM", "no libuv loop for this environment");
  return loop;
}

void DeletePoll(uv_handle_t* handle) { delete reinterpret_cast<uv_poll_t*>(handle); }

size_t OptionalSize(Napi::Object options, const char* name, size_t fallback, size_t min, size_t max) {
  Napi::Value v = options.Get(name);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) Throw(options.Env(), "E_INVALID_ARGUMENT", std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)))
    Throw(options.Env(), "E_INVALID_ARGUMENT",
          std::string(name) + " must be between " + std::to_string(min) + " and " + std::to_string(max));
  return static_cast<size_t>(d);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Channel

Napi::Function Channel::Define(Napi::Env env) {
  return DefineClass(env, "Channel",
                     {
                         InstanceMethod<&Channel::Start>("start"),
                         InstanceMethod<&Channel::Send>("send"),
                         InstanceMethod<&Channel::Close>("close"),
                         InstanceMethod<&Channel::Ref>("ref"),
                         InstanceMethod<&Channel::Unref>("unref"),
                         InstanceAccessor<&Channel::GetPeer>("peer"),
                         InstanceAccessor<&Channel::GetQueuedBytes>("queuedBytes"),
                         InstanceAccessor<&Channel::GetSentBytes>("sentBytes"),
                         InstanceMethod<&Channel::ReadPending>("readPending"),
                         InstanceAccessor<&Channel::GetClosed>("closed"),
                     });
}

Napi::Object Channel::Wrap(Napi::Env env, UniqueFd fd) {
  int raw = fd.get();
  Napi::Object object = GetAddonData(env).channel_ctor.New({Napi::External<int>::New(env, &raw)});
  fd.release();
  return object;
}

Channel::Channel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Channel>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    Throw(info.Env(), "E_INVALID_ARGUMENT", "Channel cannot be constructed from JavaScript");
  fd_.reset(*info[0].As<Napi::External<int>>().Data());
  OsPeerCred(fd_.get(), &peer_);  // best effort: socketpair peers on some systems have none
}

Channel::~Channel() {
  // Only reachable when never started or already closed (a started channel holds a
  // reference to itself), so no JS state needs tearing down here.
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), DeletePoll);
    poll_ = nullptr;
  }
}

// start(rxBuffer, onMessage(offset, length, fds?), onError(code, message, errno), options)
Napi::Value Channel::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) Throw(env, "E_CLOSED", "the channel is closed");
  if (reading_ || failed_) Throw(env, "E_INVALID_ARGUMENT", "the channel was already started");
  if (!info[0].IsBuffer() || !info[1].IsFunction() || !info[2].IsFunction())
    Throw(env, "E_INVALID_ARGUMENT", "start(rxBuffer, onMessage, onError, options)");
  Napi::Object options = info[3].IsObject() ? info[3].As<Napi::Object>() : Napi::Object::New(env);
  max_message_ = OptionalSize(options, "maxMessage", max_message_, kHeaderSize, 16 << 20);
  max_handles_ = OptionalSize(options, "maxHandles", max_handles_, 0, kMaxHandlesHardLimit);
  max_queued_bytes_ = OptionalSize(options, "maxQueuedBytes", max_queued_bytes_, max_message_, size_t{1} << 32);
  Napi::Value stream = options.Get("stream");
  stream_ = stream.IsBoolean() && stream.As<Napi::Boolean>().Value();

  Napi::Buffer<uint8_t> rx = info[0].As<Napi::Buffer<uint8_t>>();
  if (rx.Length() < max_message_) Throw(env, "E_INVALID_ARGUMENT", "rxBuffer must hold at least maxMessage bytes");
  rx_ref_ = Napi::Reference<Napi::Buffer<uint8_t>>::New(rx, 1);
  rx_ = rx.Data();
  rx_capacity_ = rx.Length();
  on_message_ = Napi::Persistent(info[1].As<Napi::Function>());
  on_error_ = Napi::Persistent(info[2].As<Napi::Function>());
  async_context_ = std::make_unique<Napi::AsyncContext>(env, "surfacelink:Channel");
  reading_ = true;
  if (!self_ref_) {
    Napi::ObjectWrap<Channel>::Ref();  // stay alive while the loop may call us
    self_ref_ = true;
  }
  UpdatePoll();
  return env.Undefined();
}

void Channel::UpdatePoll() {
  if (closed_) return;
  int events = 0;
  if (reading_) events |= UV_READABLE | UV_DISCONNECT;
  if (!tx_.empty()) events |= UV_WRITABLE;
  if (poll_ == nullptr) {
    if (events == 0) return;
    poll_ = new uv_poll_t();
    int rc = uv_poll_init(LoopOf(Env()), poll_, fd_.get());
    if (rc != 0) {
      delete poll_;
      poll_ = nullptr;
      Throw(Env(), "E_SYSTEM", std::string("uv_poll_init failed: ") + uv_strerror(rc));
    }
    poll_->data = this;
    if (!referenced_) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  }
  if (events == 0)
    uv_poll_stop(poll_);
  else
    uv_poll_start(poll_, events, &Channel::OnPoll);
}

void Channel::OnPoll(uv_poll_t* handle, int status, int events) {
  auto* self = static_cast<Channel*>(handle->data);
  Napi::Env env = self->Env();
  if (!CanCallIntoJs(env)) {
    uv_poll_stop(handle);  // the environment is going away; its cleanup closes us
    return;
  }
  Napi::HandleScope scope(env);
  if (status < 0) {
    // libuv reports POLLERR (e.g. the peer died with data unread) as a bare error and stops
    // the handle; reading the socket tells what really happened (EOF, ECONNRESET, ...).
    self->ReadFinal();
    self->Fail("E_PEER_CLOSED", "the connection failed", 0);
    return;
  }
  if ((events & UV_WRITABLE) != 0) self->HandleWritable();
  if ((events & (UV_READABLE | UV_DISCONNECT)) != 0 && self->reading_ && !self->closed_) self->HandleReadable();
}

void Channel::ReadFinal() {
  // What the peer sent before going (typically an ERROR saying why it hung up) is still in our
  // receive buffer: deliver it, so its reason reaches JS instead of a bare E_PEER_CLOSED. Bounded:
  // a few reads; EOF or the error behind the data fails (closes) the channel.
  for (int reads = 0; reads < kFinalReads && reading_ && !closed_; reads++) HandleReadable();
}

void Channel::HandleReadable() {
  // Bounded work per wakeup so one busy peer cannot starve the loop. A message channel (a peer of
  // the surfacelink protocol, possibly hostile) gets one read per wakeup: at most the receive
  // buffer of small messages, a few milliseconds of JS; the rest waits for the next wakeup (the
  // poll is level-triggered). A byte stream (D-Bus to QEMU, whose frames can be megabytes) gets 32.
  const int reads_per_wakeup = stream_ ? 32 : 1;
  for (int reads = 0; reads < reads_per_wakeup && reading_ && !closed_; reads++) {
    size_t space = rx_capacity_ - rx_used_;
    recv_scratch_.clear();
    bool truncated = false;
    ssize_t n = OsRecv(fd_.get(), rx_ + rx_used_, space, max_handles_, &recv_scratch_, &truncated);
    if (n < 0) {
      if (IsWouldBlock(errno)) return;
      int err = errno;
      Fail(rx_used_ > 0 ? "E_TRUNCATED" : "E_PEER_CLOSED", "the connection failed", err);
      return;
    }
    for (UniqueFd& fd : recv_scratch_) rx_fds_.push_back(std::move(fd));
    recv_scratch_.clear();
    if (truncated) {
      Fail("E_HANDLE_COUNT", "the peer attached more handles than one message may carry");
      return;
    }
    if (!stream_ && rx_fds_.size() > max_handles_ * 2) {
      Fail("E_HANDLE_COUNT", "the peer sent handles that no message declares");
      return;
    }
    if (n == 0) {
      if (!stream_ && (rx_used_ > 0 || !rx_fds_.empty()))
        Fail("E_TRUNCATED", "the peer closed the connection in the middle of a message");
      else
        Fail("E_PEER_CLOSED", "the peer closed the connection");
      return;
    }
    rx_used_ += static_cast<size_t>(n);
    if (!(stream_ ? DeliverBytes() : DeliverMessages())) return;
  }
}

bool Channel::DeliverBytes() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  Napi::Value fds = env.Undefined();
  if (!rx_fds_.empty()) {
    Napi::Array array = Napi::Array::New(env, rx_fds_.size());
    for (uint32_t i = 0; !rx_fds_.empty(); i++) {
      array.Set(i, NativeFd::Wrap(env, std::move(rx_fds_.front())));
      rx_fds_.pop_front();
    }
    fds = array;
  }
  size_t length = rx_used_;
  rx_used_ = 0;  // the callback reads rx_[0, length) before the next read reuses it
  CallFromLoop(env, on_message_, async_context_.get(),
               {Napi::Number::New(env, 0), Napi::Number::New(env, static_cast<double>(length)), fds});
  return !closed_ && reading_;
}

bool Channel::DeliverMessages() {
  Napi::Env env = Env();
  size_t pos = 0;
  while (rx_used_ - pos >= kHeaderSize) {
    const uint8_t* header = rx_ + pos;
    uint32_t length = ReadU32(header);
    size_t handles = header[6];
    if (length < kHeaderSize) {
      Fail("E_MALFORMED", "a message declared a length shorter than its header");
      return false;
    }
    if (length > max_message_) {
      Fail("E_TOO_LARGE", ("a message declared " + std::to_string(length) + " bytes; the limit is " +
                           std::to_string(max_message_))
                              .c_str());
      return false;
    }
    if (handles > max_handles_) {
      Fail("E_HANDLE_COUNT", "a message declared more handles than allowed");
      return false;
    }
    if (rx_used_ - pos < length) break;  // wait for the rest
    if (rx_fds_.size() < handles) {
      Fail("E_HANDLE_COUNT", ("a message declared " + std::to_string(handles) + " handles but " +
                              std::to_string(rx_fds_.size()) + " arrived")
                                 .c_str());
      return false;
    }
    Napi::HandleScope scope(env);
    Napi::Value fds = env.Undefined();
    if (handles > 0) {
      Napi::Array array = Napi::Array::New(env, handles);
      for (size_t i = 0; i < handles; i++) {
        array.Set(static_cast<uint32_t>(i), NativeFd::Wrap(env, std::move(rx_fds_.front())));
        rx_fds_.pop_front();
      }
      fds = array;
    }
    CallFromLoop(env, on_message_, async_context_.get(),
                 {Napi::Number::New(env, static_cast<double>(pos)), Napi::Number::New(env, length), fds});
    if (closed_ || !reading_) return false;  // the callback closed or failed us: rx_ is no longer ours
    pos += length;
  }
  if (pos > 0) {
    std::memmove(rx_, rx_ + pos, rx_used_ - pos);
    rx_used_ -= pos;
  }
  if (rx_used_ == 0 && !rx_fds_.empty()) {
    Fail("E_HANDLE_COUNT", "handles arrived that no message declares");
    return false;
  }
  return true;
}

void Channel::Fail(const char* code, const char* message, int sys_errno) {
  if (failed_ || closed_) return;
  failed_ = true;
  reading_ = false;
  rx_fds_.clear();
  UpdatePoll();
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  std::string text = message;
  if (sys_errno != 0) text += std::string(": ") + std::strerror(sys_errno) + " (" + ErrnoName(sys_errno) + ")";
  CallFromLoop(env, on_error_, async_context_.get(),
               {Napi::String::New(env, code), Napi::String::New(env, text), Napi::Number::New(env, sys_errno)});
}

// send(bytes, fds?, length?) -> 0 written, 1 queued, -1 the peer is gone (dropped), -2 queue full (dropped)
Napi::Value Channel::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) Throw(env, "E_INVALID_ARGUMENT", "send(bytes: Uint8Array, fds?: NativeFd[])");
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  const uint8_t* data = bytes.Data();
  size_t length = bytes.ByteLength();
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    // An explicit length lets callers reuse one encode buffer for every message.
    if (!info[2].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "length must be a number");
    int64_t n = info[2].As<Napi::Number>().Int64Value();
    if (n < 0 || static_cast<size_t>(n) > length) Throw(env, "E_INVALID_ARGUMENT", "length exceeds the buffer");
    length = static_cast<size_t>(n);
  }
  size_t nfds = 0;
  int fds[kMaxHandlesHardLimit];
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsArray()) Throw(env, "E_INVALID_ARGUMENT", "fds must be an array of NativeFd");
    Napi::Array array = info[1].As<Napi::Array>();
    nfds = array.Length();
    if (nfds > kMaxHandlesHardLimit) Throw(env, "E_HANDLE_COUNT", "too many handles for one message");
    for (size_t i = 0; i < nfds; i++) fds[i] = NativeFd::Borrow(env, array.Get(static_cast<uint32_t>(i)));
  }
  // The header must agree with what is sent; a mismatch is a bug in the caller, caught here
  // rather than by the peer. (A byte stream has no header of ours.)
  if (!stream_ && (length < kHeaderSize || ReadU32(data) != length || data[6] != nfds || length > max_message_))
    Throw(env, "E_INVALID_ARGUMENT", "message header does not match its length or handle count");
  if (stream_ && (length == 0 || length > max_queued_bytes_))
    Throw(env, "E_INVALID_ARGUMENT", "a byte-stream send must be 1..maxQueuedBytes bytes");
  if (closed_ || !fd_) return Napi::Number::New(env, -1);

  size_t sent = 0;
  if (tx_.empty()) {
    ssize_t n = OsSend(fd_.get(), data, length, fds, nfds);
    if (n < 0 && !IsWouldBlock(errno)) return Napi::Number::New(env, -1);  // the read side reports why
    if (n > 0) sent_total_ += static_cast<double>(n);
    if (n == static_cast<ssize_t>(length)) return Napi::Number::New(env, 0);
    if (n > 0) {
      sent = static_cast<size_t>(n);
      nfds = 0;  // they went with the first byte
    }
  } else if (tx_bytes_ + length > max_queued_bytes_) {
    return Napi::Number::New(env, -2);
  }
  Outgoing out;
  out.bytes.assign(data + sent, data + length);
  for (size_t i = 0; i < nfds; i++) {
    UniqueFd copy(::fcntl(fds[i], F_DUPFD_CLOEXEC, 3));  // the caller keeps its own fd
    if (!copy) ThrowSyscall(env, "fcntl(F_DUPFD_CLOEXEC)");
    out.fds.push_back(std::move(copy));
  }
  tx_bytes_ += out.bytes.size();
  tx_.push_back(std::move(out));
  UpdatePoll();
  return Napi::Number::New(env, 1);
}

bool Channel::FlushQueue() {
  while (!tx_.empty()) {
    Outgoing& out = tx_.front();
    int fds[kMaxHandlesHardLimit];
    size_t nfds = 0;
    if (out.sent == 0)
      for (const UniqueFd& fd : out.fds) fds[nfds++] = fd.get();
    ssize_t n = OsSend(fd_.get(), out.bytes.data() + out.sent, out.bytes.size() - out.sent, fds, nfds);
    if (n < 0) return IsWouldBlock(errno);
    out.fds.clear();
    out.sent += static_cast<size_t>(n);
    tx_bytes_ -= static_cast<size_t>(n);
    sent_total_ += static_cast<double>(n);
    if (out.sent == out.bytes.size()) tx_.pop_front();
  }
  return true;
}

void Channel::HandleWritable() {
  if (!FlushQueue()) {
    tx_.clear();
    tx_bytes_ = 0;
    if (!reading_) {
      UpdatePoll();
      return;
    }
    // The peer is gone, and a write fails first whenever we had data queued.
    ReadFinal();
    if (!closed_) Fail("E_PEER_CLOSED", "the peer stopped accepting data");
    return;
  }
  UpdatePoll();
}

void Channel::Shutdown() {
  if (closed_) return;
  if (fd_) FlushQueue();  // best effort: a final ERROR message usually fits in the socket buffer
  closed_ = true;
  reading_ = false;
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), DeletePoll);
    poll_ = nullptr;
  }
  fd_.reset();
  tx_.clear();
  tx_bytes_ = 0;
  rx_fds_.clear();
  on_message_.Reset();
  on_error_.Reset();
  rx_ref_.Reset();
  rx_ = nullptr;
  async_context_.reset();
  if (self_ref_) {
    self_ref_ = false;
    Napi::ObjectWrap<Channel>::Unref();
  }
}

Napi::Value Channel::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  return info.Env().Undefined();
}

Napi::Value Channel::Ref(const Napi::CallbackInfo& info) {
  referenced_ = true;
  if (poll_ != nullptr) uv_ref(reinterpret_cast<uv_handle_t*>(poll_));
  return info.Env().Undefined();
}

Napi::Value Channel::Unref(const Napi::CallbackInfo& info) {
  referenced_ = false;
  if (poll_ != nullptr) uv_unref(reinterpret_cast<uv_handle_t*>(poll_));
  return info.Env().Undefined();
}

Napi::Value Channel::GetPeer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (peer_.pid < 0 && peer_.uid < 0) return env.Null();
  Napi::Object peer = Napi::Object::New(env);
  peer.Set("pid", Napi::Number::New(env, static_cast<double>(peer_.pid)));
  peer.Set("uid", Napi::Number::New(env, static_cast<double>(peer_.uid)));
  peer.Set("gid", Napi::Number::New(env, static_cast<double>(peer_.gid)));
  if (peer_.has_audit_token)  // macOS only (socket_os.h)
    peer.Set("auditToken", Napi::Buffer<uint8_t>::Copy(env, peer_.audit_token, sizeof peer_.audit_token));
  return peer;
}

Napi::Value Channel::GetQueuedBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(tx_bytes_));
}

Napi::Value Channel::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed_); }

// sentBytes: every byte handed to the kernel so far. A message sent when this plus queuedBytes
// was M has left our queue once sentBytes reaches M.
Napi::Value Channel::GetSentBytes(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), sent_total_); }

// readPending(): reads what the peer has sent that waits in the socket and delivers it now, from
// this call (onMessage/onError run before it returns), as a readable poll would. For judging a
// peer fairly after our own loop was busy: what it sent meanwhile is read before it is judged.
// Does nothing on a channel that is not reading (not started, failed or closed).
Napi::Value Channel::ReadPending(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (reading_ && !closed_ && !failed_ && fd_) HandleReadable();
  return env.Undefined();
}

// ---------------------------------------------------------------------------------------
// Listener

Napi::Function Listener::Define(Napi::Env env) {
  return DefineClass(env, "Listener",
                     {
                         InstanceMethod<&Listener::Start>("start"),
                         InstanceMethod<&Listener::Close>("close"),
                     });
}

Listener::Listener(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Listener>(info) {
  if (info.Length() != 1 || !info[0].IsExternal())
    Throw(info.Env(), "E_INVALID_ARGUMENT", "Listener cannot be constructed from JavaScript");
  fd_.reset(*info[0].As<Napi::External<int>>().Data());
}

Listener::~Listener() {
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), DeletePoll);
  }
}

// start(onConnection(channel | null, errorCode?, message?))
Napi::Value Listener::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!fd_) Throw(env, "E_CLOSED", "the listener is closed");
  if (!info[0].IsFunction()) Throw(env, "E_INVALID_ARGUMENT", "start(onConnection)");
  on_connection_ = Napi::Persistent(info[0].As<Napi::Function>());
  if (!async_context_) async_context_ = std::make_unique<Napi::AsyncContext>(env, "surfacelink:Listener");
  if (poll_ == nullptr) {
    poll_ = new uv_poll_t();
    int rc = uv_poll_init(LoopOf(env), poll_, fd_.get());
    if (rc != 0) {
      delete poll_;
      poll_ = nullptr;
      Throw(env, "E_SYSTEM", std::string("uv_poll_init failed: ") + uv_strerror(rc));
    }
    poll_->data = this;
  }
  uv_poll_start(poll_, UV_READABLE, &Listener::OnPoll);
  if (!self_ref_) {
    Napi::ObjectWrap<Listener>::Ref();
    self_ref_ = true;
  }
  return env.Undefined();
}

void Listener::OnPoll(uv_poll_t* handle, int status, int /*events*/) {
  auto* self = static_cast<Listener*>(handle->data);
  Napi::Env env = self->Env();
  if (!CanCallIntoJs(env)) {
    uv_poll_stop(handle);
    return;
  }
  Napi::HandleScope scope(env);
  if (status < 0) return;
  for (int i = 0; i < 16 && self->fd_; i++) {
    UniqueFd peer = OsAccept(self->fd_.get());
    if (!peer) {
      int err = errno;
      if (IsWouldBlock(err) || err == ECONNABORTED || err == EINTR) return;
      // Out of fds or memory: pause accepting (the socket stays readable, so polling on
      // would spin) and let JS decide when to resume via start().
      uv_poll_stop(self->poll_);
      std::string text = std::string("accept failed: ") + std::strerror(err) + " (" + ErrnoName(err) + ")";
      CallFromLoop(env, self->on_connection_, self->async_context_.get(),
                   {env.Null(), Napi::String::New(env, "E_SYSTEM"), Napi::String::New(env, text)});
      return;
    }
    Napi::Object channel = Channel::Wrap(env, std::move(peer));
    CallFromLoop(env, self->on_connection_, self->async_context_.get(), {channel});
  }
}

void Listener::Shutdown() {
  if (poll_ != nullptr) {
    uv_poll_stop(poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(poll_), DeletePoll);
    poll_ = nullptr;
  }
  fd_.reset();
  on_connection_.Reset();
  async_context_.reset();
  if (self_ref_) {
    self_ref_ = false;
    Napi::ObjectWrap<Listener>::Unref();
  }
}

Napi::Value Listener::Close(const Napi::CallbackInfo& info) {
  Shutdown();
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------
// Module functions

static bool FillAddress(const std::string& path, struct sockaddr_un* addr) {
  if (path.empty() || path.size() >= sizeof addr->sun_path) return false;
  std::memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  std::memcpy(addr->sun_path, path.c_str(), path.size() + 1);
  return true;
}

static std::string RequirePath(const Napi::CallbackInfo& info, struct sockaddr_un* addr) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) Throw(env, "E_INVALID_ARGUMENT", "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (!FillAddress(path, addr))
    Throw(env, "E_INVALID_ARGUMENT",
          "socket path must be 1.." + std::to_string(sizeof addr->sun_path - 1) + " bytes, got " +
              std::to_string(path.size()) + ": " + path);
  return path;
}

// listen(path, backlog): binds, restricts the socket file to its owner (0600) *before*
// listen() so no other user can connect in between, then listens.
static Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_un addr;
  std::string path = RequirePath(info, &addr);
  int backlog = info[1].IsNumber() ? info[1].As<Napi::Number>().Int32Value() : 64;
  UniqueFd fd = OsSocket();
  if (!fd) ThrowSyscall(env, "socket");
  if (::bind(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr) != 0) ThrowSyscall(env, "bind", path);
  if (::chmod(path.c_str(), 0600) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    errno = err;
    ThrowSyscall(env, "chmod", path);
  }
  if (::listen(fd.get(), backlog) != 0) {
    int err = errno;
    ::unlink(path.c_str());
    errno = err;
    ThrowSyscall(env, "listen", path);
  }
  int raw = fd.get();
  Napi::Object listener = GetAddonData(env).listener_ctor.New({Napi::External<int>::New(env, &raw)});
  fd.release();  // owned by the Listener now
  return listener;
}

static Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct sockaddr_un addr;
  std::string path = RequirePath(info, &addr);
  UniqueFd fd = OsSocket();
  if (!fd) ThrowSyscall(env, "socket");
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<struct sockaddr*>(&addr), sizeof addr);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) ThrowSyscall(env, "connect", path);
  return Channel::Wrap(env, std::move(fd));
}

static Napi::Value SocketPair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UniqueFd a, b;
  if (!OsSocketPair(&a, &b)) ThrowSyscall(env, "socketpair");
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, Channel::Wrap(env, std::move(a)));
  pair.Set(1u, Channel::Wrap(env, std::move(b)));
  return pair;
}

// socketpairFds() -> [NativeFd, NativeFd]: a connected pair to hand one end to another process
// (QEMU's display listener socket, its D-Bus peer connection).
static Napi::Value SocketPairFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UniqueFd a, b;
  if (!OsSocketPair(&a, &b)) ThrowSyscall(env, "socketpair");
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, NativeFd::Wrap(env, std::move(a)));
  pair.Set(1u, NativeFd::Wrap(env, std::move(b)));
  return pair;
}

// channelFromFd(fd) -> Channel over a duplicate of a connected socket fd (the caller keeps its fd).
static Napi::Value ChannelFromFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = NativeFd::Borrow(env, info[0]);
  struct stat st;
  if (::fstat(fd, &st) != 0) ThrowSyscall(env, "fstat");
  if (!S_ISSOCK(st.st_mode)) Throw(env, "E_HANDLE_TYPE", "channelFromFd needs a socket");
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy) ThrowSyscall(env, "fcntl(F_DUPFD_CLOEXEC)");
  const char* failed = nullptr;
  if (!OsAdoptSocket(copy.get(), &failed)) ThrowSyscall(env, failed);
  return Channel::Wrap(env, std::move(copy));
}

static void RegisterChannel(Napi::Env env, Napi::Object exports) {
  AddonData& data = GetAddonData(env);
  Napi::Function channel = Channel::Define(env);
  Napi::Function listener = Listener::Define(env);
  data.channel_ctor = Napi::Persistent(channel);
  data.listener_ctor = Napi::Persistent(listener);
  exports.Set("Channel", channel);
  exports.Set("Listener", listener);
  exports.Set("listen", Napi::Function::New(env, Listen, "listen"));
  exports.Set("connect", Napi::Function::New(env, Connect, "connect"));
  exports.Set("socketpair", Napi::Function::New(env, SocketPair, "socketpair"));
  exports.Set("socketpairFds", Napi::Function::New(env, SocketPairFds, "socketpairFds"));
  exports.Set("channelFromFd", Napi::Function::New(env, ChannelFromFd, "channelFromFd"));
}

SURFACELINK_MODULE(channel, RegisterChannel);

}  // namespace surfacelink
