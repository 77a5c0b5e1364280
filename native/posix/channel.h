// Channel: one connected AF_UNIX stream socket carrying length-delimited messages with
// file descriptors attached (SCM_RIGHTS), driven by the Node event loop (uv_poll).
//
// Framing is the protocol's 8-byte header (docs/protocol.md §2): u32 length (header
// included), u16 type, u8 handle count, u8 flags. The channel reads only `length` and the
// handle count; everything else is the TypeScript protocol layer's job.
//
// Loop rules: all methods run on the JS thread that created the channel; callbacks are
// made from the loop, never re-entrantly from send()/close() (readPending() alone delivers
// from within the call: that is what it is for).
#pragma once

#include <napi.h>
#include <uv.h>

#include <deque>
#include <memory>
#include <vector>

#include "unique_fd.h"
#include "socket_os.h"

namespace surfacelink {

class Channel : public Napi::ObjectWrap<Channel> {
 public:
  static constexpr size_t kHeaderSize = 8;
  static constexpr size_t kMaxHandlesHardLimit = 16;
  /** Reads made for a peer's last messages once it is known to be gone (ReadFinal). */
  static constexpr int kFinalReads = 8;

  static Napi::Function Define(Napi::Env env);
  static Napi::Object Wrap(Napi::Env env, UniqueFd fd);

  explicit Channel(const Napi::CallbackInfo& info);
  ~Channel() override;

 private:
  struct Outgoing {
    std::vector<uint8_t> bytes;
    size_t sent = 0;
    std::vector<UniqueFd> fds;  // sent with the first byte, then closed
  };

  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value GetPeer(const Napi::CallbackInfo& info);
  Napi::Value GetQueuedBytes(const Napi::CallbackInfo& info);
  Napi::Value GetSentBytes(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);
  // readPending(): reads and delivers, now, what the peer has sent (see channel.cc).
  Napi::Value ReadPending(const Napi::CallbackInfo& info);

  static void OnPoll(uv_poll_t* handle, int status, int events);
  void HandleReadable();
  /** After the peer is known gone: reads what it sent before going (bounded), which may close us. */
  void ReadFinal();
  void HandleWritable();
  // Parses and delivers every complete message in the receive buffer; false once stopped.
  bool DeliverMessages();
  // Byte-stream mode: delivers what arrived, with the fds that came with it; false once stopped.
  bool DeliverBytes();
  void Fail(const char* code, const char* message, int sys_errno = 0);
  void UpdatePoll();
  void Shutdown();
  bool FlushQueue();  // false when the peer is gone

  UniqueFd fd_;
  PeerCred peer_;
  uv_poll_t* poll_ = nullptr;
  bool reading_ = false;
  bool failed_ = false;
  bool closed_ = false;
  bool referenced_ = true;
  bool self_ref_ = false;
  // Byte-stream mode (start option `stream`): no surfacelink framing; chunks as they arrive, for
  // protocols with framing of their own (D-Bus, QMP) that also pass fds.
  bool stream_ = false;

  // Receive side: bytes land directly in a JS-owned Buffer so a message reaches JS as
  // (offset, length) with no allocation.
  Napi::Reference<Napi::Buffer<uint8_t>> rx_ref_;
  uint8_t* rx_ = nullptr;
  size_t rx_capacity_ = 0;
  size_t rx_used_ = 0;
  std::deque<UniqueFd> rx_fds_;
  std::vector<UniqueFd> recv_scratch_;

  std::deque<Outgoing> tx_;
  size_t tx_bytes_ = 0;
  // Every byte handed to the kernel so far (written at once or flushed from tx_).
  double sent_total_ = 0;

  size_t max_message_ = 65536;
  size_t max_handles_ = 8;
  size_t max_queued_bytes_ = 4 << 20;

  Napi::FunctionReference on_message_;
  Napi::FunctionReference on_error_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

class Listener : public Napi::ObjectWrap<Listener> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit Listener(const Napi::CallbackInfo& info);
  ~Listener() override;

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  static void OnPoll(uv_poll_t* handle, int status, int events);
  void Shutdown();

  UniqueFd fd_;
  uv_poll_t* poll_ = nullptr;
  bool self_ref_ = false;
  Napi::FunctionReference on_connection_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

// listen(path, backlog) -> Listener (the kernel caps backlog at net.core.somaxconn); connect(path) -> Channel; socketpair() -> [Channel, Channel]

}  // namespace surfacelink
