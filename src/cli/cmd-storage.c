/* vmove move-storage NAME --to DIR [--disk ID[=DIR]]... [--keep-source]
 *                   [--bandwidth MIB] [--config-to DIR] [--no-wait] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "common/util.h"

static const struct cli_flag storage_flags[] = {
    {"to", 0, true, false},        {"disk", 'd', true, true},     {"config-to", 0, true, false},
    {"keep-source", 0, false, false}, {"bandwidth", 0, true, false}, {"no-wait", 0, false, false},
    {NULL, 0, false, false}};

static void usage(void)
{
    fprintf(stderr, "usage: vmove move-storage NAME [--to DIR] [--disk ID[=DIR]]... [--keep-source]\n"
                    "       [--bandwidth MIB] [--config-to DIR] [--no-wait]\n"
                    "  moves all disks (or those given with --disk) of a running VM to DIR, live\n");
}

/* The daemon resolves paths in its own working directory: send absolute ones. */
static json_t *abs_dir(const char *d)
{
    if (d[0] == '/')
        return json_string(d);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return json_string(d);
    char *p = xasprintf("%s/%s", cwd, d);
    json_t *j = json_string(p);
    free(p);
    return j;
}

/* {"vda": DIR|null, ...} from --disk ID or --disk ID=DIR (repeatable). */
static json_t *disk_selection(const struct cli_args *a)
{
    json_t *opt = json_object_get(a->opts, "disk");
    if (!opt)
        return NULL;
    json_t *list = json_is_array(opt) ? json_incref(opt) : json_pack("[O]", opt);
    json_t *sel = json_object();
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        const char *spec = json_string_value(v);
        const char *eq = strchr(spec, '=');
        char *id = eq ? xasprintf("%.*s", (int)(eq - spec), spec) : xstrdup(spec);
        json_object_set_new(sel, id, eq ? abs_dir(eq + 1) : json_null());
        free(id);
    }
    json_decref(list);
    return sel;
}

static json_t *build_params(struct cli *c, const struct cli_args *a, bool *ok)
{
    *ok = true;
    json_t *p = json_pack("{s:s, s:b, s:b}", "name", a->argv[0], "keep_source", cli_flag_set(a, "keep-source"),
                          "wait", false);
    if (cli_opt(a, "to"))
        json_object_set_new(p, "to", abs_dir(cli_opt(a, "to")));
    if (cli_opt(a, "config-to"))
        json_object_set_new(p, "config_to", abs_dir(cli_opt(a, "config-to")));
    json_t *sel = disk_selection(a);
    if (sel)
        json_object_set_new(p, "disks", sel);
    const char *bw = cli_opt(a, "bandwidth");
    if (bw) {
        char *end;
        long long mib = strtoll(bw, &end, 10);
        if (*end || end == bw || mib <= 0) {
            cli_error(c, "--bandwidth \"%s\": expected a whole number of MiB/s", bw);
            *ok = false;
        }
        json_object_set_new(p, "bandwidth", json_integer(mib * 1024 * 1024));
    }
    return p;
}

/* ---- following the job --------------------------------------------------- */

struct follow {
    char last_phase[64];
    bool tty, line_open;
    uint64_t last_print_ms;
};

static void print_mirror(struct follow *st, json_t *p)
{
    fprintf(stderr, "%smirroring %5.1f%%", st->tty ? "\r\033[K" : "", json_real_value(json_object_get(p, "percent")));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(p, "disks"), i, d) {
        char done[32], total[32], rate[32];
        fprintf(stderr, "  %s %s/%s %s/s%s", json_string_value(json_object_get(d, "id")),
                fmt_bytes((double)json_integer_value(json_object_get(d, "done")), done, sizeof done),
                fmt_bytes((double)json_integer_value(json_object_get(d, "total")), total, sizeof total),
                fmt_bytes(json_real_value(json_object_get(d, "rate_Bps")), rate, sizeof rate),
                json_is_true(json_object_get(d, "ready")) ? " ready" : "");
    }
    fputs(st->tty ? "" : "\n", stderr);
    st->line_open = st->tty;
}

static void on_event(struct cli *c, const char *event, json_t *data, void *arg)
{
    struct follow *st = arg;
    if (cli_event_json(c, event, data))
        return;
    const char *phase = json_string_value(json_object_get(data, "phase"));
    if (phase && strcmp(phase, st->last_phase)) {
        if (st->line_open)
            fputc('\n', stderr);
        st->line_open = false;
        fprintf(stderr, "job %lld: %s\n", (long long)json_integer_value(json_object_get(data, "id")), phase);
        snprintf(st->last_phase, sizeof st->last_phase, "%s", phase);
    }
    json_t *progress = json_object_get(data, "progress");
    if (progress && phase && !strcmp(phase, "mirroring") && (st->tty || now_ms() - st->last_print_ms >= 1000)) {
        print_mirror(st, progress);
        st->last_print_ms = now_ms();
    }
}

static void print_result(json_t *job)
{
    json_t *r = json_object_get(job, "result");
    char a[32], b[32];
    printf("moved the storage of %s in %s\n", json_string_value(json_object_get(job, "vm")),
           fmt_duration_ms((double)json_integer_value(json_object_get(r, "total_ms")), a, sizeof a));
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(r, "disks"), i, d)
        printf("  %s: %s -> %s  (%s mirrored in %lld ms, pivot %lld ms)\n", json_string_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "from")), json_string_value(json_object_get(d, "to")),
               fmt_bytes((double)json_integer_value(json_object_get(d, "bytes")), b, sizeof b),
               (long long)json_integer_value(json_object_get(d, "mirror_ms")),
               (long long)json_integer_value(json_object_get(d, "pivot_ms")));
    printf("  source files %s\n", json_is_true(json_object_get(r, "kept_source")) ? "kept" : "deleted");
    json_array_foreach(json_object_get(r, "notes"), i, d) printf("  note: %s\n", json_string_value(d));
}

static void print_failure(json_t *job)
{
    json_t *err = json_object_get(job, "error");
    fprintf(stderr, "vmove: error: job %lld %s: %s\n", (long long)json_integer_value(json_object_get(job, "id")),
            json_string_value(json_object_get(job, "state")), json_string_value(json_object_get(err, "message")));
    size_t i;
    json_t *n;
    json_array_foreach(json_object_get(err, "notes"), i, n) fprintf(stderr, "  note: %s\n", json_string_value(n));
    const char *hint = json_string_value(json_object_get(err, "hint"));
    if (hint)
        fprintf(stderr, "  hint: %s\n", hint);
}

static int follow_job(struct cli *c, json_int_t id)
{
    struct follow st = {.tty = isatty(2)};
    int code;
    json_t *final = cli_call(c, "jobs.watch", json_pack("{s:I}", "id", id), on_event, &st, &code);
    if (st.line_open)
        fputc('\n', stderr);
    if (!final)
        return code;
    const char *state = json_string_value(json_object_get(final, "state"));
    int rc = state && !strcmp(state, "succeeded") ? 0 : EXIT_FAIL;
    if (c->json)
        cli_print_json(final);
    else if (rc == 0)
        print_result(final);
    else
        print_failure(final);
    json_decref(final);
    return rc;
}

int cmd_move_storage(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (cli_parse(argc, argv, storage_flags, &a) < 0 || a.argc != 1) {
        if (a.opts)
            cli_args_free(&a);
        usage();
        return EXIT_USAGE;
    }
    bool ok;
    json_t *params = build_params(c, &a, &ok);
    if (!ok) {
        json_decref(params);
        cli_args_free(&a);
        return EXIT_USAGE;
    }
    int code;
    json_t *r = cli_call(c, "vm.move-storage", params, NULL, NULL, &code);
    int rc = code;
    if (r && cli_flag_set(&a, "no-wait")) {
        cli_print_accepted(c, r);
        rc = 0;
    } else if (r) {
        rc = follow_job(c, json_integer_value(json_object_get(r, "job")));
    }
    json_decref(r);
    cli_args_free(&a);
    return rc;
}
