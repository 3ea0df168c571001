/*
 * The forward sink and the client library against a core node with a
 * tokens file, addressed by host name (docs/api.md "forward sink",
 * include/spillway.h):
 *  - an edge node forwards to the core by "localhost:PORT" (getaddrinfo:
 *    the core listens on 127.0.0.1 only, so an IPv6 ::1 the name may
 *    resolve to first is refused and the next address taken) with the
 *    sink's token: every event arrives;
 *  - the same sink without a token is refused by the core (401) and says
 *    so in last_error, and delivers nothing;
 *  - the synchronous client connects by "localhost:PORT", logs in and
 *    reads the core's stream; a producer by name delivers with its token;
 *    a name that does not resolve is SPILLWAY_ERR_INVALID;
 *  - a forward sink whose other node cannot be reached — a name that does
 *    not resolve, a refused port — says so at once (state "retrying",
 *    last_error naming why), not "running" until its delivery timeout
 *    (30 s here; the wait below is bounded by 10 s).
 */
#include "server.h"
#include "spillway.h"

static const char *BIN;
#define CORE_TOKEN "core-token-9f9f9f9f9f9f9f9f"

static uint64_t stream_total(int port, const char *auth, const char *name)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/streams/%s", name);
    resp r = http_ex(port, "GET", path, NULL, auth, NULL, 0);
    CHECK_EQ(r.status, 200);
    uint64_t n = 0;
    for (char *p = r.body; (p = strstr(p, "\"end_offset\":")) != NULL; p++)
        n += strtoull(p + 13, NULL, 10);
    free(r.body);
    return n;
}

static void put_sink(int port, const char *name, int binport, const char *token)
{
    char path[200], body[1024], tok[200] = "";
    if (token)
        snprintf(tok, sizeof tok, ",\"token\":\"%s\"", token);
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    snprintf(body, sizeof body,
             "{\"stream\":\"%s\",\"kind\":\"forward\",\"batch\":{\"max_wait_ms\":20},"
             "\"retry\":{\"initial_ms\":20,\"max_ms\":200},"
             "\"options\":{\"address\":\"localhost:%d\",\"stream\":\"in\",\"timeout_ms\":2000%s}}",
             name, binport, tok);
    CHECK_EQ(req_status(port, "PUT", path, body), 201);
}

static int delivered;
static void on_delivery(void *opaque, const spillway_delivery *d)
{
    (void)opaque;
    if (d->status == 0)
        __atomic_fetch_add(&delivered, 1, __ATOMIC_SEQ_CST);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("fwdauth");
    char tokens[4200], core_data[4200], edge_data[4200];
    snprintf(tokens, sizeof tokens, "%s/tokens.json", tmp);
    snprintf(core_data, sizeof core_data, "%s/core", tmp);
    snprintf(edge_data, sizeof edge_data, "%s/edge", tmp);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"tokens\":[{\"token\":\"" CORE_TOKEN "\",\"tenant\":\"edge\",\"streams\":[\"in\"],"
               "\"permissions\":[\"produce\",\"consume\",\"admin\"]}]}\n");
    CHECK(fclose(f) == 0);
    CHECK(chmod(tokens, 0600) == 0);
    const char *auth = "Authorization: Bearer " CORE_TOKEN "\r\n";

    srv core, edge;
    const char *cargs[] = {"--tokens-file", tokens, NULL};
    srv_start(&core, BIN, core_data, cargs);
    resp r = http_ex(core.port, "PUT", "/v1/streams/in", "application/json", auth, "{\"partitions\":2}", 16);
    CHECK_EQ(r.status, 201);
    free(r.body);
    srv_start(&edge, BIN, edge_data, NULL);
    put_stream(edge.port, "withtok", "{\"partitions\":2}");
    put_stream(edge.port, "notok", "{\"partitions\":1}");
    put_sink(edge.port, "withtok", core.binport, CORE_TOKEN);
    put_sink(edge.port, "notok", core.binport, NULL);
    for (int i = 0; i < 20; i++) {
        char ev[64];
        snprintf(ev, sizeof ev, "{\"i\":%d}", i);
        CHECK(req_status(edge.port, "POST", "/v1/streams/withtok/events?ack=fsync", ev) / 100 == 2);
        CHECK(req_status(edge.port, "POST", "/v1/streams/notok/events?ack=fsync", ev) / 100 == 2);
    }
    uint64_t n = 0;
    for (int i = 0; i < 400 && n < 20; i++) {
        n = stream_total(core.port, auth, "in");
        if (n < 20)
            usleep(50 * 1000);
    }
    CHECK_EQ(n, 20);
    int said = 0;
    for (int i = 0; i < 400 && !said; i++) {
        resp g = http_json(edge.port, "GET", "/v1/sinks/notok", NULL);
        said = strstr(g.body, "\"state\":\"retrying\"") && strstr(g.body, "401");
        if (!said && i == 399)
            fprintf(stderr, "%s\n", g.body);
        free(g.body);
        if (!said)
            usleep(50 * 1000);
    }
    CHECK(said);
    usleep(200 * 1000);
    CHECK_EQ(stream_total(core.port, auth, "in"), 20); /* nothing from the sink without a token */

    /* the client library by name */
    char addr[64];
    snprintf(addr, sizeof addr, "localhost:%d", core.binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);
    CHECK_EQ(spillway_client_auth(c, CORE_TOKEN), 0);
    spillway_metadata *m;
    CHECK_EQ(spillway_client_metadata(c, "in", &m), 0);
    CHECK_EQ(spillway_metadata_count(m), 1);
    spillway_metadata_free(m);
    spillway_client_close(c);
    CHECK_EQ(spillway_client_connect("no-such-host.invalid:7701", 2000, &c), SPILLWAY_ERR_INVALID);
    spillway_producer_config pc;
    spillway_producer_config_init(&pc);
    pc.token = CORE_TOKEN;
    pc.on_delivery = on_delivery;
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, &pc, &p), 0);
    for (int i = 0; i < 10; i++)
        CHECK_EQ(spillway_producer_send(p, "in", "k", 1, "{\"x\":1}", 7, 0, SPILLWAY_ACK_LEVEL_DEFAULT, NULL), 0);
    CHECK_EQ(spillway_producer_flush(p, 10000), 0);
    spillway_producer_close(p, 1000);
    CHECK_EQ(__atomic_load_n(&delivered, __ATOMIC_SEQ_CST), 10);
    CHECK_EQ(stream_total(core.port, auth, "in"), 30);

    /* Unreachable other nodes: said within a second or so. */
    static const char *const unreach[][3] = {{"unres", "no-such-host.invalid:7701", "cannot resolve"},
                                             {"refused", "127.0.0.1:1", "Connection refused"}};
    for (int k = 0; k < 2; k++) {
        char path[200], body[1024];
        put_stream(edge.port, unreach[k][0], "{\"partitions\":1}");
        snprintf(path, sizeof path, "/v1/sinks/%s", unreach[k][0]);
        snprintf(body, sizeof body,
                 "{\"stream\":\"%s\",\"kind\":\"forward\",\"batch\":{\"max_wait_ms\":20},"
                 "\"retry\":{\"initial_ms\":20,\"max_ms\":200},"
                 "\"options\":{\"address\":\"%s\",\"stream\":\"in\",\"timeout_ms\":30000}}",
                 unreach[k][0], unreach[k][1]);
        CHECK_EQ(req_status(edge.port, "PUT", path, body), 201);
        snprintf(path, sizeof path, "/v1/streams/%s/events?ack=fsync", unreach[k][0]);
        CHECK(req_status(edge.port, "POST", path, "{\"i\":1}") / 100 == 2);
    }
    for (int k = 0; k < 2; k++) {
        char path[200];
        snprintf(path, sizeof path, "/v1/sinks/%s", unreach[k][0]);
        int said2 = 0;
        for (int i = 0; i < 200 && !said2; i++) {
            resp g = http_json(edge.port, "GET", path, NULL);
            said2 = strstr(g.body, "\"state\":\"retrying\"") && strstr(g.body, unreach[k][2]);
            if (!said2 && i == 199)
                fprintf(stderr, "%s\n", g.body);
            free(g.body);
            if (!said2)
                usleep(50 * 1000);
        }
        CHECK(said2);
    }

    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_forward_auth: ok\n");
    return 0;
}
