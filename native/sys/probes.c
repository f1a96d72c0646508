// Probes of what the kernel lets berth's runtimes do, tried for real at berthd's start rather
// than guessed from the kernel version. Each returns null when the thing works, or a short
// reason ("mount_setattr: ENOSYS") when it does not, and leaves nothing behind: every mount is
// made in a mount namespace of its own, which dies with the thread or process that made it.
#include "berth_sys.h"

#include <sys/statfs.h>

#ifndef ST_RDONLY
#define ST_RDONLY 1
#endif

static napi_value reason_value(napi_env env, const char *step, int err, const char *extra) {
  char buf[256];
  if (err != 0) {
    const char *name = strerrorname_np(err);
    snprintf(buf, sizeof buf, "%s%s%s: %s", step, extra ? " " : "", extra ? extra : "", name ? name : "unknown errno");
  } else {
    snprintf(buf, sizeof buf, "%s%s%s", step, extra ? " " : "", extra ? extra : "");
  }
  napi_value v;
  napi_create_string_utf8(env, buf, NAPI_AUTO_LENGTH, &v);
  return v;
}

static napi_value null_value(napi_env env) {
  napi_value v;
  napi_get_null(env, &v);
  return v;
}

// ---------------------------------------------------------------------------------------
// probeRecursiveReadOnly(dir): in a short-lived thread with a private mount namespace, a
// tmpfs on dir with a second tmpfs mounted inside it; mount_setattr(AT_RECURSIVE,
// MOUNT_ATTR_RDONLY) on the outer one; then a file created in the inner one must fail with
// EROFS. That is what a runtime's "rro" option does (runc: mount_setattr after the bind).

struct rro_job {
  const char *dir;
  char sub[4096];
  const char *step;  // the failing step, NULL when the probe passed
  int err;
};

static void *rro_thread(void *arg) {
  struct rro_job *job = arg;
  // CLONE_NEWNS implies CLONE_FS: this thread gets its own root/cwd and mount namespace; the
  // process keeps the host's. Nothing mounted below can reach the host: "/" is made private
  // first, and the whole namespace is freed when the thread exits.
  if (unshare(CLONE_NEWNS) != 0) {
    job->step = "unshare(CLONE_NEWNS)";
    job->err = errno;
    return NULL;
  }
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
    job->step = "mount --make-rprivate /";
    job->err = errno;
    return NULL;
  }
  if (mount("berth-rro-probe", job->dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0700") != 0) {
    job->step = "mount tmpfs";
    job->err = errno;
    return NULL;
  }
  snprintf(job->sub, sizeof job->sub, "%s/sub", job->dir);
  if (mkdir(job->sub, 0700) != 0) {
    job->step = "mkdir";
    job->err = errno;
    return NULL;
  }
  if (mount("berth-rro-probe", job->sub, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,mode=0700") != 0) {
    job->step = "mount tmpfs (submount)";
    job->err = errno;
    return NULL;
  }
  struct mount_attr attr = {.attr_set = MOUNT_ATTR_RDONLY};
  if (mount_setattr(AT_FDCWD, job->dir, AT_RECURSIVE, &attr, sizeof attr) != 0) {
    job->step = "mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)";
    job->err = errno;
    return NULL;
  }
  char file[4200];
  snprintf(file, sizeof file, "%s/probe", job->sub);
  int fd = open(file, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    close(fd);
    job->step = "a file was created in the submount of a recursively read-only mount";
    job->err = 0;
    return NULL;
  }
  if (errno != EROFS) {
    job->step = "create a file in the submount (EROFS expected)";
    job->err = errno;
    return NULL;
  }
  job->step = NULL;
  return NULL;
}

napi_value js_probe_recursive_read_only(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char *dir = get_string(env, argv[0], "dir");
  if (dir == NULL) return NULL;
  struct rro_job job = {.dir = dir};
  pthread_t thread;
  int rc = pthread_create(&thread, NULL, rro_thread, &job);
  napi_value ret;
  if (rc != 0) {
    ret = reason_value(env, "pthread_create", rc, NULL);
  } else {
    pthread_join(thread, NULL);
    ret = job.step ? reason_value(env, job.step, job.err, NULL) : null_value(env);
  }
  free(dir);
  return ret;
}

// ---------------------------------------------------------------------------------------
// probeUsernsHostSys(hostId, size, submount, readable): what a container of a pod with a
// user namespace and the host's network needs for its /sys. sysfs cannot be mounted there
// (the user namespace does not own the host's network namespace), so the runtime binds the
// host's /sys recursively and makes it read-only with mount_setattr(AT_RECURSIVE) ("rbind",
// "rro"). A child process in a new user namespace (ids 0..size-1 mapped to hostId..) and
// mount namespace clones /sys recursively (open_tree), makes the clone recursively read-only,
// nosuid, nodev and noexec, and checks that `submount` (relative to /sys; "" to skip) is
// read-only and that the file `readable` (relative to /sys) can be read. The clone is never
// attached anywhere; the child exits and takes its namespaces with it.

struct probe_result {
  char step[96];
  int err;
};

static void child_report(int fd, const char *step, int err) {
  struct probe_result r = {.err = err};
  // No stdio in the child: a plain bounded copy.
  size_t i = 0;
  for (; step[i] != '\0' && i < sizeof r.step - 1; i++) r.step[i] = step[i];
  r.step[i] = '\0';
  ssize_t n = write(fd, &r, sizeof r);
  (void)n;
  _exit(0);
}

// Runs in the cloned child: only plain system calls (the parent is multithreaded).
static void userns_sys_child(int go_fd, int report_fd, const char *submount, const char *readable) {
  char b;
  if (read(go_fd, &b, 1) != 1) _exit(1);  // the parent gave up before writing the maps
  if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) child_report(report_fd, "mount --make-rprivate /", errno);
  int tree = open_tree(AT_FDCWD, "/sys", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE);
  if (tree < 0) child_report(report_fd, "open_tree /sys (rbind)", errno);
  struct mount_attr attr = {
      .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC,
  };
  if (mount_setattr(tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) != 0)
    child_report(report_fd, "mount_setattr /sys (rro,nosuid,nodev,noexec)", errno);
  struct statfs st;
  if (fstatfs(tree, &st) != 0) child_report(report_fd, "statfs /sys", errno);
  if (!(st.f_flags & ST_RDONLY)) child_report(report_fd, "the /sys clone stays writable", 0);
  if (submount[0] != '\0') {
    int sub = openat(tree, submount, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (sub < 0) child_report(report_fd, "open the submount", errno);
    if (fstatfs(sub, &st) != 0) child_report(report_fd, "statfs the submount", errno);
    if (!(st.f_flags & ST_RDONLY)) child_report(report_fd, "a submount of the /sys clone stays writable", 0);
  }
  int rfd = openat(tree, readable, O_RDONLY | O_CLOEXEC);
  if (rfd < 0) child_report(report_fd, "open a /sys file", errno);
  char buf[64];
  if (read(rfd, buf, sizeof buf) < 0) child_report(report_fd, "read a /sys file", errno);
  child_report(report_fd, "", 0);
}

static int write_map(pid_t pid, const char *which, int64_t host_id, int64_t size) {
  char path[64], text[96];
  snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, which);
  int n = snprintf(text, sizeof text, "0 %lld %lld\n", (long long)host_id, (long long)size);
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t w = write(fd, text, (size_t)n);
  int err = errno;
  close(fd);
  if (w != n) {
    errno = w < 0 ? err : EIO;
    return -1;
  }
  return 0;
}

napi_value js_probe_userns_host_sys(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  int64_t host_id, size;
  if (!get_int64(env, argv[0], "hostId", &host_id) || !get_int64(env, argv[1], "size", &size)) return NULL;
  char *submount = get_string(env, argv[2], "submount");
  if (submount == NULL) return NULL;
  char *readable = get_string(env, argv[3], "readable");
  if (readable == NULL) {
    free(submount);
    return NULL;
  }
  napi_value ret = NULL;
  int go[2] = {-1, -1}, report[2] = {-1, -1};
  if (pipe2(go, O_CLOEXEC) != 0 || pipe2(report, O_CLOEXEC) != 0) {
    ret = reason_value(env, "pipe2", errno, NULL);
    goto out;
  }
  // A raw clone (fork with new namespaces): no atfork handlers run in this multithreaded
  // process, and the child only makes system calls before _exit.
  pid_t pid = (pid_t)syscall(SYS_clone, (unsigned long)(CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD), NULL, NULL, NULL, 0);
  if (pid < 0) {
    ret = reason_value(env, "clone(CLONE_NEWUSER|CLONE_NEWNS)", errno, NULL);
    goto out;
  }
  if (pid == 0) {
    close(go[1]);
    close(report[0]);
    userns_sys_child(go[0], report[1], submount, readable);
    _exit(1);
  }
  close(go[0]);
  go[0] = -1;
  close(report[1]);
  report[1] = -1;
  if (write_map(pid, "uid_map", host_id, size) != 0) {
    ret = reason_value(env, "write uid_map", errno, NULL);
  } else if (write_map(pid, "gid_map", host_id, size) != 0) {
    ret = reason_value(env, "write gid_map", errno, NULL);
  } else if (write(go[1], "g", 1) != 1) {
    ret = reason_value(env, "start the probe process", errno, NULL);
  }
  // Closing our end lets a child still waiting for the go-ahead exit.
  close(go[1]);
  go[1] = -1;
  struct probe_result r;
  ssize_t n;
  do {
    n = read(report[0], &r, sizeof r);
  } while (n < 0 && errno == EINTR);
  int status;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (ret == NULL) {
    if (n != (ssize_t)sizeof r) {
      ret = reason_value(env, "the probe process exited without a result", 0, NULL);
    } else {
      r.step[sizeof r.step - 1] = '\0';
      ret = r.step[0] ? reason_value(env, r.step, r.err, NULL) : null_value(env);
    }
  }
out:
  for (int i = 0; i < 2; i++) {
    if (go[i] >= 0) close(go[i]);
    if (report[i] >= 0) close(report[i]);
  }
  free(submount);
  free(readable);
  return ret;
}
