/*
 * A stream deleted while requests still use it, and created again under
 * its name at once (docs/architecture.md, "Stream incarnations": a deleted
 * stream's partitions and version store are retired before its directory
 * moves, and never use that path again).
 *
 * The flusher is held at a gate on segment writes (SPW_TEST_WRITE_GATE)
 * while it writes a produce A of stream s; a produce B of s is appended
 * behind it, one that does not fit in the segment (a roll). Then s is
 * deleted and created again, and the gate opens: A is acknowledged into
 * the deleted stream, B is answered 404 no_such_stream (its roll would
 * have made a segment file in the new stream's directory, where the new
 * stream's own roll then met it: a failed partition, writes refused).
 * Every produce of the new stream is acknowledged, and every record is
 * read back, before and after a restart, none of the old stream's among
 * them.
 *
 * The same for a versioned stream (its version store is in the stream's
 * directory): the new stream's store opens while the old one is still
 * held, and its keys start at version 1. And for a stream with a view
 * (whose store is the view's own, checked against the incarnation): the
 * view ends up counting the new stream's events only.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "server.h"

typedef struct bg {
    int port;
    char path[256];
    char *body;
    resp r;
    _Atomic int done;
} bg;

static void *bg_post(void *arg)
{
    bg *b = arg;
    b->r = http(b->port, "POST", b->path, "application/x-ndjson", b->body, strlen(b->body));
    atomic_store(&b->done, 1);
    return NULL;
}

/* n events {"n":first+i,"pad":"..."} of about 230 bytes each. */
static char *events(int first, int n)
{
    char *body = malloc((size_t)n * 300 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, "{\"n\":%d,\"pad\":\"%200s\"}\n", first + i, "");
    return body;
}

static void wait_file(const char *path)
{
    struct stat st;
    int there = 0;
    for (int i = 0; i < 2000 && !there; i++) {
        there = stat(path, &st) == 0;
        if (!there)
            usleep(10000);
    }
    CHECK(there);
}

static long long pending_bytes(int port)
{
    resp r = http(port, "GET", "/metrics", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    long long v = metric_in(r.body, "spillway_pending_bytes");
    free(r.body);
    return v;
}

/* Every record of partition 0 of stream s: n values first..first+count-1,
 * in order, and nothing else. */
static void read_all(int port, const char *s, int first, int count)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events?partition=0&offset=0&limit=1000", s);
    resp r = http(port, "GET", path, NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    const char *p = r.body;
    for (int i = 0; i < count; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "\"offset\":%d,", i);
        const char *o = strstr(p, needle);
        CHECK(o != NULL);
        snprintf(needle, sizeof needle, "\"n\":%d,", first + i);
        const char *q = strstr(o, needle);
        CHECK(q != NULL);
        const char *next = strstr(o + 1, "\"offset\":");
        CHECK(!next || q < next); /* the record at offset i is n = first + i */
        p = q;
    }
    char needle[64];
    snprintf(needle, sizeof needle, "\"offset\":%d,", count);
    CHECK(strstr(r.body, needle) == NULL);
    free(r.body);
}

static void produce_ok(int port, const char *path, int first, int n)
{
    char *body = events(first, n);
    resp r = http(port, "POST", path, "application/x-ndjson", body, strlen(body));
    if (r.status != 202)
        fprintf(stderr, "produce %s: %d %s\n", path, r.status, r.body ? r.body : "");
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(body);
}

static void logs_partitions(srv *s, const char *tbin, const char *data, const char *gate, const char *log)
{
    const char *extra[] = {"--segment-bytes", "1024", NULL};
    setenv("SPW_TEST_WRITE_GATE", gate, 1);
    srv_start_log(s, tbin, data, extra, log);
    unsetenv("SPW_TEST_WRITE_GATE");
    put_stream(s->port, "s", "{\"partitions\":1}");

    /* Close the gate; A is held in its write, B appended behind it. */
    FILE *f = fopen(gate, "w");
    CHECK(f != NULL);
    fclose(f);
    char waiting[4300];
    snprintf(waiting, sizeof waiting, "%s.waiting", gate);
    bg a = {.port = s->port, .body = events(0, 3)}, b = {.port = s->port, .body = events(100, 3)};
    snprintf(a.path, sizeof a.path, "/v1/streams/s/events?ack=fsync");
    snprintf(b.path, sizeof b.path, "/v1/streams/s/events?ack=fsync");
    pthread_t ta, tb;
    CHECK(pthread_create(&ta, NULL, bg_post, &a) == 0);
    wait_file(waiting);
    long long held = pending_bytes(s->port);
    CHECK(held > 0);
    CHECK(pthread_create(&tb, NULL, bg_post, &b) == 0);
    long long now = held;
    for (int i = 0; i < 1000 && now <= held; i++) {
        now = pending_bytes(s->port);
        if (now <= held)
            usleep(10000);
    }
    CHECK(now > held); /* B is appended, waiting behind A */

    /* Delete and create again while both are in flight. */
    resp r = http(s->port, "DELETE", "/v1/streams/s", NULL, NULL, 0);
    CHECK(r.status == 200 || r.status == 204);
    free(r.body);
    put_stream(s->port, "s", "{\"partitions\":1}");
    CHECK_EQ(atomic_load(&a.done), 0);
    CHECK_EQ(atomic_load(&b.done), 0);

    /* Open the gate. */
    CHECK(unlink(gate) == 0);
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    CHECK_EQ(a.r.status, 202); /* written before the delete's retire: into the deleted stream */
    CHECK_EQ(b.r.status, 404);
    CHECK(strstr(b.r.body, "no_such_stream") != NULL);
    free(a.r.body);
    free(b.r.body);
    free(a.body);
    free(b.body);

    /* The new stream: every produce acknowledged (each rolls a segment),
     * every record read back, before and after a restart. */
    for (int i = 0; i < 10; i++)
        produce_ok(s->port, "/v1/streams/s/events?ack=fsync", 1000 + 3 * i, 3);
    read_all(s->port, "s", 1000, 30);
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    srv_start_log(s, tbin, data, extra, log);
    read_all(s->port, "s", 1000, 30);
    produce_ok(s->port, "/v1/streams/s/events?ack=fsync", 1030, 3);
    read_all(s->port, "s", 1000, 33);
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
}

static char *post_json(int port, const char *path, const char *body, int want)
{
    resp r = http(port, "POST", path, "application/json", body, strlen(body));
    if (r.status != want)
        fprintf(stderr, "POST %s %s: %d %s\n", path, body, r.status, r.body ? r.body : "");
    CHECK_EQ(r.status, want);
    return r.body;
}

static void want_version(int port, const char *stream, uint64_t version)
{
    char path[256], body[64], needle[64];
    snprintf(path, sizeof path, "/v1/streams/%s/events?ack=fsync", stream);
    snprintf(body, sizeof body, "{\"id\":\"a\",\"n\":%llu}", (unsigned long long)version);
    char *b = post_json(port, path, body, 202);
    snprintf(needle, sizeof needle, "\"first\":%llu,", (unsigned long long)version);
    if (!strstr(b, needle))
        fprintf(stderr, "wanted %s in %s\n", needle, b);
    CHECK(strstr(b, needle) != NULL);
    free(b);
}

/* Every record of the versioned stream v: key a at versions 1..count, in
 * order, with n = its version. */
static void read_versions(int port, int count)
{
    resp r = http(port, "GET", "/v1/streams/v/events?partition=0&offset=0&limit=1000", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    const char *p = r.body;
    for (int i = 1; i <= count; i++) {
        char needle[64];
        snprintf(needle, sizeof needle, "\"version\":%d,", i);
        const char *q = strstr(p, needle);
        if (!q)
            fprintf(stderr, "wanted %s after %s\n", needle, p);
        CHECK(q != NULL);
        snprintf(needle, sizeof needle, "\"n\":%d", i);
        CHECK(strstr(q, needle) != NULL);
        p = q + 1;
    }
    char needle[64];
    snprintf(needle, sizeof needle, "\"version\":%d,", count + 1);
    CHECK(strstr(r.body, needle) == NULL);
    free(r.body);
}

/* A versioned stream in use (its version store open and written, a
 * produce held at the gate) deleted and created again; the new stream's
 * store is opened and written while the old one is still held. Then the
 * held produce ends, the old stream closes: the new stream's key versions
 * go on from its own, before and after a restart. */
static void versioned(srv *s, const char *tbin, const char *data, const char *gate, const char *log)
{
    const char *def = "{\"versioned\":true,\"key\":\"/id\",\"partitions\":1}";
    setenv("SPW_TEST_WRITE_GATE", gate, 1);
    srv_start_log(s, tbin, data, NULL, log);
    unsetenv("SPW_TEST_WRITE_GATE");
    put_stream(s->port, "v", def);
    for (uint64_t v = 1; v <= 5; v++)
        want_version(s->port, "v", v);

    FILE *f = fopen(gate, "w");
    CHECK(f != NULL);
    fclose(f);
    char waiting[4300];
    snprintf(waiting, sizeof waiting, "%s.waiting", gate);
    unlink(waiting);
    bg a = {.port = s->port, .body = strdup("{\"id\":\"a\",\"n\":6}\n")};
    snprintf(a.path, sizeof a.path, "/v1/streams/v/events?ack=fsync");
    pthread_t ta;
    CHECK(pthread_create(&ta, NULL, bg_post, &a) == 0);
    wait_file(waiting);

    resp r = http(s->port, "DELETE", "/v1/streams/v", NULL, NULL, 0);
    CHECK(r.status == 200 || r.status == 204);
    free(r.body);
    put_stream(s->port, "v", def);
    /* The new stream's store opens now (an append at ack=none is answered
     * once appended: the flusher is still at the gate). */
    char *b = post_json(s->port, "/v1/streams/v/events?ack=none", "{\"id\":\"a\",\"n\":1}", 202);
    CHECK(strstr(b, "\"first\":1,") != NULL);
    free(b);
    CHECK_EQ(atomic_load(&a.done), 0);

    CHECK(unlink(gate) == 0);
    pthread_join(ta, NULL);
    CHECK_EQ(a.r.status, 202); /* written before the delete: into the deleted stream */
    CHECK(strstr(a.r.body, "\"first\":6,") != NULL);
    free(a.r.body);
    free(a.body);

    for (uint64_t v = 2; v <= 4; v++)
        want_version(s->port, "v", v);
    read_versions(s->port, 4);
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    srv_start_log(s, tbin, data, NULL, log);
    read_versions(s->port, 4);
    want_version(s->port, "v", 5);
    read_versions(s->port, 5);
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
}

/* Polls (bounded) the view wv's key p until it counts count events
 * summing sum. */
static void want_view(int port, int count, int sum)
{
    char want[96];
    snprintf(want, sizeof want, "\"count\":%d,\"sum\":%d", count, sum);
    int ok = 0;
    for (int i = 0; i < 1000 && !ok; i++) {
        resp r = http(port, "GET", "/v1/views/wv/keys/p", NULL, NULL, 0);
        ok = r.status == 200 && strstr(r.body, want) != NULL;
        if (!ok && i == 999)
            fprintf(stderr, "view: %d %s (want %s)\n", r.status, r.body, want);
        free(r.body);
        if (!ok)
            usleep(10000);
    }
    CHECK(ok);
}

/* events of key p with n = v, about 230 bytes each */
static char *keyed(int v, int n)
{
    char *body = malloc((size_t)n * 300 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, "{\"page\":\"p\",\"n\":%d,\"pad\":\"%200s\"}\n", v, "");
    return body;
}

static void produce_keyed(int port, int v, int n)
{
    char *body = keyed(v, n);
    resp r = http(port, "POST", "/v1/streams/w/events?ack=fsync", "application/x-ndjson", body, strlen(body));
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(body);
}

/* A stream with a view, its segments small and the fd cache holding one
 * (the view reads sealed segments by reopening them), deleted and
 * created again while a produce holds it: the view ends up counting the
 * new stream's events only, before and after a restart. */
static void with_view(srv *s, const char *tbin, const char *data, const char *gate, const char *log)
{
    const char *extra[] = {"--segment-bytes", "1024", "--fd-cache-segments", "1", NULL};
    setenv("SPW_TEST_WRITE_GATE", gate, 1);
    srv_start_log(s, tbin, data, extra, log);
    unsetenv("SPW_TEST_WRITE_GATE");
    put_stream(s->port, "w", "{\"partitions\":1,\"key\":\"/page\"}");
    CHECK_EQ(req_status(s->port, "PUT", "/v1/views/wv",
                        "{\"stream\":\"w\",\"kind\":\"aggregate\",\"field\":\"/n\",\"windows\":[\"1m\"]}"),
             201);
    for (int i = 0; i < 5; i++)
        produce_keyed(s->port, 1, 3);
    want_view(s->port, 15, 15);

    FILE *f = fopen(gate, "w");
    CHECK(f != NULL);
    fclose(f);
    char waiting[4300];
    snprintf(waiting, sizeof waiting, "%s.waiting", gate);
    unlink(waiting);
    bg a = {.port = s->port, .body = keyed(1, 3)};
    snprintf(a.path, sizeof a.path, "/v1/streams/w/events?ack=fsync");
    pthread_t ta;
    CHECK(pthread_create(&ta, NULL, bg_post, &a) == 0);
    wait_file(waiting);
    resp r = http(s->port, "DELETE", "/v1/streams/w", NULL, NULL, 0);
    CHECK(r.status == 200 || r.status == 204);
    free(r.body);
    put_stream(s->port, "w", "{\"partitions\":1,\"key\":\"/page\"}");
    CHECK(unlink(gate) == 0);
    pthread_join(ta, NULL);
    CHECK_EQ(a.r.status, 202); /* into the deleted stream */
    free(a.r.body);
    free(a.body);

    for (int i = 0; i < 4; i++)
        produce_keyed(s->port, 2, 3);
    want_view(s->port, 12, 24);
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    srv_start_log(s, tbin, data, extra, log);
    want_view(s->port, 12, 24);
    produce_keyed(s->port, 2, 3);
    want_view(s->port, 15, 30);
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    const char *tbin = argv[2];
    char tmpl[] = "/tmp/spw-recreate2-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    char data[4200], gate[4200], log[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(gate, sizeof gate, "%s/gate", dir);
    snprintf(log, sizeof log, "%s/server.log", dir);
    srv s;
    logs_partitions(&s, tbin, data, gate, log);
    versioned(&s, tbin, data, gate, log);
    with_view(&s, tbin, data, gate, log);

    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
