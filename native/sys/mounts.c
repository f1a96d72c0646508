// mount(2), umount2(2), mknod(2) and the new mount API (fsopen/fsconfig/fsmount/move_mount).
#include "berth_sys.h"

// ---------------------------------------------------------------------------------------
// mount(source, target, fstype|null, flags, data?)

napi_value js_mount(napi_env env, napi_callback_info info) {
  napi_value argv[5];
  if (!get_args(env, info, 5, argv)) return NULL;
  char *source = NULL, *target = NULL, *fstype = NULL, *data = NULL;
  int64_t flags;
  napi_value ret = NULL;
  if (!is_nullish(env, argv[0]) && (source = get_string(env, argv[0], "source")) == NULL) goto out;
  if ((target = get_string(env, argv[1], "target")) == NULL) goto out;
  if (!is_nullish(env, argv[2]) && (fstype = get_string(env, argv[2], "fstype")) == NULL) goto out;
  if (!get_int64(env, argv[3], "flags", &flags)) goto out;
  if (!is_nullish(env, argv[4]) && (data = get_string(env, argv[4], "data")) == NULL) goto out;
  if (mount(source, target, fstype, (unsigned long)flags, data) != 0) {
    throw_sys_error(env, "mount", errno, target);
    goto out;
  }
  ret = undefined(env);
out:
  free(source);
  free(target);
  free(fstype);
  free(data);
  return ret;
}

// umount2(target, flags)
napi_value js_umount2(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char *target = get_string(env, argv[0], "target");
  if (target == NULL) return NULL;
  int32_t flags;
  napi_value ret = NULL;
  if (!get_int32(env, argv[1], "flags", &flags)) goto out;
  if (umount2(target, flags) != 0) {
    throw_sys_error(env, "umount2", errno, target);
    goto out;
  }
  ret = undefined(env);
out:
  free(target);
  return ret;
}

// umount2Async(target, flags): the same call on the libuv thread pool (pool.c). Unmounting an
// overlay syncs its upper filesystem (milliseconds under load); the event loop goes on meanwhile.
static int umount2_path(const char *target, int flags) {
  return umount2(target, flags) == 0 ? 0 : errno;
}

napi_value js_umount2_async(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t flags;
  if (!get_int32(env, argv[1], "flags", &flags)) return NULL;
  char *target = get_string(env, argv[0], "target");
  if (target == NULL) return NULL;
  return queue_path_call(env, "umount2", umount2_path, target, flags);
}

// ---------------------------------------------------------------------------------------
// makedev(major, minor) and mknod(path, mode, dev)

napi_value js_makedev(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int64_t major, minor;
  if (!get_int64(env, argv[0], "major", &major) || !get_int64(env, argv[1], "minor", &minor)) return NULL;
  dev_t dev = makedev((unsigned int)major, (unsigned int)minor);
  napi_value v;
  // dev_t is 64-bit, but any real major/minor pair encodes well below 2^53.
  napi_create_int64(env, (int64_t)dev, &v);
  return v;
}

napi_value js_mknod(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  int64_t mode, dev;
  napi_value ret = NULL;
  if (!get_int64(env, argv[1], "mode", &mode) || !get_int64(env, argv[2], "dev", &dev)) goto out;
  if (mknod(path, (mode_t)mode, (dev_t)dev) != 0) {
    throw_sys_error(env, "mknod", errno, path);
    goto out;
  }
  ret = undefined(env);
out:
  free(path);
  return ret;
}


// ---------------------------------------------------------------------------------------
// fsmount(fstype, target, attrFlags, params): the new mount API (Linux >= 5.2):
// fsopen(fstype) + one fsconfig() per [key, value|null] pair + FSCONFIG_CMD_CREATE +
// fsmount(attrFlags) + move_mount onto target. Each fsconfig call carries one value, so the
// whole option set is not bound by mount(2)'s one-page data limit: overlayfs takes one
// "lowerdir+" per layer (Linux >= 6.8), which is how images with 100+ layers mount.
// A null value is a flag (FSCONFIG_SET_FLAG). On failure the kernel's own message for the
// fs context (read from the fs fd) is appended to the error path, e.g. "lowerdir+: ...".

static void fs_context_message(int fsfd, char *buf, size_t len) {
  buf[0] = '\0';
  char msg[256];
  // Messages queue up; the last one is the most specific. Non-blocking: read fails with ENODATA.
  for (;;) {
    ssize_t n = read(fsfd, msg, sizeof msg - 1);
    if (n <= 0) break;
    msg[n] = '\0';
    snprintf(buf, len, "%s", msg);
  }
}

napi_value js_fsmount(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  char *fstype = NULL, *target = NULL, *key = NULL, *value = NULL;
  int64_t attr;
  int fsfd = -1, mfd = -1;
  napi_value ret = NULL;
  char where[1024];
  if ((fstype = get_string(env, argv[0], "fstype")) == NULL) goto out;
  if ((target = get_string(env, argv[1], "target")) == NULL) goto out;
  if (!get_int64(env, argv[2], "attrFlags", &attr)) goto out;
  bool is_array = false;
  napi_is_array(env, argv[3], &is_array);
  if (!is_array) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "params must be an array of [key, value|null]");
    goto out;
  }
  fsfd = fsopen(fstype, FSOPEN_CLOEXEC);
  if (fsfd < 0) {
    throw_sys_error(env, "fsopen", errno, fstype);
    goto out;
  }
  uint32_t n = 0;
  napi_get_array_length(env, argv[3], &n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value pair, k, v;
    napi_get_element(env, argv[3], i, &pair);
    napi_get_element(env, pair, 0, &k);
    napi_get_element(env, pair, 1, &v);
    if ((key = get_string(env, k, "param key")) == NULL) goto out;
    int rc;
    if (is_nullish(env, v)) {
      rc = fsconfig(fsfd, FSCONFIG_SET_FLAG, key, NULL, 0);
    } else {
      if ((value = get_string(env, v, "param value")) == NULL) goto out;
      rc = fsconfig(fsfd, FSCONFIG_SET_STRING, key, value, 0);
    }
    if (rc != 0) {
      int err = errno;
      char msg[256];
      fs_context_message(fsfd, msg, sizeof msg);
      snprintf(where, sizeof where, "%s=%s%s%s", key, value ? value : "", msg[0] ? " " : "", msg);
      throw_sys_error(env, "fsconfig", err, where);
      goto out;
    }
    free(key);
    free(value);
    key = value = NULL;
  }
  if (fsconfig(fsfd, FSCONFIG_CMD_CREATE, NULL, NULL, 0) != 0) {
    int err = errno;
    char msg[256];
    fs_context_message(fsfd, msg, sizeof msg);
    snprintf(where, sizeof where, "%s%s%s", target, msg[0] ? " " : "", msg);
    throw_sys_error(env, "fsconfig", err, where);
    goto out;
  }
  mfd = fsmount(fsfd, FSMOUNT_CLOEXEC, (unsigned int)attr);
  if (mfd < 0) {
    throw_sys_error(env, "fsmount", errno, target);
    goto out;
  }
  if (move_mount(mfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    throw_sys_error(env, "move_mount", errno, target);
    goto out;
  }
  ret = undefined(env);
out:
  if (mfd >= 0) close(mfd);
  if (fsfd >= 0) close(fsfd);
  free(fstype);
  free(target);
  free(key);
  free(value);
  return ret;
}

// ---------------------------------------------------------------------------------------
// idmapMount(source, target, usernsPath): an idmapped copy of the mount tree at source
// (open_tree(OPEN_TREE_CLONE | AT_RECURSIVE)), its ids shifted by the mappings of the user
// namespace file usernsPath (mount_setattr MOUNT_ATTR_IDMAP, Linux >= 5.12, per filesystem:
// ext4/xfs/btrfs 5.12+, tmpfs 6.3+; overlayfs itself cannot be idmapped, but its layers can),
// moved onto target. A file owned by uid N on disk shows as the host uid the namespace maps N to.

napi_value js_idmap_mount(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  char *source = NULL, *target = NULL, *userns = NULL;
  int ufd = -1, tfd = -1;
  napi_value ret = NULL;
  if ((source = get_string(env, argv[0], "source")) == NULL) goto out;
  if ((target = get_string(env, argv[1], "target")) == NULL) goto out;
  if ((userns = get_string(env, argv[2], "usernsPath")) == NULL) goto out;
  ufd = open(userns, O_RDONLY | O_CLOEXEC);
  if (ufd < 0) {
    throw_sys_error(env, "open", errno, userns);
    goto out;
  }
  tfd = open_tree(AT_FDCWD, source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (tfd < 0) {
    throw_sys_error(env, "open_tree", errno, source);
    goto out;
  }
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_IDMAP, .userns_fd = (uint64_t)ufd};
  if (mount_setattr(tfd, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0) {
    throw_sys_error(env, "mount_setattr", errno, source);
    goto out;
  }
  if (move_mount(tfd, "", AT_FDCWD, target, MOVE_MOUNT_F_EMPTY_PATH) != 0) {
    throw_sys_error(env, "move_mount", errno, target);
    goto out;
  }
  ret = undefined(env);
out:
  if (tfd >= 0) close(tfd);
  if (ufd >= 0) close(ufd);
  free(source);
  free(target);
  free(userns);
  return ret;
}
