// PipeChannel: one connected byte-mode named-pipe instance carrying the protocol's framed
// messages (docs/protocol.md §2) with HANDLEs (§9.2), driven by the addon's completion port
// (iocp.h). Same contract toward JS as the POSIX Channel (native/posix/channel.h): bytes land
// in the JS rx Buffer, messages are delivered as (offset, length, handles), send() returns
// 0/1/-1/-2, callbacks come only from the loop and never after close().
//
// Handles on the wire: the sender duplicates each HANDLE into the peer process and appends the
// values as u64 LE after the body; the header's length includes them and `handles` counts them.
// The receiver strips them again (rewriting the length field in rx), so JS sees exactly the
// message the Linux channel would deliver.
//
// PipeListener: `\\.\pipe\<name>` with one pending instance at a time (the next is created
// before a connected one is handed out), a current-user + SYSTEM DACL, remote clients rejected.
#pragma once

#include "handle.h"
#include "iocp.h"

#include <napi.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace surfacelink {

struct PipeReadOp;
struct PipeWriteOp;
struct PipeConnectOp;

class PipeChannel : public Napi::ObjectWrap<PipeChannel> {
 public:
  static constexpr size_t kHeaderSize = 8;
  static constexpr size_t kMaxHandlesHardLimit = 16;

  static Napi::Function Define(Napi::Env env);
  // Takes ownership of a connected pipe handle already associated with the completion port.
  static Napi::Object Wrap(Napi::Env env, HANDLE pipe, bool server_end);

  explicit PipeChannel(const Napi::CallbackInfo& info);
  ~PipeChannel() override;

  void OnRead(Napi::Env env, DWORD bytes, DWORD error);
  void OnWrite(Napi::Env env, PipeWriteOp* op, DWORD bytes, DWORD error);

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Send(const Napi::CallbackInfo& info);
  Napi::Value SendRaw(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  Napi::Value Ref(const Napi::CallbackInfo& info);
  Napi::Value Unref(const Napi::CallbackInfo& info);
  Napi::Value GetPeer(const Napi::CallbackInfo& info);
  Napi::Value GetQueuedBytes(const Napi::CallbackInfo& info);
  Napi::Value GetClosed(const Napi::CallbackInfo& info);

  int Enqueue(std::vector<uint8_t> bytes, std::vector<uint64_t> remotes);
  void IssueRead();
  void IssueWrites();
  void WriteFailed(DWORD error);
  bool DeliverMessages();
  bool DeliverBytes();
  void Fail(const char* code, const std::string& message, DWORD error = 0);
  void Teardown();  // no JS
  void UpdateRef();

  Iocp* iocp_ = nullptr;
  UniqueHandle pipe_;
  std::shared_ptr<UniqueHandle> peer_process_;  // PROCESS_DUP_HANDLE; shared with orphaned write ops
  DWORD peer_pid_ = 0;
  std::string peer_sid_;

  bool reading_ = false;
  bool started_ = false;
  bool failed_ = false;
  bool broken_ = false;  // a write failed: the peer is gone for sending
  bool closed_ = false;
  bool referenced_ = true;
  bool holding_ = false;  // counted in iocp_->Ref()
  bool self_ref_ = false;
  bool stream_ = false;

  Napi::Reference<Napi::Buffer<uint8_t>> rx_ref_;
  uint8_t* rx_ = nullptr;
  size_t rx_capacity_ = 0;
  size_t rx_used_ = 0;
  PipeReadOp* read_op_ = nullptr;
  bool read_pending_ = false;

  std::deque<PipeWriteOp*> tx_;      // not yet handed to WriteFile
  PipeWriteOp* writing_ = nullptr;   // WriteFile pending
  size_t tx_bytes_ = 0;

  size_t max_message_ = 65536;
  size_t max_handles_ = 8;
  size_t max_queued_bytes_ = 4 << 20;

  Napi::FunctionReference on_message_;
  Napi::FunctionReference on_error_;
  std::unique_ptr<Napi::AsyncContext> async_context_;
};

class PipeListener : public Napi::ObjectWrap<PipeListener> {
 public:
  static Napi::Function Define(Napi::Env env);
  explicit PipeListener(const Napi::CallbackInfo& info);
  ~PipeListener() override;

  void OnConnect(Napi::Env env, DWORD error);

 private:
  Napi::Value Start(const Napi::CallbackInfo& info);
  Napi::Value Close(const Napi::CallbackInfo& info);
  void IssueConnect();
  void Teardown();
  void Report(Napi::Env env, const char* code, const std::string& message);

  Iocp* iocp_ = nullptr;
  std::wstring path_;
  std::string display_path_;
  PSECURITY_DESCRIPTOR security_ = nullptr;  // LocalFree
  UniqueHandle pending_;                     // the instance waiting for a client
  PipeConnectOp* op_ = nullptr;
  bool connecting_ = false;
  bool started_ = false;
  bool closed_ = false;
  bool holding_ = false;
  bool self_ref_ = false;
  Napi::FunctionReference on_connection_;
  std::unique_ptr<Napi::AsyncContext> async_context_;

  friend Napi::Value PipeListen(const Napi::CallbackInfo& info);
};

}  // namespace surfacelink
