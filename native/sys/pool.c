// One system call on a path, run on the libuv thread pool: a Promise that resolves to undefined
// or rejects with the SysError the call would throw. For calls that can take milliseconds
// (unmounting an overlay syncs its upper filesystem; syncfs writes a filesystem's dirty data
// back), during which the event loop must go on.
#include "berth_sys.h"

struct path_work {
  napi_async_work work;
  napi_deferred deferred;
  const char *syscall;
  path_call call;
  char *path;
  int arg;
  int err;
};

static void path_execute(napi_env env, void *data) {
  (void)env;
  struct path_work *w = data;
  w->err = w->call(w->path, w->arg);
}

static void path_complete(napi_env env, napi_status status, void *data) {
  struct path_work *w = data;
  if (status != napi_ok) {
    // Cancelled (never the case: nothing calls napi_cancel_async_work) or failed to run.
    napi_reject_deferred(env, w->deferred, make_sys_error(env, w->syscall, ECANCELED, w->path));
  } else if (w->err != 0) {
    napi_reject_deferred(env, w->deferred, make_sys_error(env, w->syscall, w->err, w->path));
  } else {
    napi_resolve_deferred(env, w->deferred, undefined(env));
  }
  napi_delete_async_work(env, w->work);
  free(w->path);
  free(w);
}

napi_value queue_path_call(napi_env env, const char *syscall, path_call call, char *path, int arg) {
  struct path_work *w = calloc(1, sizeof *w);
  napi_value promise, name;
  if (w == NULL) {
    free(path);
    throw_sys_error(env, syscall, ENOMEM, NULL);
    return NULL;
  }
  w->syscall = syscall;
  w->call = call;
  w->path = path;
  w->arg = arg;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok) goto fail;
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, path_execute, path_complete, w, &w->work) != napi_ok) goto fail;
  if (napi_queue_async_work(env, w->work) != napi_ok) {
    napi_delete_async_work(env, w->work);
    goto fail;
  }
  return promise;
fail:
  // Not settled on purpose: the promise was never handed out, so rejecting it would only
  // raise an unhandled rejection; the thrown error below is what the caller sees.
  free(path);
  free(w);
  napi_throw_error(env, "ERR_BERTH_ASYNC", "could not queue the work");
  return NULL;
}

// syncfsAsync(path): syncfs(2) of the filesystem that holds path (a directory or a file).
static int syncfs_path(const char *path, int unused) {
  (void)unused;
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return errno;
  int err = syncfs(fd) == 0 ? 0 : errno;
  close(fd);
  return err;
}

napi_value js_syncfs_async(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  return queue_path_call(env, "syncfs", syncfs_path, path, 0);
}
