/*
 * Positions kept for a stream, across a stream deleted and created again
 * under its name, and retention before a sink can reach its target
 * (docs/architecture.md, "Stream incarnations" and "Sinks and retention"):
 *
 * 1. A consumer group file left from the deleted stream (its removal cut
 *    by a crash: put back here while the server is down) is not applied to
 *    the new stream: the group delivers the new stream's records from
 *    offset 0.
 * 2. A sink's progress file from the deleted stream (the sink could not
 *    deliver after the re-create, so the file was not rewritten) is not
 *    applied after a restart: every record of the new stream is delivered.
 * 3. A postgres sink whose shard is down from the start holds retention at
 *    its position (here: the oldest offset) — at PUT and after a restart —
 *    while a stream without a sink, the same in all else, is cut.
 */
#include <inttypes.h>

#include "server.h"

static const char *BIN;

static void produce(int port, const char *stream, int n, int pad)
{
    char *body = malloc((size_t)n * (64 + (size_t)pad) + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, "{\"n\":%d,\"pad\":\"%*s\"}\n", i, pad, "");
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    resp r = http(port, "POST", path, "application/x-ndjson", body, len);
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(body);
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    char *b = malloc(1 << 16);
    *len = fread(b, 1, 1 << 16, f);
    fclose(f);
    return b;
}

static void write_file(const char *path, const char *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    CHECK_EQ(fwrite(p, 1, len, f), len);
    fclose(f);
}

static void restart(srv *s, const char *const *extra)
{
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    char data[4096];
    snprintf(data, sizeof data, "%s", s->data);
    srv_start(s, BIN, data, extra);
}

static void test_group(void)
{
    char *dir = spw_test_tmpdir("recreate-g");
    srv s;
    srv_start(&s, BIN, dir, NULL);
    put_stream(s.port, "g1", "{\"partitions\":1}");
    produce(s.port, "g1", 10, 0);
    resp r = http(s.port, "POST", "/v1/streams/g1/groups/gg/poll?member=m&max=100", NULL, "", 0);
    CHECK_EQ(r.status, 200);
    char lease[64];
    CHECK(header(&r, "Spillway-Lease", lease, sizeof lease));
    CHECK_EQ(header_u64(&r, "Spillway-Next-Offset"), 10);
    free(r.body);
    char body[256];
    snprintf(body, sizeof body, "{\"lease\":\"%s\",\"offset\":10}", lease);
    r = http_json(s.port, "POST", "/v1/streams/g1/groups/gg/commit", body);
    CHECK_EQ(r.status, 200);
    free(r.body);
    char path[4200];
    snprintf(path, sizeof path, "%s/groups/g1/gg", dir);
    size_t len;
    char *saved = read_file(path, &len);

    CHECK_EQ(req_status(s.port, "DELETE", "/v1/streams/g1", NULL), 204);
    CHECK(access(path, F_OK) != 0);
    /* A crash between the stream's delete and its groups' removal. */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    snprintf(body, sizeof body, "%s/groups/g1", dir);
    mkdir(body, 0755);
    write_file(path, saved, len);
    free(saved);
    srv_start(&s, BIN, dir, NULL);

    put_stream(s.port, "g1", "{\"partitions\":1}");
    r = http_json(s.port, "GET", "/v1/streams/g1?detail=1", NULL);
    CHECK_EQ(r.status, 200);
    free(r.body);
    produce(s.port, "g1", 5, 0);
    r = http(s.port, "POST", "/v1/streams/g1/groups/gg/poll?member=m&max=100", NULL, "", 0);
    CHECK_EQ(r.status, 200); /* the old committed offset 10 would deliver nothing */
    CHECK_EQ(header_u64(&r, "Spillway-First-Offset"), 0);
    CHECK_EQ(header_u64(&r, "Spillway-Next-Offset"), 5);
    free(r.body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
}

static uint64_t end_of(int port, const char *stream)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    return part_field(port, path, 0, "end_offset");
}

static void test_sink(void)
{
    char *edir = spw_test_tmpdir("recreate-edge"), *cdir = spw_test_tmpdir("recreate-core");
    srv edge, core;
    srv_start(&core, BIN, cdir, NULL);
    srv_start(&edge, BIN, edir, NULL);
    put_stream(core.port, "out", "{\"partitions\":1}");
    put_stream(edge.port, "f", "{\"partitions\":1}");
    char body[1024];
    snprintf(body, sizeof body,
             "{\"stream\":\"f\",\"kind\":\"forward\",\"batch\":{\"max_events\":100,\"max_wait_ms\":20},"
             "\"retry\":{\"initial_ms\":20,\"max_ms\":200},"
             "\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"out\",\"timeout_ms\":2000}}",
             core.binport);
    CHECK_EQ(req_status(edge.port, "PUT", "/v1/sinks/fw", body), 201);
    produce(edge.port, "f", 10, 0);
    for (int i = 0; i < 500 && end_of(core.port, "out") < 10; i++)
        usleep(10000);
    CHECK_EQ(end_of(core.port, "out"), 10);

    /* The target down; the stream deleted and made again, 20 new records
     * that cannot be delivered, so the progress file stays as it was. */
    int cbin = core.binport, chttp = core.port;
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    CHECK_EQ(req_status(edge.port, "DELETE", "/v1/streams/f", NULL), 204);
    put_stream(edge.port, "f", "{\"partitions\":1}");
    produce(edge.port, "f", 20, 0);
    restart(&edge, NULL);
    char lb[64], lh[64];
    snprintf(lb, sizeof lb, "127.0.0.1:%d", cbin);
    snprintf(lh, sizeof lh, "127.0.0.1:%d", chttp);
    const char *extra[] = {"--listen-bin", lb, "--listen", lh, NULL};
    srv_start(&core, BIN, cdir, extra);
    CHECK_EQ(core.binport, cbin);
    for (int i = 0; i < 1000 && end_of(core.port, "out") < 30; i++)
        usleep(10000);
    /* 10 + all 20: the old progress (10) would have skipped 10 of them */
    CHECK_EQ(end_of(core.port, "out"), 30);
    int at20 = 0;
    for (int i = 0; i < 500 && !at20; i++) { /* progress moves right after the write */
        resp r = http_json(edge.port, "GET", "/v1/sinks/fw", NULL);
        at20 = strstr(r.body, "\"position\":20,") != NULL;
        free(r.body);
        if (!at20)
            usleep(10000);
    }
    CHECK(at20);
    CHECK_EQ(srv_stop(&edge, SIGTERM), 0);
    CHECK_EQ(srv_stop(&core, SIGTERM), 0);
    spw_test_rmrf(edir);
    spw_test_rmrf(cdir);
    free(edir);
    free(cdir);
}

/* Waits (bounded) until the control stream's start moved: retention ran. */
static void wait_cut(int port, const char *stream)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    for (int i = 0; i < 500 && part_field(port, path, 0, "start_offset") == 0; i++)
        usleep(20000);
    CHECK(part_field(port, path, 0, "start_offset") > 0);
}

static void test_holds(void)
{
    char *dir = spw_test_tmpdir("recreate-hold");
    const char *extra[] = {"--segment-bytes", "4096", "--retention-check", "100ms", NULL};
    srv s;
    srv_start(&s, BIN, dir, extra);
    const char *def = "{\"partitions\":1,\"retention\":{\"bytes\":8192},\"dedupe_window_ms\":0}";
    put_stream(s.port, "held", def);
    put_stream(s.port, "free", def);
    /* port 1 on loopback: nothing listens, the shard is down from the start */
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/pg",
                        "{\"stream\":\"held\",\"kind\":\"postgres\",\"retry\":{\"initial_ms\":50,\"max_ms\":100},"
                        "\"options\":{\"shards\":[\"host=127.0.0.1 port=1 dbname=x\"],\"table\":\"t\","
                        "\"columns\":{\"v\":\"$value\"}}}"),
             201);
    for (int round = 0; round < 3; round++) {
        produce(s.port, "held", 100, 200);
        produce(s.port, "free", 100, 200);
    }
    wait_cut(s.port, "free");
    CHECK_EQ(part_field(s.port, "/v1/streams/held", 0, "start_offset"), 0);
    /* After a restart the sink's holds are taken before retention runs. */
    restart(&s, extra);
    produce(s.port, "free", 100, 200);
    produce(s.port, "held", 100, 200);
    uint64_t free_start = part_field(s.port, "/v1/streams/free", 0, "start_offset");
    for (int i = 0; i < 500 && part_field(s.port, "/v1/streams/free", 0, "start_offset") == free_start; i++)
        usleep(20000);
    CHECK(part_field(s.port, "/v1/streams/free", 0, "start_offset") > free_start);
    CHECK_EQ(part_field(s.port, "/v1/streams/held", 0, "start_offset"), 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    test_group();
    test_sink();
    test_holds();
    printf("test_recreate: ok\n");
    return 0;
}
