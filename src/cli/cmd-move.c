/* vmove move NAME --to HOST [tuning...] [--probe IP:PORT] [--no-wait] */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "cli/cmd-table.h"
#include "common/proto.h"
#include "common/token.h"
#include "common/units.h"
#include "common/util.h"

extern char **environ;

/* A whole-number flag into tuning[key], times mult; false after a usage error. */
static bool int_opt(struct cli *c, const struct cli_args *a, const char *name, json_t *tuning, const char *key,
                    long long mult)
{
    long long n = -1;
    if (!cli_opt_number(c, a, name, 0, &n))
        return false;
    if (n >= 0)
        json_object_set_new(tuning, key, json_integer(n * mult));
    return true;
}

/* --max-wait DURATION: seconds, or with a unit (90s, 10m, 1h). */
static bool max_wait_opt(struct cli *c, const struct cli_args *a, json_t *tuning)
{
    const char *v = cli_opt(a, "max-wait");
    if (!v)
        return true;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    long long mult = !*end || !strcmp(end, "s") ? 1 : !strcmp(end, "m") ? 60 : !strcmp(end, "h") ? 3600 : 0;
    if (errno || end == v || n <= 0 || !mult || n * mult > 86400) {
        cli_usage_error(c, &cmd_move_entry, "--max-wait %s: expected a duration from 1 s to 24 h, e.g. 90, 90s, 10m, 1h", v);
        return false;
    }
    json_object_set_new(tuning, "max_wait_s", json_integer(n * mult));
    return true;
}

/* A flag on the command line, with or without a value. */
static bool move__given(const struct cli_args *a, const char *name)
{
    return cli_opt(a, name) || cli_flag_set(a, name);
}

/* Flags that would do nothing are refused, naming the flag: a user who
 * typed one expects it to act. */
static bool move_flags_sane(struct cli *c, const struct cli_args *a)
{
    static const struct { const char *flag, *needs, *why; } rules[] = {
        {"state-dir", "quick", "only a quick migration saves a state"},
        {"keep-source", "with-storage", "only a shared-nothing move copies the disks (move-storage has its own)"},
        {"token-file", "from", "only a delegated move presents a token"},
    };
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (move__given(a, rules[i].flag) && !move__given(a, rules[i].needs)) {
            cli_usage_error(c, &cmd_move_entry, "--%s needs --%s: %s", rules[i].flag, rules[i].needs, rules[i].why);
            return false;
        }
    if (cli_flag_set(a, "quick") && cli_opt(a, "with-storage")) {
        cli_usage_error(c, &cmd_move_entry, "--quick and --with-storage exclude each other: a quick migration "
                                            "needs shared storage, --with-storage is for hosts without it");
        return false;
    }
    static const char *const not_checked[] = {"probe", "no-wait"};
    for (size_t i = 0; i < 2; i++)
        if (cli_flag_set(a, "check") && move__given(a, not_checked[i])) {
            cli_usage_error(c, &cmd_move_entry, "--%s does nothing with --check (a check moves nothing)", not_checked[i]);
            return false;
        }
    static const char *const not_delegated[] = {"probe", "no-wait"};
    for (size_t i = 0; i < 2; i++)
        if (cli_opt(a, "from") && move__given(a, not_delegated[i])) {
            cli_usage_error(c, &cmd_move_entry, "--%s does nothing with --from (a delegated move is followed to its "
                                                "end by the relaying host)", not_delegated[i]);
            return false;
        }
    return true;
}

static json_t *tuning_params(struct cli *c, const struct cli_args *a)
{
    if (!move_flags_sane(c, a))
        return NULL;
    json_t *t = json_object();
    uint64_t bits = 0;
    if (!max_wait_opt(c, a, t)) {
        json_decref(t);
        return NULL;
    }
    if (!int_opt(c, a, "downtime", t, "downtime_ms", 1) || !int_opt(c, a, "max-downtime", t, "max_downtime_ms", 1) ||
        !int_opt(c, a, "max-duration", t, "max_duration_s", 1) ||
        !int_opt(c, a, "max-recover-wait", t, "max_recover_wait_s", 1) || !int_opt(c, a, "parallel", t, "channels", 1) ||
        !cli_opt_units(c, a, "bandwidth", UNIT_BITRATE, 1, &bits)) {
        json_decref(t);
        return NULL;
    }
    if (bits)   /* the daemon takes bytes/s */
        json_object_set_new(t, "bandwidth", json_integer((json_int_t)(bits / 8 ? bits / 8 : 1)));
    if (cli_opt(a, "compress"))
        json_object_set_new(t, "compress", json_string(cli_opt(a, "compress")));
    if (cli_opt(a, "converge"))
        json_object_set_new(t, "converge", json_string(cli_opt(a, "converge")));
    if (cli_flag_set(a, "quick"))
        json_object_set_new(t, "quick", json_true());
    if (cli_opt(a, "with-storage"))
        json_object_set_new(t, "with_storage", json_string(cli_opt(a, "with-storage")));
    if (cli_flag_set(a, "keep-source"))
        json_object_set_new(t, "keep_source", json_true());
    if (cli_opt(a, "state-dir")) {
        json_t *abs = json_string(cli_opt(a, "state-dir"));
        json_object_set_new(t, "state_dir", abs);
    }
    return t;
}

/* ---- the client-side downtime probe ----------------------------------- */

struct probe {
    pid_t pid;
    char out[PATH_MAX];
    char stop[PATH_MAX];
};

static int probe_start(struct cli *c, const char *target, struct probe *p)
{
    char self[PATH_MAX], bin[PATH_MAX + 16];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return -1;
    self[n] = 0;
    *strrchr(self, '/') = 0;
    snprintf(bin, sizeof bin, "%s/vmove-probe", self);
    snprintf(p->out, sizeof p->out, "/tmp/vmove-probe.%d.json", (int)getpid());
    snprintf(p->stop, sizeof p->stop, "/tmp/vmove-probe.%d.stop", (int)getpid());
    char ready[PATH_MAX];
    snprintf(ready, sizeof ready, "/tmp/vmove-probe.%d.ready", (int)getpid());
    unlink(p->stop);
    unlink(ready);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, p->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *argv[] = {bin, "--target", (char *)target, "--stop-file", p->stop, "--ready-file", ready,
                    "--duration", "3600", "--wait-first", "30", NULL};
    int rc = posix_spawn(&p->pid, bin, &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc) {
        cli_error(c, "cannot run %s: %s", bin, strerror(rc));
        return -1;
    }
    /* Wait until the guest answers, so the probe covers the whole move. */
    for (int i = 0; i < 300 && access(ready, F_OK) < 0; i++) {
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            cli_error(c, "the probe got no echo from %s: is the guest's echo workload running?", target);
            return -1;
        }
        usleep(100000);
    }
    unlink(ready);
    return 0;
}

#define PROBE_TAIL_MS 300          /* echoes still listened for after the move */
#define SWITCHOVER_WINDOW_MS 600   /* a gap ending this close to the end is the switch-over's */

/* The longest gap at the switch-over, as opposed to a stall earlier in the
 * move (QEMU 7.2 under TCG stops the guest for about 1 s while it starts
 * dirty tracking): the longest gap ending in the move's last 600 ms.  NULL
 * if none of at least 20 ms (the probe lists shorter ones not at all). */
static json_t *probe_switchover_gap(json_t *probe)
{
    double done = (double)json_integer_value(json_object_get(probe, "duration_ms")) - PROBE_TAIL_MS, best = 0;
    json_t *found = NULL;
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(probe, "gaps"), i, g) {
        double start = json_number_value(json_object_get(g, "start_ms")), ms = json_number_value(json_object_get(g, "ms"));
        if (start + ms >= done - SWITCHOVER_WINDOW_MS && ms > best) {
            best = ms;
            found = g;
        }
    }
    return found;
}

/* When the client heard the guest again after the switch-over, in ms from
 * the source QEMU's pause (the result's switchover.paused_unix_ms): the end
 * of the switch-over gap on the probe's wall clock.  As exact as the
 * probe's and the source's clocks agree (one machine here; NTP's
 * milliseconds between real hosts). */
static void probe_align(json_t *probe, json_t *job)
{
    json_t *sw = json_object_get(json_object_get(job, "result"), "switchover");
    json_t *gap = probe_switchover_gap(probe), *start = json_object_get(probe, "start_unix_ms");
    if (!sw || !gap || !json_is_number(start))
        return;
    double heard = json_number_value(start) + json_number_value(json_object_get(gap, "start_ms")) +
                   json_number_value(json_object_get(gap, "ms"));
    double paused = (double)json_integer_value(json_object_get(sw, "paused_unix_ms"));
    json_object_set_new(probe, "switchover_heard_ms", json_real(heard - paused));
}

static json_t *probe_finish(struct probe *p)
{
    /* Let a few more echoes arrive after the switch-over, then stop. */
    usleep(PROBE_TAIL_MS * 1000);
    int fd = open(p->stop, O_WRONLY | O_CREAT, 0600);
    if (fd >= 0)
        close(fd);
    int status;
    waitpid(p->pid, &status, 0);
    unlink(p->stop);
    json_t *j = json_load_file(p->out, 0, NULL);
    unlink(p->out);
    if (json_is_object(j)) {
        json_t *gap = probe_switchover_gap(j);
        json_object_set_new(j, "switchover_gap_ms", json_real(gap ? json_number_value(json_object_get(gap, "ms")) : 0));
    }
    return j;
}

/* ---- output ------------------------------------------------------------ */

/* --from HOST: this host relays the move to HOST with a token signed by the
 * user (constrained delegation). */
/* The name of the host this CLI talks to: the one that relays a delegated
 * move, and so the only host allowed to present its token.  Over TLS it is
 * the name the server's certificate was checked against; on the local
 * socket, root's own vmoved says it. */
static int relay_host_name(struct cli *c, char *name, size_t len)
{
    if (strncmp(c->host, "unix:", 5)) {
        char host[256], port[16], err[256];
        return client_parse_target(c->host, name, len, host, sizeof host, port, sizeof port, err, sizeof err);
    }
    int code;
    json_t *show = cli_call(c, "host.show", json_object(), NULL, NULL, &code);
    const char *n = json_string_value(json_object_get(show, "name"));
    if (n)
        snprintf(name, len, "%s", n);
    json_decref(show);
    return n ? 0 : -1;
}

/* The move token (src/api/move_token.h): the user's signature on this one
 * move, which the source forwards so that the destination need not take its
 * word for who asked.  Signed for every move a certificate user makes; root
 * on the local socket moves as the host and signs nothing.  0, or -1 after
 * the error is printed. */
static int sign_token_op(struct cli *c, const char *op, const char *vm, const char *src, const char *dst,
                         json_t **token)
{
    char err[512];
    *token = NULL;
    if (!c->identity || !token_identity_is_user(c->identity))
        return 0;   /* vmoved says what is missing */
    if (!(*token = token_create(c->identity, op, vm, src, dst, src, err, sizeof err))) {
        cli_error(c, "%s", err);
        return -1;
    }
    return 0;
}

static int sign_move_token(struct cli *c, const char *vm, const char *src, const char *dst, json_t **token)
{
    return sign_token_op(c, "move", vm, src, dst, token);
}

/* --check: every precondition on both hosts, nothing changed.  A
 * certificate user signs a check token (op "move-check"), which lets the
 * destination check that user's rights and nothing more. */
static int move_check(struct cli *c, const struct cli_args *a, json_t *tuning)
{
    const char *name = a->argv[0], *to = cli_opt(a, "to");
    json_t *token = NULL;
    char src[256];
    if (strncmp(c->host, "unix:", 5) &&
        (relay_host_name(c, src, sizeof src) < 0 || sign_token_op(c, "move-check", name, src, to, &token) < 0)) {
        json_decref(tuning);
        return EXIT_USAGE;
    }
    return cli_preflight(c, "vm.move-check", json_pack("{s:s, s:s, s:o, s:o*}", "name", name, "to", to, "tuning",
                                                       tuning, "check_token", token));
}

/* --from B --check: this host asks B to check the move for the user, with
 * a delegation token for a check (op "migrate-check"), and B asks the
 * destination with the user's check token. */
static int delegated_check(struct cli *c, const struct cli_args *a, json_t *tuning)
{
    const char *name = a->argv[0], *from = cli_opt(a, "from"), *to = cli_opt(a, "to");
    char err[512], via[256] = "";
    json_t *deleg = NULL, *check = NULL;
    if (!c->identity || relay_host_name(c, via, sizeof via) < 0 ||
        !(deleg = token_create(c->identity, "migrate-check", name, from, to, via, err, sizeof err)) ||
        sign_token_op(c, "move-check", name, from, to, &check) < 0) {
        if (!c->identity)
            cli_error(c, "checking a move from another host needs your user identity to sign a delegation token: "
                         "--identity DIR (or VMOVE_IDENTITY)");
        else if (!deleg)
            cli_error(c, "%s", via[0] ? err : "cannot learn the name of the host the delegation token must name");
        json_decref(deleg);
        json_decref(tuning);
        return EXIT_USAGE;
    }
    return cli_preflight(c, "vm.move-check", json_pack("{s:s, s:s, s:s, s:o, s:o, s:o*}", "name", name, "to", to,
                                                       "from", from, "tuning", tuning, "delegation", deleg,
                                                       "check_token", check));
}

/* The -H target of host SRC as the relaying host knows it (its peer entry,
 * NAME@ADDR:PORT), so that the Ctrl-C hint names a command that reaches
 * the host the job runs on; just NAME if this host will not say.  Asked
 * quietly: the hint is a courtesy, not a reason to print an error. */
static void source_target(struct cli *c, const char *src, char *target, size_t len)
{
    snprintf(target, len, "%s", src);
    json_t *error = NULL;
    char err[256];
    json_t *r = cli_connect(c) < 0 ? NULL : client_request(c->conn, "peer.list", json_object(), NULL, NULL, &error,
                                                           err, sizeof err);
    const char *addr = json_string_value(json_object_get(json_object_get(r, "peers"), src));
    if (!addr)
        addr = json_string_value(json_object_get(json_object_get(r, "cluster_peers"), src));
    if (addr)
        snprintf(target, len, "%s@%s", src, addr);
    json_decref(error);
    json_decref(r);
}

/* Following a delegated move: the relaying host streams the source's job
 * record, whose id is the one to name when Ctrl-C is pressed. */
struct deleg_follow {
    struct cli_follow fl;
    const char *src, *target;
    bool armed;
};

static void on_delegated_event(struct cli *c, const char *event, json_t *data, void *arg)
{
    struct deleg_follow *d = arg;
    json_int_t id = json_integer_value(json_object_get(data, "id"));
    if (!d->armed && id > 0) {
        progress_on_interrupt_at((long long)id, d->src, d->target);
        d->armed = true;
    }
    cli_on_job_event(c, event, data, &d->fl);
}

static int delegated_move(struct cli *c, const struct cli_args *a, json_t *tuning)
{
    const char *name = a->argv[0], *from = cli_opt(a, "from"), *to = cli_opt(a, "to");
    json_t *token;
    char err[512], via[256] = "";
    if (!cli_opt(a, "token-file") && c->identity && relay_host_name(c, via, sizeof via) < 0) {
        cli_error(c, "cannot learn the name of the host at %s, which the delegation token must name", c->host);
        json_decref(tuning);
        return EXIT_FAIL;
    }
    if (cli_opt(a, "token-file")) {
        json_error_t je;
        token = json_load_file(cli_opt(a, "token-file"), 0, &je);
        if (!token) {
            cli_error(c, "cannot read the token file %s: %s", cli_opt(a, "token-file"), je.text);
            json_decref(tuning);
            return EXIT_USAGE;
        }
    } else if (!c->identity || !(token = token_create(c->identity, "migrate", name, from, to, via, err, sizeof err))) {
        cli_error(c, "%s", c->identity ? err : "moving a VM from another host needs your user identity to sign a "
                                                "delegation token: --identity DIR (or VMOVE_IDENTITY)");
        json_decref(tuning);
        return EXIT_USAGE;
    }
    json_t *move_token;
    if (sign_move_token(c, name, from, to, &move_token) < 0) {
        json_decref(token);
        json_decref(tuning);
        return EXIT_USAGE;
    }
    char target[320];
    source_target(c, from, target, sizeof target);
    struct deleg_follow d = {.src = from, .target = target};
    progress_init(&d.fl.pr, isatty(2));
    int code;
    json_t *final = cli_call(c, "vm.move", json_pack("{s:s, s:s, s:s, s:o, s:o, s:o*}", "name", name, "to", to, "from",
                                                     from, "delegation", token, "tuning", tuning, "move_token",
                                                     move_token), on_delegated_event, &d, &code);
    progress_interrupt_off();
    progress_break(&d.fl.pr);
    if (!final)
        return code;
    const char *st = json_string_value(json_object_get(final, "state"));
    int rc = st && !strcmp(st, "succeeded") ? 0 : EXIT_FAIL;
    if (c->json)
        cli_print_move_final(final, NULL, rc == 0);
    else if (rc == 0)
        progress_print_move_result(final, NULL);
    else
        fprintf(stderr, "vmove: error: the move on %s %s: %s\n", from, st ? st : "?",
                json_string_value(json_object_get(json_object_get(final, "error"), "message")));
    json_decref(final);
    return rc;
}

/* vmove token create VM --from B --to C --via A: a delegation token, for scripts. */
static int cmd_token_create_exec(struct cli *c, const struct cli_args *a)
{
    char err[512];
    json_t *t = c->identity ? token_create(c->identity, "migrate", a->argv[0], cli_opt(a, "from"), cli_opt(a, "to"),
                                           cli_opt(a, "via"), err, sizeof err) : NULL;
    if (!t) {
        cli_error(c, "%s", c->identity ? err : "a token is signed with your user key: --identity DIR");
        return EXIT_FAIL;
    }
    cli_print_json(t);
    json_decref(t);
    return 0;
}

static const struct cli_flag token_flags[] = {
    {"from", 0, "HOST", NULL, NULL, "the host the VM runs on", CLI_REQUIRED},
    {"to", 0, "HOST", NULL, NULL, "the host it may move to", CLI_REQUIRED},
    {"via", 0, "HOST", NULL, NULL, "the host that relays the move: the only one that may present the token",
     CLI_REQUIRED},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_token_create_entry = {
    .noun = "token", .verb = "create",
    .summary = "print a delegation token, signed with your --identity, that lets host --via have VM moved "
               "--from HOST --to HOST",
    .args = "VM", .flags = token_flags, .min_args = 1, .max_args = 1, .fn = cmd_token_create_exec,
};

static int cmd_move_exec(struct cli *c, const struct cli_args *a)
{
    json_t *tuning = tuning_params(c, a);
    if (!tuning)
        return EXIT_USAGE;
    if (cli_flag_set(a, "check"))
        return cli_opt(a, "from") ? delegated_check(c, a, tuning) : move_check(c, a, tuning);
    if (cli_opt(a, "from"))
        return delegated_move(c, a, tuning);
    json_t *move_token = NULL;
    char src[256];
    if (strncmp(c->host, "unix:", 5)) {
        if (relay_host_name(c, src, sizeof src) < 0) {
            cli_error(c, "cannot learn the name of the host at %s, which the move token must name", c->host);
            json_decref(tuning);
            return EXIT_USAGE;
        }
        if (sign_move_token(c, a->argv[0], src, cli_opt(a, "to"), &move_token) < 0) {
            json_decref(tuning);
            return EXIT_USAGE;
        }
    }
    struct probe probe = {0};
    bool probing = cli_opt(a, "probe") != NULL;
    if (probing && probe_start(c, cli_opt(a, "probe"), &probe) < 0) {
        json_decref(tuning);
        json_decref(move_token);
        return EXIT_FAIL;
    }
    int code;
    json_t *r = cli_call(c, "vm.move", json_pack("{s:s, s:s, s:o, s:b, s:o*}", "name", a->argv[0], "to",
                                                 cli_opt(a, "to"), "tuning", tuning, "wait", false, "move_token",
                                                 move_token), NULL, NULL, &code);
    int rc = code;
    if (r && cli_flag_set(a, "no-wait")) {
        cli_print_accepted(c, r);
        rc = 0;
    } else if (r) {
        json_t *final = NULL;
        rc = cli_follow_job_result(c, json_pack("{s:I}", "id", json_integer_value(json_object_get(r, "job"))), &final);
        json_t *pr = probing ? probe_finish(&probe) : NULL;
        probing = false;
        if (pr && final)
            probe_align(pr, final);
        if (final && c->json)
            cli_print_move_final(final, pr, rc == 0);
        else if (final && rc == 0)
            progress_print_move_result(final, pr);
        json_decref(pr);
        json_decref(final);
    }
    if (probing)
        json_decref(probe_finish(&probe));
    json_decref(r);
    return rc;
}

/* Stringized, so that the help shows vmoved's own defaults. */
#define STR(x) #x
#define XSTR(x) STR(x)
static const struct cli_flag move_flags[] = {
    {"to", 0, "HOST|ADDR:PORT", NULL, NULL, "the destination: a peer's name, or an address (any host of the CA)",
     CLI_REQUIRED},
    {"from", 0, "HOST", NULL, NULL,
     "move a VM that runs on HOST, relayed by this host with a delegation token (needs --identity)", 0},
    {"token-file", 0, "FILE", "signed now with --identity", NULL, "with --from: the delegation token to use", 0},
    {"quick", 0, NULL, NULL, NULL, "quick migration over shared storage: pause, save, load on the destination, resume",
     0},
    {"state-dir", 0, "DIR", "the first disk's directory", NULL, "with --quick: where to save the state, on storage both hosts share", 0},
    {"with-storage", 0, "DIR", NULL, NULL, "shared-nothing: copy the disks into DIR on the destination as well", 0},
    {"keep-source", 0, NULL, NULL, NULL, "with --with-storage: keep the source's disk files after success", 0},
    {"downtime", 0, "MS", XSTR(TUNING_DEFAULT_DOWNTIME_MS), "ms",
     "QEMU's downtime limit: the longest pause it aims for at switch-over", 0},
    {"max-downtime", 0, "MS", XSTR(TUNING_DEFAULT_MAX_DOWNTIME_MS), "ms",
     "the convergence policy never raises the limit beyond this", 0},
    {"max-duration", 0, "S", XSTR(TUNING_DEFAULT_MAX_DURATION_S), "s",
     "cancel (the VM stays on the source) after this long", 0},
    {"parallel", 0, "N", XSTR(TUNING_DEFAULT_CHANNELS), NULL, "multifd channels (1: QEMU's single stream)", 0},
    {"compress", 0, "auto|none|zstd|zlib", "auto", NULL,
     "multifd compression (needs --parallel 2 or more); auto measures the link first", 0},
    {"bandwidth", 0, "RATE", "unlimited", "Mbit/s",
     "cap the migration stream: a bit rate, 500M or 1G (K, M, G: 1000s of bit/s); a bare number is Mbit/s", 0},
    {"converge", 0, "auto|throttle|downtime|cancel|postcopy", "auto", NULL,
     "what to do when the guest dirties memory faster than the link carries it; postcopy (both hosts must allow "
     "it) switches to post-copy after the first pass: a host or link dying then loses the VM", 0},
    {"max-recover-wait", 0, "S", XSTR(TUNING_DEFAULT_MAX_RECOVER_WAIT_S), "s",
     "post-copy: how long a move paused by a broken link waits for it before the VM is declared lost", 0},
    {"max-wait", 0, "DURATION", XSTR(TUNING_DEFAULT_MAX_WAIT_S) "s", NULL,
     "fail, with the reason, if the destination does not take the move within this long (unreachable, wrong "
     "certificate, or no free slot there): seconds, or 90s, 10m, 1h", 0},
    {"probe", 0, "IP:PORT", NULL, NULL,
     "measure the downtime a client sees: a UDP echo to the guest every 1 ms, and the longest gap", 0},
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {"check", 0, NULL, NULL, NULL,
     "move nothing: check every precondition of this move on both hosts (peer, switches, networks, rights, "
     "delegation, disks or storage space, accelerator, QEMU, machine type, limits) and print each problem with "
     "the command that fixes it and the host to run it on; exit 1 if any", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_move_entry = {
    .noun = "move", .summary = "live-migrate VM NAME to another host (memory; disks too with --with-storage)",
    .args = "NAME", .flags = move_flags, .min_args = 1, .max_args = 1, .fn = cmd_move_exec,
};
