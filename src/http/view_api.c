/*
 * HTTP for /v1/views (docs/api.md "Views") over the view service
 * (svc/views.h). Paths are matched undecoded; a key in a path
 * (/v1/views/V/keys/KEY) is percent-decoded, so any key bytes can be
 * named (a '/' in a key as %2F). PUT, DELETE and rebuild need the admin
 * permission on the view's name; reads need consume on the view's stream.
 *
 * Read your writes: a GET with min_offsets=P:O,... is served at once when
 * the view has applied those offsets; otherwise it is parked (its answer
 * comes later, posted back to the request's loop by the view's apply
 * thread) for up to wait_ms, then answered 504 view_lag. The loop never
 * waits.
 *
 * Verify reads the whole log: it runs on a thread of its own (at most
 * VERIFY_MAX at once, else 503) and its answer is posted back to the loop.
 */
#include "http/view_api.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/name.h"
#include "core/thread.h"
#include "core/workq.h"
#include "http/api_int.h"
#include "svc/views.h"

#define KEY_MAX 4096
#define VERIFY_MAX 2

static _Atomic int verifies;

typedef struct vreq {
    spw_api *api;
    spw_http_req *req;
    spw_view_req r;
    char name[SPW_STREAM_NAME_MAX + 1];
    char window[32], by[16];
    char key[KEY_MAX];
    spw_sc wait_sc;
    /* verify, PUT, DELETE and the reads that need a file: the answer made on another thread */
    spw_buf out;
    spw_sc sc;
    int created;
    char err[400];
} vreq;

static int hexv(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Percent-decodes s[0..n) into out: its length, or -1. */
static long pct_decode(const char *s, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int h = hexv(s[i + 1]), l = hexv(s[i + 2]);
            if (h < 0 || l < 0)
                return -1;
            c = (char)(h << 4 | l);
            i += 2;
        }
        if (o == cap)
            return -1;
        out[o++] = c;
    }
    return (long)o;
}

/* Answers v from what spw_view_serve gave (sc, out, err, created). */
static void answer(vreq *v)
{
    if (v->sc != SPW_SC_OK)
        spw_http_answer(v->req, v->sc, NULL, "%s", v->err);
    else if (v->r.op == SPW_VIEW_DELETE)
        spw_http_respond(v->req, 204, NULL, NULL, NULL, 0);
    else if (v->r.op == SPW_VIEW_REBUILD)
        spw_http_respond(v->req, 202, NULL, "application/json", "{\"state\":\"rebuilding\"}\n", 23);
    else
        spw__api_respond_json(v->req, v->created ? 201 : 200, &v->out);
    spw_buf_fini(&v->out);
    spw_free(v);
}

static void serve_now(vreq *v)
{
    v->out = (spw_buf)SPW_BUF_INIT;
    v->sc = spw_view_serve(&v->api->svc, &v->r, &v->out, &v->created, v->err, sizeof v->err);
}

static void answer_on_loop(void *arg) { answer(arg); }

static void worker_serve(void *arg)
{
    vreq *v = arg;
    serve_now(v);
    spw_http_loop_post(v->req->loop, answer_on_loop, v);
}

/* On an I/O worker (here without workers, or with the queue full: at
 * once): PUT and DELETE, which open, stop, join and remove a view's store
 * and threads (disk work, and a PUT waits for its first attach; a rebuild
 * only flags the apply thread: on the loop), and the reads that need a
 * file of the store. The request's body stays until it is answered. */
static void to_worker(vreq *v)
{
    v->r.uncached = NULL;
    if (v->api->svc.io && spw_workq_submit(v->api->svc.io, worker_serve, v) == 0)
        return;
    serve_now(v);
    answer(v);
}

/* On the loop; a read of a view's entries only from what RocksDB holds in
 * memory (the memtable, the block cache), and one that would read a file
 * of the store goes to an I/O worker instead. */
static void serve(vreq *v)
{
    int uncached = 0;
    int read = v->r.op == SPW_VIEW_KEY || v->r.op == SPW_VIEW_SERIES || v->r.op == SPW_VIEW_TOP;
    v->r.uncached = read && v->api->svc.io ? &uncached : NULL;
    serve_now(v);
    v->r.uncached = NULL;
    if (uncached) {
        spw_buf_fini(&v->out);
        to_worker(v);
        return;
    }
    answer(v);
}

static void *verify_thread(void *arg)
{
    vreq *v = arg;
    spw_thread_name(pthread_self(), "spw-view-check"); /* detached: it names itself */
    v->sc = spw_view_serve(&v->api->svc, &v->r, &v->out, &v->created, v->err, sizeof v->err);
    atomic_fetch_sub(&verifies, 1);
    spw_http_loop_post(v->req->loop, answer_on_loop, v);
    return NULL;
}

static void verify(vreq *v)
{
    pthread_attr_t at;
    pthread_t th;
    if (atomic_fetch_add(&verifies, 1) >= VERIFY_MAX) {
        atomic_fetch_sub(&verifies, 1);
        spw_http_answer(v->req, SPW_SC_UNAVAILABLE, "Retry-After: 1\r\n", "%d verifies are running; try again",
                        VERIFY_MAX);
        spw_free(v);
        return;
    }
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&th, &at, verify_thread, v) != 0) {
        atomic_fetch_sub(&verifies, 1);
        spw_http_answer(v->req, SPW_SC_OVERLOADED, NULL, "cannot start a thread for the verify");
        spw_free(v);
    }
    pthread_attr_destroy(&at);
}

static void waited_on_loop(void *arg)
{
    vreq *v = arg;
    if (v->wait_sc == SPW_SC_OK)
        return serve(v);
    if (v->wait_sc == SPW_SC_VIEW_LAG)
        spw_http_answer(v->req, SPW_SC_VIEW_LAG, NULL, "view %s has not applied min_offsets within wait_ms",
                        v->name);
    else
        spw_http_answer(v->req, v->wait_sc, NULL, "no view named %s", v->name);
    spw_free(v);
}

static void waited(void *arg, spw_sc sc)
{
    vreq *v = arg;
    v->wait_sc = sc;
    spw_http_loop_post(v->req->loop, waited_on_loop, v);
}

static int q_i64(const char *q, const char *name, int64_t *out, spw_http_req *req)
{
    *out = INT64_MIN;
    char t[32];
    int g = spw__api_query_get(q, name, t, sizeof t);
    if (g == 0)
        return 0;
    char *e;
    long long x = g > 0 ? strtoll(t, &e, 10) : 0;
    if (g < 0 || !t[0] || *e || x == LLONG_MIN) {
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "%s must be an integer (ms since the Unix epoch)", name);
        return -1;
    }
    *out = x;
    return 0;
}

int spw_view_api_route(spw_api *api, spw_http_req *req, const spw_auth_req *ar)
{
    if (strncmp(req->path, "/v1/views", 9) != 0 || (req->path[9] != 0 && req->path[9] != '/'))
        return 0;
    vreq *v = spw_xcalloc(1, sizeof *v);
    v->api = api;
    v->req = req;
    v->r.name = v->name;
    v->r.from = v->r.to = v->r.at = INT64_MIN;
    const char *rest = req->path[9] ? req->path + 10 : "";
    const char *slash = strchr(rest, '/');
    size_t nl = slash ? (size_t)(slash - rest) : strlen(rest);
    int m = req->method;
    if (nl == 0 && !slash) {
        if (m != SPW_HTTP_GET) {
            spw_free(v);
            spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET\r\n", "use GET");
            return 1;
        }
        v->r.op = SPW_VIEW_LIST;
        serve(v);
        return 1;
    }
    if (!spw_stream_name_ok(rest, nl)) {
        spw_free(v);
        spw_http_answer(req, SPW_SC_BAD_NAME, NULL, "view names are " SPW_NAME_RULE);
        return 1;
    }
    memcpy(v->name, rest, nl);
    v->name[nl] = 0;
    const char *allow = NULL;
    if (!slash) {
        v->r.op = m == SPW_HTTP_GET ? SPW_VIEW_GET : m == SPW_HTTP_PUT ? SPW_VIEW_PUT : SPW_VIEW_DELETE;
        if (m != SPW_HTTP_GET && m != SPW_HTTP_PUT && m != SPW_HTTP_DELETE)
            allow = "GET, PUT, DELETE";
    } else if (strcmp(slash, "/rebuild") == 0) {
        v->r.op = SPW_VIEW_REBUILD;
        if (m != SPW_HTTP_POST)
            allow = "POST";
    } else if (strcmp(slash, "/verify") == 0) {
        v->r.op = SPW_VIEW_VERIFY;
        if (m != SPW_HTTP_GET)
            allow = "GET";
    } else if (strcmp(slash, "/top") == 0) {
        v->r.op = SPW_VIEW_TOP;
        if (m != SPW_HTTP_GET)
            allow = "GET";
    } else if (strncmp(slash, "/keys/", 6) == 0) {
        const char *k = slash + 6, *ks = strchr(k, '/');
        size_t kl = ks ? (size_t)(ks - k) : strlen(k);
        if (ks && strcmp(ks, "/series") != 0) {
            spw_free(v);
            spw_http_answer(req, SPW_SC_NOT_FOUND, NULL, "no such endpoint: %s", req->path);
            return 1;
        }
        long dl = pct_decode(k, kl, v->key, sizeof v->key);
        if (dl <= 0) {
            spw_free(v);
            spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL,
                            "the key must be 1 to %d bytes, percent-encoded in the path", KEY_MAX);
            return 1;
        }
        v->r.key = v->key;
        v->r.klen = (size_t)dl;
        v->r.op = ks ? SPW_VIEW_SERIES : SPW_VIEW_KEY;
        if (m != SPW_HTTP_GET)
            allow = "GET";
    } else {
        spw_free(v);
        spw_http_answer(req, SPW_SC_NOT_FOUND, NULL, "no such endpoint: %s", req->path);
        return 1;
    }
    if (allow) {
        spw_free(v);
        char h[64];
        snprintf(h, sizeof h, "Allow: %s\r\n", allow);
        spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, h, "use %s", allow);
        return 1;
    }
    /* permissions: administration on the view's name; reads on its stream */
    int admin = v->r.op == SPW_VIEW_PUT || v->r.op == SPW_VIEW_DELETE || v->r.op == SPW_VIEW_REBUILD ||
                v->r.op == SPW_VIEW_VERIFY; /* it reads the whole log */
    char stream[SPW_STREAM_NAME_MAX + 1];
    const char *pname = v->name;
    if (!admin && api->svc.views && spw_views_stream_of(api->svc.views, v->name, stream, sizeof stream) == 0)
        pname = stream;
    if (!spw_auth_http_allow(api->svc.auth, ar, req, admin ? SPW_PERM_ADMIN : SPW_PERM_CONSUME, pname,
                             strlen(pname))) {
        spw_free(v);
        return 1;
    }
    const char *q = req->query;
    if (v->r.op == SPW_VIEW_VERIFY) {
        uint64_t sample = 1;
        if (spw__api_query_u64(q, "sample", &sample) < 0 || sample == 0 || sample > (1u << 20)) {
            spw_free(v);
            spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "sample must be 1 to 1048576");
            return 1;
        }
        v->r.n = (uint32_t)sample;
        verify(v);
        return 1;
    }
    if (v->r.op == SPW_VIEW_PUT) {
        v->r.body = (const char *)req->body.p;
        v->r.body_len = req->body.len;
        to_worker(v);
        return 1;
    }
    if (spw__api_query_get(q, "window", v->window, sizeof v->window) < 0 ||
        spw__api_query_get(q, "by", v->by, sizeof v->by) < 0) {
        spw_free(v);
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "window and by must be short words (\"1m\", \"count\")");
        return 1;
    }
    v->r.window = v->window;
    v->r.by = v->by;
    if (q_i64(q, "from", &v->r.from, req) < 0 || q_i64(q, "to", &v->r.to, req) < 0 ||
        q_i64(q, "at", &v->r.at, req) < 0) {
        spw_free(v);
        return 1;
    }
    uint64_t n = 10, wait_ms = 0;
    if (spw__api_query_u64(q, "n", &n) < 0 || n == 0 || n > 1000) {
        spw_free(v);
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "n must be 1 to 1000");
        return 1;
    }
    v->r.n = (uint32_t)n;
    if (spw__api_query_u64(q, "wait_ms", &wait_ms) < 0 || wait_ms > SPW_VIEW_WAIT_MS_MAX) {
        spw_free(v);
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "wait_ms must be 0 to %d", SPW_VIEW_WAIT_MS_MAX);
        return 1;
    }
    char *mo = spw_xmalloc(32 * SPW_VIEW_MIN_MAX);
    int g = spw__api_query_get(q, "min_offsets", mo, 32 * SPW_VIEW_MIN_MAX);
    if (v->r.op == SPW_VIEW_DELETE) {
        spw_free(mo);
        to_worker(v);
        return 1;
    }
    if (g == 0 || v->r.op == SPW_VIEW_REBUILD) {
        spw_free(mo);
        serve(v);
        return 1;
    }
    spw_view_min *min = spw_xmalloc(SPW_VIEW_MIN_MAX * sizeof *min);
    uint32_t nmin = 0;
    char err[200];
    if (g < 0 || spw_view_parse_min(mo, min, SPW_VIEW_MIN_MAX, &nmin, err, sizeof err) < 0) {
        spw_free(mo);
        spw_free(min);
        spw_free(v);
        spw_http_answer(req, SPW_SC_BAD_PARAMETER, NULL, "%s", g < 0 ? "min_offsets is not well encoded" : err);
        return 1;
    }
    spw_free(mo);
    spw_view_wait(&api->svc, v->name, min, nmin, (uint32_t)wait_ms, waited, v);
    spw_free(min);
    return 1;
}
