/* vmove jobs [list [--all]] | show ID | watch ID | cancel ID */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"

/* The job id in the first positional argument; false after a usage error. */
static bool job_id(struct cli *c, const struct cli_args *a, json_int_t *id)
{
    const char *s = a->argv[0];
    char *end;
    long long n = strtoll(s, &end, 10);
    if (*end || end == s || n < 0) {
        cli_usage_error(c, a->cmd, "expected a job id (a number), got \"%s\"", s);
        return false;
    }
    *id = (json_int_t)n;
    return true;
}

static int cmd_jobs_list_exec(struct cli *c, const struct cli_args *a)
{
    int code;
    json_t *r = cli_call(c, "jobs.list", json_pack("{s:b}", "all", cli_flag_set(a, "all")), NULL, NULL, &code);
    if (r && c->json)
        cli_print_json(r);
    else if (r) {
        size_t i;
        json_t *j;
        json_array_foreach(json_object_get(r, "jobs"), i, j) cli_print_job(j, false);
        if (!json_array_size(json_object_get(r, "jobs")))
            printf("no %sjobs\n", cli_flag_set(a, "all") ? "" : "active ");
    }
    json_decref(r);
    return code;
}

static int cmd_jobs_show_exec(struct cli *c, const struct cli_args *a)
{
    json_int_t id;
    if (!job_id(c, a, &id))
        return EXIT_USAGE;
    int code;
    json_t *r = cli_call(c, "jobs.show", json_pack("{s:I}", "id", id), NULL, NULL, &code);
    if (r && c->json)
        cli_print_json(r);
    else if (r) {
        cli_print_job(r, true);
        if (json_object_get(r, "finished_ms"))   /* ended: what it did, as the command that ran it said */
            progress_print_result(r);
    }
    json_decref(r);
    return code;
}

static int cmd_jobs_watch_exec(struct cli *c, const struct cli_args *a)
{
    json_int_t id;
    if (!job_id(c, a, &id))
        return EXIT_USAGE;
    json_t *final = NULL;
    int rc = cli_follow_job_result(c, json_pack("{s:I}", "id", id), &final);
    if (final && c->json)
        cli_print_json(final);
    else if (final && rc == 0)
        progress_print_result(final);   /* the same summary as the command that started it */
    json_decref(final);
    return rc;
}

static int cmd_jobs_cancel_exec(struct cli *c, const struct cli_args *a)
{
    json_int_t id;
    if (!job_id(c, a, &id))
        return EXIT_USAGE;
    int code;
    json_t *r = cli_call(c, "jobs.cancel", json_pack("{s:I}", "id", id), NULL, NULL, &code);
    if (r && c->json)
        cli_print_json(r);
    else if (r)
        printf("job %lld: cancel requested\n", (long long)id);
    json_decref(r);
    return code;
}

static const struct cli_flag jobs_list_flags[] = {
    {"all", 'a', NULL, NULL, NULL, "also the jobs that have ended", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_jobs_list_entry = {
    .noun = "jobs", .verb = "list", .summary = "list the active jobs (moves, starts, stops, drains)",
    .args = "", .flags = jobs_list_flags, .max_args = 0, .is_default = true, .fn = cmd_jobs_list_exec,
};
const struct cli_cmd cmd_jobs_show_entry = {
    .noun = "jobs", .verb = "show", .summary = "show one job with its progress",
    .args = "ID", .min_args = 1, .max_args = 1, .fn = cmd_jobs_show_exec,
};
const struct cli_cmd cmd_jobs_watch_entry = {
    .noun = "jobs", .verb = "watch", .summary = "follow a job's progress until it ends",
    .args = "ID", .min_args = 1, .max_args = 1, .fn = cmd_jobs_watch_exec,
};
const struct cli_cmd cmd_jobs_cancel_entry = {
    .noun = "jobs", .verb = "cancel", .summary = "ask a job to stop (a move leaves the VM on the source)",
    .args = "ID", .min_args = 1, .max_args = 1, .fn = cmd_jobs_cancel_exec,
};
