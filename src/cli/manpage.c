#include "cli/manpage.h"

#include <stdbool.h>
#include <string.h>

#include "cli/cmd-table.h"
#include "cli/help.h"

/* scdoc gives *, _ and \ a meaning anywhere in a line: escape them. */
static void text(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '*' || *s == '_' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
}

/* Help texts are phrases: end each with one full stop. */
static void sentence(FILE *f, const char *s)
{
    text(f, s);
    size_t n = strlen(s);
    if (n && s[n - 1] != '.')
        fputc('.', f);
}

/* "*--memory* _SIZE_" */
static void flag_term(FILE *f, const struct cli_flag *fl)
{
    if (fl->short_name)
        fprintf(f, "*-%c*, ", fl->short_name);
    fputs("*--", f);
    text(f, fl->name);
    fputc('*', f);
    if (fl->arg) {
        fputs(" _", f);
        text(f, fl->arg);
        fputc('_', f);
    }
}

/* A flag as a term and an indented description with its details. */
static void flag_entry(FILE *f, const struct cli_flag *fl)
{
    flag_term(f, fl);
    fputs("\n\t", f);
    sentence(f, fl->help);
    if (fl->unit) {
        fputs(" Unit: ", f);
        sentence(f, fl->unit);
    }
    if (fl->default_text) {
        fputs(" Default: ", f);
        sentence(f, fl->default_text);
    }
    if (fl->how & CLI_REPEAT)
        fputs(" May be given more than once.", f);
    if (fl->how & CLI_REQUIRED)
        fputs(" Required.", f);
    fputs("\n\n", f);
}

/* "*vmove vm create* _NAME_ [*--memory* _SIZE_] ...", on one line. */
static void synopsis(FILE *f, const struct cli_cmd *cmd)
{
    char name[64];
    fputs("*vmove ", f);
    text(f, cli_cmd_name(cmd, name, sizeof name));
    fputc('*', f);
    if (cmd->args && cmd->args[0]) {
        fputs(" _", f);
        text(f, cmd->args);
        fputc('_', f);
    }
    for (int pass = 0; pass < 2; pass++)
        for (const struct cli_flag *fl = cmd->flags; fl && fl->name; fl++) {
            bool required = fl->how & CLI_REQUIRED;
            if (required != (pass == 0))
                continue;
            fputs(required ? " " : " [", f);
            flag_term(f, fl);
            fputs(required ? "" : "]", f);
            if (fl->how & CLI_REPEAT)
                fputs("...", f);
        }
    fputs("\n\n", f);
}

static void command(FILE *f, const struct cli_cmd *cmd)
{
    char name[64];
    fputs("## ", f);
    text(f, cli_cmd_name(cmd, name, sizeof name));
    fputs("\n\n", f);
    synopsis(f, cmd);
    sentence(f, cmd->summary);
    fputs("\n\n", f);
    for (const struct cli_flag *fl = cmd->flags; fl && fl->name; fl++)
        flag_entry(f, fl);
}

void cli_print_scdoc(FILE *f)
{
    fputs("# GLOBAL OPTIONS\n\nBefore the command; *--json* may also come after it.\n\n", f);
    for (const struct cli_flag *fl = cli_global_flags; fl->name; fl++)
        flag_entry(f, fl);
    fputs("*-h*, *--help*\n\tShow the usage of *vmove*, of a command family or of one command.\n\n", f);
    fputs("*--version*\n\tPrint vmove's version and exit (alone on the command line).\n\n", f);
    fputs("# COMMANDS\n\nEvery command takes *--help*. The list is generated from the command table"
          " that the parser uses.\n\n", f);
    for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
        command(f, *t);
}
