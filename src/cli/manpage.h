/* The command section of vmove(1), in scdoc markup, from the command table:
 * `vmove help --scdoc` (hidden) prints it and the Makefile splices it into
 * docs/man/vmove.1.scd.in, so the manual lists what the parser accepts. */
#ifndef VMOVE_CLI_MANPAGE_H
#define VMOVE_CLI_MANPAGE_H
#include <stdio.h>

void cli_print_scdoc(FILE *f);
#endif
