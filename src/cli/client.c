/* The CLI's connection to vmoved: blocking I/O on a unix socket, or TLS 1.3
 * with a user certificate over TCP. */
#include "cli/client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "common/proto.h"
#include "common/tls.h"
#include "common/util.h"

struct client {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
    char *buf;
    size_t len, cap;
    long long next_id;
};

static int connect_unix(const char *path, char *err, size_t errlen)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path) {
        snprintf(err, errlen, "socket path too long: %s", path);
        return -1;
    }
    strcpy(sun.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        snprintf(err, errlen, "cannot connect to vmoved at %s: %s (is vmoved running? is -H right?)",
                 path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_tcp(const char *host, const char *port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
            break;
        snprintf(err, errlen, "cannot connect to %s:%s: %s", host, port, strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    return fd;
}

/* expect: the host name the server's certificate must carry. */
static int start_tls(struct client *cl, const char *host, const char *expect, const char *identity, char *err,
                     size_t errlen)
{
    if (!identity) {
        snprintf(err, errlen, "connecting to %s over the network needs a user identity: "
                              "--identity DIR or VMOVE_IDENTITY (see `vmove pki issue-user`)", host);
        return -1;
    }
    char *ca = xasprintf("%s/ca.crt", identity), *crt = xasprintf("%s/user.crt", identity),
         *key = xasprintf("%s/user.key", identity);
    cl->ctx = tls_client_ctx(ca, crt, key, err, errlen);
    free(ca);
    free(crt);
    free(key);
    if (!cl->ctx)
        return -1;
    cl->ssl = SSL_new(cl->ctx);
    SSL_set_fd(cl->ssl, cl->fd);
    /* Every host certificate of the CA would do for an address alone: the
     * server must prove the name we expect. */
    if (tls_client_expect_host(cl->ssl, expect) < 0) {
        snprintf(err, errlen, "\"%s\" is not a host name vmove can check a certificate against", expect);
        return -1;
    }
    if (SSL_connect(cl->ssl) != 1) {
        char why[512];
        tls_failure_reason(cl->ssl, why, sizeof why);
        snprintf(err, errlen, "TLS handshake with %s failed: %s", host, why);
        return -1;
    }
    return 0;
}

int client_parse_target(const char *target, char *name, size_t namelen, char *host, size_t hostlen, char *port,
                        size_t portlen, char *err, size_t errlen)
{
    const char *at = strchr(target, '@');
    const char *addr = at ? at + 1 : target;
    const char *colon = strrchr(addr, ':');
    snprintf(host, hostlen, "%.*s", colon ? (int)(colon - addr) : (int)strlen(addr), addr);
    snprintf(port, portlen, "%s", colon ? colon + 1 : "7070");
    if (at)
        snprintf(name, namelen, "%.*s", (int)(at - target), target);
    else
        snprintf(name, namelen, "%s", host);
    struct in_addr ip4;
    struct in6_addr ip6;
    if (!at && (inet_pton(AF_INET, host, &ip4) == 1 || inet_pton(AF_INET6, host, &ip6) == 1)) {
        snprintf(err, errlen, "-H %s is an address: name the host whose certificate it must present, "
                              "-H NAME@%s", target, target);
        return -1;
    }
    if (!*name || !*host) {
        snprintf(err, errlen, "bad -H %s: use unix:PATH, HOST[:PORT] or NAME@ADDR[:PORT]", target);
        return -1;
    }
    return 0;
}

struct client *client_open(const char *target, const char *identity, bool *local, char *err, size_t errlen)
{
    struct client *cl = xcalloc(1, sizeof *cl);
    cl->fd = -1;
    if (!strncmp(target, "unix:", 5)) {
        *local = true;
        cl->fd = connect_unix(target + 5, err, errlen);
    } else {
        *local = false;
        char host[256], port[16], expect[256];
        if (client_parse_target(target, expect, sizeof expect, host, sizeof host, port, sizeof port, err,
                                errlen) < 0) {
            free(cl);
            return NULL;
        }
        cl->fd = connect_tcp(host, port, err, errlen);
        if (cl->fd >= 0 && start_tls(cl, host, expect, identity, err, errlen) < 0) {
            close(cl->fd);
            cl->fd = -1;
        }
    }
    if (cl->fd < 0) {
        if (cl->ssl)
            SSL_free(cl->ssl);
        if (cl->ctx)
            SSL_CTX_free(cl->ctx);
        free(cl);
        return NULL;
    }
    return cl;
}

static int client_write(struct client *cl, const char *data, size_t len)
{
    while (len) {
        ssize_t n = cl->ssl ? SSL_write(cl->ssl, data, (int)len) : write(cl->fd, data, len);
        if (n < 0 && !cl->ssl && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Next line from the daemon, or NULL on EOF/error (caller frees). */
static char *client_readline(struct client *cl)
{
    for (;;) {
        char *nl = cl->len ? memchr(cl->buf, '\n', cl->len) : NULL;
        if (nl) {
            size_t n = (size_t)(nl - cl->buf);
            char *line = xmalloc(n + 1);
            memcpy(line, cl->buf, n);
            line[n] = 0;
            memmove(cl->buf, nl + 1, cl->len - n - 1);
            cl->len -= n + 1;
            return line;
        }
        if (cl->cap - cl->len < 65536) {
            cl->cap = cl->cap ? cl->cap * 2 : 131072;
            cl->buf = realloc(cl->buf, cl->cap);
            if (!cl->buf)
                abort();
        }
        ssize_t n = cl->ssl ? SSL_read(cl->ssl, cl->buf + cl->len, (int)(cl->cap - cl->len))
                            : read(cl->fd, cl->buf + cl->len, cl->cap - cl->len);
        if (n < 0 && !cl->ssl && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        cl->len += (size_t)n;
    }
}

json_t *client_request(struct client *cl, const char *method, json_t *params, client_event_fn on_event, void *arg,
                       json_t **error, char *err, size_t errlen)
{
    *error = NULL;
    long long id = ++cl->next_id;
    json_t *req = json_pack("{s:I, s:s, s:o}", "id", (json_int_t)id, "method", method, "params",
                            params ? params : json_object());
    size_t len;
    char *line = proto_encode(req, &len);
    json_decref(req);
    /* If the write fails, vmoved may have refused us and hung up: its
     * reason is still waiting to be read. */
    int wrc = client_write(cl, line, len);
    free(line);
    for (;;) {
        char *text = client_readline(cl);
        if (!text) {
            snprintf(err, errlen, wrc < 0 ? "lost the connection to vmoved while sending %s"
                                          : "vmoved closed the connection without answering %s", method);
            return NULL;
        }
        json_t *msg = json_loads(text, 0, NULL);
        free(text);
        if (!msg)
            continue;
        json_t *event = json_object_get(msg, "event");
        if (event && on_event)
            on_event(json_string_value(event), json_object_get(msg, "data"), arg);
        *error = event ? NULL : json_incref(json_object_get(msg, "error"));
        json_t *result = event || *error ? NULL : json_incref(json_object_get(msg, "result"));
        json_decref(msg);
        if (!event && !result && !*error)
            snprintf(err, errlen, "vmoved answered %s with neither a result nor an error", method);
        if (!event)
            return result;
    }
}

void client_close(struct client *cl)
{
    if (cl->ssl) {
        SSL_shutdown(cl->ssl);
        SSL_free(cl->ssl);
        SSL_CTX_free(cl->ctx);
    }
    close(cl->fd);
    free(cl->buf);
    free(cl);
}
