/* Progress lines and end-of-job summaries for the CLI (progress.h). */
#include "cli/progress.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/util.h"

#define LOG_INTERVAL_MS 1000   /* plain lines in a log: one a second */

static const char *pstr(json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static long long num(json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

void progress_init(struct progress *pr, bool tty)
{
    memset(pr, 0, sizeof *pr);
    pr->tty = tty;
    pr->start_ms = now_ms();
}

bool progress_due(const struct progress *pr)
{
    return pr->tty || now_ms() - pr->last_print_ms >= LOG_INTERVAL_MS;
}

void progress_break(struct progress *pr)
{
    if (pr->line_open)
        fputc('\n', stderr);
    pr->line_open = false;
    pr->table_lines = 0;
}

double progress_monotonic(struct progress *pr, const char *phase, double pct)
{
    if (strcmp(phase, pr->phase)) {
        snprintf(pr->phase, sizeof pr->phase, "%s", phase);
        pr->shown_pct = 0;
    }
    if (pct > pr->shown_pct)
        pr->shown_pct = pct > 100 ? 100 : pct;
    return pr->shown_pct;
}

/* The terminal's width: a longer line would wrap and break the redraw. */
static int term_cols(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return 80;
}

static void emit_cut(const char *line, int cols)
{
    fprintf(stderr, "\r\033[K%.*s", cols > 1 ? cols - 1 : 1, line);
}

void progress_emit(struct progress *pr, const char *line)
{
    if (pr->tty)
        emit_cut(line, term_cols());
    else
        fprintf(stderr, "%s\n", line);
    pr->line_open = pr->tty;
    pr->last_print_ms = now_ms();
}

const char *progress_elapsed(const struct progress *pr, json_t *p, char *buf, size_t len)
{
    json_t *e = json_object_get(p, "elapsed_ms");
    double ms = e ? (double)json_integer_value(e) : (double)(now_ms() - pr->start_ms);
    return fmt_duration_ms(ms, buf, len);
}

void progress_migration(struct progress *pr, json_t *p)
{
    char line[512], sent[32], rate[32], rem[32], dirty[32], el[32], eta[32] = "-";
    if (json_real_value(json_object_get(p, "rate_Bps")) > 0)
        fmt_duration_ms(json_real_value(json_object_get(p, "eta_s")) * 1000, eta, sizeof eta);
    snprintf(line, sizeof line,
             "%-9s %5.1f%%  elapsed %s  ETA %s  sent %s  rate %s/s  remaining %s  dirty %s/s  pass %lld  "
             "exp.downtime %lld ms%s",
             pstr(p, "phase"), progress_monotonic(pr, pstr(p, "phase"), json_real_value(json_object_get(p, "percent"))),
             progress_elapsed(pr, p, el, sizeof el), eta,
             fmt_bytes((double)num(p, "bytes_sent"), sent, sizeof sent),
             fmt_bytes(json_real_value(json_object_get(p, "rate_Bps")), rate, sizeof rate),
             fmt_bytes((double)num(p, "ram_remaining"), rem, sizeof rem),
             fmt_bytes(json_real_value(json_object_get(p, "dirty_rate_Bps")), dirty, sizeof dirty),
             num(p, "pass"), num(p, "expected_downtime_ms"), num(p, "throttle_pct") ? "  throttle on" : "");
    progress_emit(pr, line);
}

/* The disk copy of either move: the daemon's disk progress (docs/JSON.md,
 * "Disk progress"), the same keys for move-storage and --with-storage. */
static void disks_line(struct progress *pr, json_t *p, const char *label)
{
    char line[512], d[32], t[32], r[32], el[32], eta[32] = "-", disks[64] = "";
    double done = (double)num(p, "done_bytes"), total = (double)num(p, "total_bytes");
    double rate = json_real_value(json_object_get(p, "rate_Bps"));
    json_t *e = json_object_get(p, "eta_s");
    if (json_is_number(e))
        fmt_duration_ms(json_number_value(e) * 1000, eta, sizeof eta);
    size_t i, n = 0;
    json_t *disk;
    json_array_foreach(json_object_get(p, "disks"), i, disk) n += json_is_true(json_object_get(disk, "ready"));
    if (n)
        snprintf(disks, sizeof disks, "  %zu of %zu disks in sync", n, json_array_size(json_object_get(p, "disks")));
    snprintf(line, sizeof line, "%-9s %5.1f%%  elapsed %s  ETA %s  copied %s of %s  rate %s/s%s", label,
             progress_monotonic(pr, label, json_real_value(json_object_get(p, "percent"))),
             progress_elapsed(pr, p, el, sizeof el), eta, fmt_bytes(done, d, sizeof d), fmt_bytes(total, t, sizeof t),
             fmt_bytes(rate, r, sizeof r), disks);
    progress_emit(pr, line);
}

/* move --with-storage: the disks go first, over NBD, before the memory. */
void progress_mirror(struct progress *pr, json_t *p) { disks_line(pr, p, "disk copy"); }

/* move-storage: the same line, labelled by its phase; before it, a VM with
 * checkpoints has its frozen files copied (counted in files). */
void progress_storage(struct progress *pr, json_t *p)
{
    if (json_object_get(p, "files_total")) {
        char line[512], el[32];
        double done = (double)num(p, "files_done"), total = (double)num(p, "files_total");
        snprintf(line, sizeof line, "%-9s %5.1f%%  elapsed %s  file %lld of %lld  %s", "copying layers",
                 progress_monotonic(pr, "copying layers", total > 0 ? 100.0 * done / total : 0),
                 progress_elapsed(pr, p, el, sizeof el), num(p, "files_done") + 1, num(p, "files_total"),
                 pstr(p, "copying"));
        progress_emit(pr, line);
        return;
    }
    disks_line(pr, p, "mirroring");
}

/* The drain table: redrawn in place on a terminal (cursor up over the last
 * table), a new table every second in a log. */
void progress_drain(struct progress *pr, json_t *p)
{
    int cols = pr->tty ? term_cols() : 4096;
    char line[512], el[32];
    if (pr->line_open && !pr->table_lines)
        fputc('\n', stderr);
    if (pr->tty && pr->table_lines)
        fprintf(stderr, "\033[%dA", pr->table_lines);
    int lines = 0;
    snprintf(line, sizeof line, "drain: %lld/%lld done, %lld running, elapsed %s", num(p, "done"), num(p, "total"),
             num(p, "running"), progress_elapsed(pr, p, el, sizeof el));
    fprintf(stderr, "%s%.*s\n", pr->tty ? "\r\033[K" : "", cols - 1, line);
    lines++;
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(p, "vms"), i, v) {
        const char *wait = pstr(v, "waiting_for");
        char pct[16] = "     -";   /* no percent: not started, or its job has ended */
        if (json_is_number(json_object_get(v, "percent")))
            snprintf(pct, sizeof pct, "%5.1f%%", json_number_value(json_object_get(v, "percent")));
        snprintf(line, sizeof line, "  %-16s -> %-8s %-10s %-10s %s%s%s", pstr(v, "vm"), pstr(v, "to"),
                 pstr(v, "state"), pstr(v, "phase"), pct, *wait ? "  waiting for " : "", wait);
        fprintf(stderr, "%s%.*s\n", pr->tty ? "\r\033[K" : "", cols - 1, line);
        lines++;
    }
    pr->table_lines = pr->tty ? lines : 0;
    pr->line_open = false;
    pr->last_print_ms = now_ms();
}

const char *progress_fmt_time(long long wall_ms, char *buf, size_t len)
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    if (wall_ms <= 0 || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
        snprintf(buf, len, "-");
    return buf;
}

const char *progress_job_times(json_t *job, char *buf, size_t len)
{
    char t[32], d[32];
    long long c = num(job, "created_ms"), f = num(job, "finished_ms");
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    long long end = f ? f : (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    snprintf(buf, len, "started %s, %s %s", progress_fmt_time(c, t, sizeof t), f ? "took" : "running for",
             fmt_duration_ms(end > c ? (double)(end - c) : 0, d, sizeof d));
    return buf;
}

/* ---- summaries ---------------------------------------------------------- */

static double total_ms(json_t *job)
{
    json_t *r = json_object_get(job, "result");
    if (json_object_get(r, "total_ms"))
        return (double)num(r, "total_ms");
    long long f = num(job, "finished_ms"), c = num(job, "created_ms");
    return f > c ? (double)(f - c) : 0;
}

/* One line per host, each step in ms from the source's pause, so that
 * each line fits an 80-column terminal:
 *   switch-over (ms):  h1: paused +0, sent +38, finish-sent +39, finish-answered +64
 *                      h2: loaded +50, committed +52, resumed +60, announced +61 */
static void print_switchover_host(json_t *steps, const char *host, const char *lead)
{
    printf("%s%s:", lead, host);
    const char *sep = " ";
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st) {
        if (strcmp(pstr(st, "host"), host))
            continue;
        printf("%s%s +%lld", sep, pstr(st, "event"), num(st, "at_ms"));
        sep = ", ";
    }
    printf("\n");
}

static void print_switchover(json_t *sw, json_t *probe, const char *src, const char *dst)
{
    if (!sw)
        return;
    json_t *steps = json_object_get(sw, "steps");
    print_switchover_host(steps, src, "  switch-over (ms):  ");
    print_switchover_host(steps, dst, "                     ");
    json_t *heard = json_object_get(probe, "switchover_heard_ms");
    if (heard)
        printf("  client heard it:   +%.0f ms after the pause (first echo after the switch-over gap)\n",
               json_number_value(heard));
}

void progress_print_move_result(json_t *job, json_t *probe)
{
    json_t *r = json_object_get(job, "result");
    char a[32], b[32], d[32];
    bool quick = json_is_true(json_object_get(json_object_get(r, "tuning"), "quick"));
    printf("%s %s to %s\n", quick ? "quick-migrated" : "migrated", pstr(job, "vm"), pstr(r, "to"));
    printf("  total time:        %s\n", fmt_duration_ms(total_ms(job), a, sizeof a));
    if (quick)   /* the guest was paused the whole time its state was saved and loaded: that is its downtime */
        printf("  downtime (guest):  %s (paused, saved to shared storage, loaded and resumed)\n",
               fmt_duration_ms((double)num(r, "pause_ms"), b, sizeof b));
    else
        printf("  downtime (QEMU):   %s (limit %lld ms)\n", fmt_duration_ms((double)num(r, "qemu_downtime_ms"), b,
                                                                           sizeof b), num(r, "downtime_limit_ms"));
    if (probe) {
        double sw = json_real_value(json_object_get(probe, "switchover_gap_ms"));
        printf("  downtime (client): %.1f ms (longest gap in a 1 ms UDP echo; %lld of %lld answered)\n",
               json_real_value(json_object_get(probe, "max_gap_ms")), num(probe, "received"), num(probe, "sent"));
        if (sw > 0)
            printf("  at switch-over:    %.1f ms (longest gap in the last 600 ms of the move)\n", sw);
        else
            printf("  at switch-over:    < 20 ms (no gap of 20 ms or more in the last 600 ms of the move)\n");
    }
    json_t *first = json_array_get(json_object_get(json_object_get(r, "switchover"), "steps"), 0);
    print_switchover(json_object_get(r, "switchover"), probe, first ? pstr(first, "host") : "", pstr(r, "to"));
    if (!quick)
        printf("  bytes sent:        %s in %lld passes\n", fmt_bytes((double)num(r, "bytes_sent"), d, sizeof d),
               num(r, "passes"));
    size_t i;
    json_t *act;
    json_array_foreach(json_object_get(r, "policy_actions"), i, act) printf("  policy:            %s\n",
                                                                            json_string_value(act));
}

static void print_storage_result(json_t *job)
{
    json_t *r = json_object_get(job, "result");
    char a[32], b[32];
    printf("moved the storage of %s in %s\n", pstr(job, "vm"), fmt_duration_ms(total_ms(job), a, sizeof a));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(r, "disks"), i, d)
        printf("  %s: %s -> %s  (%s mirrored in %lld ms, pivot %lld ms)\n", pstr(d, "id"), pstr(d, "from"),
               pstr(d, "to"), fmt_bytes((double)num(d, "bytes"), b, sizeof b), num(d, "mirror_ms"),
               num(d, "pivot_ms"));
    if (num(r, "files_copied") > 0)
        printf("  checkpoint layers and memory images copied first: %lld files in %lld ms\n", num(r, "files_copied"),
               num(r, "copy_ms"));
    printf("  source files %s\n", json_is_true(json_object_get(r, "kept_source")) ? "kept" : "deleted");
    json_array_foreach(json_object_get(r, "notes"), i, d) printf("  note: %s\n", json_string_value(d));
}

void progress_print_result(json_t *job)
{
    const char *state = pstr(job, "state"), *kind = pstr(job, "kind");
    char a[32];
    if (!strcmp(state, "succeeded") && !strcmp(kind, "migrate"))
        progress_print_move_result(job, NULL);
    else if (!strcmp(state, "succeeded") && !strcmp(kind, "storage.move"))
        print_storage_result(job);
    else {
        printf("job %lld %s %s after %s\n", num(job, "id"), kind, state, fmt_duration_ms(total_ms(job), a, sizeof a));
        json_t *err = json_object_get(job, "error");
        if (err)
            printf("  error: %s\n", pstr(err, "message"));
        if (*pstr(err, "hint"))
            printf("  hint: %s\n", pstr(err, "hint"));
    }
}

/* ---- Ctrl-C -------------------------------------------------------------- */

/* Written by the handler as is: formatted before, as a handler may only
 * call write() and _exit(). */
static char interrupt_msg[512];

static void on_sigint(int sig)
{
    (void)sig;
    ssize_t n = write(STDERR_FILENO, interrupt_msg, strlen(interrupt_msg));
    (void)n;
    _exit(130);
}

static void interrupt_arm(void)
{
    struct sigaction sa = {.sa_handler = on_sigint};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
}

void progress_on_interrupt(long long id, const char *host)
{
    bool other = host && strcmp(host, DEFAULT_HOST);
    snprintf(interrupt_msg, sizeof interrupt_msg,
             "\nvmove: interrupted: job %lld continues in vmoved (Ctrl-C stops only this client).\n"
             "  follow it:  vmove%s%s jobs watch %lld\n  cancel it:  vmove%s%s jobs cancel %lld\n",
             id, other ? " -H " : "", other ? host : "", id, other ? " -H " : "", other ? host : "", id);
    interrupt_arm();
}

/* A delegated move: the job is the source host's, so the commands to
 * follow or cancel it talk to that host, not to the relaying one. */
void progress_on_interrupt_at(long long id, const char *src, const char *target)
{
    snprintf(interrupt_msg, sizeof interrupt_msg,
             "\nvmove: interrupted: job %lld continues on host %s (Ctrl-C stops only this client).\n"
             "  follow it:  vmove -H %s jobs watch %lld\n  cancel it:  vmove -H %s jobs cancel %lld\n",
             id, src, target, id, target, id);
    interrupt_arm();
}

void progress_interrupt_off(void)
{
    signal(SIGINT, SIG_DFL);
}
