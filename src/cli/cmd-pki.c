/* vmove pki init CADIR | issue-host NAME --ca CADIR --out DIR | issue-user NAME --ca CADIR --out DIR
 * Local file operations: no daemon involved. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
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

int cmd_pki(struct cli *c, int argc, char **argv)
{
    static const struct cli_flag flags[] = {
        {"ca", 0, true, false}, {"out", 0, true, false}, {"days", 0, true, false},
        /* For tests of expiry handling: shift the start of validity. */
        {"not-before-offset", 0, true, false}, {NULL, 0, false, false}};
    if (argc < 1) {
        fprintf(stderr, "vmove: usage: vmove pki init CADIR | issue-host NAME --ca CADIR --out DIR | "
                        "issue-user NAME --ca CADIR --out DIR\n");
        return EXIT_USAGE;
    }
    struct cli_args a;
    if (cli_parse(argc - 1, argv + 1, flags, &a) < 0)
        return EXIT_USAGE;
    char err[1024] = "";
    int rc = EXIT_USAGE;
    if (!strcmp(argv[0], "init") && a.argc == 1) {
        int r = pki_init_ca(a.argv[0], "cluster", err, sizeof err);
        rc = pki_result(c, r, err, json_pack("{s:s, s:s}", "ca", a.argv[0], "message", "CA created"));
    } else if ((!strcmp(argv[0], "issue-host") || !strcmp(argv[0], "issue-user")) && a.argc == 1 &&
               cli_opt(&a, "ca") && cli_opt(&a, "out")) {
        bool host = !strcmp(argv[0], "issue-host");
        int days = cli_opt(&a, "days") ? atoi(cli_opt(&a, "days")) : (host ? 825 : 365);
        long offset = cli_opt(&a, "not-before-offset") ? atol(cli_opt(&a, "not-before-offset")) : 0;
        int r = pki_issue(cli_opt(&a, "ca"), a.argv[0], host ? PKI_ROLE_HOST : PKI_ROLE_USER,
                          cli_opt(&a, "out"), days, offset, err, sizeof err);
        char msg[512];
        snprintf(msg, sizeof msg, "%s certificate for %s written to %s", host ? "host" : "user", a.argv[0],
                 cli_opt(&a, "out"));
        rc = pki_result(c, r, err, json_pack("{s:s, s:s, s:s}", "name", a.argv[0], "out", cli_opt(&a, "out"),
                                             "message", msg));
    } else {
        cli_error(c, "usage: vmove pki init CADIR | issue-host NAME --ca CADIR --out DIR | "
                     "issue-user NAME --ca CADIR --out DIR");
    }
    cli_args_free(&a);
    return rc;
}
