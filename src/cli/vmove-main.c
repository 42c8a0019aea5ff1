/* vmove: the command-line client of vmoved. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"
#include "cli/complete.h"
#include "cli/help.h"
#include "cli/manpage.h"

#ifndef VMOVE_VERSION
#define VMOVE_VERSION "unknown"
#endif

/* --json may come anywhere, as scripts often put it last: take it out of
 * argv before anything else, so that even a usage error is JSON. */
static int take_json_flag(struct cli *c, int argc, char **argv)
{
    for (int k = 1; k < argc; k++)
        if (!strcmp(argv[k], "--json")) {
            c->json = true;
            memmove(&argv[k], &argv[k + 1], (size_t)(argc - k) * sizeof *argv);
            argc--;
            k--;
        }
    return argc;
}

static const struct cli_flag *global_flag(const char *word)
{
    for (const struct cli_flag *f = cli_global_flags; f->name; f++)
        if ((word[1] == '-' && !strcmp(word + 2, f->name)) || (f->short_name && word[1] == f->short_name && !word[2]))
            return f;
    return NULL;
}

/* The options before the command, by cli_global_flags.  Returns the index
 * of the command word (or of --help), or -1 after a usage error. */
static int parse_globals(struct cli *c, int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && !cli_is_help_word(argv[i]); i++) {
        const struct cli_flag *f = global_flag(argv[i]);
        if (!f) {
            cli_topic_error(c, NULL, "unknown option %s", argv[i]);
            return -1;
        }
        if (!f->arg)
            continue;   /* --json, taken out already */
        if (i + 1 >= argc) {
            cli_topic_error(c, NULL, "option --%s needs a value (%s)", f->name, f->arg);
            return -1;
        }
        if (!strcmp(f->name, "host"))
            c->host = argv[++i];
        else
            c->identity = argv[++i];
    }
    return i;
}

int main(int argc, char **argv)
{
    /* A daemon that hangs up must give an error message, not kill us. */
    signal(SIGPIPE, SIG_IGN);
    struct cli c = {0};
    c.host = getenv("VMOVE_HOST") ? getenv("VMOVE_HOST") : DEFAULT_HOST;
    c.identity = getenv("VMOVE_IDENTITY");
    if (argc == 2 && !strcmp(argv[1], "--version")) {
        printf("vmove %s\n", VMOVE_VERSION);
        return 0;
    }
    /* Hidden: the build's manual page and the shell's completion. */
    if (argc == 3 && !strcmp(argv[1], "help") && !strcmp(argv[2], "--scdoc")) {
        cli_print_scdoc(stdout);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "__complete"))
        return cli_complete(argc - 2, argv + 2);
    argc = take_json_flag(&c, argc, argv);
    int i = parse_globals(&c, argc, argv);
    if (i < 0)
        return EXIT_USAGE;
    if (i < argc && cli_is_help_word(argv[i])) {
        struct cli_help_buf h;
        cli_print_overview(cli_help_open(&c, &h));
        cli_help_close(&c, &h);
        return 0;
    }
    if (i >= argc) {
        if (c.json)
            cli_topic_error(&c, NULL, "no command given");
        else
            cli_print_overview(stderr);
        return EXIT_USAGE;
    }
    int rc = cli_dispatch(&c, argc - i, argv + i);
    cli_disconnect(&c);
    return rc;
}
