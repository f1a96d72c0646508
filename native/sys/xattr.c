// Extended attributes: set, get and list, following symlinks or not.
#include "berth_sys.h"

// ---------------------------------------------------------------------------------------
// Extended attributes

static napi_value do_setxattr(napi_env env, napi_callback_info info, int nofollow) {
  const char *syscall = nofollow ? "lsetxattr" : "setxattr";
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  char *path = NULL, *name = NULL;
  napi_value ret = NULL;
  if ((path = get_string(env, argv[0], "path")) == NULL) goto out;
  if ((name = get_string(env, argv[1], "name")) == NULL) goto out;
  bool is_buffer = false;
  napi_is_buffer(env, argv[2], &is_buffer);
  if (!is_buffer) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "value must be a Buffer");
    goto out;
  }
  void *data;
  size_t len;
  napi_get_buffer_info(env, argv[2], &data, &len);
  int rc = nofollow ? lsetxattr(path, name, data, len, 0) : setxattr(path, name, data, len, 0);
  if (rc != 0) {
    throw_sys_error(env, syscall, errno, path);
    goto out;
  }
  ret = undefined(env);
out:
  free(path);
  free(name);
  return ret;
}

napi_value js_setxattr(napi_env env, napi_callback_info info) { return do_setxattr(env, info, 0); }
napi_value js_lsetxattr(napi_env env, napi_callback_info info) { return do_setxattr(env, info, 1); }

static napi_value do_getxattr(napi_env env, napi_callback_info info, int nofollow) {
  const char *syscall = nofollow ? "lgetxattr" : "getxattr";
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char *path = NULL, *name = NULL, *buf = NULL;
  napi_value ret = NULL;
  if ((path = get_string(env, argv[0], "path")) == NULL) goto out;
  if ((name = get_string(env, argv[1], "name")) == NULL) goto out;
  // Size the buffer with a first call; retry if the value grew in between (ERANGE).
  for (;;) {
    ssize_t size = nofollow ? lgetxattr(path, name, NULL, 0) : getxattr(path, name, NULL, 0);
    if (size < 0) break;
    free(buf);
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf == NULL) {
      errno = ENOMEM;
      break;
    }
    ssize_t got = nofollow ? lgetxattr(path, name, buf, (size_t)size) : getxattr(path, name, buf, (size_t)size);
    if (got >= 0) {
      void *out_data;
      napi_create_buffer_copy(env, (size_t)got, buf, &out_data, &ret);
      goto out;
    }
    if (errno != ERANGE) break;
  }
  if (errno == ENODATA) {
    napi_get_null(env, &ret);
  } else {
    throw_sys_error(env, syscall, errno, path);
  }
out:
  free(path);
  free(name);
  free(buf);
  return ret;
}

napi_value js_getxattr(napi_env env, napi_callback_info info) { return do_getxattr(env, info, 0); }
napi_value js_lgetxattr(napi_env env, napi_callback_info info) { return do_getxattr(env, info, 1); }

napi_value js_llistxattr(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  char *buf = NULL;
  ssize_t got = -1;
  napi_value ret = NULL;
  for (;;) {
    ssize_t size = llistxattr(path, NULL, 0);
    if (size < 0) break;
    free(buf);
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (buf == NULL) {
      errno = ENOMEM;
      break;
    }
    got = llistxattr(path, buf, (size_t)size);
    if (got >= 0 || errno != ERANGE) break;
  }
  if (got < 0) {
    throw_sys_error(env, "llistxattr", errno, path);
    goto out;
  }
  napi_create_array(env, &ret);
  uint32_t n = 0;
  // The list is NUL-separated names, each NUL-terminated.
  for (ssize_t i = 0; i < got;) {
    size_t len = strnlen(buf + i, (size_t)(got - i));
    if (len > 0) {
      napi_value s;
      napi_create_string_utf8(env, buf + i, len, &s);
      napi_set_element(env, ret, n++, s);
    }
    i += (ssize_t)len + 1;
  }
out:
  free(path);
  free(buf);
  return ret;
}
