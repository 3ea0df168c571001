/*
 * HTTP handlers for /v1/sinks (docs/api.md "Sinks"); the sinks themselves
 * live in src/sink. PUT and DELETE need the admin permission, GET any
 * valid token (with tokens configured).
 */
#include "http/sink_api.h"

#include <errno.h>
#include <string.h>

#include "core/error.h"
#include "core/name.h"
#include "http/auth_http.h"
#include "sink/sink.h"

static void respond(spw_http_req *req, int status, spw_buf *b)
{
    spw_buf_put(b, "\n", 1);
    spw_http_respond(req, status, NULL, "application/json", b->p, b->len);
    spw_buf_fini(b);
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
    if (nl == 0) {
        if (req->method != SPW_HTTP_GET) {
            spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET\r\n", "use GET");
            return 1;
        }
        spw_buf b = SPW_BUF_INIT;
        spw_sinks_list_json(api->sinks, &b);
        respond(req, 200, &b);
        return 1;
    }
    if (!spw_stream_name_ok(name, nl)) {
        spw_http_answer(req, SPW_SC_BAD_NAME, NULL,
                        "sink names are " SPW_NAME_RULE);
        return 1;
    }
    unsigned need = req->method == SPW_HTTP_PUT || req->method == SPW_HTTP_DELETE ? SPW_PERM_ADMIN : 0;
    if (!spw_auth_http_allow(api->svc.auth, ar, req, need, name, nl))
        return 1;
    spw_buf b = SPW_BUF_INIT;
    if (req->method == SPW_HTTP_PUT) {
        char err[400];
        int r = spw_sinks_put(api->sinks, name, (const char *)req->body.p, req->body.len, &b, err, sizeof err);
        if (r == SPW_EINVAL)
            spw_http_answer(req, SPW_SC_BAD_CONFIG, NULL, "%s", err);
        else if (r == SPW_SINK_ENOTBUILT)
            spw_http_answer(req, SPW_SC_KIND_NOT_BUILT, NULL, "%s", err);
        else if (r == -ENOENT)
            spw_http_answer(req, SPW_SC_NO_SUCH_STREAM, NULL, "%s", err);
        else if (r == -EEXIST)
            spw_http_answer(req, SPW_SC_EXISTS, NULL, "%s", err);
        else if (r < 0)
            spw_http_answer(req, SPW_SC_CREATE_FAILED, NULL, "%s", err);
        else
            return respond(req, r == 1 ? 201 : 200, &b), 1;
        spw_buf_fini(&b);
        return 1;
    }
    if (req->method == SPW_HTTP_DELETE) {
        if (spw_sinks_delete(api->sinks, name) == -ENOENT)
            spw_http_answer(req, SPW_SC_NO_SUCH_SINK, NULL, "no sink named %s", name);
        else
            spw_http_respond(req, 204, NULL, NULL, NULL, 0);
        return 1;
    }
    if (req->method != SPW_HTTP_GET) {
        spw_http_answer(req, SPW_SC_METHOD_NOT_ALLOWED, "Allow: GET, PUT, DELETE\r\n", "use GET, PUT or DELETE");
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
