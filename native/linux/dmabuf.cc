// Linux dma-buf primitives (exports.dmabuf): udmabuf from a sealed memfd, dma-heap allocation,
// CPU-access sync, sync_file export/import, names and /proc fdinfo. Plain ioctls, no libdrm.
#include "dmabuf.h"

#include <fcntl.h>
#include <poll.h>
#include <linux/dma-buf.h>
#include <linux/dma-heap.h>
#include <linux/udmabuf.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "../common/errors.h"
#include "../common/modules.h"
#include "../posix/unique_fd.h"
#include "../posix/fd_kind.h"
#include "../posix/native_fd.h"


// All of these are in Debian 12's linux-libc-dev (6.1 headers); the fallbacks are for older
// build hosts. Values are the kernel ABI.
#ifndef DMA_BUF_IOCTL_EXPORT_SYNC_FILE
// Introduced in Linux 6.0.
struct dma_buf_export_sync_file {
  __u32 flags;
  __s32 fd;
};
struct dma_buf_import_sync_file {
  __u32 flags;
  __s32 fd;
};
#define DMA_BUF_IOCTL_EXPORT_SYNC_FILE _IOWR(DMA_BUF_BASE, 2, struct dma_buf_export_sync_file)
#define DMA_BUF_IOCTL_IMPORT_SYNC_FILE _IOW(DMA_BUF_BASE, 3, struct dma_buf_import_sync_file)
#endif
#ifndef DMA_BUF_SET_NAME_B
// The 64-bit-argument spelling of DMA_BUF_SET_NAME (the ioctl exists since Linux 5.3).
#define DMA_BUF_SET_NAME_B _IOW(DMA_BUF_BASE, 1, __u64)
#endif
#ifndef F_GET_SEALS
#define F_GET_SEALS 1034
#endif
#ifndef F_SEAL_SHRINK
#define F_SEAL_SHRINK 0x0002
#endif
#ifndef F_SEAL_WRITE
#define F_SEAL_WRITE 0x0008
#endif
#ifndef F_SEAL_FUTURE_WRITE
#define F_SEAL_FUTURE_WRITE 0x0010
#endif

namespace surfacelink {

// ---------------------------------------------------------------------------------------
// Shared helpers (declared in dmabuf.h)

static int BorrowKind(Napi::Env env, Napi::Value value, FdKind want, const char* what) {
  FdKind kind;
  int fd = NativeFd::BorrowClassified(env, value, &kind);
  if (kind != want)
    Throw(env, "E_HANDLE_TYPE",
          std::string(what) + " must be a " + FdKindName(want) + ", got a " + FdKindName(kind));
  return fd;
}

int BorrowDmabuf(Napi::Env env, Napi::Value value, const char* what) {
  return BorrowKind(env, value, FdKind::kDmabuf, what);
}

int BorrowSyncFile(Napi::Env env, Napi::Value value, const char* what) {
  return BorrowKind(env, value, FdKind::kSyncFile, what);
}

uint32_t ParseAccess(Napi::Env env, Napi::Value value, const char* what) {
  std::string access = value.IsString() ? value.As<Napi::String>().Utf8Value() : "";
  if (access == "read") return DMA_BUF_SYNC_READ;
  if (access == "write") return DMA_BUF_SYNC_WRITE;
  if (access == "rw") return DMA_BUF_SYNC_RW;
  Throw(env, "E_INVALID_ARGUMENT", std::string(what) + " must be 'read', 'write' or 'rw'");
}

uint64_t RequireInteger(Napi::Env env, Napi::Value value, const char* what, uint64_t min, uint64_t max) {
  if (!value.IsNumber()) Throw(env, "E_INVALID_ARGUMENT", std::string(what) + " must be a number");
  double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= static_cast<double>(min) && v <= static_cast<double>(max)) || v != std::floor(v))
    Throw(env, "E_INVALID_ARGUMENT",
          std::string(what) + " must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
  return static_cast<uint64_t>(v);
}

std::string RequireShortString(Napi::Env env, Napi::Value value, const char* what, size_t min_bytes,
                               size_t max_bytes) {
  if (!value.IsString()) Throw(env, "E_INVALID_ARGUMENT", std::string(what) + " must be a string");
  std::string s = value.As<Napi::String>().Utf8Value();
  if (s.size() < min_bytes || s.size() > max_bytes || s.find('\0') != std::string::npos)
    Throw(env, "E_INVALID_ARGUMENT",
          std::string(what) + " must be " + std::to_string(min_bytes) + ".." + std::to_string(max_bytes) +
              " UTF-8 bytes without NUL, got " + std::to_string(s.size()));
  return s;
}

void ThrowIoctl(Napi::Env env, const char* ioctl_name, const std::string& what, bool einval_is_unsupported) {
  int err = errno;
  if (err == ENOTTY || (einval_is_unsupported && err == EINVAL))
    throw MakeError(env, "E_UNSUPPORTED", what + (what.empty() ? "" : ": ") + "this kernel does not support it",
                    ioctl_name, err);
  throw MakeError(env, "E_SYSTEM", what, ioctl_name, err);
}

int IoctlRetry(int fd, unsigned long request, void* arg, bool retry_eagain) {
  int rc;
  do {
    rc = ::ioctl(fd, request, arg);
  } while (rc < 0 && (errno == EINTR || (retry_eagain && errno == EAGAIN)));
  return rc;
}

// ---------------------------------------------------------------------------------------

namespace {

// Opens a device node; a missing node means the kernel lacks the feature (E_UNSUPPORTED).
UniqueFd OpenDevice(Napi::Env env, const std::string& path, const char* feature) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    if (err == ENOENT || err == ENODEV || err == ENXIO)
      throw MakeError(env, "E_UNSUPPORTED", path + " is not available (" + feature + ")", "open", err);
    throw MakeError(env, "E_SYSTEM", path, "open", err);
  }
  return fd;
}

// The udmabuf per-buffer limit (udmabuf.size_limit_mb), or 0 when unknown.
uint64_t UdmabufLimitBytes() {
  FILE* f = std::fopen("/sys/module/udmabuf/parameters/size_limit_mb", "re");
  if (f == nullptr) return 0;
  unsigned long long mb = 0;
  int n = std::fscanf(f, "%llu", &mb);
  std::fclose(f);
  return n == 1 ? static_cast<uint64_t>(mb) << 20 : 0;
}

constexpr uint64_t kMaxSafeInteger = 9007199254740991ULL;

}  // namespace

// createUdmabuf(memfd, offset, size)
static Napi::Value CreateUdmabuf(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int memfd = NativeFd::Borrow(env, info[0]);
  FdKind kind = ClassifyFd(memfd);
  if (kind != FdKind::kMemfd)
    Throw(env, "E_HANDLE_TYPE", std::string("createUdmabuf needs a memfd, got a ") + FdKindName(kind));
  uint64_t offset = RequireInteger(env, info[1], "offset", 0, kMaxSafeInteger);
  uint64_t size = RequireInteger(env, info[2], "size", 1, kMaxSafeInteger);
  uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (offset % page != 0 || size % page != 0)
    Throw(env, "E_INVALID_ARGUMENT",
          "udmabuf offset and size must be multiples of the page size (" + std::to_string(page) + ")");

  int seals = ::fcntl(memfd, F_GET_SEALS);
  if (seals < 0) {
    int err = errno;
    throw MakeError(env, "E_UNSEALED", "udmabuf needs a memfd created with MFD_ALLOW_SEALING", "fcntl(F_GET_SEALS)",
                    err);
  }
  if ((seals & F_SEAL_SHRINK) == 0)
    Throw(env, "E_UNSEALED",
          "udmabuf needs a memfd sealed with F_SEAL_SHRINK (the kernel refuses others with EINVAL)");
  if ((seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE)) != 0)
    Throw(env, "E_INVALID_ARGUMENT", "udmabuf refuses a memfd sealed against writing (F_SEAL_WRITE/FUTURE_WRITE)");
  struct stat st {};
  if (::fstat(memfd, &st) != 0) ThrowSyscall(env, "fstat");
  uint64_t memfd_size = static_cast<uint64_t>(st.st_size);
  if (offset > memfd_size || size > memfd_size - offset)
    Throw(env, "E_OUT_OF_BOUNDS", "range " + std::to_string(offset) + "+" + std::to_string(size) +
                                      " exceeds the memfd's " + std::to_string(memfd_size) + " bytes");
  uint64_t limit = UdmabufLimitBytes();
  if (limit != 0 && size > limit)
    Throw(env, "E_INVALID_ARGUMENT", "size " + std::to_string(size) + " exceeds udmabuf's limit of " +
                                         std::to_string(limit >> 20) +
                                         " MiB (kernel parameter udmabuf.size_limit_mb)");

  UniqueFd dev = OpenDevice(env, "/dev/udmabuf", "kernel built without CONFIG_UDMABUF?");
  struct udmabuf_create create {};
  create.memfd = static_cast<__u32>(memfd);
  create.flags = UDMABUF_FLAGS_CLOEXEC;
  create.offset = offset;
  create.size = size;
  int rc = IoctlRetry(dev.get(), UDMABUF_CREATE, &create);
  if (rc < 0) ThrowIoctl(env, "ioctl(UDMABUF_CREATE)", "");
  return NativeFd::Wrap(env, UniqueFd(rc));
}

// heapAlloc(heapName, size)
static Napi::Value HeapAlloc(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) Throw(env, "E_INVALID_ARGUMENT", "heapName must be a string");
  std::string name = info[0].As<Napi::String>().Utf8Value();
  bool valid = !name.empty() && name.size() <= 64;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) valid = false;
  if (!valid) Throw(env, "E_INVALID_ARGUMENT", "heapName must match /^[a-z0-9_-]{1,64}$/, got " + name);
  uint64_t size = RequireInteger(env, info[1], "size", 1, kMaxSafeInteger);

  UniqueFd heap = OpenDevice(env, "/dev/dma_heap/" + name, "no such dma-heap");
  struct dma_heap_allocation_data alloc {};
  alloc.len = size;
  alloc.fd_flags = O_RDWR | O_CLOEXEC;
  alloc.heap_flags = 0;
  if (IoctlRetry(heap.get(), DMA_HEAP_IOCTL_ALLOC, &alloc) < 0)
    ThrowIoctl(env, "ioctl(DMA_HEAP_IOCTL_ALLOC)", "heap " + name + ", " + std::to_string(size) + " bytes");
  return NativeFd::Wrap(env, UniqueFd(static_cast<int>(alloc.fd)));
}

// sync(fd, 'start'|'end', access)
static Napi::Value Sync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowDmabuf(env, info[0], "fd");
  std::string phase = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  if (phase != "start" && phase != "end") Throw(env, "E_INVALID_ARGUMENT", "phase must be 'start' or 'end'");
  struct dma_buf_sync sync {};
  sync.flags = ParseAccess(env, info[2], "access") | (phase == "start" ? DMA_BUF_SYNC_START : DMA_BUF_SYNC_END);
  if (IoctlRetry(fd, DMA_BUF_IOCTL_SYNC, &sync, /*retry_eagain=*/true) < 0)
    ThrowIoctl(env, "ioctl(DMA_BUF_IOCTL_SYNC)", "");
  return env.Undefined();
}

// idle(fd, access) -> boolean, without waiting: poll() on a dma-buf reports POLLIN once no
// writer's fence is pending (safe to read) and POLLOUT once no fence at all is (safe to
// write). One syscall, so it can run every frame.
static Napi::Value Idle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowDmabuf(env, info[0], "fd");
  std::string access = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  if (access != "read" && access != "write" && access != "rw")
    Throw(env, "E_INVALID_ARGUMENT", "access must be \"read\", \"write\" or \"rw\"");
  struct pollfd p {};
  p.fd = fd;
  p.events = access == "read" ? POLLIN : POLLOUT;
  int n;
  do {
    n = ::poll(&p, 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) ThrowSyscall(env, "poll");
  return Napi::Boolean::New(env, n > 0 && (p.revents & p.events) != 0);
}

// exportSyncFile(fd, access) -> sync_file
static Napi::Value ExportSyncFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowDmabuf(env, info[0], "fd");
  struct dma_buf_export_sync_file arg {};
  arg.flags = ParseAccess(env, info[1], "access");
  arg.fd = -1;
  if (IoctlRetry(fd, DMA_BUF_IOCTL_EXPORT_SYNC_FILE, &arg) < 0)
    ThrowIoctl(env, "ioctl(DMA_BUF_IOCTL_EXPORT_SYNC_FILE)", "exporting a sync_file needs Linux 6.0");
  // The kernel installs the sync_file with O_CLOEXEC.
  return NativeFd::Wrap(env, UniqueFd(arg.fd));
}

// importSyncFile(fd, fence, access)
static Napi::Value ImportSyncFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowDmabuf(env, info[0], "fd");
  int fence = BorrowSyncFile(env, info[1], "fence");
  struct dma_buf_import_sync_file arg {};
  arg.flags = ParseAccess(env, info[2], "access");
  arg.fd = fence;
  if (IoctlRetry(fd, DMA_BUF_IOCTL_IMPORT_SYNC_FILE, &arg) < 0)
    ThrowIoctl(env, "ioctl(DMA_BUF_IOCTL_IMPORT_SYNC_FILE)", "importing a sync_file needs Linux 6.0");
  return env.Undefined();
}

// setName(fd, name)
static Napi::Value SetName(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowDmabuf(env, info[0], "fd");
  std::string name = RequireShortString(env, info[1], "name", 1, DMA_BUF_NAME_LEN - 1);
  // The argument is the string's address itself (the kernel copies up to DMA_BUF_NAME_LEN bytes).
  if (::ioctl(fd, DMA_BUF_SET_NAME_B, name.c_str()) < 0) ThrowIoctl(env, "ioctl(DMA_BUF_SET_NAME_B)", "");
  return env.Undefined();
}

// info(fd) -> { exporter, size, name, inode }
static Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowDmabuf(env, info[0], "fd");
  char path[64];
  std::snprintf(path, sizeof path, "/proc/self/fdinfo/%d", fd);
  UniqueFd proc(::open(path, O_RDONLY | O_CLOEXEC));
  if (!proc) ThrowSyscall(env, "open", path);
  std::string text;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(proc.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) ThrowSyscall(env, "read", path);
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > (1u << 20)) break;
  }
  std::string exporter;
  bool has_exporter = false, has_name = false;
  std::string name;
  int64_t fdinfo_size = -1;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos) eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    size_t colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string key = line.substr(0, colon);
    size_t v = colon + 1;
    while (v < line.size() && (line[v] == '\t' || line[v] == ' ')) v++;
    std::string value = line.substr(v);
    if (key == "exp_name") {
      exporter = value;
      has_exporter = true;
    } else if (key == "name") {
      name = value;
      has_name = true;
    } else if (key == "size") {
      fdinfo_size = std::strtoll(value.c_str(), nullptr, 10);
    }
  }
  if (!has_exporter) Throw(env, "E_SYSTEM", std::string(path) + " has no exp_name line");
  int64_t size = FdObjectSize(fd, FdKind::kDmabuf);
  if (size < 0) size = fdinfo_size;
  if (size < 0) ThrowSyscall(env, "lseek");
  struct stat st {};
  if (::fstat(fd, &st) != 0) ThrowSyscall(env, "fstat");

  Napi::Object result = Napi::Object::New(env);
  result.Set("exporter", Napi::String::New(env, exporter));
  result.Set("size", Napi::Number::New(env, static_cast<double>(size)));
  result.Set("name", has_name ? Napi::Value(Napi::String::New(env, name)) : env.Null());
  result.Set("inode", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_ino)));
  return result;
}

static void RegisterDmabuf(Napi::Env env, Napi::Object exports) {
  Napi::Object dmabuf = Napi::Object::New(env);
  dmabuf.Set("createUdmabuf", Napi::Function::New(env, CreateUdmabuf, "createUdmabuf"));
  dmabuf.Set("heapAlloc", Napi::Function::New(env, HeapAlloc, "heapAlloc"));
  dmabuf.Set("sync", Napi::Function::New(env, Sync, "sync"));
  dmabuf.Set("exportSyncFile", Napi::Function::New(env, ExportSyncFile, "exportSyncFile"));
  dmabuf.Set("importSyncFile", Napi::Function::New(env, ImportSyncFile, "importSyncFile"));
  dmabuf.Set("setName", Napi::Function::New(env, SetName, "setName"));
  dmabuf.Set("info", Napi::Function::New(env, Info, "info"));
  dmabuf.Set("idle", Napi::Function::New(env, Idle, "idle"));
  exports.Set("dmabuf", dmabuf);
}

SURFACELINK_MODULE(dmabuf, RegisterDmabuf);

}  // namespace surfacelink
