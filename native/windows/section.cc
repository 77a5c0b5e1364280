// File-mapping sections (pagefile-backed shared memory) and process-level helpers:
// createSection, sectionSize, mapSection, unmap, readOnlySection, createMutex, processHandleCount.
#include "handle.h"

#include <winternl.h>

#include <cstring>

#include <mutex>
#include <unordered_map>

#include "../common/addon.h"
#include "../common/errors.h"
#include "../common/modules.h"
#include "handle.h"

extern "C" NTSTATUS NTAPI NtQuerySection(HANDLE SectionHandle, int InformationClass, PVOID InformationBuffer,
                                         ULONG InformationBufferSize, PULONG ResultLength);

namespace surfacelink {

namespace {

constexpr double kMaxSectionSize = 281474976710656.0;  // 2^48, as protocol.md §5.3 bounds sizes

struct SectionBasicInformation {  // SECTION_BASIC_INFORMATION (class 0)
  PVOID BaseAddress;
  ULONG Attributes;
  LARGE_INTEGER Size;
};

// A view handed to JS. Owned by the ArrayBuffer's finalizer; `base` is null once unmapped.
struct View {
  void* base;
};

// Live views by the address JS sees (unmap() finds its view from the ArrayBuffer).
std::mutex g_views_mutex;
std::unordered_map<void*, View*> g_views;

void ViewFinalizer(Napi::Env /*env*/, void* data, View* view) {
  {
    std::lock_guard<std::mutex> lock(g_views_mutex);
    auto it = g_views.find(data);
    if (it != g_views.end() && it->second == view) g_views.erase(it);
  }
  if (view->base != nullptr) ::UnmapViewOfFile(view->base);
  delete view;
}

double RequireNumber(Napi::Env env, Napi::Value v, const char* name, double min, double max) {
  if (!v.IsNumber()) Throw(env, "E_INVALID_ARGUMENT", std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<uint64_t>(d)))
    Throw(env, "E_INVALID_ARGUMENT", std::string(name) + " must be an integer in " + std::to_string(static_cast<uint64_t>(min)) +
                                         ".." + std::to_string(static_cast<uint64_t>(max)));
  return d;
}

uint64_t PageSize() {
  SYSTEM_INFO info;
  ::GetSystemInfo(&info);
  return info.dwPageSize;
}

uint64_t Granularity() {
  SYSTEM_INFO info;
  ::GetSystemInfo(&info);
  return info.dwAllocationGranularity;
}

uint64_t SectionSizeOf(Napi::Env env, HANDLE h) {
  if (std::strcmp(ObjectKind(h), "section") != 0) Throw(env, "E_HANDLE_TYPE", "the handle is not a section");
  uint64_t size = 0;
  SectionBasicInformation info{};
  ULONG got = 0;
  if (NtQuerySection(h, 0, &info, sizeof info, &got) >= 0 && info.Size.QuadPart > 0) {
    size = static_cast<uint64_t>(info.Size.QuadPart);
  } else {
    // No SECTION_QUERY access (or no NtQuerySection): what a whole-section view spans.
    void* base = ::MapViewOfFile(h, FILE_MAP_READ, 0, 0, 0);
    if (base == nullptr) ThrowLastError(env, "MapViewOfFile", "cannot read the section's size");
    MEMORY_BASIC_INFORMATION mbi{};
    SIZE_T n = ::VirtualQuery(base, &mbi, sizeof mbi);
    ::UnmapViewOfFile(base);
    if (n == 0) ThrowLastError(env, "VirtualQuery");
    size = mbi.RegionSize;
  }
  uint64_t page = PageSize();
  return (size + page - 1) / page * page;
}

Napi::Value CreateSection(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t size = static_cast<uint64_t>(RequireNumber(env, info[0], "size", 1, kMaxSectionSize));
  HANDLE h = ::CreateFileMappingW(INVALID_HANDLE_VALUE, nullptr, PAGE_READWRITE, static_cast<DWORD>(size >> 32),
                                  static_cast<DWORD>(size), nullptr);
  if (h == nullptr) ThrowLastError(env, "CreateFileMappingW", "cannot create a section of " + std::to_string(size) + " bytes");
  return WrapHandle(env, h);
}

Napi::Value SectionSize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HANDLE h = UnwrapHandle(env, info[0]);
  return Napi::Number::New(env, static_cast<double>(SectionSizeOf(env, h)));
}

// mapSection(section, offset, length, 'write' | 'read' | 'copy') -> ArrayBuffer over [offset, offset+length).
// 'copy' (FILE_MAP_COPY) is copy-on-write, like MAP_PRIVATE: it shows the producer's writes, and
// a write through it stays private to this process instead of faulting or reaching the producer.
Napi::Value MapSection(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HANDLE h = UnwrapHandle(env, info[0]);
  uint64_t offset = static_cast<uint64_t>(RequireNumber(env, info[1], "offset", 0, kMaxSectionSize));
  uint64_t length = static_cast<uint64_t>(RequireNumber(env, info[2], "length", 1, kMaxSectionSize));
  std::string mode = info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : std::string();
  if (mode != "write" && mode != "read" && mode != "copy")
    Throw(env, "E_INVALID_ARGUMENT", "mode must be 'write', 'read' or 'copy'");
  uint64_t size = SectionSizeOf(env, h);
  if (offset + length > size)
    Throw(env, "E_OUT_OF_BOUNDS", "[" + std::to_string(offset) + ", " + std::to_string(offset + length) +
                                      ") lies outside the section's " + std::to_string(size) + " bytes");
  // Views start on the allocation granularity: map from the boundary below and hand out the rest.
  uint64_t base_offset = offset / Granularity() * Granularity();
  uint64_t delta = offset - base_offset;
  DWORD access = mode == "write" ? FILE_MAP_WRITE : mode == "copy" ? FILE_MAP_COPY : FILE_MAP_READ;
  void* base = ::MapViewOfFile(h, access, static_cast<DWORD>(base_offset >> 32), static_cast<DWORD>(base_offset),
                               static_cast<SIZE_T>(delta + length));
  if (base == nullptr) ThrowLastError(env, "MapViewOfFile");
  auto* view = new View{base};
  void* data = static_cast<uint8_t*>(base) + delta;
  {
    std::lock_guard<std::mutex> lock(g_views_mutex);
    g_views[data] = view;
  }
  try {
    return Napi::ArrayBuffer::New(env, data, static_cast<size_t>(length), ViewFinalizer, view);
  } catch (...) {
    std::lock_guard<std::mutex> lock(g_views_mutex);
    g_views.erase(data);
    ::UnmapViewOfFile(base);
    delete view;
    throw;
  }
}

// unmap(arrayBuffer): unmaps a mapSection view now and detaches the ArrayBuffer (views over it
// become zero-length). Idempotent; an ArrayBuffer that is not a view is only detached if external.
Napi::Value Unmap(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) Throw(env, "E_INVALID_ARGUMENT", "unmap(arrayBuffer)");
  Napi::ArrayBuffer buffer = info[0].As<Napi::ArrayBuffer>();
  bool detached = false;
  napi_is_detached_arraybuffer(env, buffer, &detached);
  if (detached) return env.Undefined();
  void* data = buffer.Data();
  View* view = nullptr;
  {
    std::lock_guard<std::mutex> lock(g_views_mutex);
    auto it = g_views.find(data);
    if (it != g_views.end()) {
      view = it->second;
      g_views.erase(it);
    }
  }
  if (view == nullptr) Throw(env, "E_INVALID_ARGUMENT", "not a view returned by mapSection");
  buffer.Detach();  // before unmapping: nothing in JS can reach the memory afterwards
  if (view->base != nullptr) {
    ::UnmapViewOfFile(view->base);
    view->base = nullptr;  // the finalizer, when it runs, only frees `view`
  }
  return env.Undefined();
}

// readOnlySection(section) -> a new handle to the same section that can only be mapped for reading
// (SECTION_QUERY | SECTION_MAP_READ): what a producer gives its consumers.
Napi::Value ReadOnlySection(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  HANDLE h = UnwrapHandle(env, info[0]);
  HANDLE copy = nullptr;
  if (!::DuplicateHandle(::GetCurrentProcess(), h, ::GetCurrentProcess(), &copy, SECTION_QUERY | SECTION_MAP_READ,
                         FALSE, 0))
    ThrowLastError(env, "DuplicateHandle");
  return WrapHandle(env, copy);
}

// createMutex() -> an unnamed mutex, not owned (tests send it where a section belongs: unlike events, which a
// runtime makes on its own now and then, no mutex appears in a Node process by itself, so leaks of one are counted
// exactly).
Napi::Value CreateMutexHandle(const Napi::CallbackInfo& info) {
  HANDLE h = ::CreateMutexW(nullptr, FALSE, nullptr);
  if (h == nullptr) ThrowLastError(info.Env(), "CreateMutexW");
  return WrapHandle(info.Env(), h);
}

// Probes the handle table: handle values are multiples of 4, allocated low first; stop after a long run of free
// slots. With `kind`, counts only handles whose object is of that kind (ObjectKind: "section", "event", ...).
DWORD ProbeHandles(const char* kind) {
  DWORD count = 0;
  DWORD flags = 0;
  for (uintptr_t v = 4, misses = 0; misses < 4096; v += 4) {
    HANDLE h = reinterpret_cast<HANDLE>(v);
    if (::GetHandleInformation(h, &flags)) {
      if (kind == nullptr || std::strcmp(ObjectKind(h), kind) == 0) count++;
      misses = 0;
    } else {
      misses++;
    }
  }
  return count;
}

// processHandleCount([kind]) -> this process's handles, or only those of one kind of object.
Napi::Value ProcessHandleCount(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    if (!info[0].IsString()) Throw(env, "E_INVALID_ARGUMENT", "processHandleCount: kind must be a string");
    const std::string kind = info[0].As<Napi::String>().Utf8Value();
    static const char* const kKinds[] = {"section", "event", "process", "file", "mutant", "other"};
    const char* known = nullptr;
    for (const char* k : kKinds)
      if (kind == k) known = k;
    if (known == nullptr) Throw(env, "E_INVALID_ARGUMENT", "processHandleCount: unknown kind '" + kind + "'");
    return Napi::Number::New(env, ProbeHandles(known));
  }
  DWORD count = 0;
  if (!::GetProcessHandleCount(::GetCurrentProcess(), &count)) ThrowLastError(env, "GetProcessHandleCount");
  if (count == 0) count = ProbeHandles(nullptr);  // Wine answers 0
  return Napi::Number::New(env, count);
}

void RegisterSection(Napi::Env env, Napi::Object exports) {
  exports.Set("createSection", Napi::Function::New(env, CreateSection, "createSection"));
  exports.Set("sectionSize", Napi::Function::New(env, SectionSize, "sectionSize"));
  exports.Set("mapSection", Napi::Function::New(env, MapSection, "mapSection"));
  exports.Set("unmap", Napi::Function::New(env, Unmap, "unmap"));
  exports.Set("readOnlySection", Napi::Function::New(env, ReadOnlySection, "readOnlySection"));
  exports.Set("createMutex", Napi::Function::New(env, CreateMutexHandle, "createMutex"));
  exports.Set("processHandleCount", Napi::Function::New(env, ProcessHandleCount, "processHandleCount"));
}

}  // namespace

SURFACELINK_MODULE(section, RegisterSection);

}  // namespace surfacelink
