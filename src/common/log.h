/* Logging for vmoved and the CLI: one line per message, to stderr or a file,
 * or to syslog/the journal with the level as the priority. */
#ifndef VMOVE_LOG_H
#define VMOVE_LOG_H
#include <stdarg.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

void log_init(const char *prog, enum log_level min_level);
void log_set_file(int fd);
/* From now on, lines go to syslog(3) (the journal under systemd): for a
 * daemon that has detached from its terminal with no log file. */
void log_use_syslog(void);
void log_msg(enum log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#endif
