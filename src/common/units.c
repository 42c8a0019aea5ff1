/* Sizes and rates, one grammar (units.h). */
#include "common/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

struct unit_rule {
    uint64_t bare;       /* what a number without a suffix is worth */
    uint64_t base;       /* 1024 (binary) or 1000 (decimal) */
    const char *tails[4];/* what may follow the suffix, case-insensitively */
    const char *bare_name;
};

static const struct unit_rule rules[] = {
    [UNIT_MEMORY] = {1ULL << 20, 1024, {"ib", "b", "", NULL}, "MiB"},
    [UNIT_DISK] = {1, 1024, {"ib", "b", "", NULL}, "bytes"},
    [UNIT_BITRATE] = {1000000, 1000, {"bit/s", "bps", "bit", ""}, "Mbit/s"},
    [UNIT_BYTERATE] = {1ULL << 20, 1024, {"ib/s", "b/s", "/s", ""}, "MiB/s"},
};

static bool tail_ok(const struct unit_rule *r, const char *tail)
{
    for (size_t i = 0; i < 4 && r->tails[i]; i++)
        if (!strcasecmp(tail, r->tails[i]))
            return true;
    /* "MiB/s" may also be written without /s, "Mbit" likewise. */
    return r == &rules[UNIT_BYTERATE] && (!strcasecmp(tail, "ib") || !strcasecmp(tail, "b"));
}

static int power_of(char suffix, int *n)
{
    const char *order = "KMGT";
    const char *p = strchr(order, toupper((unsigned char)suffix));
    if (!suffix || !p)
        return -1;
    *n = (int)(p - order) + 1;
    return 0;
}

int units_parse(const char *s, enum unit_kind kind, uint64_t *out, const char **why)
{
    const struct unit_rule *r = &rules[kind];
    if (!s || !isdigit((unsigned char)s[0])) {
        *why = !s || !*s ? "empty value" : "expected a number with an optional suffix K, M, G or T";
        return -1;
    }
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mult = r->bare;
    int n;
    if (*end) {
        if (power_of(*end, &n) < 0 || !tail_ok(r, end + 1)) {
            *why = kind == UNIT_BITRATE   ? "unknown unit: use a suffix K, M, G or T (bit/s), e.g. 500M"
                   : kind == UNIT_BYTERATE ? "unknown unit: use a suffix K, M, G or T (bytes/s), e.g. 100M"
                                           : "unknown unit: use a suffix K, M, G or T, e.g. 512M";
            return -1;
        }
        mult = 1;
        while (n--)
            mult *= r->base;
    }
    if (errno || (mult && v > UINT64_MAX / mult)) {
        *why = "out of range";
        return -1;
    }
    *out = v * mult;
    return 0;
}

const char *units_bare_name(enum unit_kind kind)
{
    return rules[kind].bare_name;
}
