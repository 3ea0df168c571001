/*
 * The consume service: consumer-group polls, commits and leases, for every
 * front end (HTTP in http/groups_http.c, the binary protocol in
 * bin/bin_group.c; docs/api.md "Consumer groups", docs/protocol.md
 * GROUP_POLL and GROUP_COMMIT). It knows no wire: a front end decodes a
 * request, hands the service a poll or a commit with callbacks that run on
 * its own loop, and encodes what the callbacks are given.
 *
 * A poll with nothing to lease is parked (the I/O loop goes on); one
 * thread, the group waiter, checks parked polls every SPW_GROUPS_TICK_MS
 * and at once when a commit, a park, a completed produce
 * (spw_consume_kick) or a durable end moving (the log's durable hook)
 * signals it, and hands a poll back to its loop (the poll's post) when a
 * partition could be leased or its wait ended. The same thread writes the
 * offsets files of committed groups (one save covers every commit queued
 * before it) and then answers those commits, so no fsync runs on an I/O
 * loop. A lease's answer reserves its room in the front end's budget of
 * unsent answers first (p->reserve), then its records are read on an I/O
 * worker (p->read; on the loop that answers without workers), through
 * the record cursor (log/cursor.h): durable records only, and damage is
 * skipped by the group, logged and counted (spw_consume_read_lease).
 *
 * Thread safety: every function may be called from any thread, except
 * start, stop and free (the server's main thread).
 */
#ifndef SPW_SVC_CONSUME_H
#define SPW_SVC_CONSUME_H

#include <stdatomic.h>
#include <stdint.h>

#include "core/buf.h"
#include "log/log.h"
#include "catalog/catalog.h"
#include "catalog/groups.h"

#define SPW_GROUPS_TICK_MS 10
#define SPW_GROUP_POLL_MAX_DEFAULT 100 /* records per poll */
#define SPW_GROUP_POLL_MAX_MAX 10000
#define SPW_GROUP_WAIT_MS_MAX 60000
#define SPW_GROUP_LEASE_MS_DEFAULT 30000
#define SPW_GROUP_LEASE_MS_MIN 100
#define SPW_GROUP_LEASE_MS_MAX 3600000

struct spw_token;
typedef struct spw_consume spw_consume;

/*
 * Loads DATA/groups (data_dir/groups), sets committed offsets past a
 * partition's end at open down to it (counting each in *clamped, may be
 * NULL; cat may be NULL: no streams), starts the waiter and sets log's
 * durable hook (log may be NULL). 0 and *out, or -errno.
 */
int spw_consume_start(const char *data_dir, spw_catalog *cat, spw_log *log, _Atomic uint64_t *clamped,
                      spw_consume **out);
/* Removes the log's durable hook, answers every parked poll ("nothing"),
 * saves and answers queued commits, and stops the waiter; later requests
 * are answered at once (a poll does not wait, a commit saves on the
 * calling loop). REQUIRES: the front ends' loops still run. Idempotent. */
void spw_consume_stop(spw_consume *cs);
/* Leases are read on io's workers from now on (core/workq.h; NULL: on the
 * loops). Clear it before destroying io. */
struct spw_workq;
void spw_consume_set_io(spw_consume *cs, struct spw_workq *io);
/* Frees. REQUIRES: stopped, and the front ends' loops stopped. */
void spw_consume_free(spw_consume *cs);

/* A produce completed: wakes the waiter if polls are parked. Any thread;
 * one atomic load when none is, at most one lock per waiter round. */
void spw_consume_kick(spw_consume *cs);

/* The registry, for lookups (spw_group_find without create). */
spw_groups *spw_consume_groups(spw_consume *cs);

/*
 * A poll, allocated by its front end (spw_xcalloc) and handed to
 * spw_consume_poll, which takes it over: exactly one of deliver or
 * nothing is called, on the poll's loop, and then the stream reference is
 * put and the poll freed (the callbacks must not keep it).
 */
typedef struct spw_group_poll spw_group_poll;
struct spw_group_poll {
    /* Runs fn(arg) on the poll's loop, from any thread. */
    void (*post)(void *loop, void (*fn)(void *arg), void *arg);
    void *loop;
    /* A lease on records of l->partition from l->from (l->to == l->from):
     * read them (spw_consume_read_lease), then spw_group_lease_delivered
     * before answering (a commit may arrive on another loop as soon as the
     * answer leaves), or spw_group_release and answer the error. */
    void (*deliver)(spw_group_poll *p, spw_lease *l);
    /* Optional: the read half of deliver (spw_consume_read_lease into the
     * front end's own buffer), run on an I/O worker (spw_consume_set_io)
     * before deliver runs on the loop with what it read; so a poll's disk
     * reads never run on a loop. NULL, or no workers: deliver reads. */
    void (*read)(spw_group_poll *p, spw_lease *l);
    /* Optional: the answer's room in the front end's budget of unsent
     * answers (net/conn.h), asked on the poll's loop as soon as a lease
     * is taken, BEFORE its records are read (on a worker or in deliver):
     * returns the bytes reserved, at most want (then the read's byte
     * limit, p->max_bytes; the front end gives them back when it
     * answers), or 0 when the budget is spent: the lease goes back at
     * once and busy answers instead of deliver. So polls read together
     * cannot each be allowed the same room, and no poll's answer passes
     * the budget (but by one record and its framing, as every read). */
    uint64_t (*reserve)(spw_group_poll *p, uint64_t want);
    void (*busy)(spw_group_poll *p);
    uint64_t max_bytes; /* the answer's records, at most: the front end's cap, cut by reserve */
    /* A new group (fresh, from spw_consume_poll_group) could not be saved:
     * answer the error (err: -errno). */
    void (*failed)(spw_group_poll *p, int err);
    int fresh; /* p->g was just created and is saved before anything is leased */
    int err;   /* the save's result (internal) */
    /* Nothing could be leased before the wait ended (HTTP 204). */
    void (*nothing)(spw_group_poll *p);
    void *ctx;     /* the front end's */
    spw_stream *s; /* referenced */
    spw_group *g;
    uint32_t max, lease_ms; /* records; lease length */
    int64_t deadline_ms;    /* spw_mono_ns() in ms: park until then */
    char member[SPW_GROUP_MEMBER_MAX + 1];
    spw_consume *cs;             /* set by spw_consume_poll */
    struct spw_group_poll *next; /* the parked list */
};

/* The group gname of stream s for a poll: created on first use with every
 * partition starting at its oldest stored offset, or its end with latest,
 * and saved before anything is delivered. 0 and *out, or -E2BIG (more
 * than SPW_GROUP_PARTS_MAX partitions) or the save's -errno. With fresh
 * not NULL the save is not made here: *fresh says the group was just
 * created, and the poll given it (p->fresh) saves it first — on an I/O
 * worker (spw_consume_set_io), since it is a file write and fsyncs. */
int spw_consume_poll_group(spw_consume *cs, spw_stream *s, const char *gname, int latest, spw_group **out,
                           int *fresh);
/* Leases and delivers at once if a partition is ready, else parks p until
 * one is or its deadline passes. On p's loop. */
void spw_consume_poll(spw_consume *cs, spw_group_poll *p);

/*
 * The records of lease l, read by the front end's read(arg, from, next,
 * bad) — records from `from` in its encoding, returning their count (> 0)
 * with *next one past the last, 0 for none, or an error (SPW_ECORRUPT
 * with *bad the offset to resume at, 0 if unknown: the record cursor's
 * damage rule). Damaged records (SPW_ECORRUPT with a known resume offset)
 * cannot be delivered to anyone: the group skips them — its committed
 * offset and the lease move to the resume offset, logged as an error and
 * counted (spillway_group_damaged_skipped_total) — and reads again from
 * there, at most SPW_GROUP_SKIPS_MAX times. Returns read's last answer:
 * the count (*next set), 0 (nothing readable after the damage yet: release
 * the lease, answer "nothing"), or the error (release the lease; for
 * SPW_ECORRUPT, *bad > l->from is the known resume offset).
 */
#define SPW_GROUP_SKIPS_MAX 16
int spw_consume_read_lease(spw_group_poll *p, spw_lease *l,
                           int (*read)(void *arg, uint64_t from, uint64_t *next, uint64_t *bad), void *arg,
                           uint64_t *next, uint64_t *bad);

/* After a commit applied in memory (spw_group_commit): saves g's file on
 * the waiter (one save covers every commit queued before it) and then
 * runs done(arg, 0 or the save's -errno) on loop through post. */
void spw_consume_commit_saved(spw_consume *cs, spw_group *g, void (*post)(void *, void (*)(void *), void *),
                              void *loop, void (*done)(void *arg, int err), void *arg);

/* A group's partitions as GET and the metrics show them: its state, the
 * partition's durable end, the lag. *out is allocated (spw_free); returns
 * how many (the group's partitions that the stream has). */
typedef struct spw_consume_part {
    spw_group_part_info info;
    uint64_t end; /* durable end */
    uint64_t lag; /* records still stored after the committed offset */
} spw_consume_part;
uint32_t spw_consume_view(spw_stream *s, spw_group *g, spw_consume_part **out);

/* spillway_group_committed_offset, spillway_group_lag and
 * spillway_group_damaged_skipped_total for the groups of the streams who
 * may see (NULL: all). */
void spw_consume_metrics(spw_consume *cs, spw_buf *b, const struct spw_token *who);

#endif
