// Named-pipe channel and listener (pipe.h).
#include "pipe.h"

#include <sddl.h>

#include <cstring>

#include "../common/addon.h"
#include "../common/errors.h"
#include "../common/js_call.h"
#include "../common/modules.h"

namespace surfacelink {

namespace {

constexpr DWORD kPipeBufferSize = 64 * 1024;
constexpr DWORD kConnectWaitMs = 2000;

uint32_t ReadU32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) | (static_cast<uint32_t>(p[1]) << 8) | (static_cast<uint32_t>(p[2]) << 16) |
         (static_cast<uint32_t>(p[3]) << 24);
}

void WriteU32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
  p[2] = static_cast<uint8_t>(v >> 16);
  p[3] = static_cast<uint8_t>(v >> 24);
}

uint64_t ReadU64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

void WriteU64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; i++) p[i] = static_cast<uint8_t>(v >> (8 * i));
}

std::string Hex(uint64_t v) {
  char text[32];
  std::snprintf(text, sizeof text, "0x%llx", static_cast<unsigned long long>(v));
  return text;
}

void CallJs(Napi::Env env, Napi::FunctionReference& fn, Napi::AsyncContext* context,
            const std::initializer_list<napi_value>& args) {
  if (fn.IsEmpty()) return;
  CallFromLoop(env, fn.Value(), context ? static_cast<napi_async_context>(*context) : nullptr, args);
}

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

bool IsPeerGone(DWORD error) {
  return error == ERROR_BROKEN_PIPE || error == ERROR_PIPE_NOT_CONNECTED || error == ERROR_NO_DATA ||
         error == ERROR_HANDLE_EOF;
}

std::wstring Widen(const std::string& s) {
  if (s.empty()) return std::wstring();
  int n = ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), nullptr, 0);
  std::wstring w(static_cast<size_t>(n), L'\0');
  ::MultiByteToWideChar(CP_UTF8, 0, s.data(), static_cast<int>(s.size()), &w[0], n);
  return w;
}

// `name` or a full `\\.\pipe\name` path.
std::string PipePath(Napi::Env env, Napi::Value value) {
  if (!value.IsString()) Throw(env, "E_INVALID_ARGUMENT", "pipe name must be a string");
  std::string name = value.As<Napi::String>().Utf8Value();
  static const char kPrefix[] = "\\\\.\\pipe\\";
  std::string path = name.rfind(kPrefix, 0) == 0 ? name : kPrefix + name;
  size_t base = sizeof kPrefix - 1;
  if (path.size() <= base || path.size() > 256)
    Throw(env, "E_INVALID_ARGUMENT", "pipe name must be 1.." + std::to_string(256 - base) + " characters: " + name);
  return path;
}

std::string CurrentUserSid() {
  HANDLE token = nullptr;
  if (!::OpenProcessToken(::GetCurrentProcess(), TOKEN_QUERY, &token)) return std::string();
  UniqueHandle owned(token);
  return TokenUserSid(token);
}

// Current user and SYSTEM: GENERIC_ALL; nobody else; protected from inheritance.
PSECURITY_DESCRIPTOR MakePipeSecurity(Napi::Env env) {
  std::string sid = CurrentUserSid();
  if (sid.empty()) ThrowLastError(env, "GetTokenInformation(TokenUser)", "cannot read the current user's SID");
  std::wstring sddl = L"D:P(A;;GA;;;" + Widen(sid) + L")(A;;GA;;;SY)";
  PSECURITY_DESCRIPTOR sd = nullptr;
  if (!::ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl.c_str(), SDDL_REVISION_1, &sd, nullptr))
    ThrowLastError(env, "ConvertStringSecurityDescriptorToSecurityDescriptorW");
  return sd;
}

HANDLE CreateInstance(const std::wstring& path, PSECURITY_DESCRIPTOR sd, bool first, DWORD max_instances) {
  SECURITY_ATTRIBUTES sa{};
  sa.nLength = sizeof sa;
  sa.lpSecurityDescriptor = sd;
  sa.bInheritHandle = FALSE;
  return ::CreateNamedPipeW(path.c_str(),
                            PIPE_ACCESS_DUPLEX | FILE_FLAG_OVERLAPPED | (first ? FILE_FLAG_FIRST_PIPE_INSTANCE : 0),
                            PIPE_TYPE_BYTE | PIPE_READMODE_BYTE | PIPE_WAIT | PIPE_REJECT_REMOTE_CLIENTS, max_instances,
                            kPipeBufferSize, kPipeBufferSize, 0, &sa);
}

void CloseRemote(HANDLE peer_process, uint64_t value) {
  ::DuplicateHandle(peer_process, reinterpret_cast<HANDLE>(static_cast<uintptr_t>(value)), nullptr, nullptr, 0, FALSE,
                    DUPLICATE_CLOSE_SOURCE);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Operations

struct PipeReadOp : IoOp {
  PipeChannel* owner = nullptr;
  Napi::Reference<Napi::Buffer<uint8_t>> keep;  // the rx Buffer, while an orphaned read may still write to it
  void Complete(Napi::Env env, DWORD bytes, DWORD error) override {
    if (owner != nullptr)
      owner->OnRead(env, bytes, error);
    else
      delete this;
  }
};

struct PipeWriteOp : IoOp {
  PipeChannel* owner = nullptr;
  std::vector<uint8_t> bytes;
  size_t sent = 0;
  bool done = false;                  // WriteFile completed at once: only the completion packet is awaited
  std::vector<uint64_t> remotes;      // handle values created in the peer for this message
  std::shared_ptr<UniqueHandle> peer;  // to close them if the message never fully goes out

  void CloseRemotes() {
    if (peer && *peer)
      for (uint64_t v : remotes) CloseRemote(peer->get(), v);
    remotes.clear();
  }
  void Complete(Napi::Env env, DWORD n, DWORD error) override {
    if (owner != nullptr) {
      owner->OnWrite(env, this, n, error);
      return;
    }
    if (!done && (error != 0 || sent + n < bytes.size())) CloseRemotes();
    delete this;
  }
};

struct PipeConnectOp : IoOp {
  PipeListener* owner = nullptr;
  void Complete(Napi::Env env, DWORD /*bytes*/, DWORD error) override {
    if (owner != nullptr)
      owner->OnConnect(env, error);
    else
      delete this;
  }
};

// ---------------------------------------------------------------------------------------
// PipeChannel

namespace {
struct ChannelInit {
  HANDLE pipe;
  bool server_end;
};
}  // namespace

Napi::Function PipeChannel::Define(Napi::Env env) {
  return DefineClass(env, "PipeChannel",
                     {
                         InstanceMethod<&PipeChannel::Start>("start"),
                         InstanceMethod<&PipeChannel::Send>("send"),
                         InstanceMethod<&PipeChannel::SendRaw>("_sendRaw"),
                         InstanceMethod<&PipeChannel::Close>("close"),
                         InstanceMethod<&PipeChannel::Ref>("ref"),
                         InstanceMethod<&PipeChannel::Unref>("unref"),
                         InstanceAccessor<&PipeChannel::GetPeer>("peer"),
                         InstanceAccessor<&PipeChannel::GetQueuedBytes>("queuedBytes"),
                         InstanceAccessor<&PipeChannel::GetClosed>("closed"),
                     });
}

Napi::Object PipeChannel::Wrap(Napi::Env env, HANDLE pipe, bool server_end) {
  UniqueHandle owned(pipe);
  ChannelInit init{pipe, server_end};
  Napi::Object object = GetAddonData(env).pipe_channel_ctor.New({Napi::External<ChannelInit>::New(env, &init)});
  owned.release();
  return object;
}

PipeChannel::PipeChannel(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PipeChannel>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    Throw(env, "E_INVALID_ARGUMENT", "PipeChannel cannot be constructed from JavaScript");
  iocp_ = &Iocp::Get(env);
  const ChannelInit& init = *info[0].As<Napi::External<ChannelInit>>().Data();
  pipe_.reset(init.pipe);
  // The peer, read once: its pid from the pipe, its identity from its token.
  ULONG pid = 0;
  BOOL ok = init.server_end ? ::GetNamedPipeClientProcessId(init.pipe, &pid) : ::GetNamedPipeServerProcessId(init.pipe, &pid);
  if (ok && pid != 0) {
    peer_pid_ = pid;
    HANDLE process = ::OpenProcess(PROCESS_DUP_HANDLE | PROCESS_QUERY_LIMITED_INFORMATION, FALSE, pid);
    if (process != nullptr) {
      peer_process_ = std::make_shared<UniqueHandle>(process);
      peer_sid_ = ProcessUserSid(process);
    }
  }
}

PipeChannel::~PipeChannel() {
  // Collected without close(): never started (a started channel references itself) but may
  // still have writes in flight.
  Teardown();
}

// start(rxBuffer, onMessage(offset, length, handles?), onError(code, message, errno), options)
Napi::Value PipeChannel::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) Throw(env, "E_CLOSED", "the channel is closed");
  if (started_) Throw(env, "E_INVALID_ARGUMENT", "the channel was already started");
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
  async_context_ = std::make_unique<Napi::AsyncContext>(env, "surfacelink:PipeChannel");
  started_ = true;
  reading_ = true;
  if (!self_ref_) {
    Napi::ObjectWrap<PipeChannel>::Ref();  // stay alive while completions may reach us
    self_ref_ = true;
  }
  read_op_ = new PipeReadOp();
  read_op_->owner = this;
  IssueRead();
  UpdateRef();
  return env.Undefined();
}

void PipeChannel::IssueRead() {
  if (!reading_ || closed_ || read_pending_) return;
  size_t space = rx_capacity_ - rx_used_;
  DWORD request = static_cast<DWORD>(space > 0x40000000 ? 0x40000000 : space);
  read_op_->Reset();
  read_pending_ = true;
  if (!::ReadFile(pipe_.get(), rx_ + rx_used_, request, nullptr, &read_op_->overlapped)) {
    DWORD error = ::GetLastError();
    // Pending: its completion comes. Failed at once: no packet is queued, so post one ourselves
    // (the error is reported from the loop, never from inside start()).
    if (error != ERROR_IO_PENDING && !iocp_->Post(read_op_, 0, error)) read_pending_ = false;
  }
  // Success at once still queues a completion packet (the port was not told to skip it).
}

void PipeChannel::OnRead(Napi::Env env, DWORD bytes, DWORD error) {
  read_pending_ = false;
  if (closed_ || !reading_) return;
  if (error != 0 || bytes == 0) {
    if (error == 0 || IsPeerGone(error)) {
      if (!stream_ && rx_used_ > 0)
        Fail("E_TRUNCATED", "the peer closed the connection in the middle of a message", error);
      else
        Fail("E_PEER_CLOSED", "the peer closed the connection", error);
    } else {
      Fail(rx_used_ > 0 ? "E_TRUNCATED" : "E_PEER_CLOSED", "the connection failed", error);
    }
    return;
  }
  rx_used_ += bytes;
  Napi::HandleScope scope(env);
  if (!(stream_ ? DeliverBytes() : DeliverMessages())) return;
  IssueRead();
}

bool PipeChannel::DeliverBytes() {
  Napi::Env env = Env();
  size_t length = rx_used_;
  rx_used_ = 0;  // the callback reads rx_[0, length) before the next read reuses it
  CallJs(env, on_message_, async_context_.get(),
         {Napi::Number::New(env, 0), Napi::Number::New(env, static_cast<double>(length)), env.Undefined()});
  return !closed_ && reading_;
}

bool PipeChannel::DeliverMessages() {
  Napi::Env env = Env();
  size_t pos = 0;
  while (rx_used_ - pos >= kHeaderSize) {
    uint8_t* header = rx_ + pos;
    uint32_t length = ReadU32(header);
    size_t handles = header[6];
    if (length < kHeaderSize) {
      Fail("E_MALFORMED", "a message declared a length shorter than its header");
      return false;
    }
    if (length > max_message_) {
      Fail("E_TOO_LARGE",
           "a message declared " + std::to_string(length) + " bytes; the limit is " + std::to_string(max_message_));
      return false;
    }
    if (handles > max_handles_) {
      Fail("E_HANDLE_COUNT", "a message declared more handles than allowed");
      return false;
    }
    if (length < kHeaderSize + 8 * handles) {
      Fail("E_MALFORMED", "a message is too short for the " + std::to_string(handles) + " handle values it declares");
      return false;
    }
    if (rx_used_ - pos < length) break;  // wait for the rest
    uint32_t body_end = length - static_cast<uint32_t>(8 * handles);
    Napi::HandleScope scope(env);
    Napi::Value array_value = env.Undefined();
    if (handles > 0) {
      // The values the sender created in our handle table: each must be a handle here, and
      // from now on every one of them is ours to close, whatever happens to the message.
      HANDLE values[kMaxHandlesHardLimit];
      bool valid[kMaxHandlesHardLimit];
      std::string bad;
      for (size_t i = 0; i < handles; i++) {
        uint64_t v = ReadU64(header + body_end + 8 * i);
        values[i] = reinterpret_cast<HANDLE>(static_cast<uintptr_t>(v));
        DWORD flags = 0;
        // Real handles are positive multiples of 4; negative values are pseudo-handles.
        valid[i] = static_cast<int64_t>(v) > 0 && (v & 3) == 0 && ::GetHandleInformation(values[i], &flags) != FALSE;
        for (size_t j = 0; j < i && valid[i]; j++)
          if (valid[j] && values[j] == values[i]) valid[i] = false;  // the same value twice: one handle
        if (!valid[i] && bad.empty()) bad = "value " + Hex(v) + " is not a handle in this process";
      }
      if (!bad.empty()) {
        for (size_t i = 0; i < handles; i++)
          if (valid[i]) ::CloseHandle(values[i]);
        Fail("E_HANDLE_TYPE", bad);
        return false;
      }
      Napi::Array array = Napi::Array::New(env, handles);
      for (size_t i = 0; i < handles; i++) {
        try {
          array.Set(static_cast<uint32_t>(i), WrapHandle(env, values[i]));
        } catch (...) {
          for (size_t j = i + 1; j < handles; j++) ::CloseHandle(values[j]);
          throw;
        }
      }
      array_value = array;
      WriteU32(header, body_end);  // JS sees the message without the values
    }
    CallJs(env, on_message_, async_context_.get(),
           {Napi::Number::New(env, static_cast<double>(pos)), Napi::Number::New(env, body_end), array_value});
    if (closed_ || !reading_) return false;  // the callback closed or failed us: rx_ is no longer ours
    pos += length;
  }
  if (pos > 0) {
    std::memmove(rx_, rx_ + pos, rx_used_ - pos);
    rx_used_ -= pos;
  }
  return true;
}

void PipeChannel::Fail(const char* code, const std::string& message, DWORD error) {
  if (failed_ || closed_) return;
  failed_ = true;
  reading_ = false;
  UpdateRef();
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  std::string text = message;
  if (error != 0) text += ": " + WinErrorText(error);
  CallJs(env, on_error_, async_context_.get(),
         {Napi::String::New(env, code), Napi::String::New(env, text), Napi::Number::New(env, static_cast<double>(error))});
}

// send(bytes, handles?, length?) -> 0 handed to WriteFile, 1 queued behind earlier writes,
// -1 the peer is gone (dropped), -2 the queue is full (dropped)
Napi::Value PipeChannel::Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) Throw(env, "E_INVALID_ARGUMENT", "send(bytes: Uint8Array, handles?: NtHandle[], length?)");
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  const uint8_t* data = bytes.Data();
  size_t length = bytes.ByteLength();
  if (info.Length() > 2 && !info[2].IsUndefined()) {
    if (!info[2].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "length must be a number");
    int64_t n = info[2].As<Napi::Number>().Int64Value();
    if (n < 0 || static_cast<size_t>(n) > length) Throw(env, "E_INVALID_ARGUMENT", "length exceeds the buffer");
    length = static_cast<size_t>(n);
  }
  size_t nhandles = 0;
  HANDLE handles[kMaxHandlesHardLimit];
  if (info.Length() > 1 && !info[1].IsUndefined()) {
    if (!info[1].IsArray()) Throw(env, "E_INVALID_ARGUMENT", "handles must be an array of NtHandle");
    Napi::Array array = info[1].As<Napi::Array>();
    nhandles = array.Length();
    if (nhandles > kMaxHandlesHardLimit) Throw(env, "E_HANDLE_COUNT", "too many handles for one message");
    for (size_t i = 0; i < nhandles; i++) handles[i] = UnwrapHandle(env, array.Get(static_cast<uint32_t>(i)));
  }
  if (stream_) {
    if (nhandles > 0) Throw(env, "E_INVALID_ARGUMENT", "a byte-stream channel carries no handles");
    if (length == 0 || length > max_queued_bytes_)
      Throw(env, "E_INVALID_ARGUMENT", "a byte-stream send must be 1..maxQueuedBytes bytes");
  } else {
    if (length < kHeaderSize || ReadU32(data) != length || data[6] != nhandles)
      Throw(env, "E_INVALID_ARGUMENT", "message header does not match its length or handle count");
    if (length + 8 * nhandles > max_message_)
      Throw(env, "E_TOO_LARGE",
            "the message with its handle values is " + std::to_string(length + 8 * nhandles) + " bytes; the limit is " +
                std::to_string(max_message_));
  }
  if (closed_ || broken_ || !pipe_) return Napi::Number::New(env, -1);
  size_t wire = length + 8 * nhandles;
  if ((writing_ != nullptr || !tx_.empty()) && tx_bytes_ + wire > max_queued_bytes_) return Napi::Number::New(env, -2);

  std::vector<uint64_t> remotes;
  if (nhandles > 0) {
    if (!peer_process_)
      Throw(env, "E_PERMISSION", "the peer process could not be opened (PROCESS_DUP_HANDLE) to pass handles to it");
    for (size_t i = 0; i < nhandles; i++) {
      HANDLE remote = nullptr;
      if (!::DuplicateHandle(::GetCurrentProcess(), handles[i], peer_process_->get(), &remote, 0, FALSE,
                             DUPLICATE_SAME_ACCESS)) {
        DWORD error = ::GetLastError();
        for (uint64_t v : remotes) CloseRemote(peer_process_->get(), v);
        ThrowWin(env, "E_SYSTEM", "cannot pass a handle to the peer", "DuplicateHandle", error);
      }
      remotes.push_back(static_cast<uint64_t>(reinterpret_cast<uintptr_t>(remote)));
    }
  }
  std::vector<uint8_t> out(wire);
  std::memcpy(out.data(), data, length);
  if (nhandles > 0) {
    WriteU32(out.data(), static_cast<uint32_t>(wire));
    for (size_t i = 0; i < nhandles; i++) WriteU64(out.data() + length + 8 * i, remotes[i]);
  }
  return Napi::Number::New(env, Enqueue(std::move(out), std::move(remotes)));
}

// _sendRaw(bytes): for tests only: writes the bytes as they are (no header check, no handle
// duplication), to play a misbehaving peer. Returns what send() returns.
Napi::Value PipeChannel::SendRaw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) Throw(env, "E_INVALID_ARGUMENT", "_sendRaw(bytes: Uint8Array)");
  Napi::Uint8Array bytes = info[0].As<Napi::Uint8Array>();
  if (bytes.ByteLength() == 0) Throw(env, "E_INVALID_ARGUMENT", "_sendRaw needs at least one byte");
  if (closed_ || broken_ || !pipe_) return Napi::Number::New(env, -1);
  std::vector<uint8_t> out(bytes.Data(), bytes.Data() + bytes.ByteLength());
  return Napi::Number::New(env, Enqueue(std::move(out), {}));
}

int PipeChannel::Enqueue(std::vector<uint8_t> bytes, std::vector<uint64_t> remotes) {
  bool idle = writing_ == nullptr && tx_.empty();
  auto* op = new PipeWriteOp();
  op->owner = this;
  op->bytes = std::move(bytes);
  op->remotes = std::move(remotes);
  op->peer = peer_process_;
  tx_bytes_ += op->bytes.size();
  tx_.push_back(op);
  IssueWrites();
  UpdateRef();
  if (broken_) return -1;  // WriteFile failed at once: dropped, its handles closed in the peer
  return idle ? 0 : 1;
}

void PipeChannel::IssueWrites() {
  while (writing_ == nullptr && !tx_.empty() && !closed_ && !broken_) {
    PipeWriteOp* op = tx_.front();
    tx_.pop_front();
    op->Reset();
    size_t remaining = op->bytes.size() - op->sent;
    if (::WriteFile(pipe_.get(), op->bytes.data() + op->sent, static_cast<DWORD>(remaining), nullptr, &op->overlapped)) {
      // Done at once (the pipe had room): the packet still comes, and only frees the op.
      DWORD written = 0;
      if (::GetOverlappedResult(pipe_.get(), &op->overlapped, &written, FALSE) && written == remaining) {
        tx_bytes_ -= remaining;
        op->done = true;
        op->owner = nullptr;
        continue;
      }
      writing_ = op;  // partial: OnWrite re-issues the rest
      continue;
    }
    DWORD error = ::GetLastError();
    if (error == ERROR_IO_PENDING) {
      writing_ = op;
      break;
    }
    // Failed at once (no packet is queued): the peer is gone for sending. Nothing is reported
    // from here (send() never calls back into JS); the read side reports why, as on POSIX.
    op->CloseRemotes();
    tx_bytes_ -= remaining;
    delete op;
    broken_ = true;
    for (PipeWriteOp* queued : tx_) {
      queued->CloseRemotes();
      delete queued;
    }
    tx_.clear();
    tx_bytes_ = 0;
  }
}

void PipeChannel::OnWrite(Napi::Env /*env*/, PipeWriteOp* op, DWORD bytes, DWORD error) {
  if (op != writing_) {  // cannot happen: ops are orphaned when they stop being ours
    delete op;
    return;
  }
  writing_ = nullptr;
  size_t remaining = op->bytes.size() - op->sent;
  if (error != 0) {
    op->CloseRemotes();
    tx_bytes_ -= remaining;
    delete op;
    WriteFailed(error);
    return;
  }
  op->sent += bytes;
  tx_bytes_ -= bytes < remaining ? bytes : remaining;
  if (op->sent < op->bytes.size())
    tx_.push_front(op);
  else
    delete op;
  IssueWrites();
  UpdateRef();
}

void PipeChannel::WriteFailed(DWORD error) {
  broken_ = true;
  for (PipeWriteOp* op : tx_) {
    op->CloseRemotes();
    delete op;
  }
  tx_.clear();
  tx_bytes_ = 0;
  UpdateRef();
  if (reading_) Fail("E_PEER_CLOSED", "the peer stopped accepting data", error);
}

void PipeChannel::UpdateRef() {
  bool want = !closed_ && referenced_ && (reading_ || writing_ != nullptr || !tx_.empty());
  if (want == holding_) return;
  holding_ = want;
  if (want)
    iocp_->Ref();
  else
    iocp_->Unref();
}

void PipeChannel::Teardown() {
  if (closed_) return;
  closed_ = true;
  reading_ = false;
  if (pipe_) ::CancelIoEx(pipe_.get(), nullptr);
  // Ops still in the kernel free themselves when their (aborted) completion is dequeued.
  if (read_op_ != nullptr) {
    if (read_pending_) {
      read_op_->owner = nullptr;
      read_op_->keep = std::move(rx_ref_);
    } else {
      delete read_op_;
    }
    read_op_ = nullptr;
    read_pending_ = false;
  }
  if (writing_ != nullptr) {
    writing_->owner = nullptr;  // closes its remotes if it did not fully go out
    writing_ = nullptr;
  }
  for (PipeWriteOp* op : tx_) {
    op->CloseRemotes();
    delete op;
  }
  tx_.clear();
  tx_bytes_ = 0;
  pipe_.reset();
  peer_process_.reset();  // orphaned write ops keep their own reference
  rx_ = nullptr;
  if (holding_) {
    holding_ = false;
    iocp_->Unref();
  }
}

Napi::Value PipeChannel::Close(const Napi::CallbackInfo& info) {
  if (!closed_) {
    Teardown();
    on_message_.Reset();
    on_error_.Reset();
    rx_ref_.Reset();
    async_context_.reset();
    if (self_ref_) {
      self_ref_ = false;
      Napi::ObjectWrap<PipeChannel>::Unref();
    }
  }
  return info.Env().Undefined();
}

Napi::Value PipeChannel::Ref(const Napi::CallbackInfo& info) {
  referenced_ = true;
  UpdateRef();
  return info.Env().Undefined();
}

Napi::Value PipeChannel::Unref(const Napi::CallbackInfo& info) {
  referenced_ = false;
  UpdateRef();
  return info.Env().Undefined();
}

Napi::Value PipeChannel::GetPeer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (peer_pid_ == 0 || peer_sid_.empty()) return env.Null();
  Napi::Object peer = Napi::Object::New(env);
  peer.Set("pid", Napi::Number::New(env, static_cast<double>(peer_pid_)));
  peer.Set("sid", Napi::String::New(env, peer_sid_));
  return peer;
}

Napi::Value PipeChannel::GetQueuedBytes(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(tx_bytes_));
}

Napi::Value PipeChannel::GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), closed_); }

// ---------------------------------------------------------------------------------------
// PipeListener

namespace {
struct ListenerInit {
  std::wstring path;
  std::string display_path;
  PSECURITY_DESCRIPTOR security;
  HANDLE instance;
};
}  // namespace

Napi::Function PipeListener::Define(Napi::Env env) {
  return DefineClass(env, "PipeListener",
                     {
                         InstanceMethod<&PipeListener::Start>("start"),
                         InstanceMethod<&PipeListener::Close>("close"),
                     });
}

PipeListener::PipeListener(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PipeListener>(info) {
  Napi::Env env = info.Env();
  if (info.Length() != 1 || !info[0].IsExternal())
    Throw(env, "E_INVALID_ARGUMENT", "PipeListener cannot be constructed from JavaScript");
  ListenerInit& init = *info[0].As<Napi::External<ListenerInit>>().Data();
  iocp_ = &Iocp::Get(env);
  path_ = init.path;
  display_path_ = init.display_path;
  security_ = init.security;
  init.security = nullptr;
  pending_.reset(init.instance);
  init.instance = nullptr;
  op_ = new PipeConnectOp();
  op_->owner = this;
}

PipeListener::~PipeListener() {
  Teardown();
  if (security_ != nullptr) ::LocalFree(security_);
}

// start(onConnection(channel | null, code?, message?))
Napi::Value PipeListener::Start(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (closed_) Throw(env, "E_CLOSED", "the listener is closed");
  if (!info[0].IsFunction()) Throw(env, "E_INVALID_ARGUMENT", "start(onConnection)");
  on_connection_ = Napi::Persistent(info[0].As<Napi::Function>());
  if (!async_context_) async_context_ = std::make_unique<Napi::AsyncContext>(env, "surfacelink:PipeListener");
  started_ = true;
  if (!self_ref_) {
    Napi::ObjectWrap<PipeListener>::Ref();
    self_ref_ = true;
  }
  if (!holding_) {
    holding_ = true;
    iocp_->Ref();
  }
  if (!pending_) {  // resuming after a failure to create an instance
    HANDLE instance = CreateInstance(path_, security_, false, PIPE_UNLIMITED_INSTANCES);
    if (instance == INVALID_HANDLE_VALUE) ThrowLastError(env, "CreateNamedPipeW", display_path_);
    pending_.reset(instance);
    if (!iocp_->Associate(instance)) {
      pending_.reset();
      ThrowLastError(env, "CreateIoCompletionPort", display_path_);
    }
  }
  IssueConnect();
  return env.Undefined();
}

void PipeListener::IssueConnect() {
  if (connecting_ || closed_ || !pending_) return;
  op_->Reset();
  connecting_ = true;
  if (::ConnectNamedPipe(pending_.get(), &op_->overlapped)) return;  // completion packet comes
  DWORD error = ::GetLastError();
  if (error == ERROR_IO_PENDING) return;
  // ERROR_PIPE_CONNECTED (a client came between CreateNamedPipe and now) queues no packet, nor
  // does a failure: post one, so it is handled from the loop like any other.
  if (!iocp_->Post(op_, 0, error == ERROR_PIPE_CONNECTED ? 0 : error)) connecting_ = false;
}

void PipeListener::Report(Napi::Env env, const char* code, const std::string& message) {
  CallJs(env, on_connection_, async_context_.get(),
         {env.Null(), Napi::String::New(env, code), Napi::String::New(env, message)});
}

void PipeListener::OnConnect(Napi::Env env, DWORD error) {
  connecting_ = false;
  if (closed_) return;
  if (error == ERROR_NO_DATA || error == ERROR_BROKEN_PIPE || error == ERROR_PIPE_NOT_CONNECTED) {
    // The client left before we saw it: recycle the instance.
    ::DisconnectNamedPipe(pending_.get());
    IssueConnect();
    return;
  }
  if (error != 0) {
    // Paused: JS resumes with start().
    Report(env, "E_SYSTEM", "ConnectNamedPipe failed on " + display_path_ + ": " + WinErrorText(error));
    return;
  }
  UniqueHandle connected(pending_.release());
  // The next instance first, so a client arriving now finds one.
  std::string next_error;
  HANDLE next = CreateInstance(path_, security_, false, PIPE_UNLIMITED_INSTANCES);
  if (next == INVALID_HANDLE_VALUE) {
    next_error = "CreateNamedPipeW failed on " + display_path_ + ": " + WinErrorText(::GetLastError());
  } else if (!iocp_->Associate(next)) {
    next_error = "CreateIoCompletionPort failed: " + WinErrorText(::GetLastError());
    ::CloseHandle(next);
  } else {
    pending_.reset(next);
    IssueConnect();
  }
  Napi::Object channel = PipeChannel::Wrap(env, connected.release(), true);
  CallJs(env, on_connection_, async_context_.get(), {channel});
  if (!next_error.empty() && !closed_) Report(env, "E_SYSTEM", next_error);
}

void PipeListener::Teardown() {
  if (closed_) return;
  closed_ = true;
  if (op_ != nullptr) {
    if (connecting_) {
      if (pending_) ::CancelIoEx(pending_.get(), &op_->overlapped);
      op_->owner = nullptr;  // frees itself when its completion arrives
    } else {
      delete op_;
    }
    op_ = nullptr;
  }
  connecting_ = false;
  pending_.reset();
  if (holding_) {
    holding_ = false;
    iocp_->Unref();
  }
}

Napi::Value PipeListener::Close(const Napi::CallbackInfo& info) {
  Teardown();
  on_connection_.Reset();
  async_context_.reset();
  if (self_ref_) {
    self_ref_ = false;
    Napi::ObjectWrap<PipeListener>::Unref();
  }
  return info.Env().Undefined();
}

// ---------------------------------------------------------------------------------------
// Module functions

Napi::Value PipeListen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = PipePath(env, info[0]);
  ListenerInit init;
  init.path = Widen(path);
  init.display_path = path;
  // FILE_FLAG_FIRST_PIPE_INSTANCE makes taking the name atomic on Windows; wine 8 ignores it,
  // so also look first: an instance that is free or busy means someone serves this name.
  if (::WaitNamedPipeW(init.path.c_str(), 1)) Throw(env, "E_ADDRESS_IN_USE", path + " is already in use");
  DWORD wait_error = ::GetLastError();
  if (wait_error == ERROR_SEM_TIMEOUT || wait_error == ERROR_PIPE_BUSY)
    ThrowWin(env, "E_ADDRESS_IN_USE", path + " is already in use", "WaitNamedPipeW", wait_error);
  init.security = MakePipeSecurity(env);
  init.instance = CreateInstance(init.path, init.security, true, PIPE_UNLIMITED_INSTANCES);
  if (init.instance == INVALID_HANDLE_VALUE) {
    DWORD error = ::GetLastError();
    ::LocalFree(init.security);
    if (error == ERROR_ACCESS_DENIED || error == ERROR_PIPE_BUSY)
      ThrowWin(env, "E_ADDRESS_IN_USE", path + " is already in use", "CreateNamedPipeW", error);
    ThrowWin(env, "E_SYSTEM", path, "CreateNamedPipeW", error);
  }
  if (!Iocp::Get(env).Associate(init.instance)) {
    DWORD error = ::GetLastError();
    ::CloseHandle(init.instance);
    ::LocalFree(init.security);
    ThrowWin(env, "E_SYSTEM", path, "CreateIoCompletionPort", error);
  }
  try {
    return GetAddonData(env).pipe_listener_ctor.New({Napi::External<ListenerInit>::New(env, &init)});
  } catch (...) {
    if (init.instance != nullptr) ::CloseHandle(init.instance);
    if (init.security != nullptr) ::LocalFree(init.security);
    throw;
  }
}

static HANDLE OpenClient(Napi::Env env, const std::string& path) {
  std::wstring wide = Widen(path);
  ULONGLONG deadline = ::GetTickCount64() + kConnectWaitMs;
  for (;;) {
    HANDLE h = ::CreateFileW(wide.c_str(), GENERIC_READ | GENERIC_WRITE, 0, nullptr, OPEN_EXISTING,
                             FILE_FLAG_OVERLAPPED | SECURITY_SQOS_PRESENT | SECURITY_IDENTIFICATION, nullptr);
    if (h != INVALID_HANDLE_VALUE) return h;
    DWORD error = ::GetLastError();
    if (error == ERROR_PIPE_BUSY) {
      ULONGLONG now = ::GetTickCount64();
      if (now < deadline && ::WaitNamedPipeW(wide.c_str(), static_cast<DWORD>(deadline - now))) continue;
      ThrowWin(env, "E_CONNECT", "every instance of " + path + " stayed busy", "CreateFileW", error);
    }
    if (error == ERROR_FILE_NOT_FOUND || error == ERROR_PATH_NOT_FOUND)
      ThrowWin(env, "E_CONNECT", "no server listens on " + path, "CreateFileW", error);
    if (error == ERROR_ACCESS_DENIED) ThrowWin(env, "E_PERMISSION", "access to " + path + " was refused", "CreateFileW", error);
    ThrowWin(env, "E_SYSTEM", path, "CreateFileW", error);
  }
}

static Napi::Value PipeConnect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = PipePath(env, info[0]);
  UniqueHandle client(OpenClient(env, path));
  if (!Iocp::Get(env).Associate(client.get())) ThrowLastError(env, "CreateIoCompletionPort", path);
  return PipeChannel::Wrap(env, client.release(), false);
}

// Two connected channels: a one-instance pipe on a fresh name, connected to at once and checked
// to be connected to this very process.
static Napi::Value PipePair(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  static LONG counter = 0;
  Iocp& iocp = Iocp::Get(env);
  PSECURITY_DESCRIPTOR sd = MakePipeSecurity(env);
  UniqueHandle server;
  std::string path;
  for (int attempt = 0; attempt < 8 && !server; attempt++) {
    LARGE_INTEGER qpc;
    ::QueryPerformanceCounter(&qpc);
    char name[128];
    std::snprintf(name, sizeof name, "\\\\.\\pipe\\surfacelink-pair-%lu-%ld-%llx", ::GetCurrentProcessId(),
                  static_cast<long>(::InterlockedIncrement(&counter)), static_cast<unsigned long long>(qpc.QuadPart));
    path = name;
    HANDLE h = CreateInstance(Widen(path), sd, true, 1);
    if (h != INVALID_HANDLE_VALUE) server.reset(h);
  }
  DWORD create_error = ::GetLastError();
  ::LocalFree(sd);
  if (!server) ThrowWin(env, "E_SYSTEM", "pipePair", "CreateNamedPipeW", create_error);
  if (!iocp.Associate(server.get())) ThrowLastError(env, "CreateIoCompletionPort");
  UniqueHandle client(OpenClient(env, path));
  // The client connected before ConnectNamedPipe: it answers ERROR_PIPE_CONNECTED at once.
  OVERLAPPED ov{};
  ov.hEvent = ::CreateEventW(nullptr, TRUE, FALSE, nullptr);
  UniqueHandle event(ov.hEvent);
  // Low bit set on hEvent: no completion packet for this one call.
  ov.hEvent = reinterpret_cast<HANDLE>(reinterpret_cast<uintptr_t>(event.get()) | 1);
  BOOL ok = ::ConnectNamedPipe(server.get(), &ov);
  DWORD error = ok ? 0 : ::GetLastError();
  if (!ok && error == ERROR_IO_PENDING) {
    ::CancelIoEx(server.get(), &ov);
    DWORD ignored = 0;
    ::GetOverlappedResult(server.get(), &ov, &ignored, TRUE);
    Throw(env, "E_SYSTEM", "pipePair: the client end did not connect");
  }
  if (!ok && error != ERROR_PIPE_CONNECTED) ThrowWin(env, "E_SYSTEM", "pipePair", "ConnectNamedPipe", error);
  ULONG pid = 0;
  if (!::GetNamedPipeClientProcessId(server.get(), &pid) || pid != ::GetCurrentProcessId())
    Throw(env, "E_SYSTEM", "pipePair: another process connected to the pair's pipe");
  if (!iocp.Associate(client.get())) ThrowLastError(env, "CreateIoCompletionPort");
  Napi::Array pair = Napi::Array::New(env, 2);
  pair.Set(0u, PipeChannel::Wrap(env, server.release(), true));
  pair.Set(1u, PipeChannel::Wrap(env, client.release(), false));
  return pair;
}

static Napi::Value CurrentUserSidJs(const Napi::CallbackInfo& info) {
  std::string sid = CurrentUserSid();
  if (sid.empty()) ThrowLastError(info.Env(), "GetTokenInformation(TokenUser)");
  return Napi::String::New(info.Env(), sid);
}

static void RegisterPipe(Napi::Env env, Napi::Object exports) {
  AddonData& data = GetAddonData(env);
  Napi::Function channel = PipeChannel::Define(env);
  Napi::Function listener = PipeListener::Define(env);
  data.pipe_channel_ctor = Napi::Persistent(channel);
  data.pipe_listener_ctor = Napi::Persistent(listener);
  exports.Set("PipeChannel", channel);
  exports.Set("PipeListener", listener);
  exports.Set("pipeListen", Napi::Function::New(env, PipeListen, "pipeListen"));
  exports.Set("pipeConnect", Napi::Function::New(env, PipeConnect, "pipeConnect"));
  exports.Set("pipePair", Napi::Function::New(env, PipePair, "pipePair"));
  exports.Set("currentUserSid", Napi::Function::New(env, CurrentUserSidJs, "currentUserSid"));
}

SURFACELINK_MODULE(pipe, RegisterPipe);

}  // namespace surfacelink
