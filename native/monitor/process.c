// berth-monitor: exit statuses, the pid and exit files, reaping the process and orphans, OOM.
#include "monitor.h"

// Children reaped before we knew the process pid (runc exec -d: a fast process may exit
// before runc does, and its status reaches us only after runc exits).
static struct { pid_t pid; int status; struct timespec at; } early[64];
static int n_early;

int status_code(int st) {
  if (WIFEXITED(st)) return WEXITSTATUS(st);
  if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
  return 255;
}

void oom_watch(pid_t pid) {
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

void read_pid_file(void) {
  char buf[32] = "";
  int fd = open(pid_file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n > 0) proc_pid = atoi(buf);
}

// Atomic (a temp file renamed over it) but not fsynced: the file is for a shim that restarts
// while the machine stays up (the page cache has it); after a power loss or kernel crash no
// process it describes is left. An fsync here held every exit report (the exec's Wait, the
// container's TaskExit) for a disk flush, milliseconds on a busy disk.
void write_exit_file(void) {
  char tmp[4096], fin[4096], line[128];
  path_in_state(tmp, sizeof tmp, "exit.tmp");
  path_in_state(fin, sizeof fin, "exit");
  int n = snprintf(line, sizeof line, "%d %lld %ld\n", status_code(proc_status), (long long)exited_at.tv_sec, exited_at.tv_nsec);
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0 || write(fd, line, (size_t)n) != n) logf_("write %s: %s", tmp, strerror(errno));
  if (fd >= 0) close(fd);
  if (rename(tmp, fin) < 0) logf_("rename %s: %s", fin, strerror(errno));
}

void on_process_exit(int st, struct timespec at) {
  proc_status = st;
  exited_at = at;
  clock_gettime(CLOCK_MONOTONIC, &drain_start);
  if (stdin_pipe >= 0) close(stdin_pipe), stdin_pipe = -1;
  if (in_stream.src >= 0) close(in_stream.src), in_stream.src = -1;
}

void reap(void) {
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
