// Linux DRM primitives (exports.drm): node discovery, DRM_IOCTL_VERSION, dumb buffers, PRIME
// export, GEM close, and vgem's test fences. Plain ioctls, no libdrm.
//
// Debian's linux-libc-dev ships no <drm/*.h> (libdrm-dev does, under /usr/include/libdrm), so
// the few structures and ioctl numbers needed are spelled out here from the kernel's uapi
// (include/uapi/drm/drm.h, drm_mode.h, vgem_drm.h). They are stable ABI.
#include <dirent.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "../common/errors.h"
#include "../common/modules.h"
#include "../posix/unique_fd.h"
#include "../posix/native_fd.h"
#include "dmabuf.h"


namespace surfacelink {

namespace drm_abi {

constexpr unsigned kDrmMajor = 226;  // DRM_MAJOR
constexpr char kIoctlBase = 'd';     // DRM_IOCTL_BASE
constexpr unsigned kCommandBase = 0x40;  // DRM_COMMAND_BASE: first driver-private ioctl

// struct drm_version (drm.h; since the beginning of DRM)
struct Version {
  int version_major;
  int version_minor;
  int version_patchlevel;
  size_t name_len;  // __kernel_size_t
  char* name;
  size_t date_len;
  char* date;
  size_t desc_len;
  char* desc;
};

// struct drm_gem_close (drm.h)
struct GemClose {
  uint32_t handle;
  uint32_t pad;
};

// struct drm_prime_handle (drm.h; DRM_RDWR is accepted by newer kernels only (4.6+))
struct PrimeHandle {
  uint32_t handle;
  uint32_t flags;  // DRM_CLOEXEC | DRM_RDWR
  int32_t fd;
};

// struct drm_mode_create_dumb (drm_mode.h)
struct CreateDumb {
  uint32_t height;
  uint32_t width;
  uint32_t bpp;
  uint32_t flags;
  uint32_t handle;  // out
  uint32_t pitch;   // out
  uint64_t size;    // out
};

// struct drm_vgem_fence_attach / drm_vgem_fence_signal (vgem_drm.h, added with vgem's fences in 2016)
struct VgemFenceAttach {
  uint32_t handle;
  uint32_t flags;  // VGEM_FENCE_WRITE
  uint32_t out_fence;
  uint32_t pad;
};
struct VgemFenceSignal {
  uint32_t fence;
  uint32_t flags;
};

constexpr uint32_t kCloexec = O_CLOEXEC;  // DRM_CLOEXEC
constexpr uint32_t kRdwr = O_RDWR;        // DRM_RDWR
constexpr uint32_t kVgemFenceWrite = 0x1;  // VGEM_FENCE_WRITE

constexpr unsigned long kIoctlVersion = _IOWR(kIoctlBase, 0x00, Version);            // DRM_IOCTL_VERSION
constexpr unsigned long kIoctlGemClose = _IOW(kIoctlBase, 0x09, GemClose);           // DRM_IOCTL_GEM_CLOSE
constexpr unsigned long kIoctlPrimeHandleToFd = _IOWR(kIoctlBase, 0x2d, PrimeHandle);  // DRM_IOCTL_PRIME_HANDLE_TO_FD
constexpr unsigned long kIoctlModeCreateDumb = _IOWR(kIoctlBase, 0xB2, CreateDumb);  // DRM_IOCTL_MODE_CREATE_DUMB
constexpr unsigned long kIoctlVgemFenceAttach =
    _IOWR(kIoctlBase, kCommandBase + 0x1, VgemFenceAttach);  // DRM_IOCTL_VGEM_FENCE_ATTACH
constexpr unsigned long kIoctlVgemFenceSignal =
    _IOW(kIoctlBase, kCommandBase + 0x2, VgemFenceSignal);  // DRM_IOCTL_VGEM_FENCE_SIGNAL

static_assert(sizeof(Version) == 64, "struct drm_version layout");
static_assert(sizeof(PrimeHandle) == 12, "struct drm_prime_handle layout");
static_assert(sizeof(CreateDumb) == 32, "struct drm_mode_create_dumb layout");

}  // namespace drm_abi

namespace {

bool IsDrmDevice(int fd) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == drm_abi::kDrmMajor;
}

// The fd inside `value`, which must be an open NativeFd on a DRM device node.
int BorrowCard(Napi::Env env, Napi::Value value) {
  int fd = NativeFd::Borrow(env, value);
  if (!IsDrmDevice(fd)) Throw(env, "E_HANDLE_TYPE", "card must be a DRM device (from drm.open)");
  return fd;
}

struct VersionInfo {
  int major = 0, minor = 0, patch = 0;
  std::string name;
};

// DRM_IOCTL_VERSION, two calls: lengths first, then the name. false with errno on failure.
bool QueryVersion(int fd, VersionInfo* out) {
  drm_abi::Version v {};
  if (IoctlRetry(fd, drm_abi::kIoctlVersion, &v) < 0) return false;
  std::vector<char> name(v.name_len + 1, '\0');
  size_t want = v.name_len;
  v = drm_abi::Version{};
  v.name_len = want;
  v.name = name.data();
  if (IoctlRetry(fd, drm_abi::kIoctlVersion, &v) < 0) return false;
  out->major = v.version_major;
  out->minor = v.version_minor;
  out->patch = v.version_patchlevel;
  out->name.assign(name.data(), std::min(want, v.name_len));
  return true;
}

void RequireVgem(Napi::Env env, int fd) {
  VersionInfo version;
  if (!QueryVersion(fd, &version)) ThrowIoctl(env, "ioctl(DRM_IOCTL_VERSION)", "");
  if (version.name != "vgem")
    Throw(env, "E_UNSUPPORTED", "vgem fences need a vgem device; this one is driven by " + version.name);
}

uint32_t RequireU32(Napi::Env env, Napi::Value value, const char* what, uint32_t min) {
  return static_cast<uint32_t>(RequireInteger(env, value, what, min, 0xffffffffu));
}

}  // namespace

// listNodes() -> { path, kind }[]
static Napi::Value ListNodes(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  struct Node {
    int kind_order;
    long number;
    std::string path;
  };
  std::vector<Node> nodes;
  DIR* dir = ::opendir("/dev/dri");
  if (dir == nullptr) {
    if (errno == ENOENT || errno == ENOTDIR) return Napi::Array::New(env, 0);
    ThrowSyscall(env, "opendir", "/dev/dri");
  }
  while (struct dirent* entry = ::readdir(dir)) {
    std::string name = entry->d_name;
    int kind = -1;
    size_t prefix = 0;
    if (name.compare(0, 7, "renderD") == 0) {
      kind = 1;
      prefix = 7;
    } else if (name.compare(0, 4, "card") == 0) {
      kind = 0;
      prefix = 4;
    }
    if (kind < 0 || name.size() == prefix ||
        name.find_first_not_of("0123456789", prefix) != std::string::npos)
      continue;
    nodes.push_back({kind, std::strtol(name.c_str() + prefix, nullptr, 10), "/dev/dri/" + name});
  }
  ::closedir(dir);
  std::sort(nodes.begin(), nodes.end(), [](const Node& a, const Node& b) {
    return a.kind_order != b.kind_order ? a.kind_order < b.kind_order : a.number < b.number;
  });
  Napi::Array result = Napi::Array::New(env, nodes.size());
  for (size_t i = 0; i < nodes.size(); i++) {
    Napi::Object node = Napi::Object::New(env);
    node.Set("path", nodes[i].path);
    node.Set("kind", nodes[i].kind_order == 0 ? "card" : "render");
    result.Set(static_cast<uint32_t>(i), node);
  }
  return result;
}

// open(path) -> NativeFd
static Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = RequireShortString(env, info[0], "path", 1, 4096);
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) ThrowSyscall(env, "open", path);
  if (!IsDrmDevice(fd.get())) Throw(env, "E_HANDLE_TYPE", path + " is not a DRM device node");
  return NativeFd::Wrap(env, std::move(fd));
}

// version(card) -> { name, major, minor, patch }
static Napi::Value Version(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowCard(env, info[0]);
  VersionInfo version;
  if (!QueryVersion(fd, &version)) ThrowIoctl(env, "ioctl(DRM_IOCTL_VERSION)", "");
  Napi::Object result = Napi::Object::New(env);
  result.Set("name", version.name);
  result.Set("major", version.major);
  result.Set("minor", version.minor);
  result.Set("patch", version.patch);
  return result;
}

// createDumb(card, width, height, bpp) -> { handle, pitch, size }
static Napi::Value CreateDumb(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowCard(env, info[0]);
  drm_abi::CreateDumb arg {};
  arg.width = RequireU32(env, info[1], "width", 1);
  arg.height = RequireU32(env, info[2], "height", 1);
  arg.bpp = RequireU32(env, info[3], "bpp", 1);
  if (IoctlRetry(fd, drm_abi::kIoctlModeCreateDumb, &arg) < 0) {
    int err = errno;
    if (err == ENOSYS || err == EOPNOTSUPP)
      throw MakeError(env, "E_UNSUPPORTED", "this DRM driver has no dumb buffers", "ioctl(DRM_IOCTL_MODE_CREATE_DUMB)",
                      err);
    errno = err;
    ThrowIoctl(env, "ioctl(DRM_IOCTL_MODE_CREATE_DUMB)",
               err == EACCES ? "dumb buffers need the primary node (/dev/dri/cardN), not a render node" : "");
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("handle", Napi::Number::New(env, arg.handle));
  result.Set("pitch", Napi::Number::New(env, arg.pitch));
  result.Set("size", Napi::Number::New(env, static_cast<double>(arg.size)));
  return result;
}

// primeExport(card, handle) -> dma-buf NativeFd
static Napi::Value PrimeExport(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowCard(env, info[0]);
  drm_abi::PrimeHandle arg {};
  arg.handle = RequireU32(env, info[1], "handle", 1);
  arg.flags = drm_abi::kCloexec | drm_abi::kRdwr;
  arg.fd = -1;
  if (IoctlRetry(fd, drm_abi::kIoctlPrimeHandleToFd, &arg) < 0)
    ThrowIoctl(env, "ioctl(DRM_IOCTL_PRIME_HANDLE_TO_FD)", "");
  return NativeFd::Wrap(env, UniqueFd(arg.fd));
}

// closeHandle(card, handle)
static Napi::Value CloseHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowCard(env, info[0]);
  drm_abi::GemClose arg {};
  arg.handle = RequireU32(env, info[1], "handle", 1);
  if (IoctlRetry(fd, drm_abi::kIoctlGemClose, &arg) < 0) ThrowIoctl(env, "ioctl(DRM_IOCTL_GEM_CLOSE)", "");
  return env.Undefined();
}

// vgemFenceAttach(card, handle, write) -> fence id
static Napi::Value VgemFenceAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowCard(env, info[0]);
  drm_abi::VgemFenceAttach arg {};
  arg.handle = RequireU32(env, info[1], "handle", 1);
  if (!info[2].IsBoolean()) Throw(env, "E_INVALID_ARGUMENT", "write must be a boolean");
  arg.flags = info[2].As<Napi::Boolean>().Value() ? drm_abi::kVgemFenceWrite : 0;
  RequireVgem(env, fd);
  if (IoctlRetry(fd, drm_abi::kIoctlVgemFenceAttach, &arg) < 0) {
    ThrowIoctl(env, "ioctl(DRM_IOCTL_VGEM_FENCE_ATTACH)",
               errno == EBUSY ? "the buffer already has a conflicting unsignalled fence" : "",
               /*einval_is_unsupported=*/true);
  }
  return Napi::Number::New(env, arg.out_fence);
}

// vgemFenceSignal(card, fenceId)
static Napi::Value VgemFenceSignal(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = BorrowCard(env, info[0]);
  drm_abi::VgemFenceSignal arg {};
  arg.fence = RequireU32(env, info[1], "fenceId", 0);
  RequireVgem(env, fd);
  if (IoctlRetry(fd, drm_abi::kIoctlVgemFenceSignal, &arg) < 0) {
    int err = errno;
    const char* why = err == ENOENT      ? "no such unsignalled fence on this file"
                      : err == ETIMEDOUT ? "the fence had already signalled on vgem's timeout"
                                         : "";
    errno = err;
    ThrowIoctl(env, "ioctl(DRM_IOCTL_VGEM_FENCE_SIGNAL)", why, /*einval_is_unsupported=*/true);
  }
  return env.Undefined();
}

static void RegisterDrm(Napi::Env env, Napi::Object exports) {
  Napi::Object drm = Napi::Object::New(env);
  drm.Set("listNodes", Napi::Function::New(env, ListNodes, "listNodes"));
  drm.Set("open", Napi::Function::New(env, Open, "open"));
  drm.Set("version", Napi::Function::New(env, Version, "version"));
  drm.Set("createDumb", Napi::Function::New(env, CreateDumb, "createDumb"));
  drm.Set("primeExport", Napi::Function::New(env, PrimeExport, "primeExport"));
  drm.Set("closeHandle", Napi::Function::New(env, CloseHandle, "closeHandle"));
  drm.Set("vgemFenceAttach", Napi::Function::New(env, VgemFenceAttach, "vgemFenceAttach"));
  drm.Set("vgemFenceSignal", Napi::Function::New(env, VgemFenceSignal, "vgemFenceSignal"));
  exports.Set("drm", drm);
}

SURFACELINK_MODULE(drm, RegisterDrm);

}  // namespace surfacelink
