// spawn: starting a program without forking the big process.
//
// Node's child_process forks (libuv's uv_spawn), which copies the page tables of the whole
// process: 0.7-2 ms of blocked event loop at 50-150 MiB RSS, for every runc, CNI plugin and
// iptables run. glibc's posix_spawn uses clone(CLONE_VM|CLONE_VFORK) instead: the child runs
// on a small stack in our address space until it execs, so nothing is copied, and it reports
// an exec failure (ENOENT, EACCES) as posix_spawn's return value.
//
// The exit comes back without blocking and without SIGCHLD: a pidfd (pidfd_open) polled by a
// libuv handle on Node's loop becomes readable when the child dies, and waitid(P_PIDFD) reaps
// exactly that child. Nothing here calls waitpid(-1), so libuv's own children and the shim's
// reaper (src/shim/reaper.ts, which skips the pids src/sys/spawn.ts has live) keep theirs.
#include "berth_sys.h"

#include <signal.h>
#include <spawn.h>
#include <uv.h>

extern char **environ;

// stdio kinds in the stdio array (a number >= 0 is an fd of ours to give the child)
#define STDIO_IGNORE (-1)  // /dev/null
#define STDIO_PIPE (-2)    // a pipe: the child reads slot 0, writes the others
#define STDIO_SOCKET (-3)  // a unix socketpair (both directions)
#define STDIO_MAX 16

// One child's exit watch. Freed when both the libuv handle is closed and the JS handle
// object (an external) is collected, whichever comes last.
struct exit_watch {
  uv_poll_t poll;
  napi_env env;
  napi_ref callback;
  napi_async_context async;
  int pidfd;
  pid_t pid;
  int closed;  // the poll handle is closing or closed: ref/unref are no-ops
  int owners;  // the uv handle and the external
};

static void watch_release(struct exit_watch *w) {
  if (--w->owners == 0) free(w);
}

static void on_poll_closed(uv_handle_t *h) {
  struct exit_watch *w = h->data;
  close(w->pidfd);
  watch_release(w);
}

static void on_external_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  watch_release(data);
}

static void on_pidfd(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  struct exit_watch *w = h->data;
  siginfo_t si;
  memset(&si, 0, sizeof si);
  int r;
  do {
    r = waitid((idtype_t)P_PIDFD, (id_t)w->pidfd, &si, WEXITED | WNOHANG);
  } while (r < 0 && errno == EINTR);
  int err = r < 0 ? errno : 0;
  if (r == 0 && si.si_pid == 0) return;  // readable but not yet waitable: wait for the next event
  int code = -1, sig = 0;
  if (r == 0) {
    if (si.si_code == CLD_EXITED)
      code = si.si_status;
    else
      sig = si.si_status;  // CLD_KILLED or CLD_DUMPED
  }
  uv_poll_stop(&w->poll);
  w->closed = 1;
  uv_close((uv_handle_t *)&w->poll, on_poll_closed);

  napi_env env = w->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[3];
  napi_get_reference_value(env, w->callback, &cb);
  napi_get_global(env, &recv);  // napi_make_callback wants an object as `this`
  napi_create_int32(env, code, &argv[0]);
  napi_create_int32(env, sig, &argv[1]);
  napi_create_int32(env, err, &argv[2]);  // ECHILD: someone else reaped it (a bug elsewhere)
  napi_make_callback(env, w->async, recv, cb, 3, argv, NULL);
  napi_delete_reference(env, w->callback);
  napi_async_destroy(env, w->async);
  napi_close_handle_scope(env, scope);
}

// The executable execvp would run for `file`, searched on the PATH of the child's environment
// (as libuv does), so a caller's env with its own PATH means the same thing as with
// child_process. Returns a malloc'd path, or NULL with errno set.
static char *resolve_file(const char *file, char **envp) {
  if (strchr(file, '/') != NULL) return strdup(file);
  const char *path = NULL;
  if (envp != NULL) {
    for (char **e = envp; *e != NULL; e++)
      if (strncmp(*e, "PATH=", 5) == 0) path = *e + 5;
  } else {
    path = getenv("PATH");
  }
  if (path == NULL) path = "/usr/local/bin:/usr/bin:/bin";
  int seen_eacces = 0;
  size_t flen = strlen(file);
  while (1) {
    const char *end = strchrnul(path, ':');
    size_t dlen = (size_t)(end - path);
    char *cand = malloc(dlen + flen + 3);
    if (cand == NULL) return NULL;
    if (dlen == 0)
      memcpy(cand, ".", 2), dlen = 1;  // an empty PATH entry is the cwd
    else
      memcpy(cand, path, dlen);
    cand[dlen] = '/';
    memcpy(cand + dlen + 1, file, flen + 1);
    struct stat st;
    if (stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
      if (access(cand, X_OK) == 0) return cand;
      seen_eacces = 1;
    }
    free(cand);
    if (*end == '\0') break;
    path = end + 1;
  }
  errno = seen_eacces ? EACCES : ENOENT;
  return NULL;
}

// A JS array of strings as a malloc'd NULL-terminated char*[]; NULL after throwing.
static char **get_string_array(napi_env env, napi_value arr, const char *what) {
  bool is_array = false;
  napi_is_array(env, arr, &is_array);
  if (!is_array) {
    char msg[128];
    snprintf(msg, sizeof msg, "%s must be an array of strings", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  uint32_t n;
  napi_get_array_length(env, arr, &n);
  char **out = calloc((size_t)n + 1, sizeof *out);
  if (out == NULL) {
    napi_throw_error(env, "ENOMEM", "out of memory");
    return NULL;
  }
  for (uint32_t i = 0; i < n; i++) {
    napi_value v;
    napi_get_element(env, arr, i, &v);
    out[i] = get_string(env, v, what);
    if (out[i] == NULL) {
      for (uint32_t j = 0; j < i; j++) free(out[j]);
      free(out);
      return NULL;
    }
  }
  return out;
}

static void free_string_array(char **a) {
  if (a == NULL) return;
  for (char **p = a; *p != NULL; p++) free(*p);
  free(a);
}

// An fd at or above `min`, close-on-exec, so the dup2s into slots 0..n-1 cannot clobber it.
// Takes ownership of `fd` when `owned`.
static int lift_fd(int fd, int min, int owned) {
  if (fd >= min && owned) return fd;
  int nfd = fcntl(fd, F_DUPFD_CLOEXEC, min);
  int saved = errno;
  if (owned) close(fd);
  errno = saved;
  return nfd;
}

// spawn(file, argv, envp | null, cwd | null, stdio: number[], setsid, onExit(code, signal, errno))
//   -> { pid, fds: number[] (our end per slot, -1 where none), handle }
// argv[0] is passed as given. The child gets the slots of `stdio` as fds 0..n-1 and no other
// fd of ours; default signal dispositions and an empty signal mask (as child_process gives).
napi_value js_spawn(napi_env env, napi_callback_info info) {
  napi_value args[7];
  if (!get_args(env, info, 7, args)) return NULL;
  napi_valuetype cbtype;
  napi_typeof(env, args[6], &cbtype);
  if (cbtype != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "onExit must be a function");
    return NULL;
  }
  bool setsid_flag = false;
  napi_get_value_bool(env, args[5], &setsid_flag);

  napi_value result = NULL;
  char *file = NULL, *cwd = NULL, *path = NULL;
  char **argv = NULL, **envp = NULL;
  int nslots = 0, child_fd[STDIO_MAX], parent_fd[STDIO_MAX];
  for (int i = 0; i < STDIO_MAX; i++) child_fd[i] = parent_fd[i] = -1;
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  int fa_init = 0, attr_init = 0;

  if ((file = get_string(env, args[0], "file")) == NULL) goto out;
  if ((argv = get_string_array(env, args[1], "argv")) == NULL) goto out;
  if (!is_nullish(env, args[2]) && (envp = get_string_array(env, args[2], "envp")) == NULL) goto out;
  if (!is_nullish(env, args[3]) && (cwd = get_string(env, args[3], "cwd")) == NULL) goto out;

  bool is_array = false;
  napi_is_array(env, args[4], &is_array);
  uint32_t n = 0;
  if (is_array) napi_get_array_length(env, args[4], &n);
  if (!is_array || n > STDIO_MAX) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "stdio must be an array of at most 16 numbers");
    goto out;
  }
  nslots = (int)n;

  path = resolve_file(file, envp);
  if (path == NULL) {
    throw_sys_error(env, "posix_spawn", errno, file);
    goto out;
  }

  posix_spawn_file_actions_init(&fa);
  fa_init = 1;
  posix_spawnattr_init(&attr);
  attr_init = 1;

  int err = 0;
  for (int i = 0; i < nslots && err == 0; i++) {
    napi_value v;
    int32_t kind;
    napi_get_element(env, args[4], (uint32_t)i, &v);
    if (!get_int32(env, v, "stdio slot", &kind)) goto out;
    int fds[2];
    if (kind == STDIO_IGNORE) {
      err = posix_spawn_file_actions_addopen(&fa, i, "/dev/null", O_RDWR, 0);
      continue;
    } else if (kind == STDIO_PIPE) {
      if (pipe2(fds, O_CLOEXEC) != 0) {
        err = errno;
        break;
      }
      parent_fd[i] = i == 0 ? fds[1] : fds[0];
      child_fd[i] = lift_fd(i == 0 ? fds[0] : fds[1], nslots, 1);
    } else if (kind == STDIO_SOCKET) {
      if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
        err = errno;
        break;
      }
      parent_fd[i] = fds[0];
      child_fd[i] = lift_fd(fds[1], nslots, 1);
    } else if (kind >= 0) {
      // the caller keeps its fd; the child gets a copy (dup2 clears close-on-exec on it)
      child_fd[i] = lift_fd(kind, nslots, 0);
    } else {
      napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "unknown stdio kind");
      goto out;
    }
    if (child_fd[i] < 0) {
      err = errno;
      break;
    }
    err = posix_spawn_file_actions_adddup2(&fa, child_fd[i], i);
  }
  // Every other fd of ours closes in the child, whatever its close-on-exec flag: a pipe end
  // leaked into a long-lived grandchild (runc's container, an IPAM daemon) would keep a
  // reader of ours from ever seeing EOF.
  if (err == 0) err = posix_spawn_file_actions_addclosefrom_np(&fa, nslots);
  if (err == 0 && cwd != NULL) err = posix_spawn_file_actions_addchdir_np(&fa, cwd);
  if (err != 0) {
    throw_sys_error(env, "posix_spawn", err, file);
    goto out;
  }
  // Node ignores SIGPIPE and blocks some signals on its threads; a program must start with
  // the defaults, as child_process gives it.
  sigset_t all, none;
  sigfillset(&all);
  sigemptyset(&none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setsigmask(&attr, &none);
  short flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK;
  if (setsid_flag) flags |= POSIX_SPAWN_SETSID;  // own session and process group (detached)
  posix_spawnattr_setflags(&attr, flags);

  pid_t pid;
  err = posix_spawn(&pid, path, &fa, &attr, argv, envp != NULL ? envp : environ);
  if (err != 0) {
    throw_sys_error(env, "posix_spawn", err, file);
    goto out;
  }
  // Nobody else reaps this pid (see the top), so it cannot be reused before pidfd_open.
  int pidfd = (int)syscall(SYS_pidfd_open, pid, 0U);
  if (pidfd < 0) {
    int e = errno;
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    throw_sys_error(env, "pidfd_open", e, NULL);
    goto out;
  }

  struct exit_watch *w = calloc(1, sizeof *w);
  uv_loop_t *loop = NULL;
  napi_get_uv_event_loop(env, &loop);
  if (w == NULL || loop == NULL || uv_poll_init(loop, &w->poll, pidfd) != 0) {
    // cannot watch it: do not leave a child nobody reaps
    free(w);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
    close(pidfd);
    throw_sys_error(env, "uv_poll_init", ENOMEM, NULL);
    goto out;
  }
  w->poll.data = w;
  w->env = env;
  w->pidfd = pidfd;
  w->pid = pid;
  w->owners = 2;
  napi_create_reference(env, args[6], 1, &w->callback);
  napi_value resource_name;
  napi_create_string_utf8(env, "berth.spawn", NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &w->async);
  uv_poll_start(&w->poll, UV_READABLE, on_pidfd);

  napi_value v, fdarr, handle;
  napi_create_object(env, &result);
  napi_create_int32(env, pid, &v);
  napi_set_named_property(env, result, "pid", v);
  napi_create_array_with_length(env, (size_t)nslots, &fdarr);
  for (int i = 0; i < nslots; i++) {
    napi_create_int32(env, parent_fd[i], &v);
    napi_set_element(env, fdarr, (uint32_t)i, v);
    parent_fd[i] = -1;  // JS owns them now
  }
  napi_set_named_property(env, result, "fds", fdarr);
  napi_create_external(env, w, on_external_finalize, NULL, &handle);
  napi_set_named_property(env, result, "handle", handle);

out:
  for (int i = 0; i < nslots; i++) {
    if (child_fd[i] >= 0) close(child_fd[i]);
    if (parent_fd[i] >= 0) close(parent_fd[i]);
  }
  if (fa_init) posix_spawn_file_actions_destroy(&fa);
  if (attr_init) posix_spawnattr_destroy(&attr);
  free(file);
  free(cwd);
  free(path);
  free_string_array(argv);
  free_string_array(envp);
  return result;
}

// spawnRef(handle, on): whether the child's exit watch keeps the event loop alive.
napi_value js_spawn_ref(napi_env env, napi_callback_info info) {
  napi_value args[2];
  if (!get_args(env, info, 2, args)) return NULL;
  void *data = NULL;
  if (napi_get_value_external(env, args[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "handle must be a spawn handle");
    return NULL;
  }
  bool on = false;
  napi_get_value_bool(env, args[1], &on);
  struct exit_watch *w = data;
  if (!w->closed) {
    if (on)
      uv_ref((uv_handle_t *)&w->poll);
    else
      uv_unref((uv_handle_t *)&w->poll);
  }
  return undefined(env);
}
