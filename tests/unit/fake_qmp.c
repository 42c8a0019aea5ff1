/* The fake QMP server shared by the unit tests: see fake_qmp.h. */
#include "fake_qmp.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/util.h"

void srv_fail(struct fake *f, const char *fmt, ...)
{
    if (f->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(f->err, sizeof f->err, fmt, ap);
    va_end(ap);
}

static void srv_take_fds(struct fake *f, struct msghdr *mh)
{
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(mh); cm; cm = CMSG_NXTHDR(mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            if (f->nfds < (int)ARRAY_LEN(f->fds))
                f->fds[f->nfds++] = fd;
            else
                close(fd);
        }
    }
}

ssize_t srv_fill(struct fake *f)
{
    if (f->rcap - f->rlen < 65536) {
        f->rcap = f->rcap * 2 + 65536;
        f->rbuf = realloc(f->rbuf, f->rcap);
        if (!f->rbuf)
            abort();
    }
    struct pollfd p = {.fd = f->fd, .events = POLLIN};
    if (poll(&p, 1, WAIT_MS) <= 0) {
        srv_fail(f, "server: timed out waiting for the client");
        return -1;
    }
    struct iovec iov = {f->rbuf + f->rlen, f->rcap - f->rlen};
    union {
        char buf[CMSG_SPACE(4 * sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf,
                        .msg_controllen = sizeof ctl.buf};
    ssize_t n;
    do
        n = recvmsg(f->fd, &mh, MSG_CMSG_CLOEXEC);
    while (n < 0 && errno == EINTR);
    if (n > 0) {
        f->rlen += (size_t)n;
        srv_take_fds(f, &mh);
    }
    return n;
}

/* Next message from the client, or NULL on EOF/error. */
json_t *srv_recv(struct fake *f)
{
    for (;;) {
        char *nl = f->rlen > f->scanned ? memchr(f->rbuf + f->scanned, '\n', f->rlen - f->scanned)
                                        : NULL;
        if (nl) {
            size_t n = (size_t)(nl - f->rbuf) + 1;
            json_error_t je;
            json_t *j = json_loadb(f->rbuf, n, 0, &je);
            if (!j)
                srv_fail(f, "server: client sent bad JSON: %s", je.text);
            memmove(f->rbuf, f->rbuf + n, f->rlen - n);
            f->rlen -= n;
            f->scanned = 0;
            return j;
        }
        f->scanned = f->rlen;
        if (srv_fill(f) <= 0)
            return NULL;
    }
}

/* Receives a command and checks its name and that it carries an id. */
json_t *srv_expect(struct fake *f, const char *execute)
{
    json_t *j = srv_recv(f);
    const char *got = json_string_value(json_object_get(j, "execute"));
    if (!got || strcmp(got, execute) != 0 || !json_object_get(j, "id")) {
        srv_fail(f, "server: expected '%s', got '%s'", execute, got ? got : "(nothing)");
        json_decref(j);
        return NULL;
    }
    return j;
}

void srv_write(struct fake *f, const char *s, size_t len)
{
    while (len) {
        ssize_t n = send(f->fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            srv_fail(f, "server: write failed: %s", strerror(errno));
            return;
        }
        s += n;
        len -= (size_t)n;
    }
}

void srv_send(struct fake *f, const char *s) { srv_write(f, s, strlen(s)); }

/* One byte per write with a pause, so the client sees many partial reads. */
void srv_send_slowly(struct fake *f, const char *s)
{
    for (; *s; s++) {
        srv_write(f, s, 1);
        usleep(100);
    }
}

/* Replies to cmd: {"return": <ret_json>, "id": <cmd's id>}. */
char *srv_reply_text(json_t *cmd, json_t *ret)
{
    json_t *r = json_pack("{s:o, s:O}", "return", ret, "id", json_object_get(cmd, "id"));
    char *body = json_dumps(r, JSON_COMPACT);
    char *s = xasprintf("%s\r\n", body);
    free(body);
    json_decref(r);
    return s;
}

void srv_reply(struct fake *f, json_t *cmd, const char *ret_json)
{
    if (!cmd)
        return;
    char *s = srv_reply_text(cmd, json_loads(ret_json, JSON_DECODE_ANY, NULL));
    srv_send(f, s);
    free(s);
}

const char *srv_str_or_empty(const json_t *j)
{
    const char *s = json_string_value(j);
    return s ? s : "";
}

void srv_handshake(struct fake *f)
{
    srv_send(f, GREETING);
    json_t *caps = srv_expect(f, "qmp_capabilities");
    srv_reply(f, caps, "{}");
    json_decref(caps);
}

/* Waits until the client closes the connection, failing on any message. */
void srv_wait_eof(struct fake *f)
{
    json_t *j = srv_recv(f);
    if (j)
        srv_fail(f, "server: unexpected message while waiting for EOF");
    json_decref(j);
}

int srv_listen_unix(const char *path, bool do_listen)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    unlink(path);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof sa) < 0 || (do_listen && listen(s, 4) < 0))
        abort();
    return s;
}

void *srv_main(void *arg)
{
    struct fake *f = arg;
    f->script(f);
    return NULL;
}

void srv_reply_error(struct fake *f, json_t *cmd, const char *cls, const char *desc)
{
    if (!cmd)
        return;
    json_t *r = json_pack("{s:{s:s, s:s}, s:O}", "error", "class", cls, "desc", desc, "id",
                          json_object_get(cmd, "id"));
    char *body = json_dumps(r, JSON_COMPACT);
    char *s = xasprintf("%s\r\n", body);
    srv_send(f, s);
    free(s);
    free(body);
    json_decref(r);
}

int srv_start_pair(struct fake *f, script_fn script)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    f->fd = sv[1];
    f->script = script;
    if (pthread_create(&f->th, NULL, srv_main, f) != 0) {
        close(sv[0]);
        close(sv[1]);
        f->fd = -1;
        return -1;
    }
    f->running = true;
    return sv[0];
}

void srv_join(struct fake *f)
{
    if (f->running)
        pthread_join(f->th, NULL);
    f->running = false;
}

void srv_cleanup(struct fake *f)
{
    srv_join(f);
    if (f->fd >= 0)
        close(f->fd);
    for (int i = 0; i < f->nfds; i++)
        close(f->fds[i]);
    free(f->rbuf);
    *f = (struct fake){.fd = -1};
}

/* ---- a real QEMU ---------------------------------------------------------- */

bool srv_find_in_path(const char *prog)
{
    const char *path = getenv("PATH");
    char *copy = xstrdup(path ? path : "/usr/bin:/bin");
    bool found = false;
    for (char *save, *dir = strtok_r(copy, ":", &save); dir && !found;
         dir = strtok_r(NULL, ":", &save)) {
        char *full = xasprintf("%s/%s", dir, prog);
        found = access(full, X_OK) == 0;
        free(full);
    }
    free(copy);
    return found;
}

pid_t srv_spawn_qemu(const char *sock)
{
    char *qmp_arg = xasprintf("unix:%s,server=on,wait=off", sock);
    pid_t pid = fork();
    if (pid == 0) {
        int dn = open("/dev/null", O_RDWR);
        dup2(dn, 0);
        dup2(dn, 1);
        dup2(dn, 2);
        execlp("qemu-system-x86_64", "qemu-system-x86_64", "-accel", "tcg", "-machine", "none",
               "-nodefaults", "-display", "none", "-qmp", qmp_arg, (char *)NULL);
        _exit(127);
    }
    free(qmp_arg);
    return pid;
}
