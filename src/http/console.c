/*
 * The web console (docs/operations.md "Console"): a page the server
 * serves at / on its HTTP listener, with its script, its style sheet and
 * Chart.js. Every file is built into the binary (cmake/embed.cmake turns
 * each into a C array with a strong ETag, the first 16 hex digits of its
 * SHA-256; Chart.js is Debian's libjs-chart.js, read at build time), so
 * the console needs nothing from the network and nothing on disk.
 *
 * The files hold no data: the page reads the API (/v1/status, /metrics,
 * /v1/streams, /v1/sinks, /v1/views, a stream's events) from the browser
 * with the operator's token, which the page asks for when the server
 * answers 401. So the files are served without a token, like /healthz:
 * an anonymous client learns only that this is a Spillway server, which
 * /healthz already tells it. Only GET and HEAD (405 otherwise); answers
 * carry their ETag and "Cache-Control: no-cache" (a browser asks again
 * each time and gets 304 Not Modified while the binary is the same, so a
 * new version is never hidden by a cache), and headers that keep the page
 * to itself: a Content-Security-Policy allowing scripts, styles and
 * connections to this origin only, no framing, no sniffing, no referrer.
 */
#include "http/console.h"

#include <stdio.h>
#include <string.h>

/* cmake/embed.cmake, one per file (CMakeLists.txt SPW_CONSOLE_ASSETS) */
#define SPW_ASSET(sym)                                                                                                 \
    extern const unsigned char sym[];                                                                                  \
    extern const size_t sym##_len;                                                                                     \
    extern const char sym##_etag[];
SPW_ASSET(spw_console_index_html)
SPW_ASSET(spw_console_app_js)
SPW_ASSET(spw_console_app_css)
SPW_ASSET(spw_console_chart_js)

typedef struct asset {
    const char *path;
    const char *ctype;
    const unsigned char *data;
    const size_t *len;
    const char *etag;
    int html;
} asset;

static const asset assets[] = {
    {"/", "text/html; charset=utf-8", spw_console_index_html, &spw_console_index_html_len,
     spw_console_index_html_etag, 1},
    {"/console/console.js", "text/javascript; charset=utf-8", spw_console_app_js, &spw_console_app_js_len,
     spw_console_app_js_etag, 0},
    {"/console/console.css", "text/css; charset=utf-8", spw_console_app_css, &spw_console_app_css_len,
     spw_console_app_css_etag, 0},
    {"/console/chart.min.js", "text/javascript; charset=utf-8", spw_console_chart_js, &spw_console_chart_js_len,
     spw_console_chart_js_etag, 0},
};

#define COMMON_HEADERS                                                                                                 \
    "Cache-Control: no-cache\r\n"                                                                                      \
    "X-Content-Type-Options: nosniff\r\n"                                                                              \
    "Referrer-Policy: no-referrer\r\n"
/* Chart.js sizes its canvases through element styles: 'unsafe-inline'
 * for styles only; scripts come from this origin alone. */
#define PAGE_HEADERS                                                                                                   \
    "Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "               \
    "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n"        \
    "X-Frame-Options: DENY\r\n"

/* Does the If-None-Match list (RFC 9110 §13.1.2: "*" or comma-separated
 * entity tags, weak ones compared weakly) name etag? */
static int etag_listed(const char *list, const char *etag)
{
    size_t el = strlen(etag);
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        if (*p == '*')
            return 1;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        const char *e = p;
        if (*e == '"') {
            e = strchr(e + 1, '"');
            if (!e)
                return 0; /* malformed: send the page */
            e++;
        } else {
            while (*e && *e != ',' && *e != ' ' && *e != '\t')
                e++;
        }
        if ((size_t)(e - p) == el && memcmp(p, etag, el) == 0)
            return 1;
        p = e;
    }
    return 0;
}

int spw_console_route(spw_http_req *req)
{
    const asset *a = NULL;
    for (size_t i = 0; i < sizeof assets / sizeof *assets; i++)
        if (strcmp(req->path, assets[i].path) == 0)
            a = &assets[i];
    if (!a)
        return 0;
    if (req->method != SPW_HTTP_GET && req->method != SPW_HTTP_HEAD) {
        spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET, HEAD\r\n", "use GET or HEAD");
        return 1;
    }
    char h[sizeof COMMON_HEADERS + sizeof PAGE_HEADERS + 64];
    snprintf(h, sizeof h, "ETag: %s\r\n%s%s", a->etag, COMMON_HEADERS, a->html ? PAGE_HEADERS : "");
    int fresh = req->if_none_match[0] && !req->if_none_match_cut && etag_listed(req->if_none_match, a->etag);
    /* 304: the headers of the 200, no body (http.c) */
    spw_http_respond(req, fresh ? 304 : 200, h, a->ctype, a->data, *a->len);
    return 1;
}
