/* vmove ui login: a one-time link into the host's web console
 * (docs/CONSOLE.md).  The link carries a login signed with the user's own
 * key, like a delegation token (src/common/token.h): for this host only,
 * valid for TOKEN_LIFETIME_S, usable once.  No password exists to leak. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/cmd-table.h"
#include "common/token.h"

/* The address the browser should use: the one this CLI reached, else the
 * host's --listen address. */
static void console_addr(struct cli *c, json_t *show, char *addr, size_t len)
{
    char name[256], host[256], port[16], err[256];
    if (strncmp(c->host, "unix:", 5) &&
        client_parse_target(c->host, name, sizeof name, host, sizeof host, port, sizeof port, err, sizeof err) == 0) {
        snprintf(addr, len, "%s", host);
        return;
    }
    const char *listen = json_string_value(json_object_get(show, "listen"));
    snprintf(addr, len, "%s", listen ? listen : "?");
    char *colon = strrchr(addr, ':');
    if (colon)
        *colon = 0;
}

static int cmd_ui_login_exec(struct cli *c, const struct cli_args *a)
{
    if (!c->identity) {
        cli_usage_error(c, &cmd_ui_login_entry, "the console login is signed with your user key: give --identity DIR "
                                                "(or VMOVE_IDENTITY; `vmove pki issue-user` makes one)");
        return EXIT_USAGE;
    }
    int code;
    json_t *show = cli_call(c, "host.show", json_object(), NULL, NULL, &code);
    if (!show)
        return code;
    const char *name = json_string_value(json_object_get(show, "name"));
    json_t *con = json_object_get(show, "console");
    if (!json_is_true(json_object_get(con, "enabled")) || !json_is_true(json_object_get(con, "available"))) {
        cli_error(c, "host %s does not serve the web console: an admin runs `vmove host set --console on` there "
                     "(vmoved needs --listen)", name ? name : "?");
        json_decref(show);
        return EXIT_FAIL;
    }
    char err[512], addr[256];
    json_t *token = token_create(c->identity, "console.login", "-", name, name, name, err, sizeof err);
    if (!token) {
        cli_error(c, "%s", err);
        json_decref(show);
        return EXIT_USAGE;
    }
    console_addr(c, show, addr, sizeof addr);
    char *word = token_to_url(token);
    char *url = NULL;
    if (asprintf(&url, "https://%s:%lld/login?t=%s", addr, (long long)json_integer_value(json_object_get(con, "port")),
                 word) < 0)
        url = NULL;
    if (c->json) {
        json_t *out = json_pack("{s:s, s:s, s:i}", "url", url ? url : "", "host", name, "expires_in_s",
                                TOKEN_LIFETIME_S);
        cli_print_json(out);
        json_decref(out);
    } else {
        printf("%s\n", url ? url : "");
        fprintf(stderr, "open it within %d s; it works once (host %s, its certificate is from your CA)\n",
                TOKEN_LIFETIME_S, name);
    }
    free(url);
    free(word);
    json_decref(token);
    json_decref(show);
    return 0;
}

const struct cli_cmd cmd_ui_login_entry = {
    .noun = "ui", .verb = "login",
    .summary = "print a one-time link that logs you into the host's web console (signed with your --identity)",
    .args = "", .max_args = 0, .fn = cmd_ui_login_exec,
};
