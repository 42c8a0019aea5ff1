/* A fake QMP server for unit tests, shared by test_qmp.c and test_monitor.c.
 *
 * The server runs a per-test script in its own thread with plain blocking
 * I/O on one end of a socketpair (or a unix socket); the client under test
 * runs on a libevent loop in the test thread.  The server thread never calls
 * cmocka asserts (they longjmp out of the wrong thread): it records the first
 * failure in f->err, which the test checks after joining it.  Every receive
 * gives up after WAIT_MS, so a client that sends nothing cannot hang a
 * test. */
#ifndef VMOVE_FAKE_QMP_H
#define VMOVE_FAKE_QMP_H
#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* QEMU 7.2's greeting, with out-of-band execution offered. */
#define GREETING                                                                          \
    "{\"QMP\": {\"version\": {\"qemu\": {\"micro\": 0, \"minor\": 2, \"major\": 7}, "     \
    "\"package\": \"fake\"}, \"capabilities\": [\"oob\"]}}\r\n"
#define WAIT_MS 5000

struct fake;
typedef void (*script_fn)(struct fake *f);

struct fake {
    int fd;
    pthread_t th;
    bool running;
    script_fn script;
    const char *listen_path; /* unix-socket tests: listen here instead */
    void *user;              /* for the script: the test's own data */
    char *rbuf;
    size_t rlen, rcap, scanned;
    int fds[4]; /* received with SCM_RIGHTS */
    int nfds;
    char err[512]; /* first failure, empty if none */
};

/* Records the first failure (later ones are dropped). */
void srv_fail(struct fake *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Reads more bytes (and any passed fds): >0 bytes, 0 EOF, -1 error/timeout. */
ssize_t srv_fill(struct fake *f);
/* Next message from the client, or NULL on EOF/error/timeout. */
json_t *srv_recv(struct fake *f);
/* Receives a command and checks its name and that it carries an id; NULL
 * (and a recorded failure) otherwise. */
json_t *srv_expect(struct fake *f, const char *execute);
void srv_write(struct fake *f, const char *s, size_t len);
void srv_send(struct fake *f, const char *s);
/* One byte per write with a pause, so the client sees many partial reads. */
void srv_send_slowly(struct fake *f, const char *s);
/* {"return": ret, "id": <cmd's id>} plus CRLF; ret is stolen.  Free the text. */
char *srv_reply_text(json_t *cmd, json_t *ret);
/* Answers cmd (NULL: nothing) with ret_json as the "return" value. */
void srv_reply(struct fake *f, json_t *cmd, const char *ret_json);
/* Answers cmd (NULL: nothing) with {"error": {"class": cls, "desc": desc}}. */
void srv_reply_error(struct fake *f, json_t *cmd, const char *cls, const char *desc);
const char *srv_str_or_empty(const json_t *j);
/* Greeting, then the qmp_capabilities exchange. */
void srv_handshake(struct fake *f);
/* Waits until the client closes the connection, failing on any message. */
void srv_wait_eof(struct fake *f);
int srv_listen_unix(const char *path, bool do_listen);
/* pthread entry: runs f->script(f). */
void *srv_main(void *arg);

/* Runs script in a new thread on one end of a new socketpair; the other end
 * is returned (the client's), or -1. */
int srv_start_pair(struct fake *f, script_fn script);
/* Joins the thread if it runs (idempotent). */
void srv_join(struct fake *f);
/* Joins, then closes and frees what the server holds.  f can be reused. */
void srv_cleanup(struct fake *f);

/* For tests against a real QEMU: is prog in $PATH; a QEMU with no machine
 * and its QMP monitor listening on the unix socket sock (pid, or -1). */
bool srv_find_in_path(const char *prog);
pid_t srv_spawn_qemu(const char *sock);
#endif
