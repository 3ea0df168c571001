/*
 * The binary protocol's private interface, shared by its files (not for
 * use outside src/bin): the connection (bconn) and loop (bloop) as the
 * binary protocol extends the connection core's (net/conn.h), the server,
 * and the helpers one file defines and another calls. binproto.c owns
 * connections, framing and the error answers; each request's handler
 * lives in its own file (bin_meta.c, bin_produce.c, bin_fetch.c,
 * bin_group.c) and is called by dispatch in binproto.c on the loop's
 * thread. A handler answers by appending to c->out (the caller flushes),
 * or, when it answers later, counts the request in c->inflight and
 * c->loop->inflight until it does.
 */
#ifndef SPW_BIN_INT_H
#define SPW_BIN_INT_H

#include "bin/binproto.h"
#include "net/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/name.h"
#include "core/error.h"
#include "core/invariant.h"
#include "core/id.h"
#include "core/json.h"
#include "core/msg.h"
#include "log/cursor.h"
#include "wire/frame.h"
#include "net/membudget.h"
#include "svc/auth.h"
#include "svc/consume.h"
#include "svc/metrics.h"
#include "svc/produce.h"
#include "svc/request.h"
#include "svc/status.h"

#define READ_CHUNK SPW_NET_READ_CHUNK
#define SMALL_READ SPW_NET_SMALL_READ
#define OUT_PAUSE_BYTES SPW_NET_OUT_PAUSE_BYTES
#define FETCH_DEFAULT_BYTES (1u << 20)
#define FETCH_MAX_BYTES (16u << 20)
#define RETRY_AFTER_MS 1000

typedef struct bloop bloop;

/* A connection: the core's fields (net/conn.h: fd, out, inflight,
 * closed, ...) by name, then the binary protocol's. */
typedef struct bconn {
    union {
        spw_netconn nc;
        struct {
            SPW_NETCONN_FIELDS
        };
    };
    bloop *loop; /* nc.nl as the binary protocol's loop */
    spw_buf in;  /* in.cap bytes are taken from the buffer budget */
    size_t in_off;
    int held; /* a PRODUCE waits, unread, for pressure to fall below the low watermark */
    uint64_t frame_start_ms;
    uint32_t last_whole; /* the last frame's size: the next one's buffer is reserved as large at once */
    char tenant[64]; /* set by authentication; "" when no tokens are configured */
    spw_auth_session auth; /* the AUTH login (svc/auth.h) */
    /* Answer bytes of FETCHes being built on the I/O workers: counted
     * with the unsent answers for the pause, so that pipelined FETCHes a
     * client does not read hold no more than OUT_PAUSE_BYTES past one. */
    size_t promised;
    /* an answer was added to out by a post of this round: flushed once,
     * after the round (bin_after_events), with every other one */
} bconn;

struct bloop {
    union {
        spw_netloop nl;
        struct {
            SPW_NETLOOP_FIELDS
        };
    };
    spw_bin_server *srv;
    uint32_t nheld;    /* connections held by pressure */
    int in_group_call; /* a group poll/commit may answer inside the call: no flush there */
};

struct spw_bin_server {
    spw_netsrv ns; /* loops, connections, drain (net/conn.h) */
    spw_bin_config cfg;
    spw_svc *svc;
    _Atomic uint64_t st_requests, st_rejected;
};

/* binproto.c */
uint64_t spw__bin_now_ms(void);
void spw__bin_loop_post(bloop *l, void (*fn)(void *), void *arg);
void spw__bin_conn_close(bconn *c);
void spw__bin_conn_flush(bconn *c);
/* Flushes c after the loop's current round of events: answers completed
 * together (a group commit's) leave in one send per connection. */
void spw__bin_conn_flush_soon(bconn *c);
void spw__bin_send_sc(bconn *c, uint8_t opcode, uint64_t id, spw_sc sc, uint32_t retry_after_ms, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
void spw__bin_send_damaged(bconn *c, uint8_t opcode, uint64_t id, uint32_t part, uint64_t from, uint64_t resume);

/* bin_meta.c */
void spw__bin_handle_auth(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);
int spw__bin_who(bconn *c, const spw_frame_hdr *h, const spw_token **who);
spw_stream *spw__bin_stream(bconn *c, const spw_frame_hdr *h, const char *name, size_t len, unsigned perms,
                             spw_sc *sc_out);
void spw__bin_handle_metadata(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);
void spw__bin_handle_stream_describe(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);
void spw__bin_handle_group_list(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);
void spw__bin_handle_group_reset(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);
void spw__bin_handle_stream_create(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);

/* bin_keys.c: KEY_EVENTS, SNAPSHOT_PUT */
void spw__bin_handle_key_events(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);
void spw__bin_handle_snapshot_put(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);

/* bin_views.c: VIEW_READ */
void spw__bin_handle_view_read(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);

/* bin_produce.c */
void spw__bin_handle_produce(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);

/* bin_fetch.c */
void spw__bin_handle_fetch(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);

/* bin_group.c */
void spw__bin_handle_group_poll(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);
void spw__bin_handle_group_commit(bconn *c, const spw_frame_hdr *h, const uint8_t *body, size_t len);

#endif
