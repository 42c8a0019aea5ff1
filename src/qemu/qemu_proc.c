#include "qemu/qemu_proc.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/util.h"

/* Runs in the shim, after fork: only plain syscalls, then _exit. */
static void write_exit_record(const char *dir, pid_t qemu, int status, bool fenced)
{
    char body[256];
    int n;
    const char *f = fenced ? ", \"fenced\": true" : "";
    if (WIFEXITED(status))
        n = snprintf(body, sizeof body, "{\"pid\": %d, \"exit_status\": %d, \"ts_ms\": %llu%s}\n",
                     (int)qemu, WEXITSTATUS(status), (unsigned long long)wall_ms(), f);
    else
        n = snprintf(body, sizeof body, "{\"pid\": %d, \"signal\": %d, \"ts_ms\": %llu%s}\n",
                     (int)qemu, WTERMSIG(status), (unsigned long long)wall_ms(), f);
    char path[4096];
    snprintf(path, sizeof path, "%s/qemu.exit", dir);
    write_file_atomic(path, body, (size_t)n, 0600);
}

static void exec_qemu(const char *dir, char *const argv[])
{
    char path[4096];
    snprintf(path, sizeof path, "%s/qemu.log", dir);
    int log = open(path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    int null = open("/dev/null", O_RDONLY);
    if (log < 0 || null < 0)
        _exit(126);
    dup2(null, 0);
    dup2(log, 1);
    dup2(log, 2);
    closefrom(3);
    execvp(argv[0], argv);
    dprintf(2, "vmove: cannot execute %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* ---- the fence (clusters) ----
 * DIR/fence.deadline holds a CLOCK_MONOTONIC time in nanoseconds (0: none).
 * vmoved rewrites it on every renewal of the host's cluster lease and pokes
 * DIR/fence.fifo; the shim re-reads it and SIGKILLs QEMU when the time
 * passes.  So an HA guest dies before its host's lease can expire even when
 * vmoved is dead or frozen: nobody may restart it elsewhere before that. */

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t read_deadline(const char *dir)
{
    char path[4096], buf[32] = "";
    snprintf(path, sizeof path, "%s/fence.deadline", dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    return strtoull(buf, NULL, 10);
}

static void fence_arm(int tfd, uint64_t ns)
{
    struct itimerspec its = {0};
    if (ns) {
        its.it_value.tv_sec = (time_t)(ns / 1000000000u);
        its.it_value.tv_nsec = (long)(ns % 1000000000u);
    }
    timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
}

/* Wait for QEMU, killing it at the fence deadline.  Returns its status. */
static int wait_fenced(const char *dir, pid_t qemu, bool *fenced)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/fence.fifo", dir);
    int fifo = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC);   /* RDWR: never EOF */
    int pfd = (int)syscall(SYS_pidfd_open, qemu, 0);
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    int status;
    if (fifo >= 0 && pfd >= 0 && tfd >= 0) {
        fence_arm(tfd, read_deadline(dir));
        for (;;) {
            struct pollfd p[3] = {{pfd, POLLIN, 0}, {fifo, POLLIN, 0}, {tfd, POLLIN, 0}};
            if (poll(p, 3, -1) < 0)
                continue;
            if (p[0].revents)
                break;
            if (p[1].revents) {
                char drain[64];
                while (read(fifo, drain, sizeof drain) > 0)
                    ;
                fence_arm(tfd, read_deadline(dir));
            }
            uint64_t ticks, due;
            if (p[2].revents && read(tfd, &ticks, sizeof ticks) == sizeof ticks) {
                /* A renewal may have moved the deadline since the timer was set. */
                due = read_deadline(dir);
                if (due && mono_ns() >= due) {
                    kill(qemu, SIGKILL);
                    *fenced = true;
                    break;
                }
                fence_arm(tfd, due);
            }
        }
    }
    while (waitpid(qemu, &status, 0) < 0)
        if (errno != EINTR)
            _exit(124);
    return status;
}

int qemu_proc_fence_set(const char *dir, uint64_t deadline_ns)
{
    char path[4096], tmp[4100], text[32];
    snprintf(path, sizeof path, "%s/fence.deadline", dir);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int n = snprintf(text, sizeof text, "%llu\n", (unsigned long long)deadline_ns);
    /* No fsync: a deadline means nothing after a reboot, and this runs on
     * every lease renewal. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    bool ok = write(fd, text, (size_t)n) == n;
    close(fd);
    if (!ok || rename(tmp, path) < 0)
        return -1;
    snprintf(path, sizeof path, "%s/fence.fifo", dir);
    fd = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd >= 0) {               /* no reader (no shim): nothing to wake */
        ssize_t w = write(fd, "!", 1);
        (void)w;
        close(fd);
    }
    return 0;
}

static void run_shim(const char *dir, char *const argv[], int report_fd)
{
    setsid();
    /* The shim must not die with vmoved's signals; QEMU gets defaults. */
    signal(SIGTERM, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGHUP, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);

    pid_t qemu = fork();
    if (qemu < 0)
        _exit(125);
    if (qemu == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        close(report_fd);
        exec_qemu(dir, argv);
    }
    char pidtext[32];
    int n = snprintf(pidtext, sizeof pidtext, "%d\n", (int)qemu);
    char path[4096];
    snprintf(path, sizeof path, "%s/qemu.pid", dir);
    write_file_atomic(path, pidtext, (size_t)n, 0600);
    ssize_t w = write(report_fd, &qemu, sizeof qemu);
    (void)w;
    close(report_fd);
    /* Nothing of vmoved's is needed any more: drop inherited descriptors
     * (listening sockets, the journal) so they close when vmoved dies. */
    closefrom(0);
    bool fenced = false;
    int status = wait_fenced(dir, qemu, &fenced);
    write_exit_record(dir, qemu, status, fenced);
    _exit(0);
}

int qemu_proc_start(const char *dir, char *const argv[], pid_t *shim_pid, pid_t *qemu_pid,
                    char *err, size_t errlen)
{
    char *exitp = xasprintf("%s/qemu.exit", dir);
    unlink(exitp);
    free(exitp);
    char *fifo = xasprintf("%s/fence.fifo", dir);
    if (mkfifo(fifo, 0600) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "mkfifo %s: %s", fifo, strerror(errno));
        free(fifo);
        return -1;
    }
    free(fifo);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        return -1;
    }
    pid_t shim = fork();
    if (shim < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(p[0]);
        close(p[1]);
        return -1;
    }
    if (shim == 0) {
        close(p[0]);
        run_shim(dir, argv, p[1]);
    }
    close(p[1]);
    pid_t q = -1;
    ssize_t r;
    do
        r = read(p[0], &q, sizeof q);
    while (r < 0 && errno == EINTR);
    close(p[0]);
    if (r != sizeof q || q <= 0) {
        snprintf(err, errlen, "the QEMU supervisor failed to start QEMU");
        waitpid(shim, NULL, 0);
        return -1;
    }
    *shim_pid = shim;
    *qemu_pid = q;
    return 0;
}

bool qemu_proc_is_ours(pid_t pid, const char *uuid)
{
    if (pid <= 0 || kill(pid, 0) < 0)
        return false;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    char *cmd;
    size_t len;
    if (read_file(path, &cmd, &len) < 0)
        return false;
    /* The cmdline is NUL-separated: search it piecewise. */
    bool found = false;
    for (size_t off = 0; off < len && !found; off += strlen(cmd + off) + 1)
        found = strstr(cmd + off, uuid) != NULL;
    free(cmd);
    /* A zombie has an empty cmdline: not alive for our purposes. */
    return found;
}

json_t *qemu_proc_exit_record(const char *dir)
{
    char *path = xasprintf("%s/qemu.exit", dir);
    json_t *j = json_load_file(path, 0, NULL);
    free(path);
    return j;
}

char *qemu_proc_describe_exit(json_t *rec)
{
    if (!rec)
        return xstrdup("exit status unknown");
    json_t *sig = json_object_get(rec, "signal");
    if (sig)
        return xasprintf("killed by signal %d (%s)", (int)json_integer_value(sig),
                         strsignal((int)json_integer_value(sig)));
    return xasprintf("exit status %d",
                     (int)json_integer_value(json_object_get(rec, "exit_status")));
}

char *qemu_proc_log_tail(const char *dir, const char *file, size_t bytes)
{
    char *path = xasprintf("%s/%s", dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    free(path);
    if (fd < 0)
        return xstrdup("");
    struct stat st;
    fstat(fd, &st);
    off_t start = st.st_size > (off_t)bytes ? st.st_size - (off_t)bytes : 0;
    char *buf = xmalloc(bytes + 1);
    ssize_t n = pread(fd, buf, bytes, start);
    close(fd);
    if (n < 0)
        n = 0;
    buf[n] = 0;
    /* Start at a line boundary so the tail reads cleanly. */
    char *nl = start > 0 ? strchr(buf, '\n') : NULL;
    char *out = xstrdup(nl ? nl + 1 : buf);
    free(buf);
    return out;
}
