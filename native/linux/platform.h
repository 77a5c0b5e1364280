#pragma once
#include <napi.h>
#include <sys/syscall.h>

namespace surfacelink {
void RegisterMemfd(Napi::Env env, Napi::Object exports);
}
