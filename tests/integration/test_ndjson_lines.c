/*
 * An NDJSON body's records are allocated once for its count of lines
 * (spw_produce_in.count_bound), which bounds its events from above: blank
 * lines count as lines but are no events. Checked here that the bound
 * changes no answer: a body of blank lines whose bound would need more
 * working memory than a request may have (4 x max-request-bytes) is still
 * answered 400 no_events, not 413; blank lines among events, CRLF line
 * ends and a last line without '\n' give exactly the events sent, read
 * back in order.
 */
#include "server.h"

static int port;

static void expect(resp r, int status, const char *needle)
{
    if (r.status != status || (needle && !strstr(r.body, needle))) {
        fprintf(stderr, "want %d %s, got %d: %s\n", status, needle ? needle : "", r.status, r.body);
        CHECK(0);
    }
    free(r.body);
}

static resp post(const char *body, size_t len)
{
    return http(port, "POST", "/v1/streams/s/events", "application/x-ndjson", body, len);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("ndlines");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    /* A request's working memory at most 4 x 64 KiB: 60,000 lines are past
     * it, 60,000 blank lines are not (no events, nothing counted). */
    const char *extra[] = {"--max-request-bytes", "64KiB", NULL};
    srv s;
    srv_start(&s, argv[1], data, extra);
    port = s.port;
    put_stream(port, "s", "{\"partitions\":1,\"key\":\"/k\"}");

    size_t cap = 64 << 10;
    char *body = malloc(cap);
    CHECK(body != NULL);

    /* Blank lines only. */
    memset(body, '\n', 60000);
    expect(post(body, 60000), 400, "no_events");
    /* Blank lines and whitespace-only lines, then one event. */
    for (size_t i = 0; i < 60000; i += 2)
        body[i] = ' ';
    size_t n = 60000;
    n += (size_t)snprintf(body + n, cap - n, "{\"k\":\"only\",\"i\":0}\n");
    expect(post(body, n), 202, "\"accepted\":1,");

    /* 300 events: blank lines between some, CRLF ends on others, the last
     * without a line end; the bound (lines) is above the count. */
    n = 0;
    for (int i = 0; i < 300; i++) {
        n += (size_t)snprintf(body + n, cap - n, "{\"k\":\"k%d\",\"i\":%d}%s", i % 7, i,
                              i == 299 ? "" : i % 3 == 0 ? "\r\n" : i % 3 == 1 ? "\n\n \n" : "\n");
        CHECK(n < cap - 64);
    }
    expect(post(body, n), 202, "\"accepted\":300,");
    /* Read back: the event before them, then i = 0..299 in order. */
    resp r = http(port, "GET", "/v1/streams/s/events?partition=0&offset=0&limit=1000", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    const char *p = strstr(r.body, "\"only\"");
    CHECK(p != NULL);
    for (int i = 0; i < 300; i++) {
        char want[64];
        snprintf(want, sizeof want, "{\"k\":\"k%d\",\"i\":%d}", i % 7, i);
        const char *q = strstr(p, want);
        if (!q) {
            fprintf(stderr, "event %d not read back after the ones before\n", i);
            CHECK(0);
        }
        p = q + strlen(want);
    }
    free(r.body);

    free(body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_ndjson_lines: ok");
    return 0;
}
