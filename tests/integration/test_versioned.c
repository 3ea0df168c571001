/*
 * Versioned streams over HTTP (docs/api.md "Event sourcing"): versions 1,
 * 2, 3 … per key in the 202 and in reads; expected_version (query and
 * header: any, none, exists, N) with 409 version_conflict naming the
 * current version and nothing appended; the bad inputs (an expectation on
 * a stream that is not versioned, mixed keys, negative and huge numbers,
 * events without a key, coalesce on a versioned stream); an
 * Idempotency-Key retry of a request that succeeded is a duplicate, not a
 * conflict, answered with the versions the first got; and a restart keeps every key's version (the map is rebuilt
 * from the log: a version is never given twice).
 */
#include "server.h"

static const char *bin;
static srv S;

static resp post(const char *path, const char *extra, const char *body)
{
    return http_ex(S.port, "POST", path, "application/json", extra, body, strlen(body));
}

/* POST and check the status; returns the body (caller frees). */
static char *post_want(int want, const char *path, const char *extra, const char *body)
{
    resp r = post(path, extra, body);
    if (r.status != want)
        fprintf(stderr, "POST %s %s -> %d %s (wanted %d)\n", path, body, r.status, r.body, want);
    CHECK_EQ(r.status, want);
    return r.body;
}

static void want_in(const char *body, const char *needle)
{
    if (!strstr(body, needle))
        fprintf(stderr, "wanted %s in %s\n", needle, body);
    CHECK(strstr(body, needle) != NULL);
}

/* The number of records of partition p (its durable end). */
static uint64_t end_of(const char *stream, int p)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/%s", stream);
    return part_field(S.port, path, p, "end_offset");
}

static void check_reads(void)
{
    /* Every record of "acc" (one partition) in order: key a has 1..3, b 1..2. */
    resp r = http_json(S.port, "GET", "/v1/streams/acc/events?partition=0&offset=0&limit=100", NULL);
    CHECK_EQ(r.status, 200);
    const char *want[] = {"\"version\":1,\"key\":\"a\"", "\"version\":2,\"key\":\"a\"", "\"version\":3,\"key\":\"a\"",
                          "\"version\":1,\"key\":\"b\"", "\"version\":2,\"key\":\"b\""};
    const char *p = r.body;
    for (int i = 0; i < 5; i++) {
        const char *q = strstr(p, want[i]);
        if (!q)
            fprintf(stderr, "wanted %s after %s\n", want[i], p);
        CHECK(q != NULL);
        p = q + 1;
    }
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    bin = argv[1];
    char *dir = spw_test_tmpdir("versioned");
    srv_start(&S, bin, dir, NULL);
    put_stream(S.port, "acc", "{\"versioned\":true,\"key\":\"/id\",\"partitions\":1}");
    put_stream(S.port, "plain", "{\"key\":\"/id\"}");

    /* The stream rules: no coalescing; a retention is fine (test_es_retention). */
    CHECK_EQ(req_status(S.port, "PUT", "/v1/streams/bad1", "{\"versioned\":true,\"coalesce\":true}"), 400);
    CHECK_EQ(req_status(S.port, "PUT", "/v1/streams/ret", "{\"versioned\":true,\"retention\":{\"ms\":999999999}}"),
             201);

    /* Versions in the 202, per key in order of appearance. */
    char *b = post_want(202, "/v1/streams/acc/events", NULL, "{\"id\":\"a\",\"n\":1}");
    want_in(b, "\"versions\":[{\"key\":\"a\",\"first\":1,\"count\":1}]");
    free(b);
    b = post_want(202, "/v1/streams/acc/events?expected_version=1", NULL, "[{\"id\":\"a\",\"n\":2},{\"id\":\"a\",\"n\":3}]");
    want_in(b, "\"versions\":[{\"key\":\"a\",\"first\":2,\"count\":2}]");
    free(b);

    /* Conflicts: the current version named, nothing appended. */
    uint64_t end = end_of("acc", 0);
    b = post_want(409, "/v1/streams/acc/events?expected_version=1", NULL, "{\"id\":\"a\"}");
    want_in(b, "\"code\":\"version_conflict\",\"expected\":1,\"current\":3");
    free(b);
    b = post_want(409, "/v1/streams/acc/events", "Spillway-Expected-Version: none\r\n", "{\"id\":\"a\"}");
    want_in(b, "\"expected\":\"none\",\"current\":3");
    free(b);
    b = post_want(409, "/v1/streams/acc/events?expected_version=exists", NULL, "{\"id\":\"b\"}");
    want_in(b, "\"expected\":\"exists\",\"current\":0");
    free(b);
    b = post_want(409, "/v1/streams/acc/events?expected_version=4", NULL, "{\"id\":\"a\"}");
    free(b);
    CHECK_EQ(end_of("acc", 0), end);

    /* none, exists, any and the header. */
    b = post_want(202, "/v1/streams/acc/events", "Spillway-Expected-Version: none\r\n", "{\"id\":\"b\"}");
    want_in(b, "{\"key\":\"b\",\"first\":1,\"count\":1}");
    free(b);
    /* A retry with the same Idempotency-Key is a duplicate, not a conflict. */
    const char *idem = "Idempotency-Key: k1\r\nSpillway-Expected-Version: exists\r\n";
    b = post_want(202, "/v1/streams/acc/events", idem, "{\"id\":\"b\",\"n\":2}");
    want_in(b, "{\"key\":\"b\",\"first\":2,\"count\":1}");
    free(b);
    b = post_want(202, "/v1/streams/acc/events", idem, "{\"id\":\"b\",\"n\":2}");
    want_in(b, "\"duplicate\":true");
    want_in(b, "{\"key\":\"b\",\"first\":2,\"count\":1}"); /* the versions the first got */
    free(b);
    /* ... even after the key moved on, and for a request of two keys. */
    const char *idem3 = "Idempotency-Key: k3\r\n";
    b = post_want(202, "/v1/streams/acc/events", idem3, "{\"id\":\"m\"}");
    want_in(b, "{\"key\":\"m\",\"first\":1,\"count\":1}");
    free(b);
    b = post_want(202, "/v1/streams/acc/events", NULL, "{\"id\":\"m\",\"n\":2}");
    want_in(b, "{\"key\":\"m\",\"first\":2,\"count\":1}");
    free(b);
    b = post_want(202, "/v1/streams/acc/events", idem3, "{\"id\":\"m\"}");
    want_in(b, "\"duplicate\":true");
    want_in(b, "{\"key\":\"m\",\"first\":1,\"count\":1}");
    free(b);
    const char *idem2 = "Idempotency-Key: k2\r\n";
    const char *two = "[{\"id\":\"x\"},{\"id\":\"y\"},{\"id\":\"x\"}]";
    b = post_want(202, "/v1/streams/acc/events", idem2, two);
    want_in(b, "{\"key\":\"x\",\"first\":1,\"count\":2}");
    free(b);
    b = post_want(202, "/v1/streams/acc/events", idem2, two);
    want_in(b, "\"duplicate\":true");
    want_in(b, "\"versions\":[{\"key\":\"x\",\"first\":1,\"count\":2},{\"key\":\"y\",\"first\":1,\"count\":1}]");
    free(b);
    CHECK_EQ(end_of("acc", 0), end + 7);

    /* Bad input: 400, nothing appended. */
    end = end_of("acc", 0);
    const char *bad[] = {"-1", "1e3", "%2B1", "9007199254740992", "99999999999999999999", "", "anyx", "0x10", "%201", "any%00"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        char path[128];
        snprintf(path, sizeof path, "/v1/streams/acc/events?expected_version=%s", bad[i]);
        b = post_want(400, path, NULL, "{\"id\":\"a\"}");
        want_in(b, "bad_expected_version");
        free(b);
    }
    b = post_want(400, "/v1/streams/acc/events", "Spillway-Expected-Version: -3\r\n", "{\"id\":\"a\"}");
    want_in(b, "bad_expected_version");
    free(b);
    /* The largest version is a valid expectation (a conflict here). */
    b = post_want(409, "/v1/streams/acc/events?expected_version=9007199254740991", NULL, "{\"id\":\"a\"}");
    free(b);
    b = post_want(400, "/v1/streams/acc/events?expected_version=3", NULL, "[{\"id\":\"a\"},{\"id\":\"b\"}]");
    want_in(b, "mixed_keys");
    free(b);
    b = post_want(400, "/v1/streams/plain/events?expected_version=any", NULL, "{\"id\":\"a\"}");
    want_in(b, "not_versioned");
    free(b);
    b = post_want(400, "/v1/streams/plain/events?expected_version=1", NULL, "{\"id\":\"a\"}");
    want_in(b, "not_versioned");
    free(b);
    b = post_want(400, "/v1/streams/acc/events", NULL, "{\"no_id\":1}");
    want_in(b, "missing_key");
    free(b);
    CHECK_EQ(end_of("acc", 0), end);
    check_reads();

    /* A stream that is not versioned has no versions in answers or reads. */
    b = post_want(202, "/v1/streams/plain/events", NULL, "{\"id\":\"a\"}");
    CHECK(strstr(b, "versions") == NULL);
    free(b);

    /* spillway produce --expected-version: all lines in one request. */
    {
        char *in = spw_test_tmpdir("versioned-cli");
        char f[4200];
        snprintf(f, sizeof f, "%s/ev.ndjson", in);
        FILE *fp = fopen(f, "w");
        CHECK(fp != NULL);
        fputs("{\"id\":\"cli\",\"n\":1}\n{\"id\":\"cli\",\"n\":2}\n", fp);
        fclose(fp);
        uint64_t e0 = end_of("acc", 0);
        cli_out o = cli_run(bin, "produce acc %s --server 127.0.0.1:%d --expected-version exists", f, S.port);
        CHECK(o.rc != 0);
        want_in(o.text, "version_conflict");
        free(o.text);
        CHECK_EQ(end_of("acc", 0), e0);
        o = cli_run(bin, "produce acc %s --server 127.0.0.1:%d --expected-version none", f, S.port);
        if (o.rc != 0)
            fprintf(stderr, "%s", o.text);
        CHECK_EQ(o.rc, 0);
        free(o.text);
        CHECK_EQ(end_of("acc", 0), e0 + 2);
        o = cli_run(bin, "produce acc %s --server 127.0.0.1:%d --expected-version 1", f, S.port);
        CHECK(o.rc != 0);
        want_in(o.text, "the key is at version 2");
        free(o.text);
        o = cli_run(bin, "produce acc %s --server 127.0.0.1:%d --expected-version 2", f, S.port);
        CHECK_EQ(o.rc, 0);
        free(o.text);
        o = cli_run(bin, "produce acc %s --server 127.0.0.1:%d --expected-version 'x;y'", f, S.port);
        CHECK_EQ(o.rc, 2);
        free(o.text);
        CHECK_EQ(end_of("acc", 0), e0 + 4);
        spw_test_rmrf(in);
        free(in);
        /* those went to key cli, in partition 0: check_reads below reads in order, skipping them */
    }

    /* Restart: the versions go on where they were. */
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    srv_start(&S, bin, dir, NULL);
    b = post_want(409, "/v1/streams/acc/events?expected_version=2", NULL, "{\"id\":\"a\"}");
    want_in(b, "\"current\":3");
    free(b);
    b = post_want(202, "/v1/streams/acc/events?expected_version=3", NULL, "{\"id\":\"a\"}");
    want_in(b, "{\"key\":\"a\",\"first\":4,\"count\":1}");
    free(b);
    b = post_want(202, "/v1/streams/acc/events", NULL, "[{\"id\":\"b\"},{\"id\":\"c\"},{\"id\":\"b\"}]");
    want_in(b, "[{\"key\":\"b\",\"first\":3,\"count\":2},{\"key\":\"c\",\"first\":1,\"count\":1}]");
    free(b);
    /* After kill -9 too. */
    CHECK_EQ(srv_stop(&S, SIGKILL), 128 + SIGKILL);
    srv_start(&S, bin, dir, NULL);
    b = post_want(202, "/v1/streams/acc/events?expected_version=4", NULL, "{\"id\":\"a\"}");
    want_in(b, "{\"key\":\"a\",\"first\":5,\"count\":1}");
    free(b);
    check_reads();
    /* Deleted and created again: a new stream, its versions from 1 (its
     * version store went with the old one's files). */
    put_stream(S.port, "again", "{\"versioned\":true,\"key\":\"/id\"}");
    b = post_want(202, "/v1/streams/again/events", NULL, "[{\"id\":\"a\"},{\"id\":\"a\"}]");
    want_in(b, "{\"key\":\"a\",\"first\":1,\"count\":2}");
    free(b);
    CHECK_EQ(req_status(S.port, "DELETE", "/v1/streams/again", NULL), 204);
    put_stream(S.port, "again", "{\"versioned\":true,\"key\":\"/id\"}");
    b = post_want(202, "/v1/streams/again/events", "Spillway-Expected-Version: none\r\n", "{\"id\":\"a\"}");
    want_in(b, "{\"key\":\"a\",\"first\":1,\"count\":1}");
    free(b);
    CHECK_EQ(srv_stop(&S, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_versioned: ok");
    return 0;
}
