// macOS socket shims (docs/protocol.md §9.1). XNU has no SOCK_CLOEXEC / SOCK_NONBLOCK, no
// accept4 and no MSG_CMSG_CLOEXEC, so close-on-exec and non-blocking are set with fcntl right
// after each socket or received fd appears. That is not atomic: a fork+exec on another thread in
// that window inherits the fd (libuv on macOS has the same window). SIGPIPE is suppressed per
// socket with SO_NOSIGPIPE (MSG_NOSIGNAL is not in the macOS 11 SDK). Peer credentials come
// from getpeereid (uid, gid), LOCAL_PEERPID (pid) and LOCAL_PEERTOKEN (the audit token, shown as
// peer.auditToken); sun_path is 104 bytes, which channel.cc reads from sizeof(sockaddr_un::sun_path).
#include "../posix/socket_os.h"

#include <fcntl.h>
#include <mach/message.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace surfacelink {

namespace {

bool SetCloexec(int fd) {
  int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && ((flags & FD_CLOEXEC) != 0 || ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == 0);
}

bool SetNonblock(int fd) {
  int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ((flags & O_NONBLOCK) != 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0);
}

bool SetNoSigpipe(int fd) {
  int on = 1;
  return ::setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &on, sizeof on) == 0;
}

// Makes a socket this process just created or accepted fit for a Channel: close-on-exec,
// non-blocking, no SIGPIPE. Closes it (keeping errno) when any step fails.
UniqueFd Prepare(int raw) {
  UniqueFd fd(raw);
  if (!fd) return fd;
  if (!SetCloexec(fd.get()) || !SetNonblock(fd.get()) || !SetNoSigpipe(fd.get())) {
    int err = errno;
    fd.reset();
    errno = err;
  }
  return fd;
}

}  // namespace

UniqueFd OsSocket() { return Prepare(::socket(AF_UNIX, SOCK_STREAM, 0)); }

// EINTR and EAGAIN reach the caller as on Linux (the Listener retries on its next poll).
UniqueFd OsAccept(int listen_fd) { return Prepare(::accept(listen_fd, nullptr, nullptr)); }

bool OsSocketPair(UniqueFd* a, UniqueFd* b) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return false;
  UniqueFd first = Prepare(sv[0]);
  if (!first) {
    int err = errno;
    ::close(sv[1]);
    errno = err;
    return false;
  }
  UniqueFd second = Prepare(sv[1]);
  if (!second) return false;  // `first` closes itself
  *a = std::move(first);
  *b = std::move(second);
  return true;
}

bool OsAdoptSocket(int fd, const char** failed_syscall) {
  if (!SetNonblock(fd)) {
    *failed_syscall = "fcntl(O_NONBLOCK)";
    return false;
  }
  // A socket that came from elsewhere (another process, socketpairFds) may lack SO_NOSIGPIPE.
  if (!SetNoSigpipe(fd)) {
    *failed_syscall = "setsockopt(SO_NOSIGPIPE)";
    return false;
  }
  return true;
}

bool OsPeerCred(int fd, PeerCred* out) {
  uid_t uid;
  gid_t gid;
  if (::getpeereid(fd, &uid, &gid) != 0) return false;
  out->uid = uid;
  out->gid = gid;
  // The pid is best effort (an unconnected or socketpair peer may have none): -1 then.
  pid_t pid = -1;
  socklen_t len = sizeof pid;
  if (::getsockopt(fd, SOL_LOCAL, LOCAL_PEERPID, &pid, &len) != 0 || len != sizeof pid) pid = -1;
  out->pid = pid;
  // The audit token (pid, its version, uids, …), best effort like the pid: the Mach rendezvous
  // (native/macos/mach_rendezvous.cc) matches it against a CONNECT message's audit trailer.
  audit_token_t token{};
  len = sizeof token;
  if (::getsockopt(fd, SOL_LOCAL, LOCAL_PEERTOKEN, &token, &len) == 0 && len == sizeof token) {
    static_assert(sizeof token == sizeof out->audit_token, "audit_token_t is 32 bytes");
    std::memcpy(out->audit_token, &token, sizeof token);
    out->has_audit_token = true;
  }
  return true;
}

ssize_t OsRecv(int fd, void* buf, size_t len, size_t max_fds, std::vector<UniqueFd>* fds, bool* truncated) {
  struct iovec iov {buf, len};
  // Room for max_fds descriptors; anything beyond sets MSG_CTRUNC (and the kernel discards the excess).
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
  size_t control_len = CMSG_SPACE(sizeof(int) * (max_fds > 16 ? 16 : max_fds));
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = max_fds > 0 ? control : nullptr;
  msg.msg_controllen = max_fds > 0 ? static_cast<socklen_t>(control_len) : 0;
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return n;
  *truncated = (msg.msg_flags & MSG_CTRUNC) != 0;
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    const unsigned char* data = CMSG_DATA(c);
    for (size_t i = 0; i < count; i++) {
      int received;
      std::memcpy(&received, data + i * sizeof(int), sizeof(int));
      fds->emplace_back(received);
      // No MSG_CMSG_CLOEXEC here. F_SETFD on an fd we were just given fails only if the fd is
      // bad; it is owned (and closed) either way.
      ::fcntl(received, F_SETFD, FD_CLOEXEC);
    }
  }
  return n;
}

ssize_t OsSend(int fd, const void* buf, size_t len, const int* fds, size_t nfds) {
  struct iovec iov {const_cast<void*>(buf), len};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (nfds > 0) {
    msg.msg_control = control;
    msg.msg_controllen = static_cast<socklen_t>(CMSG_SPACE(sizeof(int) * nfds));
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = static_cast<socklen_t>(CMSG_LEN(sizeof(int) * nfds));
    std::memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do {
    // SIGPIPE is off through SO_NOSIGPIPE on every socket a Channel holds (Prepare, OsAdoptSocket).
    n = ::sendmsg(fd, &msg, MSG_DONTWAIT);
  } while (n < 0 && errno == EINTR);
  return n;
}

}  // namespace surfacelink
