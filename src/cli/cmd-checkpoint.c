/* vmove checkpoint create VM NAME [--memory] | list VM | apply VM NAME |
 * delete VM NAME   (docs/CHECKPOINTS.md) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli.h"
#include "common/units.h"
#include "cli/cmd-table.h"
#include "common/util.h"

/* Send, follow the job to its end, print one line (or the record with --json). */
static int run_job(struct cli *c, const char *method, json_t *params, const char *done_fmt, bool no_wait)
{
    int code;
    json_t *r = cli_call(c, method, json_incref(params), NULL, NULL, &code);   /* cli_call takes its own */
    if (!r) {
        json_decref(params);
        return code;
    }
    json_int_t id = json_integer_value(json_object_get(r, "job"));
    if (no_wait) {
        cli_print_accepted(c, r);
        json_decref(r);
        json_decref(params);
        return 0;
    }
    json_decref(r);
    json_t *final = NULL;
    int rc = cli_follow_job_result(c, json_pack("{s:I}", "id", id), &final);
    if (c->json && final)
        cli_print_final(final, rc == 0);
    else if (rc != 0 && final) {
        json_t *err = json_object_get(final, "error");
        fprintf(stderr, "vmove: error: %s\n", json_string_value(json_object_get(err, "message")));
        const char *hint = json_string_value(json_object_get(err, "hint"));
        if (hint)
            fprintf(stderr, "  hint: %s\n", hint);
    }
    if (rc == 0 && !c->json) {
        const char *vm = json_string_value(json_object_get(params, "vm"));
        printf(done_fmt, json_string_value(json_object_get(params, "name")), vm);
        json_int_t ms = json_integer_value(json_object_get(json_object_get(final, "result"), "ms"));
        if (ms)
            printf(" (%lld ms)", (long long)ms);
        printf("\n");
    }
    json_decref(final);
    json_decref(params);
    return rc;
}

static json_t *params(const struct cli_args *a)
{
    return json_pack("{s:s, s:s, s:b}", "vm", a->argv[0], "name", a->argv[1], "wait", false);
}

static int cmd_ck_create_exec(struct cli *c, const struct cli_args *a)
{
    json_t *p = params(a);
    json_object_set_new(p, "memory", json_boolean(cli_flag_set(a, "memory")));
    return run_job(c, "checkpoint.create", p, "created checkpoint %s of %s", cli_flag_set(a, "no-wait"));
}

static int cmd_ck_apply_exec(struct cli *c, const struct cli_args *a)
{
    return run_job(c, "checkpoint.apply", params(a), "applied checkpoint %s to %s", cli_flag_set(a, "no-wait"));
}

static int cmd_ck_delete_exec(struct cli *c, const struct cli_args *a)
{
    uint64_t rate = 0;
    if (!cli_opt_units(c, a, "bandwidth", UNIT_BYTERATE, 1, &rate))
        return EXIT_USAGE;
    json_t *p = params(a);
    if (rate)
        json_object_set_new(p, "bandwidth", json_integer((json_int_t)rate));
    return run_job(c, "checkpoint.delete", p, "deleted checkpoint %s of %s (merged, files removed)",
                   cli_flag_set(a, "no-wait"));
}

/* ---- list: the tree, indented under parents ------------------------------- */

static void print_date(json_int_t ms, char *buf, size_t len)
{
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%SZ", &tm);
}

static void print_subtree(json_t *list, json_t *parent, const char *current, json_t *now, int depth)
{
    size_t i;
    json_t *ck;
    json_array_foreach(list, i, ck) {
        json_t *p = json_object_get(ck, "parent");
        if (!(json_is_null(parent) ? !p || json_is_null(p) : json_equal(p, parent)))
            continue;
        const char *name = json_string_value(json_object_get(ck, "name"));
        char date[32], size[32];
        print_date(json_integer_value(json_object_get(ck, "created_ms")), date, sizeof date);
        fmt_bytes((double)json_integer_value(json_object_get(ck, "bytes")), size, sizeof size);
        const char *st = json_string_value(json_object_get(ck, "state"));
        printf("%*s%s  %s  %s  %s%s%s\n", depth * 2, "", name, date, json_string_value(json_object_get(ck, "kind")),
               size, st && strcmp(st, "ok") ? "  " : "", st && strcmp(st, "ok") ? st : "");
        json_t *nm = json_object_get(ck, "name");
        print_subtree(list, nm, current, now, depth + 1);
        if (current && !strcmp(current, name)) {
            fmt_bytes((double)json_integer_value(json_object_get(now, "bytes")), size, sizeof size);
            printf("%*s* now  %s written since\n", (depth + 1) * 2, "", size);
        }
    }
}

static int cmd_ck_list_exec(struct cli *c, const struct cli_args *a)
{
    int code;
    json_t *r = cli_call(c, "checkpoint.list", json_pack("{s:s}", "vm", a->argv[0]), NULL, NULL, &code);
    if (!r)
        return code;
    if (c->json) {
        cli_print_json(r);
    } else {
        json_t *list = json_object_get(r, "checkpoints");
        const char *cur = json_string_value(json_object_get(r, "current"));
        if (!json_array_size(list))
            printf("VM %s has no checkpoints\n", a->argv[0]);
        else
            print_subtree(list, json_null(), cur, json_object_get(r, "now"), 0);
    }
    json_decref(r);
    return 0;
}

static const struct cli_flag ck_create_flags[] = {
    {"memory", 0, NULL, "disk-only", NULL, "also save the guest's memory at the same instant (QEMU background snapshot; the guest runs on)", 0},
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag ck_job_flags[] = {
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

static const struct cli_flag ck_delete_flags[] = {
    {"bandwidth", 0, "RATE", "unlimited", "MiB/s", "bytes/s, 100M or 1G (K, M, G: binary); a bare number is MiB/s: cap a live merge (QEMU's commit speed); guest writes are never throttled", 0},
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_checkpoint_create_entry = {
    .noun = "checkpoint", .verb = "create",
    .summary = "take a checkpoint of every disk of a VM (running or stopped): one qcow2 overlay per disk, all at one instant",
    .args = "VM NAME", .flags = ck_create_flags, .min_args = 2, .max_args = 2, .fn = cmd_ck_create_exec,
};
const struct cli_cmd cmd_checkpoint_list_entry = {
    .noun = "checkpoint", .verb = "list", .summary = "show a VM's checkpoint tree: current position, sizes, dates",
    .args = "VM", .min_args = 1, .max_args = 1, .fn = cmd_ck_list_exec,
};
const struct cli_cmd cmd_checkpoint_apply_entry = {
    .noun = "checkpoint", .verb = "apply",
    .summary = "go back to a checkpoint (the state since is discarded); a running VM boots again from it",
    .args = "VM NAME", .flags = ck_job_flags, .min_args = 2, .max_args = 2, .fn = cmd_ck_apply_exec,
};
const struct cli_cmd cmd_checkpoint_delete_entry = {
    .noun = "checkpoint", .verb = "delete",
    .summary = "merge a checkpoint into its neighbour (live while the VM runs) and delete its files",
    .args = "VM NAME", .flags = ck_delete_flags, .min_args = 2, .max_args = 2, .fn = cmd_ck_delete_exec,
};
