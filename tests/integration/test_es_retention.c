/*
 * Retention on a versioned stream (docs/api.md "Event sourcing",
 * "Retention"; docs/architecture.md "Versioned streams and retention"):
 * with 1 KiB segments and retention.bytes 2048, the 40 events of key a
 * are deleted by retention while other keys are appended; then
 *   - the key keeps its version (GET …/keys/a says 40) and its next event
 *     takes 41, expected_version 40 and all: versions go on, never repeat;
 *   - a history read from a deleted version answers 416 versions_deleted
 *     naming the oldest kept (41 once it exists; none while every event of
 *     the key is gone), and a read from 41 gives that event;
 *   - a snapshot taken before the deletion still serves its state;
 *   - after a restart the same (the store, not the log, keeps the version),
 *     and the next event takes 42.
 */
#include "server.h"

static srv S;

static uint64_t start_of(void) { return part_field(S.port, "/v1/streams/r", 0, "start_offset"); }

static resp post(const char *query, const char *body)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/r/events?ack=fsync%s", query);
    return http_json(S.port, "POST", path, body);
}

static void post_ok(const char *query, const char *body, const char *want)
{
    resp r = post(query, body);
    if (r.status != 202 || (want && !strstr(r.body, want)))
        fprintf(stderr, "wanted 202 with %s, got %d %s\n", want ? want : "", r.status, r.body);
    CHECK_EQ(r.status, 202);
    CHECK(!want || strstr(r.body, want) != NULL);
    free(r.body);
}

/* Appends other keys' events (about 100 bytes each) until retention has
 * deleted every offset below `past` (bounded: 3000 rounds of 10 ms). */
static void push_retention(uint64_t past)
{
    char body[256];
    for (int i = 0; i < 3000; i++) {
        if (start_of() >= past)
            return;
        if (i % 50 == 0)
            for (int j = 0; j < 30; j++) {
                snprintf(body, sizeof body, "{\"id\":\"z%d\",\"pad\":\"%080d\"}", j % 7, j);
                post_ok("", body, NULL);
            }
        usleep(10000);
    }
    CHECK(!"retention never deleted the records");
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("esret");
    const char *flags[] = {"--segment-bytes", "1024", "--retention-check", "100ms", NULL};
    srv_start(&S, argv[1], dir, flags);
    put_stream(S.port, "r",
               "{\"versioned\":true,\"key\":\"/id\",\"partitions\":1,\"retention\":{\"bytes\":2048},"
               "\"dedupe_window_ms\":0}");
    char body[256];
    for (int v = 1; v <= 40; v++) {
        char w[64];
        snprintf(body, sizeof body, "{\"id\":\"a\",\"v\":%d,\"pad\":\"%060d\"}", v, v);
        snprintf(w, sizeof w, "{\"key\":\"a\",\"first\":%d,\"count\":1}", v);
        post_ok("", body, w);
    }
    CHECK_EQ(req_status(S.port, "PUT", "/v1/streams/r/keys/a/snapshot", "{\"version\":40,\"state\":{\"n\":40}}"),
             204);
    uint64_t end_a = part_field(S.port, "/v1/streams/r", 0, "end_offset");
    push_retention(end_a);

    /* Every event of a is gone: its version stays. */
    get_want(S.port, "/v1/streams/r/keys/a", 200, "\"version\":40,");
    get_want(S.port, "/v1/streams/r/keys/a/events?from_version=1", 416, "versions_deleted");
    get_want(S.port, "/v1/streams/r/keys/a/events?from_version=40", 416, "every event of this key");
    get_want(S.port, "/v1/streams/r/keys/a/events?from_version=41", 200, NULL);
    get_want(S.port, "/v1/streams/r/keys/a/snapshot", 200, "\"version\":40,\"state\":{\"n\":40}");

    /* Versions go on: 41, whether expected or not; 40 is not "none". */
    resp r = post("&expected_version=none", "{\"id\":\"a\"}");
    CHECK_EQ(r.status, 409);
    CHECK(strstr(r.body, "\"current\":40") != NULL);
    free(r.body);
    post_ok("&expected_version=40", "{\"id\":\"a\",\"v\":41}", "{\"key\":\"a\",\"first\":41,\"count\":1}");
    get_want(S.port, "/v1/streams/r/keys/a/events?from_version=3", 416, "the oldest kept is 41");
    get_want(S.port, "/v1/streams/r/keys/a/events?from_version=41", 200, "\"version\":41,\"key\":\"a\"");

    /* After a restart: the store keeps the versions the log lost. */
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    srv_start(&S, argv[1], dir, flags);
    get_want(S.port, "/v1/streams/r/keys/a", 200, "\"version\":41,");
    get_want(S.port, "/v1/streams/r/keys/a/events?from_version=1", 416, "the oldest kept is 41");
    post_ok("&expected_version=41", "{\"id\":\"a\",\"v\":42}", "{\"key\":\"a\",\"first\":42,\"count\":1}");
    get_want(S.port, "/v1/streams/r/keys/a/events?from_version=41", 200, "\"version\":42,\"key\":\"a\"");

    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_es_retention: ok");
    return 0;
}
