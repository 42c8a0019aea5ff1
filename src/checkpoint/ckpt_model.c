/* The checkpoint tree (see checkpoint/ckpt_model.h). */
#include "checkpoint/ckpt_model.h"

#include <stdio.h>
#include <string.h>

json_t *ckpt_list(json_t *tree) { return json_object_get(tree, "list"); }

json_t *ckpt_find(json_t *tree, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(ckpt_list(tree), i, c) {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (n && name && !strcmp(n, name))
            return c;
    }
    return NULL;
}

const char *ckpt_current(json_t *tree) { return json_string_value(json_object_get(tree, "current")); }
const char *ckpt_parent(json_t *ck) { return json_string_value(json_object_get(ck, "parent")); }
const char *ckpt_disk(json_t *ck, const char *disk_id)
{
    return json_string_value(json_object_get(json_object_get(ck, "disks"), disk_id));
}

size_t ckpt_children(json_t *tree, const char *name, json_t **only_child, bool *now_is_child)
{
    size_t n = 0, i;
    json_t *c;
    *only_child = NULL;
    *now_is_child = ckpt_current(tree) && !strcmp(ckpt_current(tree), name);
    json_array_foreach(ckpt_list(tree), i, c) {
        const char *p = ckpt_parent(c);
        if (p && !strcmp(p, name)) {
            n++;
            *only_child = c;
        }
    }
    return n + (*now_is_child ? 1 : 0);
}

bool ckpt_on_current_path(json_t *tree, const char *name)
{
    const char *n = ckpt_current(tree);
    for (size_t hops = 0; n && hops <= json_array_size(ckpt_list(tree)); hops++) {
        if (!strcmp(n, name))
            return true;
        n = ckpt_parent(ckpt_find(tree, n));
    }
    return false;
}

json_t *ckpt_unsettled(json_t *tree)
{
    size_t i;
    json_t *c;
    json_array_foreach(ckpt_list(tree), i, c) {
        const char *st = json_string_value(json_object_get(c, "state"));
        if (!st || strcmp(st, "ok"))
            return c;
    }
    return NULL;
}

int ckpt_validate(json_t *tree, char *err, size_t errlen)
{
    size_t i;
    json_t *c;
    json_array_foreach(ckpt_list(tree), i, c) {
        const char *n = json_string_value(json_object_get(c, "name"));
        if (!n || !json_is_object(json_object_get(c, "disks"))) {
            snprintf(err, errlen, "checkpoints.list[%zu]: needs a name and disks", i);
            return -1;
        }
        const char *p = ckpt_parent(c);
        if (p && !ckpt_find(tree, p)) {
            snprintf(err, errlen, "checkpoint %s: parent %s is not in the tree", n, p);
            return -1;
        }
    }
    const char *cur = ckpt_current(tree);
    if (cur && !ckpt_find(tree, cur)) {
        snprintf(err, errlen, "checkpoints.current: %s is not in the tree", cur);
        return -1;
    }
    return 0;
}
