#include "common/log_syslog.h"

#include <syslog.h>

int log_syslog_priority(int level)
{
    static const int prio[] = {LOG_DEBUG, LOG_INFO, LOG_WARNING, LOG_ERR};
    return level >= 0 && level < 4 ? prio[level] : LOG_ERR;
}

void log_syslog_open(const char *ident)
{
    /* LOG_PID: the journal shows the same "vmoved[PID]" as the file lines. */
    openlog(ident, LOG_PID | LOG_NDELAY, LOG_DAEMON);
}

void log_syslog_write(int level, const char *msg)
{
    syslog(log_syslog_priority(level), "%s", msg);
}
