/*
 * HTTP handlers for /v1/sinks (docs/api.md "Sinks"); the sinks themselves
 * live in src/sink. A sink reads its source stream and writes its
 * dead-letter stream, so the permissions are checked on those streams
 * (docs/operations.md "Security"), not on the sink's name: PUT needs admin
 * and consume on the source and admin on the DLQ, DELETE admin on the
 * source, GET consume or admin on the source, and GET /v1/sinks lists the
 * sinks whose source the token may consume from or administer.
 * Definitions are shown with their secrets redacted (sink/sink.h).
 *
 * PUT and DELETE write and fsync files (the definition, its directory,
 * the sinks' directory): after the checks on the loop, they run on an I/O
 * worker (spw_svc.io, core/workq.h) and the answer is posted back to the
 * loop, as a stream's PUT and DELETE do (docs/architecture.md "Threads of
 * spillway serve").
 */
#include "http/sink_api.h"

#include <errno.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/workq.h"
#include "catalog/stream.h"
#include "svc/request.h"
#include "core/name.h"
#include "http/auth_http.h"
#include "sink/sink.h"

static void respond(spw_http_req *req, int status, spw_buf *b)
{
    spw_buf_put(b, "\n", 1);
    spw_http_respond(req, status, NULL, "application/json", b->p, b->len);
    spw_buf_fini(b);
}

/* May who see the sinks of stream s (consume or admin on it)? */
static int may_see(const spw_token *who, const char *s)
{
    size_t n = strlen(s);
    return !who || spw_token_allows(who, SPW_PERM_CONSUME, s, n) || spw_token_allows(who, SPW_PERM_ADMIN, s, n);
}

static int list_visible(void *arg, const char *stream) { return may_see(arg, stream); }

/* A PUT or DELETE between its checks and its answer. */
typedef struct sink_job {
    spw_api *api;
    spw_http_req *req;
    int put;
    char *body; /* PUT: a copy of the definition */
    size_t len;
    spw_buf out; /* PUT: the definition as shown */
    char err[400];
    char name[SPW_STREAM_NAME_MAX + 1];
    int r;
} sink_job;

static void sink_work(sink_job *j)
{
    if (j->put == 2) {
        j->r = spw_sinks_abort_change(j->api->sinks, j->name, j->err, sizeof j->err);
        if (j->r == 0 && spw_sinks_get_json(j->api->sinks, j->name, &j->out) < 0)
            j->r = -ENOENT;
    } else if (j->put)
        j->r = spw_sinks_put(j->api->sinks, j->name, j->body, j->len, &j->out, j->err, sizeof j->err);
    else
        j->r = spw_sinks_delete(j->api->sinks, j->name);
}

static void sink_answer(void *arg)
{
    sink_job *j = arg;
    spw_http_req *req = j->req;
    int r = j->r;
    req->user = NULL;
    if (j->put == 2) {
        if (r == -ENOENT)
            spw_http_answer(req, SPW_SC_NO_SUCH_SINK, NULL, "no sink named %s", j->name);
        else if (r == -EEXIST || r == SPW_EINVAL)
            spw_http_answer(req, SPW_SC_EXISTS, NULL, "%s", j->err);
        else if (r < 0)
            spw_http_answer(req, SPW_SC_UNAVAILABLE, NULL, "%s", j->err);
        else
            respond(req, 200, &j->out);
    } else if (!j->put) {
        if (r == -ENOENT)
            spw_http_answer(req, SPW_SC_NO_SUCH_SINK, NULL, "no sink named %s", j->name);
        else
            spw_http_respond(req, 204, NULL, NULL, NULL, 0);
    } else if (r == SPW_EINVAL) {
        spw_http_answer(req, SPW_SC_BAD_CONFIG, NULL, "%s", j->err);
    } else if (r == SPW_SINK_ENOTBUILT) {
        spw_http_answer(req, SPW_SC_KIND_NOT_BUILT, NULL, "%s", j->err);
    } else if (r == -ENOENT) {
        spw_http_answer(req, SPW_SC_NO_SUCH_STREAM, NULL, "%s", j->err);
    } else if (r == -EEXIST) {
        spw_http_answer(req, SPW_SC_EXISTS, NULL, "%s", j->err);
    } else if (r < 0) {
        spw_http_answer(req, SPW_SC_CREATE_FAILED, NULL, "%s", j->err);
    } else {
        respond(req, r == 1 ? 201 : r == 2 ? 202 : 200, &j->out); /* 2: changed online */
    }
    spw_buf_fini(&j->out);
    spw_free(j->body);
    spw_free(j);
}

static void sink_worker(void *arg)
{
    sink_job *j = arg;
    sink_work(j);
    spw_http_loop_post(j->req->loop, sink_answer, j);
}

/* Runs j on an I/O worker (here without workers, or with the queue full:
 * a definition's files are small). */
static void sink_start(sink_job *j)
{
    j->req->user = j;
    if (j->api->svc.io && spw_workq_submit(j->api->svc.io, sink_worker, j) == 0)
        return;
    sink_work(j);
    sink_answer(j);
}

static sink_job *sink_job_new(spw_api *api, spw_http_req *req, int put, const char *name, size_t nl)
{
    sink_job *j = spw_xcalloc(1, sizeof *j);
    j->api = api;
    j->req = req;
    j->put = put;
    j->out = (spw_buf)SPW_BUF_INIT;
    memcpy(j->name, name, nl);
    j->name[nl] = 0;
    if (put == 1) {
        j->len = req->body.len;
        j->body = spw_xmalloc(j->len + 1);
        memcpy(j->body, req->body.p, j->len);
        spw_http_req_release_body(req);
    }
    return j;
}

int spw_sink_api_route(spw_api *api, spw_http_req *req, const spw_auth_req *ar)
{
    if (strncmp(req->path, "/v1/sinks", 9) != 0 || (req->path[9] != 0 && req->path[9] != '/'))
        return 0;
    if (!api->sinks) {
        spw_http_answer(req, SPW_SC_UNAVAILABLE, NULL, "sinks are not running");
        return 1;
    }
    const char *name = req->path[9] ? req->path + 10 : "";
    size_t nl = strlen(name);
    /* POST /v1/sinks/{name}/reshard/abort (docs/api.md "Resharding a postgres sink") */
    static const char abort_sfx[] = "/reshard/abort";
    int abort_req = nl > sizeof abort_sfx - 1 && strcmp(name + nl - (sizeof abort_sfx - 1), abort_sfx) == 0;
    if (abort_req)
        nl -= sizeof abort_sfx - 1;
    if (nl == 0) {
        if (req->method != SPW_HTTP_GET) {
            spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET\r\n", "use GET");
            return 1;
        }
        spw_buf b = SPW_BUF_INIT;
        spw_sinks_list_json(api->sinks, &b, list_visible, (void *)ar->who);
        respond(req, 200, &b);
        return 1;
    }
    if (!spw_stream_name_ok(name, nl)) {
        spw_http_answer(req, SPW_SC_BAD_NAME, NULL,
                        "sink names are " SPW_NAME_RULE);
        return 1;
    }
    char nm[SPW_STREAM_NAME_MAX + 1];
    memcpy(nm, name, nl);
    nm[nl] = 0;
    name = nm;
    if (abort_req && req->method != SPW_HTTP_POST) {
        spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: POST\r\n", "use POST");
        return 1;
    }
    if (!abort_req && req->method != SPW_HTTP_GET && req->method != SPW_HTTP_PUT && req->method != SPW_HTTP_DELETE) {
        spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET, PUT, DELETE\r\n", "use GET, PUT or DELETE");
        return 1;
    }
    char stream[SPW_STREAM_NAME_MAX + 1], dlq[SPW_STREAM_NAME_MAX + 1];
    spw_buf b = SPW_BUF_INIT;
    if (req->method == SPW_HTTP_PUT) {
        char err[400];
        int r = spw_sinks_def_streams(name, (const char *)req->body.p, req->body.len, stream, dlq, err, sizeof err);
        if (r == SPW_EINVAL) {
            spw_http_answer(req, SPW_SC_BAD_CONFIG, NULL, "%s", err);
            return 1;
        }
        if (r < 0) {
            spw_http_answer(req, SPW_SC_KIND_NOT_BUILT, NULL, "%s", err);
            return 1;
        }
        if (!spw_auth_http_allow(api->svc.auth, ar, req, SPW_PERM_ADMIN, stream, strlen(stream)) ||
            !spw_auth_http_allow(api->svc.auth, ar, req, SPW_PERM_CONSUME, stream, strlen(stream)) ||
            (dlq[0] && !spw_auth_http_allow(api->svc.auth, ar, req, SPW_PERM_ADMIN, dlq, strlen(dlq))))
            return 1;
        sink_start(sink_job_new(api, req, 1, name, nl));
        return 1;
    }
    if (spw_sinks_streams(api->sinks, name, stream, dlq) == -ENOENT) {
        /* A token without the permission on any stream learns nothing
         * from a name: 403 as for an existing sink. */
        unsigned need = req->method == SPW_HTTP_DELETE ? SPW_PERM_ADMIN : SPW_PERM_CONSUME;
        if (ar->who && !(ar->who->perms & (need | (req->method == SPW_HTTP_GET ? SPW_PERM_ADMIN : 0))))
            spw_auth_http_allow(api->svc.auth, ar, req, need, name, nl);
        else
            spw_http_answer(req, SPW_SC_NO_SUCH_SINK, NULL, "no sink named %s", name);
        return 1;
    }
    if (req->method == SPW_HTTP_DELETE || abort_req) {
        if (!spw_auth_http_allow(api->svc.auth, ar, req, SPW_PERM_ADMIN, stream, strlen(stream)))
            return 1;
        sink_start(sink_job_new(api, req, abort_req ? 2 : 0, name, nl));
        return 1;
    }
    if (!may_see(ar->who, stream)) {
        /* not consume: the check answers 403 with its sentence */
        spw_auth_http_allow(api->svc.auth, ar, req, SPW_PERM_CONSUME, stream, strlen(stream));
        return 1;
    }
    if (spw_sinks_get_json(api->sinks, name, &b) == -ENOENT) {
        spw_buf_fini(&b);
        spw_http_answer(req, SPW_SC_NO_SUCH_SINK, NULL, "no sink named %s", name);
        return 1;
    }
    respond(req, 200, &b);
    return 1;
}
