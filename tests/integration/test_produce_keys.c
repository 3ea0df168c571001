/*
 * Keys taken from the events' JSON (the stream's key field), through the
 * produce service's key store: the first 64 bytes of a request's keys sit
 * on the stack, more move to the heap mid-request. Each event is read
 * back with its own key: single events with keys of 10, 63, 64, 65 and
 * 200 bytes, one with escapes (unescaped into the store), a number key;
 * NDJSON requests whose keys pass 64 bytes at their third event and
 * several times over; then the same single events again (the thread's
 * kept encode buffer reused after requests of every size).
 */
#include "server.h"

static int port;

static void post(const char *ctype, const char *body, const char *want)
{
    resp r = http(port, "POST", "/v1/streams/s/events", ctype, body, strlen(body));
    if (r.status != 202 || !strstr(r.body, want)) {
        fprintf(stderr, "want 202 %s, got %d: %s\n", want, r.status, r.body);
        CHECK(0);
    }
    free(r.body);
}

/* A key of n bytes for event i: "key<i>-" then letters. */
static void make_key(char *out, size_t n, int i)
{
    int h = snprintf(out, n + 1, "key%d-", i);
    for (size_t j = (size_t)h; j < n; j++)
        out[j] = (char)('a' + (j * 7 + (size_t)i) % 26);
    out[n] = 0;
}

typedef struct want {
    char key[256];
    int i;
} want;

static want wants[200];
static int nwants;

/* One event {"k":KEY,"i":I} (raw: KEY as written in the JSON) whose key
 * reads back as key. */
static int event(char *out, size_t cap, const char *raw, const char *key, int i)
{
    CHECK(nwants < 200);
    snprintf(wants[nwants].key, sizeof wants[nwants].key, "%s", key);
    wants[nwants++].i = i;
    return snprintf(out, cap, "{\"k\":%s,\"i\":%d}", raw, i);
}

/* One NDJSON request of n events i = first.., keys of keylen bytes,
 * answered with want in its body. */
static void ndjson_keys(int first, int n, size_t keylen, const char *want)
{
    char body[16384], key[256], raw[300];
    size_t len = 0;
    for (int i = first; i < first + n; i++) {
        make_key(key, keylen, i);
        snprintf(raw, sizeof raw, "\"%s\"", key);
        len += (size_t)event(body + len, sizeof body - len, raw, key, i);
        body[len++] = '\n';
    }
    body[len] = 0;
    post("application/x-ndjson", body, want);
}

static void singles(int base)
{
    static const size_t lens[] = {10, 63, 64, 65, 200};
    char key[256], raw[300], body[600];
    for (int j = 0; j < 5; j++) {
        make_key(key, lens[j], base + j);
        snprintf(raw, sizeof raw, "\"%s\"", key);
        event(body, sizeof body, raw, key, base + j);
        post("application/json", body, "\"accepted\":1,");
    }
    /* Escapes: \u0041 is A, \/ is / (the key is the unescaped text). */
    snprintf(key, sizeof key, "esc-A/%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", base + 5);
    snprintf(raw, sizeof raw, "\"esc-\\u0041\\/%d-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"",
             base + 5);
    event(body, sizeof body, raw, key, base + 5);
    post("application/json", body, "\"accepted\":1,");
    /* A number key. */
    snprintf(key, sizeof key, "%d", 900000 + base);
    event(body, sizeof body, key, key, base + 6);
    post("application/json", body, "\"accepted\":1,");
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("pkeys");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    srv s;
    srv_start(&s, argv[1], data, NULL);
    port = s.port;
    put_stream(port, "s", "{\"partitions\":1,\"key\":\"/k\"}");

    singles(0);
    /* NDJSON: 5 events of 30-byte keys (past 64 bytes at the third), then
     * 40 of 100-byte keys (the store grows several times). */
    ndjson_keys(10, 5, 30, "\"accepted\":5,");
    ndjson_keys(20, 40, 100, "\"accepted\":40,");
    singles(100);

    /* Read back: each event after the one before, with its key. */
    resp r = http(port, "GET", "/v1/streams/s/events?partition=0&offset=0&limit=1000", NULL, NULL, 0);
    CHECK_EQ(r.status, 200);
    const char *p = r.body;
    for (int w = 0; w < nwants; w++) {
        char pat[64];
        snprintf(pat, sizeof pat, ",\"i\":%d}", wants[w].i);
        const char *q = strstr(p, pat);
        if (!q) {
            fprintf(stderr, "event %d not read back in order\n", wants[w].i);
            CHECK(0);
        }
        const char *ls = q;
        while (ls > r.body && ls[-1] != '\n')
            ls--;
        char kpat[300];
        snprintf(kpat, sizeof kpat, "\"key\":\"%s\"", wants[w].key);
        const char *k = strstr(ls, kpat);
        if (!k || k > q) {
            fprintf(stderr, "event %d: want key %s in: %.*s\n", wants[w].i, wants[w].key, (int)(q - ls + 8), ls);
            CHECK(0);
        }
        p = q;
    }
    free(r.body);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_produce_keys: ok");
    return 0;
}
