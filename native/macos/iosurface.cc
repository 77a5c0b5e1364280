// IOSurface (module `iosurface`): GPU-shareable surfaces on macOS, for the iosurface mechanism.
//
//   iosurfaceMissingReason()       null when CoreFoundation and IOSurface loaded (apple_api.cc),
//                                  else which dlopen/dlsym failed; every call below then throws
//                                  E_UNSUPPORTED with that text.
//   createIOSurface(options)       a new surface: { width, height, pixelFormat, bytesPerElement,
//                                  bytesPerRow?, global? } → IOSurfaceCreate.
//   lookupIOSurface(id)            IOSurfaceLookup of a global surface (E_IMPORT_FAILED when none).
//   ioSurfaceFromMachPort(port)    IOSurfaceLookupFromMachPort of a send right that
//                                  IOSurfaceCreateMachPort made in some task (the caller keeps the port).
//
// Sharing. The secure way to hand a surface to another process is a Mach send right made by
// IOSurfaceCreateMachPort and carried in a Mach message (mach_rendezvous.cc): only the task
// that receives the right can open the surface, and the right keeps it alive in transit.
// `global: true` instead sets kIOSurfaceIsGlobal (deprecated since macOS 10.11, still honoured)
// so that a peer can IOSurfaceLookup the surface by its 32-bit IOSurfaceID. That is insecure:
// ANY process of ANY user on the machine can look up a global surface, and the IDs are small
// integers handed out in sequence, so an unrelated process can guess them and read (or write) the
// pixels. It exists only for the UTM-compatible mode, whose peer expects global IDs.
//
// A NativeIOSurface owns one reference of its IOSurfaceRef (+1 from Create/Lookup), dropped by
// release() or, as a safety net, when the object is collected. lock() returns an external
// ArrayBuffer over the surface's memory (IOSurfaceGetBaseAddress, IOSurfaceGetAllocSize bytes);
// unlock() and release() detach it. The ArrayBuffer holds a reference of its own (CFRetain,
// dropped when it is collected), so the memory it points at stays mapped even if the wrapper is
// collected while JS still holds the buffer. The sizes are read once, when the object is made.
// UNVERIFIED: compiled and linked only; nothing here has run on a Mac.
#include <mach/mach.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "../common/errors.h"
#include "../common/modules.h"
#include "apple_api.h"
#include "mach_port.h"

namespace surfacelink {

namespace {

constexpr uint64_t kMaxDimension = 16384;
constexpr uint64_t kMaxBytesPerElement = 16;       // RGBA of 32-bit floats
constexpr uint64_t kMaxBytesPerRow = 1u << 20;     // 16384 × 16 = 256 KiB, with room for alignment
constexpr uint64_t kMaxSurfaceBytes = (1ull << 31) - 1;

const apple::Api& RequireApi(Napi::Env env) {
  const apple::Api* api = apple::GetApi();
  if (api == nullptr) Throw(env, "E_UNSUPPORTED", std::string("IOSurface is unavailable: ") + AppleApiMissingReason());
  return *api;
}

// A JS number that must be an integer in [0, max] (E_INVALID_ARGUMENT otherwise).
uint64_t RequireInteger(Napi::Env env, Napi::Value value, const std::string& name, uint64_t max) {
  if (!value.IsNumber()) Throw(env, "E_INVALID_ARGUMENT", name + " must be a number");
  double v = value.As<Napi::Number>().DoubleValue();
  if (!(v >= 0) || v != std::floor(v) || v > static_cast<double>(max))
    Throw(env, "E_INVALID_ARGUMENT", name + " must be an integer from 0 to " + std::to_string(max));
  return static_cast<uint64_t>(v);
}

// A geometry integer: E_INVALID_ARGUMENT unless an integer, E_BAD_GEOMETRY outside [min, max].
uint64_t RequireDimension(Napi::Env env, Napi::Value value, const std::string& name, uint64_t min, uint64_t max) {
  uint64_t v = RequireInteger(env, value, name, 9007199254740991ull);
  if (v < min || v > max)
    Throw(env, "E_BAD_GEOMETRY", name + " must be from " + std::to_string(min) + " to " + std::to_string(max));
  return v;
}

// Releases a CF object when it goes out of scope.
class CfHolder {
 public:
  CfHolder(const apple::Api& api, apple::CFTypeRef ref) : api_(api), ref_(ref) {}
  ~CfHolder() {
    if (ref_ != nullptr) api_.CFRelease(ref_);
  }
  CfHolder(const CfHolder&) = delete;
  CfHolder& operator=(const CfHolder&) = delete;
  apple::CFTypeRef get() const { return ref_; }

 private:
  const apple::Api& api_;
  apple::CFTypeRef ref_;
};

// The external ArrayBuffer of a lock() dies: drop the reference it held.
void LockedBufferFinalizer(napi_env /*env*/, void* /*data*/, void* hint) {
  if (const apple::Api* api = apple::GetApi()) api->CFRelease(hint);
}

struct SurfaceInit {
  apple::IOSurfaceRef surface;
  bool global;
  bool taken;
};

class NativeIOSurface : public Napi::ObjectWrap<NativeIOSurface> {
 public:
  static Napi::Function Constructor(Napi::Env env) {
    MacosEnvData& data = GetMacosEnvData(env);
    if (data.iosurface_ctor.IsEmpty()) {
      data.iosurface_ctor = Napi::Persistent(DefineClass(
          env, "NativeIOSurface",
          {
              InstanceMethod<&NativeIOSurface::Lock>("lock"),
              InstanceMethod<&NativeIOSurface::Unlock>("unlock"),
              InstanceMethod<&NativeIOSurface::IncrementUseCount>("incrementUseCount"),
              InstanceMethod<&NativeIOSurface::DecrementUseCount>("decrementUseCount"),
              InstanceMethod<&NativeIOSurface::CreateMachPort>("createMachPort"),
              InstanceMethod<&NativeIOSurface::ReleaseMethod>("release"),
              InstanceAccessor<&NativeIOSurface::GetId>("id"),
              InstanceAccessor<&NativeIOSurface::GetWidth>("width"),
              InstanceAccessor<&NativeIOSurface::GetHeight>("height"),
              InstanceAccessor<&NativeIOSurface::GetPixelFormat>("pixelFormat"),
              InstanceAccessor<&NativeIOSurface::GetBytesPerRow>("bytesPerRow"),
              InstanceAccessor<&NativeIOSurface::GetBytesPerElement>("bytesPerElement"),
              InstanceAccessor<&NativeIOSurface::GetAllocSize>("allocSize"),
              InstanceAccessor<&NativeIOSurface::GetPlaneCount>("planeCount"),
              InstanceAccessor<&NativeIOSurface::GetGlobal>("global"),
              InstanceAccessor<&NativeIOSurface::GetReleased>("released"),
              InstanceAccessor<&NativeIOSurface::GetUseCount>("useCount"),
              InstanceAccessor<&NativeIOSurface::GetInUse>("inUse"),
              InstanceAccessor<&NativeIOSurface::GetAddress>("address"),
          }));
    }
    return data.iosurface_ctor.Value();
  }

  // A new NativeIOSurface owning the +1 reference `surface` comes with; released if the object
  // cannot be made.
  static Napi::Object Wrap(Napi::Env env, const apple::Api& api, apple::IOSurfaceRef surface, bool global) {
    SurfaceInit init{surface, global, false};
    try {
      return Constructor(env).New({Napi::External<SurfaceInit>::New(env, &init)});
    } catch (...) {
      if (!init.taken) api.CFRelease(surface);
      throw;
    }
  }

  explicit NativeIOSurface(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeIOSurface>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      Throw(info.Env(), "E_INVALID_ARGUMENT", "NativeIOSurface cannot be constructed from JavaScript");
    SurfaceInit* init = info[0].As<Napi::External<SurfaceInit>>().Data();
    api_ = apple::GetApi();  // non-null: the surface came from it
    surface_ = init->surface;
    global_ = init->global;
    init->taken = true;
    id_ = api_->IOSurfaceGetID(surface_);
    width_ = api_->IOSurfaceGetWidth(surface_);
    height_ = api_->IOSurfaceGetHeight(surface_);
    pixel_format_ = api_->IOSurfaceGetPixelFormat(surface_);
    bytes_per_row_ = api_->IOSurfaceGetBytesPerRow(surface_);
    bytes_per_element_ = api_->IOSurfaceGetBytesPerElement(surface_);
    alloc_size_ = api_->IOSurfaceGetAllocSize(surface_);
    plane_count_ = api_->IOSurfaceGetPlaneCount(surface_);
  }

  // The safety net: no detach here (a collected wrapper may not touch the JS heap); the locked
  // buffer, if JS still holds it, keeps its own reference of the surface.
  ~NativeIOSurface() override { ReleaseNow(false); }

 private:
  apple::IOSurfaceRef Require(Napi::Env env) const {
    if (surface_ == nullptr) Throw(env, "E_CLOSED", "the IOSurface is released");
    return surface_;
  }

  // Ends the lock: detaches the buffer (when `detach`), then IOSurfaceUnlock with the lock's options.
  kern_return_t UnlockNow(bool detach) {
    if (detach && !lock_buffer_.IsEmpty()) {
      Napi::ArrayBuffer buffer = lock_buffer_.Value();
      if (!buffer.IsEmpty() && !buffer.IsDetached()) buffer.Detach();
    }
    lock_buffer_.Reset();
    locked_ = false;
    return api_->IOSurfaceUnlock(surface_, lock_options_, nullptr);
  }

  void ReleaseNow(bool detach) {
    if (surface_ == nullptr) return;
    if (locked_) UnlockNow(detach);
    for (; use_counts_added_ > 0; use_counts_added_--) api_->IOSurfaceDecrementUseCount(surface_);
    api_->CFRelease(surface_);
    surface_ = nullptr;
  }

  // lock(readOnly) -> ArrayBuffer over the whole allocation.
  Napi::Value Lock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    apple::IOSurfaceRef surface = Require(env);
    if (!info[0].IsBoolean()) Throw(env, "E_INVALID_ARGUMENT", "lock(readOnly: boolean)");
    if (locked_) Throw(env, "E_UNEXPECTED", "the IOSurface is already locked by this object: unlock() first");
    apple::IOSurfaceLockOptions options = info[0].As<Napi::Boolean>().Value() ? apple::kIOSurfaceLockReadOnly : 0;
    kern_return_t kr = api_->IOSurfaceLock(surface, options, nullptr);
    if (kr != KERN_SUCCESS) throw MakeMachError(env, "E_SYSTEM", "IOSurfaceLock", kr);
    void* base = api_->IOSurfaceGetBaseAddress(surface);
    size_t size = api_->IOSurfaceGetAllocSize(surface);
    if (base == nullptr || size == 0) {
      api_->IOSurfaceUnlock(surface, options, nullptr);
      Throw(env, "E_SYSTEM", "the locked IOSurface has no base address");
    }
    api_->CFRetain(surface);  // the buffer's own reference (LockedBufferFinalizer drops it)
    napi_value buffer;
    napi_status status = napi_create_external_arraybuffer(env, base, size, LockedBufferFinalizer, surface, &buffer);
    if (status != napi_ok) {
      api_->CFRelease(surface);
      api_->IOSurfaceUnlock(surface, options, nullptr);
      Throw(env, "E_SYSTEM", "this runtime refuses external ArrayBuffers (napi_create_external_arraybuffer)");
    }
    locked_ = true;
    lock_options_ = options;
    lock_buffer_ = Napi::Persistent(Napi::ArrayBuffer(env, buffer));
    return Napi::Value(env, buffer);
  }

  // unlock(): detaches the lock's buffer, then IOSurfaceUnlock with the same options.
  Napi::Value Unlock(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Require(env);
    if (!locked_) Throw(env, "E_UNEXPECTED", "the IOSurface is not locked by this object");
    kern_return_t kr = UnlockNow(true);
    if (kr != KERN_SUCCESS) throw MakeMachError(env, "E_SYSTEM", "IOSurfaceUnlock", kr);
    return env.Undefined();
  }

  Napi::Value IncrementUseCount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    apple::IOSurfaceRef surface = Require(env);
    if (use_counts_added_ >= INT32_MAX) Throw(env, "E_UNEXPECTED", "too many use counts");
    api_->IOSurfaceIncrementUseCount(surface);
    use_counts_added_++;
    return env.Undefined();
  }

  // Drops one use count this object added; never one it did not add.
  Napi::Value DecrementUseCount(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    apple::IOSurfaceRef surface = Require(env);
    if (use_counts_added_ <= 0)
      Throw(env, "E_UNEXPECTED", "this object holds no use count (incrementUseCount() was not called)");
    api_->IOSurfaceDecrementUseCount(surface);
    use_counts_added_--;
    return env.Undefined();
  }

  // createMachPort() -> NativeMachPort: a new send right naming this surface.
  Napi::Value CreateMachPort(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    apple::IOSurfaceRef surface = Require(env);
    mach_port_t port = api_->IOSurfaceCreateMachPort(surface);
    if (!MACH_PORT_VALID(port)) Throw(env, "E_SYSTEM", "IOSurfaceCreateMachPort returned no port");
    return NativeMachPort::Wrap(env, port, MachRight::kSend);
  }

  // release(): unlocks (detaching the buffer), drops the use counts this object added, then its
  // reference. Idempotent.
  Napi::Value ReleaseMethod(const Napi::CallbackInfo& info) {
    ReleaseNow(true);
    return info.Env().Undefined();
  }

  Napi::Value GetId(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), id_); }
  Napi::Value GetWidth(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(width_));
  }
  Napi::Value GetHeight(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(height_));
  }
  Napi::Value GetPixelFormat(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), pixel_format_); }
  Napi::Value GetBytesPerRow(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(bytes_per_row_));
  }
  Napi::Value GetBytesPerElement(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(bytes_per_element_));
  }
  Napi::Value GetAllocSize(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(alloc_size_));
  }
  Napi::Value GetPlaneCount(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(plane_count_));
  }
  Napi::Value GetGlobal(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), global_); }
  Napi::Value GetReleased(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), surface_ == nullptr);
  }
  Napi::Value GetUseCount(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), surface_ != nullptr ? api_->IOSurfaceGetUseCount(surface_) : 0);
  }
  Napi::Value GetInUse(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), surface_ != nullptr && api_->IOSurfaceIsInUse(surface_) != 0);
  }
  Napi::Value GetAddress(const Napi::CallbackInfo& info) {
    return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(surface_)));
  }

  const apple::Api* api_ = nullptr;
  apple::IOSurfaceRef surface_ = nullptr;
  bool global_ = false;
  uint32_t id_ = 0;
  size_t width_ = 0;
  size_t height_ = 0;
  apple::OSType pixel_format_ = 0;
  size_t bytes_per_row_ = 0;
  size_t bytes_per_element_ = 0;
  size_t alloc_size_ = 0;
  size_t plane_count_ = 0;
  bool locked_ = false;
  apple::IOSurfaceLockOptions lock_options_ = 0;
  Napi::Reference<Napi::ArrayBuffer> lock_buffer_;
  int64_t use_counts_added_ = 0;
};

// createIOSurface({ width, height, pixelFormat, bytesPerElement, bytesPerRow?, global? })
Napi::Value CreateIOSurface(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject())
    Throw(env, "E_INVALID_ARGUMENT",
          "createIOSurface({ width, height, pixelFormat, bytesPerElement, bytesPerRow?, global? })");
  Napi::Object options = info[0].As<Napi::Object>();
  uint64_t width = RequireDimension(env, options.Get("width"), "width", 1, kMaxDimension);
  uint64_t height = RequireDimension(env, options.Get("height"), "height", 1, kMaxDimension);
  uint64_t pixel_format = RequireInteger(env, options.Get("pixelFormat"), "pixelFormat", 0xFFFFFFFFull);
  uint64_t bytes_per_element =
      RequireDimension(env, options.Get("bytesPerElement"), "bytesPerElement", 1, kMaxBytesPerElement);
  uint64_t min_row = width * bytes_per_element;  // ≤ 2^18: no overflow
  Napi::Value row_value = options.Get("bytesPerRow");
  uint64_t bytes_per_row = 0;  // 0: IOSurface chooses (aligned)
  if (!row_value.IsUndefined()) {
    bytes_per_row = RequireDimension(env, row_value, "bytesPerRow", 1, kMaxBytesPerRow);
    if (bytes_per_row < min_row)
      Throw(env, "E_BAD_GEOMETRY",
            "bytesPerRow " + std::to_string(bytes_per_row) + " is below width × bytesPerElement (" +
                std::to_string(min_row) + ")");
  }
  if ((bytes_per_row != 0 ? bytes_per_row : min_row) * height > kMaxSurfaceBytes)  // ≤ 2^34: no overflow
    Throw(env, "E_BAD_GEOMETRY", "the surface would exceed 2 GiB");
  Napi::Value global_value = options.Get("global");
  if (!global_value.IsUndefined() && !global_value.IsBoolean())
    Throw(env, "E_INVALID_ARGUMENT", "global must be a boolean");
  bool global = global_value.IsBoolean() && global_value.As<Napi::Boolean>().Value();

  const apple::Api& api = RequireApi(env);
  // CFNumbers of 32-bit integers (every value above fits; pixelFormat as its bit pattern).
  auto number = [&](uint64_t value) {
    int32_t v = static_cast<int32_t>(static_cast<uint32_t>(value));
    return static_cast<apple::CFTypeRef>(api.CFNumberCreate(nullptr, apple::kCFNumberSInt32Type, &v));
  };
  CfHolder width_number(api, number(width));
  CfHolder height_number(api, number(height));
  CfHolder format_number(api, number(pixel_format));
  CfHolder element_number(api, number(bytes_per_element));
  CfHolder row_number(api, bytes_per_row != 0 ? number(bytes_per_row) : nullptr);
  if (width_number.get() == nullptr || height_number.get() == nullptr || format_number.get() == nullptr ||
      element_number.get() == nullptr || (bytes_per_row != 0 && row_number.get() == nullptr))
    Throw(env, "E_SYSTEM", "CFNumberCreate failed");
  const void* keys[6];
  const void* values[6];
  apple::CFIndex count = 0;
  auto add = [&](const apple::CFStringRef* key, apple::CFTypeRef value) {
    keys[count] = *key;
    values[count] = value;
    count++;
  };
  add(api.kIOSurfaceWidth, width_number.get());
  add(api.kIOSurfaceHeight, height_number.get());
  add(api.kIOSurfacePixelFormat, format_number.get());
  add(api.kIOSurfaceBytesPerElement, element_number.get());
  if (bytes_per_row != 0) add(api.kIOSurfaceBytesPerRow, row_number.get());
  if (global) add(api.kIOSurfaceIsGlobal, *api.kCFBooleanTrue);  // UTM-compatible mode only: see the top
  CfHolder properties(api, api.CFDictionaryCreate(nullptr, keys, values, count, api.kCFTypeDictionaryKeyCallBacks,
                                                  api.kCFTypeDictionaryValueCallBacks));
  if (properties.get() == nullptr) Throw(env, "E_SYSTEM", "CFDictionaryCreate failed");
  apple::IOSurfaceRef surface = api.IOSurfaceCreate(static_cast<apple::CFDictionaryRef>(properties.get()));
  if (surface == nullptr)
    Throw(env, "E_SYSTEM", "IOSurfaceCreate refused " + std::to_string(width) + "x" + std::to_string(height) +
                                  " (pixelFormat " + std::to_string(pixel_format) + ", " +
                                  std::to_string(bytes_per_element) + " bytes per element)");
  return NativeIOSurface::Wrap(env, api, surface, global);
}

// lookupIOSurface(id): a global surface by its IOSurfaceID.
Napi::Value LookupIOSurface(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t id = RequireInteger(env, info[0], "id", 0xFFFFFFFFull);
  const apple::Api& api = RequireApi(env);
  apple::IOSurfaceRef surface = api.IOSurfaceLookup(static_cast<apple::IOSurfaceID>(id));
  if (surface == nullptr) Throw(env, "E_IMPORT_FAILED", "no global IOSurface has the ID " + std::to_string(id));
  return NativeIOSurface::Wrap(env, api, surface, true);
}

// ioSurfaceFromMachPort(port): the surface a send right from IOSurfaceCreateMachPort names.
Napi::Value IOSurfaceFromMachPort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  mach_port_name_t port = NativeMachPort::Borrow(env, info[0], MachRight::kSend);
  const apple::Api& api = RequireApi(env);
  apple::IOSurfaceRef surface = api.IOSurfaceLookupFromMachPort(port);
  if (surface == nullptr) Throw(env, "E_IMPORT_FAILED", "the Mach port does not name an IOSurface");
  return NativeIOSurface::Wrap(env, api, surface, false);
}

Napi::Value IOSurfaceMissingReason(const Napi::CallbackInfo& info) {
  const char* why = AppleApiMissingReason();
  return why != nullptr ? Napi::Value(Napi::String::New(info.Env(), why)) : info.Env().Null();
}

void RegisterIOSurface(Napi::Env env, Napi::Object exports) {
  exports.Set("iosurfaceMissingReason", Napi::Function::New(env, IOSurfaceMissingReason, "iosurfaceMissingReason"));
  exports.Set("createIOSurface", Napi::Function::New(env, CreateIOSurface, "createIOSurface"));
  exports.Set("lookupIOSurface", Napi::Function::New(env, LookupIOSurface, "lookupIOSurface"));
  exports.Set("ioSurfaceFromMachPort", Napi::Function::New(env, IOSurfaceFromMachPort, "ioSurfaceFromMachPort"));
}

}  // namespace

SURFACELINK_MODULE(iosurface, RegisterIOSurface);

}  // namespace surfacelink
