/* Help and usage text from the command table: nothing here is written by
 * hand per command, so it cannot drift from what the parser accepts. */
#include "cli/help.h"

#include <stdbool.h>
#include <string.h>

#include "cli/cmd-table.h"

#define LINE_WIDTH 100
#define HELP_COLUMN 32      /* where a flag's help text starts */
#define SUMMARY_INDENT 6    /* a command's summary, under its synopsis */

/* Every command accepts it; the parser handles it before the descriptors. */
static const struct cli_flag help_flag = {"help", 'h', NULL, NULL, NULL, "show this help", 0};

/* Word-wrapped output: words go on the current line while they fit, else on
 * a new line indented by `indent`. */
struct wrap {
    FILE *f;
    int col;
    int indent;
    bool fresh;             /* nothing on this line yet after the indent */
};

static void wrap_word(struct wrap *w, const char *word, int len)
{
    if (!w->fresh && w->col + 1 + len > LINE_WIDTH) {
        fprintf(w->f, "\n%*s", w->indent, "");
        w->col = w->indent;
        w->fresh = true;
    }
    if (!w->fresh) {
        fputc(' ', w->f);
        w->col++;
    }
    fprintf(w->f, "%.*s", len, word);
    w->col += len;
    w->fresh = false;
}

static void wrap_text(struct wrap *w, const char *text)
{
    while (*text) {
        while (*text == ' ')
            text++;
        int len = (int)strcspn(text, " ");
        if (len)
            wrap_word(w, text, len);
        text += len;
    }
}

const char *cli_cmd_name(const struct cli_cmd *cmd, char *buf, size_t len)
{
    snprintf(buf, len, "%s%s%s", cmd->noun, cmd->verb ? " " : "", cmd->verb ? cmd->verb : "");
    return buf;
}

/* "--to HOST", "[--to HOST]...": how one flag looks in a synopsis. */
static void synopsis_flag(const struct cli_flag *fl, char *buf, size_t len)
{
    bool required = fl->how & CLI_REQUIRED;
    snprintf(buf, len, "%s--%s%s%s%s%s", required ? "" : "[", fl->name, fl->arg ? " " : "", fl->arg ? fl->arg : "",
             required ? "" : "]", fl->how & CLI_REPEAT ? "..." : "");
}

void cli_print_synopsis(FILE *f, const char *lead, const struct cli_cmd *cmd)
{
    char name[64], word[160];
    fprintf(f, "%svmove %s", lead, cli_cmd_name(cmd, name, sizeof name));
    struct wrap w = {f, (int)(strlen(lead) + strlen("vmove ") + strlen(name)), 0, false};
    w.indent = w.col + 1 < LINE_WIDTH / 2 ? w.col + 1 : 8;
    if (cmd->args && cmd->args[0])
        wrap_word(&w, cmd->args, (int)strlen(cmd->args));
    /* Required flags first: they belong with the positional arguments. */
    for (int pass = 0; pass < 2; pass++)
        for (const struct cli_flag *fl = cmd->flags; fl && fl->name; fl++)
            if (((fl->how & CLI_REQUIRED) != 0) == (pass == 0)) {
                synopsis_flag(fl, word, sizeof word);
                wrap_word(&w, word, (int)strlen(word));
            }
    fputc('\n', f);
}

/* "  -m, --memory SIZE", padded to the help column. */
static void flag_left_column(struct wrap *w, const struct cli_flag *fl)
{
    char left[128];
    if (fl->short_name)
        snprintf(left, sizeof left, "  -%c, --%s%s%s", fl->short_name, fl->name, fl->arg ? " " : "",
                 fl->arg ? fl->arg : "");
    else
        snprintf(left, sizeof left, "      --%s%s%s", fl->name, fl->arg ? " " : "", fl->arg ? fl->arg : "");
    int len = (int)strlen(left);
    if (len + 2 > HELP_COLUMN)
        fprintf(w->f, "%s\n%*s", left, HELP_COLUMN, "");
    else
        fprintf(w->f, "%s%*s", left, HELP_COLUMN - len, "");
    w->col = w->indent = HELP_COLUMN;
    w->fresh = true;
}

static void print_flag(FILE *f, const struct cli_flag *fl)
{
    struct wrap w = {.f = f};
    flag_left_column(&w, fl);
    wrap_text(&w, fl->help);
    char details[256] = "";
    size_t n = 0;
    if (fl->unit)
        n += (size_t)snprintf(details + n, sizeof details - n, "; unit: %s", fl->unit);
    if (fl->default_text && n < sizeof details)
        n += (size_t)snprintf(details + n, sizeof details - n, "; default: %s", fl->default_text);
    if ((fl->how & CLI_REPEAT) && n < sizeof details)
        n += (size_t)snprintf(details + n, sizeof details - n, "; repeatable");
    if ((fl->how & CLI_REQUIRED) && n < sizeof details)
        snprintf(details + n, sizeof details - n, "; required");
    if (details[0]) {
        char text[260];
        snprintf(text, sizeof text, "(%s)", details + 2);
        wrap_text(&w, text);
    }
    fputc('\n', f);
}

static void print_global_flags(FILE *f)
{
    fprintf(f, "\nGlobal options (before the command; --json also after it):\n");
    for (const struct cli_flag *fl = cli_global_flags; fl->name; fl++)
        print_flag(f, fl);
}

void cli_print_command_help(FILE *f, const struct cli_cmd *cmd)
{
    cli_print_synopsis(f, "usage: ", cmd);
    fprintf(f, "\n%s\n\nOptions:\n", cmd->summary);
    for (const struct cli_flag *fl = cmd->flags; fl && fl->name; fl++)
        print_flag(f, fl);
    print_flag(f, &help_flag);
    print_global_flags(f);
}

static void print_entry_line(FILE *f, const struct cli_cmd *cmd)
{
    cli_print_synopsis(f, "  ", cmd);
    struct wrap w = {f, SUMMARY_INDENT, SUMMARY_INDENT, true};
    fprintf(f, "%*s", SUMMARY_INDENT, "");
    wrap_text(&w, cmd->summary);
    fputc('\n', f);
}

void cli_print_family_help(FILE *f, const char *noun)
{
    fprintf(f, "usage: vmove %s VERB ...\n\nCommands:\n", noun);
    for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
        if (!strcmp((*t)->noun, noun))
            print_entry_line(f, *t);
    fprintf(f, "\nrun 'vmove %s VERB --help' for one command's options\n", noun);
}

void cli_print_overview(FILE *f)
{
    fprintf(f, "usage: vmove [-H unix:PATH | -H HOST[:PORT]] [--identity DIR] [--json] COMMAND ...\n\nCommands:\n");
    for (const struct cli_cmd *const *t = cli_cmd_table; *t; t++)
        print_entry_line(f, *t);
    print_global_flags(f);
    fprintf(f, "\nrun 'vmove COMMAND --help' (or 'vmove help COMMAND') for one command's options\n");
}
