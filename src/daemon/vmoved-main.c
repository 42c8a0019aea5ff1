/* vmoved: the vmove host agent.  One per host; a single-threaded libevent
 * loop serves the local socket, the TLS port, QMP connections to every QEMU
 * and the timers of jobs in progress. */
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <getopt.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/log.h"
#include "common/tls.h"
#include "common/spawn.h"
#include "common/util.h"
#include "conf/daemon_conf.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/journal.h"
#include "daemon/modules.h"
#include "daemon/service.h"
#include "server/server.h"
#include "qemu/qemu_caps.h"
#include "qemu/qemu_tls.h"

#ifndef VMOVE_VERSION
#define VMOVE_VERSION "unknown"
#endif

/* Keep in step with docs/man/vmoved.8.scd and docs/OPERATIONS.md. */
static void usage(FILE *f)
{
    fprintf(f,
            "usage: vmoved [--config FILE] [--state-dir DIR] [--socket PATH] [--name HOST]\n"
            "              [--listen ADDR:PORT --tls-dir DIR] [--foreground] [--log-file FILE] [--debug]\n"
            "       vmoved --version\n"
            "\n"
            "  --config FILE       settings file (default " DAEMON_CONF_PATH ", if it exists);\n"
            "                      the options below override it\n"
            "  --state-dir DIR     VM inventory, settings and journal (created if missing;\n"
            "                      default " DAEMON_DEFAULT_STATE_DIR ")\n"
            "  --socket PATH       local control socket, root only (default " DAEMON_DEFAULT_SOCKET ")\n"
            "  --name HOST         this host's name (default: the system host name)\n"
            "  --listen ADDR:PORT  TCP address for peers and remote users (TLS 1.3, mutual auth)\n"
            "  --tls-dir DIR       holds ca.crt, host.crt and host.key (see `vmove pki`)\n"
            "  --console-dir DIR   the web console's files (default " VMOVE_CONSOLE_DIR ")\n"
            "  --foreground        do not detach; log to stderr (the journal under systemd)\n"
            "  --log-file FILE     log to FILE (default: stderr, or syslog once detached)\n"
            "  --debug             log debug messages too\n"
            "\n"
            "VMOVE_QEMU names the QEMU binary (default qemu-system-x86_64 on PATH).\n");
}

struct options {
    const char *config, *state_dir, *socket, *name, *listen, *tls_dir, *log_file, *console_dir;
    bool foreground, debug;
    struct daemon_conf file;   /* what the config file said; owns its strings */
};

/* The config file fills in what the command line left out, and the
 * defaults what neither gave: the paths `vmove` expects without -H. */
static int apply_config(struct options *o)
{
    char err[1024];
    const char *path = o->config ? o->config : DAEMON_CONF_PATH;
    if (daemon_conf_load(path, o->config != NULL, &o->file, err, sizeof err) < 0) {
        fprintf(stderr, "vmoved: %s\n", err);
        return -1;
    }
    const struct daemon_conf *f = &o->file;
    o->state_dir = o->state_dir ? o->state_dir : f->state_dir ? f->state_dir : DAEMON_DEFAULT_STATE_DIR;
    o->socket = o->socket ? o->socket : f->socket ? f->socket : DAEMON_DEFAULT_SOCKET;
    o->name = o->name ? o->name : f->name;
    o->listen = o->listen ? o->listen : f->listen;
    o->tls_dir = o->tls_dir ? o->tls_dir : f->tls_dir;
    o->log_file = o->log_file ? o->log_file : f->log_file;
    o->debug = o->debug || f->debug;
    return 0;
}

static int parse_options(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"state-dir", required_argument, NULL, 's'}, {"socket", required_argument, NULL, 'S'},
        {"name", required_argument, NULL, 'n'},      {"listen", required_argument, NULL, 'l'},
        {"tls-dir", required_argument, NULL, 't'},   {"foreground", no_argument, NULL, 'f'},
        {"log-file", required_argument, NULL, 'L'},  {"debug", no_argument, NULL, 'd'},
        {"config", required_argument, NULL, 'c'},    {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},            {"console-dir", required_argument, NULL, 'C'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 's': o->state_dir = optarg; break;
        case 'S': o->socket = optarg; break;
        case 'n': o->name = optarg; break;
        case 'l': o->listen = optarg; break;
        case 't': o->tls_dir = optarg; break;
        case 'f': o->foreground = true; break;
        case 'L': o->log_file = optarg; break;
        case 'd': o->debug = true; break;
        case 'c': o->config = optarg; break;
        case 'C': o->console_dir = optarg; break;
        case 'V': printf("vmoved %s\n", VMOVE_VERSION); exit(0);
        case 'h': usage(stdout); exit(0);
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "vmoved: unexpected argument \"%s\"\n", argv[optind]);
        return -1;
    }
    if (apply_config(o) < 0)
        return -1;
    if (o->name && !valid_name(o->name)) {
        fprintf(stderr, "vmoved: invalid host name \"%s\"\n", o->name);
        return -1;
    }
    if ((o->listen != NULL) != (o->tls_dir != NULL)) {
        fprintf(stderr, "vmoved: --listen and --tls-dir go together: the network port speaks only TLS\n");
        return -1;
    }
    return 0;
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
    struct agent *a = arg;
    if (sig == SIGCHLD) {
        /* Reap the QEMU supervisors we forked (QEMU's own exit status is
         * recorded by the supervisor, not here), keeping the status of the
         * helpers run asynchronously (common/spawn.h). */
        spawn_reap_children();
        return;
    }
    agent_shutdown(a);
}

static char *absolute(const char *p)
{
    if (p[0] == '/')
        return xstrdup(p);
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd))
        return xstrdup(p);
    return xasprintf("%s/%s", cwd, p);
}

static int agent_init(struct agent *a, const struct options *o, char *err, size_t errlen)
{
    char host[256] = "localhost";
    gethostname(host, sizeof host);
    a->name = xstrdup(o->name ? o->name : host);
    a->state_dir = absolute(o->state_dir);
    a->vms_dir = xasprintf("%s/vms", a->state_dir);
    a->socket_path = absolute(o->socket);
    a->listen_addr = o->listen ? xstrdup(o->listen) : NULL;
    a->tls_dir = o->tls_dir ? absolute(o->tls_dir) : NULL;
    a->console_dir = absolute(o->console_dir ? o->console_dir : VMOVE_CONSOLE_DIR);
    a->started_ms = now_ms();
    /* Guests' disks, consoles and configs, the journal and QEMU's TLS keys
     * live below: root's alone.  An older vmove made these 0755; tighten
     * them on every start. */
    if (mkdir_p(a->vms_dir, 0700) < 0 || chmod(a->state_dir, 0700) < 0 || chmod(a->vms_dir, 0700) < 0) {
        snprintf(err, errlen, "cannot create %s: %s", a->vms_dir, strerror(errno));
        return -1;
    }
    /* One agent per state directory: two would both drive the same VMs. */
    char *sockdir = xstrdup(a->socket_path);
    *strrchr(sockdir, '/') = 0;
    int made = sockdir[0] ? mkdir_p(sockdir, 0755) : 0;
    free(sockdir);
    if (made < 0) {
        snprintf(err, errlen, "cannot create the directory of %s: %s", a->socket_path, strerror(errno));
        return -1;
    }
    char *lock = xasprintf("%s/vmoved.lock", a->state_dir);
    a->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    free(lock);
    if (a->lock_fd < 0 || flock(a->lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "state directory %s is in use by another vmoved", a->state_dir);
        return -1;
    }
    char *settings = xasprintf("%s/host.json", a->state_dir);
    int rc = host_settings_load(settings, &a->settings, err, errlen);
    free(settings);
    if (rc < 0)
        return -1;
    agent_update_accel(a);
    if (agent_quotas_init(&a->quotas, getenv("VMOVE_TEST_LIMITS"), err, errlen) < 0)
        return -1;
    const char *qemu = getenv("VMOVE_QEMU");
    if (qemu_caps_probe(&a->caps, qemu ? qemu : "qemu-system-x86_64", err, errlen) < 0)
        return -1;
    if (acl_load(a, err, errlen) < 0 || audit_open(a, err, errlen) < 0)
        return -1;
    char *jpath = xasprintf("%s/journal.db", a->state_dir);
    a->journal = journal_open(jpath, err, errlen);
    free(jpath);
    if (!a->journal)
        return -1;
    if (a->tls_dir) {
        if (!(a->tls_server = tls_server_ctx(a->tls_dir, err, errlen)))
            return -1;
        char *ca = xasprintf("%s/ca.crt", a->tls_dir), *crt = xasprintf("%s/host.crt", a->tls_dir),
             *key = xasprintf("%s/host.key", a->tls_dir);
        a->tls_client = tls_client_ctx(ca, crt, key, err, errlen);
        free(ca);
        free(crt);
        free(key);
        if (!a->tls_client)
            return -1;
        a->qemu_tls_dir = xasprintf("%s/qemu-tls", a->state_dir);
        if (qemu_tls_prepare(a->tls_dir, a->qemu_tls_dir, err, errlen) < 0)
            return -1;
    }
    a->base = event_base_new();
    return 0;
}

static void agent_free(struct agent *a)
{
    modules_shutdown(a);
    struct event *evs[] = {a->sigchld_ev, a->sigterm_ev, a->sigint_ev, a->sighup_ev};
    for (size_t i = 0; i < ARRAY_LEN(evs); i++)
        if (evs[i])
            event_free(evs[i]);
    if (a->base)
        event_base_free(a->base);
    journal_close(a->journal);
    acl_free(a);
    audit_close(a);
    if (a->tls_server)
        SSL_CTX_free(a->tls_server);
    if (a->tls_client)
        SSL_CTX_free(a->tls_client);
    qemu_caps_free(&a->caps);
    free(a->name);
    free(a->state_dir);
    free(a->vms_dir);
    free(a->socket_path);
    free(a->listen_addr);
    free(a->tls_dir);
    free(a->console_dir);
    free(a->qemu_tls_dir);
    if (a->lock_fd > 0)
        close(a->lock_fd);
}

static void install_signals(struct agent *a)
{
    signal(SIGPIPE, SIG_IGN);
    a->sigchld_ev = evsignal_new(a->base, SIGCHLD, on_signal, a);
    a->sigterm_ev = evsignal_new(a->base, SIGTERM, on_signal, a);
    a->sigint_ev = evsignal_new(a->base, SIGINT, on_signal, a);
    struct event *evs[] = {a->sigchld_ev, a->sigterm_ev, a->sigint_ev};
    for (size_t i = 0; i < ARRAY_LEN(evs); i++)
        event_add(evs[i], NULL);
}

static void daemonize(const char *log_file)
{
    pid_t pid = fork();
    if (pid < 0)
        exit(1);
    if (pid > 0)
        _exit(0);
    setsid();
    int null = open("/dev/null", O_RDWR);
    dup2(null, 0);
    dup2(null, 1);
    if (!log_file) {
        /* No terminal and no file: syslog (the journal), never /dev/null. */
        dup2(null, 2);
        log_use_syslog();
    }
    if (null > 2)
        close(null);
}

int main(int argc, char **argv)
{
    struct options o = {0};
    if (parse_options(argc, argv, &o) < 0) {
        daemon_conf_free(&o.file);
        return 2;
    }
    /* Everything vmoved and its children create (state files, SQLite's
     * journal, QEMU's logs and sockets, qemu-img's disks) is private to
     * root from its creation on, whatever the caller's umask was. */
    umask(077);
    log_init("vmoved", o.debug ? LOG_DEBUG : LOG_INFO);
    if (o.log_file) {
        int fd = open(o.log_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
        if (fd < 0) {
            fprintf(stderr, "vmoved: cannot open log file %s: %s\n", o.log_file, strerror(errno));
            daemon_conf_free(&o.file);
            return 1;
        }
        log_set_file(fd);
    }
    struct agent a = {0};
    a.audit_fd = -1;
    char err[1024];
    if (agent_init(&a, &o, err, sizeof err) < 0) {
        log_error("%s", err);
        agent_free(&a);
        daemon_conf_free(&o.file);
        return 1;
    }
    if (!(a.server = server_start(&a, err, sizeof err))) {
        log_error("%s", err);
        agent_free(&a);
        daemon_conf_free(&o.file);
        return 1;
    }
    if (!o.foreground)
        daemonize(o.log_file);
    install_signals(&a);
    modules_recover(&a);
    log_info("host %s ready: socket %s%s%s, accel %s", a.name, a.socket_path,
             a.listen_addr ? ", TLS on " : "", a.listen_addr ? a.listen_addr : "",
             accel_kind_name(a.accel.kind));
    service_ready(a.listen_addr ? "serving the socket and the TLS port" : "serving the socket");
    service_watchdog_start(a.base);
    event_base_dispatch(a.base);
    service_stopping();
    service_free();
    agent_free(&a);
    daemon_conf_free(&o.file);
    log_info("stopped");
    return 0;
}
