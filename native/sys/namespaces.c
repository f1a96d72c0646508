// Namespaces: the raw setns/unshare calls, and the work (netnsCreate, connectInNetns) done in a
// short-lived dedicated pthread so the main thread never leaves the host network namespace.
#include "berth_sys.h"

// ---------------------------------------------------------------------------------------
// Namespaces: raw calls (they affect the calling thread only)

napi_value js_setns(napi_env env, napi_callback_info info) {
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

napi_value js_unshare(napi_env env, napi_callback_info info) {
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
napi_value js_netns_create(napi_env env, napi_callback_info info) {
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
napi_value js_connect_in_netns(napi_env env, napi_callback_info info) {
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

// Enters the namespace file job->path (network namespace) in this thread; 0 or -1 with job->err set.
static int enter_netns(struct ns_job *job) {
  int nsfd = open(job->path, O_RDONLY | O_CLOEXEC);
  if (nsfd < 0) {
    job->err = errno;
    job->syscall = "open";
    return -1;
  }
  int rc = setns(nsfd, CLONE_NEWNET);
  int setns_errno = errno;
  close(nsfd);
  if (rc != 0) {
    job->err = setns_errno;
    job->syscall = "setns";
    return -1;
  }
  return 0;
}

static void *loopback_up_thread(void *arg) {
  struct ns_job *job = arg;
  if (enter_netns(job) != 0) return NULL;
  // Any socket of the namespace serves for the interface ioctls; the kernel gives lo its
  // 127.0.0.1/8 (and ::1) when it comes up.
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) {
    job->err = errno;
    job->syscall = "socket";
    return NULL;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(sock, SIOCGIFFLAGS, &ifr) != 0) {
    job->err = errno;
    job->syscall = "ioctl(SIOCGIFFLAGS)";
  } else if (!(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(sock, SIOCSIFFLAGS, &ifr) != 0) {
      job->err = errno;
      job->syscall = "ioctl(SIOCSIFFLAGS)";
    }
  }
  close(sock);
  return NULL;
}

// netnsLoopbackUp(nsPath): brings `lo` up inside the network namespace pinned at nsPath, what
// the CNI loopback plugin's ADD does, without starting a process for it.
napi_value js_netns_loopback_up(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char *path = get_string(env, argv[0], "nsPath");
  if (path == NULL) return NULL;
  napi_value ret = NULL;
  struct ns_job job = {.path = path, .fd = -1};
  if (run_in_thread(loopback_up_thread, &job) != 0) {
    throw_sys_error(env, job.syscall, job.err, path);
  } else {
    ret = undefined(env);
  }
  free(path);
  return ret;
}
