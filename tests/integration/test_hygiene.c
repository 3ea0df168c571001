/*
 * Idempotency's limits against a real server (docs/api.md "Idempotency"):
 *   - a stream whose retention.ms is shorter than its dedupe_window_ms is
 *     refused (400 bad_config, the two fields named), nothing created;
 *     equal is accepted;
 *   - with the dedupe table full of keys inside their windows
 *     (--dedupe-max-keys), a keyed produce with a new key is refused with
 *     503 dedupe_full and Retry-After, nothing appended, counted in
 *     spillway_dedupe_refused_total; every remembered key is still
 *     answered as a duplicate; unkeyed produce goes on. The binary
 *     protocol refuses a new producer sequence the same way;
 *   - a stream create never adopts, overwrites or deletes a directory it
 *     did not make (one left with a bad stream.json and data in it).
 */
#include <sys/stat.h>

#include "binframe.h"
#include "server.h"

static const char *BIN;

static uint64_t metric(int port, const char *name)
{
    resp r = http_json(port, "GET", "/metrics", NULL);
    CHECK_EQ(r.status, 200);
    char line[256];
    snprintf(line, sizeof line, "\n%s ", name);
    const char *p = strstr(r.body, line);
    CHECK(p != NULL);
    uint64_t v = strtoull(p + strlen(line), NULL, 10);
    free(r.body);
    return v;
}

static resp post_key(int port, const char *key)
{
    char hdr[300];
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s\r\n", key);
    const char *body = "{\"n\":1}";
    return http_ex(port, "POST", "/v1/streams/s/events", "application/json", key[0] ? hdr : NULL, body,
                   strlen(body));
}

static void test_retention(int port)
{
    resp r = http_json(port, "PUT", "/v1/streams/short", "{\"retention\":{\"ms\":3600000}}");
    CHECK_EQ(r.status, 400);
    CHECK(strstr(r.body, "\"code\":\"bad_config\"") != NULL);
    CHECK(strstr(r.body, "retention.ms") != NULL && strstr(r.body, "dedupe_window_ms") != NULL);
    free(r.body);
    r = http_json(port, "PUT", "/v1/streams/short", "{\"retention\":{\"ms\":3600000},\"dedupe_window_ms\":7200000}");
    CHECK_EQ(r.status, 400);
    free(r.body);
    CHECK_EQ(req_status(port, "GET", "/v1/streams/short", NULL), 404);
    /* At least the window, or no dedupe: accepted. */
    CHECK_EQ(req_status(port, "PUT", "/v1/streams/short", "{\"retention\":{\"ms\":3600000},\"dedupe_window_ms\":3600000}"),
             201);
    CHECK_EQ(req_status(port, "PUT", "/v1/streams/nodd", "{\"retention\":{\"ms\":1000},\"dedupe_window_ms\":0}"), 201);
}

static int bin_produce(int binport, uint64_t pid, uint32_t seq, char *code)
{
    spw_buf b = SPW_BUF_INIT;
    size_t st, ca;
    CHECK_OK(spw_frame_begin(&b, SPW_OP_PRODUCE, 0, 1, &st));
    CHECK_OK(spw_produce_req_begin(&b, "s", 1, SPW_ACK_DEFAULT, SPW_WIRE_PRIORITY_DEFAULT, 0, pid, seq, &ca));
    spw_frame_rec rec = {.attrs = 0, .key_len = -1, .value = (const uint8_t *)"{\"n\":2}", .value_len = 7};
    CHECK_OK(spw_produce_rec_put(&b, &rec));
    spw_produce_req_set_count(&b, ca, 1);
    spw_frame_finish(&b, st);
    int fd = tcp_connect(binport);
    send_all(fd, b.p, b.len);
    spw_buf_fini(&b);
    frame f;
    CHECK_EQ(read_frame(fd, &f), 0);
    int s = answer_status(&f, code, NULL);
    free(f.body);
    close(fd);
    return s;
}

static void test_dedupe_full(srv *a)
{
    enum { MAX = 1024 };
    char key[64];
    for (int i = 0; i < MAX; i++) {
        snprintf(key, sizeof key, "k-%d", i);
        resp r = post_key(a->port, key);
        CHECK_EQ(r.status, 202);
        free(r.body);
    }
    uint64_t end = part_field(a->port, "/v1/streams/s", 0, "end_offset");
    CHECK_EQ(end, MAX);
    CHECK_EQ(metric(a->port, "spillway_dedupe_keys"), MAX);
    /* A new key: refused, nothing appended, counted. */
    resp r = post_key(a->port, "one-more");
    CHECK_EQ(r.status, 503);
    CHECK(strstr(r.body, "\"code\":\"dedupe_full\"") != NULL);
    char ra[32];
    CHECK(header(&r, "Retry-After", ra, sizeof ra));
    CHECK(atoi(ra) >= 1);
    free(r.body);
    CHECK_EQ(part_field(a->port, "/v1/streams/s", 0, "end_offset"), MAX);
    CHECK_EQ(metric(a->port, "spillway_dedupe_refused_total"), 1);
    CHECK_EQ(metric(a->port, "spillway_dedupe_evicted_total"), 0);
    /* The oldest key is still remembered: its retry is a duplicate. */
    r = post_key(a->port, "k-0");
    CHECK_EQ(r.status, 202);
    CHECK(strstr(r.body, "\"duplicate\":true") != NULL);
    free(r.body);
    /* The binary protocol: a new producer sequence is refused too. */
    char code[64] = "";
    CHECK_EQ(bin_produce(a->binport, 42, 0, code), 503);
    CHECK(strcmp(code, "dedupe_full") == 0);
    CHECK_EQ(metric(a->port, "spillway_dedupe_refused_total"), 2);
    /* Requests without a key are not affected. */
    r = post_key(a->port, "");
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(part_field(a->port, "/v1/streams/s", 0, "end_offset"), MAX + 1);
}

static void put_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    CHECK(fputs(text, f) >= 0);
    CHECK(fclose(f) == 0);
}

static int file_is(const char *path, const char *text)
{
    char buf[256] = "";
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return strcmp(buf, text) == 0;
}

/* A stream directory the catalog did not load (its stream.json bad, data
 * in it): a create of that name is refused (409 directory_exists) and
 * touches nothing. One a crashed create left (only stream.json.tmp) is
 * used. */
static void test_foreign_dir(srv *a, const char *data)
{
    CHECK_EQ(srv_stop(a, SIGTERM), 0);
    char d[4300], p[4400];
    snprintf(d, sizeof d, "%s/streams/orphan", data);
    CHECK(mkdir(d, 0755) == 0);
    snprintf(p, sizeof p, "%s/stream.json", d);
    put_file(p, "{bad");
    snprintf(p, sizeof p, "%s/0", d);
    CHECK(mkdir(p, 0755) == 0);
    snprintf(p, sizeof p, "%s/0/00000000000000000000.log", d);
    put_file(p, "precious");
    snprintf(d, sizeof d, "%s/streams/cut", data);
    CHECK(mkdir(d, 0755) == 0);
    snprintf(p, sizeof p, "%s/stream.json.tmp", d);
    put_file(p, "{\"partitions\":");
    srv_start(a, BIN, data, NULL);

    resp r = http_json(a->port, "PUT", "/v1/streams/orphan", "{\"partitions\":1}");
    CHECK_EQ(r.status, 409);
    CHECK(strstr(r.body, "\"code\":\"directory_exists\"") != NULL);
    free(r.body);
    snprintf(p, sizeof p, "%s/streams/orphan/stream.json", data);
    CHECK(file_is(p, "{bad"));
    snprintf(p, sizeof p, "%s/streams/orphan/0/00000000000000000000.log", data);
    CHECK(file_is(p, "precious"));
    CHECK_EQ(req_status(a->port, "GET", "/v1/streams/orphan", NULL), 404);

    CHECK_EQ(req_status(a->port, "PUT", "/v1/streams/cut", "{\"partitions\":1}"), 201);
    CHECK_EQ(req_status(a->port, "POST", "/v1/streams/cut/events", "{\"x\":1}"), 202);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("hygiene");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", tmp);
    const char *args[] = {"--dedupe-max-keys", "1024", NULL};
    srv a;
    srv_start(&a, BIN, data, args);
    test_retention(a.port);
    put_stream(a.port, "s", "{\"partitions\":1}");
    test_dedupe_full(&a);
    test_foreign_dir(&a, data);
    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_hygiene: ok\n");
    return 0;
}
