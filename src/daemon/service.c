#include "daemon/service.h"

#include <stdint.h>
#include <stdio.h>
#include <systemd/sd-daemon.h>

#include "common/log.h"

static struct event *watchdog_ev;

void service_ready(const char *status)
{
    /* Returns 0 without NOTIFY_SOCKET: nothing to tell. */
    if (sd_notifyf(0, "READY=1\nSTATUS=%s", status) < 0)
        log_warn("cannot notify the service manager that vmoved is ready");
}

static void on_watchdog(evutil_socket_t fd, short what, void *arg)
{
    sd_notify(0, "WATCHDOG=1");
}

void service_watchdog_start(struct event_base *base)
{
    uint64_t usec = 0;
    /* > 0 only when WATCHDOG_USEC is set (and WATCHDOG_PID, if set, is us). */
    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return;
    struct timeval half = {(time_t)(usec / 2 / 1000000), (suseconds_t)(usec / 2 % 1000000)};
    watchdog_ev = event_new(base, -1, EV_PERSIST, on_watchdog, NULL);
    event_add(watchdog_ev, &half);
    sd_notify(0, "WATCHDOG=1");
    log_info("watchdog: pinging systemd every %llu ms", (unsigned long long)(usec / 2000));
}

void service_stopping(void)
{
    sd_notify(0, "STOPPING=1");
}

void service_free(void)
{
    if (watchdog_ev)
        event_free(watchdog_ev);
    watchdog_ev = NULL;
}
