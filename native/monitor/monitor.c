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
//
// The parts: control.c (sockets to the shim), io.c (stdio), process.c (reaping, exit file,
// OOM), util.c; monitor.h declares the shared state, defined here.

#include "monitor.h"

const char *state_dir, *pid_file, *console_path, *stdin_path, *stdout_path, *stderr_path;
const char *logger_path, *logger_id = "", *logger_ns = "";
char *logger_args[MAX_ARGS];
int n_logger_args, watch_oom;
char **runtime_argv;

int ctl_listen = -1, ctl_conn = -1, console_listen = -1, sfd = -1, oom_efd = -1;
int stdin_pipe = -1;  // write end towards the process (pipe mode)
int master = -1;      // pty master (terminal mode)
struct stream out_stream, err_stream, in_stream;
pid_t runtime_pid, proc_pid, logger_pid;
int proc_status = -1, runtime_done, failed_status = -1;
struct timespec exited_at, drain_start;

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

  out_stream.src = err_stream.src = in_stream.src = -1;
  out_stream.dst = err_stream.dst = in_stream.dst = -1;
  if (stdout_path && *stdout_path && (out_stream.dst = open_dst(stdout_path)) < 0) logf_("open %s: %s", stdout_path, strerror(errno));
  if (stderr_path && *stderr_path) {
    if (stdout_path && strcmp(stdout_path, stderr_path) == 0) err_stream.dst = out_stream.dst;
    else if ((err_stream.dst = open_dst(stderr_path)) < 0) logf_("open %s: %s", stderr_path, strerror(errno));
  }
  if (logger_path && start_logger(&out_stream.dst, &err_stream.dst) < 0) logf_("logger %s: %s", logger_path, strerror(errno));
  if (stdin_path && *stdin_path) {
    // Read-only and non-blocking: Linux reports hang-up only after a writer came and
    // went, so the client closing its end reads as EOF, which closes the process's stdin.
    in_stream.src = open(stdin_path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (in_stream.src < 0) logf_("open %s: %s", stdin_path, strerror(errno));
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
    if (in_stream.src >= 0 && pipe2(p, O_CLOEXEC) == 0) {
      child_in = p[0];
      stdin_pipe = p[1];
      set_nonblock(stdin_pipe);
      in_stream.dst = stdin_pipe;
    }
    if (out_stream.dst >= 0 && pipe2(p, O_CLOEXEC) == 0) {
      child_out = p[1];
      out_stream.src = p[0];
      set_nonblock(out_stream.src);
    }
    if (err_stream.dst >= 0 && pipe2(p, O_CLOEXEC) == 0) {
      child_err = p[1];
      err_stream.src = p[0];
      set_nonblock(err_stream.src);
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
  if (in_stream.src >= 0) set_nonblock(in_stream.src);

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
    if (exited && (out_stream.src < 0 && err_stream.src < 0)) break;
    if (exited && ms_since(&drain_start) > DRAIN_MS) {
      // Something in the container (an exec's background child) still holds the
      // output open: the process is gone, so stop waiting for it.
      close_stream(&out_stream);
      close_stream(&err_stream);
      break;
    }

    struct pollfd fds[10];
    int n = 0, i_sig, i_cl = -1, i_cc = -1, i_con = -1, i_out = -1, i_err = -1, i_in = -1, i_oom = -1;
    fds[i_sig = n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    if (ctl_listen >= 0) fds[i_cl = n++] = (struct pollfd){.fd = ctl_listen, .events = POLLIN};
    if (ctl_conn >= 0) fds[i_cc = n++] = (struct pollfd){.fd = ctl_conn, .events = POLLIN};
    if (console_listen >= 0) fds[i_con = n++] = (struct pollfd){.fd = console_listen, .events = POLLIN};
    if (out_stream.src >= 0) fds[i_out = n++] = out_stream.len > out_stream.off ? (struct pollfd){.fd = out_stream.dst, .events = POLLOUT} : (struct pollfd){.fd = out_stream.src, .events = POLLIN};
    if (err_stream.src >= 0) fds[i_err = n++] = err_stream.len > err_stream.off ? (struct pollfd){.fd = err_stream.dst, .events = POLLOUT} : (struct pollfd){.fd = err_stream.src, .events = POLLIN};
    if (in_stream.src >= 0 && in_stream.dst >= 0) fds[i_in = n++] = in_stream.len > in_stream.off ? (struct pollfd){.fd = in_stream.dst, .events = POLLOUT} : (struct pollfd){.fd = in_stream.src, .events = POLLIN};
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
      if (c >= 0) ctl_adopt(c);
    }
    if (i_cc >= 0 && ctl_conn >= 0 && fds[i_cc].revents) read_ctl();
    if (i_con >= 0 && fds[i_con].revents) receive_console();
    if (i_out >= 0 && fds[i_out].revents && pump(&out_stream) < 0) close_stream(&out_stream);
    if (i_err >= 0 && fds[i_err].revents && pump(&err_stream) < 0) close_stream(&err_stream);
    if (i_in >= 0 && in_stream.src >= 0 && fds[i_in].revents) {
      if (pump(&in_stream) < 0) close_stdin_now();
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
    if (out_stream.dst >= 0) close(out_stream.dst);
    if (err_stream.dst >= 0 && err_stream.dst != out_stream.dst) close(err_stream.dst);
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
