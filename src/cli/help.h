/* Help and usage text, generated from the command table and the flag
 * descriptors, so that it says what the parser accepts. */
#ifndef VMOVE_CLI_HELP_H
#define VMOVE_CLI_HELP_H
#include <stdio.h>

#include "cli/cli.h"

/* "vmove vm create NAME [--memory SIZE] ...", wrapped, after `lead`. */
void cli_print_synopsis(FILE *f, const char *lead, const struct cli_cmd *cmd);
/* Usage, summary, and every flag with its default and unit. */
void cli_print_command_help(FILE *f, const struct cli_cmd *cmd);
/* Every command of one noun: `vmove vm --help`. */
void cli_print_family_help(FILE *f, const char *noun);
/* Every command: `vmove --help`. */
void cli_print_overview(FILE *f);
/* "vm create" or "move", for messages. */
const char *cli_cmd_name(const struct cli_cmd *cmd, char *buf, size_t len);
#endif
