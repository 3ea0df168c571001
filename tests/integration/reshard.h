/*
 * What the postgres resharding tests share (test_pg_reshard,
 * test_pg_reshard_ops): the sink's GET and its "reshard" object's phase
 * and figures, and the rows the shards hold between them.
 */
#ifndef SPW_TEST_RESHARD_H
#define SPW_TEST_RESHARD_H

#include "pg.h"

/* PUT /v1/sinks/name: a postgres sink of stream into table over shards
 * [0, n) (columns k $key, p $partition, o $offset, i /i), extra options
 * appended ("" for none); CHECKs the status is want and, when want_text,
 * that the answer holds it. */
static inline void rs_put_sink(int port, const char *name, const char *stream, const char *table,
                               const char *const *shards, int n, const char *extra, int want, const char *want_text)
{
    char body[4096], sh[2048] = "", path[128];
    for (int i = 0; i < n; i++) {
        char one[240];
        snprintf(one, sizeof one, "%s\"%s\"", i ? "," : "", shards[i]);
        strcat(sh, one);
    }
    snprintf(body, sizeof body,
             "{\"stream\":\"%s\",\"kind\":\"postgres\",\"batch\":{\"max_events\":200,\"max_wait_ms\":20},"
             "\"retry\":{\"max_ms\":500},\"options\":{\"shards\":[%s],\"table\":\"%s\",\"columns\":{\"k\":\"$key\","
             "\"p\":\"$partition\",\"o\":\"$offset\",\"i\":\"/i\"}%s%s}}",
             stream, sh, table, extra[0] ? "," : "", extra);
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    resp r = http_json(port, "PUT", path, body);
    if (r.status != want || (want_text && !strstr(r.body ? r.body : "", want_text)))
        fprintf(stderr, "PUT %s %s: %d %s\n", path, body, r.status, r.body ? r.body : "");
    CHECK_EQ(r.status, want);
    if (want_text)
        CHECK(r.body && strstr(r.body, want_text));
    free(r.body);
}

/* The end of a resharding test: the server stopped (SIGTERM, exit 0),
 * the PostgreSQL servers stopped, tmp removed, "NAME: ok". */
static inline int rs_finish(srv *s, const char *tmp, const char *name)
{
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    pgsrv_stop_all();
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
    CHECK(system(cmd) == 0);
    printf("%s: ok\n", name);
    return 0;
}

/* GET /v1/sinks/name's body (malloc'ed). */
static inline char *rs_get_sink(int port, const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    resp r = http_json(port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    return r.body;
}

/* The number after "field": inside the "reshard" object (-1 if absent or null). */
static inline long long rs_num(const char *body, const char *field)
{
    const char *rs = strstr(body, "\"reshard\":");
    if (!rs)
        return -1;
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", field);
    const char *p = strstr(rs, pat);
    return p && p[strlen(pat)] != 'n' ? atoll(p + strlen(pat)) : -1;
}

static inline int rs_has_phase(const char *body, const char *phase)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"reshard\":{\"phase\":\"%s\"", phase);
    return strstr(body, pat) != NULL;
}

/* Waits (bounded: 60 s) until GET shows the phase and verify ran at least
 * min_runs times; returns the body. */
static inline char *rs_wait_phase(int port, const char *name, const char *phase, long long min_runs)
{
    for (int i = 0; i < 1200; i++) {
        char *b = rs_get_sink(port, name);
        if (rs_has_phase(b, phase) && (min_runs <= 0 || rs_num(b, "runs") >= min_runs))
            return b;
        if (i == 1199)
            fprintf(stderr, "waiting for phase %s, %lld verify runs: %s\n", phase, min_runs, b);
        free(b);
        usleep(50 * 1000);
    }
    CHECK(!"phase not reached");
    return NULL;
}

static inline long long rs_rows(pgsrv *pg, const char *table)
{
    char q[128];
    snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
    return pgsrv_num(pg, q);
}

/* Waits (bounded) until the shards pg[0..n) hold want rows of table between them. */
static inline void rs_wait_rows(pgsrv *pg, int n, const char *table, long long want)
{
    long long have = -1;
    for (int t = 0; t < 1200 && have != want; t++) {
        have = 0;
        for (int i = 0; i < n; i++)
            have += rs_rows(&pg[i], table);
        if (have != want)
            usleep(50 * 1000);
    }
    if (have != want)
        fprintf(stderr, "%s: %lld rows, want %lld\n", table, have, want);
    CHECK_EQ(have, want);
}

#endif
