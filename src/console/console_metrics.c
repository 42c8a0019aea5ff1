/* GET /metrics: Prometheus text format 0.0.4.  Who may scrape: a console
 * session, or a TLS client certificate of this host's CA (Prometheus's
 * tls_config cert_file/key_file) whose principal holds vm.read here, which
 * is what `vmove host show` needs too.  The move counters are core/metrics'; the
 * gauges are read here at scrape time. */
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/http.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "common/tls.h"
#include "console/console_internal.h"
#include "core/agent.h"
#include "core/jobs.h"
#include "core/limits.h"
#include "core/metrics.h"
#include "vm/vm.h"

static bool scraper_allowed(struct console *c, struct evhttp_request *req, char *who, size_t len)
{
    struct session *s = session_from_cookie(&c->sessions,
                                            evhttp_find_header(evhttp_request_get_input_headers(req), "Cookie"));
    struct principal p;
    if (s) {
        p = s->who;
    } else {
        struct evhttp_connection *evcon = evhttp_request_get_connection(req);
        struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
        SSL *ssl = bev ? bufferevent_openssl_get_ssl(bev) : NULL;
        struct tls_identity id;
        if (!ssl || tls_peer_identity(ssl, &id) < 0) {
            snprintf(who, len, "anonymous");
            return false;
        }
        p.kind = id.role == PKI_ROLE_HOST ? PRINCIPAL_HOST : PRINCIPAL_USER;
        snprintf(p.name, sizeof p.name, "%s", id.name);
    }
    principal_describe(&p, who, len);
    return !(p.kind == PRINCIPAL_USER && !strcmp(p.name, "root") && !s) && acl_allows_who(c->agent, &p, RIGHT_VM_READ);
}

static void render_gauges(struct agent *a, char **buf, size_t *len)
{
    int queued = 0;
    for (struct job *j = a->jobs; j; j = j->next)
        queued += j->state == JOB_QUEUED;
    metrics_appendf(buf, len, "# HELP vmove_move_queue_length Moves waiting for a slot on this host.\n"
                              "# TYPE vmove_move_queue_length gauge\nvmove_move_queue_length %d\n", queued);
    static const char *const kinds[] = {"live", "storage"};
    metrics_appendf(buf, len, "# HELP vmove_moves_running Slots in use by moves on this host (a live "
                              "migration takes one on both of its hosts).\n# TYPE vmove_moves_running gauge\n");
    for (int k = 0; k < SLOT_KINDS; k++)
        metrics_appendf(buf, len, "vmove_moves_running{kind=\"%s\"} %d\n", kinds[k], limits_in_use(a, (enum slot_kind)k));
    metrics_appendf(buf, len, "# HELP vmove_moves_limit Moves at a time this host allows (host set "
                              "--max-live-migrations, --max-storage-migrations).\n# TYPE vmove_moves_limit gauge\n");
    for (int k = 0; k < SLOT_KINDS; k++)
        metrics_appendf(buf, len, "vmove_moves_limit{kind=\"%s\"} %d\n", kinds[k], limits_max(a, (enum slot_kind)k));
    int by_state[VM_INCOMING + 1] = {0};
    VM_FOREACH(a, vm) by_state[vm->state]++;
    metrics_appendf(buf, len, "# HELP vmove_vms VMs on this host by state.\n# TYPE vmove_vms gauge\n");
    for (int s = 0; s <= VM_INCOMING; s++)
        metrics_appendf(buf, len, "vmove_vms{state=\"%s\"} %d\n", vm_state_name((enum vm_state)s), by_state[s]);
}

void console_metrics(struct console *c, struct evhttp_request *req)
{
    char who[96];
    if (!scraper_allowed(c, req, who, sizeof who)) {
        console_send_error(req, strcmp(who, "anonymous") ? 403 : 401,
                           "/metrics needs a console session or a client certificate with vm.read on host %s "
                           "(%s has neither)", c->agent->name, who);
        return;
    }
    char *buf = NULL;
    size_t len = 0;
    metrics_render_moves(&buf, &len);
    render_gauges(c->agent, &buf, &len);
    console_send(req, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
    free(buf);
}
