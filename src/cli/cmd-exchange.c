/* vmove vm export NAME --to DIR [--memory] [--no-wait]
 * vmove vm import [PATH] [--check] [--mode MODE] [--to DIR] [fix flags] [--plan FILE]
 *
 * Import asks vmoved for the compatibility report first (vm.import with
 * check); on a terminal it then asks about each item, offering the fixes
 * the report lists, and prints the flags that would do the same. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"
#include "common/units.h"
#include "common/util.h"

#define EXIT_INCOMPATIBLE 2

/* --json given after the command words means the same as before them. */
static void local_json(struct cli *c, const struct cli_args *a)
{
    if (cli_flag_set(a, "json"))
        c->json = true;
}

/* ---- export ------------------------------------------------------------------- */

static void print_export_result(json_t *job)
{
    json_t *r = json_object_get(job, "result");
    char t[32], sz[32];
    printf("exported %s to %s in %s (%s)\n", json_string_value(json_object_get(job, "vm")),
           json_string_value(json_object_get(r, "dir")),
           fmt_duration_ms((double)json_integer_value(json_object_get(r, "total_ms")), t, sizeof t),
           json_is_true(json_object_get(r, "live")) ? "live: a point-in-time copy of the running VM" : "stopped VM");
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(r, "disks"), i, d)
        printf("  %s: %s -> %s (%s)\n", json_string_value(json_object_get(d, "id")),
               json_string_value(json_object_get(d, "from")), json_string_value(json_object_get(d, "to")),
               fmt_bytes((double)json_integer_value(json_object_get(d, "virtual_size")), sz, sizeof sz));
    printf("  manifest: %s (sha256 of every file)\n", json_string_value(json_object_get(r, "manifest")));
}

static int cmd_vm_export_exec(struct cli *c, const struct cli_args *a)
{
    local_json(c, a);
    json_t *to = cli_absolute_path(cli_opt(a, "to"));
    json_t *params = json_pack("{s:s, s:o, s:b, s:b}", "name", a->argv[0], "to", to, "memory",
                               cli_flag_set(a, "memory"), "wait", false);
    uint64_t rate = 0;
    if (!cli_opt_units(c, a, "bandwidth", UNIT_BYTERATE, 1, &rate)) {
        json_decref(params);
        return EXIT_USAGE;
    }
    if (rate)
        json_object_set_new(params, "bandwidth", json_integer((json_int_t)rate));
    int code;
    json_t *r = cli_call(c, "vm.export", params, NULL, NULL, &code);
    if (!r)
        return code;
    if (cli_flag_set(a, "no-wait")) {
        cli_print_accepted(c, r);
        json_decref(r);
        return 0;
    }
    json_t *final = NULL;
    int rc = cli_follow_job_result(c, json_pack("{s:O}", "id", json_object_get(r, "job")), &final);
    if (final && c->json)
        cli_print_final(final, rc == 0);
    else if (final && rc == 0)
        print_export_result(final);
    json_decref(final);
    json_decref(r);
    return rc;
}

static const struct cli_flag vm_export_flags[] = {
    {"to", 0, "DIR", NULL, NULL, "the export directory to create (it must not exist; written as DIR.partial, then "
     "renamed)", CLI_REQUIRED},
    {"memory", 0, NULL, NULL, NULL, "also save the guest's memory (not supported yet: refused)", 0},
    {"bandwidth", 0, "RATE", "unlimited", "MiB/s", "bytes/s, 100M or 1G (K, M, G: binary); a bare number is MiB/s: cap the copy of each disk of a running VM (QEMU's backup speed)", 0},
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {"json", 0, NULL, NULL, NULL, "machine-readable output (as the global --json)", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_vm_export_entry = {
    .noun = "vm", .verb = "export",
    .summary = "export a running or stopped VM: a point-in-time copy of its disks, its config and a manifest",
    .args = "NAME", .flags = vm_export_flags, .min_args = 1, .max_args = 1, .fn = cmd_vm_export_exec,
};

/* ---- import: answers from flags and --plan ------------------------------------------ */

static json_t *opt_list(const struct cli_args *a, const char *name)
{
    json_t *o = json_object_get(a->opts, name);
    return !o ? json_array() : json_is_array(o) ? json_incref(o) : json_pack("[O]", o);
}

/* "512", "512M", "2G": MiB (common/units.h); -1 if not a whole number of MiB. */
static long long parse_mib(const char *s)
{
    uint64_t bytes;
    const char *why;
    if (units_parse(s, UNIT_MEMORY, &bytes, &why) < 0 || bytes % (1ULL << 20))
        return -1;
    return (long long)(bytes >> 20);
}

/* OLD=NEW words into {OLD: NEW} (values absolute paths if paths). */
static int put_pairs(struct cli *c, const struct cli_args *a, const char *flag, json_t *obj, bool paths)
{
    json_t *list = opt_list(a, flag);
    size_t i;
    json_t *v;
    int rc = 0;
    json_array_foreach(list, i, v) {
        const char *s = json_string_value(v), *eq = strchr(s, '=');
        if (!eq || eq == s || !eq[1]) {
            cli_usage_error(c, a->cmd, "--%s %s: expected %s", flag, s, paths ? "ID=PATH" : "OLD=NEW");
            rc = -1;
            break;
        }
        char *k = xasprintf("%.*s", (int)(eq - s), s);
        json_object_set_new(obj, k, paths ? cli_absolute_path(eq + 1) : json_string(eq + 1));
        free(k);
    }
    json_decref(list);
    return rc;
}

static int flags_to_answers(struct cli *c, const struct cli_args *a, json_t *ans)
{
    const char *s;
    if ((s = cli_opt(a, "name")))
        json_object_set_new(ans, "name", json_string(s));
    if ((s = cli_opt(a, "machine")))
        json_object_set_new(ans, "machine", json_string(s));
    if ((s = cli_opt(a, "cpu-model")))
        json_object_set_new(ans, "cpu_model", json_string(s));
    if ((s = cli_opt(a, "memory"))) {
        long long mib = parse_mib(s);
        if (mib <= 0) {
            cli_usage_error(c, a->cmd, "--memory %s: expected MiB (512) or a size (512M, 2G)", s);
            return -1;
        }
        json_object_set_new(ans, "memory_mib", json_integer(mib));
    }
    long long cpus = 0;
    if (!cli_opt_number(c, a, "cpus", 1, &cpus))
        return -1;
    if (cpus)
        json_object_set_new(ans, "cpus", json_integer(cpus));
    if (cli_flag_set(a, "discard-saved-state"))
        json_object_set_new(ans, "discard_saved_state", json_true());
    json_t *map = json_object_get(ans, "map_switch"), *disks = json_object_get(ans, "disks");
    if (!json_is_object(map))
        json_object_set_new(ans, "map_switch", map = json_object());
    if (!json_is_object(disks))
        json_object_set_new(ans, "disks", disks = json_object());
    if (put_pairs(c, a, "map-switch", map, false) < 0 || put_pairs(c, a, "disk", disks, true) < 0)
        return -1;
    json_t *drops = json_object_get(ans, "drop_nics"), *dirs = json_object_get(ans, "search_dirs");
    if (!json_is_array(drops))
        json_object_set_new(ans, "drop_nics", drops = json_array());
    if (!json_is_array(dirs))
        json_object_set_new(ans, "search_dirs", dirs = json_array());
    json_t *list = opt_list(a, "drop-nic");
    size_t i;
    json_t *v;
    int rc = 0;
    json_array_foreach(list, i, v) {
        const char *w = json_string_value(v);
        char *end;
        long n = strtol(w, &end, 10);
        if (!*w || *end || n < 0) {
            cli_usage_error(c, a->cmd, "--drop-nic %s: expected the NIC's index (0, 1, ...)", w);
            rc = -1;
            break;
        }
        json_array_append_new(drops, json_integer(n));
    }
    json_decref(list);
    list = opt_list(a, "search-dir");
    json_array_foreach(list, i, v) json_array_append_new(dirs, cli_absolute_path(json_string_value(v)));
    json_decref(list);
    return rc;
}

/* --plan FILE: a report (its "answers" and source path) or bare answers. */
static json_t *load_plan(struct cli *c, const char *file, const char **path_out)
{
    json_error_t je;
    json_t *j = json_load_file(file, 0, &je);
    if (!json_is_object(j)) {
        cli_error(c, "--plan %s: %s (expected the JSON report of `vmove vm import --check --json`)", file,
                  j ? "not a JSON object" : je.text);
        json_decref(j);
        return NULL;
    }
    json_t *ans = json_object_get(j, "answers");
    const char *p = json_string_value(json_object_get(json_object_get(j, "source"), "path"));
    static char path[4096];
    snprintf(path, sizeof path, "%s", p ? p : "");
    *path_out = p ? path : NULL;
    json_t *out = json_is_object(ans) ? json_deep_copy(ans) : json_deep_copy(j);
    json_decref(j);
    /* Unanswered keys stay null in a report: they are not answers. */
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(out, tmp, k, v) if (json_is_null(v)) json_object_del(out, k);
    return out;
}

static json_t *import_params(struct cli *c, const struct cli_args *a, json_t **answers)
{
    const char *plan_path = NULL;
    json_t *ans = json_object();
    if (cli_opt(a, "plan")) {
        json_decref(ans);
        if (!(ans = load_plan(c, cli_opt(a, "plan"), &plan_path)))
            return NULL;
    }
    const char *path = a->argc ? a->argv[0] : plan_path;
    if (!path) {
        cli_usage_error(c, a->cmd, "give the PATH of the export or VM directory (or a --plan that names it)");
        json_decref(ans);
        return NULL;
    }
    if (flags_to_answers(c, a, ans) < 0) {
        json_decref(ans);
        return NULL;
    }
    const char *mode = cli_opt(a, "mode");
    if (mode)
        json_object_set_new(ans, "mode", json_string(mode));
    json_t *p = json_pack("{s:o, s:O}", "path", cli_absolute_path(path), "answers", ans);
    if (cli_opt(a, "to"))
        json_object_set_new(p, "to", cli_absolute_path(cli_opt(a, "to")));
    *answers = ans;
    return p;
}

/* ---- import: the report in words ------------------------------------------------------- */

static void print_fixes(FILE *f, json_t *fixes)
{
    size_t i;
    json_t *x;
    if (!json_array_size(fixes))
        return;
    fputs("      fix:", f);
    json_array_foreach(fixes, i, x) {
        const char *arg = json_string_value(json_object_get(x, "arg"));
        fprintf(f, "%s %s%s%s", i ? " |" : "", json_string_value(json_object_get(x, "flag")), arg && *arg ? " " : "",
                arg ? arg : "");
        if (json_object_get(x, "max"))
            fprintf(f, " (at most %lld)", (long long)json_integer_value(json_object_get(x, "max")));
    }
    fputc('\n', f);
}

static void print_items(FILE *f, json_t *items)
{
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it) {
        fprintf(f, "  %-8s %-20s %s\n", json_string_value(json_object_get(it, "severity")),
                json_string_value(json_object_get(it, "code")), json_string_value(json_object_get(it, "message")));
        print_fixes(f, json_object_get(it, "fixes"));
    }
}

static void print_report(json_t *rep)
{
    json_t *bad = json_object_get(rep, "incompatibilities");
    const char *name = json_string_value(json_object_get(json_object_get(rep, "vm"), "name"));
    printf("import of %s from %s (%s, mode %s) on host %s: %s\n", name ? name : "?",
           json_string_value(json_object_get(json_object_get(rep, "source"), "path")),
           json_string_value(json_object_get(json_object_get(rep, "source"), "kind")),
           json_string_value(json_object_get(rep, "mode")), json_string_value(json_object_get(rep, "host")),
           json_array_size(bad) ? "does not fit" : "compatible");
    print_items(stdout, bad);
    print_items(stdout, json_object_get(rep, "warnings"));
    print_items(stdout, json_object_get(rep, "info"));
}

/* ---- import: asking ----------------------------------------------------------------------- */

/* A line from stdin without its newline; NULL at EOF. */
static char *ask(const char *prompt, char *buf, size_t len)
{
    fputs(prompt, stdout);
    fflush(stdout);
    if (!fgets(buf, (int)len, stdin))
        return NULL;
    buf[strcspn(buf, "\r\n")] = 0;
    return buf;
}

static void put_answer(json_t *ans, json_t *fix, json_t *value)
{
    const char *key = json_string_value(json_object_get(fix, "key"));
    const char *mk = json_string_value(json_object_get(fix, "map_key"));
    json_t *slot = json_object_get(ans, key);
    if (mk) {
        if (!json_is_object(slot))
            json_object_set_new(ans, key, slot = json_object());
        json_object_set_new(slot, mk, value);
    } else if (json_is_array(slot)) {
        json_array_append_new(slot, value);
    } else {
        json_object_set_new(ans, key, value);
    }
}

/* The value typed for an input fix; NULL to ask again. */
static json_t *typed_value(json_t *fix, const char *s, char *shown, size_t shown_len)
{
    const char *input = json_string_value(json_object_get(fix, "input"));
    snprintf(shown, shown_len, "%s", s);
    if (!strcmp(input, "MIB") || !strcmp(input, "N")) {
        long long v = !strcmp(input, "MIB") ? parse_mib(s) : atoll(s);
        json_t *max = json_object_get(fix, "max");
        if (v <= 0 || (max && v > json_integer_value(max)))
            return NULL;
        snprintf(shown, shown_len, "%lld", v);
        return json_integer(v);
    }
    if (!*s)
        return NULL;
    return !strcmp(input, "PATH") || !strcmp(input, "DIR") ? cli_absolute_path(s) : json_string(s);
}

/* The flag as typed on a command line, with the value filled in. */
static char *flag_text(json_t *fix, const char *shown)
{
    const char *flag = json_string_value(json_object_get(fix, "flag"));
    const char *arg = json_string_value(json_object_get(fix, "arg"));
    const char *mk = json_string_value(json_object_get(fix, "map_key"));
    if (!json_object_get(fix, "input"))
        return xasprintf("%s%s%s", flag, arg && *arg ? " " : "", arg ? arg : "");
    return mk ? xasprintf("%s %s=%s", flag, mk, shown) : xasprintf("%s %s", flag, shown);
}

/* One item: its fixes as a numbered menu.  0 answered, 1 skipped, -1 quit. */
static int ask_item(json_t *item, size_t k, size_t n, json_t *ans, json_t *flags)
{
    json_t *fixes = json_object_get(item, "fixes");
    printf("\n[%zu/%zu] %s: %s\n", k, n, json_string_value(json_object_get(item, "code")),
           json_string_value(json_object_get(item, "message")));
    size_t i;
    json_t *f;
    json_array_foreach(fixes, i, f) {
        char *t = flag_text(f, json_string_value(json_object_get(f, "input")));
        printf("  %zu) %s\n", i + 1, t);
        free(t);
    }
    printf("  s) skip   q) quit\n");
    char buf[4096], prompt[64];
    for (;;) {
        snprintf(prompt, sizeof prompt, "choice [1-%zu, s, q]: ", json_array_size(fixes));
        if (!ask(prompt, buf, sizeof buf) || !strcmp(buf, "q"))
            return -1;
        if (!strcmp(buf, "s"))
            return 1;
        long c = strtol(buf, NULL, 10);
        if (c < 1 || (size_t)c > json_array_size(fixes))
            continue;
        f = json_array_get(fixes, (size_t)c - 1);
        json_t *value = json_incref(json_object_get(f, "value"));
        char shown[4096] = "";
        while (!value) {
            json_t *max = json_object_get(f, "max");
            char q[128];
            if (max)
                snprintf(q, sizeof q, "%s (at most %lld): ", json_string_value(json_object_get(f, "input")),
                         (long long)json_integer_value(max));
            else
                snprintf(q, sizeof q, "%s: ", json_string_value(json_object_get(f, "input")));
            if (!ask(q, buf, sizeof buf))
                return -1;
            value = typed_value(f, buf, shown, sizeof shown);
        }
        put_answer(ans, f, value);
        char *t = flag_text(f, shown);
        json_array_append_new(flags, json_string(t));
        free(t);
        return 0;
    }
}

/* Ask about every item that has fixes; prints the equivalent flags.  -1 if
 * the user quit. */
static int interview(json_t *report, json_t *ans, const char *path)
{
    json_t *items = json_object_get(report, "incompatibilities");
    size_t n = 0, i, k = 0;
    json_t *it;
    json_array_foreach(items, i, it) n += json_array_size(json_object_get(it, "fixes")) > 0;
    json_t *flags = json_array();
    int rc = 0;
    json_array_foreach(items, i, it) {
        if (!json_array_size(json_object_get(it, "fixes")))
            continue;
        if (ask_item(it, ++k, n, ans, flags) < 0) {
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        printf("\nthe same without questions:\n  vmove vm import %s", path);
        const char *mode = json_string_value(json_object_get(ans, "mode"));
        bool mode_flag = false;
        json_array_foreach(flags, i, it) mode_flag |= !strncmp(json_string_value(it), "--mode ", 7);
        if (mode && !mode_flag)
            printf(" --mode %s", mode);
        json_array_foreach(flags, i, it) printf(" %s", json_string_value(it));
        printf("\n\n");
    }
    json_decref(flags);
    return rc;
}

/* ---- import: the command ------------------------------------------------------------------- */

static json_t *call_import(struct cli *c, json_t *params, bool check, int *code)
{
    json_object_set_new(params, "check", json_boolean(check));
    return cli_call(c, "vm.import", json_incref(params), NULL, NULL, code);
}

/* The report as the final document; an incompatible one is a failure
 * ("ok": false, error code "incompatible", exit status 2: docs/JSON.md). */
static void print_report_json(json_t *rep, bool compatible)
{
    if (!compatible) {
        char msg[160];
        snprintf(msg, sizeof msg, "the import is not possible as asked: %zu problem(s) in \"incompatibilities\"",
                 json_array_size(json_object_get(rep, "incompatibilities")));
        json_object_set_new(rep, "error", json_pack("{s:s, s:s, s:s}", "code", "incompatible", "message", msg, "hint",
                                                    "each problem lists its fixes: flags, or an edited --plan"));
    }
    cli_print_final(rep, compatible);
}

static int do_import(struct cli *c, json_t *params)
{
    int code;
    json_t *r = call_import(c, params, false, &code);
    if (!r)
        return code;
    json_t *vm = json_object_get(r, "vm");
    if (c->json)
        cli_print_json(r);
    else
        printf("imported %s (uuid %s) into %s; start it with `vmove vm start %s`\n",
               json_string_value(json_object_get(vm, "name")),
               json_string_value(json_object_get(json_object_get(vm, "config"), "uuid")),
               json_string_value(json_object_get(vm, "dir")), json_string_value(json_object_get(vm, "name")));
    json_decref(r);
    return 0;
}

static int cmd_vm_import_exec(struct cli *c, const struct cli_args *a)
{
    local_json(c, a);
    json_t *ans = NULL;
    json_t *params = import_params(c, a, &ans);
    if (!params)
        return EXIT_USAGE;
    int code, rc;
    json_t *rep = call_import(c, params, true, &code);
    if (!rep) {
        rc = code;
    } else if (cli_flag_set(a, "check")) {
        rc = json_is_true(json_object_get(rep, "compatible")) ? 0 : EXIT_INCOMPATIBLE;
        if (c->json)
            print_report_json(rep, rc == 0);
        else
            print_report(rep);
    } else if (json_is_true(json_object_get(rep, "compatible"))) {
        rc = do_import(c, params);
    } else if (c->json || !isatty(0) || !isatty(1)) {
        /* Not a conversation: the report says what to fix, nothing changed. */
        if (c->json)
            print_report_json(rep, false);
        else
            print_report(rep);
        fprintf(stderr, "vmove: error: nothing was imported: fix the items above (flags, or --plan)\n");
        rc = EXIT_INCOMPATIBLE;
    } else {
        print_report(rep);
        const char *path = json_string_value(json_object_get(params, "path"));
        if (interview(rep, ans, path) < 0) {
            fprintf(stderr, "vmove: nothing was imported\n");
            rc = EXIT_INCOMPATIBLE;
        } else {
            json_decref(rep);
            rep = call_import(c, params, true, &code);
            if (!rep)
                rc = code;
            else if (!json_is_true(json_object_get(rep, "compatible"))) {
                print_report(rep);
                fprintf(stderr, "vmove: error: nothing was imported: the answers leave the items above\n");
                rc = EXIT_INCOMPATIBLE;
            } else
                rc = do_import(c, params);
        }
    }
    json_decref(rep);
    json_decref(ans);
    json_decref(params);
    return rc;
}

static const struct cli_flag vm_import_flags[] = {
    {"check", 0, NULL, NULL, NULL, "only print the compatibility report (exit 2 if the VM does not fit); changes "
     "nothing", 0},
    {"mode", 0, "MODE", "register", NULL, "register (use the files where they are), copy (copy or convert the disks, "
     "same uuid) or copy-new-id (a copy with a new uuid and new MACs)", 0},
    {"to", 0, "DIR", "the VM's directory on this host", NULL, "copy modes: put the disks in DIR/NAME", 0},
    {"name", 0, "NAME", "the config's", NULL, "import under another name", 0},
    {"memory", 0, "MIB", "the config's", NULL, "guest memory in MiB (or a size: 512M, 2G)", 0},
    {"cpus", 0, "N", "the config's", NULL, "virtual CPUs", 0},
    {"machine", 0, "TYPE", "the config's", NULL, "the QEMU machine type", 0},
    {"cpu-model", 0, "MODEL", "the config's", NULL, "the QEMU CPU model", 0},
    {"map-switch", 0, "OLD=NEW", NULL, NULL, "connect the NICs on switch OLD to this host's switch NEW", CLI_REPEAT},
    {"drop-nic", 0, "N", NULL, NULL, "leave out NIC number N (from 0, as in the config)", CLI_REPEAT},
    {"disk", 0, "ID=PATH", NULL, NULL, "disk ID is the image at PATH", CLI_REPEAT},
    {"search-dir", 0, "DIR", NULL, NULL, "look for missing disks (by file name) in DIR", CLI_REPEAT},
    {"discard-saved-state", 0, NULL, NULL, NULL, "import without the saved memory: the VM boots fresh", 0},
    {"plan", 0, "FILE", NULL, NULL, "take the answers (and PATH) from a report of `--check --json`, edited", 0},
    {"json", 0, NULL, NULL, NULL, "machine-readable output (as the global --json); never asks", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_vm_import_entry = {
    .noun = "vm", .verb = "import",
    .summary = "import a VM from an export or a config and its disks, after a compatibility check",
    .args = "[PATH]", .flags = vm_import_flags, .min_args = 0, .max_args = 1, .fn = cmd_vm_import_exec,
};
