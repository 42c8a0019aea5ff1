/* Running short helper programs (qemu-img, ip) and capturing their output.
 * These are synchronous and bounded by a timeout: only for commands that
 * finish in milliseconds.  Long work (QEMU itself) never goes through here. */
#ifndef VMOVE_SPAWN_H
#define VMOVE_SPAWN_H
#include <stdbool.h>
#include <stddef.h>

/* Runs argv[0] (PATH lookup), stdin from /dev/null.  *out gets stdout+stderr
 * (malloc'd, NUL-terminated, may be NULL if not wanted).  Returns the exit
 * status (0..255), 128+signal if killed, or -1 if it could not run / timed out
 * (then *out says why). */
int run_capture(char *const argv[], int timeout_ms, char **out);

/* The same, without blocking the event loop: for helpers whose time depends
 * on what a remote principal names (qemu-img on an image that may sit on a
 * stalled filesystem).  done(arg, rc, out) is called once, from the loop,
 * with run_capture's rc and out (out is freed after done returns); on timeout
 * the child is killed and rc is -1.  NULL (and done not called) if it could
 * not start: *err says why (malloc'd). */
struct event_base;
struct spawn_async;
typedef void (*spawn_done_fn)(void *arg, int rc, const char *out);
struct spawn_async *spawn_async(struct event_base *base, char *const argv[], int timeout_ms, spawn_done_fn done,
                                void *arg, char **err);
/* Kills the child; done is not called. */
void spawn_async_cancel(struct spawn_async *s);
/* vmoved's SIGCHLD handler: reaps every exited child, keeping the status of
 * those spawn_async waits for. */
void spawn_reap_children(void);
#endif
