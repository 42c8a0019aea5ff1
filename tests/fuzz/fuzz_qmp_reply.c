/* libFuzzer target: a QEMU that lies.  The first byte picks the reply
 * parser ('m' query-migrate, 'j' query-block-jobs, 'b' query-block; any
 * other byte modulo 3), the rest is the "return" value QEMU sent.  Whatever
 * it is, a parser either fills its struct or names the bad field; the
 * result is then read the way callers read it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu/monitor.h"

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static volatile size_t sink;   /* keeps the reads below from being optimised away */

static void use(const char *s)
{
    if (s)
        sink += strlen(s);
}

static void migrate(json_t *ret)
{
    struct qmon_migrate_stats s;
    char err[256];
    if (qmon_parse_migrate_reply(ret, &s, err, sizeof err) < 0) {
        if (!err[0])
            abort();            /* a failure must say why */
        return;
    }
    use(s.status_name);
    use(s.error_desc);
    sink += (size_t)s.ram.transferred + (size_t)qmon_mig_status_active(s.status);
}

static void jobs(json_t *ret)
{
    struct qmon_block_job *j = NULL;
    size_t n = 0;
    char err[256];
    if (qmon_parse_block_jobs_reply(ret, &j, &n, err, sizeof err) == 0)
        for (size_t i = 0; i < n; i++) {
            use(j[i].device);
            use(j[i].status);
            use(j[i].type);
            use(j[i].error);
        }
    free(j);
}

static void block(json_t *ret)
{
    struct qmon_block_device *d = NULL;
    size_t n = 0;
    char err[256];
    if (qmon_parse_block_reply(ret, &d, &n, err, sizeof err) == 0) {
        for (size_t i = 0; i < n; i++) {
            use(d[i].device);
            use(d[i].file);
            use(d[i].node_name);
        }
        qmon_block_by_qdev(d, n, "vda-dev");
    }
    free(d);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    if (size < 1)
        return 0;
    json_t *ret = json_loadb((const char *)data + 1, size - 1, JSON_DECODE_ANY, NULL);
    switch (data[0] == 'm' ? 0 : data[0] == 'j' ? 1 : data[0] == 'b' ? 2 : data[0] % 3) {
    case 0: migrate(ret); break;
    case 1: jobs(ret); break;
    default: block(ret); break;
    }
    json_decref(ret);
    return 0;
}
