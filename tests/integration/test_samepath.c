/*
 * One request path for both protocols (docs/architecture.md "The service
 * layer"): the same event sent over HTTP and as a binary PRODUCE gets the
 * same answer — the same status and the same code word — because both
 * front ends only decode and encode around src/svc/produce.c. In
 * particular a key taken from a JSON field must be UTF-8 text without
 * control characters over both (docs/api.md "Produce", docs/protocol.md):
 * on a stream keyed by /k, {"k":"a\nb"} is 400 bad_key, and nothing is
 * appended.
 */
#include "binframe.h"
#include "server.h"

/* The code word of an HTTP error answer ("" if none). */
static void http_code(const resp *r, char *out, size_t cap)
{
    out[0] = 0;
    const char *p = r->body ? strstr(r->body, "\"code\":\"") : NULL;
    if (!p)
        return;
    p += 8;
    size_t n = strcspn(p, "\"");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
}

/* One binary PRODUCE of value (no record key) to stream; its status and code. */
static int bin_produce(int fd, const char *stream, const char *val, char *code)
{
    static uint64_t id = 1;
    spw_buf b = SPW_BUF_INIT;
    size_t ca;
    CHECK_OK(spw_produce_req_begin(&b, stream, strlen(stream), SPW_WIRE_ACK_WRITTEN, 1, SPW_PARTITION_ANY, 0, 0,
                                   &ca));
    spw_frame_rec r = {.key_len = -1, .value = (const uint8_t *)val, .value_len = (uint32_t)strlen(val)};
    CHECK_OK(spw_produce_rec_put(&b, &r));
    spw_produce_req_set_count(&b, ca, 1);
    uint64_t my = id++;
    send_frame(fd, SPW_OP_PRODUCE, my, &b);
    spw_buf_fini(&b);
    frame f;
    CHECK(read_frame(fd, &f) == 0);
    CHECK_EQ(f.h.request_id, my);
    code[0] = 0;
    int st = answer_status(&f, code, NULL);
    free(f.body);
    return st;
}

static uint64_t end_sum(int port, const char *stream)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    return part_field(port, path, 0, "end_offset") + part_field(port, path, 1, "end_offset");
}

/* Sends body over both protocols; both must answer want_status (0 = 202
 * over HTTP, OK over binary) with want_code, and append 2 or 0 records. */
static void same(const srv *a, int fd, const char *body, int want_status, const char *want_code)
{
    uint64_t before = end_sum(a->port, "k");
    resp r = http_json(a->port, "POST", "/v1/streams/k/events", body);
    char hc[64], bc[64];
    http_code(&r, hc, sizeof hc);
    int bs = bin_produce(fd, "k", body, bc);
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%s: http %d %s, binary %d %s\n", body, r.status, hc, bs, bc);
    if (want_status == 0) {
        CHECK_EQ(r.status, 202);
        CHECK_EQ(bs, 0);
    } else {
        CHECK_EQ(r.status, want_status);
        CHECK_EQ(bs, want_status);
        CHECK(strcmp(hc, want_code) == 0);
        CHECK(strcmp(bc, want_code) == 0);
    }
    free(r.body);
    CHECK_EQ(end_sum(a->port, "k"), before + (want_status == 0 ? 2 : 0));
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("samepath");
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv a;
    srv_start(&a, argv[1], data, NULL);
    put_stream(a.port, "k", "{\"partitions\":2,\"key\":\"/k\",\"timestamp\":\"/ts\"}");
    int fd = tcp_connect(a.binport);

    /* A key from a JSON field with a control character: refused by both. */
    same(&a, fd, "{\"k\":\"a\\nb\"}", 400, "bad_key");
    same(&a, fd, "{\"k\":\"a\\u0001b\"}", 400, "bad_key");
    same(&a, fd, "{\"k\":\"\\u007f\"}", 0, NULL); /* DEL is not a control character here: as spw__key_text_ok */
    /* The other answers a single event can earn: the same on both. */
    same(&a, fd, "{\"k\":\"a\",\"n\":1}", 0, NULL);
    same(&a, fd, "{\"k\":7}", 0, NULL);
    same(&a, fd, "{\"n\":1}", 400, "missing_key");
    same(&a, fd, "{\"k\":null}", 400, "missing_key");
    same(&a, fd, "{\"k\":[1]}", 400, "bad_key");
    same(&a, fd, "{\"k\":\"a\",\"ts\":\"x\"}", 400, "bad_timestamp");
    same(&a, fd, "{\"k\":\"a\",", 400, "invalid_json");
    same(&a, fd, "[1]", 400, "not_an_object");

    close(fd);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_samepath: ok\n");
    return 0;
}
