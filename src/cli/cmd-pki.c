/* vmove pki init CADIR | issue-host NAME --ca CADIR --out DIR | issue-user NAME --ca CADIR --out DIR
 * Local file operations: no daemon involved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"
#include "common/pki.h"

static int pki_result(struct cli *c, int rc, const char *err, json_t *ok)
{
    if (rc < 0) {
        cli_error(c, "%s", err);
        json_decref(ok);
        return EXIT_FAIL;
    }
    if (c->json)
        cli_print_json(ok);
    else
        printf("%s\n", json_string_value(json_object_get(ok, "message")));
    json_decref(ok);
    return 0;
}

static int cmd_pki_init_exec(struct cli *c, const struct cli_args *a)
{
    char err[1024] = "";
    int r = pki_init_ca(a->argv[0], "cluster", err, sizeof err);
    return pki_result(c, r, err, json_pack("{s:s, s:s}", "ca", a->argv[0], "message", "CA created"));
}

static int pki_issue_cert(struct cli *c, const struct cli_args *a, bool host)
{
    char err[1024] = "", msg[512];
    const char *name = a->argv[0], *out = cli_opt(a, "out");
    int days = cli_opt(a, "days") ? atoi(cli_opt(a, "days")) : (host ? 825 : 365);
    long offset = cli_opt(a, "not-before-offset") ? atol(cli_opt(a, "not-before-offset")) : 0;
    int r = pki_issue(cli_opt(a, "ca"), name, host ? PKI_ROLE_HOST : PKI_ROLE_USER, out, days, offset, err,
                      sizeof err);
    snprintf(msg, sizeof msg, "%s certificate for %s written to %s", host ? "host" : "user", name, out);
    return pki_result(c, r, err, json_pack("{s:s, s:s, s:s}", "name", name, "out", out, "message", msg));
}

static int cmd_pki_issue_host_exec(struct cli *c, const struct cli_args *a)
{
    return pki_issue_cert(c, a, true);
}

static int cmd_pki_issue_user_exec(struct cli *c, const struct cli_args *a)
{
    return pki_issue_cert(c, a, false);
}

static const struct cli_flag issue_flags[] = {
    {"ca", 0, "CADIR", NULL, NULL, "the CA made by `vmove pki init`", CLI_REQUIRED},
    {"out", 0, "DIR", NULL, NULL, "where to write the certificate, its key and the CA's certificate", CLI_REQUIRED},
    {"days", 0, "N", "825 for a host, 365 for a user", "days", "how long the certificate is valid", 0},
    /* For tests of expiry handling. */
    {"not-before-offset", 0, "S", "0", "s", "shift the start of validity (negative: into the past)", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_pki_init_entry = {
    .noun = "pki", .verb = "init", .summary = "create the cluster's certificate authority in CADIR (local files)",
    .args = "CADIR", .min_args = 1, .max_args = 1, .fn = cmd_pki_init_exec,
};
const struct cli_cmd cmd_pki_issue_host_entry = {
    .noun = "pki", .verb = "issue-host", .summary = "issue a host certificate for vmoved on host NAME",
    .args = "NAME", .flags = issue_flags, .min_args = 1, .max_args = 1, .fn = cmd_pki_issue_host_exec,
};
const struct cli_cmd cmd_pki_issue_user_entry = {
    .noun = "pki", .verb = "issue-user", .summary = "issue a user certificate for NAME (an --identity DIR)",
    .args = "NAME", .flags = issue_flags, .min_args = 1, .max_args = 1, .fn = cmd_pki_issue_user_exec,
};
