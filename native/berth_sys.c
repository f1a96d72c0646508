// berth_sys: the Linux system calls Node.js lacks, as a plain N-API addon.
//
// Every function is synchronous (the calls are fast and callers sit on paths where an
// await would only add latency) but umount2Async and syncfsAsync (sys/pool.c): unmounting an
// overlay syncs its upper filesystem, and syncfs writes one back, milliseconds the event loop
// should not spend blocked. Failures throw the SysError class that src/sys/index.ts
// hands us through setErrorClass(), so JS sees the same error type whatever fails.
//
// Threads matter here: setns()/unshare() act on the calling thread only, and Node runs
// JS on one thread of a multithreaded process. netnsCreate, netnsLoopbackUp and connectInNetns therefore
// do their namespace work in a short-lived dedicated pthread, so the main thread (and so
// the event loop) never leaves the host network namespace.
//
// The functions live in native/sys/ by job (errors, args, mounts, pool, xattr, process, spawn, namespaces);
// this file only registers them.

#include "sys/berth_sys.h"

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setErrorClass", NULL, js_set_error_class, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount2", NULL, js_umount2, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount2Async", NULL, js_umount2_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"syncfsAsync", NULL, js_syncfs_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"createFileAsync", NULL, js_create_file_async, NULL, NULL, NULL, napi_enumerable, NULL},
      {"makedev", NULL, js_makedev, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mknod", NULL, js_mknod, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setxattr", NULL, js_setxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lsetxattr", NULL, js_lsetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"getxattr", NULL, js_getxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"lgetxattr", NULL, js_lgetxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"llistxattr", NULL, js_llistxattr, NULL, NULL, NULL, napi_enumerable, NULL},
      {"prctlSetChildSubreaper", NULL, js_prctl_set_child_subreaper, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setns", NULL, js_setns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"unshare", NULL, js_unshare, NULL, NULL, NULL, napi_enumerable, NULL},
      {"waitpid", NULL, js_waitpid, NULL, NULL, NULL, napi_enumerable, NULL},
      {"pidfdOpen", NULL, js_pidfd_open, NULL, NULL, NULL, napi_enumerable, NULL},
      {"flock", NULL, js_flock, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spawn", NULL, js_spawn, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spawnRef", NULL, js_spawn_ref, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsCreate", NULL, js_netns_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectInNetns", NULL, js_connect_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"netnsLoopbackUp", NULL, js_netns_loopback_up, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fsmount", NULL, js_fsmount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"idmapMount", NULL, js_idmap_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeRecursiveReadOnly", NULL, js_probe_recursive_read_only, NULL, NULL, NULL, napi_enumerable, NULL},
      {"probeUsernsHostSys", NULL, js_probe_userns_host_sys, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mallocTrim", NULL, js_malloc_trim, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
