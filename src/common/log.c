#include "common/log.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/log_syslog.h"

static const char *log_prog = "vmove";
static enum log_level log_min = LOG_INFO;
static int log_fd = STDERR_FILENO;
/* Where lines go: log_fd (a file or stderr), syslog(3), or stderr connected to the
 * journal (systemd's JOURNAL_STREAM), which takes a "<N>" priority prefix
 * and stamps the time itself. */
static enum { SINK_FD, SINK_SYSLOG, SINK_JOURNAL } log_sink = SINK_FD;

/* Is fd the stream systemd connected to the journal ("DEV:INODE")? */
static bool fd_is_journal(int fd)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(fd, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(const char *prog, enum log_level min_level)
{
    log_prog = prog;
    log_min = min_level;
    log_sink = fd_is_journal(STDERR_FILENO) ? SINK_JOURNAL : SINK_FD;
}

void log_set_file(int fd)
{
    log_fd = fd;
    log_sink = SINK_FD;
}

void log_use_syslog(void)
{
    log_syslog_open(log_prog);
    log_sink = SINK_SYSLOG;
}

/* A message may carry names a remote party chose (a VM, a method): a
 * newline or an escape sequence in one must not forge a log line or drive
 * the terminal of whoever reads the log. */
static void defang(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = '?';
}

/* The journal and syslog stamp time, program and PID themselves. */
static void log_to_system(enum log_level lvl, const char *fmt, va_list ap)
{
    char line[2048];
    int n = 0;
    if (log_sink == SINK_JOURNAL)
        n = snprintf(line, sizeof line, "<%d>", log_syslog_priority((int)lvl));
    vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    defang(line + n);
    if (log_sink == SINK_SYSLOG) {
        log_syslog_write((int)lvl, line);
        return;
    }
    size_t len = strlen(line);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    if (lvl < log_min)
        return;
    va_list ap;
    va_start(ap, fmt);
    if (log_sink != SINK_FD) {
        log_to_system(lvl, fmt, ap);
        va_end(ap);
        return;
    }
    char line[2048];
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s[%d] %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_prog, (int)getpid(), names[lvl]);
    int header = n;
    n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    defang(line + header);
    if (n > (int)sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    /* One write per line so concurrent writers do not interleave. */
    ssize_t w = write(log_fd, line, (size_t)n);
    (void)w;
}
