/* The one disk-progress object of both moves (mirror_progress.h). */
#include "block/mirror_progress.h"

#include <stdint.h>

/* Seconds left at rate: 0 once in sync, null while no rate is known (also
 * before QEMU first reported the job). */
static json_t *eta_json(uint64_t done, uint64_t total, double rate, bool ready)
{
    if (ready || (total && total <= done))
        return json_real(0);
    if (rate <= 0)
        return json_null();
    return json_real((double)(total - done) / rate);
}

/* The average rate of a disk's whole copy: its bytes over mirror start to ready. */
static double average_rate(const struct block_mirror_disk *d)
{
    uint64_t ms = d->t_ready > d->t_mirror ? d->t_ready - d->t_mirror : 0;
    return ms ? (double)d->offset * 1000.0 / (double)ms : 0.0;
}

static json_t *disk_json(const struct block_mirror_disk *d, bool final, double rate)
{
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:f, s:b}", "id", d->id, "size_bytes", (json_int_t)d->vsize,
                          "done_bytes", (json_int_t)d->offset, "total_bytes", (json_int_t)d->len, "rate_Bps",
                          rate, "ready", final || d->ready);
    json_object_set_new(o, "eta_s", final ? json_real(0) : eta_json(d->offset, d->len, rate, d->ready));
    return o;
}

json_t *block_mirror_progress(struct block_mirror *bm, bool final)
{
    json_t *disks = json_array();
    uint64_t size = 0, done = 0, total = 0;
    double rate = 0;
    bool ready = true;
    for (size_t i = 0; i < block_mirror_count(bm); i++) {
        const struct block_mirror_disk *d = block_mirror_disk(bm, i);
        double r = final ? average_rate(d) : d->rate;
        json_array_append_new(disks, disk_json(d, final, r));
        size += d->vsize;
        done += d->offset;
        total += d->len;
        rate += r;
        ready = ready && d->ready;
    }
    json_t *p = json_pack("{s:o, s:I, s:I, s:I, s:f, s:f}", "disks", disks, "size_bytes", (json_int_t)size,
                          "done_bytes", (json_int_t)done, "total_bytes", (json_int_t)total, "rate_Bps", rate,
                          "percent", final ? 100.0 : total ? 100.0 * (double)done / (double)total : 0.0);
    json_object_set_new(p, "eta_s", final ? json_real(0) : eta_json(done, total, rate, ready && block_mirror_count(bm)));
    return p;
}
