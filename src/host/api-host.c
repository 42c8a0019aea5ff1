/* host.show, host.set */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sysinfo.h>

#include "common/proto.h"
#include "common/util.h"
#include "host/agent.h"
#include "host/api.h"
#include "host/journal.h"
#include "vm/vm.h"

static json_t *memory_json(void)
{
    struct sysinfo si;
    sysinfo(&si);
    return json_pack("{s:I, s:I}", "total_mib", (json_int_t)((uint64_t)si.totalram * si.mem_unit >> 20),
                     "free_mib", (json_int_t)((uint64_t)(si.freeram + si.bufferram) * si.mem_unit >> 20));
}

static void host_show(struct api_req *r)
{
    struct agent *a = r->agent;
    int n_vms = 0, n_running = 0;
    for (struct vm *vm = a->vms; vm; vm = vm->next) {
        n_vms++;
        n_running += vm->state == VM_RUNNING || vm->state == VM_PAUSED;
    }
    json_t *accel = json_pack("{s:s, s:s, s:s}", "setting", accel_setting_name(a->settings.accel),
                              "effective", accel_kind_name(a->accel.kind), "reason", a->accel.reason);
    json_t *qemu = json_pack("{s:s, s:s, s:s}", "binary", a->caps.qemu_binary, "version",
                             a->caps.qemu_version, "default_machine", a->caps.default_machine);
    api_reply(r, json_pack("{s:s, s:s, s:s?, s:b, s:o, s:o, s:o, s:i, s:i, s:I}", "name", a->name,
                           "state_dir", a->state_dir, "listen", a->listen_addr, "tls",
                           a->tls_server != NULL, "accel", accel, "qemu", qemu, "memory",
                           memory_json(), "vms", n_vms, "vms_running", n_running, "uptime_ms",
                           (json_int_t)(now_ms() - a->started_ms)));
}

static void host_set(struct api_req *r)
{
    struct agent *a = r->agent;
    struct host_settings next = a->settings;
    const char *key;
    json_t *v;
    /* Validate everything first: a bad value changes nothing. */
    json_object_foreach(r->params, key, v) {
        if (!strcmp(key, "accel")) {
            if (!json_is_string(v) || accel_setting_parse(json_string_value(v), &next.accel) < 0) {
                api_failf(r, ERR_INVALID, NULL, "accel: expected auto, kvm or tcg");
                return;
            }
        } else {
            api_failf(r, ERR_INVALID, "`vmove host set --help` lists the settings",
                      "unknown host setting \"%s\"", key);
            return;
        }
    }
    struct host_settings prev = a->settings;
    a->settings = next;
    char err[512];
    if (agent_save_settings(a, err, sizeof err) < 0) {
        a->settings = prev;
        api_failf(r, ERR_INTERNAL, NULL, "%s", err);
        return;
    }
    agent_update_accel(a);
    host_show(r);
}

static void host_events(struct api_req *r)
{
    long long limit;
    if (api_param_int(r, "limit", 50, &limit) < 0)
        return;
    const char *vm = api_param_str(r, "vm", false);
    api_reply(r, json_pack("{s:o}", "events", journal_events(r->agent->journal, vm, (int)limit)));
}

const struct api_method api_host_methods[] = {
    {"host.show", host_show, true},
    {"host.set", host_set, false},
    {"host.events", host_events, true},
    {NULL, NULL, false},
};
