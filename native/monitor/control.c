// berth-monitor's control socket (state lines to the shim, resize and closestdin from it) and
// the console socket on which the runtime hands over the pty master.
#include "monitor.h"

void ctl_send(const char *fmt, ...) {
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

void send_state(void) {
  if (failed_status >= 0) ctl_send("failed %d\n", failed_status);
  else if (proc_pid > 0) ctl_send("pid %d\n", proc_pid);
  if (proc_status >= 0 && out_stream.src < 0 && err_stream.src < 0) {
    ctl_send("exited %d %lld %ld\n", status_code(proc_status), (long long)exited_at.tv_sec, exited_at.tv_nsec);
  }
}

int listen_unix(const char *path) {
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

void handle_ctl_line(char *line) {
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

void read_ctl(void) {
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

void receive_console(void) {
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
      out_stream.src = master;
      in_stream.dst = master;
    }
  }
  close(c);
  close(console_listen);
  console_listen = -1;
  unlink(console_path);
}

// A (re)connecting shim: the newest one wins, and is told the state at once.
void ctl_adopt(int c) {
  if (ctl_conn >= 0) close(ctl_conn);
  ctl_conn = c;
  ctl_len = 0;
  send_state();
}
