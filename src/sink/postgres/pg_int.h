/*
 * The postgres sink's private interface, shared by its files (not for use
 * outside src/sink/postgres; the design is in postgres.c's opening
 * comment): the sink's state (pg), a shard's (pg_shard), a mapped
 * column's (pg_col), the built-in type OIDs COPY's binary format knows,
 * and the helpers one file defines and another calls. Every function runs
 * on the sink's worker thread (sink/sink.h), so none of this is locked.
 */
#ifndef SPW_SINK_PG_INT_H
#define SPW_SINK_PG_INT_H

#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/error.h"
#include "core/json.h"
#include "core/msg.h"
#include "core/opts.h"
#include "core/ring.h"
#include "sink/sink.h"

#define PG_COLS_MAX 64
#define PG_SHARDS_MAX 64
#define PG_LANES_MAX 16
#define PG_CONNINFO_MAX 1024
#define PG_PROGRESS_TABLE "spillway_sink_progress"
#define PG_PROGRESS_DDL                                                                                          \
    "SET client_min_messages = warning;"                                                                         \
    "CREATE TABLE IF NOT EXISTS " PG_PROGRESS_TABLE " (sink text NOT NULL, stream text NOT NULL,"                \
    " partition integer NOT NULL, shard integer NOT NULL, next_offset bigint NOT NULL,"                         \
    " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sink, stream, partition, shard));"            \
    "ALTER TABLE " PG_PROGRESS_TABLE " ADD COLUMN IF NOT EXISTS incarnation bigint NOT NULL DEFAULT 0"
/* How long spw__pg_interrupt waits for a cancel request (PQcancel, on its
 * own thread) before it stops waiting and says so. */
#define PG_CANCEL_WAIT_MS 2000

enum { SRC_PTR, SRC_KEY, SRC_TS, SRC_ID, SRC_PARTITION, SRC_OFFSET, SRC_VALUE };

typedef struct pg_col {
    char name[64];
    int src;
    spw_json_ptr ptr;
} pg_col;

/* What shard_begin sent (pg_deliver.c): nothing, COPY (two round trips),
 * or INSERT ... VALUES in one message with BEGIN and COMMIT (one). */
enum { PG_SENT_NONE, PG_SENT_COPY, PG_SENT_INSERT };

/* One connection to a shard. A shard has options.connections of them
 * (its lanes): lane l carries the partitions p with p % connections == l,
 * in transactions of its own, so PostgreSQL parses a group's rows on
 * several backends at once and a partition's rows stay in order on one
 * connection. Lane 0 is g->sh[si]; what is per shard (its conninfo, the
 * reshard's statements, the replication check) uses it. Progress rows
 * are per (partition, shard): lane p % connections writes partition p's. */
typedef struct pg_shard {
    char conninfo[PG_CONNINFO_MAX];
    uint32_t si;   /* the shard */
    uint32_t lane; /* which of its connections */
    PGconn *c;
    struct pg_cancel_run *cancel; /* c's cancel handle, for the stopping thread (under pg.cancel_mu) */
    int spw__pg_ready;   /* connected, progress table there, progress loaded */
    int checked; /* the user's table and columns were found */
    int binary;  /* COPY in binary format here (every column's type and source allow it) */
    int inflight; /* a transaction was sent (shard_begin) and its answer waits for shard_end: PG_SENT_* */
    /* its progress rows: partition if_part[i] moves to if_end[i] once committed */
    uint32_t *if_part;
    uint64_t *if_end;
    uint32_t nif, if_cap;
    uint32_t oid[PG_COLS_MAX]; /* each mapped column's type on this shard */
    uint8_t is_time[PG_COLS_MAX]; /* date/time category: $ts as ISO 8601 text */
    /* A COMMIT's wait for a synchronous standby was cancelled (a cancel,
     * the backend terminated): committed on this primary, maybe not on
     * the standby. Set by the connection's notice receiver and for every
     * new connection (the session before may have been lost mid-COMMIT);
     * cleared once a later commit's wait finished (spw__pg_ready): until
     * then nothing this shard wrote counts as replicated
     * (docs/operations.md "Replication"). */
    _Atomic int repl_unsure;
    uint64_t *next; /* per partition: what this shard holds (meaningful for this lane's partitions) */
    uint32_t nnext;
    /* begin_all's COPY, sent a piece at a time to each lane in turn:
     * the next row is w[cj].recs[ci]; copying while rows are left */
    uint32_t cj, ci;
    int copying;
} pg_shard;

typedef struct pg {
    char sink[128];
    char stream[130];
    char table[300];  /* as given */
    char qtable[620]; /* quoted */
    int text_only;    /* options.copy_format "text" */
    uint32_t statement_timeout_ms; /* options.statement_timeout_ms: every statement's bound (0: none) */
    uint32_t copy_min_rows;        /* options.copy_min_rows: a shard's share with fewer rows goes by INSERT */
    pthread_mutex_t cancel_mu;     /* guards the shards' cancel handles */
    _Atomic int stopping;          /* interrupted (sink/sink.h): connect nothing more */
    pg_col cols[PG_COLS_MAX];
    uint32_t ncols;
    pg_shard *sh;    /* the shards (lane 0 of each) */
    uint32_t nshards;
    uint32_t lanes;  /* connections per shard (options.connections once ln is made; 1 before) */
    uint32_t connections; /* options.connections as parsed */
    pg_shard *ln;    /* lanes 1.. of each shard: shard si's lane l is ln[si * (lanes - 1) + l - 1] */
    spw_ring ring;
    spw_buf copy, sql;
    char *tmp; /* unescaped JSON strings */
    size_t tmpcap;
    uint32_t *shard_of; /* each record's shard, window after window (pg_deliver.c route) */
    size_t shard_cap;
    size_t *woff; /* window j's first record in shard_of */
    uint32_t woff_cap;
    int res;       /* between spw__pg_begin and spw__pg_end: the window's answer so far (W_*) */
    uint64_t incarnation; /* the stream's (catalog/catalog.h), from spw__pg_position: progress rows carry it */
    char e1[512];  /* and its sentence */
    char pos_err[512]; /* why the last spw__pg_position failed */
    /* Resharding (pg_reshard.c; docs/api.md "Resharding a postgres
     * sink"): shards [0, from) are the old placement, [from, nshards) the
     * shards being added (from 0: not resharding). Before cutover a
     * record whose key moves is written to its old shard too (old_of). */
    uint32_t from;
    _Atomic int phase;         /* RS_* */
    _Atomic int in_window;     /* the worker is between a dual-writing begin and its end */
    spw_ring old_ring;         /* the ring of the old placement (from shards) */
    uint32_t *old_of;          /* per record of the window: its old shard, or UINT32_MAX */
    size_t old_cap;
    int dual_now;              /* this window dual-writes (old_of is filled) */
    uint32_t dual_moving;      /* records of this window whose key moves */
    _Atomic uint64_t moved_written; /* such records written (windows ended): verify runs again when it moves */
    uint32_t rs_rows_per_s;    /* options.reshard_rows_per_s */
    uint32_t rs_batch;         /* options.reshard_batch_rows */
    int rs_delete_moved;       /* options.reshard_delete_moved */
    int rs_pause;              /* options.reshard_pause_before: RS_* or 0 */
    struct pg_reshard *rs;     /* the reshard's thread and figures */
} pg;

/* Shard si's connection lane (0 <= lane < g->lanes). */
static inline pg_shard *spw__pg_lane(pg *g, uint32_t si, uint32_t lane)
{
    return lane == 0 ? &g->sh[si] : &g->ln[si * (g->lanes - 1) + lane - 1];
}

/* The connection of shard si that carries partition p. */
static inline pg_shard *spw__pg_conn(pg *g, uint32_t si, uint32_t p) { return spw__pg_lane(g, si, p % g->lanes); }

/* Every connection, k in [0, nshards * lanes). */
static inline pg_shard *spw__pg_conn_at(pg *g, uint32_t k) { return spw__pg_lane(g, k / g->lanes, k % g->lanes); }

/* Reshard phases, in order (docs/formats/sink-reshard.md). */
enum { RS_NONE, RS_DUAL_WRITE, RS_BACKFILL, RS_VERIFY, RS_CUTOVER, RS_DONE };
#define PG_RESHARD_TABLE "spillway_sink_reshard"

/* Does record i of the windows (shard_of's index: g->woff[j] + i) go to shard si (its owner, or before cutover
 * its old shard)? */
static inline int spw__pg_goes_to(const pg *g, uint32_t i, uint32_t si)
{
    return g->shard_of[i] == si || (g->dual_now && g->old_of[i] == si);
}

/*
 * Built-in type OIDs (stable across PostgreSQL versions: pg_type.dat).
 * A column of any other type (a domain included), or a source this
 * table does not list for its type, makes the shard's COPY text.
 */
enum {
    OID_INT8 = 20,
    OID_INT4 = 23,
    OID_TEXT = 25,
    OID_JSON = 114,
    OID_VARCHAR = 1043,
    OID_TIMESTAMP = 1114,
    OID_TIMESTAMPTZ = 1184,
    OID_JSONB = 3802,
};


/* postgres.c */
void spw__pg_quote_ident(spw_buf *b, const char *s, size_t n);
/* Appends p[0, n) escaped for COPY's text format (backslash, newline,
 * carriage return, tab); pg_rows.c. */
void spw__pg_copy_escape(spw_buf *b, const char *p, size_t n);

/* pg_conn.c */
void spw__pg_drop(pg *g, pg_shard *s);
void spw__pg_interrupt(void *st);
void spw__pg_pq_msg(char *err, size_t cap, const char *prefix, const char *msg);
int spw__pg_ensure_next(pg_shard *s, uint32_t partition);
int spw__pg_ready(pg *g, pg_shard *s, char *err, size_t cap);
int spw__pg_check_table(pg *g, pg_shard *s, char *err, size_t cap);
int spw__pg_replicates(void *st, char *why, size_t cap);
int spw__pg_position(void *st, uint64_t incarnation, uint32_t partition, uint64_t *next);
const char *spw__pg_position_error(void *st);

/* pg_rows.c */
void spw__pg_put_row_text(pg *g, const pg_shard *s, uint32_t partition, const spw_sink_rec *r);
void spw__pg_put_row_bin(pg *g, const pg_shard *s, uint32_t partition, const spw_sink_rec *r);
/* Appends "(v1, v2, ...)" to b: the row of record r as SQL literals for
 * INSERT ... VALUES (the texts of COPY's text format, quoted). -1 (b cut
 * back) when a text holds a NUL byte, which a statement cannot carry. */
int spw__pg_put_row_values(pg *g, const pg_shard *s, uint32_t partition, const spw_sink_rec *r, spw_buf *b);

/* pg_deliver.c */
int spw__pg_group_begin(void *st, const spw_sink_window *w, uint32_t nw, char *err, size_t cap);
int spw__pg_group_end(void *st, const spw_sink_window *w, uint32_t nw, char *err, size_t cap);
int spw__pg_begin(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                  size_t cap);
int spw__pg_end(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                size_t cap);
int spw__pg_commit(void *st, uint32_t partition, uint64_t next);
int spw__pg_rewind(void *st, uint32_t partition, uint64_t end);

/* pg_reshard.c */
/* Fills old_of (indexed as shard_of: g->woff[j] + i for w[j].recs[i]) for
 * the windows route() placed; sets in_window. */
void spw__pg_reshard_route(pg *g, const spw_sink_window *w, uint32_t nw, size_t total);
void spw__pg_reshard_window_end(pg *g);
int spw__pg_reshard_seed(pg *g, uint32_t partition, uint64_t *min);
void spw__pg_set_dir(void *st, const char *dir);
int spw__pg_change(void *st, const char *options, size_t len, char *err, size_t cap);
int spw__pg_unredact(void *st, const char *options, size_t len, spw_buf *out, char *err, size_t cap);
void spw__pg_status_json(void *st, spw_buf *b);
const char *spw__pg_phase(void *st);
int spw__pg_abort(void *st, const char *dir, const char *opts, size_t len, spw_buf *options, char *err, size_t cap);
void spw__pg_reshard_attached(pg *g); /* every partition's position was asked */
extern const spw_sink_kind spw_sink_kind_postgres;
void spw__pg_reshard_stop(pg *g); /* joins the reshard's thread (close, interrupt) */
void spw__pg_reshard_free(pg *g);

#endif
