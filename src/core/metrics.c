#include "core/metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "core/jobs.h"

static const char *const type_names[METRICS_N_TYPES] = {"live", "quick", "shared-nothing", "storage"};
static const char *const result_names[METRICS_N_RESULTS] = {"succeeded", "failed", "cancelled"};
/* Seconds.  A live move here takes one to tens of seconds, QEMU's downtime
 * tens of milliseconds: the bounds bracket both with room on either side. */
static const double duration_le[METRICS_DURATION_BUCKETS] = {0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600};
static const double downtime_le[METRICS_DOWNTIME_BUCKETS] = {0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5};

static struct metrics_type stats[METRICS_N_TYPES];

int metrics_type_of(const char *kind, const json_t *params)
{
    if (!kind)
        return -1;
    if (!strcmp(kind, "storage.move"))
        return 3;
    if (strcmp(kind, "migrate"))
        return -1;
    json_t *t = json_object_get(params, "tuning");
    if (json_is_true(json_object_get(t, "quick")))
        return 1;
    if (json_is_string(json_object_get(t, "with_storage")))
        return 2;
    return 0;
}

const char *metrics_type_name(int type) { return type >= 0 && type < METRICS_N_TYPES ? type_names[type] : "?"; }

const struct metrics_type *metrics_get(int type) { return type >= 0 && type < METRICS_N_TYPES ? &stats[type] : NULL; }

void metrics_reset(void) { memset(stats, 0, sizeof stats); }

void metrics_job_started(const struct job *j)
{
    int t = metrics_type_of(j->ops->kind, j->params);
    if (t >= 0)
        stats[t].started++;
}

static void observe(struct metrics_histogram *h, const double *le, int n, double v)
{
    int i = 0;
    while (i < n && v > le[i])
        i++;
    if (i < n)
        h->counts[i]++;
    h->count++;
    h->sum += v;
}

void metrics_job_ended(const struct job *j)
{
    int t = metrics_type_of(j->ops->kind, j->params);
    if (t < 0)
        return;
    struct metrics_type *s = &stats[t];
    int res = j->state == JOB_SUCCEEDED ? 0 : j->state == JOB_CANCELLED ? 2 : 1;
    s->ended[res]++;
    if (res != 0)
        return;
    json_t *r = j->result;
    json_t *total = json_object_get(r, "total_ms");
    /* A storage move's record has no total_ms: its job's own span. */
    double secs = json_is_integer(total) ? (double)json_integer_value(total) / 1000.0
                                         : (double)(j->finished_ms - j->created_ms) / 1000.0;
    observe(&s->duration, duration_le, METRICS_DURATION_BUCKETS, secs);
    json_t *down = json_object_get(r, "qemu_downtime_ms");
    if (!json_is_integer(down))
        down = json_object_get(r, "pause_ms");   /* a quick move's pause */
    if (json_is_integer(down))
        observe(&s->downtime, downtime_le, METRICS_DOWNTIME_BUCKETS, (double)json_integer_value(down) / 1000.0);
    json_t *bytes = json_object_get(r, "bytes_sent");
    if (json_is_integer(bytes) && json_integer_value(bytes) > 0)
        s->bytes_sent += (uint64_t)json_integer_value(bytes);
}

void metrics_appendf(char **buf, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *piece = NULL;
    int n = vasprintf(&piece, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    *buf = xrealloc(*buf, *len + (size_t)n + 1);
    memcpy(*buf + *len, piece, (size_t)n + 1);
    *len += (size_t)n;
    free(piece);
}

static void render_histogram(char **buf, size_t *len, const char *name, const char *help, const double *le, int n,
                             int which)
{
    metrics_appendf(buf, len, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int t = 0; t < METRICS_N_TYPES; t++) {
        const struct metrics_histogram *h = which ? &stats[t].downtime : &stats[t].duration;
        uint64_t cum = 0;
        for (int i = 0; i < n; i++) {
            cum += h->counts[i];
            metrics_appendf(buf, len, "%s_bucket{type=\"%s\",le=\"%g\"} %llu\n", name, type_names[t], le[i],
                            (unsigned long long)cum);
        }
        metrics_appendf(buf, len, "%s_bucket{type=\"%s\",le=\"+Inf\"} %llu\n", name, type_names[t],
                        (unsigned long long)h->count);
        metrics_appendf(buf, len, "%s_sum{type=\"%s\"} %.6f\n%s_count{type=\"%s\"} %llu\n", name, type_names[t],
                        h->sum, name, type_names[t], (unsigned long long)h->count);
    }
}

void metrics_render_moves(char **buf, size_t *len)
{
    metrics_appendf(buf, len, "# HELP vmove_migrations_started_total Moves started on this host (as the source), "
                              "by type.\n# TYPE vmove_migrations_started_total counter\n");
    for (int t = 0; t < METRICS_N_TYPES; t++)
        metrics_appendf(buf, len, "vmove_migrations_started_total{type=\"%s\"} %llu\n", type_names[t],
                        (unsigned long long)stats[t].started);
    metrics_appendf(buf, len, "# HELP vmove_migrations_total Moves ended on this host, by type and result.\n"
                              "# TYPE vmove_migrations_total counter\n");
    for (int t = 0; t < METRICS_N_TYPES; t++)
        for (int r = 0; r < METRICS_N_RESULTS; r++)
            metrics_appendf(buf, len, "vmove_migrations_total{type=\"%s\",result=\"%s\"} %llu\n", type_names[t],
                            result_names[r], (unsigned long long)stats[t].ended[r]);
    render_histogram(buf, len, "vmove_migration_duration_seconds", "Total time of the moves that succeeded.",
                     duration_le, METRICS_DURATION_BUCKETS, 0);
    render_histogram(buf, len, "vmove_migration_downtime_seconds",
                     "The guest's pause as QEMU measured it (quick moves: the whole pause), moves that succeeded.",
                     downtime_le, METRICS_DOWNTIME_BUCKETS, 1);
    metrics_appendf(buf, len, "# HELP vmove_migration_sent_bytes_total Bytes of memory state sent by the moves "
                              "that succeeded.\n# TYPE vmove_migration_sent_bytes_total counter\n");
    for (int t = 0; t < METRICS_N_TYPES; t++)
        metrics_appendf(buf, len, "vmove_migration_sent_bytes_total{type=\"%s\"} %llu\n", type_names[t],
                        (unsigned long long)stats[t].bytes_sent);
}
