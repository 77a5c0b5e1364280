// D3D11 textures shared between processes by NT handle, with a keyed mutex (exports.d3d11):
// what dxgi.v1 (src/mechanisms/dxgi.ts) is built on.
//
//   probe()                      really tries to share: CreateTexture2D(SHARED_NTHANDLE | SHARED_KEYEDMUTEX),
//                                QI IDXGIResource1, CreateSharedHandle, then OpenSharedResource1 on a second
//                                device. Wine 8 accepts the texture's flags but cannot share it, so success
//                                of CreateTexture2D never counts (docs/mechanisms/windows-dxgi.md).
//   luid()                       the adapter LUID of this process's device ('hhhhhhhh:llllllll').
//   createTexture(w, h, format)  a new shared texture on this process's device.
//   openTexture(ntHandle)        a peer's texture, from the NT handle it shared (OpenSharedResource1).
//
// A texture object: width, height, format (DXGI_FORMAT), closed; sharedHandle() (a new NtHandle each
// call), acquire(key, timeoutMs) → false on timeout, release(key), write(source, planes) and
// read(target, planes) (CPU copies through a staging texture; planes: [{offset, stride}] in the
// buffer), close(). The device's immediate context is not thread-safe: every use takes its lock.
#include <d3d11_1.h>
#include <dxgi1_2.h>
#include <wrl/client.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../common/errors.h"
#include "../common/modules.h"
#include "handle.h"

namespace surfacelink {

using Microsoft::WRL::ComPtr;

namespace {

const char* HresultName(HRESULT hr) {
  switch (static_cast<uint32_t>(hr)) {
    case 0x80004002u: return "E_NOINTERFACE";
    case 0x80004001u: return "E_NOTIMPL";
    case 0x80004005u: return "E_FAIL";
    case 0x80070057u: return "E_INVALIDARG";
    case 0x8007000Eu: return "E_OUTOFMEMORY";
    case 0x80070005u: return "E_ACCESSDENIED";
    case 0x80070006u: return "E_HANDLE";
    case 0x887A0001u: return "DXGI_ERROR_INVALID_CALL";
    case 0x887A0002u: return "DXGI_ERROR_NOT_FOUND";
    case 0x887A0004u: return "DXGI_ERROR_UNSUPPORTED";
    case 0x887A0005u: return "DXGI_ERROR_DEVICE_REMOVED";
    case 0x887A0006u: return "DXGI_ERROR_DEVICE_HUNG";
    case 0x887A0007u: return "DXGI_ERROR_DEVICE_RESET";
    case 0x887A000Au: return "DXGI_ERROR_WAS_STILL_DRAWING";
    case 0x887A0020u: return "DXGI_ERROR_DRIVER_INTERNAL_ERROR";
    case 0x887A002Bu: return "DXGI_ERROR_ACCESS_DENIED";
    case 0x887A002Du: return "DXGI_ERROR_SDK_COMPONENT_MISSING";
    case 0x00000080u: return "WAIT_ABANDONED";
    case 0x00000102u: return "WAIT_TIMEOUT";
    default: return nullptr;
  }
}

// "0x80004002 E_NOINTERFACE (No such interface supported)".
std::string HresultText(HRESULT hr) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08lX", static_cast<unsigned long>(static_cast<uint32_t>(hr)));
  std::string text = hex;
  if (const char* name = HresultName(hr)) text += std::string(" ") + name;
  char* words = nullptr;
  DWORD n = ::FormatMessageA(FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS,
                             nullptr, static_cast<DWORD>(hr), MAKELANGID(LANG_ENGLISH, SUBLANG_ENGLISH_US),
                             reinterpret_cast<LPSTR>(&words), 0, nullptr);
  if (n > 0 && words != nullptr) {
    std::string w(words, n);
    while (!w.empty() && (w.back() == '\n' || w.back() == '\r' || w.back() == ' ' || w.back() == '.')) w.pop_back();
    if (!w.empty()) text += " (" + w + ")";
  }
  if (words != nullptr) ::LocalFree(words);
  return text;
}

[[noreturn]] void ThrowHr(Napi::Env env, const char* code, const std::string& call, HRESULT hr) {
  Napi::Error error = MakeError(env, code, call + " failed: " + HresultText(hr));
  error.Set("syscall", Napi::String::New(env, call));
  error.Set("hresult", Napi::Number::New(env, static_cast<double>(static_cast<uint32_t>(hr))));
  throw error;
}

std::string Utf8(const wchar_t* text) {
  int n = ::WideCharToMultiByte(CP_UTF8, 0, text, -1, nullptr, 0, nullptr, nullptr);
  if (n <= 1) return "";
  std::string out(static_cast<size_t>(n), '\0');
  ::WideCharToMultiByte(CP_UTF8, 0, text, -1, &out[0], n, nullptr, nullptr);
  out.resize(static_cast<size_t>(n - 1));
  return out;
}

std::string LuidText(const LUID& luid) {
  char text[24];
  std::snprintf(text, sizeof text, "%08lx:%08lx", static_cast<unsigned long>(static_cast<uint32_t>(luid.HighPart)),
                static_cast<unsigned long>(luid.LowPart));
  return text;
}

// Wine's version when this process runs under Wine (ntdll exports wine_get_version), else null.
const char* WineVersion() {
  HMODULE ntdll = ::GetModuleHandleW(L"ntdll.dll");
  if (ntdll == nullptr) return nullptr;
  FARPROC proc = ::GetProcAddress(ntdll, "wine_get_version");
  if (proc == nullptr) return nullptr;
  auto get = reinterpret_cast<const char* (*)()>(reinterpret_cast<void (*)()>(proc));
  return get();
}

// ---------------------------------------------------------------------------------------
// Formats: the DXGI_FORMATs src/formats.ts's `dxgi` column names, with their CPU plane geometry.

struct PlaneGeometry {
  UINT row_bytes;
  UINT rows;
};

// Planes of `format` at width × height (0 planes: a format this module does not copy).
int FormatPlanes(DXGI_FORMAT format, UINT width, UINT height, PlaneGeometry out[2]) {
  switch (format) {
    case DXGI_FORMAT_B8G8R8A8_UNORM:
    case DXGI_FORMAT_B8G8R8X8_UNORM:
    case DXGI_FORMAT_R8G8B8A8_UNORM:
      out[0] = {width * 4, height};
      return 1;
    case DXGI_FORMAT_B5G6R5_UNORM:
      out[0] = {width * 2, height};
      return 1;
    case DXGI_FORMAT_NV12:
      out[0] = {width, height};
      out[1] = {(width + 1) / 2 * 2, (height + 1) / 2};
      return 2;
    default:
      return 0;
  }
}

// ---------------------------------------------------------------------------------------
// The device: one per process, made on first use, on the default hardware adapter.

struct Device {
  ComPtr<ID3D11Device> device;
  ComPtr<ID3D11Device1> device1;
  ComPtr<ID3D11DeviceContext> context;
  std::mutex context_lock;  // the immediate context is not thread-safe
  std::string adapter;
  LUID luid{};
};

// Creates a device; on failure returns the failing call in `failed` and its HRESULT.
HRESULT CreateDevice(ComPtr<ID3D11Device>* device, ComPtr<ID3D11DeviceContext>* context, std::string* failed) {
  D3D_FEATURE_LEVEL levels[] = {D3D_FEATURE_LEVEL_11_1, D3D_FEATURE_LEVEL_11_0, D3D_FEATURE_LEVEL_10_1,
                                D3D_FEATURE_LEVEL_10_0};
  UINT flags = D3D11_CREATE_DEVICE_BGRA_SUPPORT;
  HRESULT hr = ::D3D11CreateDevice(nullptr, D3D_DRIVER_TYPE_HARDWARE, nullptr, flags, levels, 4, D3D11_SDK_VERSION,
                                   device->ReleaseAndGetAddressOf(), nullptr, context->ReleaseAndGetAddressOf());
  if (hr == E_INVALIDARG)  // Windows 7's runtime does not know 11_1: ask again without it
    hr = ::D3D11CreateDevice(nullptr, D3D_DRIVER_TYPE_HARDWARE, nullptr, flags, levels + 1, 3, D3D11_SDK_VERSION,
                             device->ReleaseAndGetAddressOf(), nullptr, context->ReleaseAndGetAddressOf());
  if (FAILED(hr)) *failed = "D3D11CreateDevice(HARDWARE, BGRA_SUPPORT)";
  return hr;
}

HRESULT DescribeAdapter(ID3D11Device* device, std::string* adapter, LUID* luid, std::string* failed) {
  ComPtr<IDXGIDevice> dxgi;
  HRESULT hr = device->QueryInterface(IID_PPV_ARGS(&dxgi));
  if (FAILED(hr)) {
    *failed = "QueryInterface(IDXGIDevice)";
    return hr;
  }
  ComPtr<IDXGIAdapter> dxgi_adapter;
  hr = dxgi->GetAdapter(&dxgi_adapter);
  if (FAILED(hr)) {
    *failed = "IDXGIDevice::GetAdapter";
    return hr;
  }
  DXGI_ADAPTER_DESC desc{};
  hr = dxgi_adapter->GetDesc(&desc);
  if (FAILED(hr)) {
    *failed = "IDXGIAdapter::GetDesc";
    return hr;
  }
  *adapter = Utf8(desc.Description);
  *luid = desc.AdapterLuid;
  return S_OK;
}

std::mutex g_device_lock;
// Never destroyed: releasing a D3D device from a static destructor (DLL_PROCESS_DETACH, after the
// runtime's threads are gone) deadlocks; under wine 8 node.exe then never exits.
std::shared_ptr<Device>* g_device = nullptr;

std::shared_ptr<Device> GetDevice(Napi::Env env) {
  std::lock_guard<std::mutex> guard(g_device_lock);
  if (g_device) return *g_device;
  auto made = std::make_shared<Device>();
  std::string failed;
  HRESULT hr = CreateDevice(&made->device, &made->context, &failed);
  if (SUCCEEDED(hr)) hr = DescribeAdapter(made->device.Get(), &made->adapter, &made->luid, &failed);
  if (SUCCEEDED(hr)) {
    hr = made->device.As(&made->device1);
    if (FAILED(hr)) failed = "QueryInterface(ID3D11Device1)";
  }
  if (FAILED(hr)) ThrowHr(env, "E_UNSUPPORTED", failed, hr);
  // Calls may come from several Node environments (workers): let the runtime serialize them too.
  ComPtr<ID3D10Multithread> multithread;
  if (SUCCEEDED(made->context.As(&multithread))) multithread->SetMultithreadProtected(TRUE);
  g_device = new std::shared_ptr<Device>(made);
  return made;
}

D3D11_TEXTURE2D_DESC SharedTextureDesc(UINT width, UINT height, DXGI_FORMAT format) {
  D3D11_TEXTURE2D_DESC desc{};
  desc.Width = width;
  desc.Height = height;
  desc.MipLevels = 1;
  desc.ArraySize = 1;
  desc.Format = format;
  desc.SampleDesc.Count = 1;
  desc.Usage = D3D11_USAGE_DEFAULT;
  desc.BindFlags = D3D11_BIND_SHADER_RESOURCE | (format == DXGI_FORMAT_NV12 ? 0u : static_cast<UINT>(D3D11_BIND_RENDER_TARGET));
  desc.MiscFlags = D3D11_RESOURCE_MISC_SHARED_NTHANDLE | D3D11_RESOURCE_MISC_SHARED_KEYEDMUTEX;
  return desc;
}

// ---------------------------------------------------------------------------------------
// probe()

struct ProbeOutcome {
  bool available = false;
  std::string reason;
  std::string adapter;
  std::string luid;
};

ProbeOutcome Probe() {
  ProbeOutcome out;
  std::string failed;
  HRESULT hr;
  auto fail = [&](const std::string& what) {
    out.reason = what + " failed: " + HresultText(hr);
    if (!out.adapter.empty()) out.reason += " (adapter \"" + out.adapter + "\", LUID " + out.luid + ")";
    if (const char* wine = WineVersion()) out.reason += "; this is Wine " + std::string(wine);
    return out;
  };

  ComPtr<ID3D11Device> device;
  ComPtr<ID3D11DeviceContext> context;
  if (FAILED(hr = CreateDevice(&device, &context, &failed))) return fail(failed);
  LUID luid{};
  if (FAILED(hr = DescribeAdapter(device.Get(), &out.adapter, &luid, &failed))) return fail(failed);
  out.luid = LuidText(luid);

  D3D11_TEXTURE2D_DESC desc = SharedTextureDesc(16, 16, DXGI_FORMAT_B8G8R8A8_UNORM);
  ComPtr<ID3D11Texture2D> texture;
  if (FAILED(hr = device->CreateTexture2D(&desc, nullptr, &texture)))
    return fail("CreateTexture2D(16x16 B8G8R8A8, SHARED_NTHANDLE | SHARED_KEYEDMUTEX)");
  // Wine 8 gets this far: the flags are kept, but the texture is not shareable.
  ComPtr<IDXGIResource1> resource;
  if (FAILED(hr = texture.As(&resource))) return fail("QueryInterface(IDXGIResource1) of a shared texture");
  HANDLE raw = nullptr;
  hr = resource->CreateSharedHandle(nullptr, DXGI_SHARED_RESOURCE_READ | DXGI_SHARED_RESOURCE_WRITE, nullptr, &raw);
  if (FAILED(hr)) return fail("IDXGIResource1::CreateSharedHandle");
  UniqueHandle handle(raw);

  ComPtr<ID3D11Device> second;
  ComPtr<ID3D11DeviceContext> second_context;
  if (FAILED(hr = CreateDevice(&second, &second_context, &failed))) return fail(failed + " (a second device)");
  ComPtr<ID3D11Device1> second1;
  if (FAILED(hr = second.As(&second1))) return fail("QueryInterface(ID3D11Device1)");
  ComPtr<ID3D11Texture2D> opened;
  if (FAILED(hr = second1->OpenSharedResource1(handle.get(), IID_PPV_ARGS(&opened))))
    return fail("ID3D11Device1::OpenSharedResource1 on a second device");
  ComPtr<IDXGIKeyedMutex> mutex;
  if (FAILED(hr = opened.As(&mutex))) return fail("QueryInterface(IDXGIKeyedMutex) of the opened texture");
  hr = mutex->AcquireSync(0, 1000);
  if (hr != S_OK) return fail("IDXGIKeyedMutex::AcquireSync(0)");
  if (FAILED(hr = mutex->ReleaseSync(0))) return fail("IDXGIKeyedMutex::ReleaseSync(0)");

  out.available = true;
  out.reason = "D3D11 on \"" + out.adapter + "\" (LUID " + out.luid +
               ") shares NT-handle textures with a keyed mutex between devices";
  return out;
}

Napi::Value ProbeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  ProbeOutcome p = Probe();
  Napi::Object result = Napi::Object::New(env);
  result.Set("available", Napi::Boolean::New(env, p.available));
  result.Set("reason", Napi::String::New(env, p.reason));
  result.Set("adapter", Napi::String::New(env, p.adapter));
  result.Set("luid", Napi::String::New(env, p.luid));
  const char* wine = WineVersion();
  result.Set("wine", wine != nullptr ? Napi::Value(Napi::String::New(env, wine)) : env.Null());
  return result;
}

Napi::Value LuidJs(const Napi::CallbackInfo& info) {
  std::shared_ptr<Device> device = GetDevice(info.Env());
  return Napi::String::New(info.Env(), LuidText(device->luid));
}

// ---------------------------------------------------------------------------------------
// Texture

struct TextureInit {
  std::shared_ptr<Device> device;
  ComPtr<ID3D11Texture2D> texture;
  ComPtr<IDXGIKeyedMutex> mutex;
};

UINT64 KeyArg(Napi::Env env, Napi::Value value) {
  if (value.IsBigInt()) {
    bool lossless = false;
    uint64_t key = value.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) Throw(env, "E_INVALID_ARGUMENT", "key must be a u64");
    return key;
  }
  if (value.IsNumber()) {
    double d = value.As<Napi::Number>().DoubleValue();
    if (d >= 0 && d <= 9007199254740991.0 && d == static_cast<double>(static_cast<uint64_t>(d)))
      return static_cast<uint64_t>(d);
  }
  Throw(env, "E_INVALID_ARGUMENT", "key must be a non-negative integer or a bigint");
}

// The bytes of an ArrayBuffer or typed array / DataView.
void BytesArg(Napi::Env env, Napi::Value value, uint8_t** data, size_t* length, const char* what) {
  if (value.IsArrayBuffer()) {
    Napi::ArrayBuffer ab = value.As<Napi::ArrayBuffer>();
    *data = static_cast<uint8_t*>(ab.Data());
    *length = ab.ByteLength();
    return;
  }
  if (value.IsTypedArray() || value.IsDataView()) {
    Napi::Object view = value.As<Napi::Object>();
    Napi::ArrayBuffer ab = view.Get("buffer").As<Napi::ArrayBuffer>();
    size_t offset = view.Get("byteOffset").As<Napi::Number>().Int64Value();
    *length = view.Get("byteLength").As<Napi::Number>().Int64Value();
    *data = static_cast<uint8_t*>(ab.Data()) + offset;
    return;
  }
  Throw(env, "E_INVALID_ARGUMENT", std::string(what) + " must be an ArrayBuffer or a typed array");
}

class Texture : public Napi::ObjectWrap<Texture> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "D3D11Texture",
                       {
                           InstanceAccessor<&Texture::GetWidth>("width"),
                           InstanceAccessor<&Texture::GetHeight>("height"),
                           InstanceAccessor<&Texture::GetFormat>("format"),
                           InstanceAccessor<&Texture::GetClosed>("closed"),
                           InstanceMethod<&Texture::SharedHandle>("sharedHandle"),
                           InstanceMethod<&Texture::Acquire>("acquire"),
                           InstanceMethod<&Texture::Release>("release"),
                           InstanceMethod<&Texture::Write>("write"),
                           InstanceMethod<&Texture::Read>("read"),
                           InstanceMethod<&Texture::Close>("close"),
                       });
  }

  explicit Texture(const Napi::CallbackInfo& info) : Napi::ObjectWrap<Texture>(info) {
    if (info.Length() != 1 || !info[0].IsExternal())
      Throw(info.Env(), "E_INVALID_ARGUMENT", "textures come from d3d11.createTexture() or d3d11.openTexture()");
    TextureInit* init = info[0].As<Napi::External<TextureInit>>().Data();
    device_ = init->device;
    texture_ = init->texture;
    mutex_ = init->mutex;
    texture_->GetDesc(&desc_);
  }

  ~Texture() override { Reset(); }

 private:
  void AssertOpen(Napi::Env env) const {
    if (!texture_) Throw(env, "E_CLOSED", "the texture is closed");
  }

  void Reset() {
    if (held_ && mutex_) {
      // Releasing the texture while holding its mutex would leave peers with WAIT_ABANDONED.
      std::lock_guard<std::mutex> guard(device_->context_lock);
      device_->context->Flush();
      mutex_->ReleaseSync(held_key_);
    }
    held_ = false;
    staging_.Reset();
    mutex_.Reset();
    texture_.Reset();
  }

  Napi::Value GetWidth(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), desc_.Width); }
  Napi::Value GetHeight(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), desc_.Height); }
  Napi::Value GetFormat(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), desc_.Format); }
  Napi::Value GetClosed(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), !texture_); }

  Napi::Value SharedHandle(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AssertOpen(env);
    ComPtr<IDXGIResource1> resource;
    HRESULT hr = texture_.As(&resource);
    if (FAILED(hr)) ThrowHr(env, "E_UNSUPPORTED", "QueryInterface(IDXGIResource1)", hr);
    HANDLE handle = nullptr;
    hr = resource->CreateSharedHandle(nullptr, DXGI_SHARED_RESOURCE_READ | DXGI_SHARED_RESOURCE_WRITE, nullptr,
                                      &handle);
    if (FAILED(hr)) ThrowHr(env, "E_SYSTEM", "IDXGIResource1::CreateSharedHandle", hr);
    return WrapHandle(env, handle);
  }

  Napi::Value Acquire(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AssertOpen(env);
    UINT64 key = KeyArg(env, info[0]);
    if (!info[1].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "timeoutMs must be a number");
    double timeout = info[1].As<Napi::Number>().DoubleValue();
    if (!(timeout >= 0)) Throw(env, "E_INVALID_ARGUMENT", "timeoutMs must be ≥ 0");
    if (held_) Throw(env, "E_INVALID_ARGUMENT", "the keyed mutex is already acquired by this texture object");
    DWORD ms = timeout >= 4294967294.0 ? INFINITE : static_cast<DWORD>(timeout);
    HRESULT hr = mutex_->AcquireSync(key, ms);
    if (hr == static_cast<HRESULT>(WAIT_TIMEOUT)) return Napi::Boolean::New(env, false);
    if (hr == static_cast<HRESULT>(WAIT_ABANDONED))
      Throw(env, "E_PEER_CLOSED",
            "IDXGIKeyedMutex::AcquireSync: abandoned (the other side released the texture while holding the mutex)");
    if (hr != S_OK) ThrowHr(env, "E_SYSTEM", "IDXGIKeyedMutex::AcquireSync(" + std::to_string(key) + ")", hr);
    held_ = true;
    held_key_ = key;
    return Napi::Boolean::New(env, true);
  }

  Napi::Value Release(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AssertOpen(env);
    UINT64 key = KeyArg(env, info[0]);
    if (!held_) Throw(env, "E_INVALID_ARGUMENT", "the keyed mutex is not acquired by this texture object");
    HRESULT hr;
    {
      std::lock_guard<std::mutex> guard(device_->context_lock);
      device_->context->Flush();  // the peer's device waits for this work, so submit it now
      hr = mutex_->ReleaseSync(key);
    }
    if (FAILED(hr)) ThrowHr(env, "E_SYSTEM", "IDXGIKeyedMutex::ReleaseSync(" + std::to_string(key) + ")", hr);
    held_ = false;
    return env.Undefined();
  }

  // The planes argument ([{offset, stride}] per plane of the format) checked against a buffer of `length`.
  int PlanesArg(Napi::Env env, Napi::Value value, size_t length, PlaneGeometry geometry[2], size_t offsets[2],
                size_t strides[2]) {
    int count = FormatPlanes(desc_.Format, desc_.Width, desc_.Height, geometry);
    if (count == 0)
      Throw(env, "E_UNSUPPORTED_FORMAT",
            "DXGI_FORMAT " + std::to_string(desc_.Format) + " has no CPU layout here");
    if (!value.IsArray() || value.As<Napi::Array>().Length() != static_cast<uint32_t>(count))
      Throw(env, "E_INVALID_ARGUMENT", "planes must be an array of " + std::to_string(count) + " {offset, stride}");
    Napi::Array planes = value.As<Napi::Array>();
    for (int i = 0; i < count; i++) {
      Napi::Value p = planes.Get(static_cast<uint32_t>(i));
      if (!p.IsObject()) Throw(env, "E_INVALID_ARGUMENT", "each plane must be {offset, stride}");
      Napi::Value o = p.As<Napi::Object>().Get("offset");
      Napi::Value s = p.As<Napi::Object>().Get("stride");
      if (!o.IsNumber() || !s.IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "each plane must be {offset, stride}");
      double offset = o.As<Napi::Number>().DoubleValue();
      double stride = s.As<Napi::Number>().DoubleValue();
      if (!(offset >= 0) || !(stride >= geometry[i].row_bytes) || offset != static_cast<double>(static_cast<size_t>(offset)) ||
          stride != static_cast<double>(static_cast<size_t>(stride)))
        Throw(env, "E_BAD_GEOMETRY",
              "plane " + std::to_string(i) + ": stride must be ≥ " + std::to_string(geometry[i].row_bytes) +
                  " and offset a non-negative integer");
      offsets[i] = static_cast<size_t>(offset);
      strides[i] = static_cast<size_t>(stride);
      double end = offset + stride * (geometry[i].rows - 1.0) + geometry[i].row_bytes;
      if (end > static_cast<double>(length))
        Throw(env, "E_OUT_OF_BOUNDS", "plane " + std::to_string(i) + " ends at byte " + std::to_string(end) +
                                          "; the buffer has " + std::to_string(length));
    }
    return count;
  }

  void EnsureStaging(Napi::Env env) {
    if (staging_) return;
    D3D11_TEXTURE2D_DESC desc = desc_;
    desc.Usage = D3D11_USAGE_STAGING;
    desc.BindFlags = 0;
    desc.CPUAccessFlags = D3D11_CPU_ACCESS_READ | D3D11_CPU_ACCESS_WRITE;
    desc.MiscFlags = 0;
    HRESULT hr = device_->device->CreateTexture2D(&desc, nullptr, &staging_);
    if (FAILED(hr)) ThrowHr(env, "E_SYSTEM", "CreateTexture2D(staging)", hr);
  }

  // write(source, planes): the whole texture from CPU memory (staging texture, then CopyResource).
  Napi::Value Write(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AssertOpen(env);
    uint8_t* data = nullptr;
    size_t length = 0;
    BytesArg(env, info[0], &data, &length, "source");
    PlaneGeometry geometry[2];
    size_t offsets[2], strides[2];
    int count = PlanesArg(env, info[1], length, geometry, offsets, strides);
    EnsureStaging(env);
    std::lock_guard<std::mutex> guard(device_->context_lock);
    D3D11_MAPPED_SUBRESOURCE mapped{};
    HRESULT hr = device_->context->Map(staging_.Get(), 0, D3D11_MAP_WRITE, 0, &mapped);
    if (FAILED(hr)) ThrowHr(env, "E_SYSTEM", "ID3D11DeviceContext::Map(staging, WRITE)", hr);
    uint8_t* dst = static_cast<uint8_t*>(mapped.pData);
    for (int p = 0; p < count; p++) {
      for (UINT r = 0; r < geometry[p].rows; r++)
        std::memcpy(dst + static_cast<size_t>(r) * mapped.RowPitch, data + offsets[p] + r * strides[p],
                    geometry[p].row_bytes);
      dst += static_cast<size_t>(mapped.RowPitch) * desc_.Height;  // NV12: the chroma plane follows the luma rows
    }
    device_->context->Unmap(staging_.Get(), 0);
    device_->context->CopyResource(texture_.Get(), staging_.Get());
    return env.Undefined();
  }

  // read(target, planes): the whole texture into CPU memory (CopyResource to staging, then Map).
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    AssertOpen(env);
    uint8_t* data = nullptr;
    size_t length = 0;
    BytesArg(env, info[0], &data, &length, "target");
    PlaneGeometry geometry[2];
    size_t offsets[2], strides[2];
    int count = PlanesArg(env, info[1], length, geometry, offsets, strides);
    EnsureStaging(env);
    std::lock_guard<std::mutex> guard(device_->context_lock);
    device_->context->CopyResource(staging_.Get(), texture_.Get());
    D3D11_MAPPED_SUBRESOURCE mapped{};
    HRESULT hr = device_->context->Map(staging_.Get(), 0, D3D11_MAP_READ, 0, &mapped);
    if (FAILED(hr)) ThrowHr(env, "E_SYSTEM", "ID3D11DeviceContext::Map(staging, READ)", hr);
    const uint8_t* src = static_cast<const uint8_t*>(mapped.pData);
    for (int p = 0; p < count; p++) {
      for (UINT r = 0; r < geometry[p].rows; r++)
        std::memcpy(data + offsets[p] + r * strides[p], src + static_cast<size_t>(r) * mapped.RowPitch,
                    geometry[p].row_bytes);
      src += static_cast<size_t>(mapped.RowPitch) * desc_.Height;
    }
    device_->context->Unmap(staging_.Get(), 0);
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<Device> device_;
  ComPtr<ID3D11Texture2D> texture_;
  ComPtr<IDXGIKeyedMutex> mutex_;
  ComPtr<ID3D11Texture2D> staging_;
  D3D11_TEXTURE2D_DESC desc_{};
  bool held_ = false;
  UINT64 held_key_ = 0;
};

// Per environment: the Texture constructor, handed to createTexture/openTexture as their data.
struct ModuleState {
  Napi::FunctionReference texture_ctor;
};

Napi::Value NewTexture(Napi::Env env, ModuleState* state, TextureInit init) {
  return state->texture_ctor.New({Napi::External<TextureInit>::New(env, &init)});
}

UINT DimensionArg(Napi::Env env, Napi::Value value, const char* name) {
  if (value.IsNumber()) {
    double d = value.As<Napi::Number>().DoubleValue();
    if (d >= 1 && d <= D3D11_REQ_TEXTURE2D_U_OR_V_DIMENSION && d == static_cast<double>(static_cast<UINT>(d)))
      return static_cast<UINT>(d);
  }
  Throw(env, "E_INVALID_ARGUMENT",
        std::string(name) + " must be an integer in 1.." + std::to_string(D3D11_REQ_TEXTURE2D_U_OR_V_DIMENSION));
}

Napi::Value CreateTextureJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* state = static_cast<ModuleState*>(info.Data());
  UINT width = DimensionArg(env, info[0], "width");
  UINT height = DimensionArg(env, info[1], "height");
  if (!info[2].IsNumber()) Throw(env, "E_INVALID_ARGUMENT", "format must be a DXGI_FORMAT number");
  auto format = static_cast<DXGI_FORMAT>(info[2].As<Napi::Number>().Uint32Value());
  PlaneGeometry geometry[2];
  if (FormatPlanes(format, width, height, geometry) == 0)
    Throw(env, "E_UNSUPPORTED_FORMAT", "DXGI_FORMAT " + std::to_string(format) + " is not one dxgi.v1 shares");
  if (format == DXGI_FORMAT_NV12 && (width % 2 != 0 || height % 2 != 0))
    Throw(env, "E_BAD_GEOMETRY", "NV12 textures need an even width and height");
  std::shared_ptr<Device> device = GetDevice(env);
  D3D11_TEXTURE2D_DESC desc = SharedTextureDesc(width, height, format);
  TextureInit init;
  init.device = device;
  HRESULT hr = device->device->CreateTexture2D(&desc, nullptr, &init.texture);
  if (FAILED(hr)) ThrowHr(env, "E_SYSTEM", "CreateTexture2D(SHARED_NTHANDLE | SHARED_KEYEDMUTEX)", hr);
  hr = init.texture.As(&init.mutex);
  if (FAILED(hr)) ThrowHr(env, "E_UNSUPPORTED", "QueryInterface(IDXGIKeyedMutex) of a new shared texture", hr);
  return NewTexture(env, state, std::move(init));
}

Napi::Value OpenTextureJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto* state = static_cast<ModuleState*>(info.Data());
  HANDLE handle = UnwrapHandle(env, info[0]);
  std::shared_ptr<Device> device = GetDevice(env);
  TextureInit init;
  init.device = device;
  HRESULT hr = device->device1->OpenSharedResource1(handle, IID_PPV_ARGS(&init.texture));
  if (hr == E_INVALIDARG || hr == E_HANDLE)
    ThrowHr(env, "E_HANDLE_TYPE", "ID3D11Device1::OpenSharedResource1 (the handle is not a shared D3D11 texture)", hr);
  if (FAILED(hr)) ThrowHr(env, "E_IMPORT_FAILED", "ID3D11Device1::OpenSharedResource1", hr);
  hr = init.texture.As(&init.mutex);
  if (FAILED(hr))
    ThrowHr(env, "E_HANDLE_TYPE", "QueryInterface(IDXGIKeyedMutex) (the texture was shared without a keyed mutex)",
            hr);
  return NewTexture(env, state, std::move(init));
}

void Register(Napi::Env env, Napi::Object exports) {
  auto* state = new ModuleState();
  state->texture_ctor = Napi::Persistent(Texture::Define(env));
  Napi::Object d3d11 = Napi::Object::New(env);
  d3d11.Set("probe", Napi::Function::New(env, ProbeJs, "probe"));
  d3d11.Set("luid", Napi::Function::New(env, LuidJs, "luid"));
  d3d11.Set("createTexture", Napi::Function::New(env, CreateTextureJs, "createTexture", state));
  d3d11.Set("openTexture", Napi::Function::New(env, OpenTextureJs, "openTexture", state));
  d3d11.Set("Texture", state->texture_ctor.Value());
  env.AddCleanupHook([state]() { delete state; });
  exports.Set("d3d11", d3d11);
}

}  // namespace

SURFACELINK_MODULE(d3d11, Register);

}  // namespace surfacelink
