// createFileAsync(path, data, mode, uid, gid, mtimeSec, mtimeNsec): a new regular file with its
// whole content, owner, mode and times, in one job on the libuv thread pool. Applying a layer
// did that with a round trip to the pool per step (open, each write, fchown, fchmod, futimens,
// close), about 80 µs each: most of the time of a layer of small files went to those trips
// (src/images/unpack.ts has the figures).
//
// The file is created with O_CREAT|O_EXCL|O_NOFOLLOW: it never follows or reuses what is at
// `path` (a layer's last component is never followed); EEXIST tells the caller to remove it
// first. Owner before mode, since chown clears setuid/setgid. On a failure after the open the
// partial file is left for the caller, whose apply fails as a whole.
#include "berth_sys.h"

struct create_work {
  napi_async_work work;
  napi_deferred deferred;
  napi_ref data_ref;
  char *path;
  const uint8_t *data;
  size_t len;
  mode_t mode;
  uid_t uid;
  gid_t gid;
  struct timespec mtime;
  const char *syscall;
  int err;
};

static void create_execute(napi_env env, void *arg) {
  (void)env;
  struct create_work *w = arg;
  int fd = open(w->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    w->syscall = "open";
    w->err = errno;
    return;
  }
  size_t done = 0;
  while (done < w->len) {
    ssize_t n = pwrite(fd, w->data + done, w->len - done, (off_t)done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      // A nearly full disk may take fewer bytes without an error; nothing at all is ENOSPC.
      w->syscall = "write";
      w->err = n < 0 ? errno : ENOSPC;
      close(fd);
      return;
    }
    done += (size_t)n;
  }
  struct timespec times[2] = {w->mtime, w->mtime};
  if (fchown(fd, w->uid, w->gid) != 0) {
    w->syscall = "fchown";
  } else if (fchmod(fd, w->mode) != 0) {
    w->syscall = "fchmod";
  } else if (futimens(fd, times) != 0) {
    w->syscall = "futimens";
  }
  if (w->syscall != NULL) w->err = errno;
  if (close(fd) != 0 && w->syscall == NULL) {
    w->syscall = "close";
    w->err = errno;
  }
}

static void create_complete(napi_env env, napi_status status, void *arg) {
  struct create_work *w = arg;
  if (status != napi_ok) {
    napi_reject_deferred(env, w->deferred, make_sys_error(env, "open", ECANCELED, w->path));
  } else if (w->err != 0) {
    napi_reject_deferred(env, w->deferred, make_sys_error(env, w->syscall, w->err, w->path));
  } else {
    napi_resolve_deferred(env, w->deferred, undefined(env));
  }
  napi_delete_reference(env, w->data_ref);
  napi_delete_async_work(env, w->work);
  free(w->path);
  free(w);
}

napi_value js_create_file_async(napi_env env, napi_callback_info info) {
  napi_value argv[7];
  if (!get_args(env, info, 7, argv)) return NULL;
  bool is_buffer = false;
  if (napi_is_buffer(env, argv[1], &is_buffer) != napi_ok || !is_buffer) {
    napi_throw_type_error(env, NULL, "data must be a Buffer");
    return NULL;
  }
  int32_t mode;
  int64_t uid, gid, sec, nsec;
  if (!get_int32(env, argv[2], "mode", &mode) || !get_int64(env, argv[3], "uid", &uid) ||
      !get_int64(env, argv[4], "gid", &gid) || !get_int64(env, argv[5], "mtimeSec", &sec) ||
      !get_int64(env, argv[6], "mtimeNsec", &nsec))
    return NULL;
  if (nsec < 0 || nsec >= 1000000000) {
    napi_throw_range_error(env, NULL, "mtimeNsec must be within [0, 1e9)");
    return NULL;
  }
  // (uid_t)-1 would mean "leave unchanged" to fchown.
  if (uid < 0 || uid >= 0xFFFFFFFFLL || gid < 0 || gid >= 0xFFFFFFFFLL) {
    napi_throw_range_error(env, NULL, "uid and gid must be within [0, 2^32 - 1)");
    return NULL;
  }
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  struct create_work *w = calloc(1, sizeof *w);
  napi_value promise, name;
  if (w == NULL) {
    free(path);
    throw_sys_error(env, "open", ENOMEM, NULL);
    return NULL;
  }
  void *data = NULL;
  size_t len = 0;
  napi_get_buffer_info(env, argv[1], &data, &len);
  w->path = path;
  w->data = data;
  w->len = len;
  w->mode = (mode_t)(mode & 07777);
  w->uid = (uid_t)uid;
  w->gid = (gid_t)gid;
  w->mtime.tv_sec = (time_t)sec;
  w->mtime.tv_nsec = (long)nsec;
  // The buffer's bytes are read on the pool thread: the reference keeps it alive until then.
  if (napi_create_reference(env, argv[1], 1, &w->data_ref) != napi_ok) goto fail;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok) goto fail_ref;
  napi_create_string_utf8(env, "createFile", NAPI_AUTO_LENGTH, &name);
  if (napi_create_async_work(env, NULL, name, create_execute, create_complete, w, &w->work) != napi_ok)
    goto fail_ref;
  if (napi_queue_async_work(env, w->work) != napi_ok) {
    napi_delete_async_work(env, w->work);
    goto fail_ref;
  }
  return promise;
fail_ref:
  // As in pool.c: a promise never handed out is not settled; the thrown error is what counts.
  napi_delete_reference(env, w->data_ref);
fail:
  free(path);
  free(w);
  napi_throw_error(env, "ERR_BERTH_ASYNC", "could not queue the work");
  return NULL;
}
