/* vmove move-storage NAME --to DIR [--disk ID[=DIR]]... [--keep-source]
 *                   [--bandwidth MIB] [--config-to DIR] [--no-wait] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"
#include "common/units.h"
#include "common/util.h"

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
        json_object_set_new(sel, id, eq ? cli_absolute_path(eq + 1) : json_null());
        free(id);
    }
    json_decref(list);
    return sel;
}

/* Flags that would do nothing are refused, naming the flag, as `move`
 * does: a --disk named twice (the last one would win), and --to when every
 * --disk names its own directory (no disk would go to --to's). */
static bool storage_flags_sane(struct cli *c, const struct cli_args *a)
{
    json_t *opt = json_object_get(a->opts, "disk");
    if (!opt)
        return true;
    json_t *list = json_is_array(opt) ? json_incref(opt) : json_pack("[O]", opt);
    json_t *seen = json_object();
    bool all_have_dir = true, ok = true;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) {
        const char *spec = json_string_value(v), *eq = strchr(spec, '=');
        char *id = eq ? xasprintf("%.*s", (int)(eq - spec), spec) : xstrdup(spec);
        all_have_dir = all_have_dir && eq;
        if (ok && json_object_get(seen, id)) {
            cli_usage_error(c, &cmd_move_storage_entry, "--disk %s is given twice: name each disk once", id);
            ok = false;
        }
        json_object_set_new(seen, id, json_true());
        free(id);
    }
    json_decref(seen);
    json_decref(list);
    if (ok && all_have_dir && cli_opt(a, "to")) {
        cli_usage_error(c, &cmd_move_storage_entry, "--to does nothing: every --disk names its own directory "
                                                    "(ID=DIR); drop --to, or give a --disk without =DIR");
        ok = false;
    }
    return ok;
}

/* NULL after a usage error. */
static json_t *build_params(struct cli *c, const struct cli_args *a)
{
    json_t *p = json_pack("{s:s, s:b, s:b}", "name", a->argv[0], "keep_source", cli_flag_set(a, "keep-source"),
                          "wait", false);
    if (cli_opt(a, "to"))
        json_object_set_new(p, "to", cli_absolute_path(cli_opt(a, "to")));
    if (cli_opt(a, "config-to"))
        json_object_set_new(p, "config_to", cli_absolute_path(cli_opt(a, "config-to")));
    json_t *sel = disk_selection(a);
    if (sel)
        json_object_set_new(p, "disks", sel);
    uint64_t rate = 0;
    if (!cli_opt_units(c, a, "bandwidth", UNIT_BYTERATE, 1, &rate)) {
        json_decref(p);
        return NULL;
    }
    if (rate)
        json_object_set_new(p, "bandwidth", json_integer((json_int_t)rate));
    return p;
}

/* ---- following the job: progress.c draws it ------------------------------ */

static void print_storage_failure(json_t *job)
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

static int follow_storage_job(struct cli *c, json_int_t id)
{
    struct cli_follow st = {0};
    progress_init(&st.pr, isatty(2));
    progress_on_interrupt((long long)id, c->host);
    int code;
    json_t *final = cli_call(c, "jobs.watch", json_pack("{s:I}", "id", id), cli_on_job_event, &st, &code);
    progress_interrupt_off();
    progress_break(&st.pr);
    if (!final)
        return code;
    const char *state = json_string_value(json_object_get(final, "state"));
    int rc = state && !strcmp(state, "succeeded") ? 0 : EXIT_FAIL;
    if (c->json)
        cli_print_final(final, rc == 0);
    else if (rc == 0)
        progress_print_result(final);
    else
        print_storage_failure(final);
    json_decref(final);
    return rc;
}

static int cmd_move_storage_exec(struct cli *c, const struct cli_args *a)
{
    json_t *params = storage_flags_sane(c, a) ? build_params(c, a) : NULL;
    if (!params)
        return EXIT_USAGE;
    if (cli_flag_set(a, "check") && cli_flag_set(a, "no-wait")) {
        json_decref(params);
        cli_usage_error(c, &cmd_move_storage_entry, "--no-wait does nothing with --check (a check moves nothing)");
        return EXIT_USAGE;
    }
    if (cli_flag_set(a, "check"))
        return cli_preflight(c, "vm.move-storage-check", params);
    int code;
    json_t *r = cli_call(c, "vm.move-storage", params, NULL, NULL, &code);
    int rc = code;
    if (r && cli_flag_set(a, "no-wait")) {
        cli_print_accepted(c, r);
        rc = 0;
    } else if (r) {
        rc = follow_storage_job(c, json_integer_value(json_object_get(r, "job")));
    }
    json_decref(r);
    return rc;
}

static const struct cli_flag move_storage_flags[] = {
    {"to", 0, "DIR", NULL, NULL, "the target directory of every disk (or of each --disk ID without =DIR)", 0},
    {"disk", 'd', "ID[=DIR]", "every disk", NULL, "with any --disk, only the disks named move: disk ID to DIR, or to --to's DIR", CLI_REPEAT},
    {"config-to", 0, "DIR", NULL, NULL, "also move the VM's own files (its directory) to DIR/NAME once the disks are moved", 0},
    {"keep-source", 0, NULL, NULL, NULL, "do not delete the old files after the move", 0},
    {"bandwidth", 0, "RATE", "unlimited", "MiB/s", "bytes/s, 100M or 1G (K, M, G: binary); a bare number is MiB/s: cap the background copy (QEMU's mirror speed); guest writes are never throttled", 0},
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {"check", 0, NULL, NULL, NULL,
     "move nothing: check the move (the VM's state, each target directory's path policy, writability and free "
     "space, the limits) and print each problem with the command that fixes it; exit 1 if any", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_move_storage_entry = {
    .noun = "move-storage", .summary = "move the disks of a running VM to other directories on this host, live",
    .args = "NAME", .flags = move_storage_flags, .min_args = 1, .max_args = 1, .fn = cmd_move_storage_exec,
};
