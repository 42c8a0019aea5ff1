/* Shell completion from the command table (hidden command):
 *   vmove __complete CWORD WORD0 WORD1 ...
 * WORDs are the shell's words (WORD0 is "vmove"), CWORD the index of the
 * one being completed.  Prints one candidate per line that starts with that
 * word: commands, verbs and flags from the table, a flag's choices
 * ("on|off"), VM names (`vm list`) and host names (`peer list`) asked of
 * vmoved with a short timeout.  Prints nothing for a file argument: the
 * completion script then falls back to file names.  Always exits 0 and
 * never writes to stderr. */
#ifndef VMOVE_CLI_COMPLETE_H
#define VMOVE_CLI_COMPLETE_H

int cli_complete(int argc, char **argv);
#endif
