#include "migrate/tuning.h"

#include <stdio.h>
#include <string.h>

/* "Unlimited" for QEMU's max-bandwidth: its default is a 128 MiB/s cap, which
 * on a dedicated migration network only makes migrations slow (and, with a
 * busy guest, never finish). */
#define UNLIMITED_BANDWIDTH (1ULL << 40)

static const char *policy_names[] = {"auto", "throttle", "downtime", "cancel", "postcopy"};
#define N_POLICIES (sizeof policy_names / sizeof policy_names[0])

const char *converge_policy_name(enum converge_policy p) { return policy_names[p]; }

void tuning_defaults(struct migrate_tuning *t)
{
    memset(t, 0, sizeof *t);
    t->downtime_ms = TUNING_DEFAULT_DOWNTIME_MS;
    t->max_downtime_ms = TUNING_DEFAULT_MAX_DOWNTIME_MS;
    t->max_duration_s = TUNING_DEFAULT_MAX_DURATION_S;
    t->channels = TUNING_DEFAULT_CHANNELS;
    snprintf(t->compress, sizeof t->compress, "auto");
    t->converge = CONVERGE_AUTO;
    t->max_recover_wait_s = TUNING_DEFAULT_MAX_RECOVER_WAIT_S;
    t->max_wait_s = TUNING_DEFAULT_MAX_WAIT_S;
}

bool tuning_wants_postcopy(const struct migrate_tuning *t)
{
    return !t->quick && !t->with_storage[0] &&
           (t->converge == CONVERGE_POSTCOPY || (t->converge == CONVERGE_AUTO && t->channels == 1));
}

static int get_int(json_t *j, const char *key, int lo, int hi, int *out, char *err, size_t errlen)
{
    json_t *v = json_object_get(j, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi) {
        snprintf(err, errlen, "%s must be an integer from %d to %d", key, lo, hi);
        return -1;
    }
    *out = (int)json_integer_value(v);
    return 0;
}

int tuning_from_json(json_t *j, struct migrate_tuning *t, char *err, size_t errlen)
{
    tuning_defaults(t);
    if (!j)
        return 0;
    if (get_int(j, "downtime_ms", 1, 60000, &t->downtime_ms, err, errlen) < 0 ||
        get_int(j, "max_downtime_ms", 1, 600000, &t->max_downtime_ms, err, errlen) < 0 ||
        get_int(j, "max_duration_s", 1, 86400, &t->max_duration_s, err, errlen) < 0 ||
        get_int(j, "channels", 1, 64, &t->channels, err, errlen) < 0 ||
        get_int(j, "max_recover_wait_s", 1, 86400, &t->max_recover_wait_s, err, errlen) < 0 ||
        get_int(j, "max_wait_s", 1, 86400, &t->max_wait_s, err, errlen) < 0)
        return -1;
    if (t->max_downtime_ms < t->downtime_ms)
        t->max_downtime_ms = t->downtime_ms;
    json_t *bw = json_object_get(j, "bandwidth");
    if (bw && !json_is_null(bw)) {
        if (!json_is_integer(bw) || json_integer_value(bw) < 0) {
            snprintf(err, errlen, "bandwidth must be a number of bytes per second (0 = unlimited)");
            return -1;
        }
        t->bandwidth = (uint64_t)json_integer_value(bw);
    }
    const char *c = json_string_value(json_object_get(j, "compress"));
    if (c) {
        if (strcmp(c, "none") && strcmp(c, "zstd") && strcmp(c, "zlib") && strcmp(c, "auto")) {
            snprintf(err, errlen, "compress must be auto, none, zstd or zlib");
            return -1;
        }
        snprintf(t->compress, sizeof t->compress, "%s", c);
    }
    const char *p = json_string_value(json_object_get(j, "converge"));
    if (p) {
        size_t i;
        for (i = 0; i < N_POLICIES && strcmp(p, policy_names[i]); i++)
            ;
        if (i == N_POLICIES) {
            snprintf(err, errlen, "converge must be auto, throttle, downtime, cancel or postcopy");
            return -1;
        }
        t->converge = (enum converge_policy)i;
    }
    if (t->converge == CONVERGE_POSTCOPY) {
        /* QEMU 10.0 refuses post-copy together with multifd ("Postcopy is
         * not yet compatible with multifd"; it arrives in 10.1). */
        json_t *ch = json_object_get(j, "channels");
        if (ch && !json_is_null(ch) && t->channels != 1) {
            snprintf(err, errlen, "--converge postcopy needs a single stream (--parallel 1): QEMU 10.0 does not "
                                  "combine post-copy with multifd");
            return -1;
        }
        t->channels = 1;
    }
    t->quick = json_is_true(json_object_get(j, "quick"));
    const char *sd = json_string_value(json_object_get(j, "state_dir"));
    if (sd) {
        if (sd[0] != '/' || strlen(sd) >= sizeof t->state_dir) {
            snprintf(err, errlen, "state_dir must be an absolute path");
            return -1;
        }
        snprintf(t->state_dir, sizeof t->state_dir, "%s", sd);
    }
    const char *ws = json_string_value(json_object_get(j, "with_storage"));
    if (ws) {
        if (ws[0] != '/' || strlen(ws) >= sizeof t->with_storage) {
            snprintf(err, errlen, "--with-storage needs an absolute directory on the destination");
            return -1;
        }
        snprintf(t->with_storage, sizeof t->with_storage, "%s", ws);
    }
    t->keep_source = json_is_true(json_object_get(j, "keep_source"));
    if (t->converge == CONVERGE_POSTCOPY && (t->quick || json_is_string(json_object_get(j, "with_storage")))) {
        snprintf(err, errlen, "--converge postcopy is for live migrations of memory (not --quick or --with-storage)");
        return -1;
    }
    if (t->quick && t->with_storage[0]) {
        snprintf(err, errlen, "--quick and --with-storage do not go together");
        return -1;
    }
    if (t->quick) {
        /* mapped-ram: every page has its place in the state file, so the
         * multifd channels write (and read) in parallel; it does not take
         * compression. */
        snprintf(t->compress, sizeof t->compress, "none");
    }
    if (t->channels < 2 && !strcmp(t->compress, "auto"))
        snprintf(t->compress, sizeof t->compress, "none");
    if (strcmp(t->compress, "none") && t->channels < 2) {
        snprintf(err, errlen, "compression needs multifd: use --parallel 2 or more");
        return -1;
    }
    return 0;
}

json_t *tuning_to_json(const struct migrate_tuning *t)
{
    json_t *j = json_pack("{s:i, s:i, s:i, s:i, s:s, s:I, s:s}", "downtime_ms", t->downtime_ms,
                          "max_downtime_ms", t->max_downtime_ms, "max_duration_s", t->max_duration_s,
                          "channels", t->channels, "compress", t->compress, "bandwidth",
                          (json_int_t)t->bandwidth, "converge", policy_names[t->converge]);
    json_object_set_new(j, "max_recover_wait_s", json_integer(t->max_recover_wait_s));
    json_object_set_new(j, "max_wait_s", json_integer(t->max_wait_s));
    if (t->quick)
        json_object_set_new(j, "quick", json_true());
    if (t->state_dir[0])
        json_object_set_new(j, "state_dir", json_string(t->state_dir));
    if (t->with_storage[0])
        json_object_set_new(j, "with_storage", json_string(t->with_storage));
    if (t->keep_source)
        json_object_set_new(j, "keep_source", json_true());
    return j;
}

static json_t *cap(const char *name, bool on)
{
    return json_pack("{s:s, s:b}", "capability", name, "state", on);
}

json_t *tuning_qemu_capabilities(const struct migrate_tuning *t)
{
    json_t *caps = json_array();
    json_array_append_new(caps, cap("events", true));
    json_array_append_new(caps, cap("multifd", t->channels > 1));
    json_array_append_new(caps, cap("auto-converge",
                                    t->converge == CONVERGE_AUTO || t->converge == CONVERGE_THROTTLE));
    json_array_append_new(caps, cap("postcopy-ram", t->postcopy));
    json_array_append_new(caps, cap("postcopy-preempt", t->postcopy));
    json_array_append_new(caps, cap("mapped-ram", t->quick));
    return json_pack("{s:o}", "capabilities", caps);
}

json_t *tuning_qemu_parameters(const struct migrate_tuning *t)
{
    json_t *p = json_pack("{s:I, s:I}", "max-bandwidth",
                          (json_int_t)(t->bandwidth ? t->bandwidth : UNLIMITED_BANDWIDTH),
                          "downtime-limit", (json_int_t)t->downtime_ms);
    if (t->converge == CONVERGE_AUTO || t->converge == CONVERGE_THROTTLE) {
        /* QEMU's 20% + 10% per pass needs 8 passes to reach 99%; a guest
         * that outruns the link needs the brake sooner. */
        json_object_set_new(p, "cpu-throttle-initial", json_integer(30));
        json_object_set_new(p, "cpu-throttle-increment", json_integer(20));
    }
    if (t->channels > 1) {
        json_object_set_new(p, "multifd-channels", json_integer(t->channels));
        json_object_set_new(p, "multifd-compression", json_string(strcmp(t->compress, "auto") ? t->compress : "none"));
    }
    return p;
}

static bool throttles(const struct migrate_tuning *t)
{
    return t->converge == CONVERGE_AUTO || t->converge == CONVERGE_THROTTLE;
}

size_t tuning_qmon_capabilities(const struct migrate_tuning *t, struct qmon_cap_state caps[TUNING_N_CAPS])
{
    caps[0] = (struct qmon_cap_state){QMON_CAP_EVENTS, true};
    caps[1] = (struct qmon_cap_state){QMON_CAP_MULTIFD, t->channels > 1};
    caps[2] = (struct qmon_cap_state){QMON_CAP_AUTO_CONVERGE, throttles(t)};
    /* Preemption: page requests get a channel of their own, so a fault on
     * the destination is not queued behind the background pages. */
    caps[3] = (struct qmon_cap_state){QMON_CAP_POSTCOPY_RAM, t->postcopy};
    caps[4] = (struct qmon_cap_state){QMON_CAP_POSTCOPY_PREEMPT, t->postcopy};
    caps[5] = (struct qmon_cap_state){QMON_CAP_MAPPED_RAM, t->quick};
    return TUNING_N_CAPS;
}

/* "auto" has been decided by now (or falls back to none, as in the JSON form). */
static enum qmon_multifd_compression compression(const char *name)
{
    if (!strcmp(name, "zstd"))
        return QMON_COMPRESS_ZSTD;
    if (!strcmp(name, "zlib"))
        return QMON_COMPRESS_ZLIB;
    return QMON_COMPRESS_NONE;
}

struct qmon_migrate_params tuning_qmon_parameters(const struct migrate_tuning *t)
{
    struct qmon_migrate_params p = {
        .has_max_bandwidth = true, .max_bandwidth = t->bandwidth ? t->bandwidth : UNLIMITED_BANDWIDTH,
        .has_downtime_limit = true, .downtime_limit = (uint64_t)t->downtime_ms,
    };
    if (throttles(t)) {
        /* As tuning_qemu_parameters: reach 99% in 4 passes, not 8. */
        p.has_cpu_throttle_initial = p.has_cpu_throttle_increment = true;
        p.cpu_throttle_initial = 30;
        p.cpu_throttle_increment = 20;
    }
    if (t->channels > 1) {
        p.has_multifd_channels = p.has_multifd_compression = true;
        p.multifd_channels = t->channels;
        p.multifd_compression = compression(t->compress);
    }
    return p;
}
