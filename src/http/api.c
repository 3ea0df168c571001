/*
 * HTTP API v1 handlers: see api.h and docs/api.md.
 *
 * Produce is the HTTP front end of the produce service (svc/produce.h):
 * it reads the ack level, priority and content type, cuts the body into
 * events (one JSON object, an array, NDJSON lines, or a bytes body) for
 * the service to validate, and frames the service's one answer: 202 with
 * partitions and ids, or the status and code word of the status table
 * (svc/status.h), naming the event ("event N" / "line N") and its byte
 * in the body. Admission, validation, dedupe, the rate limit and the
 * append are the service's, the same for every protocol.
 *
 * Files (over api_int.h, the handlers' private interface): this one holds
 * the output and query-string helpers every handler uses and the routing
 * (spw_api_handle: path → handler, after the bearer token); the handlers
 * are by resource: api_events.c (produce and read of a stream's events),
 * api_streams.c (stream list, definition, PUT/DELETE), api_ops.c (ids,
 * status, the server's metric families and /metrics); console.c serves
 * the web console's files.
 */
#include "http/api_int.h"

#include "http/console.h"
#include "svc/health.h"

/* ---- small output helpers ---- */

void spw__api_out_raw(spw_buf *b, const void *p, size_t n)
{
    if (spw_buf_reserve(b, b->len + n))
        abort(); /* spw_buf uses try_realloc; responses are bounded by read limits */
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

void spw__api_respond_json(spw_http_req *req, int status, spw_buf *b)
{
    spw_http_respond(req, status, NULL, "application/json", b->p, b->len);
    spw_buf_fini(b);
}

/* ---- query strings ---- */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Finds name in the query and percent-decodes its value into out.
 * Returns 1 found, 0 absent, -1 malformed or too long. */
int spw__api_query_get(const char *q, const char *name, char *out, size_t cap)
{
    size_t nl = strlen(name);
    while (*q) {
        const char *amp = strchr(q, '&');
        size_t len = amp ? (size_t)(amp - q) : strlen(q);
        if (len > nl && strncmp(q, name, nl) == 0 && q[nl] == '=') {
            size_t o = 0;
            for (size_t i = nl + 1; i < len; i++) {
                char c = q[i];
                if (c == '%') {
                    if (i + 2 >= len)
                        return -1;
                    int h = hexval(q[i + 1]), l = hexval(q[i + 2]);
                    if (h < 0 || l < 0)
                        return -1;
                    c = (char)(h << 4 | l);
                    i += 2;
                } else if (c == '+') {
                    c = ' ';
                }
                if (o + 1 >= cap || c == 0)
                    return -1;
                out[o++] = c;
            }
            out[o] = 0;
            return 1;
        }
        q += len + (amp ? 1 : 0);
        if (!amp)
            break;
    }
    return 0;
}

/* Parses a non-negative decimal integer query parameter. 1 set, 0 absent, -1 bad. */
int spw__api_query_u64(const char *q, const char *name, uint64_t *v)
{
    char buf[32];
    int r = spw__api_query_get(q, name, buf, sizeof buf);
    if (r <= 0)
        return r;
    if (!buf[0])
        return -1;
    uint64_t x = 0;
    for (char *p = buf; *p; p++) {
        if (*p < '0' || *p > '9' || x > (UINT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*p - '0');
    }
    *v = x;
    return 1;
}

int spw__api_query_str(const char *q, const char *name, char *out, size_t cap)
{
    return spw__api_query_get(q, name, out, cap);
}

int spw__api_query_i64(const char *q, const char *name, int64_t *v)
{
    char buf[32];
    int r = spw__api_query_get(q, name, buf, sizeof buf);
    if (r <= 0)
        return r;
    char *end;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (!buf[0] || *end || errno)
        return -1;
    *v = x;
    return 1;
}

/* ---- routing ---- */

static int path_is(const spw_http_req *req, const char *p) { return strcmp(req->path, p) == 0; }

static void method_not_allowed(spw_http_req *req, const char *allow)
{
    char h[64];
    snprintf(h, sizeof h, "Allow: %s\r\n", allow);
    spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, h, "use %s", allow);
}

void (*spw_api_debug_handler)(spw_api *api, spw_http_req *req);

/*
 * The one content-type policy of every endpoint (docs/api.md "Content
 * types"): a body is read as what its endpoint reads — JSON, except
 * POST .../events, which also reads NDJSON and, on a bytes stream, raw
 * bytes (api_events.c checks those). A request may name that type (with
 * any parameters: application/json; charset=utf-8), name none, or carry
 * curl -d's default application/x-www-form-urlencoded, which no client of
 * this API means and which is read as if none were named. Any other type
 * on a request with a body is 415 unsupported_media_type and nothing is
 * done. Returns 1 to go on, 0 after answering 415.
 */
static int content_type_ok(spw_http_req *req)
{
    const char *ct = req->content_type;
    ct += strspn(ct, " \t");
    size_t ctl = strcspn(ct, "; \t");
    if (ctl == 33 && strncasecmp(ct, "application/x-www-form-urlencoded", 33) == 0) {
        req->content_type[0] = 0;
        return 1;
    }
    if (req->body.len == 0 || ctl == 0 || (ctl == 16 && strncasecmp(ct, "application/json", 16) == 0))
        return 1;
    size_t pl = strlen(req->path);
    if (req->method == SPW_HTTP_POST && strncmp(req->path, "/v1/streams/", 12) == 0 && pl > 19 &&
        strcmp(req->path + pl - 7, "/events") == 0)
        return 1; /* JSON, NDJSON or bytes: the produce handler's check */
    spw_http_answer(req, SPW_SC_UNSUPPORTED_MEDIA_TYPE, NULL,
                    "%s %s reads JSON: Content-Type must be application/json (or none), not '%.*s'; nothing was done",
                    req->method == SPW_HTTP_PUT ? "PUT" : req->method == SPW_HTTP_POST ? "POST" : "this request",
                    req->path, (int)ctl, ct);
    return 0;
}

/* Routes an authenticated request (ar->who NULL: no tokens configured).
 * Every path component that names something is validated before use:
 * stream names by spw_stream_name_ok (no separators, no '.'-leading
 * names, no percent escapes: paths are matched undecoded). */
static void route(spw_api *api, spw_http_req *req, const spw_auth_req *ar)
{
    if (!content_type_ok(req))
        return;
    /* A stream's paths first (produce and read, the busiest): none of the
     * other routes below starts with "/v1/streams/" and a name. */
    if (strncmp(req->path, "/v1/streams/", 12) == 0 && req->path[12] != 0) {
        const char *name = req->path + 12;
        const char *slash = strchr(name, '/');
        size_t nl = slash ? (size_t)(slash - name) : strlen(name);
        if (!slash)
            return spw__api_handle_stream(api, req, name, nl, ar);
        if (strncmp(slash, "/groups/", 8) == 0 && api->svc.groups)
            return spw_groups_http_route(api, req, name, nl, slash + 8, ar);
        if (strcmp(slash, "/groups") == 0 && api->svc.groups)
            return spw_groups_http_route(api, req, name, nl, NULL, ar);
        if (strncmp(slash, "/keys/", 6) == 0)
            return spw__api_handle_keys(api, req, name, nl, slash + 6, ar);
        if (strcmp(slash, "/events") == 0) {
            char msg[300];
            spw_sc sc = spw_svc_names(name, nl, NULL, 0, NULL, 0, msg, sizeof msg);
            if (sc != SPW_SC_OK) {
                if (req->method == SPW_HTTP_POST) /* an invalid produce, as over the binary protocol */
                    atomic_fetch_add(&api->svc.rejected[SPW_REJ_INVALID], 1);
                return spw_http_answer(req, sc, NULL, "%s", msg);
            }
            unsigned need = req->method == SPW_HTTP_POST ? SPW_PERM_PRODUCE
                            : req->method == SPW_HTTP_GET ? SPW_PERM_CONSUME
                                                          : 0;
            if (!need)
                return method_not_allowed(req, "GET, POST");
            spw_stream *s;
            sc = spw_svc_stream_for(api->svc.cat, api->svc.auth, ar->who, name, nl, need, &s, msg, sizeof msg);
            if (sc != SPW_SC_OK)
                return spw_http_answer(req, sc, NULL, "%s", msg);
            return req->method == SPW_HTTP_POST ? spw__api_handle_produce(api, req, s)
                                                : spw__api_handle_read(api, req, s);
        }
    }
    if (path_is(req, "/metrics"))
        return req->method == SPW_HTTP_GET ? spw__api_handle_metrics(api, req, ar->who)
                                           : method_not_allowed(req, "GET");
    if (path_is(req, "/v1/status"))
        return req->method == SPW_HTTP_GET ? spw__api_handle_status(api, req) : method_not_allowed(req, "GET");
    if (path_is(req, "/v1/ids"))
        return req->method == SPW_HTTP_GET ? spw__api_handle_ids(api, req) : method_not_allowed(req, "GET");
    if (path_is(req, "/v1/streams") || path_is(req, "/v1/streams/")) {
        if (req->method != SPW_HTTP_GET)
            return method_not_allowed(req, "GET");
        spw__api_handle_list(api, req, ar->who);
        return;
    }
    if (spw_sink_api_route(api, req, ar))
        return;
    if (spw_view_api_route(api, req, ar))
        return;
    spw_http_answer(req, SPW_SC_NOT_FOUND, NULL, "no such endpoint: %s", req->path);
}

int spw_api_body_allowed(void *ctx, const spw_http_req *req, const char *url)
{
    spw_api *api = ctx;
    /* The test-only fault hook authenticates nothing (docs/operations.md
     * "Test builds"); everything else needs a token (spw_api_handle). */
    if (spw_api_debug_handler && strncmp(url, "/debug/", 7) == 0)
        return 1;
    return spw_auth_http_valid(api->svc.auth, req);
}

void spw_api_handle(void *ctx, spw_http_req *req)
{
    spw_api *api = ctx;
    if (spw_api_debug_handler && strncmp(req->path, "/debug/", 7) == 0)
        return spw_api_debug_handler(api, req);
    /* None of the paths served without a token is under /v1/: the API's
     * requests skip their compares. */
    if (strncmp(req->path, "/v1/", 4) != 0) {
        if (path_is(req, "/healthz")) {
            if (req->method != SPW_HTTP_GET && req->method != SPW_HTTP_HEAD)
                return method_not_allowed(req, "GET");
            spw_http_respond(req, 200, NULL, "application/json", "{\"status\":\"ok\"}\n", 16);
            return;
        }
        /* The console's files hold no data (the page reads the API with the
         * operator's token): served without one, like /healthz. */
        if (spw_console_route(req))
            return;
        if (path_is(req, "/readyz")) { /* like /healthz, without a token: for probes */
            if (req->method != SPW_HTTP_GET && req->method != SPW_HTTP_HEAD)
                return method_not_allowed(req, "GET");
            spw_buf b = SPW_BUF_INIT;
            int ok = spw_svc_ready(&api->svc, &b);
            spw_http_respond(req, ok ? 200 : 503, NULL, "application/json", (const char *)b.p, b.len);
            spw_buf_fini(&b);
            return;
        }
    }
    /* With tokens, everything but /healthz and /readyz needs one (unknown paths too:
     * an anonymous client learns nothing about what exists). */
    spw_auth_req ar;
    if (!spw_auth_http(api->svc.auth, req, &ar))
        return;
    /* Its token was not valid when its headers came (tokens reloaded
     * since): the body was dropped unread, so there is nothing to serve. */
    if (req->body_dropped) {
        atomic_fetch_add(&api->svc.auth->unauthorized, 1);
        spw_http_answer(req, SPW_SC_UNAUTHORIZED, "WWW-Authenticate: Bearer realm=\"spillway\"\r\n",
                        "the token was not valid when the request's headers arrived; its body was not read");
        spw_auth_req_done(&ar);
        return;
    }
    /* A header the server reads whose value is longer than it keeps
     * (http/http.h) is refused, never used cut (docs/api.md#headers); an
     * Authorization that long is no valid token (auth.c). */
    if (req->too_long) {
        spw_http_answer(req, SPW_SC_HEADER_TOO_LONG, NULL, "the %s header is longer than %zu bytes; nothing was done",
                        req->too_long, req->too_long_max);
        spw_auth_req_done(&ar);
        return;
    }
    route(api, req, &ar);
    spw_auth_req_done(&ar);
}
