/*
 * The web console's files over HTTP (docs/operations.md "Console"),
 * against a real `spillway serve` with a tokens file:
 *  - /, /console/console.js, /console/console.css and
 *    /console/chart.min.js answer without a token, with their content
 *    types, a strong ETag each, Cache-Control: no-cache, nosniff, and on
 *    the page a Content-Security-Policy that keeps it to its own origin;
 *    chart.min.js is Debian's Chart.js as installed (byte for byte);
 *  - If-None-Match naming the ETag (alone, in a list, weak, or "*") is
 *    304 with the ETag and no body: the next answer on the same
 *    connection follows the headers at once; another tag, or a header
 *    longer than the server keeps, gets the whole file (never 400);
 *  - HEAD: the GET's headers and Content-Length, no body;
 *  - other methods: 405 with Allow: GET, HEAD;
 *  - the API and unknown paths still need a token (401), also under
 *    /console/.
 * The browser's view of the page is tests/browser/test_console.sh.
 */
#include "server.h"

static const char *BIN;
static const char TOKEN[] = "console-a1a1a1a1a1a1a1a1a1a1";

/* Sends raw on one connection and reads everything until the server has
 * sent n answers' worth: returns the bytes (NUL-terminated). Each request
 * in raw must be complete; the last one should say Connection: close so
 * the read ends at EOF. */
static char *exchange(int port, const char *raw, size_t *len)
{
    int fd = tcp_connect(port);
    send_all(fd, raw, strlen(raw));
    size_t cap = 1 << 20, have = 0;
    char *buf = malloc(cap + 1);
    CHECK(buf != NULL);
    for (;;) {
        CHECK(have < cap);
        ssize_t n = recv(fd, buf + have, cap - have, 0);
        CHECK(n >= 0);
        if (n == 0)
            break;
        have += (size_t)n;
    }
    close(fd);
    buf[have] = 0;
    *len = have;
    return buf;
}

static resp get(int port, const char *path, const char *extra)
{
    return http_ex(port, "GET", path, NULL, extra, NULL, 0);
}

static void etag_of(const resp *r, char *out, size_t cap)
{
    CHECK(header(r, "ETag", out, cap));
    CHECK(out[0] == '"' && out[strlen(out) - 1] == '"' && strlen(out) == 18);
}

/* GET path with If-None-Match: inm, then GET /healthz, on one connection:
 * returns the first status; with 304 checks no body came between. */
static int conditional(int port, const char *path, const char *inm, const char *etag)
{
    char raw[1024];
    snprintf(raw, sizeof raw,
             "GET %s HTTP/1.1\r\nHost: t\r\nIf-None-Match: %s\r\n\r\n"
             "GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
             path, inm);
    size_t len;
    char *b = exchange(port, raw, &len);
    int status = atoi(b + 9);
    char *end = strstr(b, "\r\n\r\n");
    CHECK(end != NULL);
    if (status == 304) {
        char tag[80];
        resp r = {0};
        size_t hl = (size_t)(end - b) + 4;
        CHECK(hl < sizeof r.headers);
        memcpy(r.headers, b, hl);
        CHECK(header(&r, "ETag", tag, sizeof tag));
        CHECK(strcmp(tag, etag) == 0);
        CHECK(strstr(r.headers, "Cache-Control: no-cache\r\n") != NULL);
        /* no body: the healthz answer follows the headers */
        CHECK(strncmp(end + 4, "HTTP/1.1 200 OK\r\n", 17) == 0);
        CHECK(strstr(end + 4, "{\"status\":\"ok\"}") != NULL);
    }
    free(b);
    return status;
}

static void test_files(int port)
{
    static const struct {
        const char *path, *ctype, *starts;
    } files[] = {
        {"/", "text/html; charset=utf-8", "<!doctype html>"},
        {"/console/console.js", "text/javascript; charset=utf-8", "/*\n * The Spillway web console"},
        {"/console/console.css", "text/css; charset=utf-8", "/* The Spillway web console"},
        {"/console/chart.min.js", "text/javascript; charset=utf-8", "/*!\n * Chart.js v"},
    };
    char tags[4][80];
    for (size_t i = 0; i < 4; i++) {
        resp r = get(port, files[i].path, NULL); /* no token */
        CHECK_EQ(r.status, 200);
        char v[512];
        CHECK(header(&r, "Content-Type", v, sizeof v));
        CHECK(strcmp(v, files[i].ctype) == 0);
        CHECK(strncmp(r.body, files[i].starts, strlen(files[i].starts)) == 0);
        etag_of(&r, tags[i], sizeof tags[i]);
        for (size_t k = 0; k < i; k++)
            CHECK(strcmp(tags[i], tags[k]) != 0);
        CHECK(header(&r, "Cache-Control", v, sizeof v) && strcmp(v, "no-cache") == 0);
        CHECK(header(&r, "X-Content-Type-Options", v, sizeof v) && strcmp(v, "nosniff") == 0);
        if (i == 0) {
            CHECK(header(&r, "Content-Security-Policy", v, sizeof v));
            CHECK(strstr(v, "default-src 'none'") && strstr(v, "script-src 'self';") &&
                  strstr(v, "connect-src 'self'") && strstr(v, "frame-ancestors 'none'"));
            CHECK(strstr(r.body, "src=\"/console/chart.min.js\"") && strstr(r.body, "src=\"/console/console.js\""));
        }
        if (i == 3) { /* Debian's file, whole */
            FILE *f = fopen("/usr/share/javascript/chart.js/chart.min.js", "rb");
            if (f) {
                char *want = malloc(r.body_len + 2);
                size_t n = fread(want, 1, r.body_len + 1, f);
                fclose(f);
                CHECK_EQ(n, r.body_len);
                CHECK(memcmp(want, r.body, n) == 0);
                free(want);
            }
        }
        /* the same tag every time */
        resp again = get(port, files[i].path, NULL);
        char t2[80];
        etag_of(&again, t2, sizeof t2);
        CHECK(strcmp(t2, tags[i]) == 0);
        free(again.body);

        /* conditional requests */
        char inm[300];
        CHECK_EQ(conditional(port, files[i].path, tags[i], tags[i]), 304);
        snprintf(inm, sizeof inm, "\"0000000000000000\", %s", tags[i]);
        CHECK_EQ(conditional(port, files[i].path, inm, tags[i]), 304);
        snprintf(inm, sizeof inm, "W/%s", tags[i]);
        CHECK_EQ(conditional(port, files[i].path, inm, tags[i]), 304);
        CHECK_EQ(conditional(port, files[i].path, "*", tags[i]), 304);
        CHECK_EQ(conditional(port, files[i].path, "\"0000000000000000\"", tags[i]), 200);
        CHECK_EQ(conditional(port, files[i].path, "\"unterminated", tags[i]), 200);
        /* longer than the 127 bytes kept: never matched cut, never refused */
        snprintf(inm, sizeof inm, "%s, \"%0120d\", %s", tags[i], 0, tags[i]);
        CHECK_EQ(conditional(port, files[i].path, inm, tags[i]), 200);

        /* HEAD: the GET's length, no body (the next answer follows) */
        char raw[512];
        snprintf(raw, sizeof raw,
                 "HEAD %s HTTP/1.1\r\nHost: t\r\n\r\nGET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
                 files[i].path);
        size_t len;
        char *b = exchange(port, raw, &len);
        CHECK(strncmp(b, "HTTP/1.1 200 OK\r\n", 17) == 0);
        char cl[64];
        snprintf(cl, sizeof cl, "Content-Length: %zu\r\n", r.body_len);
        CHECK(strstr(b, cl) != NULL);
        char *end = strstr(b, "\r\n\r\n");
        CHECK(end && strncmp(end + 4, "HTTP/1.1 200 OK\r\n", 17) == 0);
        free(b);

        /* other methods */
        const char *methods[] = {"POST", "PUT", "DELETE"};
        for (size_t m = 0; m < 3; m++) {
            resp x = http_ex(port, methods[m], files[i].path, "application/json", NULL, "{}", 2);
            CHECK_EQ(x.status, 405);
            CHECK(header(&x, "Allow", v, sizeof v) && strcmp(v, "GET, HEAD") == 0);
            free(x.body);
        }
        free(r.body);
    }
}

static void test_tokens_still_needed(int port)
{
    const char *paths[] = {"/v1/streams", "/metrics", "/console/", "/console/other.js", "/index.html", "/v1/status"};
    for (size_t i = 0; i < sizeof paths / sizeof *paths; i++) {
        resp r = get(port, paths[i], NULL);
        CHECK_EQ(r.status, 401);
        free(r.body);
    }
    char auth[128];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s\r\n", TOKEN);
    resp r = get(port, "/console/other.js", auth);
    CHECK_EQ(r.status, 404);
    free(r.body);
    r = get(port, "/v1/streams", auth);
    CHECK_EQ(r.status, 200);
    free(r.body);
    /* with a token the page is the same page */
    r = get(port, "/", auth);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "<title>Spillway console</title>") != NULL);
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    char *tmp = spw_test_tmpdir("console");
    char tokens[4200], data[4200];
    snprintf(tokens, sizeof tokens, "%s/tokens.json", tmp);
    snprintf(data, sizeof data, "%s/data", tmp);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fprintf(f, "{\"tokens\":[{\"token\":\"%s\",\"tenant\":\"ops\",\"streams\":[\"*\"],\"permissions\":[\"admin\"]}]}\n",
            TOKEN);
    CHECK(fclose(f) == 0);

    srv s;
    const char *args[] = {"--tokens-file", tokens, NULL};
    srv_start(&s, BIN, data, args);
    test_files(s.port);
    test_tokens_still_needed(s.port);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(tmp);
    printf("test_console: ok\n");
    return 0;
}
