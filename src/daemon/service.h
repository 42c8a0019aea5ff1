/* vmoved under systemd (Type=notify): READY=1 once it serves, STOPPING=1 on
 * the way out, and a watchdog ping from the event loop.  Everything here is
 * a no-op when systemd did not ask for it (no NOTIFY_SOCKET, no
 * WATCHDOG_USEC), so the same binary runs by hand, in tests or under
 * another service manager. */
#ifndef VMOVE_DAEMON_SERVICE_H
#define VMOVE_DAEMON_SERVICE_H
#include <event2/event.h>

/* The socket and the TLS port are open and recovery is done. */
void service_ready(const char *status);
/* Ping the watchdog from a timer on `base`, at half of WatchdogSec=: if the
 * loop hangs, the pings stop and systemd restarts vmoved (the VMs live on). */
void service_watchdog_start(struct event_base *base);
void service_stopping(void);
/* Frees the timer; call before freeing the event base. */
void service_free(void);
#endif
