#include "native_fd.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <string>

#include "../common/addon.h"
#include "../common/errors.h"
#include "fd_kind.h"
#include "sigbus_guard.h"

#ifndef F_SEAL_SHRINK
#define F_SEAL_SHRINK 0x0002
#endif

namespace surfacelink {

namespace {

struct Mapping {
  void* base;
  size_t length;
  int guard_slot;  // its SIGBUS guard slot (shm objects), or -1
};

// Runs when the ArrayBuffer's backing store dies: after collection, or after JS detaches
// it (NativeFd users call `unmap(buffer)` which detaches). The only place that unmaps.
void UnmapFinalizer(Napi::Env /*env*/, void* /*data*/, Mapping* mapping) {
  if (mapping->guard_slot >= 0) UnguardMapping(mapping->guard_slot);  // before munmap, never after
  ::munmap(mapping->base, mapping->length);
  delete mapping;
}

// A JS number that must be a non-negative integer ≤ 2^53.
uint64_t RequireSize(Napi::Env env, Napi::Value value, const char* name) {
  if (!value.IsNumber()) Throw(env, "E_INVALID_ARGUMENT", std::string(name) + " must be a number");
  double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != std::floor(v) || v > 9007199254740991.0)
    Throw(env, "E_INVALID_ARGUMENT", std::string(name) + " must be a non-negative integer");
  return static_cast<uint64_t>(v);
}

}  // namespace

Napi::Function NativeFd::Define(Napi::Env env) {
  return DefineClass(env, "NativeFd",
                     {
                         InstanceMethod<&NativeFd::Close>("close"),
                         InstanceMethod<&NativeFd::Dup>("dup"),
                         InstanceMethod<&NativeFd::DupRaw>("dupRaw"),
                         InstanceMethod<&NativeFd::Stat>("stat"),
                         InstanceMethod<&NativeFd::Seals>("seals"),
                         InstanceMethod<&NativeFd::Map>("map"),
                         InstanceMethod<&NativeFd::ReadRows>("readRows"),
                         InstanceAccessor<&NativeFd::IsClosed>("closed"),
                         InstanceAccessor<&NativeFd::DebugNumber>("debugNumber"),
                     });
}

NativeFd::NativeFd(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeFd>(info) {
  // Constructed only from native code, with the fd passed as an External<int>.
  if (info.Length() != 1 || !info[0].IsExternal())
    Throw(info.Env(), "E_INVALID_ARGUMENT", "NativeFd cannot be constructed from JavaScript");
  fd_.reset(*info[0].As<Napi::External<int>>().Data());
}

Napi::Object NativeFd::Wrap(Napi::Env env, UniqueFd fd) {
  int raw = fd.get();
  Napi::Object object = GetAddonData(env).native_fd_ctor.New({Napi::External<int>::New(env, &raw)});
  fd.release();  // now owned by the object
  return object;
}

int NativeFd::Borrow(Napi::Env env, Napi::Value value) {
  if (!value.IsObject() ||
      !value.As<Napi::Object>().InstanceOf(GetAddonData(env).native_fd_ctor.Value()))
    Throw(env, "E_HANDLE_TYPE", "expected a NativeFd");
  return Unwrap(value.As<Napi::Object>())->Require(env);
}

int NativeFd::BorrowClassified(Napi::Env env, Napi::Value value, FdKind* kind) {
  int fd = Borrow(env, value);
  *kind = Unwrap(value.As<Napi::Object>())->Kind(fd);
  return fd;
}

FdKind NativeFd::Kind(int fd) {
  if (!kind_known_) {
    kind_ = ClassifyFd(fd);
    kind_known_ = true;
  }
  return kind_;
}

int NativeFd::Require(Napi::Env env) const {
  if (!fd_.valid()) Throw(env, "E_CLOSED", "the handle is closed");
  return fd_.get();
}

Napi::Value NativeFd::Close(const Napi::CallbackInfo& info) {
  fd_.reset();
  kind_known_ = false;
  return info.Env().Undefined();
}

Napi::Value NativeFd::IsClosed(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), !fd_.valid());
}

Napi::Value NativeFd::DebugNumber(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), fd_.get());
}

Napi::Value NativeFd::Dup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UniqueFd copy(::fcntl(Require(env), F_DUPFD_CLOEXEC, 3));
  if (!copy) ThrowSyscall(env, "fcntl(F_DUPFD_CLOEXEC)");
  return Wrap(env, std::move(copy));
}

// A duplicate as a bare number for a C library that takes ownership of the fd it is given
// (glImportMemoryFdEXT). Close-on-exec; the caller must hand it over or close it.
Napi::Value NativeFd::DupRaw(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  UniqueFd copy(::fcntl(Require(env), F_DUPFD_CLOEXEC, 3));
  if (!copy) ThrowSyscall(env, "fcntl(F_DUPFD_CLOEXEC)");
  return Napi::Number::New(env, copy.release());
}

Napi::Value NativeFd::Stat(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Require(env);
  struct stat st {};
  if (::fstat(fd, &st) != 0) ThrowSyscall(env, "fstat");
  FdKind kind = Kind(fd);
  int64_t size = FdObjectSize(fd, kind);
  Napi::Object result = Napi::Object::New(env);
  result.Set("kind", FdKindName(kind));
  result.Set("size", size >= 0 ? Napi::Number::New(env, static_cast<double>(size)) : env.Null());
  result.Set("inode", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_ino)));
  result.Set("device", Napi::BigInt::New(env, static_cast<uint64_t>(st.st_dev)));
  result.Set("mode", Napi::Number::New(env, st.st_mode));
  return result;
}

Napi::Value NativeFd::Seals(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Require(env);
  if (const char* why = NoSealsReason()) Throw(env, "E_UNSUPPORTED", why);
  int seals = GetSeals(fd);
  if (seals < 0) {
    int err = errno;
    throw MakeError(env, "E_HANDLE_TYPE", "the handle does not support seals", "fcntl(F_GET_SEALS)", err);
  }
  return Napi::Number::New(env, seals);
}

// readRows(offset, stride, rowBytes, rows, target, targetOffset, targetStride) -> rows read: copies
// `rows` rows of `rowBytes` from the object (row r at offset + r * stride) into the Uint8Array
// `target` (row r at targetOffset + r * targetStride) with pread(2), not a mapping: an object
// another process shrinks meanwhile gives a short count, never SIGBUS. Stops at the first short row.
Napi::Value NativeFd::ReadRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Require(env);
  uint64_t offset = RequireSize(env, info[0], "offset");
  uint64_t stride = RequireSize(env, info[1], "stride");
  uint64_t row_bytes = RequireSize(env, info[2], "rowBytes");
  uint64_t rows = RequireSize(env, info[3], "rows");
  if (!info[4].IsTypedArray()) Throw(env, "E_INVALID_ARGUMENT", "target must be a Uint8Array");
  Napi::Uint8Array target = info[4].As<Napi::Uint8Array>();
  uint64_t target_offset = RequireSize(env, info[5], "targetOffset");
  uint64_t target_stride = RequireSize(env, info[6], "targetStride");
  if (rows == 0 || row_bytes == 0) return Napi::Number::New(env, 0);
  uint64_t last = target_offset + (rows - 1) * target_stride + row_bytes;
  if (row_bytes > target_stride && rows > 1) Throw(env, "E_INVALID_ARGUMENT", "rowBytes exceeds targetStride");
  if (last > target.ByteLength()) Throw(env, "E_OUT_OF_BOUNDS", "the rows do not fit in target");
  uint8_t* out = target.Data();
  uint64_t done = 0;
  for (; done < rows; done++) {
    uint8_t* dst = out + target_offset + done * target_stride;
    uint64_t at = offset + done * stride;
    size_t want = static_cast<size_t>(row_bytes);
    size_t got = 0;
    while (got < want) {
      ssize_t n = ::pread(fd, dst + got, want - got, static_cast<off_t>(at + got));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) ThrowSyscall(env, "pread");
      if (n == 0) break;
      got += static_cast<size_t>(n);
    }
    if (got < want) break;
  }
  return Napi::Number::New(env, static_cast<double>(done));
}

// map(offset, length, mode[, trustUnsealed]): mode "shared" maps read-write MAP_SHARED (the
// producer's view); "private" maps MAP_PRIVATE read-write: the consumer sees the producer's
// writes on pages it has not written itself, and a stray JS write cannot fault or reach the
// producer. Refuses memfds that could shrink under the mapping (SIGBUS) and ranges past their
// end. `trustUnsealed` (a shared mapping only) accepts an unsealed memfd: for a producer adopting
// memory from the program it serves (QEMU's display), which would have to shrink its own memory.
//
// A POSIX shm object (kShm, every OS) has no seals. Its size is checked with fstat now (on macOS
// XNU fixed it at the object's one ftruncate, so that check stays true); it is always mapped
// MAP_SHARED (XNU refuses MAP_PRIVATE for shm: a "private" mapping's stray write reaches the
// object, which the fd's holder could write anyway); and the mapping is guarded against SIGBUS
// (sigbus_guard.h), since on Linux anyone holding a writable fd can shrink it.
Napi::Value NativeFd::Map(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = Require(env);
  uint64_t offset = RequireSize(env, info[0], "offset");
  uint64_t length = RequireSize(env, info[1], "length");
  std::string mode = info[2].IsString() ? info[2].As<Napi::String>().Utf8Value() : "";
  if (mode != "shared" && mode != "private")
    Throw(env, "E_INVALID_ARGUMENT", "mode must be \"shared\" or \"private\"");
  if (length == 0) Throw(env, "E_BAD_GEOMETRY", "cannot map zero bytes");

  FdKind kind = Kind(fd);
  bool shm = kind == FdKind::kShm;
  if (kind != FdKind::kMemfd && kind != FdKind::kDmabuf && !shm)
    Throw(env, "E_HANDLE_TYPE", std::string("cannot map a handle of kind ") + FdKindName(kind));
  bool trust_unsealed = info.Length() > 3 && info[3].IsBoolean() && info[3].As<Napi::Boolean>().Value();
  if (trust_unsealed && mode != "shared") Throw(env, "E_INVALID_ARGUMENT", "only a shared mapping may trust an unsealed memfd");
  if (kind == FdKind::kMemfd && !trust_unsealed) {
    int seals = GetSeals(fd);
    if (seals < 0 || (seals & F_SEAL_SHRINK) == 0)
      Throw(env, "E_UNSEALED", "memfd is not sealed against shrinking (F_SEAL_SHRINK); mapping it could SIGBUS");
  }
  if (kind == FdKind::kDmabuf && mode == "private")
    Throw(env, "E_INVALID_ARGUMENT", "dma-buf mappings must be shared");
  int64_t size = FdObjectSize(fd, kind);
  if (size < 0) ThrowSyscall(env, "fstat");
  if (offset > static_cast<uint64_t>(size) || length > static_cast<uint64_t>(size) - offset)
    Throw(env, "E_OUT_OF_BOUNDS", "range " + std::to_string(offset) + "+" + std::to_string(length) +
                                      " exceeds the object's " + std::to_string(size) + " bytes");

  long page = ::sysconf(_SC_PAGESIZE);
  uint64_t aligned = offset - offset % static_cast<uint64_t>(page);
  size_t span = static_cast<size_t>(length + (offset - aligned));
  void* base = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, mode == "shared" || shm ? MAP_SHARED : MAP_PRIVATE,
                      fd, static_cast<off_t>(aligned));
  if (base == MAP_FAILED) ThrowSyscall(env, "mmap");
  int slot = -1;
  if (shm) {
    // Guarded before anyone can read it: from here a shrink turns into zero pages, not SIGBUS.
    slot = GuardMapping(base, span);
    if (slot < 0) {
      int err = errno;
      ::munmap(base, span);
      if (slot == kGuardFull)
        Throw(env, "E_LIMIT",
              "the SIGBUS guard already guards " + std::to_string(kSigbusGuardSlots) +
                  " shm mappings in this process (its limit); unmap some first");
      throw MakeError(env, "E_SYSTEM", "installing the SIGBUS guard failed", "sigaction", err);
    }
  }
  auto* mapping = new Mapping{base, span, slot};
  uint8_t* start = static_cast<uint8_t*>(base) + (offset - aligned);
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(
      env, start, static_cast<size_t>(length),
      [](napi_env e, void* data, void* hint) { UnmapFinalizer(Napi::Env(e), data, static_cast<Mapping*>(hint)); },
      mapping, &buffer);
  if (status != napi_ok) {
    if (slot >= 0) UnguardMapping(slot);
    ::munmap(base, span);
    delete mapping;
    Throw(env, "E_SYSTEM", "this runtime refuses external ArrayBuffers (napi_create_external_arraybuffer)");
  }
  return Napi::Value(env, buffer);
}

// adoptFd(n): takes ownership of an open fd this process got from C code (libgbm, an EGL
// export). It must be open (E_HANDLE_TYPE otherwise); it is made close-on-exec. On failure the
// fd is left open: the caller still owns it.
Napi::Value AdoptFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "adoptFd(fd: number)");
  double d = info[0].As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d != std::floor(d) || d > 2147483647.0) Throw(env, "E_INVALID_ARGUMENT", "fd must be a non-negative integer");
  int fd = static_cast<int>(d);
  int flags = ::fcntl(fd, F_GETFD);
  if (flags < 0) {
    int err = errno;
    throw MakeError(env, "E_HANDLE_TYPE", "not an open file descriptor", "fcntl(F_GETFD)", err);
  }
  if ((flags & FD_CLOEXEC) == 0 && ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) != 0) ThrowSyscall(env, "fcntl(F_SETFD)");
  return NativeFd::Wrap(env, UniqueFd(fd));
}

// unmap(arrayBuffer): detaches a mapping returned by map(); its backing store dies with
// the last reference, which runs UnmapFinalizer. Views over it become zero-length.
Napi::Value DetachMapping(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) Throw(env, "E_INVALID_ARGUMENT", "unmap(arrayBuffer)");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  bool detached = false;
  napi_is_detached_arraybuffer(env, buffer, &detached);
  if (!detached && buffer.ByteLength() > 0) buffer.Detach();
  return env.Undefined();
}

}  // namespace surfacelink
