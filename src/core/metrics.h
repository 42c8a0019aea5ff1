/* Counters of moves for GET /metrics (docs/CONSOLE.md, "Metrics"): fed by
 * the job tracker (core/jobs.c) when a move job is created and when it
 * ends, so that every move counts whoever started it (CLI, console, drain).
 * They live as long as the process: Prometheus counters may reset when
 * vmoved restarts, and Prometheus's rate() handles that.
 *
 * Move types: "live", "quick", "shared-nothing" (the "migrate" job and its
 * tuning) and "storage" (the "storage.move" job).  Results: "succeeded",
 * "failed", "cancelled". */
#ifndef VMOVE_METRICS_H
#define VMOVE_METRICS_H
#include <jansson.h>
#include <stdint.h>

struct job;

#define METRICS_N_TYPES 4
#define METRICS_N_RESULTS 3
#define METRICS_DURATION_BUCKETS 10
#define METRICS_DOWNTIME_BUCKETS 9

struct metrics_histogram {
    uint64_t counts[METRICS_DURATION_BUCKETS];  /* per bucket, not cumulative */
    uint64_t count;
    double sum;
};

struct metrics_type {
    uint64_t started;
    uint64_t ended[METRICS_N_RESULTS];
    uint64_t bytes_sent;
    struct metrics_histogram duration, downtime;
};

/* The move type of a job record (job_to_json), or -1 if it is no move. */
int metrics_type_of(const char *kind, const json_t *params);
const char *metrics_type_name(int type);
void metrics_job_started(const struct job *j);
void metrics_job_ended(const struct job *j);
/* The counters of one type (for the renderer and tests). */
const struct metrics_type *metrics_get(int type);
void metrics_reset(void);
/* Appends the counter and histogram families in Prometheus text format. */
void metrics_render_moves(char **buf, size_t *len);
/* Appends printf-formatted text to a growing buffer (the renderers use it). */
void metrics_appendf(char **buf, size_t *len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#endif
