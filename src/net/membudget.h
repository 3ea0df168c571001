/*
 * The budget of connection input memory (max-buffer-bytes, docs/operations.md
 * "Memory"): one counter, shared by every loop of the HTTP and the binary
 * listener, of the bytes held for requests still being read — request
 * bodies from their headers until the request is answered or its handler
 * has copied what it needs (spw_http_req_release_body), bytes read past a
 * pause, and binary frames being assembled.
 *
 * A connection that would take the budget past its limit is not read
 * (EPOLLIN off) until others give memory back: TCP flow control pushes
 * back on its client, and nothing is refused. It cannot wait forever:
 * every byte counted here belongs to a request that is either complete
 * (answered as the log drains) or still arriving, and a request that does
 * not arrive whole within request-timeout is answered 408 and its
 * connection closed, which gives its bytes back.
 *
 * Two ways to take: spw_membudget_take is all or nothing (a whole body or
 * frame is reserved before it is read, so a request that was let in never
 * needs more to finish: no two half-read requests wait on each other);
 * spw_membudget_room asks whether one more read fits, and what that read
 * leaves behind is added with spw_membudget_add. A connection that holds
 * none of the budget may still read a few KiB when it is full (the front
 * ends' SMALL_READ), so requests without a body — /healthz, /metrics, a
 * fetch — are never starved by big ones. So the counter passes the limit
 * by at most one read per I/O thread plus SMALL_READ per connection. All
 * calls are lock-free and callable from any thread; a NULL budget means
 * no limit.
 */
#ifndef SPW_MEMBUDGET_H
#define SPW_MEMBUDGET_H

#include <stdatomic.h>
#include <stdint.h>

typedef struct spw_membudget {
    uint64_t limit;
    _Atomic uint64_t used;
    _Atomic uint64_t peak;  /* highest used seen */
    _Atomic uint64_t waits; /* times a connection stopped reading for it */
} spw_membudget;

/* REQUIRES: limit > 0. */
void spw_membudget_init(spw_membudget *m, uint64_t limit);

/* Takes n bytes if used + n stays within the limit: 0, or SPW_EAGAIN and
 * nothing taken. */
int spw_membudget_take(spw_membudget *m, uint64_t n);
/* Takes min(want, room left) in one step (so two threads cannot both be
 * given the same room) and returns it: 0 when the budget is spent. */
uint64_t spw_membudget_take_upto(spw_membudget *m, uint64_t want);
/* Takes n bytes whatever the limit (bytes already in hand). */
void spw_membudget_add(spw_membudget *m, uint64_t n);
/* Gives n bytes back. REQUIRES: taken before. */
void spw_membudget_give(spw_membudget *m, uint64_t n);
/* Is there room for n more bytes now? */
int spw_membudget_room(const spw_membudget *m, uint64_t n);
/* Counts a connection that stopped reading for lack of room. */
void spw_membudget_waited(spw_membudget *m);

typedef struct spw_membudget_stats {
    uint64_t limit, used, peak, waits;
} spw_membudget_stats;
void spw_membudget_stats_get(const spw_membudget *m, spw_membudget_stats *st);

#endif
