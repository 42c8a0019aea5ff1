/* Argument parsing, output formatting and job following for the CLI. */
#include "cli/cli.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/util.h"

static const struct cli_flag *find_flag(const struct cli_flag *flags, const char *name, char short_name)
{
    for (const struct cli_flag *f = flags; f && f->name; f++)
        if ((name && !strcmp(f->name, name)) || (short_name && f->short_name == short_name))
            return f;
    return NULL;
}

static void set_opt(json_t *opts, const struct cli_flag *f, const char *value)
{
    json_t *v = f->takes_value ? json_string(value) : json_true();
    if (!f->repeat) {
        json_object_set_new(opts, f->name, v);
        return;
    }
    json_t *arr = json_object_get(opts, f->name);
    if (!arr) {
        arr = json_array();
        json_object_set_new(opts, f->name, arr);
    }
    json_array_append_new(arr, v);
}

int cli_parse(int argc, char **argv, const struct cli_flag *flags, struct cli_args *out)
{
    out->opts = json_object();
    out->argv = xcalloc((size_t)argc + 1, sizeof *out->argv);
    out->argc = 0;
    bool only_args = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (only_args || a[0] != '-' || !a[1]) {
            out->argv[out->argc++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--")) {
            only_args = true;
            continue;
        }
        const char *value = NULL;
        char name[64];
        const struct cli_flag *f;
        if (a[1] == '-') {
            const char *eq = strchr(a + 2, '=');
            snprintf(name, sizeof name, "%.*s", eq ? (int)(eq - a - 2) : (int)strlen(a + 2), a + 2);
            value = eq ? eq + 1 : NULL;
            f = find_flag(flags, name, 0);
        } else {
            snprintf(name, sizeof name, "%s", a + 1);
            f = a[2] ? NULL : find_flag(flags, NULL, a[1]);
        }
        if (!f) {
            fprintf(stderr, "vmove: unknown option %s\n", a);
            return -1;
        }
        if (f->takes_value && !value) {
            if (i + 1 >= argc) {
                fprintf(stderr, "vmove: option --%s needs a value\n", f->name);
                return -1;
            }
            value = argv[++i];
        } else if (!f->takes_value && value) {
            fprintf(stderr, "vmove: option --%s takes no value\n", f->name);
            return -1;
        }
        set_opt(out->opts, f, value);
    }
    return 0;
}

void cli_args_free(struct cli_args *a)
{
    json_decref(a->opts);
    free(a->argv);
}

const char *cli_opt(const struct cli_args *a, const char *name)
{
    return json_string_value(json_object_get(a->opts, name));
}

bool cli_flag_set(const struct cli_args *a, const char *name)
{
    return json_object_get(a->opts, name) != NULL;
}

bool cli_event_json(struct cli *c, const char *event, json_t *data)
{
    if (!c->json)
        return false;
    json_t *line = json_pack("{s:s, s:O}", "event", event, "data", data);
    cli_print_json(line);
    json_decref(line);
    return true;
}

void cli_print_json(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
}

void cli_print_accepted(struct cli *c, json_t *reply)
{
    if (c->json)
        cli_print_json(reply);
    else
        printf("job %lld\n", (long long)json_integer_value(json_object_get(reply, "job")));
}

void cli_error(struct cli *c, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (c && c->json) {
        json_t *e = json_pack("{s:{s:s, s:s}}", "error", "code", "client_error", "message", msg);
        cli_print_json(e);
        json_decref(e);
    }
    fprintf(stderr, "vmove: error: %s\n", msg);
}

const char *fmt_bytes(double b, char *buf, size_t len)
{
    const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    int u = 0;
    while (b >= 1024 && u < 4) {
        b /= 1024;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", b, units[u]);
    return buf;
}

const char *fmt_duration_ms(double ms, char *buf, size_t len)
{
    if (ms < 1000)
        snprintf(buf, len, "%.0f ms", ms);
    else if (ms < 120000)
        snprintf(buf, len, "%.2f s", ms / 1000);
    else
        snprintf(buf, len, "%.0fm%02.0fs", ms / 60000, (double)((long long)(ms / 1000) % 60));
    return buf;
}

void cli_print_job(const json_t *job, bool detail)
{
    const char *state = json_string_value(json_object_get(job, "state"));
    char st[128];
    json_t *prog = json_object_get(job, "progress");
    const char *waiting = json_string_value(json_object_get(prog, "waiting_for"));
    long long pos = json_integer_value(json_object_get(prog, "queue_position"));
    if (waiting && pos > 0)
        snprintf(st, sizeof st, "%s (position %lld, waiting for %s)", state ? state : "?", pos, waiting);
    else if (waiting)
        snprintf(st, sizeof st, "%s (waiting for %s)", state ? state : "?", waiting);
    else
        snprintf(st, sizeof st, "%s", state ? state : "?");
    printf("job %lld  %-14s %-10s %-10s phase=%s\n",
           (long long)json_integer_value(json_object_get(job, "id")),
           json_string_value(json_object_get(job, "kind")),
           json_string_value(json_object_get(job, "vm")) ? json_string_value(json_object_get(job, "vm")) : "-",
           st,
           json_string_value(json_object_get(job, "phase")) ? json_string_value(json_object_get(job, "phase")) : "-");
    json_t *err = json_object_get(job, "error");
    if (err)
        printf("  error: %s\n", json_string_value(json_object_get(err, "message")));
    if (detail) {
        json_t *progress = json_object_get(job, "progress");
        if (progress) {
            char *s = json_dumps(progress, JSON_INDENT(2));
            printf("  progress: %s\n", s);
            free(s);
        }
    }
}

struct follow_state {
    char last_wait[128];
    char last_phase[64];
    bool tty;
    uint64_t last_print_ms;
    bool line_open;
};

static void print_progress(struct follow_state *st, json_t *p)
{
    char sent[32], rate[32], rem[32], dirty[32];
    char eta[32] = "-";
    if (json_real_value(json_object_get(p, "rate_Bps")) > 0)
        snprintf(eta, sizeof eta, "%.1f s", json_real_value(json_object_get(p, "eta_s")));
    fprintf(stderr, "%s%-9s %5.1f%%  sent %s  rate %s/s  remaining %s  dirty %s/s  pass %lld  exp.downtime %lld ms%s%s  ETA %s%s",
            st->tty ? "\r\033[K" : "",
            json_string_value(json_object_get(p, "phase")), json_real_value(json_object_get(p, "percent")),
            fmt_bytes((double)json_integer_value(json_object_get(p, "bytes_sent")), sent, sizeof sent),
            fmt_bytes(json_real_value(json_object_get(p, "rate_Bps")), rate, sizeof rate),
            fmt_bytes((double)json_integer_value(json_object_get(p, "ram_remaining")), rem, sizeof rem),
            fmt_bytes(json_real_value(json_object_get(p, "dirty_rate_Bps")), dirty, sizeof dirty),
            (long long)json_integer_value(json_object_get(p, "pass")),
            (long long)json_integer_value(json_object_get(p, "expected_downtime_ms")),
            json_integer_value(json_object_get(p, "throttle_pct")) ? "  throttle " : "",
            json_integer_value(json_object_get(p, "throttle_pct")) ? "on" : "",
            eta, st->tty ? "" : "\n");
    st->line_open = st->tty;
}

static void print_drain_progress(json_t *p)
{
    fprintf(stderr, "drain: %lld/%lld done, %lld running, %.1f s\n", (long long)json_integer_value(json_object_get(p, "done")),
            (long long)json_integer_value(json_object_get(p, "total")),
            (long long)json_integer_value(json_object_get(p, "running")),
            (double)json_integer_value(json_object_get(p, "elapsed_ms")) / 1000);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(p, "vms"), i, v) {
        const char *wait = json_string_value(json_object_get(v, "waiting_for"));
        fprintf(stderr, "  %-16s -> %-8s %-10s %-10s %5.1f%%%s%s\n", json_string_value(json_object_get(v, "vm")),
                json_string_value(json_object_get(v, "to")), json_string_value(json_object_get(v, "state")),
                json_string_value(json_object_get(v, "phase")) ? json_string_value(json_object_get(v, "phase")) : "",
                json_real_value(json_object_get(v, "percent")), wait ? "  waiting for " : "", wait ? wait : "");
    }
}

static void on_job_event(struct cli *c, const char *event, json_t *data, void *arg)
{
    struct follow_state *st = arg;
    if (cli_event_json(c, event, data))
        return;
    const char *phase = json_string_value(json_object_get(data, "phase"));
    if (phase && strcmp(phase, st->last_phase) != 0) {
        if (st->line_open)
            fputc('\n', stderr);
        st->line_open = false;
        fprintf(stderr, "job %lld: %s\n", (long long)json_integer_value(json_object_get(data, "id")), phase);
        snprintf(st->last_phase, sizeof st->last_phase, "%s", phase);
    }
    json_t *progress = json_object_get(data, "progress");
    const char *kind = json_string_value(json_object_get(data, "kind"));
    const char *waiting = json_string_value(json_object_get(progress, "waiting_for"));
    if (waiting) {
        char w[128];
        snprintf(w, sizeof w, "position %lld, waiting for %s",
                 (long long)json_integer_value(json_object_get(progress, "queue_position")), waiting);
        if (strcmp(w, st->last_wait)) {
            fprintf(stderr, "job %lld: queued (%s)\n", (long long)json_integer_value(json_object_get(data, "id")), w);
            snprintf(st->last_wait, sizeof st->last_wait, "%s", w);
        }
        return;
    }
    if (progress && kind && !strcmp(kind, "drain") && now_ms() - st->last_print_ms >= 1000) {
        print_drain_progress(progress);
        st->last_print_ms = now_ms();
        return;
    }
    /* Live on a terminal; once a second in a log. */
    if (progress && !strcmp(phase ? phase : "", "transfer") &&
        (st->tty || now_ms() - st->last_print_ms >= 1000)) {
        print_progress(st, progress);
        st->last_print_ms = now_ms();
    }
}

int cli_follow_job(struct cli *c, json_t *params)
{
    return cli_follow_job_result(c, params, NULL);
}

int cli_follow_job_result(struct cli *c, json_t *params, json_t **result)
{
    struct follow_state st = {.tty = isatty(2)};
    int code;
    json_t *final = cli_call(c, "jobs.watch", params, on_job_event, &st, &code);
    if (st.line_open)
        fputc('\n', stderr);
    if (!final)
        return code;
    const char *state = json_string_value(json_object_get(final, "state"));
    int rc = state && !strcmp(state, "succeeded") ? 0 : EXIT_FAIL;
    if (c->json && !result)
        cli_print_json(final);
    else if (rc != 0 && !c->json) {
        json_t *err = json_object_get(final, "error");
        fprintf(stderr, "vmove: error: job %lld %s: %s\n", (long long)json_integer_value(json_object_get(final, "id")),
                state ? state : "?", err ? json_string_value(json_object_get(err, "message")) : "no detail");
        const char *hint = json_string_value(json_object_get(err, "hint"));
        if (hint)
            fprintf(stderr, "  hint: %s\n", hint);
    }
    if (result)
        *result = final;
    else
        json_decref(final);
    return rc;
}
