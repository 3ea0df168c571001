/*
 * /v1/views over HTTP (docs/api.md "Views"): decoding of the requests
 * (path, query, min_offsets, wait_ms) and encoding of the answers; the
 * requests themselves are svc/views.h.
 */
#ifndef SPW_VIEW_API_H
#define SPW_VIEW_API_H

#include "http/api.h"
#include "http/auth_http.h"

/* Handles req if its path is /v1/views or below: 1 (answered, now or
 * later), or 0 (not a views path). */
int spw_view_api_route(spw_api *api, spw_http_req *req, const spw_auth_req *ar);

#endif
