/*
 * One content-type policy for every endpoint (docs/api.md "Content
 * types"): each route that reads a body takes application/json (with
 * parameters), no Content-Type, or curl -d's default
 * application/x-www-form-urlencoded (read as if none); any other type is
 * 415 unsupported_media_type with the same sentence shape, and nothing is
 * done. POST .../events also takes application/x-ndjson, and a bytes
 * stream application/octet-stream. A request without a body is not
 * checked.
 */
#include "server.h"

typedef struct route {
    const char *method, *path, *body;
    int ok; /* its status when the type is accepted */
} route;

static int port;

static int send_ct(const route *r, const char *ct, char *body_out, size_t cap)
{
    resp x = http(port, r->method, r->path, ct, r->body, strlen(r->body));
    if (body_out)
        snprintf(body_out, cap, "%s", x.body);
    int st = x.status;
    free(x.body);
    return st;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("ctype");
    char data[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    srv s;
    srv_start(&s, argv[1], data, NULL);
    port = s.port;
    put_stream(port, "src", "{\"partitions\":1,\"key\":\"/k\"}");
    put_stream(port, "ver", "{\"partitions\":1,\"key\":\"/k\",\"versioned\":true}");
    put_stream(port, "raw", "{\"partitions\":1,\"format\":\"bytes\"}");
    CHECK_EQ(req_status(port, "POST", "/v1/streams/ver/events", "{\"k\":\"a\"}"), 202);
    char sinkdef[512];
    snprintf(sinkdef, sizeof sinkdef,
             "{\"stream\":\"src\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"src2\"}}",
             s.binport);

    /* Every route that reads a body, each made anew per round: NAME is
     * replaced by a fresh name so a success creates something new. */
    const char *bad_types[] = {"text/plain", "application/xml", "application/jsonx", "multipart/form-data"};
    const char *good_types[] = {NULL, "application/json", "application/json; charset=utf-8", "APPLICATION/JSON",
                                "application/x-www-form-urlencoded"};
    for (int round = 0; round < 5; round++) {
        char p_stream[64], p_sink[64], p_view[64];
        snprintf(p_stream, sizeof p_stream, "/v1/streams/s%d", round);
        snprintf(p_sink, sizeof p_sink, "/v1/sinks/k%d", round);
        snprintf(p_view, sizeof p_view, "/v1/views/v%d", round);
        route routes[] = {
            {"PUT", p_stream, "{\"partitions\":1}", 201},
            {"PUT", p_sink, sinkdef, 201},
            {"PUT", p_view, "{\"stream\":\"src\",\"kind\":\"latest\"}", 201},
            {"POST", "/v1/streams/src/events", "{\"k\":\"x\"}", 202},
            {"PUT", "/v1/streams/ver/keys/a/snapshot", "{\"version\":1,\"state\":{\"n\":1}}", 204},
        };
        for (size_t i = 0; i < sizeof routes / sizeof *routes; i++) {
            /* refused first: nothing done, so the accepted one after it still creates */
            for (size_t b = 0; b < sizeof bad_types / sizeof *bad_types; b++) {
                char body[2048];
                int st = send_ct(&routes[i], bad_types[b], body, sizeof body);
                if (st != 415)
                    fprintf(stderr, "%s %s with %s: %d %s\n", routes[i].method, routes[i].path, bad_types[b], st,
                            body);
                CHECK_EQ(st, 415);
                CHECK(strstr(body, "\"code\":\"unsupported_media_type\"") != NULL);
                CHECK(strstr(body, "(or none)") != NULL);
            }
            int st = send_ct(&routes[i], good_types[round], NULL, 0);
            if (st != routes[i].ok)
                fprintf(stderr, "%s %s with %s: %d\n", routes[i].method, routes[i].path,
                        good_types[round] ? good_types[round] : "(none)", st);
            CHECK_EQ(st, routes[i].ok);
        }
        /* the refused PUTs created nothing: exactly one event per round in src so far */
    }
    CHECK_EQ(part_field(port, "/v1/streams/src", 0, "end_offset"), 5);
    /* events: NDJSON, and bytes on a bytes stream */
    route nd = {"POST", "/v1/streams/src/events", "{\"k\":\"y\"}\n{\"k\":\"z\"}\n", 202};
    CHECK_EQ(send_ct(&nd, "application/x-ndjson", NULL, 0), 202);
    route by = {"POST", "/v1/streams/raw/events", "opaque bytes", 202};
    CHECK_EQ(send_ct(&by, "application/octet-stream", NULL, 0), 202);
    CHECK_EQ(send_ct(&by, "application/x-www-form-urlencoded", NULL, 0), 202);
    CHECK_EQ(send_ct(&by, "application/json", NULL, 0), 415);
    /* x-ndjson is for events only */
    route st = {"PUT", "/v1/streams/nd", "{}", 201};
    CHECK_EQ(send_ct(&st, "application/x-ndjson", NULL, 0), 415);
    /* no body: not read, not checked */
    resp r = http(port, "POST", "/v1/streams/src/groups/g/poll", "text/plain", "", 0);
    CHECK(r.status == 200 || r.status == 204);
    free(r.body);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_content_type: ok");
    return 0;
}
