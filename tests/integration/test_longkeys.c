/*
 * Keys longer than the server keeps are refused, never cut (docs/api.md
 * "Headers", docs/protocol.md): an Idempotency-Key or Spillway-Key header
 * over 255 bytes is 400 header_too_long and appends nothing (cut, two long
 * keys with a common prefix would be one request); one of exactly 255
 * bytes is served. The binary protocol carries a record key with its
 * length: a 1,000-byte key is stored whole. An Authorization longer than
 * the server keeps is no token (401), never a token cut out of it.
 */
#include <sys/stat.h>

#include "binframe.h"
#include "server.h"

static const char *BIN;
static const char *BODY = "{\"n\":1}\n";

static resp post_hdr(int port, const char *stream, const char *hname, const char *val, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    size_t cap = strlen(hname) + strlen(val) + 8;
    char *hdr = malloc(cap);
    snprintf(hdr, cap, "%s: %s\r\n", hname, val);
    const char *ctype = strcmp(stream, "b") == 0 ? "application/octet-stream" : "application/x-ndjson";
    resp r = http_ex(port, "POST", path, ctype, hdr, body, strlen(body));
    free(hdr);
    return r;
}

static uint64_t end0(int port, const char *stream)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    return part_field(port, path, 0, "end_offset");
}

/* n bytes of 'k' then the suffix. */
static char *long_key(size_t n, const char *suffix)
{
    char *k = malloc(n + strlen(suffix) + 1);
    memset(k, 'k', n);
    strcpy(k + n, suffix);
    return k;
}

static void test_idempotency_key(int port)
{
    /* 255 bytes: remembered as it is. */
    char *k255 = long_key(255, "");
    resp r = post_hdr(port, "s", "Idempotency-Key", k255, BODY);
    CHECK_EQ(r.status, 202);
    free(r.body);
    r = post_hdr(port, "s", "Idempotency-Key", k255, BODY);
    CHECK_EQ(r.status, 202);
    CHECK(strstr(r.body, "\"duplicate\":true") != NULL);
    free(r.body);
    CHECK_EQ(end0(port, "s"), 1);
    /* Two keys of 300 bytes sharing their first 299 (and the 255-byte key's
     * prefix): each refused, with the header named; nothing appended. */
    const char *suffixes[] = {"A", "B"};
    for (int i = 0; i < 2; i++) {
        char *k = long_key(299, suffixes[i]);
        r = post_hdr(port, "s", "Idempotency-Key", k, BODY);
        CHECK_EQ(r.status, 400);
        CHECK(strstr(r.body, "\"code\":\"header_too_long\"") != NULL);
        CHECK(strstr(r.body, "Idempotency-Key") != NULL);
        CHECK(strstr(r.body, "255") != NULL);
        free(r.body);
        free(k);
    }
    CHECK_EQ(end0(port, "s"), 1);
    /* The connection is kept: the refusal is the request's, not the
     * protocol's. */
    CHECK(strstr(r.headers, "Connection: close") == NULL);
    free(k255);
}

static void test_spillway_key(int port)
{
    char *k255 = long_key(255, "");
    resp r = post_hdr(port, "b", "Spillway-Key", k255, "raw");
    CHECK_EQ(r.status, 202);
    free(r.body);
    char *k = long_key(255, "Z");
    r = post_hdr(port, "b", "Spillway-Key", k, "raw");
    CHECK_EQ(r.status, 400);
    CHECK(strstr(r.body, "\"code\":\"header_too_long\"") != NULL);
    CHECK(strstr(r.body, "Spillway-Key") != NULL);
    free(r.body);
    CHECK_EQ(end0(port, "b"), 1);
    /* The stored key is the 255 bytes sent. */
    r = http_json(port, "GET", "/v1/streams/b/events?partition=0&offset=0", NULL);
    CHECK_EQ(r.status, 200);
    char want[300];
    snprintf(want, sizeof want, "\"key\":\"%s\"", k255);
    CHECK(strstr(r.body, want) != NULL);
    free(r.body);
    free(k);
    free(k255);
}

/* The binary protocol: a record's key has its own u32 length; a long one
 * is stored whole (reads give it back byte for byte). */
static void test_binary_key(srv *a)
{
    char *k = long_key(1000, "END");
    spw_buf b = SPW_BUF_INIT;
    size_t st, ca;
    CHECK_OK(spw_frame_begin(&b, SPW_OP_PRODUCE, 0, 1, &st));
    CHECK_OK(spw_produce_req_begin(&b, "b", 1, SPW_ACK_FSYNC, SPW_WIRE_PRIORITY_DEFAULT, 0, 0, 0, &ca));
    spw_frame_rec rec = {.attrs = SPW_REC_HAS_KEY,
                         .key = (const uint8_t *)k,
                         .key_len = (int32_t)strlen(k),
                         .value = (const uint8_t *)"v",
                         .value_len = 1};
    CHECK_OK(spw_produce_rec_put(&b, &rec));
    spw_produce_req_set_count(&b, ca, 1);
    spw_frame_finish(&b, st);
    int fd = tcp_connect(a->binport);
    send_all(fd, b.p, b.len);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    CHECK_EQ(answer_status(&f, NULL, NULL), 0);
    free(f.body);
    close(fd);
    CHECK_EQ(end0(a->port, "b"), 2);
    resp r = http_json(a->port, "GET", "/v1/streams/b/events?partition=0&offset=1", NULL);
    CHECK_EQ(r.status, 200);
    size_t wl = strlen(k) + 16;
    char *want = malloc(wl);
    snprintf(want, wl, "\"key\":\"%s\"", k);
    CHECK(strstr(r.body, want) != NULL);
    free(want);
    free(r.body);
    free(k);
}

/* With tokens: an Authorization whose value is a valid token followed by
 * more blanks than the server keeps is no token (401): cut, then trimmed,
 * it would be the token. One that fits is accepted. */
static void test_authorization(const char *tmp)
{
    char tokens[4200], data[4200];
    snprintf(tokens, sizeof tokens, "%s/tokens.json", tmp);
    snprintf(data, sizeof data, "%s/authdata", tmp);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fputs("{\"tokens\":[{\"token\":\"tok-a1a1a1a1a1a1a1a1a1a1\",\"tenant\":\"t\",\"streams\":[\"*\"],"
          "\"permissions\":[\"produce\",\"consume\",\"admin\"]}]}\n",
          f);
    CHECK(fclose(f) == 0);
    CHECK(chmod(tokens, 0600) == 0);
    const char *args[] = {"--tokens-file", tokens, NULL};
    srv a;
    srv_start(&a, BIN, data, args);
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "Authorization: Bearer tok-a1a1a1a1a1a1a1a1a1a1\r\n");
    resp r = http_ex(a.port, "GET", "/v1/status", NULL, hdr, NULL, 0);
    CHECK_EQ(r.status, 200);
    free(r.body);
    int n = snprintf(hdr, sizeof hdr, "Authorization: Bearer tok-a1a1a1a1a1a1a1a1a1a1");
    memset(hdr + n, ' ', 600);
    strcpy(hdr + n + 600, "\r\n");
    r = http_ex(a.port, "GET", "/v1/status", NULL, hdr, NULL, 0);
    CHECK_EQ(r.status, 401);
    CHECK(strstr(r.body, "\"code\":\"unauthorized\"") != NULL);
    free(r.body);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("longkeys");
    char data[4096 + 16];
    snprintf(data, sizeof data, "%s/data", tmp);
    srv a;
    srv_start(&a, argv[1], data, NULL);
    put_stream(a.port, "s", "{\"partitions\":1}");
    put_stream(a.port, "b", "{\"partitions\":1,\"format\":\"bytes\"}");
    test_idempotency_key(a.port);
    test_spillway_key(a.port);
    test_binary_key(&a);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    test_authorization(tmp);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_longkeys: ok\n");
    return 0;
}
