/* libFuzzer target: STATE/acl.json as acl_load reads it (core/acl.h), then
 * the changes and checks an agent makes with it: a group change, a grant, a
 * lookup.  A file acl_load accepts must not crash any of them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/util.h"
#include "core/acl.h"
#include "core/agent.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static struct agent A;
static char *path;

/* libFuzzer ends with exit(): the temporary directory goes with it. */
static void remove_state(void) { remove_tree(A.state_dir); }

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (!A.state_dir) {
        char tmpl[] = "/tmp/vmove-fuzz-acl.XXXXXX";
        if (!mkdtemp(tmpl))
            abort();
        atexit(remove_state);
        log_init("fuzz_acl", LOG_ERROR);
        A.state_dir = xstrdup(tmpl);
        A.name = xstrdup("h1");
        A.audit_fd = -1;
        path = xasprintf("%s/acl.json", tmpl);
    }
    if (write_file_atomic(path, (const char *)data, size, 0600) < 0)
        abort();
    char err[512] = "";
    if (acl_load(&A, err, sizeof err) < 0) {
        if (!err[0])
            abort();
        acl_free(&A);
        return 0;
    }
    acl_allows(&A, "user:alice", RIGHT_VM_READ);
    acl_in_group(&A, "ops", "user:alice");
    json_decref(acl_group_change(&A, "ops", "user:alice", true));
    json_decref(acl_group_change(&A, "ops", "host:h2", false));
    json_t *rights = json_pack("[s]", "vm.read");
    json_decref(acl_change(&A, "user:bob", rights, true));
    json_decref(acl_change(&A, "user:alice", rights, false));
    json_decref(rights);
    json_decref(acl_denial(&A, "user:alice", RIGHT_HOST_ADMIN));
    json_decref(acl_to_json(&A));
    acl_free(&A);
    return 0;
}
