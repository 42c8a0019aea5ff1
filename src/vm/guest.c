/* The guest channel: one line at a time to the guest program over the
 * virtio-serial port (guest.sock), queued per VM. */
#include "vm/vm.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "common/proto.h"
#include "common/util.h"
#include "core/agent.h"
#include "qemu/qemu_argv.h"
#include "vm/vm_internal.h"

/* ---- guest channel ---------------------------------------------------- */

struct guest_req {
    struct guest_req *next;
    struct vm *vm;
    char *line;
    char token[32];            /* lines before "pong TOKEN" are stale replies */
    bool synced;
    int timeout_ms;
    vm_done_fn done;
    void *done_arg;
    struct event *timer;
};

static void guest_next(struct vm *vm);

static void guest_done(struct vm *vm, json_t *result, json_t *err)
{
    struct guest_req *g = vm->guest_queue;
    vm->guest_queue = g->next;
    if (vm->guest_bev) {
        bufferevent_free(vm->guest_bev);
        vm->guest_bev = NULL;
    }
    if (g->timer)
        event_free(g->timer);
    g->done(g->done_arg, result, err);
    free(g->line);
    free(g);
    guest_next(vm);
}

void vm_guest_cancel_all(struct vm *vm, const char *why)
{
    while (vm->guest_queue)
        guest_done(vm, NULL, proto_error(ERR_UNAVAILABLE, NULL, "guest channel: %s", why));
}

/* The guest may still hold a reply meant for a client that went away: a
 * "ping TOKEN" goes first, and lines up to its "pong TOKEN" are dropped. */
static void on_guest_read(struct bufferevent *bev, void *arg)
{
    struct vm *vm = arg;
    size_t n;
    char *line;
    while (vm->guest_queue && (line = evbuffer_readln(bufferevent_get_input(bev), &n, EVBUFFER_EOL_CRLF))) {
        struct guest_req *g = vm->guest_queue;
        if (!g->synced) {
            char expect[48];
            snprintf(expect, sizeof expect, "pong %s", g->token);
            g->synced = !strcmp(line, expect);
            free(line);
            continue;
        }
        guest_done(vm, json_pack("{s:s}", "reply", line), NULL);
        free(line);
        return;
    }
}

static void on_guest_event(struct bufferevent *bev, short what, void *arg)
{
    struct vm *vm = arg;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR))
        guest_done(vm, NULL, proto_error(ERR_UNAVAILABLE, "is the guest program running? see `vmove vm console`",
                                         "guest channel of %s closed before a reply", vm->name));
}

static void on_guest_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct vm *vm = arg;
    guest_done(vm, NULL, proto_error(ERR_TIMEOUT, "is the guest program running? see `vmove vm console`",
                                     "no reply from the guest of %s within %d ms", vm->name,
                                     vm->guest_queue->timeout_ms));
}

static void guest_next(struct vm *vm)
{
    struct guest_req *g = vm->guest_queue;
    if (!g || vm->guest_bev)
        return;
    char *path = qemu_guest_path(vm->dir);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", path);
    free(path);
    vm->guest_bev = bufferevent_socket_new(vm->agent->base, -1, BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(vm->guest_bev, on_guest_read, NULL, on_guest_event, vm);
    bufferevent_enable(vm->guest_bev, EV_READ | EV_WRITE);
    g->timer = evtimer_new(vm->agent->base, on_guest_timeout, vm);
    struct timeval tv = {g->timeout_ms / 1000, (g->timeout_ms % 1000) * 1000};
    evtimer_add(g->timer, &tv);
    if (bufferevent_socket_connect(vm->guest_bev, (struct sockaddr *)&sun, sizeof sun) < 0) {
        guest_done(vm, NULL, proto_error(ERR_UNAVAILABLE, NULL, "cannot connect to the guest channel of %s",
                                         vm->name));
        return;
    }
    snprintf(g->token, sizeof g->token, "%llx", (unsigned long long)(now_ms() ^ (uintptr_t)g));
    char *sync = xasprintf("ping %s\n%s\n", g->token, g->line);
    bufferevent_write(vm->guest_bev, sync, strlen(sync));
    free(sync);
}

void vm_guest_command(struct vm *vm, const char *line, int timeout_ms, vm_done_fn done, void *arg)
{
    struct guest_req *g = xcalloc(1, sizeof *g);
    g->vm = vm;
    g->line = xstrdup(line);
    g->timeout_ms = timeout_ms;
    g->done = done;
    g->done_arg = arg;
    struct guest_req **p = &vm->guest_queue;
    while (*p)
        p = &(*p)->next;
    *p = g;
    guest_next(vm);
}
