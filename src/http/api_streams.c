/*
 * The stream routes (docs/api.md "Streams"): the list (only the streams
 * the token may see), one stream's definition and state, and PUT / DELETE
 * through the stream service (svc/streams.h, shared with the binary
 * protocol), with the name rule and permission checks of svc/request.h.
 */
#include "http/api_int.h"
#include "core/workq.h"
#include "sink/sink.h"
#include "svc/streams.h"

/* ---- streams ---- */

static void stream_json(spw_buf *b, spw_stream *s, int detail) { spw_svc_stream_json(s, detail, b); }

/* A stream's PUT or DELETE: the catalog's work (directories, stream.json,
 * the partitions' open and recovery, the rename, their fsyncs; a deleted
 * stream's groups) on an I/O worker, the answer on the loop. */
typedef struct ddl_job {
    spw_api *api;
    spw_http_req *req;
    int put;
    spw_stream_config c; /* PUT */
    char name[256];
    int r;
    spw_sc sc; /* PUT: spw_svc_stream_create's */
    int created;
    char msg[400];
} ddl_job;

static void ddl_work(ddl_job *j)
{
    if (j->put) {
        j->sc = spw_svc_stream_create(&j->api->svc, &j->c, &j->created, j->msg, sizeof j->msg);
        return;
    }
    j->r = spw_catalog_delete(j->api->svc.cat, j->name); /* its consumer groups go with it */
}

static void put_answer(ddl_job *j)
{
    spw_http_req *req = j->req;
    if (j->sc != SPW_SC_OK) {
        spw_http_answer(req, j->sc, NULL, "%s", j->msg);
    } else {
        spw_buf b = SPW_BUF_INIT;
        spw_stream_config_json(&j->c, &b);
        spw__api_out_raw(&b, "\n", 1);
        spw__api_respond_json(req, j->created ? 201 : 200, &b);
    }
}

static void ddl_answer(void *arg)
{
    ddl_job *j = arg;
    spw_http_req *req = j->req;
    req->user = NULL;
    if (j->put)
        put_answer(j);
    else if (j->r == -ENOENT)
        spw_http_answer(req, SPW_SC_NO_SUCH_STREAM, NULL, "no stream named %s", j->name);
    else if (j->r < 0)
        spw_http_answer(req, SPW_SC_DELETE_FAILED, NULL, "deleting stream %s: %s", j->name, spw_strerror(j->r));
    else
        spw_http_respond(req, 204, NULL, NULL, NULL, 0);
    spw_free(j);
}

static void ddl_worker(void *arg)
{
    ddl_job *j = arg;
    ddl_work(j);
    spw_http_loop_post(j->req->loop, ddl_answer, j);
}

static void ddl_start(ddl_job *j)
{
    j->req->user = j;
    if (j->api->svc.io && spw_workq_submit(j->api->svc.io, ddl_worker, j) == 0)
        return;
    ddl_work(j);
    ddl_answer(j);
}

/* A catalog walk that shows only the streams a token may see (who NULL: all). */
typedef struct seen_ctx {
    spw_buf *b;
    const spw_token *who;
} seen_ctx;

static int sees(const spw_token *who, const spw_stream *s)
{
    return !who || spw_token_sees(who, s->cfg.name, strlen(s->cfg.name));
}

static void list_one(void *arg, spw_stream *s)
{
    seen_ctx *x = arg;
    if (!sees(x->who, s))
        return;
    if (x->b->len > 13)
        spw__api_out_raw(x->b, ",", 1);
    stream_json(x->b, s, 0);
}

/* GET /v1/streams: the streams who may see. */
void spw__api_handle_list(spw_api *api, spw_http_req *req, const spw_token *who)
{
    spw_buf b = SPW_BUF_INIT;
    spw_buf_xprintf(&b, "{\"streams\":[");
    seen_ctx sc = {&b, who};
    spw_catalog_each(api->svc.cat, list_one, &sc);
    spw_buf_xprintf(&b, "]}\n");
    spw__api_respond_json(req, 200, &b);
}

void spw__api_handle_stream(spw_api *api, spw_http_req *req, const char *name, size_t nl, const spw_auth_req *ar)
{
    char nm[SPW_STREAM_NAME_MAX + 1], msg[300];
    unsigned need = req->method == SPW_HTTP_PUT || req->method == SPW_HTTP_DELETE ? SPW_PERM_ADMIN : 0;
    spw_sc sc = spw_svc_names(name, nl, NULL, 0, NULL, 0, msg, sizeof msg);
    if (sc == SPW_SC_OK)
        sc = spw_svc_allowed(api->svc.auth, ar->who, name, nl, need, msg, sizeof msg);
    if (sc != SPW_SC_OK) {
        spw_http_answer(req, sc, NULL, "%s", msg);
        return;
    }
    memcpy(nm, name, nl);
    nm[nl] = 0;
    if (req->method == SPW_HTTP_PUT) {
        spw_stream_config c;
        char err[300];
        if (spw_svc_stream_parse(nm, (const char *)req->body.p, req->body.len, &c, err, sizeof err) != SPW_SC_OK) {
            spw_http_answer(req, SPW_SC_BAD_CONFIG, NULL, "%s", err);
            return;
        }
        ddl_job *j = spw_xcalloc(1, sizeof *j);
        *j = (ddl_job){.api = api, .req = req, .put = 1, .c = c};
        snprintf(j->name, sizeof j->name, "%s", nm);
        ddl_start(j);
        return;
    }
    if (req->method == SPW_HTTP_DELETE) {
        char user[SPW_STREAM_NAME_MAX + 1];
        if (spw_sinks_dlq_user(api->sinks, nm, user)) {
            spw_http_answer(req, SPW_SC_STREAM_IN_USE, NULL,
                            "sink %s sends its dead letters to stream %s: delete the sink (or give it another dlq) "
                            "first; nothing was deleted",
                            user, nm);
            return;
        }
        ddl_job *j = spw_xcalloc(1, sizeof *j);
        *j = (ddl_job){.api = api, .req = req};
        snprintf(j->name, sizeof j->name, "%s", nm);
        ddl_start(j);
        return;
    }
    if (req->method != SPW_HTTP_GET) {
        spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET, PUT, DELETE\r\n", "use GET, PUT or DELETE");
        return;
    }
    spw_stream *s = spw_stream_get(api->svc.cat, nm, nl);
    if (!s) {
        spw_http_answer(req, SPW_SC_NO_SUCH_STREAM, NULL, "no stream named %s", nm);
        return;
    }
    spw_buf b = SPW_BUF_INIT;
    stream_json(&b, s, 1);
    spw__api_out_raw(&b, "\n", 1);
    spw_stream_put(s);
    spw__api_respond_json(req, 200, &b);
}
