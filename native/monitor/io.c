// berth-monitor: the process's stdio: destinations, the binary logger, copying, closing stdin.
#include "monitor.h"

// Opens an output destination. A fifo is opened read-write, as containerd's runc shim
// keeps both ends: writes never fail with EPIPE while the reader (containerd, ctr) is
// away, and the data waits for it to come back.
int open_dst(const char *path) {
  struct stat st;
  if (stat(path, &st) == 0 && S_ISFIFO(st.st_mode)) return open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
}

void set_nonblock(int fd) { fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); }

// Spawns the binary logger: fd 3 stdout, fd 4 stderr, fd 5 closed by it when ready.
int start_logger(int *out_w, int *err_w) {
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

// Copies what is readable from s->src into s->dst; returns 0, or -1 when src hit EOF.
int pump(struct stream *s) {
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

void close_stream(struct stream *s) {
  if (s->src >= 0 && s->src != master) close(s->src);
  s->src = -1;
}

void close_stdin_now(void) {
  if (in_stream.src >= 0) close(in_stream.src), in_stream.src = -1;
  if (stdin_pipe >= 0) close(stdin_pipe), stdin_pipe = -1;
  in_stream.dst = -1;
  in_stream.len = in_stream.off = 0;
}

// "closestdin": what the client wrote before closing must still reach the process, so
// stdin closes once the fifo holds nothing more (or when the pending bytes are written).
int stdin_closing;
void try_close_stdin(void) {
  while (in_stream.src >= 0 && in_stream.dst >= 0) {
    if (in_stream.len > in_stream.off) {
      ssize_t w = write(in_stream.dst, in_stream.buf + in_stream.off, in_stream.len - in_stream.off);
      if (w < 0 && errno == EAGAIN) return;  // the process is not reading yet: wait for POLLOUT
      if (w < 0) break;
      in_stream.off += (size_t)w;
      continue;
    }
    ssize_t n = read(in_stream.src, in_stream.buf, BUF_SIZE);
    if (n <= 0) break;  // EOF, EAGAIN (nothing more written), or an error
    in_stream.len = (size_t)n;
    in_stream.off = 0;
  }
  close_stdin_now();
}
