/* vmove vm create|list|show|start|stop|pause|resume|delete|console|guest */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cmd-table.h"
#include "common/units.h"
#include "common/util.h"

static bool looks_like_path(const char *s) { return strchr(s, '/') != NULL; }

/* --memory as whole MiB into p["memory"]; false after a usage error. */
static bool memory_param(struct cli *c, const struct cli_args *a, json_t *p)
{
    uint64_t bytes = 0;
    if (!cli_opt_units(c, a, "memory", UNIT_MEMORY, 1, &bytes))
        return false;
    if (bytes % (1ULL << 20)) {
        cli_usage_error(c, a->cmd, "--memory \"%s\": must be a whole number of MiB", cli_opt(a, "memory"));
        return false;
    }
    if (bytes)
        json_object_set_new(p, "memory", json_integer((json_int_t)(bytes >> 20)));
    return true;
}

/* One --disk/--add-disk word: SIZE, PATH or PATH,size=SIZE; the size is
 * checked here (exit 2 naming the flag), the path made absolute.  NULL
 * after a usage error. */
static json_t *disk_spec(struct cli *c, const struct cli_args *a, const char *flag, const char *d)
{
    const char *comma = strchr(d, ','), *size = comma && !strncmp(comma, ",size=", 6) ? comma + 6 : NULL;
    const char *why;
    uint64_t bytes;
    if (!looks_like_path(d) || size) {
        const char *text = size ? size : d;
        if (units_parse(text, UNIT_DISK, &bytes, &why) < 0) {
            cli_usage_error(c, a->cmd, "--%s \"%s\": %s (a size such as 8G, a path to a qcow2 image, or "
                            "PATH,size=8G)", flag, d, why);
            return NULL;
        }
    }
    if (!looks_like_path(d))
        return json_string(d);
    char *path = comma ? xstrndup(d, (size_t)(comma - d)) : xstrdup(d);
    json_t *abs = cli_absolute_path(path);
    free(path);
    if (comma) {
        char *joined = xasprintf("%s%s", json_string_value(abs), comma);
        json_decref(abs);
        abs = json_string(joined);
        free(joined);
    }
    return abs;
}

/* The words of a repeated flag through disk_spec; NULL after a usage error. */
static json_t *disk_specs(struct cli *c, const struct cli_args *a, const char *flag)
{
    json_t *disks = json_array(), *v;
    size_t i;
    json_array_foreach(json_object_get(a->opts, flag), i, v) {
        json_t *spec = disk_spec(c, a, flag, json_string_value(v));
        if (!spec) {
            json_decref(disks);
            return NULL;
        }
        json_array_append_new(disks, spec);
    }
    return disks;
}

/* NULL after a usage error. */
static json_t *create_params(struct cli *c, const struct cli_args *a)
{
    json_t *p = json_pack("{s:s}", "name", a->argv[0]);
    long long cpus = LLONG_MIN;   /* any number: vmoved says which it takes */
    json_t *disks = NULL;
    if (!memory_param(c, a, p) || !cli_opt_number(c, a, "cpus", LLONG_MIN, &cpus) ||
        !(disks = disk_specs(c, a, "disk"))) {
        json_decref(p);
        return NULL;
    }
    if (cpus != LLONG_MIN)
        json_object_set_new(p, "cpus", json_integer(cpus));
    json_t *nics = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(a->opts, "nic"), i, v) json_array_append(nics, v);
    json_object_set_new(p, "disks", disks);
    json_object_set_new(p, "nics", nics);
    const char *files[] = {"kernel", "initrd"};
    for (i = 0; i < 2; i++)
        if (cli_opt(a, files[i]))
            json_object_set_new(p, files[i], cli_absolute_path(cli_opt(a, files[i])));
    if (cli_opt(a, "append"))
        json_object_set_new(p, "append", json_string(cli_opt(a, "append")));
    if (cli_opt(a, "machine"))
        json_object_set_new(p, "machine", json_string(cli_opt(a, "machine")));
    if (cli_flag_set(a, "ha"))
        json_object_set_new(p, "ha", json_true());
    const char *iso = cli_opt(a, "isolation");
    if (iso && ((strcmp(iso, "keep") && strcmp(iso, "stop")) || !cli_flag_set(a, "ha"))) {
        cli_usage_error(c, a->cmd, strcmp(iso, "keep") && strcmp(iso, "stop") ? "--isolation takes keep or stop"
                                                                              : "--isolation goes with --ha");
        json_decref(p);
        return NULL;
    }
    if (iso)
        json_object_set_new(p, "isolation", json_string(iso));
    return p;
}

static const char *jstr(const json_t *o, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : dflt;
}

static const char *fmt_uptime(const json_t *vm, char *buf, size_t len)
{
    json_t *up = json_object_get(vm, "uptime_ms");
    if (!up)
        return "-";
    long long s = json_integer_value(up) / 1000;
    if (s < 3600)
        snprintf(buf, len, "%lldm%02llds", s / 60, s % 60);
    else if (s < 86400)
        snprintf(buf, len, "%lldh%02lldm", s / 3600, s / 60 % 60);
    else
        snprintf(buf, len, "%lldd%02lldh", s / 86400, s / 3600 % 24);
    return buf;
}

#define VM_LINE_FMT "%-20s %-12s %-10s %8s %5s %9s  %s\n"

static void print_vm_line(json_t *vm, const char *host)
{
    char mem[32] = "-", cpus[16] = "-", up[32];
    if (json_object_get(vm, "memory_mib"))
        snprintf(mem, sizeof mem, "%lld MiB", (long long)json_integer_value(json_object_get(vm, "memory_mib")));
    if (json_object_get(vm, "cpus"))
        snprintf(cpus, sizeof cpus, "%lld", (long long)json_integer_value(json_object_get(vm, "cpus")));
    printf(VM_LINE_FMT, jstr(vm, "name", "?"), host, jstr(vm, "state", "?"), mem, cpus, fmt_uptime(vm, up, sizeof up),
           jstr(vm, "error", ""));
}

static void print_vm(json_t *vm)
{
    char *s = json_dumps(vm, JSON_INDENT(2));
    printf("%s\n", s);
    free(s);
}

static int simple(struct cli *c, const char *method, json_t *params, bool list)
{
    int code;
    json_t *r = cli_call(c, method, params, NULL, NULL, &code);
    if (!r)
        return code;
    if (c->json)
        cli_print_json(r);
    else if (list) {
        size_t i;
        json_t *vm;
        const char *host = jstr(r, "host", "?");
        if (json_array_size(json_object_get(r, "vms")))
            printf(VM_LINE_FMT, "NAME", "HOST", "STATE", "MEMORY", "CPUS", "UPTIME", "");
        json_array_foreach(json_object_get(r, "vms"), i, vm) print_vm_line(vm, host);
        if (!json_array_size(json_object_get(r, "vms")))
            printf("no VMs on host %s\n", host);
    } else if (json_object_get(r, "state") && !json_object_get(r, "config"))
        printf("%s: %s\n", jstr(r, "name", "?"), jstr(r, "state", "?"));
    else if (json_object_get(r, "deleted"))
        printf("deleted %s\n", json_string_value(json_object_get(r, "deleted")));
    else
        print_vm(r);
    json_decref(r);
    return 0;
}

/* Start/stop: a job; wait for it unless --no-wait. */
static int lifecycle(struct cli *c, const char *method, json_t *params, bool wait)
{
    json_object_set_new(params, "wait", json_false());
    int code;
    json_t *r = cli_call(c, method, params, NULL, NULL, &code);
    if (!r)
        return code;
    json_t *job = json_object_get(r, "job");
    if (!job) {   /* answered without a job (e.g. acknowledging a crash) */
        if (c->json)
            cli_print_json(r);
        json_decref(r);
        return 0;
    }
    json_int_t id = json_integer_value(job);
    json_decref(r);
    if (!wait) {
        json_t *o = json_pack("{s:I}", "job", id);
        cli_print_accepted(c, o);
        json_decref(o);
        return 0;
    }
    int rc = cli_follow_job(c, json_pack("{s:I}", "id", id));
    if (rc == 0 && !c->json)
        printf("%s: done\n", method);
    return rc;
}

/* ---- console ---------------------------------------------------------- */

/* The console's bytes: on stdout as they are; with --json one final
 * document {"vm", "data", "offset", "size"}, or with --follow one stream
 * line {"event": "console", "data": {"vm", "data"}} per chunk. */
static void console_out(struct cli *c, const char *name, const char *data, size_t n, bool follow, json_t *all)
{
    if (!c->json) {
        fwrite(data, 1, n, stdout);
        fflush(stdout);
    } else if (follow && n) {
        json_t *d = json_pack("{s:s, s:s%}", "vm", name, "data", data, n);
        cli_event_json(c, "console", d);
        json_decref(d);
    } else if (!follow) {
        const char *had = json_string_value(json_object_get(all, "data"));
        char *joined = xasprintf("%s%.*s", had ? had : "", (int)n, data);
        json_object_set_new(all, "data", json_string(joined));
        free(joined);
    }
}

static int console_print(struct cli *c, const char *name, bool follow)
{
    long long offset = 0;
    json_t *all = json_pack("{s:s, s:s}", "vm", name, "data", "");
    for (;;) {
        int code;
        json_t *r = cli_call(c, "vm.console", json_pack("{s:s, s:I, s:i}", "name", name, "offset",
                                                        (json_int_t)offset, "max", 262144), NULL, NULL, &code);
        if (!r) {
            json_decref(all);
            return code;
        }
        console_out(c, name, json_string_value(json_object_get(r, "data")),
                    json_string_length(json_object_get(r, "data")), follow, all);
        offset = json_integer_value(json_object_get(r, "offset"));
        bool more = offset < json_integer_value(json_object_get(r, "size"));
        json_object_set(all, "offset", json_object_get(r, "offset"));
        json_object_set(all, "size", json_object_get(r, "size"));
        json_decref(r);
        if (more)
            continue;
        if (!follow) {
            if (c->json)
                cli_print_json(all);
            json_decref(all);
            return 0;
        }
        struct timespec ts = {0, 200 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
}

/* Interactive: only on the local socket, where the CLI can reach the VM's
 * console socket itself (like `virsh console`).  Ctrl-] detaches. */
static int console_interactive(struct cli *c, const char *name)
{
    int code;
    json_t *r = cli_call(c, "vm.console", json_pack("{s:s, s:i}", "name", name, "offset", -4096), NULL, NULL, &code);
    if (!r)
        return code;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s/console.sock", json_string_value(json_object_get(r, "dir")));
    fwrite(json_string_value(json_object_get(r, "data")), 1, json_string_length(json_object_get(r, "data")), stdout);
    json_decref(r);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        cli_error(c, "cannot attach to the console of %s: %s (is it running? is another console attached?)", name,
                  strerror(errno));
        close(fd);
        return EXIT_FAIL;
    }
    fprintf(stderr, "\r\n[connected to %s; Ctrl-] detaches]\r\n", name);
    struct termios old, raw;
    tcgetattr(0, &old);
    raw = old;
    cfmakeraw(&raw);
    tcsetattr(0, TCSANOW, &raw);
    struct pollfd p[2] = {{.fd = 0, .events = POLLIN}, {.fd = fd, .events = POLLIN}};
    char buf[4096];
    for (;;) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[0].revents & POLLIN) {
            ssize_t n = read(0, buf, sizeof buf);
            if (n <= 0 || memchr(buf, 0x1d, (size_t)n))
                break;
            if (write(fd, buf, (size_t)n) < 0)
                break;
        }
        if (p[1].revents & (POLLIN | POLLHUP)) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0 || write(1, buf, (size_t)n) < 0)
                break;
        }
    }
    tcsetattr(0, TCSANOW, &old);
    close(fd);
    fprintf(stderr, "\n[detached]\n");
    return 0;
}

static int guest_command(struct cli *c, const char *name, int argc, char **argv)
{
    size_t len = 0;
    for (int i = 0; i < argc; i++)
        len += strlen(argv[i]) + 1;
    char *line = xcalloc(1, len + 1);
    for (int i = 0; i < argc; i++) {
        strcat(line, argv[i]);
        if (i + 1 < argc)
            strcat(line, " ");
    }
    int code;
    json_t *r = cli_call(c, "vm.guest", json_pack("{s:s, s:s}", "name", name, "command", line), NULL, NULL, &code);
    free(line);
    if (!r)
        return code;
    const char *reply = json_string_value(json_object_get(r, "reply"));
    /* The guest program answers "fail ..." or "error ..." when something is wrong. */
    int rc = reply && (!strncmp(reply, "fail", 4) || !strncmp(reply, "error", 5)) ? EXIT_FAIL : 0;
    if (c->json && rc)
        json_object_set_new(r, "error", json_pack("{s:s, s:s}", "code", "guest_failed", "message", reply));
    if (c->json)
        cli_print_final(r, rc == 0);
    else
        printf("%s\n", reply);
    json_decref(r);
    return rc;
}

/* ---- info and set ------------------------------------------------------- */

static const char *bytes_or_dash(const json_t *o, const char *key, char *buf, size_t len)
{
    json_t *v = json_object_get(o, key);
    return v ? fmt_bytes((double)json_integer_value(v), buf, len) : "-";
}

static void print_info_disks(json_t *disks)
{
    size_t i;
    json_t *d;
    printf("disks:%s\n", json_array_size(disks) ? "" : "       none");
    if (json_array_size(disks))
        printf("  %-5s %-7s %10s %10s  %s\n", "ID", "FORMAT", "VIRTUAL", "ALLOCATED", "PATH");
    json_array_foreach(disks, i, d) {
        char v[32], al[32];
        printf("  %-5s %-7s %10s %10s  %s\n", jstr(d, "id", "?"), jstr(d, "format", "?"),
               bytes_or_dash(d, "virtual_bytes", v, sizeof v), bytes_or_dash(d, "allocated_bytes", al, sizeof al),
               jstr(d, "path", "?"));
        if (json_object_get(d, "error"))
            printf("        (qemu-img cannot read it: %s)\n", jstr(d, "error", ""));
    }
}

static void print_info_nics(json_t *nics)
{
    size_t i;
    json_t *n;
    printf("NICs:%s\n", json_array_size(nics) ? "" : "        none");
    if (json_array_size(nics))
        printf("  %-5s %-16s %-18s %s\n", "ID", "SWITCH", "MAC", "TAP");
    json_array_foreach(nics, i, n)
        printf("  %-5s %-16s %-18s %s\n", jstr(n, "id", "?"), jstr(n, "switch", "?"), jstr(n, "mac", "?"),
               jstr(n, "tap", "?"));
}

static void print_info(json_t *r)
{
    char up[32];
    printf("%-13s%s\n%-13s%s\n", "name:", jstr(r, "name", "?"), "host:", jstr(r, "host", "?"));
    printf("%-13s%s", "state:", jstr(r, "state", "?"));
    if (json_object_get(r, "uptime_ms"))
        printf(" (up %s)", fmt_uptime(r, up, sizeof up));
    printf("\n");
    if (json_object_get(r, "error")) {
        printf("%-13s%s\n", "error:", jstr(r, "error", ""));
        return;
    }
    printf("%-13s%lld MiB\n%-13s%lld\n", "memory:", (long long)json_integer_value(json_object_get(r, "memory_mib")),
           "CPUs:", (long long)json_integer_value(json_object_get(r, "cpus")));
    printf("%-13s%s\n%-13s%s (this host's)\n", "machine:", jstr(r, "machine", "?"), "accelerator:",
           jstr(r, "accel", "?"));
    printf("%-13s%s", "HA:", json_is_true(json_object_get(r, "ha")) ? "on" : "off");
    if (json_is_true(json_object_get(r, "ha")))
        printf(" (isolation %s)", jstr(r, "isolation", "stop"));
    printf("\n");
    print_info_disks(json_object_get(r, "disks"));
    print_info_nics(json_object_get(r, "nics"));
    json_t *ck = json_object_get(r, "checkpoints");
    size_t n = json_array_size(json_object_get(ck, "list"));
    if (n) {
        printf("%-13s%zu (current: %s):", "checkpoints:", n, jstr(ck, "current", "none"));
        size_t i;
        json_t *name;
        json_array_foreach(json_object_get(ck, "list"), i, name) printf(" %s", json_string_value(name));
        printf("\n");
    }
}

static int cmd_vm_info_exec(struct cli *c, const struct cli_args *a)
{
    return cli_call_and_print(c, "vm.info", json_pack("{s:s}", "name", a->argv[0]), print_info);
}

/* The words of a repeated flag as given. */
static void copy_list(const struct cli_args *a, const char *flag, json_t *p, const char *key)
{
    json_t *v = json_object_get(a->opts, flag);
    if (v)
        json_object_set(p, key, v);
}

int cli_vm_set_config(struct cli *c, const struct cli_args *a)
{
    json_t *p = json_pack("{s:s}", "name", a->argv[0]);
    long long cpus = LLONG_MIN;
    json_t *disks = NULL;
    if (!memory_param(c, a, p) || !cli_opt_number(c, a, "cpus", 1, &cpus) || !(disks = disk_specs(c, a, "add-disk"))) {
        json_decref(p);
        return EXIT_USAGE;
    }
    if (cpus != LLONG_MIN)
        json_object_set_new(p, "cpus", json_integer(cpus));
    if (json_array_size(disks))
        json_object_set(p, "add_disks", disks);
    json_decref(disks);
    copy_list(a, "remove-disk", p, "remove_disks");
    copy_list(a, "add-nic", p, "add_nics");
    copy_list(a, "remove-nic", p, "remove_nics");
    int code;
    json_t *r = cli_call(c, "vm.set", p, NULL, NULL, &code);
    if (!r)
        return code;
    if (c->json)
        cli_print_json(r);
    else {
        size_t i;
        json_t *ch;
        json_array_foreach(json_object_get(r, "changes"), i, ch) printf("%s: %s\n", a->argv[0], json_string_value(ch));
    }
    json_decref(r);
    return 0;
}

static int cmd_vm_create_exec(struct cli *c, const struct cli_args *a)
{
    json_t *p = create_params(c, a);
    return p ? simple(c, "vm.create", p, false) : EXIT_USAGE;
}

static int cmd_vm_list_exec(struct cli *c, const struct cli_args *a)
{
    return simple(c, "vm.list", NULL, true);
}

static int cmd_vm_show_exec(struct cli *c, const struct cli_args *a)
{
    return simple(c, "vm.show", json_pack("{s:s}", "name", a->argv[0]), false);
}

static int cmd_vm_start_exec(struct cli *c, const struct cli_args *a)
{
    return lifecycle(c, "vm.start", json_pack("{s:s}", "name", a->argv[0]), !cli_flag_set(a, "no-wait"));
}

static int cmd_vm_stop_exec(struct cli *c, const struct cli_args *a)
{
    json_t *p = json_pack("{s:s, s:b}", "name", a->argv[0], "force", cli_flag_set(a, "force"));
    if (cli_opt(a, "timeout"))
        json_object_set_new(p, "timeout", json_integer(atoll(cli_opt(a, "timeout"))));
    return lifecycle(c, "vm.stop", p, !cli_flag_set(a, "no-wait"));
}

static int cmd_vm_pause_exec(struct cli *c, const struct cli_args *a)
{
    return simple(c, "vm.pause", json_pack("{s:s}", "name", a->argv[0]), false);
}

static int cmd_vm_resume_exec(struct cli *c, const struct cli_args *a)
{
    return simple(c, "vm.resume", json_pack("{s:s}", "name", a->argv[0]), false);
}

static int cmd_vm_delete_exec(struct cli *c, const struct cli_args *a)
{
    return simple(c, "vm.delete", json_pack("{s:s, s:b}", "name", a->argv[0], "keep_disks",
                                            cli_flag_set(a, "keep-disks")), false);
}

static int cmd_vm_console_exec(struct cli *c, const struct cli_args *a)
{
    bool follow = cli_flag_set(a, "follow");
    if (follow && isatty(0) && isatty(1) && !c->json && !strncmp(c->host, "unix:", 5))
        return console_interactive(c, a->argv[0]);
    return console_print(c, a->argv[0], follow);
}

static int cmd_vm_guest_exec(struct cli *c, const struct cli_args *a)
{
    return guest_command(c, a->argv[0], a->argc - 1, a->argv + 1);
}

static const struct cli_flag vm_create_flags[] = {
    {"memory", 'm', "SIZE", "512M", "MiB", "guest memory: 512M, 2G (K, M, G, T: binary), or a bare number of MiB", 0},
    {"cpus", 'c', "N", "1", NULL, "virtual CPUs", 0},
    {"disk", 'd', "SIZE|PATH|PATH,size=SIZE", NULL, NULL,
     "a new qcow2 disk of SIZE (8G) in the VM's directory, an existing qcow2 image at PATH used as is, or a new "
     "qcow2 of SIZE at PATH (which must not exist; its directory must be allowed for images)", CLI_REPEAT},
    {"nic", 'n', "SWITCH", NULL, NULL, "a network card on the host's Linux bridge SWITCH", CLI_REPEAT},
    {"kernel", 0, "FILE", "boot from the first disk", NULL, "boot this Linux kernel directly", 0},
    {"initrd", 0, "FILE", NULL, NULL, "the initramfs for --kernel", 0},
    {"append", 0, "CMDLINE", NULL, NULL, "the kernel command line for --kernel", 0},
    {"machine", 0, "TYPE", "the host's default machine", NULL, "the QEMU machine type", 0},
    {"ha", 0, NULL, NULL, NULL, "high availability: in a cluster, restart the VM on another host if its host dies", 0},
    {"isolation", 0, "stop|keep", "stop", NULL,
     "with --ha, when its host loses the cluster lease: stop (fenced, restarted elsewhere) or keep (never fenced, "
     "never restarted elsewhere automatically)", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag no_wait_flag[] = {
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag vm_stop_flags[] = {
    {"force", 0, NULL, NULL, NULL, "quit QEMU at once instead of asking the guest to power off", 0},
    {"timeout", 't', "S", "60", "s", "how long to wait for the guest to power off; then the stop fails (see --force)", 0},
    {"no-wait", 0, NULL, NULL, NULL, "print the job id at once; follow with `vmove jobs watch ID`", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag vm_delete_flags[] = {
    {"keep-disks", 0, NULL, NULL, NULL, "leave the disk files in place", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};
static const struct cli_flag vm_console_flags[] = {
    {"follow", 'f', NULL, NULL, NULL,
     "keep reading; on a terminal with the local socket, attach interactively (Ctrl-] detaches)", 0},
    {NULL, 0, NULL, NULL, NULL, NULL, 0},
};

const struct cli_cmd cmd_vm_create_entry = {
    .noun = "vm", .verb = "create", .summary = "define a VM (it is not started)",
    .args = "NAME", .flags = vm_create_flags, .min_args = 1, .max_args = 1, .fn = cmd_vm_create_exec,
};
const struct cli_cmd cmd_vm_list_entry = {
    .noun = "vm", .verb = "list", .summary = "list the VMs of this host",
    .args = "", .max_args = 0, .fn = cmd_vm_list_exec,
};
const struct cli_cmd cmd_vm_info_entry = {
    .noun = "vm", .verb = "info",
    .summary = "a VM's host, state, uptime, memory, CPUs, machine, disks (sizes) and NICs (switch, MAC, tap)",
    .args = "NAME", .min_args = 1, .max_args = 1, .fn = cmd_vm_info_exec,
};
const struct cli_cmd cmd_vm_show_entry = {
    .noun = "vm", .verb = "show", .summary = "show a VM's configuration and state",
    .args = "NAME", .min_args = 1, .max_args = 1, .fn = cmd_vm_show_exec,
};
const struct cli_cmd cmd_vm_start_entry = {
    .noun = "vm", .verb = "start", .summary = "start a VM and wait until it runs",
    .args = "NAME", .flags = no_wait_flag, .min_args = 1, .max_args = 1, .fn = cmd_vm_start_exec,
};
const struct cli_cmd cmd_vm_stop_entry = {
    .noun = "vm", .verb = "stop", .summary = "ask a VM's guest to power off (ACPI), or power it off at once with --force",
    .args = "NAME", .flags = vm_stop_flags, .min_args = 1, .max_args = 1, .fn = cmd_vm_stop_exec,
};
const struct cli_cmd cmd_vm_pause_entry = {
    .noun = "vm", .verb = "pause", .summary = "pause a running VM",
    .args = "NAME", .min_args = 1, .max_args = 1, .fn = cmd_vm_pause_exec,
};
const struct cli_cmd cmd_vm_resume_entry = {
    .noun = "vm", .verb = "resume", .summary = "resume a paused VM",
    .args = "NAME", .min_args = 1, .max_args = 1, .fn = cmd_vm_resume_exec,
};
const struct cli_cmd cmd_vm_delete_entry = {
    .noun = "vm", .verb = "delete", .summary = "delete a stopped VM and its disks",
    .args = "NAME", .flags = vm_delete_flags, .min_args = 1, .max_args = 1, .fn = cmd_vm_delete_exec,
};
const struct cli_cmd cmd_vm_console_entry = {
    .noun = "vm", .verb = "console", .summary = "print a VM's serial console",
    .args = "NAME", .flags = vm_console_flags, .min_args = 1, .max_args = 1, .fn = cmd_vm_console_exec,
};
const struct cli_cmd cmd_vm_guest_entry = {
    .noun = "vm", .verb = "guest", .summary = "send COMMAND to the test guest's control program and print its reply",
    .args = "NAME COMMAND...", .min_args = 2, .max_args = -1, .verbatim_after = 1, .fn = cmd_vm_guest_exec,
};
