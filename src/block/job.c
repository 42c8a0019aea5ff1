/* Block job tracker (see block/job.h). */
#include "block/job.h"

#include <stdlib.h>
#include <string.h>

#include "common/util.h"

static struct block_job_state *tracked_job(const struct block_jobs *t, const char *id)
{
    for (size_t i = 0; id && i < t->n; i++)
        if (!strcmp(t->v[i].id, id))
            return &t->v[i];
    return NULL;
}

size_t block_jobs_track(struct block_jobs *t, const char *id)
{
    struct block_job_state *s = tracked_job(t, id);
    if (s)
        return (size_t)(s - t->v);
    t->v = realloc(t->v, (t->n + 1) * sizeof *t->v);
    if (!t->v)
        abort();
    t->v[t->n] = (struct block_job_state){.id = xstrdup(id)};
    return t->n++;
}

static void set_str(char **dst, const char *src)
{
    free(*dst);
    *dst = src ? xstrdup(src) : NULL;
}

void block_jobs_update(struct block_jobs *t, const struct qmon_block_job *jobs, size_t n)
{
    for (size_t i = 0; i < t->n; i++)
        t->v[i].listed = false;
    for (size_t i = 0; i < n; i++) {
        struct block_job_state *s = tracked_job(t, jobs[i].device);
        if (!s)
            continue;
        s->listed = s->seen = true;
        s->offset = jobs[i].offset;
        s->len = jobs[i].len;
        s->ready = jobs[i].ready;
        set_str(&s->type, jobs[i].type);
        set_str(&s->status, jobs[i].status);
    }
}

const struct block_job_state *block_jobs_get(const struct block_jobs *t, const char *id) { return tracked_job(t, id); }

size_t block_jobs_listed(const struct block_jobs *t)
{
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++)
        k += t->v[i].listed;
    return k;
}

void block_jobs_free(struct block_jobs *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].id), free(t->v[i].type), free(t->v[i].status);
    free(t->v);
    *t = (struct block_jobs){0};
}
