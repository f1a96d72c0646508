// glibc's allocator from JS (src/sys/index.ts mallocTrim, used by src/util/idle-trim.ts): Node
// gives no handle on the C heap its own threads and the addons share.
//
// Not here: mallopt(M_ARENA_MAX). MALLOC_ARENA_MAX=1 or 2 in berthd's and the shims'
// environment, with the idle trim, one run each against one without (node
// dist/bench/memory-idle.bench.js 10 20 40, load 1.6-6): berthd private 26.4 / 29.2 / 33.4 MiB
// with 20 pods (1 / 2 / default), 30.0 / 36.2 / 30.8 after a 40-pod churn, the shim side
// 21.6 / 21.1 / 21.7 MiB PSS: within the 4-5 MiB that GC timing moves these runs.
#include "berth_sys.h"

#include <malloc.h>

// mallocTrim(): malloc_trim(0) returns the free pages of every arena to the kernel (glibc 2.8+
// also the free pages inside a heap, not only its top). Returns whether anything was released.
napi_value js_malloc_trim(napi_env env, napi_callback_info info) {
  napi_value v;
  napi_get_boolean(env, malloc_trim(0) != 0, &v);
  return v;
}
