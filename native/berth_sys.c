// berth_sys: the Linux system calls Node.js lacks, as a plain N-API addon.
//
// Every function is synchronous: the calls are fast and callers sit on paths where an
// await would only add latency. Failures throw the SysError class that src/sys/index.ts
// hands us through setErrorClass(), so JS sees the same error type whatever fails.
//
// Threads matter here: setns()/unshare() act on the calling thread only, and Node runs
// JS on one thread of a multithreaded process. netnsCreate and connectInNetns therefore
// do their namespace work in a short-lived dedicated pthread, so the main thread (and so
// the event loop) never leaves the host network namespace.
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#define NAPI_VERSION 8
#include <node_api.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

// ---------------------------------------------------------------------------------------
// Errors

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

// Throws SysError(syscall, code, errno, path). Falls back to a plain Error carrying the
// same properties if the class was never registered (the binding used on its own).
static void throw_sys_error(napi_env env, const char *syscall, int err, const char *path) {
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
    napi_throw(env, error);
    return;
  }
  char msg[512];
  snprintf(msg, sizeof msg, "%s%s%s: %s", syscall, path ? " " : "", path ? path : "", code);
  napi_value message;
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, argv[1], message, &error);
  napi_set_named_property(env, error, "syscall", argv[0]);
  napi_set_named_property(env, error, "errno", argv[2]);
  if (path != NULL) napi_set_named_property(env, error, "path", argv[3]);
  napi_throw(env, error);
}

// ---------------------------------------------------------------------------------------
// Argument helpers. Each returns 0 after throwing a TypeError.

static int get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return 0;
  // Missing trailing arguments arrive as undefined, which the typed getters reject.
  return 1;
}

static int is_nullish(napi_env env, napi_value v) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  return t == napi_undefined || t == napi_null;
}

// Copies a JS string into a malloc'd NUL-terminated buffer. Strings with embedded NULs
// are refused: the kernel would silently see a shorter path.
static char *get_string(napi_env env, napi_value v, const char *what) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a string", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  char *s = malloc(len + 1);
  if (s == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  napi_get_value_string_utf8(env, v, s, len + 1, &len);
  if (strlen(s) != len) {
    free(s);
    char msg[128];
    snprintf(msg, sizeof msg, "%s must not contain NUL characters", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }
  return s;
}

static int get_int64(napi_env env, napi_value v, const char *what, int64_t *out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t != napi_number || napi_get_value_int64(env, v, out) != napi_ok) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return 0;
  }
  return 1;
}

static int get_int32(napi_env env, napi_value v, const char *what, int32_t *out) {
  int64_t x;
  if (!get_int64(env, v, what, &x)) return 0;
  *out = (int32_t)x;
  return 1;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// ---------------------------------------------------------------------------------------
// mount(source, target, fstype|null, flags, data?)

static napi_value js_mount(napi_env env, napi_callback_info info) {
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
static napi_value js_umount2(napi_env env, napi_callback_info info) {
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

// ---------------------------------------------------------------------------------------
// makedev(major, minor) and mknod(path, mode, dev)

static napi_value js_makedev(napi_env env, napi_callback_info info) {
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

static napi_value js_mknod(napi_env env, napi_callback_info info) {
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

static napi_value js_setxattr(napi_env env, napi_callback_info info) { return do_setxattr(env, info, 0); }
static napi_value js_lsetxattr(napi_env env, napi_callback_info info) { return do_setxattr(env, info, 1); }

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

static napi_value js_getxattr(napi_env env, napi_callback_info info) { return do_getxattr(env, info, 0); }
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) { return do_getxattr(env, info, 1); }

static napi_value js_llistxattr(napi_env env, napi_callback_info info) {
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

// ---------------------------------------------------------------------------------------
// Processes

static napi_value js_prctl_set_child_subreaper(napi_env env, napi_callback_info info) {
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

static napi_value js_waitpid(napi_env env, napi_callback_info info) {
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

static napi_value js_pidfd_open(napi_env env, napi_callback_info info) {
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

// ---------------------------------------------------------------------------------------
// Namespaces: raw calls (they affect the calling thread only)

static napi_value js_setns(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd, nstype;
  if (!get_int32(env, argv[0], "fd", &fd) || !get_int32(env, argv[1], "nstype", &nstype)) return NULL;
  if (setns(fd, nstype) != 0) {
    throw_sys_error(env, "setns", errno, NULL);
    return NULL;
  }
  return undefined(env);
}

static napi_value js_unshare(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t flags;
  if (!get_int32(env, argv[0], "flags", &flags)) return NULL;
  if (unshare(flags) != 0) {
    throw_sys_error(env, "unshare", errno, NULL);
    return NULL;
  }
  return undefined(env);
}

// ---------------------------------------------------------------------------------------
// Work done in a dedicated thread. The thread fills in the result and exits; its
// namespace changes die with it.

struct ns_job {
  // inputs
  const char *path;  // netnsCreate: mount target; connectInNetns: namespace file
  const char *host;  // connectInNetns
  int port;
  int timeout_ms;
  // outputs
  int err;              // errno, 0 on success
  const char *syscall;  // which call failed
  int fd;               // connectInNetns: connected socket
};

static int run_in_thread(void *(*fn)(void *), struct ns_job *job) {
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, fn, job);
  if (rc != 0) {
    job->err = rc;
    job->syscall = "pthread_create";
    return -1;
  }
  pthread_join(thread, NULL);
  return job->err == 0 ? 0 : -1;
}

static void *netns_create_thread(void *arg) {
  struct ns_job *job = arg;
  if (unshare(CLONE_NEWNET) != 0) {
    job->err = errno;
    job->syscall = "unshare";
    return NULL;
  }
  char src[64];
  snprintf(src, sizeof src, "/proc/self/task/%d/ns/net", (int)gettid());
  if (mount(src, job->path, "none", MS_BIND, NULL) != 0) {
    job->err = errno;
    job->syscall = "mount";
    return NULL;
  }
  return NULL;
}

// netnsCreate(path): new network namespace, pinned by a bind mount on path. The file is
// created (mode 0444) if missing; if anything fails, a file we created is removed again.
static napi_value js_netns_create(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char *path = get_string(env, argv[0], "path");
  if (path == NULL) return NULL;
  napi_value ret = NULL;
  int created = 0;
  int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0444);
  if (fd >= 0) {
    created = 1;
    close(fd);
  } else if (errno != EEXIST) {
    throw_sys_error(env, "open", errno, path);
    goto out;
  }
  struct ns_job job = {.path = path, .fd = -1};
  if (run_in_thread(netns_create_thread, &job) != 0) {
    if (created) unlink(path);
    throw_sys_error(env, job.syscall, job.err, path);
    goto out;
  }
  ret = undefined(env);
out:
  free(path);
  return ret;
}

// Connects sock to addr, waiting at most timeout_ms (<= 0: the kernel's own timeout).
// Leaves the socket in blocking mode, as it was created.
static int connect_with_timeout(int sock, const struct sockaddr *addr, socklen_t len, int timeout_ms) {
  if (timeout_ms <= 0) {
    int rc;
    do {
      rc = connect(sock, addr, len);
    } while (rc != 0 && errno == EINTR);
    return rc;
  }
  int flags = fcntl(sock, F_GETFL);
  if (flags < 0 || fcntl(sock, F_SETFL, flags | O_NONBLOCK) != 0) return -1;
  if (connect(sock, addr, len) != 0) {
    if (errno != EINPROGRESS) return -1;
    struct pollfd p = {.fd = sock, .events = POLLOUT};
    int n;
    do {
      n = poll(&p, 1, timeout_ms);
    } while (n < 0 && errno == EINTR);
    if (n < 0) return -1;
    if (n == 0) {
      errno = ETIMEDOUT;
      return -1;
    }
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (getsockopt(sock, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0) return -1;
    if (soerr != 0) {
      errno = soerr;
      return -1;
    }
  }
  return fcntl(sock, F_SETFL, flags);
}

static int connect_literal(struct ns_job *job, const char *host) {
  struct sockaddr_storage ss;
  socklen_t len;
  memset(&ss, 0, sizeof ss);
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)job->port);
    len = sizeof *in4;
  } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)job->port);
    len = sizeof *in6;
  } else {
    job->err = EINVAL;
    job->syscall = "inet_pton";
    return -1;
  }
  int sock = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    job->err = errno;
    job->syscall = "socket";
    return -1;
  }
  if (connect_with_timeout(sock, (struct sockaddr *)&ss, len, job->timeout_ms) != 0) {
    job->err = errno;
    job->syscall = "connect";
    close(sock);
    return -1;
  }
  job->fd = sock;
  return 0;
}

static void *connect_in_netns_thread(void *arg) {
  struct ns_job *job = arg;
  int nsfd = open(job->path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    job->err = errno;
    job->syscall = "open";
    return NULL;
  }
  int rc = setns(nsfd, CLONE_NEWNET);
  int setns_errno = errno;
  close(nsfd);
  if (rc != 0) {
    job->err = setns_errno;
    job->syscall = "setns";
    return NULL;
  }
  // "localhost" is what port-forwarding asks for: try IPv4 loopback, then IPv6.
  if (strcmp(job->host, "localhost") == 0) {
    if (connect_literal(job, "127.0.0.1") == 0) return NULL;
    int first_err = job->err;
    const char *first_call = job->syscall;
    job->err = 0;
    if (connect_literal(job, "::1") == 0) return NULL;
    job->err = first_err;
    job->syscall = first_call;
    return NULL;
  }
  connect_literal(job, job->host);
  return NULL;
}

// connectInNetns(nsPath, host, port, timeoutMs?) -> fd
static napi_value js_connect_in_netns(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  char *ns_path = NULL, *host = NULL;
  napi_value ret = NULL;
  int32_t port, timeout_ms = 0;
  if ((ns_path = get_string(env, argv[0], "nsPath")) == NULL) goto out;
  if ((host = get_string(env, argv[1], "host")) == NULL) goto out;
  if (!get_int32(env, argv[2], "port", &port)) goto out;
  if (!is_nullish(env, argv[3]) && !get_int32(env, argv[3], "timeoutMs", &timeout_ms)) goto out;
  if (port < 0 || port > 65535) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "port must be 0..65535");
    goto out;
  }
  // Accept "[::1]" as well as "::1".
  size_t hl = strlen(host);
  if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
    memmove(host, host + 1, hl - 2);
    host[hl - 2] = '\0';
  }
  struct ns_job job = {.path = ns_path, .host = host, .port = port, .timeout_ms = timeout_ms, .fd = -1};
  if (run_in_thread(connect_in_netns_thread, &job) != 0) {
    const char *where = ns_path;
    char addr[HOST_MAX + 16];
    if (strcmp(job.syscall, "connect") == 0 || strcmp(job.syscall, "socket") == 0 ||
        strcmp(job.syscall, "inet_pton") == 0) {
      snprintf(addr, sizeof addr, strchr(host, ':') ? "[%.*s]:%d" : "%.*s:%d", HOST_MAX, host, port);
      where = addr;
    }
    throw_sys_error(env, job.syscall, job.err, where);
    goto out;
  }
  napi_create_int32(env, job.fd, &ret);
out:
  free(ns_path);
  free(host);
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

static napi_value js_fsmount(napi_env env, napi_callback_info info) {
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
// setErrorClass(ctor): the JS side registers SysError once at load.

static napi_value js_set_error_class(napi_env env, napi_callback_info info) {
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

static napi_value init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"setErrorClass", NULL, js_set_error_class, NULL, NULL, NULL, napi_enumerable, NULL},
      {"mount", NULL, js_mount, NULL, NULL, NULL, napi_enumerable, NULL},
      {"umount2", NULL, js_umount2, NULL, NULL, NULL, napi_enumerable, NULL},
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
      {"netnsCreate", NULL, js_netns_create, NULL, NULL, NULL, napi_enumerable, NULL},
      {"connectInNetns", NULL, js_connect_in_netns, NULL, NULL, NULL, napi_enumerable, NULL},
      {"fsmount", NULL, js_fsmount, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof props / sizeof props[0], props);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
