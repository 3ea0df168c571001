/*
 * TLS on the listeners (docs/operations.md "TLS"). Certificates are made
 * at test time with the openssl command line (skipped, exit 77, without
 * it): a CA, a server certificate it signs (serial 1001, CN=localhost), a
 * renewed one (serial 2002, CN=renewed), and a second CA the server's
 * certificate is not signed by.
 *
 *  - curl --cacert over HTTPS: create a stream, produce, read it back.
 *  - The binary protocol speaks TLS too (a frame answered over a session),
 *    and the Kafka listener (kcat with security.protocol=ssl).
 *  - Plain HTTP to the TLS port fails (closed, no HTTP answer) and the
 *    server goes on serving.
 *  - A client that connects and never finishes its handshake (sends
 *    nothing; sends half a ClientHello) is closed after the handshake
 *    timeout (request-timeout), and others are served meanwhile.
 *  - Pipelining over TLS: 100 requests in one write with max-pipelined 2
 *    (the connection pauses and resumes many times) are all answered.
 *  - curl with the other CA refuses the server's certificate.
 *  - The CLI over https:// with --cacert or $SPILLWAY_CACERT (stream,
 *    produce, consume); another CA and plain http:// fail.
 *  - The client library over TLS: bench --protocol bin --cacert (the
 *    synchronous client and the producer); another CA fails.
 *  - A forward sink with options.tls_ca delivers to the TLS server; a CA
 *    file that does not load is refused at PUT.
 *  - SIGHUP with the renewed certificate: new connections get it (serial,
 *    subject), a connection made before goes on with the old one; a
 *    broken key file on SIGHUP keeps the certificate in force.
 *  - The loopback rule: 0.0.0.0 with TLS and tokens starts; with TLS and
 *    no tokens it is refused; tls-cert without tls-key, a missing file or
 *    a key of another certificate is refused with the reason; a key file
 *    other users can read is loaded with a WARN.
 */
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "binframe.h"
#include "server.h"

static const char *BIN;
static char *TMP;
static char CA[4200], CA2[4200], CERT[4200], KEY[4200], LOG[4200];

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "$ %s\n", cmd);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* Output of a shell command (stdout and stderr), malloc'ed. */
static char *sh_out(int *rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *sh_out(int *rc, const char *fmt, ...)
{
    char cmd[16384];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    size_t k;
    while ((k = fread(buf + n, 1, cap - n - 1, f)) > 0)
        n += k;
    buf[n] = 0;
    int st = pclose(f);
    *rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "$ %s\n[exit %d]\n%s\n", cmd, *rc, buf);
    return buf;
}

/* A CA (name.pem, name.key) and a certificate it signs (out.pem,
 * out.key) for localhost and 127.0.0.1 with the given serial and CN. */
static void make_ca(const char *name)
{
    CHECK_EQ(sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout %s.key -out %s.pem -days 2 "
                "-subj /CN=%s >/dev/null 2>&1",
                TMP, name, name, name),
             0);
}

static void make_cert(const char *ca, const char *out, int serial, const char *cn)
{
    CHECK_EQ(sh("cd %s && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
                "openssl req -newkey rsa:2048 -nodes -keyout %s.key -out %s.csr -subj /CN=%s >/dev/null 2>&1 && "
                "openssl x509 -req -in %s.csr -CA %s.pem -CAkey %s.key -set_serial %d -days 2 -extfile san.ext "
                "-out %s.pem >/dev/null 2>&1",
                TMP, out, out, cn, out, ca, ca, serial, out),
             0);
}

/* ---- an OpenSSL client ---- */

typedef struct tconn {
    int fd;
    SSL_CTX *ctx;
    SSL *ssl;
} tconn;

/* A verified TLS session to port (CA file ca); the handshake's result. */
static int tls_connect(tconn *t, int port, const char *ca)
{
    t->fd = tcp_connect(port);
    t->ctx = SSL_CTX_new(TLS_client_method());
    CHECK(t->ctx != NULL);
    CHECK_EQ(SSL_CTX_load_verify_locations(t->ctx, ca, NULL), 1);
    SSL_CTX_set_verify(t->ctx, SSL_VERIFY_PEER, NULL);
    t->ssl = SSL_new(t->ctx);
    SSL_set_fd(t->ssl, t->fd);
    SSL_set1_host(t->ssl, "127.0.0.1");
    return SSL_connect(t->ssl) == 1 ? 0 : -1;
}

static void tls_close(tconn *t)
{
    SSL_free(t->ssl);
    SSL_CTX_free(t->ctx);
    close(t->fd);
}

static void tls_write(tconn *t, const void *p, size_t n)
{
    CHECK_EQ(SSL_write(t->ssl, p, (int)n), (int)n);
}

/* The peer certificate's serial (as a number). */
static long peer_serial(tconn *t)
{
    X509 *x = SSL_get1_peer_certificate(t->ssl);
    CHECK(x != NULL);
    long s = ASN1_INTEGER_get(X509_get0_serialNumber(x));
    X509_free(x);
    return s;
}

/* Reads HTTP answers until n "HTTP/1.1 200" were seen (bounded by the
 * socket's receive timeout). The count seen. */
static int read_oks(tconn *t, int n)
{
    char buf[65536];
    size_t have = 0;
    int seen = 0;
    while (seen < n) {
        int r = SSL_read(t->ssl, buf + have, (int)(sizeof buf - 1 - have));
        if (r <= 0)
            break;
        have += (size_t)r;
        buf[have] = 0;
        /* Count complete answers; keep a partial tail. */
        char *p = buf, *q;
        while ((q = strstr(p, "HTTP/1.1 200")) && strstr(q, "\r\n\r\n") && strstr(q, "}")) {
            seen++;
            p = strstr(q, "}") + 1;
        }
        memmove(buf, p, have - (size_t)(p - buf));
        have -= (size_t)(p - buf);
    }
    return seen;
}

static int healthz_on(tconn *t)
{
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    tls_write(t, req, sizeof req - 1);
    return read_oks(t, 1) == 1 ? 0 : -1;
}

/* curl over HTTPS: 0 if it answered 200 with body containing want. */
static void curl_ok(int port, const char *args, const char *want)
{
    int rc;
    char *o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s 'https://127.0.0.1:%d%s'", CA, port, args);
    if (rc != 0 || !strstr(o, want))
        fprintf(stderr, "curl %s: rc %d: %s\n", args, rc, o);
    CHECK_EQ(rc, 0);
    CHECK(strstr(o, want) != NULL);
    free(o);
}

/* The socket is closed by the server within 20 s (EOF or reset). */
static void expect_closed(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    for (int i = 0; i < 40; i++) {
        CHECK(poll(&p, 1, 500) >= 0);
        if (p.revents) {
            char b[4096];
            ssize_t n = recv(fd, b, sizeof b, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN))
                return;
            if (n > 0) {
                b[n] = 0;
                CHECK(strstr(b, "HTTP/1.1") == NULL); /* never an HTTP answer */
            }
        }
    }
    CHECK(!"the server did not close the connection within 20 s");
}

static void wait_log(const char *what, int count)
{
    for (int i = 0; i < 2000; i++) {
        int rc;
        char *o = sh_out(&rc, "grep -c '%s' %s", what, LOG);
        int n = atoi(o);
        free(o);
        if (n >= count)
            return;
        usleep(10000);
    }
    CHECK(!"log line did not come");
}

static void test_https(srv *s)
{
    curl_ok(s->port, "/healthz", "\"ok\"");
    /* Create a stream, produce, read back. */
    int rc;
    char *o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s -X PUT -d '{\"partitions\":1}' "
                          "https://127.0.0.1:%d/v1/streams/gps",
                     CA, s->port);
    CHECK_EQ(rc, 0);
    CHECK(strstr(o, "\"name\":\"gps\"") != NULL);
    free(o);
    o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s -H 'Content-Type: application/json' "
                    "-d '{\"device\":\"tls-1\"}' https://127.0.0.1:%d/v1/streams/gps/events",
               CA, s->port);
    CHECK_EQ(rc, 0);
    CHECK(strstr(o, "\"accepted\":1") != NULL);
    free(o);
    /* A read large enough to take many records. */
    char *big = malloc(200001);
    memset(big, 'x', 200000);
    big[200000] = 0;
    char path[4300];
    snprintf(path, sizeof path, "%s/big.json", TMP);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"device\":\"%s\"}", big);
    fclose(f);
    free(big);
    o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s -H 'Content-Type: application/json' --data-binary @%s "
                    "https://127.0.0.1:%d/v1/streams/gps/events",
               CA, path, s->port);
    CHECK_EQ(rc, 0);
    CHECK(strstr(o, "\"accepted\":1") != NULL);
    free(o);
    o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s 'https://127.0.0.1:%d/v1/streams/gps/events?partition=0&offset=0'",
               CA, s->port);
    CHECK_EQ(rc, 0);
    CHECK(strstr(o, "\"device\":\"tls-1\"") != NULL);
    CHECK(strstr(o, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}") != NULL);
    CHECK(strlen(o) > 200000);
    free(o);
}

static void test_binary(srv *s)
{
    CHECK(s->binport > 0);
    tconn t;
    CHECK_EQ(tls_connect(&t, s->binport, CA), 0);
    spw_buf b = SPW_BUF_INIT;
    size_t st;
    CHECK_OK(spw_frame_begin(&b, SPW_OP_METADATA, 0, 4242, &st));
    spw_frame_finish(&b, st);
    tls_write(&t, b.p, b.len);
    spw_buf_fini(&b);
    uint8_t h[16];
    size_t got = 0;
    while (got < 16) {
        int r = SSL_read(t.ssl, h + got, (int)(16 - got));
        CHECK(r > 0);
        got += (size_t)r;
    }
    spw_frame_hdr fh;
    CHECK_EQ(spw_frame_hdr_decode(h, 16, 64u << 20, &fh), 0);
    CHECK(fh.flags & SPW_FLAG_RESPONSE);
    CHECK_EQ(fh.request_id, 4242u);
    tls_close(&t);
    /* Plain frames to the TLS port get no answer frame. */
    int fd = tcp_connect(s->binport);
    CHECK_OK(spw_frame_begin(&b, SPW_OP_METADATA, 0, 1, &st));
    spw_frame_finish(&b, st);
    send_all(fd, b.p, b.len);
    spw_buf_fini(&b);
    expect_closed(fd);
    close(fd);
}

static void test_plain_to_tls(srv *s)
{
    int fd = tcp_connect(s->port);
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    expect_closed(fd);
    close(fd);
    curl_ok(s->port, "/healthz", "\"ok\"");
}

static void test_handshake_timeout(srv *s)
{
    /* One sends nothing, one half a ClientHello (a record header and two
     * bytes of its five hundred). */
    int idle = tcp_connect(s->port);
    int half = tcp_connect(s->port);
    const uint8_t part[] = {0x16, 0x03, 0x01, 0x01, 0xf4, 0x01, 0x00};
    send_all(half, part, sizeof part);
    /* Others are served meanwhile, on every loop. */
    for (int i = 0; i < 4; i++)
        curl_ok(s->port, "/healthz", "\"ok\"");
    expect_closed(idle);
    expect_closed(half);
    close(idle);
    close(half);
    curl_ok(s->port, "/healthz", "\"ok\"");
}

static void test_pipelined(srv *s)
{
    /* 100 requests in one write: the server, at most 2 in flight per
     * connection, pauses and resumes reading again and again; every one
     * must be answered. */
    tconn t;
    CHECK_EQ(tls_connect(&t, s->port, CA), 0);
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n";
    char all[100 * sizeof req];
    size_t n = 0;
    for (int i = 0; i < 100; i++) {
        memcpy(all + n, req, sizeof req - 1);
        n += sizeof req - 1;
    }
    tls_write(&t, all, n);
    CHECK_EQ(read_oks(&t, 100), 100);
    tls_close(&t);
}

static void test_unknown_ca(srv *s)
{
    int rc;
    char *o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s https://127.0.0.1:%d/healthz", CA2, s->port);
    CHECK_EQ(rc, 60); /* peer certificate cannot be authenticated with given CA certificates */
    CHECK(strstr(o, "\"ok\"") == NULL);
    free(o);
    tconn t;
    CHECK_EQ(tls_connect(&t, s->port, CA2), -1);
    tls_close(&t);
    curl_ok(s->port, "/healthz", "\"ok\"");
}

static void test_reload(srv *s)
{
    tconn old;
    CHECK_EQ(tls_connect(&old, s->port, CA), 0);
    CHECK_EQ(peer_serial(&old), 1001);
    CHECK_EQ(healthz_on(&old), 0);
    /* The renewed certificate in place of the first, then SIGHUP. */
    CHECK_EQ(sh("cd %s && cp renewed.pem server.pem && cp renewed.key server.key", TMP), 0);
    kill(s->pid, SIGHUP);
    wait_log("TLS certificate reloaded", 1);
    tconn t;
    CHECK_EQ(tls_connect(&t, s->port, CA), 0);
    CHECK_EQ(peer_serial(&t), 2002);
    CHECK_EQ(healthz_on(&t), 0);
    tls_close(&t);
    int rc;
    char *o = sh_out(&rc, "openssl s_client -connect 127.0.0.1:%d -CAfile %s </dev/null 2>/dev/null | "
                          "openssl x509 -noout -serial -subject",
                     s->port, CA);
    CHECK(strstr(o, "serial=07D2") && strstr(o, "CN = renewed"));
    free(o);
    curl_ok(s->port, "/healthz", "\"ok\"");
    /* The connection made before goes on with its session. */
    CHECK_EQ(healthz_on(&old), 0);
    CHECK_EQ(peer_serial(&old), 1001);
    tls_close(&old);
    /* A key that is not the certificate's: the reload fails, the renewed
     * certificate stays. */
    CHECK_EQ(sh("cd %s && cp other.key server.key", TMP), 0);
    kill(s->pid, SIGHUP);
    wait_log("the certificate loaded before stays in force", 1);
    CHECK_EQ(tls_connect(&t, s->port, CA), 0);
    CHECK_EQ(peer_serial(&t), 2002);
    CHECK_EQ(healthz_on(&t), 0);
    tls_close(&t);
}

/* The CLI over HTTPS: --server https://..., --cacert or $SPILLWAY_CACERT. */
static void test_cli(srv *s)
{
    cli_out o = cli_run(BIN, "stream create clit --partitions 1 --server https://127.0.0.1:%d --cacert %s", s->port, CA);
    CHECK_EQ(o.rc, 0);
    free(o.text);
    char in[4300];
    snprintf(in, sizeof in, "%s/lines.ndjson", TMP);
    FILE *f = fopen(in, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"n\":1}\n{\"n\":2}\n");
    fclose(f);
    o = cli_run(BIN, "produce clit %s --server https://localhost:%d --cacert=%s", in, s->port, CA);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "2 accepted") != NULL);
    free(o.text);
    setenv("SPILLWAY_CACERT", CA, 1);
    o = cli_run(BIN, "consume clit --max 2 --server https://127.0.0.1:%d", s->port);
    unsetenv("SPILLWAY_CACERT");
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "\"n\":1") && strstr(o.text, "\"n\":2"));
    free(o.text);
    /* Another CA: refused, with the reason. */
    o = cli_run(BIN, "stream list --server https://127.0.0.1:%d --cacert %s", s->port, CA2);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "certificate verify failed") != NULL);
    free(o.text);
    /* Plain HTTP to the TLS listener: fails, nothing sent in clear answered. */
    o = cli_run(BIN, "stream list --server http://127.0.0.1:%d", s->port);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "clit") == NULL);
    free(o.text);
    /* bench over HTTPS: its HTTP load (closed loop, then the open loop
     * of --inflight) speaks TLS, every event accepted. */
    o = cli_run(BIN, "bench --server https://127.0.0.1:%d --cacert %s --stream benchhttps --events 300 --clients 2 "
                     "--batch 50",
                s->port, CA);
    if (o.rc != 0)
        fprintf(stderr, "%s\n", o.text);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "events=300") && strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    free(o.text);
    o = cli_run(BIN, "bench --server https://127.0.0.1:%d --cacert %s --stream benchhttps --rate 1000 "
                     "--duration 0.2 --inflight 4 --clients 2 --batch 10",
                s->port, CA);
    if (o.rc != 0)
        fprintf(stderr, "%s\n", o.text);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "events=200") && strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    free(o.text);
    int rc;
    char *r = sh_out(&rc, "curl -sS --max-time 20 --cacert %s https://127.0.0.1:%d/v1/streams/benchhttps", CA, s->port);
    CHECK_EQ(rc, 0);
    unsigned long long sum = 0;
    for (const char *p = r; (p = strstr(p, "\"end_offset\":")); p += 13)
        sum += strtoull(p + 13, NULL, 10);
    CHECK_EQ(sum, 500);
    free(r);
    /* Another CA: refused at the handshake, with the reason. */
    o = cli_run(BIN, "bench --server https://127.0.0.1:%d --cacert %s --stream benchhttps --events 10", s->port, CA2);
    CHECK(o.rc != 0);
    CHECK(strstr(o.text, "certificate verify failed") != NULL);
    free(o.text);
    /* --cacert with a plain http load: a usage error. */
    o = cli_run(BIN, "bench --server 127.0.0.1:%d --cacert %s --events 10", s->port, CA);
    CHECK_EQ(o.rc, 2);
    free(o.text);
}

/* The client library over TLS: bench --protocol bin --cacert (its
 * metadata check is the synchronous client, its load the producer), the
 * stream created over https. */
static void test_client_lib(srv *s)
{
    cli_out o = cli_run(BIN,
                        "bench --protocol bin --server 127.0.0.1:%d --http https://127.0.0.1:%d --cacert %s "
                        "--stream benchtls --events 300 --clients 2 --batch 50",
                        s->binport, s->port, CA);
    if (o.rc != 0)
        fprintf(stderr, "%s\n", o.text);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "events=300") && strstr(o.text, " errors=0 server_cpu_ns_per_event="));
    free(o.text);
    int rc;
    char *r = sh_out(&rc, "curl -sS --max-time 20 --cacert %s https://127.0.0.1:%d/v1/streams/benchtls", CA, s->port);
    CHECK_EQ(rc, 0);
    free(r);
    /* Another CA: the binary connection is refused at the handshake. */
    o = cli_run(BIN,
                "bench --protocol bin --server 127.0.0.1:%d --http https://127.0.0.1:%d --cacert %s "
                "--stream benchtls --events 10",
                s->binport, s->port, CA2);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "TLS") != NULL);
    free(o.text);
    /* Plain binary protocol to the TLS listener: no answer. */
    o = cli_run(BIN, "bench --protocol bin --server 127.0.0.1:%d --http https://127.0.0.1:%d --stream benchtls "
                     "--events 10",
                s->binport, s->port);
    CHECK(o.rc != 0);
    free(o.text);
}

/* A forward sink from a plain loopback server to the TLS one, with
 * options.tls_ca; a CA file that does not load is refused at PUT. */
static void test_forward(srv *dst)
{
    char d[4300];
    snprintf(d, sizeof d, "%s/fwdsrc", TMP);
    srv a;
    srv_start(&a, BIN, d, NULL);
    put_stream(a.port, "fsrc", "{\"partitions\":1}");
    int rc;
    char *o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s -X PUT -d '{\"partitions\":1}' "
                          "https://127.0.0.1:%d/v1/streams/fdst",
                     CA, dst->port);
    CHECK_EQ(rc, 0);
    free(o);
    char body[9000];
    snprintf(body, sizeof body,
             "{\"stream\":\"fsrc\",\"kind\":\"forward\",\"retry\":{\"initial_ms\":20,\"max_ms\":200},"
             "\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"fdst\",\"timeout_ms\":2000,"
             "\"tls_ca\":\"%s/nothere.pem\"}}",
             dst->binport, TMP);
    resp r = http_json(a.port, "PUT", "/v1/sinks/tofwd", body);
    CHECK_EQ(r.status, 400);
    CHECK(strstr(r.body, "tls_ca") != NULL);
    free(r.body);
    snprintf(body, sizeof body,
             "{\"stream\":\"fsrc\",\"kind\":\"forward\",\"retry\":{\"initial_ms\":20,\"max_ms\":200},"
             "\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"fdst\",\"timeout_ms\":2000,"
             "\"tls_ca\":\"%s\"}}",
             dst->binport, CA);
    CHECK_EQ(req_status(a.port, "PUT", "/v1/sinks/tofwd", body), 201);
    for (int i = 0; i < 5; i++) {
        int st = req_status(a.port, "POST", "/v1/streams/fsrc/events", "{\"fwd\":\"over-tls\"}");
        CHECK(st == 200 || st == 202);
    }
    int seen = 0;
    for (int i = 0; i < 1000 && !seen; i++) {
        o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s "
                        "'https://127.0.0.1:%d/v1/streams/fdst/events?partition=0&offset=4'",
                   CA, dst->port);
        seen = rc == 0 && strstr(o, "over-tls") != NULL;
        free(o);
        if (!seen)
            usleep(20000);
    }
    CHECK(seen);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
}

/* The Kafka listener speaks TLS too: kcat with security.protocol=ssl
 * reads what curl produced (skipped without kcat). */
static void test_kafka(srv *s)
{
    if (system("kcat -V >/dev/null 2>&1") != 0) {
        printf("test_tls: kcat missing: the Kafka listener's TLS is not checked\n");
        return;
    }
    CHECK(s->kafkaport > 0);
    int rc;
    char *o = sh_out(&rc, "timeout 30 kcat -C -b 127.0.0.1:%d -t gps -p 0 -o beginning -c 1 -e "
                          "-X security.protocol=ssl -X ssl.ca.location=%s",
                     s->kafkaport, CA);
    CHECK_EQ(rc, 0);
    CHECK(strstr(o, "tls-1") != NULL);
    free(o);
    /* Without TLS: no metadata. */
    o = sh_out(&rc, "timeout 30 kcat -L -b 127.0.0.1:%d -m 2", s->kafkaport);
    CHECK(rc != 0);
    free(o);
}

static void test_rules(const char *d, const char *tokens)
{
    cli_out o = cli_run(BIN, "serve --data %s --listen 0.0.0.0:0 --listen-bin 127.0.0.1:0 --tls-cert %s --tls-key %s",
                        d, CERT, KEY);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "refusing to listen on 0.0.0.0:0") && strstr(o.text, "no tokens file is configured"));
    free(o.text);
    o = cli_run(BIN, "serve --data %s --tls-cert %s", d, CERT);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "tls-cert and tls-key go together"));
    free(o.text);
    o = cli_run(BIN, "serve --data %s --tls-cert %s/missing.pem --tls-key %s", d, TMP, KEY);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "TLS: tls-cert") && strstr(o.text, "missing.pem"));
    free(o.text);
    o = cli_run(BIN, "serve --data %s --tls-cert %s/renewed.pem --tls-key %s/other.key", d, TMP, TMP);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "does not match"));
    free(o.text);
    /* Tokens and TLS: a non-loopback address is allowed. A key file other
     * users can read is loaded with a WARN. */
    char log[4300], key644[4300];
    snprintf(log, sizeof log, "%s/rules.log", TMP);
    snprintf(key644, sizeof key644, "%s/key644.key", TMP);
    CHECK_EQ(sh("cp %s %s && chmod 644 %s", KEY, key644, key644), 0);
    srv a;
    const char *both[] = {"--listen", "0.0.0.0:0", "--listen-bin", "0.0.0.0:0", "--tokens-file", tokens,
                          "--tls-cert", CERT, "--tls-key", key644, NULL};
    srv_start_log(&a, BIN, d, both, log);
    curl_ok(a.port, "/healthz", "\"ok\"");
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    int rc;
    char *o2 = sh_out(&rc, "grep -c 'WARN tls-key .*key644.key can be read by other users (mode 644)' %s", log);
    CHECK_EQ(atoi(o2), 1);
    free(o2);
    /* 0600: no such line. */
    CHECK_EQ(sh("chmod 600 %s", key644), 0);
    srv_start_log(&a, BIN, d, both, log);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    o2 = sh_out(&rc, "grep -c 'tls-key .* can be read by other users' %s", log);
    CHECK_EQ(atoi(o2), 1);
    free(o2);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    if (system("openssl version >/dev/null 2>&1") != 0 || system("curl --version >/dev/null 2>&1") != 0) {
        printf("test_tls: skipped: needs the openssl and curl commands\n");
        return 77;
    }
    TMP = spw_test_tmpdir("tls");
    make_ca("ca");
    make_ca("ca2");
    make_cert("ca", "first", 1001, "localhost");
    make_cert("ca", "renewed", 2002, "renewed");
    make_cert("ca2", "other", 3003, "localhost");
    CHECK_EQ(sh("cd %s && cp first.pem server.pem && cp first.key server.key", TMP), 0);
    snprintf(CA, sizeof CA, "%s/ca.pem", TMP);
    snprintf(CA2, sizeof CA2, "%s/ca2.pem", TMP);
    snprintf(CERT, sizeof CERT, "%s/server.pem", TMP);
    snprintf(KEY, sizeof KEY, "%s/server.key", TMP);
    snprintf(LOG, sizeof LOG, "%s/server.log", TMP);
    char data[4300], tokens[4300], rules[4300];
    snprintf(data, sizeof data, "%s/data", TMP);
    snprintf(rules, sizeof rules, "%s/rules", TMP);
    snprintf(tokens, sizeof tokens, "%s/tokens.json", TMP);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"tokens\":[{\"token\":\"t-admin-0123456789\",\"tenant\":\"a\",\"streams\":[\"*\"],"
               "\"permissions\":[\"produce\",\"consume\",\"admin\"]}]}");
    fclose(f);

    test_rules(rules, tokens);

    srv s;
    const char *args[] = {"--tls-cert", CERT, "--tls-key", KEY, "--request-timeout", "1s", "--max-pipelined", "2",
                          "--io-threads", "2", "--listen-kafka", "127.0.0.1:0", NULL};
    srv_start_log(&s, BIN, data, args, LOG);
    test_https(&s);
    test_binary(&s);
    test_kafka(&s);
    test_plain_to_tls(&s);
    test_handshake_timeout(&s);
    test_pipelined(&s);
    test_unknown_ca(&s);
    test_cli(&s);
    test_client_lib(&s);
    test_forward(&s);
    test_reload(&s);
    curl_ok(s.port, "/healthz", "\"ok\"");
    /* Counted: the plain request, the plain frame, the two timed out, the
     * two refused by a client that did not know the CA. */
    int rc;
    char *o = sh_out(&rc, "curl -sS --max-time 20 --cacert %s https://127.0.0.1:%d/metrics", CA, s.port);
    CHECK_EQ(rc, 0);
    char *m = strstr(o, "\nspillway_tls_handshake_failures_total ");
    CHECK(m != NULL);
    CHECK(atoll(m + strlen("\nspillway_tls_handshake_failures_total ")) >= 6);
    free(o);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    spw_test_rmrf(TMP);
    free(TMP);
    printf("test_tls: ok\n");
    return 0;
}
