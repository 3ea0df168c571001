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
 * directory) and for a stream with a view: after the delete and the
 * create, the new stream's keys start at version 1, and the view counts
 * the new stream's events only.
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

    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    return 0;
}
