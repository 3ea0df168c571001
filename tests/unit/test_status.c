/*
 * The status table (src/svc/status.h): every code has a row, each row's
 * HTTP status is the wire status except where docs/api.md and
 * docs/protocol.md say otherwise, and the disk errors map as both
 * documents say. Every code word the front ends answer with (docs/api.md,
 * docs/protocol.md "Status") has its row with its documented statuses
 * and an HTTP reason phrase (not "Unknown" on the status line),
 * and no front end in src/ answers an error past the table: no
 * spw_http_error call outside the file that defines spw_http_answer, no
 * wire status (SPW_ST_*) outside the table, the wire codec and the
 * client.
 */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/error.h"
#include "http/http.h"
#include "wire/frame.h"
#include "svc/status.h"
#include "test.h"

/* Every error word of both front ends: HTTP status, binary status (0:
 * HTTP only), and who gives it (docs/api.md, docs/protocol.md). */
static const struct {
    const char *word;
    int http, wire; /* -1: that protocol has no such answer */
} DOCUMENTED[] = {
    {"bad_name", 400, 400}, {"unauthorized", 401, 401}, {"forbidden", 403, 403}, {"no_such_stream", 404, 404},
    {"no_such_partition", 404, 404}, {"not_found", 404, 404}, {"bad_request", 400, 400},
    {"overloaded", 503, 503}, {"request_timeout", 408, 408}, {"body_too_large", 413, -1},
    {"frame_too_large", -1, 413}, {"too_large", -1, 413}, {"bad_frame", -1, 400}, {"unknown_opcode", -1, 400},
    {"unsupported_version", -1, 400}, {"method_not_allowed", 405, -1}, {"unsupported_media_type", 415, -1},
    {"length_required", 411, -1}, {"header_too_large", 431, -1}, {"header_too_long", 400, -1},
    {"bad_ack", 400, -1}, {"bad_priority", 400, -1}, {"bad_parameter", 400, -1}, {"bad_json", 400, -1},
    {"bad_lease", 400, -1}, {"offset_out_of_range", 416, 416}, {"versions_deleted", 416, 416}, {"damaged", 500, 500}, {"read_failed", 500, 500},
    {"no_such_group", 404, 404}, {"stale_lease", 409, 409}, {"lease_expired", 409, 409}, {"bad_offset", 400, 400},
    {"too_many_partitions", 400, 400}, {"save_failed", 500, 500}, {"bad_config", 400, -1}, {"exists", 409, -1},
    {"directory_exists", 409, -1}, {"create_failed", 500, -1}, {"delete_failed", 500, -1},
    {"kind_not_built", 400, -1}, {"no_such_sink", 404, -1}, {"unavailable", 503, -1}, {"stream_in_use", 409, -1},
    {"no_such_view", 404, -1}, {"unknown_key", 404, -1}, {"view_lag", 504, -1},
    {"replication_not_configured", 400, 400}, {"replication_unavailable", 503, 503},
    {"replication_timeout", 504, 504}, {"replication_rejected", 422, 422}, {"invalid_json", 400, 400}, {"not_an_object", 400, 400},
    {"missing_key", 400, 400}, {"bad_key", 400, 400}, {"bad_timestamp", 400, 400}, {"event_too_large", 400, 413},
    {"no_events", 400, 400}, {"idempotency_key_reused", 422, -1}, {"sequence_reused", -1, 409},
    {"in_progress", 409, 503}, {"dedupe_full", 503, 503}, {"rate_limited", 429, 429}, {"over_burst", 413, 413},
    {"shed", 503, 503}, {"backpressure", 503, 503}, {"disk_limit", 507, 507}, {"disk_full", 507, 507},
    {"write_failed", 500, 500}, {"internal", 500, 500},
};

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0;
    char *p = malloc(cap + 1);
    size_t r;
    while (p && (r = fread(p + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap)
            p = realloc(p, (cap *= 2) + 1);
    }
    fclose(f);
    if (p)
        p[n] = 0;
    return p;
}

static int count(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static int nfiles;

/* Every .c file under dir (but the client library, the CLI and the wire
 * codec): no error answer past the table. */
static void scan(const char *dir)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        struct stat st;
        CHECK(stat(path, &st) == 0);
        if (S_ISDIR(st.st_mode)) {
            if (strcmp(e->d_name, "client") && strcmp(e->d_name, "cli"))
                scan(path);
            continue;
        }
        size_t l = strlen(e->d_name);
        if (l < 3 || strcmp(e->d_name + l - 2, ".c") || strcmp(e->d_name, "frame.c") == 0)
            continue;
        char *s = slurp(path);
        CHECK(s != NULL);
        nfiles++;
        int bad = 0;
        if (!strstr(s, "void spw_http_answer(") && count(s, "spw_http_error("))
            bad = 1;
        if (strcmp(e->d_name, "status.c") && count(s, "SPW_ST_"))
            bad = 1;
        if (bad)
            fprintf(stderr, "%s answers an error past the status table (svc/status.h)\n", path);
        CHECK(!bad);
        free(s);
    }
    closedir(d);
}

int main(void)
{
    for (int c = 0; c < SPW_SC__N; c++) {
        const spw_sc_row *r = spw_sc_row_of((spw_sc)c);
        CHECK(r->word && r->word[0]);
        CHECK(r->sentence && r->sentence[0]);
        CHECK(r->http >= 200 && r->http < 600);
        if (strcmp(spw_http_reason(r->http), "Unknown") == 0) /* the status line names every status sent */
            fprintf(stderr, "HTTP %d (%s) has no reason phrase\n", r->http, r->word);
        CHECK(strcmp(spw_http_reason(r->http), "Unknown") != 0);
        for (const char *p = spw_sc_wire_word((spw_sc)c); *p; p++) /* code words are snake_case */
            CHECK((*p >= 'a' && *p <= 'z') || *p == '_');
        /* Where the protocols differ, on purpose. */
        if (c == SPW_SC_OK)
            CHECK_EQ(r->wire, SPW_ST_OK);
        else if (c == SPW_SC_EVENT_TOO_LARGE)
            CHECK(r->http == 400 && r->wire == SPW_ST_TOO_LARGE);
        else if (c == SPW_SC_KEY_REUSED)
            CHECK(r->http == 422 && r->wire == SPW_ST_CONFLICT);
        else if (c == SPW_SC_IN_PROGRESS)
            CHECK(r->http == 409 && r->wire == SPW_ST_OVERLOADED);
        else if (c == SPW_SC_VIEW_LAG) /* a gateway timeout on HTTP; the request's own timeout on the wire */
            CHECK(r->http == 504 && r->wire == SPW_ST_TIMEOUT);
        else if (r->only == SPW_SC_HTTP_ONLY) /* its wire status is never sent */
            CHECK(r->wire == r->http || r->wire == SPW_ST_BAD_REQUEST || r->wire == SPW_ST_TOO_LARGE);
        else
            CHECK_EQ(r->http, r->wire);
    }
    CHECK(strcmp(spw_sc_word(SPW_SC_BAD_KEY), "bad_key") == 0);
    CHECK(strcmp(spw_sc_word(SPW_SC_TOO_LARGE), "body_too_large") == 0);
    CHECK(strcmp(spw_sc_wire_word(SPW_SC_TOO_LARGE), "too_large") == 0);
    CHECK(strcmp(spw_sc_wire_word(SPW_SC_KEY_REUSED), "sequence_reused") == 0);
    CHECK(strcmp(spw_sc_word(SPW_SC_EVENT_TOO_LARGE), spw_sc_word(SPW_SC_BODY_EVENT_TOO_LARGE)) == 0);
    CHECK_EQ(spw_sc_http(SPW_SC_BODY_EVENT_TOO_LARGE), 413);

    /* Every documented word has its row, with its statuses. */
    for (size_t i = 0; i < sizeof DOCUMENTED / sizeof DOCUMENTED[0]; i++) {
        for (int wire = 0; wire < 2; wire++) {
            int want = wire ? DOCUMENTED[i].wire : DOCUMENTED[i].http;
            spw_sc c = spw_sc_by_word(DOCUMENTED[i].word, wire);
            if (want < 0)
                continue;
            if (c == SPW_SC__N)
                fprintf(stderr, "no row for %s over %s\n", DOCUMENTED[i].word, wire ? "binary" : "HTTP");
            CHECK(c != SPW_SC__N);
            CHECK_EQ(wire ? spw_sc_wire(c) : spw_sc_http(c), want);
        }
    }
    CHECK_EQ(spw_sc_by_word("sequence_reused", 0), SPW_SC__N);
    CHECK_EQ(spw_sc_by_word("method_not_allowed", 1), SPW_SC__N); /* HTTP only */
    CHECK_EQ(spw_sc_by_word("bad_frame", 0), SPW_SC__N);          /* binary only */
    CHECK_EQ(spw_sc_by_word("frame_too_large", 1), SPW_SC_REQUEST_TOO_LARGE);
    CHECK(strcmp(spw_sc_word(SPW_SC_BAD_GROUP_NAME), "bad_name") == 0);

    /* The sources: every front end answers through the table. */
    char root[4096];
    snprintf(root, sizeof root, "%s", __FILE__);
    char *cut = strstr(root, "tests/unit/test_status.c");
    CHECK(cut != NULL);
    snprintf(cut, sizeof root - (size_t)(cut - root), "src");
    scan(root);
    CHECK(nfiles > 20);

    char msg[400];
    CHECK_EQ(spw_sc_disk(SPW_EDISKLIMIT, 1, msg, sizeof msg), SPW_SC_DISK_LIMIT);
    CHECK(strstr(msg, "max-disk-bytes"));
    CHECK_EQ(spw_sc_disk(-ENOSPC, 0, msg, sizeof msg), SPW_SC_DISK_FULL);
    CHECK_EQ(spw_sc_disk(-EDQUOT, 1, msg, sizeof msg), SPW_SC_DISK_FULL);
    CHECK(strstr(msg, "nothing was appended"));
    CHECK_EQ(spw_sc_disk(-EIO, 0, msg, sizeof msg), SPW_SC_WRITE_FAILED);
    CHECK(strstr(msg, "nothing of it is acknowledged"));
    CHECK_EQ(spw_sc_disk(SPW_EAGAIN, 1, msg, sizeof msg), SPW_SC_OK);
    CHECK_EQ(spw_sc_disk(SPW_EMSGSIZE, 1, msg, sizeof msg), SPW_SC_OK);
    CHECK_EQ(spw_sc_http(SPW_SC_DISK_FULL), 507);
    CHECK_EQ(spw_sc_http(SPW_SC_WRITE_FAILED), 500);
    /* A read of a stream deleted under it is 404, not a failed read. */
    CHECK_EQ(spw_sc_read(SPW_EDELETED), SPW_SC_NO_SUCH_STREAM);
    CHECK_EQ(spw_sc_http(spw_sc_read(SPW_EDELETED)), 404);
    CHECK_EQ(spw_sc_read(SPW_ECORRUPT), SPW_SC_DAMAGED);
    CHECK_EQ(spw_sc_read(-EIO), SPW_SC_READ_FAILED);
    /* Out of range: the internal row, never out of bounds. */
    CHECK(strcmp(spw_sc_row_of((spw_sc)9999)->word, "internal") == 0);
    printf("test_status: ok\n");
    return 0;
}
