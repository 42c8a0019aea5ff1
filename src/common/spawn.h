/* Running helper programs (qemu-img, sha256sum, ip) and capturing their
 * output.  run_capture is synchronous and bounded by a timeout: only for
 * commands that finish in milliseconds on files vmoved owns; everything
 * else goes through spawn_async.  QEMU itself never goes through here.
 *
 * What still runs synchronously, and why (docs/SECURITY.md, "Slow
 * helpers"): `ip link` when a VM's NICs are wired to their switches and
 * `ss -K` when a stuck migration's sockets are aborted (the kernel only, no
 * file and no storage, milliseconds); QEMU's `-version` and `-machine help`
 * at start-up, before the loop serves anyone.  Every qemu-img, and
 * sha256sum, is a spawn_async child. */
#ifndef VMOVE_SPAWN_H
#define VMOVE_SPAWN_H
#include <stdbool.h>
#include <stddef.h>

/* Runs argv[0] (PATH lookup), stdin from /dev/null.  *out gets stdout+stderr
 * (malloc'd, NUL-terminated, may be NULL if not wanted).  Returns the exit
 * status (0..255), 128+signal if killed, or -1 if it could not run / timed out
 * (then *out says why). */
int run_capture(char *const argv[], int timeout_ms, char **out);

/* The same, without blocking the event loop: for every helper whose time
 * depends on what it reads (qemu-img convert of a big disk, sha256sum, or
 * qemu-img on an image that may sit on a stalled filesystem).
 * done(arg, rc, out) is called exactly once, always from the loop (never
 * before this returns), with run_capture's rc and out (out is freed after
 * done returns): on timeout the child is killed and rc is -1; a child that
 * could not start ends the same way, rc -1 and out saying why. */
struct event_base;
struct spawn_async;
typedef void (*spawn_done_fn)(void *arg, int rc, const char *out);
struct spawn_async *spawn_async(struct event_base *base, char *const argv[], int timeout_ms, spawn_done_fn done,
                                void *arg);
/* The same with stdin_fd as the child's stdin (dup'ed; the caller keeps
 * and closes its own descriptor). */
struct spawn_async *spawn_async_fd(struct event_base *base, char *const argv[], int stdin_fd, int timeout_ms,
                                   spawn_done_fn done, void *arg);
/* No child: done(arg, -1, why) from the loop, as for a helper that could not
 * start (a caller's refusal keeps the one way of ending). */
struct spawn_async *spawn_async_fail(struct event_base *base, const char *why, spawn_done_fn done, void *arg);
/* Kills the child (and waits a moment for it to be gone, so that it writes
 * nothing after this returns); done is not called. */
void spawn_async_cancel(struct spawn_async *s);
/* At shutdown: every helper still pending is killed and its done called
 * (rc -1, "... vmoved is shutting down"), so that its owner frees what it
 * holds; helpers started from then on end the same way without running. */
void spawn_async_stop_all(void);
/* vmoved's SIGCHLD handler: reaps every exited child, keeping the status of
 * those spawn_async waits for. */
void spawn_reap_children(void);
#endif
