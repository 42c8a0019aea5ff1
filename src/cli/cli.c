/* Argument parsing, requests to vmoved and what they print, output
 * formatting and job following for the CLI. */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/client.h"
#include "cli/help.h"
#include "cli/progress.h"
#include "common/units.h"
#include "common/util.h"

static const struct cli_flag *find_long(const struct cli_flag *flags, const char *name, size_t len)
{
    for (const struct cli_flag *f = flags; f && f->name; f++)
        if (strlen(f->name) == len && !strncmp(f->name, name, len))
            return f;
    return NULL;
}

static const struct cli_flag *find_short(const struct cli_flag *flags, char short_name)
{
    for (const struct cli_flag *f = flags; f && f->name; f++)
        if (f->short_name && f->short_name == short_name)
            return f;
    return NULL;
}

static void set_opt(json_t *opts, const struct cli_flag *f, const char *value)
{
    json_t *v = f->arg ? json_string(value) : json_true();
    if (!(f->how & CLI_REPEAT)) {
        json_object_set_new(opts, f->name, v);   /* given twice: the last one counts */
        return;
    }
    json_t *arr = json_object_get(opts, f->name);
    if (!arr) {
        arr = json_array();
        json_object_set_new(opts, f->name, arr);
    }
    json_array_append_new(arr, v);
}

bool cli_is_help_word(const char *a)
{
    return !strcmp(a, "--help") || !strcmp(a, "-h");
}

/* The flag at argv[*i] ("--name", "--name=value" or "-x"), with its value
 * from the next word if it takes one. */
static int parse_flag(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv, int *i, json_t *opts)
{
    const char *a = argv[*i], *value = NULL;
    const struct cli_flag *f;
    if (a[1] == '-') {
        const char *eq = strchr(a + 2, '=');
        f = find_long(cmd->flags, a + 2, eq ? (size_t)(eq - a - 2) : strlen(a + 2));
        value = eq ? eq + 1 : NULL;
    } else
        f = a[2] ? NULL : find_short(cmd->flags, a[1]);
    if (!f) {
        cli_usage_error(c, cmd, "unknown option %s", a);
        return -1;
    }
    if (f->arg && !value) {
        if (*i + 1 >= argc) {
            cli_usage_error(c, cmd, "option --%s needs a value (%s)", f->name, f->arg);
            return -1;
        }
        value = argv[++*i];
    } else if (!f->arg && value) {
        cli_usage_error(c, cmd, "option --%s takes no value", f->name);
        return -1;
    }
    set_opt(opts, f, value);
    return 0;
}

/* What the loop cannot see: the number of positionals and required flags. */
static int check_parsed(struct cli *c, const struct cli_cmd *cmd, const struct cli_args *out)
{
    if (out->argc < cmd->min_args) {
        cli_usage_error(c, cmd, "missing arguments: expected %s", cmd->args);
        return -1;
    }
    if (cmd->max_args >= 0 && out->argc > cmd->max_args) {
        cli_usage_error(c, cmd, "unexpected argument \"%s\"", out->argv[cmd->max_args]);
        return -1;
    }
    for (const struct cli_flag *f = cmd->flags; f && f->name; f++)
        if ((f->how & CLI_REQUIRED) && !json_object_get(out->opts, f->name)) {
            cli_usage_error(c, cmd, "missing --%s%s%s", f->name, f->arg ? " " : "", f->arg ? f->arg : "");
            return -1;
        }
    return 0;
}

static int parse_words(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv, struct cli_args *out)
{
    bool only_args = false;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (cmd->verbatim_after && out->argc >= cmd->verbatim_after)
            only_args = true;
        if (only_args || a[0] != '-' || !a[1]) {
            out->argv[out->argc++] = argv[i];
            continue;
        }
        if (!strcmp(a, "--")) {
            only_args = true;
            continue;
        }
        if (cli_is_help_word(a))
            return CLI_PARSE_HELP;
        if (parse_flag(c, cmd, argc, argv, &i, out->opts) < 0)
            return CLI_PARSE_ERROR;
    }
    return check_parsed(c, cmd, out) < 0 ? CLI_PARSE_ERROR : CLI_PARSE_OK;
}

int cli_parse(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv, struct cli_args *out)
{
    out->cmd = cmd;
    out->opts = json_object();
    out->argv = xcalloc((size_t)argc + 1, sizeof *out->argv);
    out->argc = 0;
    int rc = parse_words(c, cmd, argc, argv, out);
    if (rc != CLI_PARSE_OK)
        cli_args_free(out);
    return rc;
}

void cli_args_free(struct cli_args *a)
{
    json_decref(a->opts);
    free(a->argv);
    a->opts = NULL;
    a->argv = NULL;
}

const char *cli_opt(const struct cli_args *a, const char *name)
{
    return json_string_value(json_object_get(a->opts, name));
}

bool cli_flag_set(const struct cli_args *a, const char *name)
{
    return json_object_get(a->opts, name) != NULL;
}

bool cli_opt_number(struct cli *c, const struct cli_args *a, const char *name, long long min, long long *out)
{
    const char *v = cli_opt(a, name);
    if (!v)
        return true;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*end || end == v || errno || n < min) {
        if (min > 0)
            cli_usage_error(c, a->cmd, "--%s \"%s\": expected a whole number of at least %lld", name, v, min);
        else
            cli_usage_error(c, a->cmd, "--%s \"%s\": expected a whole number", name, v);
        return false;
    }
    *out = n;
    return true;
}

bool cli_opt_units(struct cli *c, const struct cli_args *a, const char *name, int kind, uint64_t min,
                   uint64_t *out)
{
    const char *v = cli_opt(a, name), *why;
    uint64_t n;
    if (!v)
        return true;
    if (units_parse(v, (enum unit_kind)kind, &n, &why) < 0) {
        cli_usage_error(c, a->cmd, "--%s \"%s\": %s (a bare number is %s)", name, v, why,
                        units_bare_name((enum unit_kind)kind));
        return false;
    }
    if (n < min) {
        cli_usage_error(c, a->cmd, "--%s \"%s\": must be more than 0", name, v);
        return false;
    }
    *out = n;
    return true;
}

json_t *cli_absolute_path(const char *path)
{
    if (path[0] == '/')
        return json_string(path);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return json_string(path);
    char *abs = xasprintf("%s/%s", cwd, path);
    json_t *j = json_string(abs);
    free(abs);
    return j;
}

/* The usage error itself: message, synopsis and where to read more. */
static void report_usage(struct cli *c, const struct cli_cmd *cmd, const char *topic, const char *msg)
{
    char name[64], hint[128];
    if (cmd)
        topic = cli_cmd_name(cmd, name, sizeof name);
    snprintf(hint, sizeof hint, "run 'vmove %s%s--help'", topic ? topic : "", topic ? " " : "");
    if (c && c->json) {
        json_t *e = json_pack("{s:{s:s, s:s, s:s}}", "error", "code", "usage", "message", msg, "hint", hint);
        cli_print_final(e, false);
        json_decref(e);
    }
    fprintf(stderr, "vmove: error: %s\n", msg);
    if (cmd)
        cli_print_synopsis(stderr, "usage: ", cmd);
    fprintf(stderr, "%s\n", hint);
}

void cli_usage_error(struct cli *c, const struct cli_cmd *cmd, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report_usage(c, cmd, NULL, msg);
}

void cli_topic_error(struct cli *c, const char *topic, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report_usage(c, NULL, topic, msg);
}

/* ---- requests: client.c carries them, this prints their failures ------------ */

int cli_connect(struct cli *c)
{
    if (c->conn)
        return 0;
    char err[1024];
    c->conn = client_open(c->host, c->identity, &c->local, err, sizeof err);
    if (!c->conn) {
        cli_error(c, "%s", err);
        return -1;
    }
    return 0;
}

void cli_disconnect(struct cli *c)
{
    if (c->conn)
        client_close(c->conn);
    c->conn = NULL;
}

static void print_daemon_error(struct cli *c, json_t *error)
{
    if (c->json) {
        json_t *wrapped = json_pack("{s:O}", "error", error);
        cli_print_final(wrapped, false);
        json_decref(wrapped);
    }
    fprintf(stderr, "vmove: error: %s\n", json_string_value(json_object_get(error, "message")));
    const char *hint = json_string_value(json_object_get(error, "hint"));
    if (hint)
        fprintf(stderr, "  hint: %s\n", hint);
    cli_print_checks(error);
}

/* client.c knows nothing of struct cli: carry it to the caller's handler. */
struct event_relay {
    struct cli *c;
    cli_event_fn fn;
    void *arg;
};

static void relay_event(const char *event, json_t *data, void *arg)
{
    struct event_relay *r = arg;
    r->fn(r->c, event, data, r->arg);
}

json_t *cli_call(struct cli *c, const char *method, json_t *params, cli_event_fn on_event, void *arg,
                 int *exit_code)
{
    *exit_code = EXIT_CONNECT;
    if (cli_connect(c) < 0) {
        json_decref(params);
        return NULL;
    }
    struct event_relay relay = {c, on_event, arg};
    json_t *error;
    char err[512];
    json_t *result = client_request(c->conn, method, params, on_event ? relay_event : NULL, &relay, &error, err,
                                    sizeof err);
    if (result)
        *exit_code = 0;
    else if (error) {
        print_daemon_error(c, error);
        json_decref(error);
        *exit_code = EXIT_FAIL;
    } else
        cli_error(c, "%s", err);
    return result;
}

/* One line of JSON on stdout, flushed: a stream line or the final document. */
static void print_line(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
}

bool cli_event_json(struct cli *c, const char *event, json_t *data)
{
    if (!c->json)
        return false;
    json_t *line = json_pack("{s:s, s:O}", "event", event, "data", data);
    print_line(line);
    json_decref(line);
    return true;
}

void cli_print_final(json_t *j, bool ok)
{
    if (json_is_object(j))
        json_object_set_new(j, "ok", json_boolean(ok));
    print_line(j);
}

void cli_print_move_final(json_t *job, json_t *probe, bool ok)
{
    json_t *out = json_deep_copy(job);
    json_object_set(out, "job", job);
    if (probe)
        json_object_set(out, "probe", probe);
    cli_print_final(out, ok);
    json_decref(out);
}

void cli_print_json(json_t *j)
{
    cli_print_final(j, true);
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
        cli_print_final(e, false);
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

int cli_call_and_print(struct cli *c, const char *method, json_t *params, void (*print)(json_t *result))
{
    int code;
    json_t *r = cli_call(c, method, params, NULL, NULL, &code);
    if (!r)
        return code;
    if (c->json)
        cli_print_json(r);
    else
        print(r);
    json_decref(r);
    return 0;
}

void cli_print_job(const json_t *job, bool detail)
{
    const char *state = json_string_value(json_object_get(job, "state"));
    char st[128];
    json_t *prog = json_object_get(job, "progress");
    const char *waiting = json_string_value(json_object_get(prog, "waiting_for"));
    long long pos = json_integer_value(json_object_get(prog, "queue_position"));
    const char *why = json_string_value(json_object_get(prog, "reason"));
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
    if (waiting && why)
        printf("  waiting because: %s\n", why);
    json_t *params = json_object_get(job, "params");
    if (json_object_get(params, "source_job"))   /* an arrival: the move is the source's job */
        printf("  arriving from %s, its job %lld (`vmove -H %s jobs show %lld`)\n",
               json_string_value(json_object_get(params, "source")),
               (long long)json_integer_value(json_object_get(params, "source_job")),
               json_string_value(json_object_get(params, "source")),
               (long long)json_integer_value(json_object_get(params, "source_job")));
    char times[96];
    printf("  %s\n", progress_job_times((json_t *)job, times, sizeof times));
    json_t *err = json_object_get(job, "error");
    /* An ended job shown in detail gets its error and hint in its result. */
    if (err && !(detail && json_object_get(job, "finished_ms")))
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

void cli_on_job_event(struct cli *c, const char *event, json_t *data, void *arg)
{
    struct cli_follow *st = arg;
    if (cli_event_json(c, event, data))
        return;
    const char *phase = json_string_value(json_object_get(data, "phase"));
    if (phase && strcmp(phase, st->last_phase) != 0) {
        progress_break(&st->pr);
        fprintf(stderr, "job %lld: %s\n", (long long)json_integer_value(json_object_get(data, "id")), phase);
        if (!strcmp(phase, "postcopy") && !st->postcopy_said) {
            /* The move's commit point: said plainly, once. */
            const char *to = json_string_value(json_object_get(json_object_get(data, "params"), "to"));
            fprintf(stderr, "entering post-copy: from now on the VM runs on %s; if %s or the link dies before the "
                            "end, the VM is lost\n", to ? to : "the destination", to ? to : "it");
            st->postcopy_said = true;
        }
        snprintf(st->last_phase, sizeof st->last_phase, "%s", phase);
    }
    json_t *progress = json_object_get(data, "progress");
    const char *kind = json_string_value(json_object_get(data, "kind"));
    const char *waiting = json_string_value(json_object_get(progress, "waiting_for"));
    if (waiting) {
        char w[600];
        const char *why = json_string_value(json_object_get(progress, "reason"));
        snprintf(w, sizeof w, "position %lld, waiting for %s%s%s",
                 (long long)json_integer_value(json_object_get(progress, "queue_position")), waiting,
                 why ? ": " : "", why ? why : "");
        if (strcmp(w, st->last_wait)) {
            progress_break(&st->pr);
            fprintf(stderr, "job %lld: queued (%s)\n", (long long)json_integer_value(json_object_get(data, "id")), w);
            snprintf(st->last_wait, sizeof st->last_wait, "%s", w);
        }
        return;
    }
    if (!progress || !progress_due(&st->pr))
        return;
    const char *pphase = json_string_value(json_object_get(progress, "phase"));
    if (kind && !strcmp(kind, "drain"))
        progress_drain(&st->pr, progress);
    else if (kind && !strcmp(kind, "storage.move") && !strcmp(phase ? phase : "", "mirroring"))
        progress_storage(&st->pr, progress);
    else if (json_is_true(json_object_get(progress, "postcopy"))) {
        char line[256], rem[32], el[32];
        snprintf(line, sizeof line, "postcopy  %5.1f%%  elapsed %s  remaining %s (%lld pages)  page requests %lld",
                 progress_monotonic(&st->pr, "postcopy", json_real_value(json_object_get(progress, "percent"))),
                 progress_elapsed(&st->pr, progress, el, sizeof el),
                 fmt_bytes((double)json_integer_value(json_object_get(progress, "ram_remaining")), rem, sizeof rem),
                 (long long)json_integer_value(json_object_get(progress, "pages_remaining")),
                 (long long)json_integer_value(json_object_get(progress, "postcopy_requests")));
        progress_emit(&st->pr, line);
    } else if (pphase && !strcmp(pphase, "mirror"))
        progress_mirror(&st->pr, progress);   /* move --with-storage: the disk copy */
    else if (!strcmp(phase ? phase : "", "transfer"))
        progress_migration(&st->pr, progress);
}

int cli_follow_job(struct cli *c, json_t *params)
{
    return cli_follow_job_result(c, params, NULL);
}

int cli_follow_job_result(struct cli *c, json_t *params, json_t **result)
{
    struct cli_follow st = {0};
    progress_init(&st.pr, isatty(2));
    progress_on_interrupt((long long)json_integer_value(json_object_get(params, "id")), c->host);
    int code;
    json_t *final = cli_call(c, "jobs.watch", params, cli_on_job_event, &st, &code);
    progress_interrupt_off();
    progress_break(&st.pr);
    if (!final)
        return code;
    const char *state = json_string_value(json_object_get(final, "state"));
    int rc = state && !strcmp(state, "succeeded") ? 0 : EXIT_FAIL;
    if (c->json && !result)
        cli_print_final(final, rc == 0);
    else if (rc != 0 && !c->json) {
        json_t *err = json_object_get(final, "error");
        fprintf(stderr, "vmove: error: job %lld %s: %s\n", (long long)json_integer_value(json_object_get(final, "id")),
                state ? state : "?", err ? json_string_value(json_object_get(err, "message")) : "no detail");
        const char *hint = json_string_value(json_object_get(err, "hint"));
        if (hint)
            fprintf(stderr, "  hint: %s\n", hint);
        cli_print_checks(err);
    }
    if (result)
        *result = final;
    else
        json_decref(final);
    return rc;
}
