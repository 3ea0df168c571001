/*
 * Listen and connect addresses with IPv6 (core/hostport.h
 * spw_hostport_parse, net/loop.h): "[IPV6]:PORT" is parsed without its
 * brackets, an unbracketed IPv6 literal or a bad literal is refused; a
 * listener on [::] is dual stack (IPv4 and IPv6 clients, the IPv4 ones
 * named a.b.c.d, not ::ffff:a.b.c.d), one on [::1] is IPv6 only. The
 * socket part is skipped without an IPv6 loopback.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/error.h"
#include "core/hostport.h"
#include "net/loop.h"
#include "test.h"

static void ok(const char *s, int port0, const char *host, uint16_t port, int v6)
{
    char h[64];
    uint16_t p = 0;
    int is6 = -1;
    CHECK_EQ(spw_hostport_parse(s, h, sizeof h, &p, port0, &is6), 0);
    CHECK(strcmp(h, host) == 0);
    CHECK_EQ(p, port);
    CHECK_EQ(is6, v6);
}

static void bad(const char *s, int port0)
{
    char h[64];
    uint16_t p = 0;
    CHECK_EQ(spw_hostport_parse(s, h, sizeof h, &p, port0, NULL), SPW_EINVAL);
}

/* Accepts one connection from family fam to port on lfd; returns the
 * peer's text. */
static void accept_from(int lfd, int fam, int port, char *peer, size_t cap)
{
    int c = socket(fam, SOCK_STREAM, 0);
    CHECK(c >= 0);
    struct sockaddr_storage ss = {0};
    socklen_t sl;
    if (fam == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        a->sin6_addr = in6addr_loopback;
        sl = sizeof *a;
    }
    CHECK(connect(c, (struct sockaddr *)&ss, sl) == 0);
    struct sockaddr_storage from;
    socklen_t fl = sizeof from;
    int a = -1;
    for (int i = 0; i < 1000 && a < 0; i++) { /* the listener is non-blocking */
        a = accept(lfd, (struct sockaddr *)&from, &fl);
        if (a < 0)
            usleep(1000);
    }
    CHECK(a >= 0);
    spw__net_peer_str(&from, peer, cap);
    close(a);
    close(c);
}

int main(void)
{
    ok("127.0.0.1:7700", 0, "127.0.0.1", 7700, 0);
    ok("[::1]:7700", 0, "::1", 7700, 1);
    ok("[::]:0", 1, "::", 0, 1);
    ok("[::ffff:127.0.0.1]:80", 0, "::ffff:127.0.0.1", 80, 1);
    ok("[2001:db8::1]:65535", 0, "2001:db8::1", 65535, 1);
    bad("::1:7700", 0);       /* brackets needed */
    bad("[::1]7700", 0);
    bad("[::1]:", 0);
    bad("[]:7700", 0);
    bad("[::g]:7700", 0);     /* not an IPv6 literal */
    bad("[127.0.0.1]:7700", 0);
    bad("[::1]:0", 0);
    bad("[::1]:65536", 1);
    bad("[::1:7700", 0);
    bad("host:-1", 1);

    spw__net_addr a;
    CHECK_EQ(spw__net_parse_addr("::1:7700", &a), -EINVAL);
    CHECK_EQ(spw__net_parse_addr("[::1]:7700", &a), 0);
    CHECK_EQ(a.ss.ss_family, AF_INET6);
    CHECK_EQ(spw__net_addr_port(&a), 7700);
    CHECK_EQ(spw__net_parse_addr("127.0.0.1:7700", &a), 0);
    CHECK_EQ(a.ss.ss_family, AF_INET);

    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 lo = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int have6 = probe >= 0 && bind(probe, (struct sockaddr *)&lo, sizeof lo) == 0;
    if (probe >= 0)
        close(probe);
    if (!have6) {
        puts("test_netaddr: sockets skipped: no IPv6 loopback");
        return 0;
    }
    char peer[64];
    /* [::]: dual stack */
    CHECK_EQ(spw__net_parse_addr("[::]:0", &a), 0);
    int fd = spw__net_listen(&a, 0);
    CHECK(fd >= 0);
    socklen_t sl = sizeof a.ss;
    CHECK(getsockname(fd, (struct sockaddr *)&a.ss, &sl) == 0);
    int port = spw__net_addr_port(&a);
    accept_from(fd, AF_INET, port, peer, sizeof peer);
    CHECK(strcmp(peer, "127.0.0.1") == 0);
    accept_from(fd, AF_INET6, port, peer, sizeof peer);
    CHECK(strcmp(peer, "::1") == 0);
    close(fd);
    /* [::1]: IPv6 only */
    CHECK_EQ(spw__net_parse_addr("[::1]:0", &a), 0);
    fd = spw__net_listen(&a, 0);
    CHECK(fd >= 0);
    sl = sizeof a.ss;
    CHECK(getsockname(fd, (struct sockaddr *)&a.ss, &sl) == 0);
    port = spw__net_addr_port(&a);
    int v6only = 0;
    socklen_t ol = sizeof v6only;
    CHECK(getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &ol) == 0 && v6only == 1);
    accept_from(fd, AF_INET6, port, peer, sizeof peer);
    CHECK(strcmp(peer, "::1") == 0);
    close(fd);
    puts("test_netaddr: ok");
    return 0;
}
