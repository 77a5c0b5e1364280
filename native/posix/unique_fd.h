// UniqueFd: the one owner of a POSIX file descriptor. Move-only; closes on destruction.
// Every fd the addon opens or receives lives in one of these until it is handed to a
// NativeFd object (JS-visible owner) or deliberately released into a syscall that takes it.
#pragma once

#include <unistd.h>
#include <utility>

namespace surfacelink {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }

  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  explicit operator bool() const { return valid(); }

  // Gives up ownership without closing.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);  // EINTR on close: the fd is gone on Linux either way; never retry.
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace surfacelink
