/* vmove jobs [list [--all]] | show ID | watch ID | cancel ID */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static int parse_id(struct cli *c, const char *s, long long *id)
{
    char *end;
    *id = s ? strtoll(s, &end, 10) : -1;
    if (!s || *end || *id < 0) {
        cli_error(c, "expected a job id (a number), got \"%s\"", s ? s : "");
        return -1;
    }
    return 0;
}

int cmd_jobs(struct cli *c, int argc, char **argv)
{
    static const struct cli_flag flags[] = {{"all", 'a', false, false}, {NULL, 0, false, false}};
    const char *verb = argc ? argv[0] : "list";
    struct cli_args a;
    if (cli_parse(argc ? argc - 1 : 0, argv + 1, flags, &a) < 0)
        return EXIT_USAGE;
    int code = 0;
    long long id = -1;
    if (!strcmp(verb, "list")) {
        json_t *r = cli_call(c, "jobs.list", json_pack("{s:b}", "all", cli_flag_set(&a, "all")), NULL, NULL, &code);
        if (r && c->json)
            cli_print_json(r);
        else if (r) {
            size_t i;
            json_t *j;
            json_array_foreach(json_object_get(r, "jobs"), i, j) cli_print_job(j, false);
            if (!json_array_size(json_object_get(r, "jobs")))
                printf("no %sjobs\n", cli_flag_set(&a, "all") ? "" : "active ");
        }
        json_decref(r);
    } else if (!strcmp(verb, "show") || !strcmp(verb, "cancel") || !strcmp(verb, "watch")) {
        if (a.argc != 1 || parse_id(c, a.argv[0], &id) < 0) {
            cli_args_free(&a);
            return EXIT_USAGE;
        }
        if (!strcmp(verb, "watch")) {
            cli_args_free(&a);
            return cli_follow_job(c, json_pack("{s:I}", "id", (json_int_t)id));
        }
        json_t *r = cli_call(c, !strcmp(verb, "show") ? "jobs.show" : "jobs.cancel",
                             json_pack("{s:I}", "id", (json_int_t)id), NULL, NULL, &code);
        if (r && c->json)
            cli_print_json(r);
        else if (r && !strcmp(verb, "cancel"))
            printf("job %lld: cancel requested\n", id);
        else if (r)
            cli_print_job(r, true);
        json_decref(r);
    } else {
        cli_error(c, "unknown jobs command \"%s\" (list, show, watch, cancel)", verb);
        code = EXIT_USAGE;
    }
    cli_args_free(&a);
    return code;
}
