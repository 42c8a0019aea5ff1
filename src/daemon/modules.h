/* The daemon's modules in one ordered table: what each one recovers when
 * vmoved starts (after the VM inventory is loaded, before the loop runs) and
 * what each one frees when it stops.  Recovery runs the table top to bottom,
 * shutdown bottom to top, so a module is recovered after, and shut down
 * before, everything above it. */
#ifndef VMOVE_DAEMON_MODULES_H
#define VMOVE_DAEMON_MODULES_H
struct agent;

/* Start-up recovery, in order. */
void modules_recover(struct agent *a);
/* Shutdown, in reverse order (the listening sockets first). */
void modules_shutdown(struct agent *a);
#endif
