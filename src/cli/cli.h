/* Shared pieces of the vmove CLI: the connection to vmoved, argument
 * parsing and output.  One file per command family (cmd-*.c), as in tmux. */
#ifndef VMOVE_CLI_H
#define VMOVE_CLI_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "cli/progress.h"

#define EXIT_FAIL 1      /* the operation failed */
#define EXIT_USAGE 2     /* bad command line */
#define EXIT_CONNECT 3   /* cannot reach vmoved */

struct client;

struct cli {
    const char *host;        /* -H / VMOVE_HOST */
    const char *identity;    /* --identity / VMOVE_IDENTITY */
    bool json;
    bool local;              /* talking to a unix socket */
    struct client *conn;
};

#define DEFAULT_HOST "unix:/run/vmove/vmoved.sock"

/* One flag of a command.  The parser accepts exactly these, and the help
 * prints exactly these, so the two cannot drift apart. */
struct cli_flag {
    const char *name;        /* "memory" for --memory */
    char short_name;         /* 'm' for -m, or 0 */
    const char *arg;         /* "SIZE" if the flag takes a value, NULL for a switch */
    const char *default_text;/* what applies without the flag, or NULL */
    const char *unit;        /* "ms", "MiB/s", or NULL */
    const char *help;
    unsigned how;            /* CLI_REPEAT | CLI_REQUIRED */
};
#define CLI_REPEAT 1u        /* may be given several times: the values form an array */
#define CLI_REQUIRED 2u      /* the command cannot run without it */

struct cli_args;

/* One command, `vmove NOUN [VERB] ...`, like tmux's cmd_entry: defined next
 * to its function in cmd-<family>.c and listed in cli_cmd_table[]. */
struct cli_cmd {
    const char *noun;        /* "vm" */
    const char *verb;        /* "create", or NULL for a command of one word (move) */
    const char *summary;     /* one line for the help */
    const char *args;        /* the positional arguments in the synopsis: "NAME" */
    const struct cli_flag *flags;  /* ends with an entry whose name is NULL; NULL for none */
    int min_args, max_args;  /* positional arguments; max_args -1: no limit */
    /* After this many positionals, take the rest verbatim, dashes and all
     * (`vm guest NAME COMMAND...` passes the words to the guest); 0: never. */
    int verbatim_after;
    bool is_default;         /* `vmove NOUN` alone runs this verb */
    int (*fn)(struct cli *c, const struct cli_args *a);
};

/* Parsed arguments of one command: flags in `opts` (repeated flags become
 * arrays), everything else in `args`. */
struct cli_args {
    const struct cli_cmd *cmd;
    json_t *opts;            /* {"memory": "512M", "disk": ["1G","2G"], "force": true} */
    int argc;
    char **argv;
};

#define CLI_PARSE_OK 0
#define CLI_PARSE_HELP 1     /* -h or --help: print the command's help */
#define CLI_PARSE_ERROR (-1) /* reported as a usage error */
/* Parse argv (the words after NOUN [VERB]) by cmd's flag descriptors. */
int cli_parse(struct cli *c, const struct cli_cmd *cmd, int argc, char **argv, struct cli_args *out);
void cli_args_free(struct cli_args *a);
/* -h or --help */
bool cli_is_help_word(const char *word);
const char *cli_opt(const struct cli_args *a, const char *name);
bool cli_flag_set(const struct cli_args *a, const char *name);
/* The whole number given to flag `name`, at least `min`; false (after a
 * usage error) if it is not one.  *out is left alone without the flag. */
bool cli_opt_number(struct cli *c, const struct cli_args *a, const char *name, long long min, long long *out);
/* The size or rate given to flag `name`, by the one parser of
 * common/units.h (bytes, or bit/s for UNIT_BITRATE); false (after a usage
 * error naming the flag) if it is not one.  *out is left alone without the
 * flag.  min: the least value accepted (0: any). */
bool cli_opt_units(struct cli *c, const struct cli_args *a, const char *name, int kind, uint64_t min,
                   uint64_t *out);
/* The daemon may run elsewhere, in another directory: an absolute path. */
json_t *cli_absolute_path(const char *path);

/* A bad command line: the message, cmd's synopsis and where to read more,
 * on stderr (and as {"error": {"code": "usage", ...}} with --json).  The
 * caller returns EXIT_USAGE. */
void cli_usage_error(struct cli *c, const struct cli_cmd *cmd, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same when no single command is meant: topic is the noun ("vm") whose
 * help to read, or NULL for `vmove --help`. */
void cli_topic_error(struct cli *c, const char *topic, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Connect to vmoved (once).  Prints the reason and returns -1 on failure. */
int cli_connect(struct cli *c);
typedef void (*cli_event_fn)(struct cli *c, const char *event, json_t *data, void *arg);
/* One request.  Returns the result (caller frees) or NULL after printing
 * the error; *exit_code says why. */
json_t *cli_call(struct cli *c, const char *method, json_t *params, cli_event_fn on_event,
                 void *arg, int *exit_code);
/* One request whose result is printed: as JSON with --json, else by print.
 * Returns the exit code. */
int cli_call_and_print(struct cli *c, const char *method, json_t *params, void (*print)(json_t *result));

/* Output, by the contract of docs/JSON.md: with --json, stdout carries
 * stream lines {"event": E, "data": {...}} while a command waits, then
 * exactly one final document, an object whose "ok" says whether the command
 * succeeded (its exit status is 0); with "ok": false it has "error":
 * {"code", "message", "hint"?}.  cli_print_final sets "ok" in j. */
void cli_print_final(json_t *j, bool ok);
/* The final document of a move: the job's record (as every command that
 * follows a job), with "probe" (--probe's measurement) and, for scripts
 * written before docs/JSON.md, "job": the same record again. */
void cli_print_move_final(json_t *job, json_t *probe, bool ok);
/* The final document of a command that succeeded. */
void cli_print_json(json_t *j);
/* --no-wait: the accepted job, {"job": N, ...} with --json, else "job N". */
void cli_print_accepted(struct cli *c, json_t *reply);
/* With --json, print a streamed event as one JSON line and return true. */
bool cli_event_json(struct cli *c, const char *event, json_t *data);
void cli_error(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *fmt_bytes(double bytes, char *buf, size_t len);
const char *fmt_duration_ms(double ms, char *buf, size_t len);

/* Follow a job's events until it ends; prints progress lines (or JSON lines
 * with --json).  Returns the exit code for the job's outcome. */
int cli_follow_job(struct cli *c, json_t *params_with_id);
/* The same, handing the final job record to the caller (it frees it). */
int cli_follow_job_result(struct cli *c, json_t *params_with_id, json_t **result);
/* What following a job remembers between its events. */
struct cli_follow {
    char last_wait[600];      /* "position N, waiting for H: REASON" */
    char last_phase[64];
    struct progress pr;      /* progress_init() it first */
    bool postcopy_said;
};
/* A cli_event_fn for a job's events (arg: a struct cli_follow): phases,
 * queueing and progress lines, or JSON lines with --json. */
void cli_on_job_event(struct cli *c, const char *event, json_t *data, void *arg);
/* Print a job record in human form. */
void cli_print_job(const json_t *job, bool detail);

/* A pre-flight check (src/cli/preflight.c): calls method (vm.move-check,
 * vm.move-storage-check) and prints its items as a table, or with --json
 * one final document ("ok": false with error code check_failed when a
 * problem was found).  Exit 0 when every check passes, 1 otherwise. */
int cli_preflight(struct cli *c, const char *method, json_t *params);
/* The "checks" of a refused move's error, one problem and its fix a line,
 * on stderr. */
void cli_print_checks(const json_t *error);

void cli_disconnect(struct cli *c);

#endif
