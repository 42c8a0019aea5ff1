#include "cli/complete.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"

/* A busy or wedged vmoved must not hang the user's shell: SIGALRM's default
 * action ends us quietly, and bash offers nothing. */
#define DAEMON_TIMEOUT_S 2

struct completion {
    const char *prefix;     /* the word being completed */
    struct cli cli;         /* -H and --identity from the words, for asking vmoved */
};

static void offer(const struct completion *k, const char *word)
{
    if (!strncmp(word, k->prefix, strlen(k->prefix)))
        printf("%s\n", word);
}

static void offer_flag(const struct completion *k, const struct cli_flag *fl)
{
    char word[96];
    snprintf(word, sizeof word, "--%s", fl->name);
    offer(k, word);
}

/* Names from a list vmoved returns: {"vms": [{"name": ...}]}, or
 * {"peers": {"h2": "ADDR"}} / [{"name": ...}]. */
static void offer_names(struct completion *k, const char *method, const char *key)
{
    int rc;
    alarm(DAEMON_TIMEOUT_S);
    json_t *r = cli_call(&k->cli, method, NULL, NULL, NULL, &rc);
    alarm(0);
    json_t *list = json_object_get(r, key);
    const char *name;
    json_t *v;
    size_t i;
    if (json_is_object(list))
        json_object_foreach(list, name, v) offer(k, name);
    json_array_foreach(list, i, v) {
        name = json_is_string(v) ? json_string_value(v) : json_string_value(json_object_get(v, "name"));
        if (name)
            offer(k, name);
    }
    json_decref(r);
    cli_disconnect(&k->cli);
}

/* What a value called `arg` ("NAME", "HOST", "on|off") can be. */
static void offer_value(struct completion *k, const struct cli_cmd *cmd, const char *arg)
{
    if (!arg)
        return;
    bool vm = !strcmp(arg, "VM") || (!strcmp(arg, "NAME") && cmd && (!strcmp(cmd->noun, "vm") ||
              !strcmp(cmd->noun, "move") || !strcmp(cmd->noun, "move-storage")) &&
              !(cmd->verb && !strcmp(cmd->verb, "create")));
    if (vm)
        offer_names(k, "vm.list", "vms");
    else if (!strncmp(arg, "HOST", 4) || !strcmp(arg, "[HOST]"))
        offer_names(k, "peer.list", "peers");
    else if (strchr(arg, '|') && !strchr(arg, '.') && !strchr(arg, ':')) {
        /* A choice: "auto|kvm|tcg" (not "HOST|ADDR:PORT"). */
        char buf[128];
        snprintf(buf, sizeof buf, "%s", arg);
        for (char *save, *w = strtok_r(buf, "|", &save); w; w = strtok_r(NULL, "|", &save))
            if (w[0] >= 'a' && w[0] <= 'z')
                offer(k, w);
    }
}

static const struct cli_flag *flag_named(const struct cli_flag *flags, const char *word)
{
    for (const struct cli_flag *fl = flags; fl && fl->name; fl++)
        if ((word[1] == '-' && !strcmp(word + 2, fl->name)) || (fl->short_name && word[1] == fl->short_name && !word[2]))
            return fl;
    return NULL;
}

/* The `index`th word of a synopsis like "NAME COMMAND..." or "HOST ADDR:PORT". */
static const char *positional_name(const struct cli_cmd *cmd, int index, char *buf, size_t len)
{
    snprintf(buf, len, "%s", cmd->args ? cmd->args : "");
    char *save, *w = strtok_r(buf, " ", &save);
    for (int i = 0; w && i < index; i++)
        w = strtok_r(NULL, " ", &save);
    return w;
}

/* Words after NOUN [VERB]: flags (and their values) and positionals. */
static void complete_args(struct completion *k, const struct cli_cmd *cmd, char **words, int n)
{
    int positional = 0;
    for (int i = 0; i < n; i++) {
        const struct cli_flag *fl = words[i][0] == '-' ? flag_named(cmd->flags, words[i]) : NULL;
        if (fl && fl->arg && ++i == n) {
            offer_value(k, cmd, fl->arg);
            return;
        }
        if (words[i][0] != '-')
            positional++;
    }
    if (cmd->verbatim_after && positional >= cmd->verbatim_after)
        return;
    if (k->prefix[0] == '-') {
        for (const struct cli_flag *fl = cmd->flags; fl && fl->name; fl++)
            offer_flag(k, fl);
        offer(k, "--help");
        offer(k, "--json");
        return;
    }
    char buf[128];
    offer_value(k, cmd, positional_name(cmd, positional, buf, sizeof buf));
}

static const struct cli_cmd *find(const char *noun, const char *verb)
{
    for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
        if (!strcmp((*t)->noun, noun) && (verb ? (*t)->verb && !strcmp((*t)->verb, verb) : !(*t)->verb))
            return *t;
    return NULL;
}

static void complete_command(struct completion *k, char **words, int n)
{
    if (n == 0) {   /* the noun itself */
        for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
            if (t == cli_cmd_table || strcmp((*t)->noun, t[-1]->noun))
                offer(k, (*t)->noun);
        return;
    }
    const struct cli_cmd *cmd = find(words[0], NULL);
    if (cmd) {
        complete_args(k, cmd, words + 1, n - 1);
        return;
    }
    if (n == 1) {   /* the verb */
        for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
            if (!strcmp((*t)->noun, words[0]) && (*t)->verb)
                offer(k, (*t)->verb);
        return;
    }
    if ((cmd = find(words[0], words[1])))
        complete_args(k, cmd, words + 2, n - 2);
}

int cli_complete(int argc, char **argv)
{
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) {
        dup2(null, STDERR_FILENO);
        close(null);
    }
    int cword = atoi(argv[0]);
    char **words = argv + 1;
    int nwords = argc - 1;
    if (cword < 1 || cword > nwords)
        return 0;
    struct completion k = {.prefix = cword < nwords ? words[cword] : ""};
    k.cli.host = getenv("VMOVE_HOST") ? getenv("VMOVE_HOST") : DEFAULT_HOST;
    k.cli.identity = getenv("VMOVE_IDENTITY");
    /* Global options come first: -H/--identity also pick the vmoved to ask. */
    int i = 1;
    for (; i < cword && words[i][0] == '-'; i++) {
        const struct cli_flag *fl = flag_named(cli_global_flags, words[i]);
        if (!fl || !fl->arg)
            continue;
        if (++i == cword)
            return 0;   /* a target or a directory: the shell's file names */
        if (!strcmp(fl->name, "host"))
            k.cli.host = words[i];
        else
            k.cli.identity = words[i];
    }
    if (i == cword && k.prefix[0] == '-') {
        for (const struct cli_flag *fl = cli_global_flags; fl->name; fl++)
            offer_flag(&k, fl);
        offer(&k, "--help");
        offer(&k, "--version");
        return 0;
    }
    complete_command(&k, words + i, cword - i);
    return 0;
}
