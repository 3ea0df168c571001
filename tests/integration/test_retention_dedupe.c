/*
 * retention.bytes and the dedupe window (docs/architecture.md, "Retention
 * and the dedupe window"): retention by bytes never deletes a segment
 * written within the stream's dedupe window, so after a restart the
 * server still finds, in the batch headers it reads back, the
 * Idempotency-Key of a request inside the window and answers its retry as
 * a duplicate instead of appending it again. Once the segments are older
 * than the window, retention by bytes deletes them as before.
 *
 * Retention passes are made observable without timing: a control stream
 * with the same retention.bytes and no dedupe window loses its oldest
 * segments at every pass, so once its start offset has moved twice after
 * the writes, a whole pass ran over every stream.
 */
#include "server.h"

static const char *bin;

static uint64_t start_of(int port, const char *stream)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    return part_field(port, path, 0, "start_offset");
}

/* n events of about 100 bytes each (1 KiB segments roll every few). */
static void fill(int port, const char *stream, int n)
{
    char path[256], body[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    for (int i = 0; i < n; i++) {
        snprintf(body, sizeof body, "{\"i\":%d,\"pad\":\"%080d\"}", i, i);
        resp r = http(port, "POST", path, "application/json", body, strlen(body));
        CHECK_EQ(r.status, 202);
        free(r.body);
    }
}

/* Waits (bounded) until the control stream's start offset passed from,
 * refilling it so every pass has something to delete. */
static uint64_t wait_pass(int port, uint64_t from)
{
    for (int i = 0; i < 3000; i++) {
        uint64_t s = start_of(port, "control");
        if (s > from)
            return s;
        if (i % 50 == 0)
            fill(port, "control", 40);
        usleep(10000);
    }
    CHECK(!"retention never ran on the control stream");
    return 0;
}

static resp post_key(int port, const char *stream, const char *key, const char *body)
{
    char path[256], hdr[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events", stream);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s\r\n", key);
    return http_ex(port, "POST", path, "application/json", hdr, body, strlen(body));
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    char tmpl[] = "/tmp/spw-retdd-XXXXXX";
    char *dir = mkdtemp(tmpl);
    CHECK(dir != NULL);
    const char *flags[] = {"--segment-bytes", "1024", "--retention-check", "100ms", NULL};
    srv a;
    srv_start(&a, bin, dir, flags);
    /* keyed: the default dedupe window (24 h); control: none */
    put_stream(a.port, "keyed", "{\"partitions\":1,\"retention\":{\"bytes\":2048}}");
    put_stream(a.port, "control", "{\"partitions\":1,\"retention\":{\"bytes\":2048},\"dedupe_window_ms\":0}");
    /* short: a window of 1 s, over by the time the test looks */
    put_stream(a.port, "short", "{\"partitions\":1,\"retention\":{\"bytes\":2048},\"dedupe_window_ms\":1000}");

    const char *body = "{\"first\":true}";
    resp r = post_key(a.port, "keyed", "the-first", body);
    CHECK_EQ(r.status, 202);
    char first[512];
    snprintf(first, sizeof first, "%s", r.body);
    free(r.body);
    CHECK(strstr(first, "\"first_offset\":0,"));
    fill(a.port, "keyed", 60); /* about 6 KiB: retention.bytes exceeded three times */
    fill(a.port, "short", 60);

    uint64_t c = wait_pass(a.port, start_of(a.port, "control"));
    wait_pass(a.port, c);
    /* The window holds every segment of "keyed"; /metrics says how much
     * retention.bytes is kept from deleting, and nothing for "control". */
    CHECK_EQ(start_of(a.port, "keyed"), 0);
    resp m = http(a.port, "GET", "/metrics", NULL, NULL, 0);
    CHECK_EQ(m.status, 200);
    CHECK(metric_in(m.body, "spillway_partition_retention_held_bytes{stream=\"keyed\",partition=\"0\"}") > 0);
    CHECK_EQ(metric_in(m.body, "spillway_partition_retention_held_bytes{stream=\"control\",partition=\"0\"}"), 0);
    free(m.body);
    /* "short": written more than 1 s ago by now, or soon; deleted. */
    uint64_t s = 0;
    for (int i = 0; i < 3000 && (s = start_of(a.port, "short")) == 0; i++)
        usleep(10000);
    CHECK(s > 0);

    /* Restart: the key is read back from the batch headers it kept. */
    CHECK_EQ(srv_stop(&a, SIGKILL), 128 + SIGKILL);
    srv_start(&a, bin, dir, flags);
    r = post_key(a.port, "keyed", "the-first", body);
    CHECK_EQ(r.status, 202);
    CHECK(strstr(r.body, "\"duplicate\":true") != NULL);
    CHECK(strstr(r.body, "\"first_offset\":0,"));
    free(r.body);
    CHECK_EQ(start_of(a.port, "keyed"), 0);

    CHECK_EQ(srv_stop(&a, SIGTERM), 0);
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    CHECK(system(cmd) == 0);
    printf("retention_dedupe: ok\n");
    return 0;
}
