/* The output of a pre-flight check (`vmove move --check`, `vmove
 * move-storage --check`): a table for people, one final document for
 * scripts; and the problems a refused move lists (error "checks"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"

static const char *pf_str(const json_t *o, const char *k)
{
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void print_fix(FILE *f, const json_t *it, const char *indent)
{
    if (*pf_str(it, "fix"))
        fprintf(f, "%sfix [on %s]: %s\n", indent, pf_str(it, "host"), pf_str(it, "fix"));
    if (*pf_str(it, "hint"))
        fprintf(f, "%shint [on %s]: %s\n", indent, pf_str(it, "host"), pf_str(it, "hint"));
}

static void print_table(json_t *items, size_t problems)
{
    size_t i, warnings = 0;
    json_t *it;
    printf("%-20s %-9s %-8s %s\n", "ITEM", "RESULT", "HOST", "DETAIL");
    json_array_foreach(items, i, it) {
        const char *st = pf_str(it, "status");
        bool ok = !strcmp(st, "ok");
        warnings += !strcmp(st, "warning");
        printf("%-20s %-9s %-8s %s\n", pf_str(it, "item"), !strcmp(st, "problem") ? "PROBLEM" : !strcmp(st, "warning")
               ? "warning" : ok ? "ok" : "unchecked", pf_str(it, "host"), ok ? pf_str(it, "detail") : pf_str(it, "problem"));
        print_fix(stdout, it, "                                       ");
    }
    if (problems)
        printf("%zu problem(s): the move would fail. Run each fix on the host named, then check again.\n", problems);
    else
        printf("every check passed%s: the move can start\n", warnings ? " (see the warnings)" : "");
}

int cli_preflight(struct cli *c, const char *method, json_t *params)
{
    int code;
    json_t *r = cli_call(c, method, params, NULL, NULL, &code);
    if (!r)
        return code;
    json_t *items = json_object_get(r, "items");
    size_t problems = (size_t)json_integer_value(json_object_get(r, "problems"));
    if (c->json) {
        if (problems) {
            char msg[128];
            snprintf(msg, sizeof msg, "the check found %zu problem(s): the move would fail", problems);
            json_object_set_new(r, "error", json_pack("{s:s, s:s, s:s}", "code", "check_failed", "message", msg,
                                                      "hint", "run each item's fix on its host, then check again"));
        }
        cli_print_final(r, problems == 0);
    } else
        print_table(items, problems);
    json_decref(r);
    return problems ? EXIT_FAIL : 0;
}

void cli_print_checks(const json_t *error)
{
    size_t i;
    json_t *it;
    json_t *checks = json_object_get(error, "checks");
    if (json_array_size(checks))
        fprintf(stderr, "  everything that stands in the way (`--check` shows the same):\n");
    json_array_foreach(checks, i, it) {
        fprintf(stderr, "  - %s [%s on %s]\n", pf_str(it, "problem"), pf_str(it, "item"), pf_str(it, "host"));
        print_fix(stderr, it, "      ");
    }
}
