/* libFuzzer target: the API dispatch of one real agent.
 *
 * Input: one selector byte ('0'..'4', any byte modulo 5) choosing who asks,
 * then a JSON request {"id": ..., "method": "...", "params": {...}}.
 *   0 local root           1 user:reader (vm.read only)
 *   2 user:admin (all)     3 host:peer1 (migrate.in + migrate.out)
 *   4 host:nobody (no grant)
 * The request goes through api_req_new + api_dispatch with a fake sink that
 * collects what is sent; the event loop then runs non-blocking for deferred
 * work.  Exactly one reply (a "result" or an "error") per request, else
 * abort(): no reply leaks the request, two replies used it after its free.
 *
 * The agent is set up once like vmoved's agent_init, minus what needs QEMU
 * (the capabilities are filled in by hand), TLS and the server.  Methods that
 * would start QEMU, spawn qemu-img, open listeners or contact peers are
 * refused before dispatch (see refused()); everything else runs for real in a
 * temporary state directory, with one stopped VM "fz" always defined. */
#include <event2/event.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "api/api.h"
#include "common/log.h"
#include "common/util.h"
#include "conf/vm_config.h"
#include "core/acl.h"
#include "core/agent.h"
#include "core/audit.h"
#include "core/journal.h"
#include "vm/vm.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

/* ---- the fake connection ------------------------------------------------ */

struct fake_sink {
    struct api_sink base;
    int refs;
    int replies;            /* messages with "result" or "error" */
    int messages;
    void (*hook)(void *);
    void *hook_arg;
};

static void fs_send(struct api_sink *s, json_t *msg)
{
    struct fake_sink *f = (struct fake_sink *)s;
    f->messages++;
    if (json_object_get(msg, "result") || json_object_get(msg, "error"))
        f->replies++;
    json_decref(msg);
}
static bool fs_is_open(const struct api_sink *s) { return true; }
static const char *fs_peer(const struct api_sink *s) { return "fuzz"; }
static void fs_ref(struct api_sink *s) { ((struct fake_sink *)s)->refs++; }
static void fs_unref(struct api_sink *s) { ((struct fake_sink *)s)->refs--; }
static void fs_on_close(struct api_sink *s, void (*hook)(void *), void *arg)
{
    struct fake_sink *f = (struct fake_sink *)s;
    f->hook = hook;
    f->hook_arg = arg;
}
static const struct api_sink_ops fake_ops = {fs_send, fs_is_open, fs_peer, fs_ref, fs_unref, fs_on_close};

/* ---- the agent, once ------------------------------------------------------ */

static struct agent A;
static char *acl_baseline, *settings_path, *acl_path_s, *audit_path;

static const char ACL_JSON[] =
    "{\"version\": 1, \"grants\": {"
    "\"user:reader\": [\"vm.read\"],"
    "\"user:admin\": [\"vm.read\", \"vm.manage\", \"migrate.out\", \"migrate.in\", \"storage.move\", \"host.admin\"],"
    "\"host:peer1\": [\"migrate.in\", \"migrate.out\"]},"
    "\"groups\": {\"ops\": [\"user:admin\", \"host:peer1\"]}}";

static void die(const char *what)
{
    fprintf(stderr, "fuzz_api: %s\n", what);
    abort();
}

static void fill_caps(struct qemu_caps *c)
{
    c->qemu_binary = xstrdup("/nonexistent/qemu-system-x86_64");
    c->qemu_version = xstrdup("10.0.2");
    c->default_machine = xstrdup("pc-q35-10.0");
    c->machines = json_pack("[s, s]", "pc-q35-10.0", "pc-i440fx-10.0");
}

/* The stopped VM the VM methods find (re-defined when an input deleted it). */
static void ensure_vm(void)
{
    if (vm_find(&A, "fz"))
        return;
    struct vm_config c = {.version = VM_CONFIG_VERSION, .memory_mib = 64, .cpus = 1};
    c.name = xstrdup("fz");
    c.machine = xstrdup("pc-q35-10.0");
    vm_generate_uuid(c.uuid);
    c.boot.kind = VM_BOOT_KERNEL;      /* a disk boot needs a disk, hence qemu-img */
    c.boot.kernel = xstrdup("/nonexistent/vmlinuz");
    json_t *err = NULL;
    if (!vm_define_in_state(&A, &c, &err))
        die(json_string_value(json_object_get(err, "message")));
    vm_config_free(&c);
}

/* Defaults and one peer (never contacted: the methods that would are refused). */
static void baseline_settings(void)
{
    host_settings_defaults(&A.settings);
    snprintf(A.settings.peers[0].name, sizeof A.settings.peers[0].name, "h2");
    snprintf(A.settings.peers[0].addr, sizeof A.settings.peers[0].addr, "127.0.0.1:9");
    A.settings.n_peers = 1;
    agent_update_accel(&A);
}

/* libFuzzer ends with exit(): the state directory goes with it. */
static void remove_state(void) { remove_tree(A.state_dir); }

static void agent_setup(void)
{
    char tmpl[] = "/tmp/vmove-fuzz-api.XXXXXX";
    if (!mkdtemp(tmpl))
        die("mkdtemp");
    atexit(remove_state);
    log_init("fuzz_api", LOG_ERROR);
    A.audit_fd = -1;
    A.name = xstrdup("h1");
    A.state_dir = xstrdup(tmpl);
    A.vms_dir = xasprintf("%s/vms", tmpl);
    A.socket_path = xasprintf("%s/sock", tmpl);
    /* No TLS, but a directory: a delegation token is checked against a CA
     * file that is missing, and fails cleanly. */
    A.tls_dir = xasprintf("%s/tls", tmpl);
    A.lock_fd = -1;
    A.started_ms = now_ms();
    if (mkdir_p(A.vms_dir, 0700) < 0)
        die("mkdir");
    settings_path = xasprintf("%s/host.json", tmpl);
    acl_path_s = xasprintf("%s/acl.json", tmpl);
    audit_path = xasprintf("%s/audit.log", tmpl);
    acl_baseline = xstrdup(ACL_JSON);
    if (write_file_atomic(acl_path_s, acl_baseline, strlen(acl_baseline), 0600) < 0)
        die("acl.json");
    char err[1024];
    baseline_settings();
    agent_quotas_init(&A.quotas, NULL, err, sizeof err);
    fill_caps(&A.caps);
    if (acl_load(&A, err, sizeof err) < 0 || audit_open(&A, err, sizeof err) < 0)
        die(err);
    char *jpath = xasprintf("%s/journal.db", tmpl);
    A.journal = journal_open(jpath, err, sizeof err);
    free(jpath);
    if (!A.journal)
        die(err);
    A.base = event_base_new();
    vm_inventory_load(&A);
    ensure_vm();
}

/* ---- per input ----------------------------------------------------------- */

/* Would start QEMU, spawn qemu-img, listen or call a peer: not run here. */
static bool refused(const char *method, json_t *params)
{
    static const char *const never[] = {
        "vm.start",        /* launches QEMU */
        "vm.move",         /* migrates (and relays to peers) */
        "vm.move-storage", /* block jobs in QEMU, qemu-img */
        "migrate.prepare", /* starts the incoming QEMU */
        "migrate.load",    /* starts QEMU from a saved state */
        "migrate.probe",   /* opens a listening socket for seconds */
        "vm.import",       /* reads files anywhere the policy allows, qemu-img check/convert */
        "jobs.follow",     /* a stream: it answers only when the client goes away, which the fake sink does not do */
        NULL,
    };
    for (size_t i = 0; never[i]; i++)
        if (!strcmp(method, never[i]))
            return true;
    /* host.drain only where it fails before contacting a peer: a target
     * list longer than the candidates array (it overran it). */
    if (!strcmp(method, "host.drain"))
        return json_array_size(json_object_get(params, "to")) <= MAX_PEERS;
    /* vm.create with a disk given as a string runs qemu-img (create or info). */
    if (!strcmp(method, "vm.create")) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(params, "disks"), i, d) if (json_is_string(d)) return true;
    }
    /* vm.set adding a disk answers once qemu-img (info of an attached
     * image, create of a new one: a child) has, later than the harness's
     * few turns of the loop. */
    if (!strcmp(method, "vm.set")) {
        size_t i;
        json_t *d;
        json_array_foreach(json_object_get(params, "add_disks"), i, d) if (json_is_string(d)) return true;
    }
    return false;
}

static void principal_for(unsigned sel, struct principal *p)
{
    static const struct {
        enum principal_kind kind;
        const char *name;
    } who[] = {{PRINCIPAL_LOCAL_ROOT, "root"}, {PRINCIPAL_USER, "reader"}, {PRINCIPAL_USER, "admin"},
               {PRINCIPAL_HOST, "peer1"},      {PRINCIPAL_HOST, "nobody"}};
    memset(p, 0, sizeof *p);
    p->kind = who[sel % 5].kind;
    snprintf(p->name, sizeof p->name, "%s", who[sel % 5].name);
}

/* Methods that change the ACL or host.json: put both back, so that an input
 * means the same whatever ran before it. */
static bool mutates_policy(const char *m) { return !strncmp(m, "acl.", 4) || !strncmp(m, "host.", 5) ||
                                                   !strncmp(m, "peer.", 5); }

static void reset_policy(void)
{
    char err[1024];
    if (write_file_atomic(acl_path_s, acl_baseline, strlen(acl_baseline), 0600) < 0)
        die("acl.json");
    acl_free(&A);
    if (acl_load(&A, err, sizeof err) < 0)
        die(err);
    unlink(settings_path);
    baseline_settings();
}

/* VMs an input created go again: the next input starts from "fz" alone. */
static void drop_extra_vms(void)
{
    VM_FOREACH_SAFE(&A, vm, tmp) {
        json_t *err = NULL;
        if (strcmp(vm->name, "fz") && vm_delete(vm, false, &err) < 0)
            json_decref(err);
    }
}

/* The audit log grows with every decision; audit.list reads all of it. */
static void bound_audit(void)
{
    struct stat st;
    if (fstat(A.audit_fd, &st) == 0 && st.st_size > (256 << 10) && ftruncate(A.audit_fd, 0) < 0)
        die("ftruncate");
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!A.base)
        agent_setup();
    if (size < 1)
        return 0;
    json_t *req = json_loadb((const char *)data + 1, size - 1, 0, NULL);
    const char *method = json_string_value(json_object_get(req, "method"));
    json_t *params = json_object_get(req, "params");
    if (!method || (params && !json_is_object(params)) || refused(method, params)) {
        json_decref(req);
        return 0;
    }
    /* The transport's part: params is always an object, and owned. */
    json_t *p = params ? json_deep_copy(params) : json_object();
    json_t *id = json_object_get(req, "id");
    struct principal who;
    principal_for((unsigned)(data[0] - (unsigned char)'0'), &who);
    struct fake_sink sink = {.base = {&fake_ops}};
    struct api_req *r = api_req_new(&A, &sink.base, id ? id : json_null(), method, p, &who);
    json_decref(p);
    bool policy = mutates_policy(method);
    api_dispatch(r);
    for (int i = 0; i < 4; i++)
        event_base_loop(A.base, EVLOOP_NONBLOCK);
    if (getenv("FUZZ_API_DEBUG"))
        fprintf(stderr, "fuzz_api: %s as %s: %d messages, %d replies\n", method, who.name, sink.messages,
                sink.replies);
    if (sink.replies != 1) {
        fprintf(stderr, "fuzz_api: %s got %d replies (want exactly 1)\n", method, sink.replies);
        abort();
    }
    if (sink.refs != 0) {
        fprintf(stderr, "fuzz_api: %s left %d references to the connection\n", method, sink.refs);
        abort();
    }
    json_decref(req);
    if (policy)
        reset_policy();
    drop_extra_vms();
    ensure_vm();
    bound_audit();
    return 0;
}
