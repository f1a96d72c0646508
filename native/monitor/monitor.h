// berth-monitor's shared declarations: the state of the one process it watches (globals: the
// monitor is a single-threaded poll loop, see monitor.c) and the functions of its parts.
#ifndef BERTH_MONITOR_H
#define BERTH_MONITOR_H

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

// The options (monitor.c parses them).
extern const char *state_dir, *pid_file, *console_path, *stdin_path, *stdout_path, *stderr_path;
extern const char *logger_path, *logger_id, *logger_ns;
extern char *logger_args[MAX_ARGS];
extern int n_logger_args, watch_oom;
extern char **runtime_argv;

// The process and its descriptors (defined in monitor.c).
extern int ctl_listen, ctl_conn, console_listen, sfd, oom_efd;
extern int stdin_pipe;  // write end towards the process (pipe mode)
extern int master;      // pty master (terminal mode)
extern struct stream out_stream, err_stream, in_stream;
extern pid_t runtime_pid, proc_pid, logger_pid;
extern int proc_status, runtime_done, failed_status;
extern struct timespec exited_at, drain_start;

// util.c
void logf_(const char *fmt, ...);
void path_in_state(char *out_, size_t n, const char *name);
long ms_since(struct timespec *t);

// control.c: the control socket to the shim, and the console socket.
void ctl_send(const char *fmt, ...);
void send_state(void);
int listen_unix(const char *path);
void read_ctl(void);
void ctl_adopt(int c);
void receive_console(void);

// io.c: the process's stdio and the binary logger.
extern int stdin_closing;
int open_dst(const char *path);
void set_nonblock(int fd);
int start_logger(int *out_w, int *err_w);
int pump(struct stream *s);
void close_stream(struct stream *s);
void close_stdin_now(void);
void try_close_stdin(void);

// process.c: exit statuses, the pid and exit files, reaping, OOM.
int status_code(int st);
void oom_watch(pid_t pid);
void read_pid_file(void);
void write_exit_file(void);
void reap(void);

#endif
