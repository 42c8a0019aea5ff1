/* The syslog side of common/log.c, apart because <syslog.h> defines
 * LOG_DEBUG, LOG_INFO, ... as macros that clash with log.h's levels. */
#ifndef VMOVE_LOG_SYSLOG_H
#define VMOVE_LOG_SYSLOG_H

void log_syslog_open(const char *ident);
/* level: log.h's enum log_level (0 debug .. 3 error). */
void log_syslog_write(int level, const char *msg);
/* The syslog priority (0..7) of log.h's level: what the journal's "<N>"
 * line prefix carries too. */
int log_syslog_priority(int level);
#endif
