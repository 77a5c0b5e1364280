#pragma once
#include <napi.h>
#include <sys/syscall.h>

namespace surfacelink {
void RegisterMemfd(Napi::Env env, Napi::Object exports);
void RegisterDmabuf(Napi::Env env, Napi::Object exports);
void RegisterDrm(Napi::Env env, Napi::Object exports);
void RegisterFence(Napi::Env env, Napi::Object exports);
}
