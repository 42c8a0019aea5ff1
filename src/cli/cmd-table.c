/* The one table of vmove commands, and `vmove NOUN [VERB] ...` dispatch. */
#include "cli/cmd-table.h"

#include <stdio.h>
#include <string.h>

#include "cli/help.h"

const struct cli_cmd *const cli_cmd_table[] = {
    &cmd_host_show_entry, &cmd_host_set_entry, &cmd_host_events_entry, &cmd_host_drain_entry,
    &cmd_host_resume_entry, &cmd_host_pair_entry,
    &cmd_peer_add_entry, &cmd_peer_remove_entry, &cmd_peer_list_entry,
    &cmd_acl_grant_entry, &cmd_acl_revoke_entry, &cmd_acl_list_entry, &cmd_acl_group_entry,
    &cmd_audit_entry, &cmd_token_create_entry,
    &cmd_move_entry, &cmd_move_storage_entry,
    &cmd_checkpoint_create_entry, &cmd_checkpoint_list_entry, &cmd_checkpoint_apply_entry,
    &cmd_checkpoint_delete_entry,
    &cmd_vm_create_entry, &cmd_vm_list_entry, &cmd_vm_info_entry, &cmd_vm_show_entry, &cmd_vm_start_entry, &cmd_vm_stop_entry,
    &cmd_vm_pause_entry, &cmd_vm_resume_entry, &cmd_vm_delete_entry, &cmd_vm_console_entry,
    &cmd_vm_guest_entry, &cmd_vm_export_entry, &cmd_vm_import_entry, &cmd_vm_set_entry, &cmd_vm_ha_clear_entry,
    &cmd_cluster_create_entry, &cmd_cluster_join_entry, &cmd_cluster_leave_entry, &cmd_cluster_show_entry,
    &cmd_cluster_events_entry,
    &cmd_jobs_list_entry, &cmd_jobs_show_entry, &cmd_jobs_watch_entry, &cmd_jobs_cancel_entry,
    &cmd_pki_init_entry, &cmd_pki_issue_host_entry, &cmd_pki_issue_user_entry,
    &cmd_ui_login_entry,
    &cmd_help_entry,
    NULL,
};

const struct cli_flag cli_global_flags[] = {
    {"host", 'H', "TARGET", "$VMOVE_HOST, else " DEFAULT_HOST, NULL,
     "the vmoved to talk to: unix:PATH, or over TLS HOST[:PORT] or NAME@ADDR[:PORT] (the server's certificate "
     "must name HOST or NAME; port 7070 unless given)", 0},
    {"identity", 0, "DIR", "$VMOVE_IDENTITY", NULL,
     "your user certificate for -H HOST: DIR/ca.crt, DIR/user.crt, DIR/user.key", 0},
    {"json", 0, NULL, NULL, NULL,
     "machine-readable output: one JSON document, or JSON lines while waiting for a job", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

FILE *cli_help_open(struct cli *c, struct cli_help_buf *h)
{
    h->text = NULL;
    h->len = 0;
    h->f = c && c->json ? open_memstream(&h->text, &h->len) : NULL;
    return h->f ? h->f : stdout;
}

void cli_help_close(struct cli *c, struct cli_help_buf *h)
{
    if (!h->f)
        return;
    fclose(h->f);
    json_t *j = json_pack("{s:s}", "help", h->text ? h->text : "");
    cli_print_json(j);
    json_decref(j);
    free(h->text);
}

static bool noun_known(const char *noun)
{
    for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
        if (!strcmp((*t)->noun, noun))
            return true;
    return false;
}

/* verb NULL finds a command of one word (`vmove move`). */
static const struct cli_cmd *find_cmd(const char *noun, const char *verb)
{
    for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
        if (!strcmp((*t)->noun, noun) && (verb ? (*t)->verb && !strcmp((*t)->verb, verb) : !(*t)->verb))
            return *t;
    return NULL;
}

static const struct cli_cmd *default_verb(const char *noun)
{
    for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
        if (!strcmp((*t)->noun, noun) && (*t)->is_default)
            return *t;
    return NULL;
}

/* "create, list, show, ..." for messages. */
static const char *verb_list(const char *noun, char *buf, size_t len)
{
    size_t n = 0;
    buf[0] = 0;
    for (const struct cli_cmd *const *t = cli_cmd_table; *t && n < len; t++)
        if (!strcmp((*t)->noun, noun) && (*t)->verb)
            n += (size_t)snprintf(buf + n, len - n, "%s%s", n ? ", " : "", (*t)->verb);
    return buf;
}

#define RESOLVED 0
#define RESOLVED_FAMILY_HELP 1   /* `vmove vm --help` was printed */
#define RESOLVE_FAILED (-1)      /* a usage error was printed */

/* Which command argv names, and how many words (noun, verb) that took. */
static int resolve(struct cli *c, int argc, char **argv, const struct cli_cmd **cmd, int *words)
{
    const char *noun = argv[0], *verb = argc > 1 ? argv[1] : NULL;
    char verbs[256];
    *words = 1;
    if (!noun_known(noun)) {
        cli_topic_error(c, NULL, "unknown command \"%s\"", noun);
        return RESOLVE_FAILED;
    }
    if ((*cmd = find_cmd(noun, NULL)))
        return RESOLVED;
    if (verb && cli_is_help_word(verb)) {
        struct cli_help_buf h;
        cli_print_family_help(cli_help_open(c, &h), noun);
        cli_help_close(c, &h);
        return RESOLVED_FAMILY_HELP;
    }
    /* `vmove jobs` and `vmove jobs --all` mean `vmove jobs list`. */
    if (!verb || verb[0] == '-') {
        if ((*cmd = default_verb(noun)))
            return RESOLVED;
        cli_topic_error(c, noun, "missing %s command (%s)", noun, verb_list(noun, verbs, sizeof verbs));
        return RESOLVE_FAILED;
    }
    *words = 2;
    if ((*cmd = find_cmd(noun, verb)))
        return RESOLVED;
    cli_topic_error(c, noun, "unknown %s command \"%s\" (%s)", noun, verb, verb_list(noun, verbs, sizeof verbs));
    return RESOLVE_FAILED;
}

static int run_cmd(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv)
{
    struct cli_args a;
    int parsed = cli_parse(c, cmd, argc, argv, &a);
    if (parsed == CLI_PARSE_HELP) {
        struct cli_help_buf h;
        cli_print_command_help(cli_help_open(c, &h), cmd);
        cli_help_close(c, &h);
        return 0;
    }
    if (parsed != CLI_PARSE_OK)
        return EXIT_USAGE;
    int rc = cmd->fn(c, &a);
    cli_args_free(&a);
    return rc;
}

int cli_dispatch(struct cli *c, int argc, char **argv)
{
    const struct cli_cmd *cmd;
    int words;
    int resolved = resolve(c, argc, argv, &cmd, &words);
    if (resolved != RESOLVED)
        return resolved == RESOLVED_FAMILY_HELP ? 0 : EXIT_USAGE;
    return run_cmd(c, cmd, argc - words, argv + words);
}

/* vmove help [COMMAND [VERB]]: the same text as `vmove COMMAND [VERB] --help`. */
static int cmd_help_exec(struct cli *c, const struct cli_args *a)
{
    struct cli_help_buf h;
    if (a->argc == 0) {
        cli_print_overview(cli_help_open(c, &h));
        cli_help_close(c, &h);
        return 0;
    }
    const char *noun = a->argv[0], *verb = a->argc > 1 ? a->argv[1] : NULL;
    const struct cli_cmd *one_word = noun_known(noun) ? find_cmd(noun, NULL) : NULL;
    const struct cli_cmd *two_words = !one_word && verb && noun_known(noun) ? find_cmd(noun, verb) : NULL;
    if (!(one_word && !verb) && !(!one_word && noun_known(noun) && !verb) && !two_words) {
        cli_usage_error(c, a->cmd, "no command \"%s%s%s\"", noun, verb ? " " : "", verb ? verb : "");
        return EXIT_USAGE;
    }
    FILE *out = cli_help_open(c, &h);
    if (one_word)
        cli_print_command_help(out, one_word);
    else if (two_words)
        cli_print_command_help(out, two_words);
    else
        cli_print_family_help(out, noun);
    cli_help_close(c, &h);
    return 0;
}

const struct cli_cmd cmd_help_entry = {
    .noun = "help", .summary = "list the commands, or show one command's usage and options",
    .args = "[COMMAND [VERB]]", .min_args = 0, .max_args = 2, .fn = cmd_help_exec,
};
