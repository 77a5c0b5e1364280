// The few socket calls that differ between Linux and macOS (accept4, MSG_CMSG_CLOEXEC,
// SO_PEERCRED vs getpeereid, MSG_NOSIGNAL vs SO_NOSIGPIPE). One implementation per OS.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "unique_fd.h"

namespace surfacelink {

struct PeerCred {
  int64_t pid = -1;
  int64_t uid = -1;
  int64_t gid = -1;
  // macOS only: the peer's audit_token_t (getsockopt LOCAL_PEERTOKEN), which the Mach rendezvous
  // compares with a CONNECT's audit trailer. Left unset on Linux (the channel then shows no auditToken).
  bool has_audit_token = false;
  uint8_t audit_token[32] = {};
};

// A non-blocking, close-on-exec AF_UNIX stream socket.
UniqueFd OsSocket();
// Accepts one connection as a non-blocking, close-on-exec socket; invalid (errno set) if none.
UniqueFd OsAccept(int listen_fd);
bool OsSocketPair(UniqueFd* a, UniqueFd* b);
// Makes a connected socket that came from elsewhere (channelFromFd) fit for a Channel:
// non-blocking, and on macOS SO_NOSIGPIPE. On failure sets `*failed_syscall` (errno is set).
bool OsAdoptSocket(int fd, const char** failed_syscall);
bool OsPeerCred(int fd, PeerCred* out);

// recvmsg with room for `max_fds` descriptors, installed close-on-exec. Received fds are
// appended to `fds` (owned). `*truncated` is set when the kernel dropped descriptors or
// control data (MSG_CTRUNC) — a protocol error: the sender attached more than allowed.
ssize_t OsRecv(int fd, void* buf, size_t len, size_t max_fds, std::vector<UniqueFd>* fds,
               bool* truncated);

// sendmsg that never raises SIGPIPE and never blocks.
ssize_t OsSend(int fd, const void* buf, size_t len, const int* fds, size_t nfds);

}  // namespace surfacelink
