/* vmove vm create|list|show|start|stop|pause|resume|delete|console|guest */
#include <errno.h>
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
#include "common/util.h"

static const struct cli_flag create_flags[] = {
    {"memory", 'm', true, false}, {"cpus", 'c', true, false},   {"disk", 'd', true, true},
    {"nic", 'n', true, true},     {"kernel", 0, true, false},   {"initrd", 0, true, false},
    {"append", 0, true, false},   {"machine", 0, true, false},  {"ha", 0, false, false},
    {NULL, 0, false, false}};
static const struct cli_flag lifecycle_flags[] = {
    {"no-wait", 0, false, false}, {"force", 0, false, false}, {"timeout", 't', true, false},
    {"keep-disks", 0, false, false}, {"follow", 'f', false, false}, {NULL, 0, false, false}};

/* The daemon may run elsewhere: make local relative paths absolute. */
static json_t *absolute_path(const char *p)
{
    if (p[0] == '/')
        return json_string(p);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return json_string(p);
    char *abs = xasprintf("%s/%s", cwd, p);
    json_t *j = json_string(abs);
    free(abs);
    return j;
}

static bool looks_like_path(const char *s) { return strchr(s, '/') != NULL; }

static json_t *create_params(struct cli *c, const char *name, const struct cli_args *a, int *err)
{
    json_t *p = json_pack("{s:s}", "name", name);
    if (cli_opt(a, "memory"))
        json_object_set_new(p, "memory", json_string(cli_opt(a, "memory")));
    if (cli_opt(a, "cpus")) {
        char *end;
        long v = strtol(cli_opt(a, "cpus"), &end, 10);
        if (*end || end == cli_opt(a, "cpus")) {
            cli_error(c, "--cpus \"%s\": expected a whole number", cli_opt(a, "cpus"));
            json_decref(p);
            *err = EXIT_USAGE;
            return NULL;
        }
        json_object_set_new(p, "cpus", json_integer(v));
    }
    json_t *disks = json_array(), *nics = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(a->opts, "disk"), i, v) {
        const char *d = json_string_value(v);
        json_array_append_new(disks, looks_like_path(d) ? absolute_path(d) : json_string(d));
    }
    json_array_foreach(json_object_get(a->opts, "nic"), i, v) json_array_append(nics, v);
    json_object_set_new(p, "disks", disks);
    json_object_set_new(p, "nics", nics);
    const char *files[] = {"kernel", "initrd"};
    for (i = 0; i < 2; i++)
        if (cli_opt(a, files[i]))
            json_object_set_new(p, files[i], absolute_path(cli_opt(a, files[i])));
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

int cmd_vm(struct cli *c, int argc, char **argv)
{
    if (argc < 1) {
        cli_error(c, "usage: vmove vm create|list|show|start|stop|pause|resume|delete|console|guest ...");
        return EXIT_USAGE;
    }
    const char *verb = argv[0];
    bool is_create = !strcmp(verb, "create"), is_guest = !strcmp(verb, "guest");
    struct cli_args a;
    /* `vm guest NAME CMD...`: everything after NAME belongs to the guest. */
    int parse_argc = is_guest ? (argc > 1 ? 1 : 0) : argc - 1;
    if (cli_parse(parse_argc, argv + 1, is_create ? create_flags : lifecycle_flags, &a) < 0) {
        cli_args_free(&a);
        return EXIT_USAGE;
    }
    int rc = EXIT_USAGE;
    const char *name = a.argc ? a.argv[0] : NULL;
    bool wait = !cli_flag_set(&a, "no-wait");
    if (!strcmp(verb, "list") && a.argc == 0)
        rc = simple(c, "vm.list", NULL, true);
    else if (!name || (a.argc != 1 && !is_guest))
        cli_error(c, "usage: vmove vm %s NAME%s", verb, is_guest ? " COMMAND..." : "");
    else if (is_create) {
        json_t *p = create_params(c, name, &a, &rc);
        if (p)
            rc = simple(c, "vm.create", p, false);
    } else if (!strcmp(verb, "show"))
        rc = simple(c, "vm.show", json_pack("{s:s}", "name", name), false);
    else if (!strcmp(verb, "start"))
        rc = lifecycle(c, "vm.start", json_pack("{s:s}", "name", name), wait);
    else if (!strcmp(verb, "stop")) {
        json_t *p = json_pack("{s:s, s:b}", "name", name, "force", cli_flag_set(&a, "force"));
        if (cli_opt(&a, "timeout"))
            json_object_set_new(p, "timeout", json_integer(atoll(cli_opt(&a, "timeout"))));
        rc = lifecycle(c, "vm.stop", p, wait);
    } else if (!strcmp(verb, "pause"))
        rc = simple(c, "vm.pause", json_pack("{s:s}", "name", name), false);
    else if (!strcmp(verb, "resume"))
        rc = simple(c, "vm.resume", json_pack("{s:s}", "name", name), false);
    else if (!strcmp(verb, "delete"))
        rc = simple(c, "vm.delete", json_pack("{s:s, s:b}", "name", name, "keep_disks",
                                              cli_flag_set(&a, "keep-disks")), false);
    else if (!strcmp(verb, "console")) {
        bool follow = cli_flag_set(&a, "follow");
        if (follow && isatty(0) && isatty(1) && !c->json && !strncmp(c->host, "unix:", 5))
            rc = console_interactive(c, name);
        else
            rc = console_print(c, name, follow);
    } else if (is_guest) {
        if (argc < 3)
            cli_error(c, "usage: vmove vm guest NAME COMMAND...");
        else
            rc = guest_command(c, name, argc - 2, argv + 2);
    } else
        cli_error(c, "unknown vm command \"%s\"", verb);
    cli_args_free(&a);
    return rc;
}
