// berth-monitor: the tiny per-process monitor of berth's shim (like CRI-O's conmon).
//
// One monitor runs per container init process and per exec process. The shim spawns it;
// it becomes a child subreaper, runs the OCI runtime command given after `--` (e.g.
// `runc create ...` or `runc exec -d ...`), so the container process is reparented to it
// when the runtime exits. It then:
//   - holds the process's stdio (pipes, or the pty master received on the console socket)
//     and copies output to the destinations (fifo or file paths, or a binary logger);
//   - reaps the process and every orphan, records the exact exit status (code, or
//     128+signal) and time in DIR/exit, written atomically;
//   - reports to the shim over a control socket: fd 3 at spawn, and DIR/ctl.sock for a
//     shim that reconnects (re-adoption after a shim restart).
// It does not depend on the shim: if the shim dies the container keeps running with its
// stdio intact, and the exit status waits in DIR/exit until the shim deletes the process.
//
// Control protocol (text lines). Monitor -> shim, sent on every new connection too:
//   "pid N"              the process exists (created, or started for exec)
//   "failed S"           the runtime command failed with exit status S (see its --log)
//   "exited S SEC NSEC"  the process exited with status S at the given wall time
//   "oom"                the memory cgroup reported an OOM
// Shim -> monitor:
//   "resize W H"         set the pty window size
//   "closestdin"         close the process's stdin
//
// Options:
//   -s DIR    state dir (required): pid file DIR/pid unless -p, exit file DIR/exit
//   -p FILE   pid file the runtime writes (--pid-file)
//   -c PATH   console socket path (terminal mode); the shim passes it to the runtime
//   -i PATH   stdin fifo
//   -o PATH   stdout destination (fifo or file)
//   -e PATH   stderr destination (fifo or file; may equal -o)
//   -b PATH   binary logger (containerd's binary:// rules), -a ARG for each argument,
//             -n ID / -N NS for CONTAINER_ID / CONTAINER_NAMESPACE
//   -O        watch the memory cgroup (v1) of the process for OOM
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 32768
#define MAX_ARGS 64
#define DRAIN_MS 2000

struct stream {
  int src;        // read end (pipe from the process, pty master, or the stdin fifo); -1 when done
  int dst;        // where it goes; -1 when there is nowhere to write
  char buf[BUF_SIZE];
  size_t len, off;  // pending bytes buf[off..len)
};

static const char *state_dir, *pid_file, *console_path, *stdin_path, *stdout_path, *stderr_path;
static const char *logger_path, *logger_id = "", *logger_ns = "";
static char *logger_args[MAX_ARGS];
static int n_logger_args, watch_oom;
static char **runtime_argv;

static int ctl_listen = -1, ctl_conn = -1, console_listen = -1, sfd = -1, oom_efd = -1;
static int stdin_pipe = -1;  // write end towards the process (pipe mode)
static int master = -1;      // pty master (terminal mode)
static struct stream out, err, in;
static pid_t runtime_pid, proc_pid, logger_pid;
static int proc_status = -1, runtime_done, failed_status = -1;
static struct timespec exited_at, drain_start;

// Children reaped before we knew the process pid (runc exec -d: a fast process may exit
// before runc does, and its status reaches us only after runc exits).
static struct { pid_t pid; int status; struct timespec at; } early[64];
static int n_early;

static void logf_(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "berth-monitor[%d]: ", getpid());
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
}

static int status_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 255;
}

static void path_in_state(char *out_, size_t n, const char *name) { snprintf(out_, n, "%s/%s", state_dir, name); }

static void ctl_send(const char *fmt, ...) {
  if (ctl_conn < 0) return;
  char line[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  // Small lines into an idle socket never block; if the shim is gone, drop it.
  if (send(ctl_conn, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT) != n) {
    close(ctl_conn);
    ctl_conn = -1;
  }
}

static void send_state(void) {
  if (failed_status >= 0) ctl_send("failed %d\n", failed_status);
  else if (proc_pid > 0) ctl_send("pid %d\n", proc_pid);
  if (proc_status >= 0 && out.src < 0 && err.src < 0) {
    ctl_send("exited %d %lld %ld\n", status_code(proc_status), (long long)exited_at.tv_sec, exited_at.tv_nsec);
  }
}

static int listen_unix(const char *path) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(path) >= sizeof sa.sun_path) {
    logf_("socket path too long: %s", path);
    return -1;
  }
  strcpy(sa.sun_path, path);
  unlink(path);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) return -1;
  mode_t old = umask(0077);
  int rc = bind(fd, (struct sockaddr *)&sa, sizeof sa);
  umask(old);
  if (rc < 0 || listen(fd, 4) < 0) {
    logf_("listen %s: %s", path, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

// Opens an output destination. A fifo is opened read-write, as containerd's runc shim
// keeps both ends: writes never fail with EPIPE while the reader (containerd, ctr) is
// away, and the data waits for it to come back.
static int open_dst(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISFIFO(st.st_mode)) return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

static void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Spawns the binary logger: fd 3 stdout, fd 4 stderr, fd 5 closed by it when ready.
static int start_logger(int *out_w, int *err_w) {
  int po[2], pe[2], pw[2];
  if (pipe2(po, O_CLOEXEC) < 0 || pipe2(pe, O_CLOEXEC) < 0 || pipe2(pw, O_CLOEXEC) < 0) return -1;
  logger_pid = fork();
  if (logger_pid < 0) return -1;
  if (logger_pid == 0) {
    int nul = open("/dev/null", O_RDWR);
    // Move the fds well above 5 first, so the dup2s below cannot clobber each other;
    // close-on-exec, or the logger would hold a second write end of the ready pipe and
    // the wait for its readiness could only end by timeout.
    int a = fcntl(po[0], F_DUPFD_CLOEXEC, 10), b = fcntl(pe[0], F_DUPFD_CLOEXEC, 10),
        c = fcntl(pw[1], F_DUPFD_CLOEXEC, 10);
    dup2(nul, 0);
    dup2(nul, 1);
    dup2(a, 3);
    dup2(b, 4);
    dup2(c, 5);
    char *argv[MAX_ARGS + 2];
    int n = 0;
    argv[n++] = (char *)logger_path;
    for (int i = 0; i < n_logger_args; i++) argv[n++] = logger_args[i];
    argv[n] = NULL;
    setenv("CONTAINER_ID", logger_id, 1);
    setenv("CONTAINER_NAMESPACE", logger_ns, 1);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(logger_path, argv);
    _exit(127);
  }
  close(po[0]);
  close(pe[0]);
  close(pw[1]);
  // containerd waits for the logger to signal readiness by closing fd 5.
  struct pollfd p = {.fd = pw[0], .events = POLLIN};
  poll(&p, 1, 10000);
  close(pw[0]);
  *out_w = po[1];
  *err_w = pe[1];
  return 0;
}

static void oom_watch(pid_t pid) {
  char path[512], line[512], cg[400] = "";
  snprintf(path, sizeof path, "/proc/%d/cgroup", pid);
  FILE *f = fopen(path, "re");
  if (!f) return;
  while (fgets(line, sizeof line, f)) {
    // "N:controllers:/path"; controllers may be a comma list.
    char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
    if (!c2) continue;
    *c2 = 0;
    char *ctrls = c1 + 1, *tok, *save;
    int is_mem = 0;
    for (tok = strtok_r(ctrls, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
      if (strcmp(tok, "memory") == 0) is_mem = 1;
    if (is_mem) {
      snprintf(cg, sizeof cg, "%s", c2 + 1);
      cg[strcspn(cg, "\n")] = 0;
    }
  }
  fclose(f);
  if (!cg[0]) return;
  snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/memory.oom_control", cg);
  int ofd = open(path, O_RDONLY | O_CLOEXEC);
  if (ofd < 0) return;
  int efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  snprintf(path, sizeof path, "/sys/fs/cgroup/memory%s/cgroup.event_control", cg);
  int cfd = open(path, O_WRONLY | O_CLOEXEC);
  if (efd >= 0 && cfd >= 0) {
    snprintf(line, sizeof line, "%d %d", efd, ofd);
    if (write(cfd, line, strlen(line)) > 0) oom_efd = efd;
  }
  if (cfd >= 0) close(cfd);
  if (oom_efd < 0 && efd >= 0) close(efd);
  // ofd must stay open while the registration lives.
}

static void read_pid_file(void) {
  char buf[32] = "";
  int fd = open(pid_file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n > 0) proc_pid = atoi(buf);
}

static void write_exit_file(void) {
  char tmp[4096], fin[4096], line[128];
  path_in_state(tmp, sizeof tmp, "exit.tmp");
  path_in_state(fin, sizeof fin, "exit");
  int n = snprintf(line, sizeof line, "%d %lld %ld\n", status_code(proc_status), (long long)exited_at.tv_sec, exited_at.tv_nsec);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, line, (size_t)n) != n || fsync(fd) < 0) logf_("write %s: %s", tmp, strerror(errno));
  if (fd >= 0) close(fd);
  if (rename(tmp, fin) < 0) logf_("rename %s: %s", fin, strerror(errno));
}

static void on_process_exit(int st, struct timespec at) {
  proc_status = st;
  exited_at = at;
  clock_gettime(CLOCK_MONOTONIC, &drain_start);
  if (stdin_pipe >= 0) close(stdin_pipe), stdin_pipe = -1;
  if (in.src >= 0) close(in.src), in.src = -1;
}

static void reap(void) {
  for (;;) {
    int st;
    pid_t p = waitpid(-1, &st, WNOHANG);
    if (p <= 0) return;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    if (p == runtime_pid) {
      runtime_done = 1;
      if (status_code(st) != 0) {
        failed_status = status_code(st);
        continue;
      }
      read_pid_file();
      if (proc_pid <= 0) {
        logf_("runtime succeeded but wrote no pid to %s", pid_file);
        failed_status = 255;
        continue;
      }
      for (int i = 0; i < n_early; i++)
        if (early[i].pid == proc_pid) on_process_exit(early[i].status, early[i].at);
      if (watch_oom && proc_status < 0) oom_watch(proc_pid);
      send_state();
    } else if (proc_pid > 0 && p == proc_pid) {
      on_process_exit(st, now);
    } else if (p == logger_pid) {
      logger_pid = 0;
    } else if (!runtime_done && n_early < 64) {
      early[n_early].pid = p;
      early[n_early].status = st;
      early[n_early].at = now;
      n_early++;
    }
  }
}

// Copies what is readable from s->src into s->dst; returns 0, or -1 when src hit EOF.
static int pump(struct stream *s) {
  if (s->len == s->off) {
    ssize_t n = read(s->src, s->buf, BUF_SIZE);
    if (n == 0 || (n < 0 && errno == EIO)) return -1;  // EIO: pty with no slave left
    if (n < 0) return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
    s->len = (size_t)n;
    s->off = 0;
    if (s->dst < 0) s->len = 0;  // nowhere to write: discard
  }
  while (s->off < s->len) {
    ssize_t w = write(s->dst, s->buf + s->off, s->len - s->off);
    if (w < 0) {
      if (errno == EAGAIN || errno == EINTR) return 0;
      s->len = s->off = 0;  // destination broken: drop data, keep reading
      return 0;
    }
    s->off += (size_t)w;
  }
  s->len = s->off = 0;
  return 0;
}

static void close_stream(struct stream *s) {
  if (s->src >= 0 && s->src != master) close(s->src);
  s->src = -1;
}

static void close_stdin_now(void) {
  if (in.src >= 0) close(in.src), in.src = -1;
  if (stdin_pipe >= 0) close(stdin_pipe), stdin_pipe = -1;
  in.dst = -1;
  in.len = in.off = 0;
}

// "closestdin": what the client wrote before closing must still reach the process, so
// stdin closes once the fifo holds nothing more (or when the pending bytes are written).
static int stdin_closing;
static void try_close_stdin(void) {
  while (in.src >= 0 && in.dst >= 0) {
    if (in.len > in.off) {
      ssize_t w = write(in.dst, in.buf + in.off, in.len - in.off);
      if (w < 0 && errno == EAGAIN) return;  // the process is not reading yet: wait for POLLOUT
      if (w < 0) break;
      in.off += (size_t)w;
      continue;
    }
    ssize_t n = read(in.src, in.buf, BUF_SIZE);
    if (n <= 0) break;  // EOF, EAGAIN (nothing more written), or an error
    in.len = (size_t)n;
    in.off = 0;
  }
  close_stdin_now();
}

static void handle_ctl_line(char *line) {
  unsigned w, h;
  if (sscanf(line, "resize %u %u", &w, &h) == 2) {
    if (master >= 0) {
      struct winsize ws = {.ws_row = (unsigned short)h, .ws_col = (unsigned short)w};
      ioctl(master, TIOCSWINSZ, &ws);
    }
  } else if (strcmp(line, "closestdin") == 0) {
    stdin_closing = 1;
    try_close_stdin();
  }
}

static char ctl_buf[512];
static size_t ctl_len;

static void read_ctl(void) {
  ssize_t n = read(ctl_conn, ctl_buf + ctl_len, sizeof ctl_buf - 1 - ctl_len);
  if (n <= 0) {
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    close(ctl_conn);
    ctl_conn = -1;
    ctl_len = 0;
    return;
  }
  ctl_len += (size_t)n;
  ctl_buf[ctl_len] = 0;
  char *nl;
  while ((nl = strchr(ctl_buf, '\n'))) {
    *nl = 0;
    handle_ctl_line(ctl_buf);
    size_t used = (size_t)(nl + 1 - ctl_buf);
    memmove(ctl_buf, nl + 1, ctl_len - used + 1);
    ctl_len -= used;
  }
  if (ctl_len == sizeof ctl_buf - 1) ctl_len = 0;  // garbage: forget it
}

static void receive_console(void) {
  int c = accept4(console_listen, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) return;
  char data[256];
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {.iov_base = data, .iov_len = sizeof data};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  if (recvmsg(c, &msg, MSG_CMSG_CLOEXEC) >= 0) {
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
      memcpy(&master, CMSG_DATA(cm), sizeof(int));
      set_nonblock(master);
      out.src = master;
      in.dst = master;
    }
  }
  close(c);
  close(console_listen);
  console_listen = -1;
  unlink(console_path);
}

static long ms_since(struct timespec *t) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (now.tv_sec - t->tv_sec) * 1000 + (now.tv_nsec - t->tv_nsec) / 1000000;
}

static void usage(void) {
  fprintf(stderr, "usage: berth-monitor -s DIR [-p PIDFILE] [-c CONSOLE] [-i IN] [-o OUT] [-e ERR] [-b BIN [-a ARG]... -n ID -N NS] [-O] -- RUNTIME ARGS...\n");
  exit(2);
}

int main(int argc, char **argv) {
  int opt;
  while ((opt = getopt(argc, argv, "+s:p:c:i:o:e:b:a:n:N:O")) != -1) {
    switch (opt) {
      case 's': state_dir = optarg; break;
      case 'p': pid_file = optarg; break;
      case 'c': console_path = optarg; break;
      case 'i': stdin_path = optarg; break;
      case 'o': stdout_path = optarg; break;
      case 'e': stderr_path = optarg; break;
      case 'b': logger_path = optarg; break;
      case 'a': if (n_logger_args < MAX_ARGS) logger_args[n_logger_args++] = optarg; break;
      case 'n': logger_id = optarg; break;
      case 'N': logger_ns = optarg; break;
      case 'O': watch_oom = 1; break;
      default: usage();
    }
  }
  if (!state_dir || optind >= argc) usage();
  runtime_argv = argv + optind;
  static char pidbuf[4096];
  if (!pid_file) {
    path_in_state(pidbuf, sizeof pidbuf, "pid");
    pid_file = pidbuf;
  }

  signal(SIGPIPE, SIG_IGN);
  signal(SIGHUP, SIG_IGN);
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) logf_("PR_SET_CHILD_SUBREAPER: %s", strerror(errno));
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGCHLD);
  sigprocmask(SIG_BLOCK, &mask, NULL);
  sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

  // fd 3, when present, is the shim's end of a socketpair: the first control connection.
  if (fcntl(3, F_GETFD) >= 0) {
    ctl_conn = 3;
    fcntl(3, F_SETFD, FD_CLOEXEC);
    set_nonblock(3);
  }
  char ctl_path[4096];
  path_in_state(ctl_path, sizeof ctl_path, "ctl.sock");
  ctl_listen = listen_unix(ctl_path);

  out.src = err.src = in.src = -1;
  out.dst = err.dst = in.dst = -1;
  if (stdout_path && *stdout_path && (out.dst = open_dst(stdout_path)) < 0) logf_("open %s: %s", stdout_path, strerror(errno));
  if (stderr_path && *stderr_path) {
    if (stdout_path && strcmp(stdout_path, stderr_path) == 0) err.dst = out.dst;
    else if ((err.dst = open_dst(stderr_path)) < 0) logf_("open %s: %s", stderr_path, strerror(errno));
  }
  if (logger_path && start_logger(&out.dst, &err.dst) < 0) logf_("logger %s: %s", logger_path, strerror(errno));
  if (stdin_path && *stdin_path) {
    // Read-only and non-blocking: Linux reports hang-up only after a writer came and
    // went, so the client closing its end reads as EOF, which closes the process's stdin.
    in.src = open(stdin_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (in.src < 0) logf_("open %s: %s", stdin_path, strerror(errno));
  }

  int child_in = -1, child_out = -1, child_err = -1;
  int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (console_path) {
    console_listen = listen_unix(console_path);
    if (console_listen < 0) {
      failed_status = 254;
    }
  } else {
    int p[2];
    if (in.src >= 0 && pipe2(p, O_CLOEXEC) == 0) {
      child_in = p[0];
      stdin_pipe = p[1];
      set_nonblock(stdin_pipe);
      in.dst = stdin_pipe;
    }
    if (out.dst >= 0 && pipe2(p, O_CLOEXEC) == 0) {
      child_out = p[1];
      out.src = p[0];
      set_nonblock(out.src);
    }
    if (err.dst >= 0 && pipe2(p, O_CLOEXEC) == 0) {
      child_err = p[1];
      err.src = p[0];
      set_nonblock(err.src);
    }
  }

  if (failed_status < 0) {
    runtime_pid = fork();
    if (runtime_pid == 0) {
      dup2(child_in >= 0 ? child_in : nul, 0);
      dup2(child_out >= 0 ? child_out : nul, 1);
      dup2(child_err >= 0 ? child_err : nul, 2);
      sigset_t none;
      sigemptyset(&none);
      sigprocmask(SIG_SETMASK, &none, NULL);
      signal(SIGPIPE, SIG_DFL);
      signal(SIGHUP, SIG_DFL);
      execvp(runtime_argv[0], runtime_argv);
      _exit(127);
    }
    if (runtime_pid < 0) failed_status = 253;
  }
  if (child_in >= 0) close(child_in);
  if (child_out >= 0) close(child_out);
  if (child_err >= 0) close(child_err);
  if (in.src >= 0) set_nonblock(in.src);

  for (;;) {
    if (failed_status >= 0) {
      send_state();
      char fpath[4096], line[32];
      path_in_state(fpath, sizeof fpath, "failed");
      int fd = open(fpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
      if (fd >= 0) {
        int n = snprintf(line, sizeof line, "%d\n", failed_status);
        if (write(fd, line, (size_t)n) < 0) logf_("write %s: %s", fpath, strerror(errno));
        close(fd);
      }
      break;
    }
    int exited = proc_status >= 0;
    if (exited && (out.src < 0 && err.src < 0)) break;
    if (exited && ms_since(&drain_start) > DRAIN_MS) {
      // Something in the container (an exec's background child) still holds the
      // output open: the process is gone, so stop waiting for it.
      close_stream(&out);
      close_stream(&err);
      break;
    }

    struct pollfd fds[10];
    int n = 0, i_sig, i_cl = -1, i_cc = -1, i_con = -1, i_out = -1, i_err = -1, i_in = -1, i_oom = -1;
    fds[i_sig = n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    if (ctl_listen >= 0) fds[i_cl = n++] = (struct pollfd){.fd = ctl_listen, .events = POLLIN};
    if (ctl_conn >= 0) fds[i_cc = n++] = (struct pollfd){.fd = ctl_conn, .events = POLLIN};
    if (console_listen >= 0) fds[i_con = n++] = (struct pollfd){.fd = console_listen, .events = POLLIN};
    if (out.src >= 0) fds[i_out = n++] = out.len > out.off ? (struct pollfd){.fd = out.dst, .events = POLLOUT} : (struct pollfd){.fd = out.src, .events = POLLIN};
    if (err.src >= 0) fds[i_err = n++] = err.len > err.off ? (struct pollfd){.fd = err.dst, .events = POLLOUT} : (struct pollfd){.fd = err.src, .events = POLLIN};
    if (in.src >= 0 && in.dst >= 0) fds[i_in = n++] = in.len > in.off ? (struct pollfd){.fd = in.dst, .events = POLLOUT} : (struct pollfd){.fd = in.src, .events = POLLIN};
    if (oom_efd >= 0) fds[i_oom = n++] = (struct pollfd){.fd = oom_efd, .events = POLLIN};

    if (poll(fds, (nfds_t)n, exited ? 100 : -1) < 0) {
      if (errno == EINTR) continue;
      logf_("poll: %s", strerror(errno));
      break;
    }
    if (fds[i_sig].revents) {
      struct signalfd_siginfo si;
      while (read(sfd, &si, sizeof si) > 0) {
      }
      reap();
    }
    if (i_cl >= 0 && fds[i_cl].revents) {
      int c = accept4(ctl_listen, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (c >= 0) {
        if (ctl_conn >= 0) close(ctl_conn);  // the newest shim wins
        ctl_conn = c;
        ctl_len = 0;
        send_state();
      }
    }
    if (i_cc >= 0 && ctl_conn >= 0 && fds[i_cc].revents) read_ctl();
    if (i_con >= 0 && fds[i_con].revents) receive_console();
    if (i_out >= 0 && fds[i_out].revents && pump(&out) < 0) close_stream(&out);
    if (i_err >= 0 && fds[i_err].revents && pump(&err) < 0) close_stream(&err);
    if (i_in >= 0 && in.src >= 0 && fds[i_in].revents) {
      if (pump(&in) < 0) close_stdin_now();
      else if (stdin_closing) try_close_stdin();
    }
    if (i_oom >= 0 && fds[i_oom].revents) {
      uint64_t v;
      if (read(oom_efd, &v, sizeof v) > 0 && proc_status < 0 && kill(proc_pid, 0) == 0) {
        char fpath[4096];
        path_in_state(fpath, sizeof fpath, "oom");
        close(open(fpath, O_WRONLY | O_CREAT | O_CLOEXEC, 0600));
        ctl_send("oom\n");
      }
    }
  }

  if (proc_status >= 0) {
    // Close our ends of the destinations first, so readers see EOF before the exit.
    if (out.dst >= 0) close(out.dst);
    if (err.dst >= 0 && err.dst != out.dst) close(err.dst);
    if (master >= 0) close(master);
    write_exit_file();
    send_state();
  }
  // Let a binary logger flush what it got (it sees EOF now), but not forever.
  for (int i = 0; logger_pid > 0 && i < 50; i++) {
    if (waitpid(logger_pid, NULL, WNOHANG) == logger_pid) break;
    usleep(100000);
  }
  if (ctl_listen >= 0) unlink(ctl_path);
  if (console_path) unlink(console_path);
  return proc_status >= 0 ? 0 : 1;
}
