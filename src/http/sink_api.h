/*
 * /v1/sinks routing (docs/api.md "Sinks"): called by the API's router.
 */
#ifndef SPW_SINK_API_H
#define SPW_SINK_API_H

#include "http/api.h"
#include "http/auth_http.h"

/* Handles req if its path is /v1/sinks or /v1/sinks/NAME: 1 (answered),
 * or 0 (not a sinks path). */
int spw_sink_api_route(spw_api *api, spw_http_req *req, const spw_auth_req *ar);

#endif
