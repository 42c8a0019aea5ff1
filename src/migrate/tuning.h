/* Migration tuning: what vmove asks of QEMU's migration, and why.
 * Both ends must agree on capabilities (multifd, compression), so the
 * source sends its tuning to the destination in the prepare step. */
#ifndef VMOVE_TUNING_H
#define VMOVE_TUNING_H
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "common/proto.h"
#include "qemu/monitor.h"

enum converge_policy {
    CONVERGE_AUTO,       /* throttle (auto-converge), then raise the downtime step by step */
    CONVERGE_THROTTLE,   /* auto-converge only */
    CONVERGE_DOWNTIME,   /* raise the downtime limit only */
    CONVERGE_CANCEL,     /* give up when not converging */
    CONVERGE_POSTCOPY,   /* switch to post-copy after the first full pass (both hosts must allow it) */
};

struct migrate_tuning {
    int downtime_ms;         /* target downtime (QEMU downtime-limit) */
    int max_downtime_ms;     /* the policy never raises the limit beyond this */
    int max_duration_s;      /* cancel after this long */
    int channels;            /* multifd channels; 1 = classic single stream */
    char compress[8];        /* "none", "zstd", "zlib" (multifd compression) */
    uint64_t bandwidth;      /* bytes/s; 0 = unlimited */
    enum converge_policy converge;
    bool quick;              /* quick migration: pause, save to shared storage, load there, resume */
    char state_dir[256];     /* where a quick migration saves the state ("" = the first disk's directory) */
    char with_storage[256];  /* shared-nothing: copy the disks into this directory on the destination */
    bool keep_source;        /* shared-nothing: keep the source's disk files after success */
    int max_wait_s;          /* the reservation fails after waiting this long for the destination */
    int max_recover_wait_s;  /* post-copy: how long a paused post-copy waits for the link before the VM is lost */
    /* Decided, not requested: the move may switch to post-copy (both hosts
     * allow it, a single stream).  Sets postcopy-ram and postcopy-preempt on
     * both ends; travels in the prepare request's own field, not here. */
    bool postcopy;
};


void tuning_defaults(struct migrate_tuning *t);
/* From API parameters (all optional); error text on invalid values. */
int tuning_from_json(json_t *j, struct migrate_tuning *t, char *err, size_t errlen);
json_t *tuning_to_json(const struct migrate_tuning *t);
const char *converge_policy_name(enum converge_policy p);
/* The move may use post-copy if both hosts allow it: --converge postcopy,
 * or auto with a single stream (QEMU 10.0 refuses post-copy with multifd). */
bool tuning_wants_postcopy(const struct migrate_tuning *t);
/* Arguments of migrate-set-capabilities and migrate-set-parameters. */
json_t *tuning_qemu_capabilities(const struct migrate_tuning *t);
json_t *tuning_qemu_parameters(const struct migrate_tuning *t);
/* The same, typed for qmon_migrate_set_capabilities / _parameters (the
 * JSON forms stay for the untyped callers until they are gone). */
#define TUNING_N_CAPS 6
size_t tuning_qmon_capabilities(const struct migrate_tuning *t, struct qmon_cap_state caps[TUNING_N_CAPS]);
struct qmon_migrate_params tuning_qmon_parameters(const struct migrate_tuning *t);
#endif
