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
#include "common/token.h"
#include "common/util.h"

extern char **environ;

static const struct cli_flag move_flags[] = {
    {"to", 0, true, false},           {"no-wait", 0, false, false},    {"downtime", 0, true, false},
    {"max-downtime", 0, true, false}, {"max-duration", 0, true, false}, {"parallel", 0, true, false},
    {"compress", 0, true, false},     {"bandwidth", 0, true, false},    {"converge", 0, true, false},
    {"probe", 0, true, false},        {"quick", 0, false, false},       {"state-dir", 0, true, false},
    {"with-storage", 0, true, false}, {"keep-source", 0, false, false}, {"from", 0, true, false},
    {"token-file", 0, true, false},   {NULL, 0, false, false}};

static int int_opt(struct cli *c, const struct cli_args *a, const char *name, json_t *tuning, const char *key,
                   long long mult)
{
    const char *v = cli_opt(a, name);
    if (!v)
        return 0;
    char *end;
    long long n = strtoll(v, &end, 10);
    if (*end || end == v || n < 0) {
        cli_error(c, "--%s \"%s\": expected a whole number", name, v);
        return -1;
    }
    json_object_set_new(tuning, key, json_integer(n * mult));
    return 0;
}

static json_t *tuning_params(struct cli *c, const struct cli_args *a)
{
    json_t *t = json_object();
    if (int_opt(c, a, "downtime", t, "downtime_ms", 1) < 0 || int_opt(c, a, "max-downtime", t, "max_downtime_ms", 1) < 0 ||
        int_opt(c, a, "max-duration", t, "max_duration_s", 1) < 0 || int_opt(c, a, "parallel", t, "channels", 1) < 0 ||
        int_opt(c, a, "bandwidth", t, "bandwidth", 1000000 / 8) < 0) {   /* --bandwidth in Mbit/s */
        json_decref(t);
        return NULL;
    }
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
 * dirty tracking): the longest gap ending in the move's last 600 ms.  0 if
 * none of at least 20 ms (the probe lists shorter ones not at all). */
static double probe_switchover_gap(json_t *probe)
{
    double done = (double)json_integer_value(json_object_get(probe, "duration_ms")) - PROBE_TAIL_MS, best = 0;
    size_t i;
    json_t *g;
    json_array_foreach(json_object_get(probe, "gaps"), i, g) {
        double start = json_number_value(json_object_get(g, "start_ms")), ms = json_number_value(json_object_get(g, "ms"));
        if (start + ms >= done - SWITCHOVER_WINDOW_MS && ms > best)
            best = ms;
    }
    return best;
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
    if (json_is_object(j))
        json_object_set_new(j, "switchover_gap_ms", json_real(probe_switchover_gap(j)));
    return j;
}

/* ---- output ------------------------------------------------------------ */

static void print_result(json_t *job, json_t *probe)
{
    json_t *r = json_object_get(job, "result");
    char a[32], b[32], d[32];
    bool quick = json_is_true(json_object_get(json_object_get(r, "tuning"), "quick"));
    printf("%s %s to %s\n", quick ? "quick-migrated" : "migrated", json_string_value(json_object_get(job, "vm")),
           json_string_value(json_object_get(r, "to")));
    if (quick)
        printf("  pause time:        %s (paused, saved to shared storage, loaded and resumed)\n",
               fmt_duration_ms((double)json_integer_value(json_object_get(r, "pause_ms")), a, sizeof a));
    printf("  total time:        %s\n", fmt_duration_ms((double)json_integer_value(json_object_get(r, "total_ms")), a, sizeof a));
    printf("  downtime (QEMU):   %s (limit %lld ms)\n",
           fmt_duration_ms((double)json_integer_value(json_object_get(r, "qemu_downtime_ms")), b, sizeof b),
           (long long)json_integer_value(json_object_get(r, "downtime_limit_ms")));
    if (probe) {
        double sw = json_real_value(json_object_get(probe, "switchover_gap_ms"));
        printf("  downtime (client): %.1f ms (longest gap in a 1 ms UDP echo; %lld of %lld answered)\n",
               json_real_value(json_object_get(probe, "max_gap_ms")),
               (long long)json_integer_value(json_object_get(probe, "received")),
               (long long)json_integer_value(json_object_get(probe, "sent")));
        if (sw > 0)
            printf("  at switch-over:    %.1f ms (longest gap in the last %d ms of the move)\n", sw,
                   SWITCHOVER_WINDOW_MS);
        else
            printf("  at switch-over:    < 20 ms (no gap of 20 ms or more in the last %d ms of the move)\n",
                   SWITCHOVER_WINDOW_MS);
    }
    printf("  bytes sent:        %s in %lld passes\n",
           fmt_bytes((double)json_integer_value(json_object_get(r, "bytes_sent")), d, sizeof d),
           (long long)json_integer_value(json_object_get(r, "passes")));
    size_t i;
    json_t *act;
    json_array_foreach(json_object_get(r, "policy_actions"), i, act) printf("  policy:            %s\n",
                                                                            json_string_value(act));
}

static void on_relay_event(struct cli *c, const char *event, json_t *data, void *arg)
{
    char *last = arg;
    if (cli_event_json(c, event, data))
        return;
    const char *phase = json_string_value(json_object_get(data, "phase"));
    if (phase && strcmp(phase, last)) {
        fprintf(stderr, "job %lld on %s: %s\n", (long long)json_integer_value(json_object_get(data, "id")),
                json_string_value(json_object_get(json_object_get(data, "params"), "to")) ? "the source" : "?", phase);
        snprintf(last, 64, "%s", phase);
    }
}

/* --from HOST: this host relays the move to HOST with a token signed by the
 * user (constrained delegation). */
static int delegated_move(struct cli *c, const struct cli_args *a, json_t *tuning)
{
    const char *name = a->argv[0], *from = cli_opt(a, "from"), *to = cli_opt(a, "to");
    json_t *token;
    char err[512];
    if (cli_opt(a, "token-file")) {
        json_error_t je;
        token = json_load_file(cli_opt(a, "token-file"), 0, &je);
        if (!token) {
            cli_error(c, "cannot read the token file %s: %s", cli_opt(a, "token-file"), je.text);
            json_decref(tuning);
            return EXIT_USAGE;
        }
    } else if (!c->identity || !(token = token_create(c->identity, "migrate", name, from, to, err, sizeof err))) {
        cli_error(c, "%s", c->identity ? err : "moving a VM from another host needs your user identity to sign a "
                                                "delegation token: --identity DIR (or VMOVE_IDENTITY)");
        json_decref(tuning);
        return EXIT_USAGE;
    }
    char last[64] = "";
    int code;
    json_t *final = cli_call(c, "vm.move", json_pack("{s:s, s:s, s:s, s:o, s:o}", "name", name, "to", to, "from",
                                                     from, "delegation", token, "tuning", tuning),
                             on_relay_event, last, &code);
    if (!final)
        return code;
    const char *st = json_string_value(json_object_get(final, "state"));
    int rc = st && !strcmp(st, "succeeded") ? 0 : EXIT_FAIL;
    if (c->json) {
        json_t *out = json_pack("{s:s, s:O}", "event", "done", "job", final);
        cli_print_json(out);
        json_decref(out);
    } else if (rc == 0)
        print_result(final, NULL);
    else
        fprintf(stderr, "vmove: error: the move on %s %s: %s\n", from, st ? st : "?",
                json_string_value(json_object_get(json_object_get(final, "error"), "message")));
    json_decref(final);
    return rc;
}

/* vmove token create VM --from B --to C: a delegation token, for scripts. */
int cmd_token(struct cli *c, int argc, char **argv)
{
    static const struct cli_flag flags[] = {{"from", 0, true, false}, {"to", 0, true, false}, {NULL, 0, false, false}};
    struct cli_args a;
    if (argc < 1 || strcmp(argv[0], "create") || cli_parse(argc - 1, argv + 1, flags, &a) < 0 || a.argc != 1 ||
        !cli_opt(&a, "from") || !cli_opt(&a, "to")) {
        if (argc >= 1 && !strcmp(argv[0], "create"))
            cli_args_free(&a);
        cli_error(c, "usage: vmove --identity DIR token create VM --from HOST --to HOST");
        return EXIT_USAGE;
    }
    char err[512];
    json_t *t = c->identity ? token_create(c->identity, "migrate", a.argv[0], cli_opt(&a, "from"), cli_opt(&a, "to"),
                                           err, sizeof err) : NULL;
    cli_args_free(&a);
    if (!t) {
        cli_error(c, "%s", c->identity ? err : "a token is signed with your user key: --identity DIR");
        return EXIT_FAIL;
    }
    cli_print_json(t);
    json_decref(t);
    return 0;
}

int cmd_move(struct cli *c, int argc, char **argv)
{
    struct cli_args a;
    if (cli_parse(argc, argv, move_flags, &a) < 0 || a.argc != 1 || !cli_opt(&a, "to")) {
        if (a.opts)
            cli_args_free(&a);
        fprintf(stderr, "usage: vmove move NAME --to HOST|ADDR:PORT [--quick [--state-dir DIR]] [--with-storage DIR [--keep-source]] [--from HOST] [--downtime MS] [--max-downtime MS]\n"
                        "       [--max-duration S] [--parallel N] [--compress none|zstd|zlib] [--bandwidth MBIT]\n"
                        "       [--converge auto|throttle|downtime|cancel] [--probe IP:PORT] [--no-wait]\n");
        return EXIT_USAGE;
    }
    json_t *tuning = tuning_params(c, &a);
    if (!tuning) {
        cli_args_free(&a);
        return EXIT_USAGE;
    }
    if (cli_opt(&a, "from")) {
        int rc = delegated_move(c, &a, tuning);
        cli_args_free(&a);
        return rc;
    }
    struct probe probe = {0};
    bool probing = cli_opt(&a, "probe") != NULL;
    if (probing && probe_start(c, cli_opt(&a, "probe"), &probe) < 0) {
        json_decref(tuning);
        cli_args_free(&a);
        return EXIT_FAIL;
    }
    int code;
    json_t *r = cli_call(c, "vm.move", json_pack("{s:s, s:s, s:o, s:b}", "name", a.argv[0], "to", cli_opt(&a, "to"),
                                                 "tuning", tuning, "wait", false), NULL, NULL, &code);
    int rc = code;
    if (r && cli_flag_set(&a, "no-wait")) {
        cli_print_accepted(c, r);
        rc = 0;
    } else if (r) {
        json_t *final = NULL;
        rc = cli_follow_job_result(c, json_pack("{s:I}", "id", json_integer_value(json_object_get(r, "job"))), &final);
        json_t *pr = probing ? probe_finish(&probe) : NULL;
        probing = false;
        if (final && c->json) {
            json_t *out = json_pack("{s:s, s:O, s:O?}", "event", "done", "job", final, "probe", pr);
            cli_print_json(out);
            json_decref(out);
        } else if (final && rc == 0)
            print_result(final, pr);
        json_decref(pr);
        json_decref(final);
    }
    if (probing)
        json_decref(probe_finish(&probe));
    json_decref(r);
    cli_args_free(&a);
    return rc;
}
