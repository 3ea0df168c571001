/*
 * TLS in the connection core (net/conn.h "TLS", net/tls.h) under a tiny
 * echo protocol that takes ONE byte per event: the rest of a TLS record
 * is then decrypted and held by OpenSSL, where epoll cannot see it. The
 * core must hand the connection EPOLLIN again (its tls_ready list) until
 * the protocol has taken every byte: the client gets its 3000 bytes back,
 * sent in one write (one record), without sending anything more.
 * Also: the same protocol without TLS (the plain path, level-triggered
 * epoll, unchanged); a reload making new sessions use the new context
 * while an old session goes on; a handshake that never comes is closed at
 * tls_handshake_timeout_ms and counted.
 * Certificates are made with the openssl command (skipped, 77, without it).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "net/conn.h"
#include "net/tls.h"
#include "test.h"

typedef struct eloop {
    union {
        spw_netloop nl;
        struct {
            SPW_NETLOOP_FIELDS
        };
    };
} eloop;

typedef struct econn {
    union {
        spw_netconn nc;
        struct {
            SPW_NETCONN_FIELDS
        };
    };
} econn;

static uint32_t e_events(spw_netconn *c) { return EPOLLIN | (c->want_out ? EPOLLOUT : 0); }

/* One byte per event, echoed. */
static void e_io(spw_netconn *c, uint32_t ev)
{
    if (ev & EPOLLOUT)
        spw_netconn_send(c);
    if (c->closed || !(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    char b;
    ssize_t n = spw_netconn_recv(c, &b, 1);
    if (n <= 0) {
        if (n == 0 || errno != EAGAIN)
            spw_netconn_close(c);
        return;
    }
    CHECK_OK(spw_buf_put(&c->out, &b, 1));
    spw_netconn_send(c);
}

static const spw_netproto eproto = {
    .name = "echo",
    .conn_size = sizeof(econn),
    .loop_size = sizeof(eloop),
    .events = e_events,
    .io = e_io,
};

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

#define N 3000

static void fill(char *msg)
{
    for (int i = 0; i < N; i++)
        msg[i] = (char)('a' + i % 26);
}

/* Sends N bytes in one write and reads N back (bounded by SO_RCVTIMEO).
 * The serial of the server's certificate. */
static long tls_echo(int port, const char *ca, SSL **keep, int *keep_fd)
{
    int fd = connect_to(port);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    CHECK(ctx != NULL);
    CHECK_EQ(SSL_CTX_load_verify_locations(ctx, ca, NULL), 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    CHECK_EQ(SSL_connect(ssl), 1);
    char msg[N], got[N];
    fill(msg);
    CHECK_EQ(SSL_write(ssl, msg, N), N);
    size_t have = 0;
    while (have < N) {
        int r = SSL_read(ssl, got + have, (int)(N - have));
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    CHECK_EQ(have, (size_t)N);
    CHECK(memcmp(msg, got, N) == 0);
    X509 *x = SSL_get1_peer_certificate(ssl);
    CHECK(x != NULL);
    long serial = ASN1_INTEGER_get(X509_get0_serialNumber(x));
    X509_free(x);
    if (keep) {
        *keep = ssl;
        *keep_fd = fd;
    } else {
        SSL_free(ssl);
        close(fd);
    }
    SSL_CTX_free(ctx);
    return serial;
}

static int sh(const char *dir, const char *cmd)
{
    char full[8192];
    snprintf(full, sizeof full, "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the server does (net/tls.h) */
    if (system("openssl version >/dev/null 2>&1") != 0) {
        printf("test_conn_tls: skipped: needs the openssl command\n");
        return 77;
    }
    char *tmp = spw_test_tmpdir("conn_tls");
    CHECK_EQ(sh(tmp, "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=ca && "
                     "openssl req -newkey rsa:2048 -nodes -keyout a.key -out a.csr -subj /CN=localhost && "
                     "openssl x509 -req -in a.csr -CA ca.pem -CAkey ca.key -set_serial 11 -days 2 -out a.pem && "
                     "openssl req -newkey rsa:2048 -nodes -keyout b.key -out b.csr -subj /CN=localhost && "
                     "openssl x509 -req -in b.csr -CA ca.pem -CAkey ca.key -set_serial 22 -days 2 -out b.pem && "
                     "cp a.pem cur.pem && cp a.key cur.key"),
             0);
    char ca[4200], cert[4200], key[4200], err[1024];
    snprintf(ca, sizeof ca, "%s/ca.pem", tmp);
    snprintf(cert, sizeof cert, "%s/cur.pem", tmp);
    snprintf(key, sizeof key, "%s/cur.key", tmp);

    /* Plain: the same protocol, one byte per event. */
    spw_netsrv plain;
    spw_netsrv_config pc = {.listen = "127.0.0.1:0", .threads = 1, .max_connections = 16};
    CHECK_EQ(spw_netsrv_start(&plain, &eproto, &pc, NULL), 0);
    {
        int fd = connect_to(plain.port);
        char msg[N], got[N];
        fill(msg);
        CHECK_EQ(send(fd, msg, N, 0), N);
        size_t have = 0;
        while (have < N) {
            ssize_t r = recv(fd, got + have, N - have, 0);
            CHECK(r > 0);
            have += (size_t)r;
        }
        CHECK(memcmp(msg, got, N) == 0);
        close(fd);
    }
    spw_netsrv_stop(&plain, 0);

    /* TLS. */
    spw_tls *tls = NULL;
    CHECK_EQ(spw_tls_open(cert, key, &tls, err, sizeof err), 0);
    spw_netsrv s;
    spw_netsrv_config tc = {.listen = "127.0.0.1:0", .threads = 2, .max_connections = 16, .tls = tls,
                            .tls_handshake_timeout_ms = 2000};
    CHECK_EQ(spw_netsrv_start(&s, &eproto, &tc, NULL), 0);
    SSL *old = NULL;
    int old_fd = -1;
    CHECK_EQ(tls_echo(s.port, ca, &old, &old_fd), 11);
    CHECK_EQ(tls_echo(s.port, ca, NULL, NULL), 11);

    /* Reload: new sessions get b, the old one goes on. */
    CHECK_EQ(sh(tmp, "cp b.pem cur.pem && cp b.key cur.key"), 0);
    CHECK_EQ(spw_tls_reload(tls, err, sizeof err), 0);
    CHECK_EQ(tls_echo(s.port, ca, NULL, NULL), 22);
    CHECK_EQ(SSL_write(old, "xyz", 3), 3);
    char b3[3];
    size_t h3 = 0;
    while (h3 < 3) {
        int r = SSL_read(old, b3 + h3, (int)(3 - h3));
        CHECK(r > 0);
        h3 += (size_t)r;
    }
    CHECK(memcmp(b3, "xyz", 3) == 0);
    SSL_CTX *octx = SSL_get_SSL_CTX(old);
    SSL_free(old);
    (void)octx;
    close(old_fd);
    /* A bad key on reload: refused, the context stays. */
    CHECK_EQ(sh(tmp, "cp a.key cur.key"), 0);
    CHECK(spw_tls_reload(tls, err, sizeof err) != 0);
    CHECK(strstr(err, "does not match") != NULL);
    CHECK_EQ(tls_echo(s.port, ca, NULL, NULL), 22);

    /* A client that never says hello is closed at the handshake timeout. */
    uint64_t f0 = atomic_load(&s.tls_handshake_failures);
    int idle = connect_to(s.port);
    char c;
    CHECK(recv(idle, &c, 1, 0) <= 0); /* EOF (or reset) well before the 10 s receive timeout */
    close(idle);
    CHECK(atomic_load(&s.tls_handshake_failures) >= f0 + 1);
    CHECK(spw_net_tls_handshake_failures() >= 1);

    spw_netsrv_stop(&s, 0);
    spw_tls_free(tls);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_conn_tls: ok\n");
    return 0;
}
