/*
 * One request path for both protocols (docs/architecture.md "The service
 * layer"): the same event sent over HTTP and as a binary PRODUCE gets the
 * same answer — the same status and the same code word — because both
 * front ends only decode and encode around src/svc/produce.c. In
 * particular a key taken from a JSON field must be UTF-8 text without
 * control characters over both (docs/api.md "Produce", docs/protocol.md):
 * on a stream keyed by /k, {"k":"a\nb"} is 400 bad_key, and nothing is
 * appended.
 *
 * The checks before a request (the stream name, the token's permission,
 * the stream's existence) are one service step (spw_svc_stream_for), so a
 * bad name, a missing permission and an unknown stream get the same
 * status and code word over HTTP and binary for produce, for reading
 * (HTTP read, FETCH) and for a group poll.
 */
#include <sys/stat.h>

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

/* The sentence of the last binary error answer. */
static char last_msg[600];

/* One binary PRODUCE of value (no record key) to stream; its status and code. */
static int bin_produce(int fd, const char *stream, const char *val, char *code)
{
    static uint64_t id = 1;
    spw_buf b = SPW_BUF_INIT;
    size_t ca;
    CHECK_OK(spw_produce_req_begin(&b, stream, strlen(stream), SPW_ACK_WRITTEN, 1, SPW_PARTITION_ANY, 0, 0,
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
    spw_frame_error e;
    uint16_t s16;
    const uint8_t *rest;
    size_t rl;
    const char *why;
    last_msg[0] = 0;
    if (st && spw_answer_decode(f.body, f.len, &s16, &rest, &rl, &e, &why) == 0)
        snprintf(last_msg, sizeof last_msg, "%.*s", (int)e.msg_len, e.msg);
    free(f.body);
    return st;
}

static uint64_t end_sum(int port, const char *stream)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    return part_field(port, path, 0, "end_offset") + part_field(port, path, 1, "end_offset");
}

/* spillway_rejected_total{reason="invalid"}: produce requests refused as
 * invalid, HTTP and binary together (docs/operations.md). */
static long long rejected_invalid(int port)
{
    resp r = http_json(port, "GET", "/metrics", NULL);
    CHECK_EQ(r.status, 200);
    const char *line = "spillway_rejected_total{reason=\"invalid\"} ";
    const char *p = r.body ? strstr(r.body, line) : NULL;
    CHECK(p != NULL);
    long long v = atoll(p + strlen(line));
    free(r.body);
    return v;
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

/* ---- the checks before a request, over both protocols ---- */

#define TOK_ADMIN "adm-0a0a0a0a0a0a0a0a0a0a0a"
#define TOK_PROD "prd-1b1b1b1b1b1b1b1b1b1b1b"
#define TOK_CONS "con-2c2c2c2c2c2c2c2c2c2c2c"
#define TOK_NONE "non-3d3d3d3d3d3d3d3d3d3d3d"

/* The sentence of an HTTP error answer ("error", unescaped; "" if none). */
static void http_msg(const resp *r, char *out, size_t cap)
{
    size_t n = 0;
    const char *p = r->body ? strstr(r->body, "{\"error\":\"") : NULL;
    if (p)
        for (p += 10; *p && *p != '"' && n + 1 < cap; p++)
            out[n++] = *p == '\\' && p[1] ? *++p : *p;
    out[n] = 0;
}

/* The last binary error answer's sentence (bin_call). */

/* One binary request/answer on fd: the answer's status and code. */
static int bin_call(int fd, uint8_t op, const spw_buf *b, char *code)
{
    static uint64_t id = 1000;
    uint64_t my = id++;
    send_frame(fd, op, my, b);
    frame f;
    CHECK(read_frame(fd, &f) == 0);
    CHECK_EQ(f.h.request_id, my);
    code[0] = 0;
    int st = answer_status(&f, code, NULL);
    last_msg[0] = 0;
    uint16_t s16;
    const uint8_t *rest;
    size_t rl;
    spw_frame_error e;
    const char *why;
    if (st && spw_answer_decode(f.body, f.len, &s16, &rest, &rl, &e, &why) == 0)
        snprintf(last_msg, sizeof last_msg, "%.*s", (int)e.msg_len, e.msg);
    free(f.body);
    return st;
}

/* A binary connection authenticated with tok. */
static int bin_login(int port, const char *tok)
{
    int fd = tcp_connect(port);
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_auth_req_encode(&b, tok, strlen(tok)));
    char code[64];
    CHECK_EQ(bin_call(fd, SPW_OP_AUTH, &b, code), 0);
    spw_buf_fini(&b);
    return fd;
}

enum { OP_PRODUCE, OP_READ, OP_POLL, NOPS };
static const char *const OPNAME[NOPS] = {"produce", "read", "group poll"};

/* op on stream over HTTP with token tok (NULL: none): status, code word
 * and sentence. */
static const char *group_name = "g1"; /* the group a poll names */

static int http_op(int port, const char *tok, int op, const char *stream, char *code, size_t cap, char *msg,
                   size_t mcap)
{
    char path[512], auth[128];
    auth[0] = 0;
    if (tok)
        snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", tok);
    resp r;
    if (op == OP_PRODUCE) {
        snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
        r = http_ex(port, "POST", path, "application/json", auth, "{\"n\":1}", 7);
    } else if (op == OP_READ) {
        snprintf(path, sizeof path, "/v1/streams/%s/events?partition=0&offset=0", stream);
        r = http_ex(port, "GET", path, NULL, auth, NULL, 0);
    } else {
        snprintf(path, sizeof path, "/v1/streams/%s/groups/%s/poll?wait_ms=0", stream, group_name);
        r = http_ex(port, "POST", path, NULL, auth, "", 0);
    }
    http_code(&r, code, cap);
    http_msg(&r, msg, mcap);
    int st = r.status;
    free(r.body);
    return st;
}

/* op on stream over the binary connection fd: status and code word. */
static int bin_op(int fd, int op, const char *stream, char *code)
{
    if (op == OP_PRODUCE)
        return bin_produce(fd, stream, "{\"n\":1}", code);
    spw_buf b = SPW_BUF_INIT;
    uint8_t opcode;
    if (op == OP_READ) {
        spw_fetch_req q = {.stream = stream, .stream_len = (uint16_t)strlen(stream), .partition = 0, .offset = 0,
                           .max_bytes = 4096, .mode = SPW_FETCH_RECORDS};
        CHECK_OK(spw_fetch_req_encode(&b, &q));
        opcode = SPW_OP_FETCH;
    } else {
        spw_gpoll_req q = {.stream = stream, .stream_len = (uint16_t)strlen(stream), .group = group_name,
                           .group_len = (uint16_t)strlen(group_name),
                           .start = SPW_GPOLL_EARLIEST, .max = 1};
        CHECK_OK(spw_gpoll_req_encode(&b, &q));
        opcode = SPW_OP_GROUP_POLL;
    }
    int st = bin_call(fd, opcode, &b, code);
    spw_buf_fini(&b);
    return st;
}

/* op on stream with token tok over both protocols: both answer want_status
 * with want_code and the same sentence. */
static void same_check(const srv *s, int fd, const char *tok, int op, const char *stream, int want_status,
                       const char *want_code)
{
    char hc[64], bc[64], hm[600];
    int hs = http_op(s->port, tok, op, stream, hc, sizeof hc, hm, sizeof hm);
    int bs = bin_op(fd, op, stream, bc);
    if (getenv("SPW_TEST_VERBOSE") || hs != want_status || bs != want_status || strcmp(hc, want_code) ||
        strcmp(bc, want_code) || strcmp(hm, last_msg))
        fprintf(stderr, "%s %s: http %d %s '%s', binary %d %s '%s' (want %d %s)\n", OPNAME[op], stream, hs, hc, hm,
                bs, bc, last_msg, want_status, want_code);
    CHECK_EQ(hs, want_status);
    CHECK_EQ(bs, want_status);
    CHECK(strcmp(hc, want_code) == 0);
    CHECK(strcmp(bc, want_code) == 0);
    if (tok) /* who the caller is, is each protocol's own: its sentence too */
        CHECK(hm[0] && strcmp(hm, last_msg) == 0);
}

static void test_checks(const char *argv1, const char *tmp)
{
    char data[4096 + 16], tokens[4096 + 16];
    snprintf(data, sizeof data, "%s/data2", tmp);
    snprintf(tokens, sizeof tokens, "%s/tokens.json", tmp);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fprintf(f,
            "{\"tokens\":["
            "{\"token\":\"" TOK_ADMIN "\",\"tenant\":\"ops\",\"streams\":[\"*\"],"
            "\"permissions\":[\"produce\",\"consume\",\"admin\"]},"
            "{\"token\":\"" TOK_PROD "\",\"tenant\":\"p\",\"streams\":[\"s\"],\"permissions\":[\"produce\"]},"
            "{\"token\":\"" TOK_CONS "\",\"tenant\":\"c\",\"streams\":[\"s\"],\"permissions\":[\"consume\"]},"
            "{\"token\":\"" TOK_NONE "\",\"tenant\":\"n\",\"streams\":[\"other\"],"
            "\"permissions\":[\"produce\",\"consume\"]}]}\n");
    CHECK(fclose(f) == 0);
    CHECK(chmod(tokens, 0600) == 0);
    const char *extra[] = {"--tokens-file", tokens, NULL};
    srv s;
    srv_start(&s, argv1, data, extra);
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", TOK_ADMIN);
    const char *def = "{\"partitions\":1}";
    resp r = http_ex(s.port, "PUT", "/v1/streams/s", "application/json", auth, def, strlen(def));
    CHECK(r.status == 201 || r.status == 200);
    free(r.body);

    int fa = bin_login(s.binport, TOK_ADMIN), fp = bin_login(s.binport, TOK_PROD);
    int fc = bin_login(s.binport, TOK_CONS), fn = bin_login(s.binport, TOK_NONE);
    int f0 = tcp_connect(s.binport); /* never authenticated */
    for (int op = 0; op < NOPS; op++) {
        /* No token: 401 before anything else, even a bad name. */
        same_check(&s, f0, NULL, op, "s", 401, "unauthorized");
        same_check(&s, f0, NULL, op, ".hidden", 401, "unauthorized");
        /* A name the rule refuses: before anything else. */
        same_check(&s, fa, TOK_ADMIN, op, ".hidden", 400, "bad_name");
        same_check(&s, fn, TOK_NONE, op, ".hidden", 400, "bad_name");
        /* A stream no one created. */
        same_check(&s, fa, TOK_ADMIN, op, "nosuch", 404, "no_such_stream");
        /* A stream the token may not name: forbidden, whether or not it exists. */
        same_check(&s, fn, TOK_NONE, op, "s", 403, "forbidden");
        same_check(&s, fn, TOK_NONE, op, "nosuch", 403, "forbidden");
        /* The permission the request needs is missing. */
        same_check(&s, op == OP_PRODUCE ? fc : fp, op == OP_PRODUCE ? TOK_CONS : TOK_PROD, op, "s", 403,
                   "forbidden");
    }
    /* A group name the rule refuses: the same answer, after the stream's name. */
    group_name = ".g";
    same_check(&s, fa, TOK_ADMIN, OP_POLL, "s", 400, "bad_name");
    same_check(&s, fa, TOK_ADMIN, OP_POLL, ".hidden", 400, "bad_name");
    group_name = "g1";
    close(fa);
    close(fp);
    close(fc);
    close(fn);
    close(f0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
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

    /* A produce to a name the rule refuses: 400 bad_name over both, and
     * counted as an invalid produce over both. */
    for (int proto = 0; proto < 2; proto++) {
        long long before = rejected_invalid(a.port);
        char code[64];
        int st;
        if (proto == 0) {
            resp r = http_json(a.port, "POST", "/v1/streams/.hidden/events", "{\"k\":\"a\"}");
            http_code(&r, code, sizeof code);
            st = r.status;
            free(r.body);
        } else {
            st = bin_produce(fd, ".hidden", "{\"k\":\"a\"}", code);
        }
        CHECK_EQ(st, 400);
        CHECK(strcmp(code, "bad_name") == 0);
        CHECK_EQ(rejected_invalid(a.port), before + 1);
    }

    close(fd);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);

    test_checks(argv[1], tmp);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_samepath: ok\n");
    return 0;
}
