/*
 * IPv6 (docs/operations.md "Listen addresses"): the server listens on
 * [::1] (HTTP and binary protocol); the CLI reaches it with --server
 * [::1]:PORT and http://[::1]:PORT, the client library with "[::1]:PORT";
 * an IPv4-mapped loopback listener ([::ffff:127.0.0.1]) takes IPv4
 * clients and counts as loopback; [::] and a mapped non-loopback address
 * are refused without --insecure (the loopback rule), and an IPv6 literal
 * without brackets is refused. Skipped (77) on a machine without an IPv6
 * loopback. The dual-stack [::] listener itself is shown by
 * tests/unit/test_netaddr.c (this test listens on loopback only).
 * A Kafka listener on [::1] advertises ::1 (its Metadata's broker host,
 * without brackets), so a Kafka client that bootstrapped there produces
 * through it. A view's forward target may be "[::1]:PORT": its final
 * buckets reach a node that listens on [::1].
 */
#include "spillway.h"
#include "server.h"

static int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

static int connect6(int port)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port),
                              .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    return fd;
}

/* GET /healthz over fd: the status. */
static int healthz(int fd)
{
    const char req[] = "GET /healthz HTTP/1.1\r\nHost: [::1]\r\nConnection: close\r\n\r\n";
    send_all(fd, req, sizeof req - 1);
    char buf[4096];
    size_t have = 0;
    resp r = {0};
    CHECK(read_resp(fd, &r, buf, sizeof buf, &have) == 0);
    free(r.body);
    close(fd);
    return r.status;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    const char *bin = argv[1];
    if (!have_ipv6_loopback()) {
        puts("test_ipv6: skipped: no IPv6 loopback on this machine");
        return 77;
    }
    char *dir = spw_test_tmpdir("ipv6");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);

    /* [::1]: HTTP and binary over IPv6 only */
    srv s;
    const char *v6[] = {"--listen", "[::1]:0", "--listen-bin", "[::1]:0", NULL};
    srv_start(&s, bin, data, v6);
    CHECK_EQ(healthz(connect6(s.port)), 200);
    { /* not on IPv4 */
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)s.port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0);
        close(fd);
    }
    cli_out o = cli_run(bin, "stream create six --partitions 2 --server [::1]:%d", s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "created stream six") != NULL);
    free(o.text);
    o = cli_run(bin, "stream show six --server http://[::1]:%d", s.port);
    CHECK_EQ(o.rc, 0);
    free(o.text);
    o = cli_run(bin, "stream list --server ::1:%d", s.port); /* unbracketed: usage */
    CHECK_EQ(o.rc, 2);
    free(o.text);
    /* the client library over the binary protocol */
    char addr[64];
    snprintf(addr, sizeof addr, "[::1]:%d", s.binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 10000, &c), 0);
    spillway_metadata *m;
    CHECK_EQ(spillway_client_metadata(c, "six", &m), 0);
    CHECK_EQ(spillway_metadata_count(m), 1);
    spillway_metadata_free(m);
    spillway_client_close(c);
    snprintf(addr, sizeof addr, "::1:%d", s.binport);
    CHECK(spillway_client_connect(addr, 1000, &c) == SPILLWAY_ERR_INVALID);
    /* produce and consume through the CLI over IPv6 */
    char file[4200];
    snprintf(file, sizeof file, "%s/in.ndjson", dir);
    FILE *f = fopen(file, "w");
    CHECK(f != NULL);
    fputs("{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n", f);
    fclose(f);
    o = cli_run(bin, "produce six %s --server [::1]:%d", file, s.port);
    CHECK_EQ(o.rc, 0);
    free(o.text);
    o = cli_run(bin, "consume six --server [::1]:%d", s.port);
    CHECK_EQ(o.rc, 0);
    CHECK(strstr(o.text, "\"n\":1") && strstr(o.text, "\"n\":2") && strstr(o.text, "\"n\":3"));
    free(o.text);
    int gone = s.port;
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    o = cli_run(bin, "stream list --server [::1]:%d", gone); /* named as written */
    CHECK_EQ(o.rc, 1);
    char want[64];
    snprintf(want, sizeof want, "cannot reach the server at [::1]:%d", gone);
    CHECK(strstr(o.text, want) != NULL);
    free(o.text);

    /* the Kafka listener on [::1]: Metadata names ::1 and the port, and a
     * client goes on there (a produce lands in the stream) */
    const char *k6[] = {"--listen", "[::1]:0", "--listen-bin", "off", "--listen-kafka", "[::1]:0", NULL};
    srv_start(&s, bin, data, k6);
    CHECK(s.kafkaport > 0);
    o = cli_run("timeout", "30 kcat -b '[::1]:%d' -L", s.kafkaport);
    snprintf(want, sizeof want, "broker 0 at ::1:%d", s.kafkaport);
    if (!strstr(o.text, want))
        fprintf(stderr, "wanted %s in %s\n", want, o.text);
    CHECK(strstr(o.text, want) != NULL);
    free(o.text);
    char msgs[4300];
    snprintf(msgs, sizeof msgs, "%s/kafka-msgs", dir);
    FILE *mf = fopen(msgs, "w");
    CHECK(mf != NULL);
    fputs("k|{\"kn\":7}\n", mf);
    fclose(mf);
    o = cli_run("timeout", "30 kcat -b '[::1]:%d' -P -t six -K'|' -l %s", s.kafkaport, msgs);
    CHECK_EQ(o.rc, 0);
    free(o.text);
    int found = 0;
    for (int i = 0; i < 500 && !found; i++) {
        o = cli_run(bin, "consume six --server [::1]:%d", s.port);
        found = o.rc == 0 && strstr(o.text, "\"kn\":7") != NULL;
        free(o.text);
        if (!found)
            usleep(10000);
    }
    CHECK(found);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* a view forwarding to a node on [::1] */
    {
        char cdata[4200], edata[4200];
        snprintf(cdata, sizeof cdata, "%s/core", dir);
        snprintf(edata, sizeof edata, "%s/edge", dir);
        srv core, edge;
        const char *c6[] = {"--listen", "[::1]:0", "--listen-bin", "off", NULL};
        srv_start(&core, bin, cdata, c6);
        o = cli_run(bin, "stream create partials --partitions 1 --server [::1]:%d", core.port);
        CHECK_EQ(o.rc, 0);
        free(o.text);
        srv_start(&edge, bin, edata, NULL);
        put_stream(edge.port, "clicks", "{\"partitions\":1,\"key\":\"/page\",\"timestamp\":\"/ts\"}");
        char def[512];
        snprintf(def, sizeof def,
                 "{\"stream\":\"clicks\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"10s\"],"
                 "\"forward\":{\"address\":\"[::1]:%d\",\"stream\":\"partials\"}}",
                 core.port);
        resp r = http_json(edge.port, "PUT", "/v1/views/agg", def);
        if (r.status != 201)
            fprintf(stderr, "PUT view: %d %s\n", r.status, r.body);
        CHECK_EQ(r.status, 201);
        free(r.body);
        r = http_json(edge.port, "GET", "/v1/views/agg", NULL);
        snprintf(want, sizeof want, "\"address\":\"[::1]:%d\"", core.port);
        CHECK(strstr(r.body, want) != NULL); /* written back as given */
        free(r.body);
        const char *ev = "{\"page\":\"p0\",\"n\":5,\"ts\":1700000000000}\n"
                         "{\"page\":\"closer\",\"n\":1,\"ts\":1700001000000}\n";
        r = http(edge.port, "POST", "/v1/streams/clicks/events", "application/x-ndjson", ev, strlen(ev));
        CHECK_EQ(r.status, 202);
        free(r.body);
        int got = 0;
        for (int i = 0; i < 500 && !got; i++) {
            o = cli_run(bin, "consume partials --server [::1]:%d", core.port);
            got = o.rc == 0 && strstr(o.text, "p0") != NULL;
            if (!got && i == 499)
                fprintf(stderr, "core partials: %s\n", o.text);
            free(o.text);
            if (!got)
                usleep(20000);
        }
        CHECK(got); /* the bucket of p0 was forwarded over IPv6 */
        CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
        CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    }

    /* an IPv4-mapped loopback listener: loopback, takes IPv4 clients */
    const char *mapped[] = {"--listen", "[::ffff:127.0.0.1]:0", "--listen-bin", "off", NULL};
    srv_start(&s, bin, data, mapped);
    CHECK_EQ(healthz(tcp_connect(s.port)), 200);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    /* the loopback rule: refused before anything listens */
    const char *refused[] = {"[::]:0", "[::ffff:10.1.2.3]:0", "[2001:db8::1]:0"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        o = cli_run(bin, "serve --data %s --listen-bin off --listen '%s'", data, refused[i]);
        CHECK_EQ(o.rc, 1);
        CHECK(strstr(o.text, "not a loopback address") != NULL);
        free(o.text);
    }
    /* an IPv6 literal without brackets */
    o = cli_run(bin, "serve --data %s --listen-bin off --listen ::1:0", data);
    CHECK_EQ(o.rc, 1);
    CHECK(strstr(o.text, "listen ::1:0 is not HOST:PORT or [IPV6]:PORT") != NULL);
    free(o.text);

    spw_test_rmrf(dir);
    free(dir);
    puts("test_ipv6: ok");
    return 0;
}
