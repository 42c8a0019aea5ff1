/* Shared pieces of the vmove CLI: the connection to vmoved, argument
 * parsing and output.  One file per command family (cmd-*.c), as in tmux. */
#ifndef VMOVE_CLI_H
#define VMOVE_CLI_H
#include <jansson.h>
#include <stdbool.h>

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

/* Parsed arguments of one command: flags in `opts` (repeated flags become
 * arrays), everything else in `args`. */
struct cli_flag {
    const char *name;        /* "memory" for --memory */
    char short_name;         /* 'f' for -f, or 0 */
    bool takes_value;
    bool repeat;
};

struct cli_args {
    json_t *opts;            /* {"memory": "512M", "disk": ["1G","2G"], "force": true} */
    int argc;
    char **argv;
};

int cli_parse(int argc, char **argv, const struct cli_flag *flags, struct cli_args *out);
void cli_args_free(struct cli_args *a);
const char *cli_opt(const struct cli_args *a, const char *name);
bool cli_flag_set(const struct cli_args *a, const char *name);

/* Connect to vmoved (once).  Prints the reason and returns -1 on failure. */
int cli_connect(struct cli *c);
typedef void (*cli_event_fn)(struct cli *c, const char *event, json_t *data, void *arg);
/* One request.  Returns the result (caller frees) or NULL after printing
 * the error; *exit_code says why. */
json_t *cli_call(struct cli *c, const char *method, json_t *params, cli_event_fn on_event,
                 void *arg, int *exit_code);

/* Output. */
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
/* Print a job record in human form. */
void cli_print_job(const json_t *job, bool detail);

void cli_disconnect(struct cli *c);

int cmd_host(struct cli *c, int argc, char **argv);
int cmd_vm(struct cli *c, int argc, char **argv);
int cmd_jobs(struct cli *c, int argc, char **argv);
int cmd_pki(struct cli *c, int argc, char **argv);
int cmd_move(struct cli *c, int argc, char **argv);
int cmd_move_storage(struct cli *c, int argc, char **argv);
int cmd_peer(struct cli *c, int argc, char **argv);
int cmd_acl(struct cli *c, int argc, char **argv);
int cmd_token(struct cli *c, int argc, char **argv);
int cmd_audit(struct cli *c, int argc, char **argv);
#endif
