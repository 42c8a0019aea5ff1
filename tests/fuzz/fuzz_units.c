/* libFuzzer target: sizes and rates (common/units.h), the parser every size
 * and rate flag and the daemon's memory and disk specs go through.  Input:
 * a selector byte (the unit kind) and the text.  A refusal must say why; a
 * plain decimal number must mean the bare unit exactly (or be refused as too
 * big, never wrap). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/units.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static const uint64_t bare_unit[] = {
    [UNIT_MEMORY] = 1ULL << 20, [UNIT_DISK] = 1, [UNIT_BITRATE] = 1000000, [UNIT_BYTERATE] = 1ULL << 20,
};

/* The value of an all-digit string times unit, or false if it overflows. */
static bool digits_value(const char *s, uint64_t unit, uint64_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return false;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v && unit > UINT64_MAX / v)
        return false;
    *out = v * unit;
    return true;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1 || size > 256)
        return 0;
    enum unit_kind kind = (enum unit_kind)(data[0] % 4);
    char *s = malloc(size);
    memcpy(s, data + 1, size - 1);
    s[size - 1] = 0;
    uint64_t v = 0, want;
    const char *why = NULL;
    int rc = units_parse(s, kind, &v, &why);
    if (rc < 0 && (!why || !*why))
        abort();                          /* a refusal says why */
    if (rc == 0 && digits_value(s, bare_unit[kind], &want) && v != want)
        abort();                          /* a bare number means the bare unit */
    if (!units_bare_name(kind))
        abort();
    free(s);
    return 0;
}
