// Processes: child subreaper, waitpid, pidfd_open; and flock, the lock processes share.
#include "berth_sys.h"

// ---------------------------------------------------------------------------------------
// Processes

napi_value js_prctl_set_child_subreaper(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  bool on;
  if (napi_get_value_bool(env, argv[0], &on) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "on must be a boolean");
    return NULL;
  }
  if (prctl(PR_SET_CHILD_SUBREAPER, on ? 1UL : 0UL, 0UL, 0UL, 0UL) != 0) {
    throw_sys_error(env, "prctl", errno, NULL);
    return NULL;
  }
  return undefined(env);
}

napi_value js_waitpid(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t pid, options;
  if (!get_int32(env, argv[0], "pid", &pid) || !get_int32(env, argv[1], "options", &options)) return NULL;
  int status = 0;
  pid_t got;
  do {
    got = waitpid(pid, &status, options);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    throw_sys_error(env, "waitpid", errno, NULL);
    return NULL;
  }
  int exited = got > 0 && WIFEXITED(status);
  int signaled = got > 0 && WIFSIGNALED(status);
  napi_value obj, v;
  napi_create_object(env, &obj);
  napi_create_int32(env, got, &v);
  napi_set_named_property(env, obj, "pid", v);
  napi_get_boolean(env, exited, &v);
  napi_set_named_property(env, obj, "exited", v);
  napi_create_int32(env, exited ? WEXITSTATUS(status) : 0, &v);
  napi_set_named_property(env, obj, "exitCode", v);
  napi_get_boolean(env, signaled, &v);
  napi_set_named_property(env, obj, "signaled", v);
  napi_create_int32(env, signaled ? WTERMSIG(status) : 0, &v);
  napi_set_named_property(env, obj, "signal", v);
  return obj;
}

napi_value js_pidfd_open(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t pid;
  if (!get_int32(env, argv[0], "pid", &pid)) return NULL;
  // The kernel always sets close-on-exec on a pidfd.
  long fd = syscall(SYS_pidfd_open, (pid_t)pid, 0U);
  if (fd < 0) {
    throw_sys_error(env, "pidfd_open", errno, NULL);
    return NULL;
  }
  napi_value v;
  napi_create_int32(env, (int32_t)fd, &v);
  return v;
}

// flock(fd, operation): advisory lock on an open file, released when every fd of it closes
// (so also when the process dies). Callers pass LOCK_NB and poll: a blocking flock would
// stop the event loop.
napi_value js_flock(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd, op;
  if (!get_int32(env, argv[0], "fd", &fd) || !get_int32(env, argv[1], "operation", &op)) return NULL;
  if (flock(fd, op) != 0) {
    throw_sys_error(env, "flock", errno, NULL);
    return NULL;
  }
  return undefined(env);
}
