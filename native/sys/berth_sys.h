// Shared declarations of the berth_sys addon's source files (native/berth_sys.c, native/sys/*.c):
// the system headers they use, the errors and argument helpers, and the JS-facing functions
// that berth_sys.c registers.
#ifndef BERTH_SYS_H
#define BERTH_SYS_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

// Longest host string we accept: an IPv6 literal with brackets fits easily.
#define HOST_MAX 64

// Internal to the addon: only the module's init is exported from the shared object.
#pragma GCC visibility push(hidden)

// errors.c: throws SysError(syscall, code, errno, path) (a plain Error before setErrorClass).
void throw_sys_error(napi_env env, const char *syscall, int err, const char *path);
// The same error as a value (to reject a Promise with).
napi_value make_sys_error(napi_env env, const char *syscall, int err, const char *path);
napi_value js_set_error_class(napi_env env, napi_callback_info info);

// args.c: argument helpers. Each returns 0 (or NULL) after throwing a TypeError.
int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
int is_nullish(napi_env env, napi_value v);
char *get_string(napi_env env, napi_value v, const char *what);
int get_int64(napi_env env, napi_value v, const char *what, int64_t *out);
int get_int32(napi_env env, napi_value v, const char *what, int32_t *out);
napi_value undefined(napi_env env);

// pool.c: `call(path, arg)` (0 or an errno) on the libuv thread pool; takes `path` (malloc'd).
typedef int (*path_call)(const char *path, int arg);
napi_value queue_path_call(napi_env env, const char *syscall, path_call call, char *path, int arg);
napi_value js_syncfs_async(napi_env env, napi_callback_info info);

// files.c
napi_value js_create_file_async(napi_env env, napi_callback_info info);

// mounts.c
napi_value js_mount(napi_env env, napi_callback_info info);
napi_value js_umount2(napi_env env, napi_callback_info info);
napi_value js_umount2_async(napi_env env, napi_callback_info info);
napi_value js_makedev(napi_env env, napi_callback_info info);
napi_value js_mknod(napi_env env, napi_callback_info info);
napi_value js_fsmount(napi_env env, napi_callback_info info);
napi_value js_idmap_mount(napi_env env, napi_callback_info info);

// probes.c
napi_value js_probe_recursive_read_only(napi_env env, napi_callback_info info);
napi_value js_probe_userns_host_sys(napi_env env, napi_callback_info info);

// xattr.c
napi_value js_setxattr(napi_env env, napi_callback_info info);
napi_value js_lsetxattr(napi_env env, napi_callback_info info);
napi_value js_getxattr(napi_env env, napi_callback_info info);
napi_value js_lgetxattr(napi_env env, napi_callback_info info);
napi_value js_llistxattr(napi_env env, napi_callback_info info);

// process.c
napi_value js_prctl_set_child_subreaper(napi_env env, napi_callback_info info);
napi_value js_waitpid(napi_env env, napi_callback_info info);
napi_value js_pidfd_open(napi_env env, napi_callback_info info);
napi_value js_flock(napi_env env, napi_callback_info info);

// spawn.c
napi_value js_spawn(napi_env env, napi_callback_info info);
napi_value js_spawn_ref(napi_env env, napi_callback_info info);

// malloc.c
napi_value js_malloc_trim(napi_env env, napi_callback_info info);

// namespaces.c
napi_value js_setns(napi_env env, napi_callback_info info);
napi_value js_unshare(napi_env env, napi_callback_info info);
napi_value js_netns_create(napi_env env, napi_callback_info info);
napi_value js_connect_in_netns(napi_env env, napi_callback_info info);
napi_value js_netns_loopback_up(napi_env env, napi_callback_info info);

#pragma GCC visibility pop

#endif
