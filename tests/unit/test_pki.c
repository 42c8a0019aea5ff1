/* PKI issuing and TLS 1.3 mutual authentication, over socketpair()s.
 *
 * One group fixture builds two CAs and a handful of certificates in a temp
 * directory; each handshake test runs the server in a thread and the client
 * on the test thread, so each side has its own OpenSSL error queue. */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "common/pki.h"
#include "common/tls.h"
#include "common/util.h"

static char g_root[] = "/tmp/vmove-pki-XXXXXX";

static char *path(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *path(const char *fmt, ...)
{
    char rel[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rel, sizeof rel, fmt, ap);
    va_end(ap);
    return xasprintf("%s/%s", g_root, rel);
}

static int file_mode(const char *rel)
{
    char *p = path("%s", rel);
    struct stat st;
    int r = stat(p, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
    free(p);
    return r;
}

static X509 *read_cert(const char *rel)
{
    char *p = path("%s", rel);
    BIO *b = BIO_new_file(p, "r");
    free(p);
    assert_non_null(b);
    X509 *c = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(c);
    return c;
}

static EVP_PKEY *read_key(const char *rel)
{
    char *p = path("%s", rel);
    BIO *b = BIO_new_file(p, "r");
    free(p);
    assert_non_null(b);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    return k;
}

static void copy_file(const char *from_rel, const char *to_rel, int mode)
{
    char *from = path("%s", from_rel), *to = path("%s", to_rel);
    char *data;
    size_t len;
    assert_int_equal(read_file(from, &data, &len), 0);
    assert_int_equal(write_file_atomic(to, data, len, mode), 0);
    free(data);
    free(from);
    free(to);
}

/* The one entry NID of the subject, or "" */
static void subject_field(X509 *c, int nid, char *buf, int len)
{
    buf[0] = 0;
    X509_NAME_get_text_by_NID(X509_get_subject_name(c), nid, buf, len);
}

static int ext_critical(X509 *c, int nid)
{
    int i = X509_get_ext_by_NID(c, nid, -1);
    assert_true(i >= 0);
    return X509_EXTENSION_get_critical(X509_get_ext(c, i));
}

/* ---- fixture ------------------------------------------------------------- */

static void issue(const char *ca, const char *name, enum pki_role role, const char *out, int days,
                  long offset)
{
    char err[512] = "";
    char *cadir = path("%s", ca), *outdir = path("%s", out);
    int r = pki_issue(cadir, name, role, outdir, days, offset, err, sizeof err);
    if (r != 0)
        fprintf(stderr, "pki_issue(%s): %s\n", name, err);
    assert_int_equal(r, 0);
    free(cadir);
    free(outdir);
}

static int group_setup(void **state)
{
    if (!mkdtemp(g_root))
        return -1;
    char err[512] = "";
    char *ca = path("ca"), *ca2 = path("ca2");
    int r = pki_init_ca(ca, "test", err, sizeof err) | pki_init_ca(ca2, "other", err, sizeof err);
    free(ca);
    free(ca2);
    if (r != 0) {
        fprintf(stderr, "pki_init_ca: %s\n", err);
        return -1;
    }
    issue("ca", "h1", PKI_ROLE_HOST, "h1", 365, 0);
    issue("ca", "h2", PKI_ROLE_HOST, "h2", 365, 0);
    issue("ca", "alice", PKI_ROLE_USER, "alice", 365, 0);
    issue("ca", "old", PKI_ROLE_USER, "old", 1, -10L * 86400); /* expired 9 days ago */
    issue("ca2", "evil", PKI_ROLE_HOST, "evil", 365, 0);
    issue("ca2", "mallory", PKI_ROLE_USER, "mallory", 365, 0);
    return 0;
}

static int group_teardown(void **state)
{
    return remove_tree(g_root);
}

/* ---- PKI tests ----------------------------------------------------------- */

static void test_init_ca(void **state)
{
    assert_int_equal(file_mode("ca"), 0700);
    assert_int_equal(file_mode("ca/ca.key"), 0600);
    X509 *c = read_cert("ca/ca.crt");
    char buf[128];
    subject_field(c, NID_commonName, buf, sizeof buf);
    assert_string_equal(buf, "vmove CA test");
    assert_true(X509_get_extension_flags(c) & EXFLAG_CA);
    assert_true(ext_critical(c, NID_basic_constraints));
    assert_int_equal(X509_get_key_usage(c), KU_KEY_CERT_SIGN | KU_CRL_SIGN);
    assert_true(X509_get_extension_flags(c) & EXFLAG_SS);

    int days = 0, secs = 0;
    assert_true(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(c), X509_get0_notAfter(c)));
    assert_true(days >= 3650 && days <= 3655);

    EVP_PKEY *k = read_key("ca/ca.key");
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    assert_int_equal(X509_check_private_key(c, k), 1);
    EVP_PKEY_free(k);
    X509_free(c);
}

static void test_init_ca_refuses_second(void **state)
{
    char *ca = path("ca"), *key = path("ca/ca.key");
    char *before, *after;
    assert_int_equal(read_file(key, &before, NULL), 0);
    char err[512] = "";
    assert_int_equal(pki_init_ca(ca, "again", err, sizeof err), -1);
    assert_non_null(strstr(err, "already exists"));
    assert_int_equal(read_file(key, &after, NULL), 0);
    assert_string_equal(before, after);
    free(before);
    free(after);
    free(ca);
    free(key);
}

static void assert_ec_p256(EVP_PKEY *k)
{
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_EC);
    char group[64];
    assert_int_equal(EVP_PKEY_get_utf8_string_param(k, "group", group, sizeof group, NULL), 1);
    assert_string_equal(group, "prime256v1");
}

static void assert_subject(X509 *c, const char *ou, const char *cn)
{
    char buf[128];
    subject_field(c, NID_organizationName, buf, sizeof buf);
    assert_string_equal(buf, "vmove");
    subject_field(c, NID_organizationalUnitName, buf, sizeof buf);
    assert_string_equal(buf, ou);
    subject_field(c, NID_commonName, buf, sizeof buf);
    assert_string_equal(buf, cn);
}

/* Signed by CA, not a CA itself, 128-bit-ish random serial. */
static void assert_leaf_of(X509 *c, const char *ca_rel)
{
    X509 *ca = read_cert(ca_rel);
    assert_int_equal(X509_verify(c, X509_get0_pubkey(ca)), 1);
    assert_false(X509_get_extension_flags(c) & EXFLAG_CA);
    BIGNUM *serial = ASN1_INTEGER_to_BN(X509_get0_serialNumber(c), NULL);
    assert_true(BN_num_bits(serial) > 100 && BN_num_bits(serial) <= 128);
    BN_free(serial);
    X509_free(ca);
}

static void test_issue_host(void **state)
{
    assert_int_equal(file_mode("h1/host.key"), 0600);
    assert_true(file_mode("h1/host.crt") > 0);
    assert_true(file_mode("h1/ca.crt") > 0);
    X509 *c = read_cert("h1/host.crt");
    assert_subject(c, "host", "h1");
    assert_leaf_of(c, "ca/ca.crt");
    assert_int_equal(X509_check_host(c, "h1", 0, 0, NULL), 1);
    assert_int_equal(X509_check_host(c, "h2", 0, 0, NULL), 0);
    assert_int_equal(X509_get_extended_key_usage(c), XKU_SSL_SERVER | XKU_SSL_CLIENT);
    assert_true(X509_get_key_usage(c) & KU_DIGITAL_SIGNATURE);
    /* QEMU/GnuTLS refuse a *critical* keyUsage without keyEncipherment. */
    assert_false(ext_critical(c, NID_key_usage));

    EVP_PKEY *k = read_key("h1/host.key");
    assert_ec_p256(k);
    assert_int_equal(X509_check_private_key(c, k), 1);
    EVP_PKEY_free(k);
    X509_free(c);

    /* ca.crt is a copy of the CA's */
    X509 *a = read_cert("h1/ca.crt"), *b = read_cert("ca/ca.crt");
    assert_int_equal(X509_cmp(a, b), 0);
    X509_free(a);
    X509_free(b);
}

static void test_issue_user(void **state)
{
    assert_int_equal(file_mode("alice/user.key"), 0600);
    X509 *c = read_cert("alice/user.crt");
    assert_subject(c, "user", "alice");
    assert_leaf_of(c, "ca/ca.crt");
    assert_int_equal(X509_get_extended_key_usage(c), XKU_SSL_CLIENT);
    EVP_PKEY *k = read_key("alice/user.key");
    assert_int_equal(EVP_PKEY_get_base_id(k), EVP_PKEY_ED25519);
    assert_int_equal(X509_check_private_key(c, k), 1);
    EVP_PKEY_free(k);

    int days = 0, secs = 0;
    assert_true(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(c), X509_get0_notAfter(c)));
    assert_int_equal(days, 365);
    X509_free(c);

    X509 *old = read_cert("old/user.crt");
    assert_true(X509_cmp_current_time(X509_get0_notAfter(old)) < 0);
    X509_free(old);
}

static void test_issue_errors(void **state)
{
    char err[512] = "";
    char *ca = path("ca"), *out = path("bad"), *nope = path("nope");
    assert_int_equal(pki_issue(ca, "../x", PKI_ROLE_HOST, out, 1, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "invalid name"));
    assert_int_equal(pki_issue(ca, "x", PKI_ROLE_HOST, out, 0, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "at least 1 day"));
    assert_int_equal(pki_issue(nope, "x", PKI_ROLE_USER, out, 1, 0, err, sizeof err), -1);
    assert_non_null(strstr(err, "not found"));
    assert_non_null(strstr(err, "vmove pki init"));
    assert_false(path_exists(out));
    free(ca);
    free(out);
    free(nope);
}

/* ---- context loading ----------------------------------------------------- */

static SSL_CTX *client_ctx(const char *dir, const char *base)
{
    char *ca = path("%s/ca.crt", dir), *crt = path("%s/%s.crt", dir, base);
    char *key = path("%s/%s.key", dir, base);
    char err[512] = "";
    SSL_CTX *ctx = tls_client_ctx(ca, crt, key, err, sizeof err);
    if (!ctx)
        fprintf(stderr, "tls_client_ctx: %s\n", err);
    assert_non_null(ctx);
    free(ca);
    free(crt);
    free(key);
    return ctx;
}

static SSL_CTX *server_ctx(const char *dir)
{
    char *d = path("%s", dir);
    char err[512] = "";
    SSL_CTX *ctx = tls_server_ctx(d, err, sizeof err);
    if (!ctx)
        fprintf(stderr, "tls_server_ctx: %s\n", err);
    assert_non_null(ctx);
    free(d);
    return ctx;
}

static void test_key_mode_refused(void **state)
{
    char *key = path("h1/host.key"), *dir = path("h1");
    char err[512] = "";
    assert_int_equal(chmod(key, 0640), 0);
    SSL_CTX *ctx = tls_server_ctx(dir, err, sizeof err);
    assert_int_equal(chmod(key, 0600), 0);
    assert_null(ctx);
    assert_non_null(strstr(err, "group/other"));
    assert_non_null(strstr(err, "chmod 600"));
    free(key);
    free(dir);
}

static void test_key_mismatch_refused(void **state)
{
    char *ca = path("h1/ca.crt"), *crt = path("h1/host.crt");
    char *key_h2 = path("h2/host.key"), *key_alice = path("alice/user.key");
    char err[512] = "";
    assert_null(tls_client_ctx(ca, crt, key_h2, err, sizeof err));
    assert_non_null(strstr(err, "does not match"));
    assert_null(tls_client_ctx(ca, crt, key_alice, err, sizeof err)); /* other key type */
    assert_non_null(strstr(err, "does not match"));
    free(ca);
    free(crt);
    free(key_h2);
    free(key_alice);
}

static void test_missing_files(void **state)
{
    char *dir = path("nope");
    char err[512] = "";
    assert_null(tls_server_ctx(dir, err, sizeof err));
    assert_non_null(strstr(err, "nope/"));
    free(dir);
}

/* ---- handshakes ---------------------------------------------------------- */

struct side {
    SSL_CTX *ctx; /* NULL on the client: send plain text instead of TLS */
    int fd;
    const char *expect_host;
    bool ok;
    int id_rc;
    struct tls_identity id;
    char reason[512];
};

/* After the handshake a byte goes each way: in TLS 1.3 the client finishes
 * before the server has checked its certificate, so only the read tells the
 * client whether it was accepted. */
static bool exchange(SSL *ssl, bool server)
{
    char out = server ? 's' : 'c', in = 0;
    if (server)
        return SSL_write(ssl, &out, 1) == 1 && SSL_read(ssl, &in, 1) == 1 && in == 'c';
    return SSL_read(ssl, &in, 1) == 1 && in == 's' && SSL_write(ssl, &out, 1) == 1;
}

static void run_side(struct side *s, bool server)
{
    SSL *ssl = SSL_new(s->ctx);
    assert_non_null(ssl);
    SSL_set_fd(ssl, s->fd);
    if (s->expect_host)
        assert_int_equal(tls_client_expect_host(ssl, s->expect_host), 0);
    ERR_clear_error();
    int r = server ? SSL_accept(ssl) : SSL_connect(ssl);
    s->ok = r == 1 && exchange(ssl, server);
    if (s->ok)
        s->id_rc = tls_peer_identity(ssl, &s->id);
    else
        tls_failure_reason(ssl, s->reason, sizeof s->reason);
    SSL_free(ssl);
    shutdown(s->fd, SHUT_WR); /* unblock a peer still waiting for us */
}

static void *server_thread(void *arg)
{
    run_side(arg, true);
    ERR_clear_error();
    return NULL;
}

static void run_plain_client(struct side *c)
{
    static const char hello[] = "{\"hello\":1}\n";
    assert_int_equal(write(c->fd, hello, sizeof hello - 1), (ssize_t)(sizeof hello - 1));
    char buf[256];
    while (read(c->fd, buf, sizeof buf) > 0) /* until the server gives up */
        ;
    shutdown(c->fd, SHUT_WR);
}

static void set_timeout(int fd)
{
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Handshake sctx against cctx; frees both contexts. */
static void handshake(SSL_CTX *sctx, SSL_CTX *cctx, const char *expect_host, struct side *srv,
                      struct side *cli)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    set_timeout(sv[0]);
    set_timeout(sv[1]);
    *srv = (struct side){.ctx = sctx, .fd = sv[0], .id_rc = -2};
    *cli = (struct side){.ctx = cctx, .fd = sv[1], .expect_host = expect_host, .id_rc = -2};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, server_thread, srv), 0);
    if (cctx)
        run_side(cli, false);
    else
        run_plain_client(cli);
    pthread_join(t, NULL);
    close(sv[0]);
    close(sv[1]);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
    if (srv->reason[0])
        printf("    server: %s\n", srv->reason);
    if (cli->reason[0])
        printf("    client: %s\n", cli->reason);
}

static void test_host_to_host(void **state)
{
    struct side s, c;
    handshake(server_ctx("h1"), client_ctx("h2", "host"), "h1", &s, &c);
    assert_true(s.ok);
    assert_true(c.ok);
    assert_int_equal(s.id_rc, 0);
    assert_string_equal(s.id.name, "h2");
    assert_int_equal(s.id.role, PKI_ROLE_HOST);
    assert_int_equal(c.id_rc, 0);
    assert_string_equal(c.id.name, "h1");
    assert_int_equal(c.id.role, PKI_ROLE_HOST);
}

static void test_user_to_host(void **state)
{
    struct side s, c;
    handshake(server_ctx("h1"), client_ctx("alice", "user"), "h1", &s, &c);
    assert_true(s.ok);
    assert_true(c.ok);
    assert_int_equal(s.id_rc, 0);
    assert_string_equal(s.id.name, "alice");
    assert_int_equal(s.id.role, PKI_ROLE_USER);
    assert_string_equal(c.id.name, "h1");
}

static void test_client_other_ca_refused(void **state)
{
    struct side s, c;
    /* mallory trusts our CA (she copied ca.crt) but her cert is from ca2 */
    SSL_CTX *cctx = client_ctx("mallory", "user");
    char *ca = path("ca/ca.crt");
    assert_int_equal(SSL_CTX_load_verify_locations(cctx, ca, NULL), 1);
    free(ca);
    handshake(server_ctx("h1"), cctx, NULL, &s, &c);
    assert_false(s.ok);
    assert_false(c.ok);
    assert_non_null(strstr(s.reason, "certificate verify failed"));
    assert_non_null(strstr(s.reason, "not signed by this host's CA"));
    assert_non_null(strstr(c.reason, "unknown ca"));
}

static void test_server_other_ca_refused(void **state)
{
    struct side s, c;
    handshake(server_ctx("evil"), client_ctx("h2", "host"), NULL, &s, &c);
    assert_false(c.ok);
    assert_false(s.ok);
    assert_non_null(strstr(c.reason, "certificate verify failed"));
    assert_non_null(strstr(c.reason, "not signed by the CA this client trusts"));
}

static void test_expired_client_refused(void **state)
{
    struct side s, c;
    handshake(server_ctx("h1"), client_ctx("old", "user"), NULL, &s, &c);
    assert_false(s.ok);
    assert_false(c.ok);
    assert_non_null(strstr(s.reason, "certificate has expired"));
    assert_non_null(strstr(c.reason, "expired"));
}

static void test_no_client_cert_refused(void **state)
{
    struct side s, c;
    SSL_CTX *cctx = SSL_CTX_new(TLS_client_method());
    char *ca = path("h2/ca.crt");
    assert_int_equal(SSL_CTX_load_verify_locations(cctx, ca, NULL), 1);
    free(ca);
    handshake(server_ctx("h1"), cctx, NULL, &s, &c);
    assert_false(s.ok);
    assert_false(c.ok);
    assert_non_null(strstr(s.reason, "no certificate"));
    assert_non_null(strstr(c.reason, "requires a client certificate"));
}

static void test_plain_client_refused(void **state)
{
    struct side s, c;
    handshake(server_ctx("h1"), NULL, NULL, &s, &c);
    assert_false(s.ok);
    assert_non_null(strstr(s.reason, "not speaking TLS"));
}

static void test_expect_host_mismatch(void **state)
{
    struct side s, c;
    handshake(server_ctx("h1"), client_ctx("h2", "host"), "h3", &s, &c);
    assert_false(c.ok);
    assert_false(s.ok);
    assert_non_null(strstr(c.reason, "hostname mismatch"));
    assert_non_null(strstr(c.reason, "different host name"));

    SSL_CTX *ctx = client_ctx("h2", "host");
    SSL *ssl = SSL_new(ctx);
    assert_int_equal(tls_client_expect_host(ssl, "../bad"), -1);
    SSL_free(ssl);
    SSL_CTX_free(ctx);
}

static void test_tls12_client_refused(void **state)
{
    struct side s, c;
    SSL_CTX *cctx = client_ctx("h2", "host");
    assert_int_equal(SSL_CTX_set_min_proto_version(cctx, TLS1_2_VERSION), 1);
    assert_int_equal(SSL_CTX_set_max_proto_version(cctx, TLS1_2_VERSION), 1);
    handshake(server_ctx("h1"), cctx, NULL, &s, &c);
    assert_false(s.ok);
    assert_false(c.ok);
    assert_non_null(strstr(s.reason, "TLS 1.3 is required"));
}

/* A user certificate lacks serverAuth: it cannot be used to run a server. */
static void test_user_cert_as_server_refused(void **state)
{
    char *dir = path("fake");
    assert_int_equal(mkdir_p(dir, 0700), 0);
    free(dir);
    copy_file("alice/ca.crt", "fake/ca.crt", 0644);
    copy_file("alice/user.crt", "fake/host.crt", 0644);
    copy_file("alice/user.key", "fake/host.key", 0600);
    struct side s, c;
    handshake(server_ctx("fake"), client_ctx("h2", "host"), NULL, &s, &c);
    assert_false(c.ok);
    assert_false(s.ok);
    assert_non_null(strstr(c.reason, "does not allow this role"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_ca),
        cmocka_unit_test(test_init_ca_refuses_second),
        cmocka_unit_test(test_issue_host),
        cmocka_unit_test(test_issue_user),
        cmocka_unit_test(test_issue_errors),
        cmocka_unit_test(test_key_mode_refused),
        cmocka_unit_test(test_key_mismatch_refused),
        cmocka_unit_test(test_missing_files),
        cmocka_unit_test(test_host_to_host),
        cmocka_unit_test(test_user_to_host),
        cmocka_unit_test(test_client_other_ca_refused),
        cmocka_unit_test(test_server_other_ca_refused),
        cmocka_unit_test(test_expired_client_refused),
        cmocka_unit_test(test_no_client_cert_refused),
        cmocka_unit_test(test_plain_client_refused),
        cmocka_unit_test(test_expect_host_mismatch),
        cmocka_unit_test(test_tls12_client_refused),
        cmocka_unit_test(test_user_cert_as_server_refused),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
