// Calling JavaScript from libuv callbacks (socket readiness, fence signals) safely.
#pragma once

#include <napi.h>

#include <initializer_list>

namespace surfacelink {

// False while this environment cannot run JavaScript: a worker being terminated, or the
// process tearing down, while its loop still turns. Callbacks must then do nothing: any
// attempt (even building an Error to report the failure) is fatal in node-addon-api.
bool CanCallIntoJs(napi_env env);

// Calls `fn` with `args` as a top-level callback (microtasks drained after). A throw becomes
// an uncaught exception, exactly as from a timer. Does nothing if JavaScript cannot run.
void CallFromLoop(napi_env env, napi_value fn, napi_async_context context, std::initializer_list<napi_value> args);

}  // namespace surfacelink
