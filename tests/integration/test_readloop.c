/*
 * A read that waits for the disk does not hold up its I/O loop
 * (docs/architecture.md, "Threads of spillway serve"): spillway_test with
 * one HTTP loop (--io-threads 1) and SPW_TEST_READ_GATE, so that segment
 * reads wait while the gate file exists. A GET of events is started and
 * its read is stuck at the gate; meanwhile a produce at ack=fsync on
 * another connection of the same (only) loop is answered 202, and so is
 * GET /v1/streams/s. Then the gate opens and the read is answered with
 * its records; then the same for a consumer group's poll, whose lease is
 * read at the gate, and a poll that creates its group, whose first save
 * waits at a gate on the fsyncs of small files (SPW_TEST_SYNC_GATE), and
 * a sink's PUT and DELETE, whose definition files and directories are
 * fsynced at that gate, a view's PUT, whose store opens at a gate
 * (SPW_TEST_VIEW_OPEN_GATE), and its DELETE (at the sync gate), and a keyed request's retry after a restart,
 * whose stored request is read back from the log (at the read gate) to
 * compare it.
 * Were the read or the save done on the loop, nothing else would be
 * answered while it waits (the test's client gives up after 30 s: a guard
 * against the hang, not a measure of speed).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/stat.h>

#include "server.h"

typedef struct bg {
    int port;
    const char *method, *path, *body; /* bg_json's request */
    resp r;
    _Atomic int done;
} bg;

static void *bg_read(void *arg)
{
    bg *b = arg;
    b->r = http(b->port, "GET", "/v1/streams/s/events?partition=0&offset=0&limit=100", NULL, NULL, 0);
    atomic_store(&b->done, 1);
    return NULL;
}

static void *bg_poll(void *arg)
{
    bg *b = arg;
    b->r = http(b->port, "POST", "/v1/streams/s/groups/g/poll?member=m&max=100", NULL, "", 0);
    atomic_store(&b->done, 1);
    return NULL;
}

static void wait_stuck(const char *waiting);

/* A JSON request of b's method and path (body: NULL for none). */
static void *bg_json(void *arg)
{
    bg *b = arg;
    b->r = http_json(b->port, b->method, b->path, b->body);
    atomic_store(&b->done, 1);
    return NULL;
}

/* A request held at a gate — a sink's PUT or DELETE writing and fsyncing
 * its files, a view's store opening — while the loop answers a produce. */
static void held_at_gate(int port, const char *sgate, const char *swaiting, const char *method, const char *path,
                         const char *body, int want)
{
    unlink(swaiting);
    FILE *f = fopen(sgate, "w");
    CHECK(f != NULL);
    fclose(f);
    bg b = {.port = port, .method = method, .path = path, .body = body};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, bg_json, &b) == 0);
    wait_stuck(swaiting);
    const char *ev = "{\"n\":1}\n";
    resp r = http(port, "POST", "/v1/streams/s/events?ack=fsync", "application/x-ndjson", ev, strlen(ev));
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(atomic_load(&b.done), 0);
    CHECK(unlink(sgate) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(b.r.status, want);
    free(b.r.body);
}

static void *bg_keyed_retry(void *arg)
{
    bg *b = arg;
    b->r = http_ex(b->port, "POST", "/v1/streams/s/events", "application/json", "Idempotency-Key: k-1\r\n",
                   "{\"n\":9}", 7);
    atomic_store(&b->done, 1);
    return NULL;
}

static void *bg_poll_new(void *arg)
{
    bg *b = arg;
    b->r = http(b->port, "POST", "/v1/streams/s/groups/fresh/poll?member=m&max=100", NULL, "", 0);
    atomic_store(&b->done, 1);
    return NULL;
}

/* Waits (bounded) until a segment read is stuck at the gate. */
static void wait_stuck(const char *waiting)
{
    struct stat st;
    int stuck = 0;
    for (int i = 0; i < 2000 && !stuck; i++) {
        stuck = stat(waiting, &st) == 0;
        if (!stuck)
            usleep(10000);
    }
    CHECK(stuck);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    const char *tbin = argv[2];
    char tmpl[] = "/tmp/spw-readloop-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    char data[4200], gate[4200], waiting[4300], sgate[4200], swaiting[4300], vgate[4200], vwaiting[4300];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(gate, sizeof gate, "%s/gate", dir);
    snprintf(waiting, sizeof waiting, "%s.waiting", gate);
    snprintf(sgate, sizeof sgate, "%s/sgate", dir);
    snprintf(swaiting, sizeof swaiting, "%s.waiting", sgate);
    snprintf(vgate, sizeof vgate, "%s/vgate", dir);
    snprintf(vwaiting, sizeof vwaiting, "%s.waiting", vgate);
    setenv("SPW_TEST_READ_GATE", gate, 1);
    setenv("SPW_TEST_SYNC_GATE", sgate, 1);
    setenv("SPW_TEST_VIEW_OPEN_GATE", vgate, 1);
    srv s;
    const char *extra[] = {"--io-threads", "1", NULL};
    srv_start(&s, tbin, data, extra);
    unsetenv("SPW_TEST_READ_GATE");
    unsetenv("SPW_TEST_SYNC_GATE");
    unsetenv("SPW_TEST_VIEW_OPEN_GATE");
    put_stream(s.port, "s", "{\"partitions\":1}");
    const char *body = "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n";
    resp r = http(s.port, "POST", "/v1/streams/s/events?ack=fsync", "application/x-ndjson", body, strlen(body));
    CHECK_EQ(r.status, 202);
    free(r.body);

    /* Close the gate, start the read, wait (bounded) until it is stuck. */
    FILE *f = fopen(gate, "w");
    CHECK(f != NULL);
    fclose(f);
    bg b = {.port = s.port};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, bg_read, &b) == 0);
    wait_stuck(waiting);

    /* The loop goes on: a produce acknowledged at fsync, a stream's state. */
    r = http(s.port, "POST", "/v1/streams/s/events?ack=fsync", "application/x-ndjson", body, strlen(body));
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(part_field(s.port, "/v1/streams/s", 0, "end_offset"), 6);
    CHECK_EQ(atomic_load(&b.done), 0); /* still waiting at the gate */

    /* Open the gate: the read is answered. */
    CHECK(unlink(gate) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(b.r.status, 200);
    CHECK(strstr(b.r.body, "\"offset\":0,") != NULL);
    CHECK(strstr(b.r.body, "\"offset\":5,") != NULL);
    free(b.r.body);

    /* The same for a consumer group's poll: its lease is read at the gate
     * while the loop answers a produce. */
    CHECK(unlink(waiting) == 0);
    f = fopen(gate, "w");
    CHECK(f != NULL);
    fclose(f);
    bg pb = {.port = s.port};
    CHECK(pthread_create(&th, NULL, bg_poll, &pb) == 0);
    wait_stuck(waiting);
    r = http(s.port, "POST", "/v1/streams/s/events?ack=fsync", "application/x-ndjson", body, strlen(body));
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(atomic_load(&pb.done), 0);
    CHECK(unlink(gate) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(pb.r.status, 200);
    CHECK(strstr(pb.r.body, "\"offset\":0,") != NULL);
    free(pb.r.body);

    /* A poll that creates its group: the group's first save (a file and
     * its fsyncs) is held at the sync gate while the loop answers. */
    f = fopen(sgate, "w");
    CHECK(f != NULL);
    fclose(f);
    bg nb = {.port = s.port};
    CHECK(pthread_create(&th, NULL, bg_poll_new, &nb) == 0);
    wait_stuck(swaiting);
    r = http(s.port, "POST", "/v1/streams/s/events?ack=fsync", "application/x-ndjson", body, strlen(body));
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(atomic_load(&nb.done), 0);
    CHECK(unlink(sgate) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(nb.r.status, 200);
    CHECK(strstr(nb.r.body, "\"offset\":0,") != NULL);
    free(nb.r.body);

    /* A sink's PUT and DELETE (the definition's file, its directory and
     * their fsyncs) held at the sync gate while the loop answers. */
    held_at_gate(s.port, sgate, swaiting, "PUT", "/v1/sinks/fw",
                 "{\"stream\":\"s\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:9\",\"stream\":\"s\"}}",
                 201);
    held_at_gate(s.port, sgate, swaiting, "DELETE", "/v1/sinks/fw", NULL, 204);

    /* A view's PUT, its store's open held at the view gate, and its
     * DELETE (its definition's removal fsynced at the sync gate). */
    held_at_gate(s.port, vgate, vwaiting, "PUT", "/v1/views/vs", "{\"stream\":\"s\",\"kind\":\"sum\",\"field\":\"/n\"}",
                 201);
    held_at_gate(s.port, sgate, swaiting, "DELETE", "/v1/views/vs", NULL, 204);

    /* A keyed request's retry after a restart: the table rebuilt from the
     * log knows the key but not the stored request's fingerprint, which
     * is read back from the log — at the gate — while the loop answers. */
    r = http_ex(s.port, "POST", "/v1/streams/s/events", "application/json", "Idempotency-Key: k-1\r\n",
                "{\"n\":9}", 7);
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    setenv("SPW_TEST_READ_GATE", gate, 1);
    srv_start(&s, tbin, data, extra);
    unsetenv("SPW_TEST_READ_GATE");
    unlink(waiting);
    f = fopen(gate, "w");
    CHECK(f != NULL);
    fclose(f);
    bg kb = {.port = s.port};
    CHECK(pthread_create(&th, NULL, bg_keyed_retry, &kb) == 0);
    wait_stuck(waiting);
    r = http(s.port, "POST", "/v1/streams/s/events?ack=fsync", "application/x-ndjson", body, strlen(body));
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(atomic_load(&kb.done), 0);
    CHECK(unlink(gate) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(kb.r.status, 202);
    CHECK(strstr(kb.r.body, "\"duplicate\":true") != NULL);
    free(kb.r.body);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("ok\n");
    return 0;
}
