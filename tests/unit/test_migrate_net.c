/* Unit tests for the migration network checks (src/migrate/migrate_net.c):
 * which local address a destination listens on, given its allowed networks;
 * the route source; the dotted-quad parser; aborting connections at the
 * kernel.  Only loopback and addresses read from this machine are used. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conf/settings.h"
#include "migrate/migrate_net.h"

static void with_networks(struct host_settings *s, const char *const *cidrs)
{
    host_settings_defaults(s);
    s->migration_any = false;
    s->n_migration_networks = 0;
    for (; *cidrs; cidrs++)
        assert_int_equal(cidr_parse(*cidrs, &s->migration_networks[s->n_migration_networks++]), 0);
}

static void test_ip(void **state)
{
    assert_int_equal(migrate_net_ip("10.0.2.15"), 0x0a00020f);
    assert_int_equal(migrate_net_ip("255.255.255.255"), 0xffffffffu);
    assert_int_equal(migrate_net_ip("0.0.0.1"), 1);
    assert_int_equal(migrate_net_ip("256.1.1.1"), 0);
    assert_int_equal(migrate_net_ip("10.0.2"), 0);
    assert_int_equal(migrate_net_ip("h2"), 0);
    assert_int_equal(migrate_net_ip("::1"), 0);
    assert_int_equal(migrate_net_ip(""), 0);
}

/* Loopback counts only when the networks name it. */
static void test_pick_loopback_network(void **state)
{
    struct host_settings s;
    with_networks(&s, (const char *const[]){"127.0.0.0/8", NULL});
    char ip[64] = "", err[256] = "";
    assert_int_equal(migrate_net_pick_listen(&s, "192.0.2.99", "h2", ip, sizeof ip, err, sizeof err), 0);
    assert_string_equal(ip, "127.0.0.1");   /* the hint is for "any" only */
}

static void test_pick_none_allowed(void **state)
{
    struct host_settings s;
    /* TEST-NET-3 and a /32 nobody has: no local address inside. */
    with_networks(&s, (const char *const[]){"203.0.113.0/24", "198.51.100.7/32", NULL});
    char ip[64] = "", err[256] = "";
    assert_int_equal(migrate_net_pick_listen(&s, NULL, "h2", ip, sizeof ip, err, sizeof err), -1);
    assert_string_equal(err, "host h2 has no address in its allowed migration networks "
                             "(203.0.113.0/24, 198.51.100.7/32)");
    host_settings_defaults(&s);
    s.migration_any = false;
    s.n_migration_networks = 0;
    assert_int_equal(migrate_net_pick_listen(&s, "127.0.0.1", "h3", ip, sizeof ip, err, sizeof err), -1);
    assert_string_equal(err, "host h3 has no address in its allowed migration networks ((none))");
}

static void test_pick_any_uses_hint(void **state)
{
    struct host_settings s;
    host_settings_defaults(&s);
    s.migration_any = true;
    char ip[64] = "", err[256] = "";
    assert_int_equal(migrate_net_pick_listen(&s, "192.0.2.77", "h2", ip, sizeof ip, err, sizeof err), 0);
    assert_string_equal(ip, "192.0.2.77");
}

/* The first IPv4 address of this machine that is not loopback, or "". */
static void first_non_loopback(char *ip, size_t len)
{
    struct ifaddrs *ifs;
    ip[0] = '\0';
    assert_int_equal(getifaddrs(&ifs), 0);
    for (struct ifaddrs *i = ifs; i && !ip[0]; i = i->ifa_next) {
        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET)
            continue;
        struct in_addr a = ((struct sockaddr_in *)i->ifa_addr)->sin_addr;
        if ((ntohl(a.s_addr) >> 24) != 127)
            inet_ntop(AF_INET, &a, ip, (socklen_t)len);
    }
    freeifaddrs(ifs);
}

/* "any" without a hint: a local address, never loopback. */
static void test_pick_any_without_hint(void **state)
{
    struct host_settings s;
    host_settings_defaults(&s);
    s.migration_any = true;
    char want[64], ip[64] = "", err[256] = "";
    first_non_loopback(want, sizeof want);
    int rc = migrate_net_pick_listen(&s, NULL, "h2", ip, sizeof ip, err, sizeof err);
    if (!want[0]) {
        assert_int_equal(rc, -1);
        assert_string_equal(err, "host h2 has no address in its allowed migration networks (any)");
        return;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(ip, want);
    /* And the same address through a /32 naming it. */
    char cidr[80];
    snprintf(cidr, sizeof cidr, "%s/32", want);
    with_networks(&s, (const char *const[]){"203.0.113.0/24", cidr, NULL});
    ip[0] = '\0';
    assert_int_equal(migrate_net_pick_listen(&s, NULL, "h2", ip, sizeof ip, err, sizeof err), 0);
    assert_string_equal(ip, want);
}

static void test_route_source(void **state)
{
    char ip[64] = "";
    assert_int_equal(migrate_net_route_source("127.0.0.1", ip, sizeof ip), 0);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(migrate_net_route_source("127.3.4.5", ip, sizeof ip), 0);
    assert_int_equal(migrate_net_ip(ip) >> 24, 127);
    assert_int_equal(migrate_net_route_source("not-an-ip", ip, sizeof ip), -1);
}

static void test_abort_bad_address(void **state)
{
    char err[128];
    assert_int_equal(migrate_net_abort_connections("h2", 4000, err, sizeof err), -1);
    assert_string_equal(err, "bad address h2:4000");
    assert_int_equal(migrate_net_abort_connections("127.0.0.1", 0, err, sizeof err), -1);
    assert_string_equal(err, "bad address 127.0.0.1:0");
    assert_int_equal(migrate_net_abort_connections("127.0.0.1", 65536, err, sizeof err), -1);
}

/* A connection to a loopback listener: aborting it wakes its reader with
 * ECONNABORTED (needs ss and CAP_NET_ADMIN; skipped without them). */
static void test_abort_connection(void **state)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 1), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    int port = ntohs(a.sin_port);
    int cfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(cfd, (struct sockaddr *)&a, sizeof a), 0);
    int afd = accept(lfd, NULL, NULL);
    assert_true(afd >= 0);
    char err[256] = "";
    int n = migrate_net_abort_connections("127.0.0.1", port, err, sizeof err);
    if (n < 0) {
        close(afd), close(cfd), close(lfd);
        print_message("ss -K unavailable here: %s\n", err);
        skip();
    }
    assert_int_equal(n, 1);   /* ours, and not the accepted end (its source port is the listener's) */
    char c;
    assert_int_equal(recv(cfd, &c, 1, 0), -1);
    assert_int_equal(errno, ECONNABORTED);
    /* Nothing left to abort. */
    assert_int_equal(migrate_net_abort_connections("127.0.0.1", port, err, sizeof err), 0);
    close(afd), close(cfd), close(lfd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip),
        cmocka_unit_test(test_pick_loopback_network),
        cmocka_unit_test(test_pick_none_allowed),
        cmocka_unit_test(test_pick_any_uses_hint),
        cmocka_unit_test(test_pick_any_without_hint),
        cmocka_unit_test(test_route_source),
        cmocka_unit_test(test_abort_bad_address),
        cmocka_unit_test(test_abort_connection),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
