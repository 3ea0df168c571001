/*
 * Sinks that stop, and a server that stops (docs/operations.md
 * "Stopping"), against `spillway serve`:
 *  - deleting a sink stops and frees everything it started: a kafka sink
 *    whose brokers cannot be reached, created (its producer's threads
 *    started by a write) and deleted three times, leaves the server with
 *    as many threads (/proc/PID/task) as before the first;
 *  - SIGINT with a kafka sink in the middle of a write to brokers that
 *    cannot be reached (timeout_ms 600 s) stops the server (exit 0) and
 *    the log says what the stop waits for, step by step;
 *  - a second SIGTERM during a stop that would take minutes (every fsync
 *    delayed 10 s by the test build's fault hook) ends the process at
 *    once (exit 1) after writing every accepted record: after a restart
 *    every acknowledged event is there.
 */
#include <dirent.h>

#include "server.h"

static const char *BIN, *BIN_TEST;

static int threads_of(pid_t pid)
{
    char p[64];
    snprintf(p, sizeof p, "/proc/%d/task", (int)pid);
    DIR *d = opendir(p);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

static int log_has(const char *path, const char *s)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char line[8192];
    int found = 0;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, s) != NULL;
    fclose(f);
    return found;
}

/* Waits (bounded) until GET /v1/sinks/NAME says field (e.g. "\"errors_total\":1") is there. */
static int wait_sink(int port, const char *name, const char *want)
{
    char path[200];
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    for (int i = 0; i < 600; i++) {
        resp r = http_json(port, "GET", path, NULL);
        int ok = r.status == 200 && strstr(r.body, want) != NULL;
        free(r.body);
        if (ok)
            return 1;
        usleep(50 * 1000);
    }
    return 0;
}

static const char KAFKA_SINK[] = "{\"stream\":\"s\",\"kind\":\"kafka\",\"options\":{\"brokers\":\"127.0.0.1:1\","
                                 "\"topic\":\"t\",\"timeout_ms\":%d}}";

static int test_delete_frees(const char *tmp)
{
    char data[4200], body[400];
    snprintf(data, sizeof data, "%s/del", tmp);
    srv s;
    srv_start(&s, BIN, data, NULL);
    put_stream(s.port, "s", "{\"partitions\":1}");
    snprintf(body, sizeof body, KAFKA_SINK, 2000);
    int st = req_status(s.port, "PUT", "/v1/sinks/k", body);
    if (st == 501) { /* built without librdkafka */
        CHECK_EQ(req_status(s.port, "DELETE", "/v1/sinks/k", NULL), 404);
        CHECK_EQ(srv_stop(&s, SIGTERM), 0);
        return 0;
    }
    CHECK_EQ(st, 201);
    CHECK_EQ(req_status(s.port, "DELETE", "/v1/sinks/k", NULL), 204);
    CHECK(req_status(s.port, "POST", "/v1/streams/s/events", "{\"a\":1}") / 100 == 2);
    /* The count before the cycles once it has settled (the first sink's
     * stop runs in the background, the write may start threads): the same
     * in three readings 100 ms apart, bounded (20 s). A single reading
     * 300 ms after the delete could still count a thread of that stop on
     * a loaded machine, and the count at the end was then below it. */
    int base = threads_of(s.pid);
    for (int i = 0, same = 0; i < 200 && same < 3; i++) {
        usleep(100 * 1000);
        int n = threads_of(s.pid);
        same = n == base ? same + 1 : 0;
        base = n;
    }
    for (int cycle = 0; cycle < 3; cycle++) {
        CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/k", body), 201);
        /* a write happened: the producer and its threads exist */
        CHECK(wait_sink(s.port, "k", "\"state\":\"retrying\""));
        CHECK(threads_of(s.pid) > base);
        CHECK_EQ(req_status(s.port, "DELETE", "/v1/sinks/k", NULL), 204);
    }
    int now = threads_of(s.pid);
    for (int i = 0; i < 400 && now > base; i++) { /* the stops run in the background */
        usleep(50 * 1000);
        now = threads_of(s.pid);
    }
    if (now != base)
        fprintf(stderr, "threads: %d before the cycles, %d after\n", base, now);
    CHECK_EQ(now, base);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    return 1;
}

static void test_stop_during_write(const char *tmp)
{
    char data[4200], logp[4200], body[400];
    snprintf(data, sizeof data, "%s/stop", tmp);
    snprintf(logp, sizeof logp, "%s/stop.log", tmp);
    srv s;
    srv_start_log(&s, BIN, data, NULL, logp);
    put_stream(s.port, "s", "{\"partitions\":1}");
    snprintf(body, sizeof body, KAFKA_SINK, 600000);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/k", body), 201);
    CHECK(req_status(s.port, "POST", "/v1/streams/s/events?ack=fsync", "{\"a\":1}") / 100 == 2);
    usleep(500 * 1000); /* the sink is in its write, waiting for brokers that do not answer */
    CHECK_EQ(srv_stop(&s, SIGINT), 0);
    CHECK(log_has(logp, "stopping: sinks"));
    CHECK(log_has(logp, "stopping: the log"));
    CHECK(log_has(logp, "stopped cleanly"));
    /* the event is still there to be delivered */
    srv_start(&s, BIN, data, NULL);
    CHECK_EQ(part_field(s.port, "/v1/streams/s", 0, "end_offset"), 1);
    CHECK(wait_sink(s.port, "k", "\"position\":0"));
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

static void faults(int port, const char *query)
{
    char path[256];
    snprintf(path, sizeof path, "/debug/faults?%s", query);
    resp r = http(port, "POST", path, NULL, "", 0);
    CHECK_EQ(r.status, 200);
    free(r.body);
}

static void test_second_signal(const char *tmp)
{
    char data[4200], logp[4200];
    snprintf(data, sizeof data, "%s/sig2", tmp);
    snprintf(logp, sizeof logp, "%s/sig2.log", tmp);
    srv s;
    srv_start_log(&s, BIN_TEST, data, NULL, logp);
    put_stream(s.port, "s", "{\"partitions\":2}");
    faults(s.port, "fsync_delay_us=10000000");
    int acked = 0;
    for (int i = 0; i < 50; i++) {
        char ev[64];
        snprintf(ev, sizeof ev, "{\"i\":%d}", i);
        acked += req_status(s.port, "POST", "/v1/streams/s/events?ack=written", ev) / 100 == 2;
    }
    CHECK_EQ(acked, 50);
    kill(s.pid, SIGTERM);
    /* the stop is under way (and would wait out one delayed fsync after another) */
    for (int i = 0; i < 400 && !log_has(logp, "stopping: "); i++)
        usleep(25 * 1000);
    CHECK(log_has(logp, "stopping: "));
    int st = srv_stop(&s, SIGTERM); /* the second one; bounded wait */
    CHECK_EQ(st, 1);
    CHECK(log_has(logp, "again: stopping at once"));
    CHECK(!log_has(logp, "stopped cleanly"));
    srv_start(&s, BIN, data, NULL);
    uint64_t n = part_field(s.port, "/v1/streams/s", 0, "end_offset") + part_field(s.port, "/v1/streams/s", 1, "end_offset");
    CHECK_EQ(n, 50);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    BIN = argv[1];
    BIN_TEST = argv[2];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("sinkstop");
    if (test_delete_frees(tmp))
        test_stop_during_write(tmp);
    else
        printf("test_sink_stop: kafka not built; its parts skipped\n");
    test_second_signal(tmp);
    spw_test_rmrf(tmp);
    free(tmp);
    printf("test_sink_stop: ok\n");
    return 0;
}
