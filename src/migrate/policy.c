#include "migrate/policy.h"

#include <stdio.h>
#include <string.h>

#define NOT_CONVERGING_PASSES 3
#define OUTRUN_MS 5000          /* outrun this long before the policy acts */
#define POLICY_SPACING_MS 5000  /* and at least this long after its last action */
#define AUTO_THROTTLE_PCT 50    /* auto: QEMU's throttle alone is not enough beyond this */

#define WHY_SHRINK "the remaining memory stopped shrinking"
#define WHY_OUTRUN "the guest dirties memory faster than the link carries it"

void migrate_policy_read_stats(const json_t *info, struct migrate_policy_input *in)
{
    json_t *ram = json_object_get(info, "ram");
    double page = (double)json_integer_value(json_object_get(ram, "page-size"));
    in->remaining = (uint64_t)json_integer_value(json_object_get(ram, "remaining"));
    in->transfer_rate_Bps = json_real_value(json_object_get(ram, "mbps")) * 1e6 / 8;
    in->dirty_rate_Bps = (double)json_integer_value(json_object_get(ram, "dirty-pages-rate")) * (page ? page : 4096);
    in->pass = json_integer_value(json_object_get(ram, "dirty-sync-count"));
    in->expected_downtime_ms = json_integer_value(json_object_get(info, "expected-downtime"));
    in->throttle_pct = (int)json_integer_value(json_object_get(info, "cpu-throttle-percentage"));
}

bool migrate_policy_converging(const struct migrate_policy_state *s)
{
    return s->passes_not_converging < NOT_CONVERGING_PASSES && !s->outrun_since_ms;
}

/* Doubling: a few steps reach any sensible limit, and each step gives the
 * transfer a chance to finish at the smaller pause. */
static void raise_downtime(const struct migrate_policy_input *in, struct policy_action *act, const char *why)
{
    int cur = in->downtime_limit_ms;
    if (cur >= in->max_downtime_ms)
        return;
    int next = cur * 2;
    if (next > in->max_downtime_ms)
        next = in->max_downtime_ms;
    snprintf(act->note, sizeof act->note, "raised the downtime limit from %d to %d ms (%s)", cur, next, why);
    act->downtime_ms = next;
    act->state.passes_not_converging = 0;
}

static void switch_postcopy(const struct migrate_policy_input *in, struct policy_action *act, const char *why)
{
    act->postcopy = true;
    snprintf(act->note, sizeof act->note, "switched to post-copy at pass %lld (%s): the VM runs on %s from now on",
             (long long)in->pass, why, in->dest ? in->dest : "the destination");
}

static void cancel(struct policy_action *act, const char *hint, const char *reason)
{
    act->cancel = true;
    act->hint = hint;
    snprintf(act->reason, sizeof act->reason, "%s", reason);
}

static void apply(const struct migrate_policy_input *in, struct policy_action *act, const char *why)
{
    char reason[256];
    act->state.last_policy_ms = in->now_ms;
    switch (in->converge) {
    case CONVERGE_CANCEL:
        snprintf(reason, sizeof reason, "not converging (%s); cancelled by the convergence policy", why);
        cancel(act, "retry when the guest is quieter, or use --converge auto", reason);
        break;
    case CONVERGE_DOWNTIME:
        raise_downtime(in, act, why);
        break;
    case CONVERGE_POSTCOPY:
        if (in->postcopy_ok) {
            switch_postcopy(in, act, why);
            break;
        }
        /* not set up for post-copy (never so in practice): as auto */
        __attribute__((fallthrough));
    case CONVERGE_AUTO:
        if (in->throttle_pct >= AUTO_THROTTLE_PCT || act->state.outrun_since_ms) {
            if (in->postcopy_ok)
                switch_postcopy(in, act, why);   /* instead of a longer pause */
            else
                raise_downtime(in, act, why);
        }
        break;
    case CONVERGE_THROTTLE:
        break;
    }
}

/* At every new pass: is the remaining RAM shrinking? */
static void check_convergence(const struct migrate_policy_input *in, struct policy_action *act)
{
    struct migrate_policy_state *s = &act->state;
    if (s->pass_start_remaining && in->remaining * 10 >= s->pass_start_remaining * 9)
        s->passes_not_converging++;
    else
        s->passes_not_converging = 0;
    s->pass_start_remaining = in->remaining;
    if (s->passes_not_converging >= NOT_CONVERGING_PASSES)
        apply(in, act, WHY_SHRINK);
}

/* Between passes too: on a slow link one pass can take a minute, so the
 * dirty rate is compared with the transfer rate continuously. */
static void check_outrun(const struct migrate_policy_input *in, struct policy_action *act)
{
    struct migrate_policy_state *s = &act->state;
    if (in->pass < 2 || in->dirty_rate_Bps < 0.9 * in->transfer_rate_Bps) {
        s->outrun_since_ms = 0;
        return;
    }
    if (!s->outrun_since_ms)
        s->outrun_since_ms = in->now_ms;
    if (in->now_ms - s->outrun_since_ms >= OUTRUN_MS && in->now_ms - s->last_policy_ms >= POLICY_SPACING_MS) {
        s->passes_not_converging = NOT_CONVERGING_PASSES;
        apply(in, act, WHY_OUTRUN);
    }
}

static void check_duration(const struct migrate_policy_input *in, struct policy_action *act)
{
    if (in->elapsed_ms <= (uint64_t)in->max_duration_s * 1000)
        return;
    char reason[384];
    snprintf(reason, sizeof reason, "migration to %s did not finish within %d s", in->dest ? in->dest : "?",
             in->max_duration_s);
    cancel(act, "raise --max-duration or use a faster migration network", reason);
}

struct policy_action migrate_policy_decide(const struct migrate_policy_input *in)
{
    struct policy_action act;
    memset(&act, 0, sizeof act);
    act.state = in->state;
    if (in->pass > act.state.last_pass) {
        act.state.last_pass = in->pass;
        check_convergence(in, &act);
    }
    /* Once the migration is being failed, nothing more is decided. */
    if (in->failed || act.cancel || act.postcopy)
        return act;
    if (in->converge == CONVERGE_POSTCOPY && in->postcopy_ok && in->pass >= 2) {
        /* The first full pass sent every page once: what is left is what the
         * guest keeps dirtying, which post-copy moves once, on demand. */
        switch_postcopy(in, &act, "the first full pass is done");
        act.state.last_policy_ms = in->now_ms;
        return act;
    }
    check_outrun(in, &act);
    if (!act.cancel)
        check_duration(in, &act);
    return act;
}
