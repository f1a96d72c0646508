// SysError: how every failure of the addon reaches JS.
#include "berth_sys.h"

// The SysError constructor, per Node environment (main thread and each worker load
// the addon separately), kept as instance data.
static napi_ref get_error_class(napi_env env) {
  void *data = NULL;
  if (napi_get_instance_data(env, &data) != napi_ok) return NULL;
  return (napi_ref)data;
}

static void free_error_class(napi_env env, void *data, void *hint) {
  (void)hint;
  napi_delete_reference(env, (napi_ref)data);
}

static const char *errno_name(int err, char *buf, size_t len) {
  const char *name = strerrorname_np(err);
  if (name != NULL) return name;
  snprintf(buf, len, "E%d", err);
  return buf;
}

// Creates SysError(syscall, code, errno, path), for throwing or for rejecting a Promise.
// Falls back to a plain Error carrying the same properties if the class was never registered
// (the binding used on its own).
napi_value make_sys_error(napi_env env, const char *syscall, int err, const char *path) {
  char namebuf[16];
  const char *code = errno_name(err, namebuf, sizeof namebuf);
  napi_value argv[4];
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &argv[0]);
  napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &argv[1]);
  napi_create_int32(env, err, &argv[2]);
  if (path != NULL) {
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &argv[3]);
  } else {
    napi_get_undefined(env, &argv[3]);
  }

  napi_value ctor = NULL, error = NULL;
  napi_ref error_class_ref = get_error_class(env);
  if (error_class_ref != NULL && napi_get_reference_value(env, error_class_ref, &ctor) == napi_ok &&
      ctor != NULL && napi_new_instance(env, ctor, 4, argv, &error) == napi_ok) {
    return error;
  }
  char msg[512];
  snprintf(msg, sizeof msg, "%s%s%s: %s", syscall, path ? " " : "", path ? path : "", code);
  napi_value message;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, argv[1], message, &error);
  napi_set_named_property(env, error, "syscall", argv[0]);
  napi_set_named_property(env, error, "errno", argv[2]);
  if (path != NULL) napi_set_named_property(env, error, "path", argv[3]);
  return error;
}

// Throws SysError(syscall, code, errno, path).
void throw_sys_error(napi_env env, const char *syscall, int err, const char *path) {
  napi_throw(env, make_sys_error(env, syscall, err, path));
}

// ---------------------------------------------------------------------------------------
// setErrorClass(ctor): the JS side registers SysError once at load.

napi_value js_set_error_class(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[0], &t);
  if (t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "error class must be a function");
    return NULL;
  }
  napi_ref ref;
  if (napi_create_reference(env, argv[0], 1, &ref) != napi_ok) return NULL;
  // Replacing instance data does not run the old finalizer, so drop the old ref here.
  napi_ref old = get_error_class(env);
  if (old != NULL) napi_delete_reference(env, old);
  napi_set_instance_data(env, ref, free_error_class, NULL);
  return undefined(env);
}
