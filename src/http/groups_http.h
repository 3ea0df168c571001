/*
 * The consumer-group endpoints over HTTP (docs/api.md, "Consumer groups"):
 *
 *   POST /v1/streams/S/groups/G/poll?max=&wait_ms=&lease_ms=&start=&member=
 *   POST /v1/streams/S/groups/G/commit   {"lease":"..","offset":N}
 *   GET  /v1/streams/S/groups/G
 *
 * A thin front end over the consume service (svc/consume.h), which parks
 * polls, queues commits and runs the group waiter; this file decodes the
 * requests and encodes the answers (NDJSON records and Spillway-* headers).
 */
#ifndef SPW_GROUPS_HTTP_H
#define SPW_GROUPS_HTTP_H

#include <stddef.h>

#include "http/http.h"
#include "svc/consume.h"

struct spw_api;
struct spw_auth_req;

/* Routes /v1/streams/NAME/groups/REST (rest: after "groups/"; NULL for
 * /v1/streams/NAME/groups, the list).
 * REQUIRES: api->groups (the consume service) is not NULL. */
void spw_groups_http_route(struct spw_api *api, spw_http_req *req, const char *name, size_t nl, const char *rest,
                           const struct spw_auth_req *ar);

#endif
