#include "qemu/qemu_argv.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"

struct argv_builder {
    char **v;
    size_t n, cap;
};

static void push(struct argv_builder *b, char *s)
{
    if (b->n + 2 > b->cap) {
        b->cap = b->cap ? b->cap * 2 : 32;
        b->v = realloc(b->v, b->cap * sizeof *b->v);
        if (!b->v)
            abort();
    }
    b->v[b->n++] = s;
    b->v[b->n] = NULL;
}

static void push2(struct argv_builder *b, const char *opt, char *val)
{
    push(b, xstrdup(opt));
    push(b, val);
}

char *qemu_qmp_path(const char *d) { return xasprintf("%s/qmp.sock", d); }
char *qemu_console_path(const char *d) { return xasprintf("%s/console.sock", d); }
char *qemu_guest_path(const char *d) { return xasprintf("%s/guest.sock", d); }

void qemu_tap_name(const struct vm_config *c, size_t i, char out[16])
{
    char hex[9];
    size_t k = 0;
    for (const char *p = c->uuid; *p && k < 8; p++)
        if (*p != '-')
            hex[k++] = *p;
    hex[k] = 0;
    snprintf(out, 16, "vm%sn%zu", hex, i);
}

static void add_monitors(struct argv_builder *b, const char *dir)
{
    push2(b, "-chardev", xasprintf("socket,id=qmp,path=%s/qmp.sock,server=on,wait=off", dir));
    push2(b, "-mon", xstrdup("chardev=qmp,mode=control"));
    /* The serial console: logged by QEMU itself, reachable interactively. */
    push2(b, "-chardev", xasprintf("socket,id=console,path=%s/console.sock,server=on,wait=off,"
                                   "logfile=%s/console.log,logappend=on", dir, dir));
    push2(b, "-serial", xstrdup("chardev:console"));
    /* The guest program's control channel. */
    push2(b, "-device", xstrdup("virtio-serial-pci,id=vser0"));
    push2(b, "-chardev", xasprintf("socket,id=guest0,path=%s/guest.sock,server=on,wait=off", dir));
    push2(b, "-device", xstrdup("virtserialport,bus=vser0.0,chardev=guest0,id=guest0port,"
                                "name=org.vmove.guest.0"));
}

static void add_disks(struct argv_builder *b, const struct vm_config *c, const struct qemu_argv_opts *o)
{
    for (size_t i = 0; i < c->n_disks; i++) {
        const struct vm_disk *d = &c->disks[i];
        /* Two named nodes per disk: <id>-file (protocol) and <id> (qcow2). */
        /* Built with jansson so that any path is quoted correctly. */
        json_t *file = json_pack("{s:s, s:s, s:s, s:s}", "driver", "file", "filename", d->path,
                                 "node-name", "", "discard", "unmap");
        char *file_node = xasprintf("%s-file", d->id);
        json_object_set_new(file, "node-name", json_string(file_node));
        /* An HA disk bypasses the host's page cache: a fenced host must hold
         * no dirty data that the kernel could write after the takeover. */
        if (c->ha)
            json_object_set_new(file, "cache", json_pack("{s:b}", "direct", true));
        if (o->no_image_locking)
            json_object_set_new(file, "locking", json_string("off"));
        json_t *fmt = json_pack("{s:s, s:s, s:s, s:s}", "driver", "qcow2", "file", file_node,
                                "node-name", d->id, "discard", "unmap");
        push2(b, "-blockdev", json_dumps(file, JSON_COMPACT));
        push2(b, "-blockdev", json_dumps(fmt, JSON_COMPACT));
        free(file_node);
        json_decref(file);
        json_decref(fmt);
        push2(b, "-device", xasprintf("virtio-blk-pci,drive=%s,id=%s-dev", d->id, d->id));
    }
}

static void add_nics(struct argv_builder *b, const struct vm_config *c)
{
    for (size_t i = 0; i < c->n_nics; i++) {
        char tap[16];
        qemu_tap_name(c, i, tap);
        push2(b, "-netdev", xasprintf("tap,id=net%zu,ifname=%s,script=no,downscript=no", i, tap));
        push2(b, "-device", xasprintf("virtio-net-pci,netdev=net%zu,mac=%s,id=net%zu-dev", i,
                                      c->nics[i].mac, i));
    }
}

char **qemu_build_argv(const struct vm_config *c, const struct qemu_argv_opts *o)
{
    struct argv_builder b = {0};
    push(&b, xstrdup(o->qemu_binary));
    push2(&b, "-name", xasprintf("guest=%s,debug-threads=on", c->name));
    push2(&b, "-uuid", xstrdup(c->uuid));
    push(&b, xstrdup("-nodefaults"));
    push(&b, xstrdup("-no-user-config"));
    push2(&b, "-display", xstrdup("none"));
    push2(&b, "-machine", xasprintf("%s,accel=%s", c->machine, accel_kind_name(o->accel)));
    if (c->cpu_model)
        push2(&b, "-cpu", xstrdup(c->cpu_model));
    push2(&b, "-m", xasprintf("%lluM", (unsigned long long)c->memory_mib));
    push2(&b, "-smp", xasprintf("%d", c->cpus));
    push2(&b, "-msg", xstrdup("timestamp=on"));
    /* Start paused: vmoved finishes wiring (tap -> bridge) before the guest runs. */
    push(&b, xstrdup("-S"));
    add_monitors(&b, o->vm_dir);
    add_disks(&b, c, o);
    add_nics(&b, c);
    if (c->boot.kind == VM_BOOT_KERNEL) {
        push2(&b, "-kernel", xstrdup(c->boot.kernel));
        if (c->boot.initrd)
            push2(&b, "-initrd", xstrdup(c->boot.initrd));
        if (c->boot.append)
            push2(&b, "-append", xstrdup(c->boot.append));
    } else {
        push2(&b, "-boot", xstrdup("order=c"));
    }
    if (o->incoming)
        push2(&b, "-incoming", xstrdup(o->incoming));
    return b.v;
}

void qemu_argv_free(char **argv)
{
    if (!argv)
        return;
    for (char **p = argv; *p; p++)
        free(*p);
    free(argv);
}
