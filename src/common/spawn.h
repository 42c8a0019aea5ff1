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
#endif
