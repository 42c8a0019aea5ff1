/* Realizing an import plan (see exchange/import.h): files are created only
 * here, only after every check passed, and removed again on failure. */
#include "exchange/import.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "block/image.h"
#include "common/log.h"
#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "core/journal.h"
#include "exchange/import_internal.h"
#include "vm/vm.h"

/* Copy or convert every disk into the plan's directory; the copy is checked
 * with qemu-img check before the VM may use it. */
static int copy_disks(struct import_plan *p, char *err, size_t errlen)
{
    for (size_t i = 0; i < p->n; i++) {
        struct import_disk *d = &p->disks[i];
        char why[2048];
        if (image_convert(d->source, d->sniff.qemu_format, d->target, why, sizeof why) < 0) {
            snprintf(err, errlen, "disk %s: qemu-img convert -f %s %s failed: %s", d->id, d->sniff.qemu_format,
                     d->source, why);
            return -1;
        }
        if (image_check(d->target, "qcow2", why, sizeof why) < 0) {
            snprintf(err, errlen, "disk %s: the copy %s fails qemu-img check: %s", d->id, d->target, why);
            return -1;
        }
        free(p->cfg.disks[i].path);
        p->cfg.disks[i].path = xstrdup(d->target);
    }
    return 0;
}

static json_t *realize_register(struct agent *a, struct import_plan *p, json_t **err)
{
    for (size_t i = 0; i < p->n; i++) {
        free(p->cfg.disks[i].path);
        p->cfg.disks[i].path = xstrdup(p->disks[i].source);
    }
    struct vm_config c;
    vm_config_copy(&c, &p->cfg);
    struct vm *vm = vm_define_in_state(a, &c, err);
    vm_config_free(&c);
    return vm ? vm_to_json(vm, true) : NULL;
}

static json_t *realize_copy(struct agent *a, struct import_plan *p, json_t **err)
{
    bool own_disk_dir = strcmp(p->disk_dir, p->vm_dir) != 0;
    if (mkdir(p->vm_dir, 0700) < 0) {
        *err = proto_error(ERR_EXISTS, NULL, "cannot create %s: %s", p->vm_dir, strerror(errno));
        return NULL;
    }
    if (own_disk_dir && mkdir(p->disk_dir, 0700) < 0) {
        *err = proto_error(ERR_EXISTS, NULL, "cannot create %s: %s", p->disk_dir, strerror(errno));
        remove_tree(p->vm_dir);
        return NULL;
    }
    char why[4096];
    struct vm *vm = NULL;
    if (copy_disks(p, why, sizeof why) < 0) {
        *err = proto_error(ERR_INTERNAL, NULL, "import of %s failed: %s", p->cfg.name, why);
    } else {
        struct vm_config c;
        vm_config_copy(&c, &p->cfg);
        vm = vm_define(a, &c, p->vm_dir, err);
        vm_config_free(&c);
    }
    if (!vm) {
        if (own_disk_dir)
            remove_tree(p->disk_dir);
        remove_tree(p->vm_dir);
        return NULL;
    }
    return vm_to_json(vm, true);
}

json_t *import_plan_realize(struct agent *a, struct import_plan *p, json_t **err)
{
    if (!import_plan_compatible(p)) {
        *err = proto_error(ERR_INVALID, "`vmove vm import PATH --check` lists them with their fixes",
                           "the import does not fit this host (%zu problem(s))", json_array_size(p->errors));
        json_object_set(*err, "report", p->report);
        return NULL;
    }
    json_t *vm = p->mode == IMPORT_REGISTER ? realize_register(a, p, err) : realize_copy(a, p, err);
    json_t *detail = json_pack("{s:s, s:s, s:b}", "source", p->src_dir, "mode", import_mode_name(p->mode), "ok",
                               vm != NULL);
    journal_event(a->journal, p->cfg.name, vm ? "vm.imported" : "vm.import.failed", detail);
    json_decref(detail);
    if (vm)
        log_info("%s: imported from %s (%s)", p->cfg.name, p->src_dir, import_mode_name(p->mode));
    return vm;
}
