/*
 * Timed waits against a wall clock step (docs/architecture.md, "Timed
 * waits"). The server is spillway_test started with
 * SPW_TEST_WALL_OFFSET_S=3600: its wall clock reads an hour ahead of the
 * kernel's, which is what a wait timed on CLOCK_REALTIME meets when the
 * clock is stepped back an hour while it waits — it would last an hour
 * more. Every timed wait of the server is on the monotonic clock, so:
 *   - records appended at ack=written become durable by the fsync timer
 *     (no reader or later append wakes the flusher: only its timed wait);
 *   - a long-poll on an empty group answers 204 once its wait_ms passed
 *     (only the group waiter's timed tick ends it).
 * Each bound below is the test's own (seconds for a 1 s timer and a
 * 500 ms wait), not a measure of speed.
 */
#include "server.h"

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    const char *tbin = argv[2];
    char tmpl[] = "/tmp/spw-clockstep-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    setenv("SPW_TEST_WALL_OFFSET_S", "3600", 1);
    srv s;
    const char *extra[] = {"--fsync-interval", "200ms", NULL};
    srv_start(&s, tbin, data, extra);
    unsetenv("SPW_TEST_WALL_OFFSET_S");
    put_stream(s.port, "s", "{\"partitions\":1}");

    /* A flush by the timer alone. */
    const char *body = "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n";
    resp r = http(s.port, "POST", "/v1/streams/s/events?ack=written", "application/x-ndjson", body, strlen(body));
    CHECK_EQ(r.status, 202);
    free(r.body);
    CHECK_EQ(wait_part_field(s.port, "/v1/streams/s", 0, "end_offset", 3), 3);
    uint64_t durable = wait_part_field(s.port, "/v1/streams/s", 0, "durable_offset", 3);
    if (durable != 3)
        fprintf(stderr, "durable_offset %" PRIu64 " after 10 s: the flusher's timed wait did not end\n", durable);
    CHECK_EQ(durable, 3);

    /* A long-poll that nothing but its timeout ends, on a fresh group at
     * the end of the stream. The client's own bound is 30 s (tcp_connect). */
    r = http(s.port, "POST", "/v1/streams/s/groups/g/poll?member=m&start=latest&wait_ms=500", NULL, "", 0);
    CHECK_EQ(r.status, 204);
    free(r.body);
    /* And again, for a wait begun after the first tick. */
    r = http(s.port, "POST", "/v1/streams/s/groups/g/poll?member=m&wait_ms=300", NULL, "", 0);
    CHECK_EQ(r.status, 204);
    free(r.body);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
    printf("ok\n");
    return 0;
}
