/*
 * The HTTP API handlers' private interface, shared by api.c and its
 * resource files (not for use outside src/http): the helpers one file
 * defines and another calls, and the handlers api.c routes to. A handler
 * runs on the HTTP loop's thread and answers with spw_http_respond (now, or
 * later from a completion posted back to the loop); it owns nothing past
 * its answer.
 */
#ifndef SPW_HTTP_API_INT_H
#define SPW_HTTP_API_INT_H

#include "http/api.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/statvfs.h>

#include "core/alloc.h"
#include "core/name.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "net/membudget.h"
#include "http/auth_http.h"
#include "svc/coalesce.h"
#include "http/groups_http.h"
#include "svc/consume.h"
#include "admit/ratelimit.h"
#include "http/sink_api.h"
#include "http/view_api.h"
#include "sink/sink.h"
#include "svc/metrics.h"
#include "svc/request.h"
#include "es/es.h"

#define IDS_MAX_IN_RESPONSE 1000


/* api_keys.c: the key routes of versioned streams (rest: after "/keys/") */
void spw__api_handle_keys(spw_api *api, spw_http_req *req, const char *name, size_t nl, const char *rest,
                          const spw_auth_req *ar);

/* api.c */
void spw__api_out_raw(spw_buf *b, const void *p, size_t n);
void spw__api_respond_json(spw_http_req *req, int status, spw_buf *b);
int spw__api_query_get(const char *q, const char *name, char *out, size_t cap);
int spw__api_query_u64(const char *q, const char *name, uint64_t *v); /* also api.h */
int spw__api_query_i64(const char *q, const char *name, int64_t *v);

/* api_events.c */
void spw__api_handle_produce(spw_api *api, spw_http_req *req, spw_stream *s);
void spw__api_handle_read(spw_api *api, spw_http_req *req, spw_stream *s);

/* api_streams.c */
/* GET /v1/streams. */
void spw__api_handle_list(spw_api *api, spw_http_req *req, const spw_token *who);
void spw__api_handle_stream(spw_api *api, spw_http_req *req, const char *name, size_t nl, const spw_auth_req *ar);

/* api_ops.c */
void spw__api_handle_ids(spw_api *api, spw_http_req *req);
void spw__api_handle_status(spw_api *api, spw_http_req *req);
void spw__api_handle_metrics(spw_api *api, spw_http_req *req, const spw_token *who);

#endif
