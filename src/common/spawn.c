#include "common/spawn.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <event2/event.h>

#include "common/util.h"

extern char **environ;

static void append(char **buf, size_t *len, const char *data, size_t n)
{
    char *nb = realloc(*buf, *len + n + 1);
    if (!nb)
        abort();
    memcpy(nb + *len, data, n);
    *len += n;
    nb[*len] = 0;
    *buf = nb;
}

/* argv in a child with stdin stdin_fd (-1: /dev/null) and stdout and
 * stderr into pipefd[1] (closed here); posix_spawnp's result (0 or an
 * errno). */
static int spawn_piped(char *const argv[], int stdin_fd, int pipefd[2], pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    if (stdin_fd >= 0)
        posix_spawn_file_actions_adddup2(&fa, stdin_fd, 0);
    else
        posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], 2);
    int rc = posix_spawnp(pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(pipefd[1]);
    return rc;
}

int run_capture(char *const argv[], int timeout_ms, char **out)
{
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid;
    int rc = spawn_piped(argv, -1, pipefd, &pid);
    char *buf = xstrdup("");
    size_t len = 0;
    if (rc != 0) {
        close(pipefd[0]);
        free(buf);
        if (out)
            *out = xasprintf("cannot run %s: %s", argv[0], strerror(rc));
        return -1;
    }
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    bool timed_out = false;
    for (;;) {
        int64_t left = (int64_t)(deadline - now_ms());
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            continue;
        char chunk[4096];
        ssize_t n = read(pipefd[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        append(&buf, &len, chunk, (size_t)n);
    }
    close(pipefd[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out) {
        free(buf);
        if (out)
            *out = xasprintf("%s timed out after %d ms", argv[0], timeout_ms);
        return -1;
    }
    if (out)
        *out = buf;
    else
        free(buf);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

/* ---- asynchronous ------------------------------------------------------ */

struct spawn_async {
    struct spawn_async *next;
    pid_t pid;                      /* -1: it never started (start_err says why) */
    int fd;
    struct event *rd, *timer, *poll;
    char *buf;
    size_t len;
    bool eof, exited;
    int status;
    int timeout_ms;
    char *prog;
    char *start_err;
    spawn_done_fn done;
    void *arg;
};

/* Children are per process, and so is this list. */
static struct spawn_async *pending;
static bool stopping;

static void unlink_pending(struct spawn_async *s)
{
    for (struct spawn_async **pp = &pending; *pp; pp = &(*pp)->next)
        if (*pp == s) {
            *pp = s->next;
            return;
        }
}

static void async_free(struct spawn_async *s)
{
    unlink_pending(s);
    if (s->rd)
        event_free(s->rd);
    event_free(s->timer);
    event_free(s->poll);
    if (s->fd >= 0)
        close(s->fd);
    free(s->buf);
    free(s->prog);
    free(s->start_err);
    free(s);
}

/* SIGKILL, then a short wait for the exit: a cancelled qemu-img must be
 * gone before its caller removes what it was writing (else it could still
 * create a file there).  Bounded: a child stuck in the kernel on a dead
 * filesystem is left to spawn_reap_children. */
static void kill_child(struct spawn_async *s)
{
    if (s->pid <= 0 || s->exited)
        return;
    kill(s->pid, SIGKILL);
    for (int i = 0; i < 200; i++) {
        pid_t r = waitpid(s->pid, NULL, WNOHANG);
        if (r == s->pid || (r < 0 && errno == ECHILD))
            break;
        usleep(1000);
    }
    s->exited = true;
}

static void async_finish(struct spawn_async *s, int rc, const char *out)
{
    spawn_done_fn done = s->done;
    void *arg = s->arg;
    char *copy = xstrdup(out);
    async_free(s);
    done(arg, rc, copy);
    free(copy);
}

static void async_try_end(struct spawn_async *s)
{
    if (s->start_err) {
        async_finish(s, -1, s->start_err);
        return;
    }
    if (!s->exited) {
        int st;
        pid_t r = waitpid(s->pid, &st, WNOHANG);
        if (r == s->pid) {
            s->exited = true;
            s->status = st;
        } else if (r < 0 && errno != EINTR && errno != ECHILD) {
            s->exited = true;
            s->status = 255 << 8;
        }
    }
    if (!s->eof)
        return;
    if (!s->exited) {
        /* Output closed, exit not seen yet: look again shortly. */
        struct timeval tv = {0, 5000};
        evtimer_add(s->poll, &tv);
        return;
    }
    int st = s->status;
    async_finish(s, WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : -1, s->buf);
}

static void on_async_read(evutil_socket_t fd, short what, void *arg)
{
    struct spawn_async *s = arg;
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n > 0) {
        append(&s->buf, &s->len, chunk, (size_t)n);
        return;
    }
    s->eof = true;
    event_del(s->rd);
    async_try_end(s);
}

static void on_async_poll(evutil_socket_t fd, short what, void *arg) { async_try_end(arg); }

static void on_async_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct spawn_async *s = arg;
    kill_child(s);
    char *msg = xasprintf("%s timed out after %d ms", s->prog, s->timeout_ms);
    async_finish(s, -1, msg);
    free(msg);
}

/* The record of a child, in the list from the start (so that
 * spawn_async_stop_all finds every one, started or not). */
static struct spawn_async *async_new(struct event_base *base, char *const argv[], int timeout_ms, spawn_done_fn done,
                                     void *arg)
{
    struct spawn_async *s = xcalloc(1, sizeof *s);
    s->pid = -1;
    s->fd = -1;
    s->buf = xstrdup("");
    s->timeout_ms = timeout_ms;
    s->prog = xstrdup(argv[0]);
    s->done = done;
    s->arg = arg;
    s->timer = evtimer_new(base, on_async_timeout, s);
    s->poll = evtimer_new(base, on_async_poll, s);
    s->next = pending;
    pending = s;
    return s;
}

/* It could not start: done gets why, from the loop, as for any other end. */
static struct spawn_async *async_not_started(struct spawn_async *s, char *why)
{
    s->start_err = why;
    struct timeval zero = {0, 0};
    evtimer_add(s->poll, &zero);
    return s;
}

struct spawn_async *spawn_async_fd(struct event_base *base, char *const argv[], int stdin_fd, int timeout_ms,
                                   spawn_done_fn done, void *arg)
{
    struct spawn_async *s = async_new(base, argv, timeout_ms, done, arg);
    if (stopping)
        return async_not_started(s, xasprintf("%s not run: vmoved is shutting down", argv[0]));
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0)
        return async_not_started(s, xasprintf("cannot run %s: %s", argv[0], strerror(errno)));
    int rc = spawn_piped(argv, stdin_fd, pipefd, &s->pid);
    if (rc != 0) {
        close(pipefd[0]);
        s->pid = -1;
        return async_not_started(s, xasprintf("cannot run %s: %s", argv[0], strerror(rc)));
    }
    fcntl(pipefd[0], F_SETFL, fcntl(pipefd[0], F_GETFL) | O_NONBLOCK);
    s->fd = pipefd[0];
    s->rd = event_new(base, s->fd, EV_READ | EV_PERSIST, on_async_read, s);
    event_add(s->rd, NULL);
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    evtimer_add(s->timer, &tv);
    return s;
}

struct spawn_async *spawn_async_fail(struct event_base *base, const char *why, spawn_done_fn done, void *arg)
{
    char *argv[] = {"(refused)", NULL};
    return async_not_started(async_new(base, argv, 0, done, arg), xstrdup(why));
}

struct spawn_async *spawn_async(struct event_base *base, char *const argv[], int timeout_ms, spawn_done_fn done,
                                void *arg)
{
    return spawn_async_fd(base, argv, -1, timeout_ms, done, arg);
}

void spawn_async_cancel(struct spawn_async *s)
{
    if (!s)
        return;
    kill_child(s);
    async_free(s);
}

void spawn_async_stop_all(void)
{
    stopping = true;
    /* A callback may start another helper: it ends here too, not started. */
    while (pending) {
        struct spawn_async *s = pending;
        kill_child(s);
        char *msg = s->start_err ? xstrdup(s->start_err) : xasprintf("%s stopped: vmoved is shutting down", s->prog);
        async_finish(s, -1, msg);
        free(msg);
    }
}

void spawn_reap_children(void)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0)
        for (struct spawn_async *s = pending; s; s = s->next)
            if (s->pid == pid) {
                s->exited = true;
                s->status = st;
            }
}
