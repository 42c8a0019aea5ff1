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
#include "common/util.h"

static bool looks_like_path(const char *s) { return strchr(s, '/') != NULL; }

/* NULL after a usage error. */
static json_t *create_params(struct cli *c, const struct cli_args *a)
{
    json_t *p = json_pack("{s:s}", "name", a->argv[0]);
    if (cli_opt(a, "memory"))
        json_object_set_new(p, "memory", json_string(cli_opt(a, "memory")));
    long long cpus = LLONG_MIN;   /* any number: vmoved says which it takes */
    if (!cli_opt_number(c, a, "cpus", LLONG_MIN, &cpus)) {
        json_decref(p);
        return NULL;
    }
    if (cpus != LLONG_MIN)
        json_object_set_new(p, "cpus", json_integer(cpus));
    json_t *disks = json_array(), *nics = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(a->opts, "disk"), i, v) {
        const char *d = json_string_value(v);
        json_array_append_new(disks, looks_like_path(d) ? cli_absolute_path(d) : json_string(d));
    }
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
    return p;
}

static void print_vm_line(json_t *vm)
{
    printf("%-20s %-9s %6lld MiB %3lld vCPU  %s\n", json_string_value(json_object_get(vm, "name")),
           json_string_value(json_object_get(vm, "state")),
           (long long)json_integer_value(json_object_get(vm, "memory_mib")),
           (long long)json_integer_value(json_object_get(vm, "cpus")),
           json_string_value(json_object_get(vm, "error")) ? json_string_value(json_object_get(vm, "error")) : "");
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
        json_array_foreach(json_object_get(r, "vms"), i, vm) print_vm_line(vm);
        if (!json_array_size(json_object_get(r, "vms")))
            printf("no VMs on host %s\n", json_string_value(json_object_get(r, "host")));
    } else if (json_object_get(r, "state") && !json_object_get(r, "config"))
        print_vm_line(r);
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

static int console_print(struct cli *c, const char *name, bool follow)
{
    long long offset = 0;
    for (;;) {
        int code;
        json_t *r = cli_call(c, "vm.console", json_pack("{s:s, s:I, s:i}", "name", name, "offset",
                                                        (json_int_t)offset, "max", 262144), NULL, NULL, &code);
        if (!r)
            return code;
        const char *data = json_string_value(json_object_get(r, "data"));
        size_t n = json_string_length(json_object_get(r, "data"));
        fwrite(data, 1, n, stdout);
        fflush(stdout);
        offset = json_integer_value(json_object_get(r, "offset"));
        bool more = offset < json_integer_value(json_object_get(r, "size"));
        json_decref(r);
        if (more)
            continue;
        if (!follow)
            return 0;
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
    if (c->json)
        cli_print_json(r);
    else
        printf("%s\n", reply);
    /* The guest program answers "fail ..." or "error ..." when something is wrong. */
    int rc = reply && (!strncmp(reply, "fail", 4) || !strncmp(reply, "error", 5)) ? EXIT_FAIL : 0;
    json_decref(r);
    return rc;
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
    {"memory", 'm', "SIZE", "512M", NULL, "guest memory: a whole number of MiB, with a suffix K, M, G or T", 0},
    {"cpus", 'c', "N", "1", NULL, "virtual CPUs", 0},
    {"disk", 'd', "SIZE|PATH", NULL, NULL,
     "a new qcow2 disk of SIZE, or an existing qcow2 image at PATH (a word with a /)", CLI_REPEAT},
    {"nic", 'n', "SWITCH", NULL, NULL, "a network card on the host's Linux bridge SWITCH", CLI_REPEAT},
    {"kernel", 0, "FILE", "boot from the first disk", NULL, "boot this Linux kernel directly", 0},
    {"initrd", 0, "FILE", NULL, NULL, "the initramfs for --kernel", 0},
    {"append", 0, "CMDLINE", NULL, NULL, "the kernel command line for --kernel", 0},
    {"machine", 0, "TYPE", "the host's default machine", NULL, "the QEMU machine type", 0},
    {"ha", 0, NULL, NULL, NULL, "high availability: in a cluster, restart the VM on another host if its host dies", 0},
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
