/*
 * The consumer-group endpoints (docs/api.md, "Consumer groups"):
 *
 *   POST /v1/streams/S/groups/G/poll?max=&wait_ms=&lease_ms=&start=&member=
 *   POST /v1/streams/S/groups/G/commit   {"lease":"..","offset":N}
 *   GET  /v1/streams/S/groups/G
 *
 * and their /metrics lines. A poll with nothing to deliver is parked (the
 * I/O loop goes on); one thread, the group waiter, checks parked polls
 * every SPW_GROUPS_TICK_MS and at once when a commit, a park or a
 * completed produce (spw_groups_http_kick) signals it, and hands a poll back to its loop (spw_http_loop_post) when a
 * partition could be leased or its wait ended. The same thread writes the
 * offsets files of committed groups (one save covers every commit queued
 * before it) and then answers those commits, so no fsync runs on an I/O
 * loop.
 */
#ifndef SPW_GROUPS_HTTP_H
#define SPW_GROUPS_HTTP_H

#include "core/buf.h"
#include "net/http.h"

#define SPW_GROUPS_TICK_MS 10

struct spw_api;
struct spw_auth_req;
struct spw_token;
typedef struct spw_groups_http spw_groups_http;

/* Loads DATA/groups and starts the waiter. 0 or -errno. */
int spw_groups_http_start(struct spw_api *api, spw_groups_http **out);
/* Answers every parked poll (204), saves and answers queued commits, and
 * stops the waiter; later requests are answered at once (a poll does not
 * wait, a commit saves on the calling loop). REQUIRES: the HTTP loops
 * still run (call before spw_http_stop). */
void spw_groups_http_stop(spw_groups_http *gh);
/* Frees. REQUIRES: stopped, and the HTTP loops stopped. */
void spw_groups_http_free(spw_groups_http *gh);

/* Routes /v1/streams/NAME/groups/REST (rest: after "groups/"). */
void spw_groups_http_route(spw_groups_http *gh, spw_http_req *req, const char *name, size_t nl, const char *rest,
                           const struct spw_auth_req *ar);

/* Stream name was deleted: its groups go too (spw_groups_drop_stream). */
void spw_groups_http_drop_stream(spw_groups_http *gh, const char *name);

/* A produce completed: wakes the waiter if polls are parked. Any thread;
 * one atomic load when none is, at most one lock per waiter round. */
void spw_groups_http_kick(spw_groups_http *gh);

/* spillway_group_committed_offset and spillway_group_lag for the groups of
 * the streams who may see (NULL: all). */
void spw_groups_http_metrics(spw_groups_http *gh, spw_buf *b, const struct spw_token *who);

#endif
