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
#include "server/catalog.h"
#include "server/groups.h"

#define SPW_GROUPS_TICK_MS 10
#define SPW_GROUP_POLL_MAX_DEFAULT 100 /* records per poll */
#define SPW_GROUP_POLL_MAX_MAX 10000
#define SPW_GROUP_WAIT_MS_MAX 60000
#define SPW_GROUP_LEASE_MS_DEFAULT 30000
#define SPW_GROUP_LEASE_MS_MIN 100
#define SPW_GROUP_LEASE_MS_MAX 3600000

struct spw_api;
struct spw_auth_req;
struct spw_token;
typedef struct spw_groups_http spw_groups_http;

/* Loads DATA/groups and starts the waiter. 0 or -errno. */
int spw_groups_http_start(struct spw_api *api, spw_groups_http **out);
/* Removes the log's durable hook, answers every parked poll (204), saves
 * and answers queued commits, and stops the waiter; later requests are answered at once (a poll does not
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

/*
 * ---- Shared by both front ends (HTTP here, binary in net/binproto.c) ----
 *
 * A poll, allocated by its front end (spw_xcalloc) and handed to
 * spw_groups_http_poll, which takes it over: exactly one of deliver or
 * nothing is called, on the poll's loop, and then the stream reference is
 * put and the poll freed (the callbacks must not keep it).
 */
typedef struct spw_group_poll spw_group_poll;
struct spw_group_poll {
    /* Runs fn(arg) on the poll's loop, from any thread. */
    void (*post)(void *loop, void (*fn)(void *arg), void *arg);
    void *loop;
    /* A lease on records of l->partition from l->from (l->to == l->from):
     * read them, then spw_group_lease_delivered before answering (a commit
     * may arrive on another loop as soon as the answer leaves), or
     * spw_group_release and answer the error. */
    void (*deliver)(spw_group_poll *p, spw_lease *l);
    /* Nothing could be leased before the wait ended (HTTP 204). */
    void (*nothing)(spw_group_poll *p);
    void *ctx;     /* the front end's */
    spw_stream *s; /* referenced */
    spw_group *g;
    uint32_t max, lease_ms; /* records; lease length */
    int64_t deadline_ms;    /* spw_mono_ns() in ms: park until then */
    char member[SPW_GROUP_MEMBER_MAX + 1];
    spw_groups_http *gh;        /* set by spw_groups_http_poll */
    struct spw_group_poll *next; /* the parked list */
};

/* The group gname of stream s for a poll: created on first use with every
 * partition starting at its oldest stored offset, or its end with latest,
 * and saved before anything is delivered. 0 and *out, or -E2BIG (more
 * than SPW_GROUP_PARTS_MAX partitions) or the save's -errno. */
int spw_groups_http_poll_group(spw_groups_http *gh, spw_stream *s, const char *gname, int latest, spw_group **out);
/* Damaged records (a read of the lease's partition failed with
 * SPW_ECORRUPT, bad the first offset after them) are skipped: the group's
 * committed offset and the lease move to bad, logged and counted
 * (spillway_group_damaged_skipped_total). 0, or -1 (bad not past l->from,
 * or the lease is gone: answer the error). A deliver callback then reads
 * again from l->from, at most SPW_GROUP_SKIPS_MAX times. */
#define SPW_GROUP_SKIPS_MAX 16
int spw_groups_http_skip_damaged(spw_group_poll *p, spw_lease *l, uint64_t bad);
/* Leases and delivers at once if a partition is ready, else parks p until
 * one is or its deadline passes. On p's loop. */
void spw_groups_http_poll(spw_groups_http *gh, spw_group_poll *p);
/* The registry, for lookups (spw_group_find without create). */
spw_groups *spw_groups_http_groups(spw_groups_http *gh);
/* After a commit applied in memory (spw_group_commit): saves g's file on
 * the waiter (one save covers every commit queued before it) and then
 * runs done(arg, 0 or the save's -errno) on loop through post. */
void spw_groups_http_commit_saved(spw_groups_http *gh, spw_group *g, void (*post)(void *, void (*)(void *), void *),
                                  void *loop, void (*done)(void *arg, int err), void *arg);

/* spillway_group_committed_offset and spillway_group_lag for the groups of
 * the streams who may see (NULL: all). */
void spw_groups_http_metrics(spw_groups_http *gh, spw_buf *b, const struct spw_token *who);

#endif
