#include "js_call.h"

namespace surfacelink {

bool CanCallIntoJs(napi_env env) {
  // napi_coerce_to_bool starts with NAPI_PREAMBLE (which checks can_call_into_js()) and has no
  // side effect on undefined: its status says whether JavaScript may run now.
  napi_value undefined;
  napi_value ignored;
  if (napi_get_undefined(env, &undefined) != napi_ok) return false;
  return napi_coerce_to_bool(env, undefined, &ignored) == napi_ok;
}

void CallFromLoop(napi_env env, napi_value fn, napi_async_context context, std::initializer_list<napi_value> args) {
  napi_value global;
  napi_value result;
  if (napi_get_global(env, &global) != napi_ok) return;
  if (napi_make_callback(env, context, global, fn, args.size(), args.begin(), &result) == napi_ok) return;
  bool pending = false;
  napi_value exception;
  if (napi_is_exception_pending(env, &pending) == napi_ok && pending && napi_get_and_clear_last_exception(env, &exception) == napi_ok)
    napi_fatal_exception(env, exception);
}

}  // namespace surfacelink
