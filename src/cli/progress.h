/* How the CLI shows a job while it runs and when it has ended: one module
 * for move, move-storage, host drain and jobs watch, so that all of them
 * redraw alike on a terminal and print plain lines in a log. */
#ifndef VMOVE_CLI_PROGRESS_H
#define VMOVE_CLI_PROGRESS_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

struct progress {
    bool tty;                /* stderr is a terminal: redraw in place */
    bool line_open;          /* a redrawn line awaits its newline */
    int table_lines;         /* lines of the drain table drawn last */
    uint64_t start_ms;       /* when the CLI began following */
    uint64_t last_print_ms;
    char phase[64];          /* the phase the percent belongs to */
    double shown_pct;        /* the highest percent shown in this phase */
};

void progress_init(struct progress *pr, bool tty);
/* True when a new line is due: always on a terminal, once a second in a log. */
bool progress_due(const struct progress *pr);
/* End a redrawn line before plain output. */
void progress_break(struct progress *pr);
/* The percent to show: never below one already shown in this phase. */
double progress_monotonic(struct progress *pr, const char *phase, double pct);
/* A line cut to the terminal's width; redrawn on a terminal. */
void progress_emit(struct progress *pr, const char *line);

void progress_migration(struct progress *pr, json_t *p);
void progress_mirror(struct progress *pr, json_t *p);
void progress_storage(struct progress *pr, json_t *p);
void progress_drain(struct progress *pr, json_t *p);

/* "12.3 s", "4m05s" */
const char *progress_elapsed(const struct progress *pr, json_t *p, char *buf, size_t len);
/* A wall-clock time in ms since the epoch as local "YYYY-MM-DD HH:MM:SS". */
const char *progress_fmt_time(long long wall_ms, char *buf, size_t len);
/* "started T, took D" or "started T, running for D" for a job record. */
const char *progress_job_times(json_t *job, char *buf, size_t len);
/* The summary of a finished job (move, storage move, other) on stdout. */
void progress_print_move_result(json_t *job, json_t *probe);
void progress_print_result(json_t *job);
/* Ctrl-C while following job `id`: say that it goes on and how to cancel it. */
void progress_on_interrupt(long long id, const char *host);
/* Ctrl-C during a delegated move: job ID runs on host SRC, reached with -H TARGET. */
void progress_on_interrupt_at(long long id, const char *src, const char *target);
void progress_interrupt_off(void);

#endif
