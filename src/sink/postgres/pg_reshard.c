/*
 * Resharding a postgres sink online (docs/api.md "Resharding a postgres
 * sink"; the state file is docs/formats/sink-reshard.md). A PUT of the
 * sink whose options.shards is the running list with shards appended
 * (spw__pg_change) writes DATA/sinks/NAME/reshard {from, to, phase
 * dual_write}; the sink then runs with every shard and goes through:
 *
 *   dual_write  a record whose key the new ring gives to a new shard is
 *               written to that shard and to its old one (each shard's
 *               own progress row keeps it exactly once there). At attach
 *               (spw__pg_reshard_seed) each new shard gets, per
 *               partition, a progress row at the boundary B = the lowest
 *               old shard's position, and per old shard a cursor row in
 *               spillway_sink_reshard (boundary B, copied 0), in one
 *               transaction: records at or past B reach the new shard by
 *               the dual writes, the earlier ones are the backfill's.
 *   backfill    per (new shard, old shard, partition): the old shard's
 *               rows with offset in [copied, B), in batches of
 *               reshard_batch_rows by offset, those whose key moves to
 *               the new shard copied there; each batch deletes that
 *               range's rows of those keys first and moves the cursor in
 *               the same transaction, so a batch copied twice (a crash,
 *               a verify that sends the range back) is not doubled. At
 *               most reshard_rows_per_s rows a second.
 *   verify      per range, per moving key, the row count and the sum of
 *               offsets below min(old shard's position, new shard's
 *               position), old vs new; a difference is shown and that
 *               range goes back to backfill from its start. Held before
 *               cutover, it runs again only when dual writes wrote rows
 *               of moving keys (moved_written) or RS_VERIFY_HELD_MS on.
 *   cutover     written first, then the worker writes the new placement
 *               only (the thread waits for a dual-writing window in
 *               flight to end); with reshard_delete_moved the moved keys'
 *               rows are deleted from the old shards; then done.
 *
 * reshard_pause_before holds the reshard before a phase (to check before
 * cutover, say). The figures GET shows are written with every phase (the
 * state file), so a restart, and done, keep them. A PUT of the definition
 * as GET shows it (shard passwords "[redacted]") keeps the running
 * shards' strings (spw__pg_unredact). Before cutover, POST /v1/sinks/NAME/reshard/abort
 * (spw__pg_abort, on a state of its own while the sink is stopped) deletes
 * on each new shard, in one transaction, the rows of the keys the new ring
 * gives it, its progress and cursor rows, and answers the options with the
 * old shards; the sink then runs with those.
 *
 * Rows are found by the columns mapping $key, $partition and $offset
 * (required to reshard); an index on (partition column, offset column) on
 * every shard keeps the batches cheap. The thread has connections of its
 * own; its statements are bounded by statement_timeout and it checks for
 * a stop between them.
 */
#include "sink/postgres/pg_int.h"

#include "core/clock.h"
#include "core/thread.h"
#include "os/os.h"

#include <stdarg.h>
#include <unistd.h>

/* While held before cutover (reshard_pause_before), verify runs again
 * after rows of moving keys are written, else at this period. */
#define RS_VERIFY_HELD_MS 30000u

static const char *const phase_names[] = {"none", "dual_write", "backfill", "verify", "cutover", "done", NULL};

typedef struct rs_range {
    uint32_t ns, os, part;
    uint64_t boundary, copied;
} rs_range;

typedef struct pg_reshard {
    char dir[4200];
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;           /* under mu */
    _Atomic int attached; /* every partition's position was asked (rewind follows them) */
    uint32_t from, to;  /* from the state file (also when done) */
    int kcol, pcol, ocol;
    PGconn *c[PG_SHARDS_MAX];
    rs_range *r;
    uint32_t nr;
    /* shown by GET, under mu */
    uint64_t scanned, copied, total, deleted;
    uint64_t v_keys, v_rows, v_bad, v_runs, v_repaired;
    uint32_t shown_nr, shown_done; /* the backfill's ranges, and those copied to their boundary */
    char v_first[300];
    char err[400];
    int totals_known;
    uint64_t t0_ns, copied_run; /* the rate limit's clock */
    int64_t started_ms, finished_ms; /* wall clock, from the state file (under mu) */
} pg_reshard;

/* ---- the state file ---- */

/* The figures GET shows, kept in the state file at every phase written
 * so that they outlive restarts (cutover's among them). */
typedef struct rs_figs {
    int64_t started_ms, finished_ms; /* wall clock; finished 0 until done */
    int64_t copied, scanned, total;  /* total -1: not counted yet */
    int64_t ranges, ranges_done;
    int64_t v_runs, v_keys, v_rows, v_bad, v_repaired;
    int64_t deleted;
} rs_figs;

typedef struct rs_state {
    uint32_t version, from, to;
    int phase;
    rs_figs f;
} rs_state;

#define FIG(nm, field, lo)                                                                                         \
    {.name = nm, .type = SPW_OPT_INT, .off = offsetof(rs_state, f.field), .size = 8, .def = lo, .min = lo,      \
     .max = INT64_MAX}

static const spw_opt state_opts[] = {
    {.name = "version", .type = SPW_OPT_INT, .off = offsetof(rs_state, version), .size = 4, .min = 1, .max = 1,
     .flags = SPW_OPT_REQUIRED},
    {.name = "from_shards", .type = SPW_OPT_INT, .off = offsetof(rs_state, from), .size = 4, .min = 1,
     .max = PG_SHARDS_MAX, .flags = SPW_OPT_REQUIRED},
    {.name = "to_shards", .type = SPW_OPT_INT, .off = offsetof(rs_state, to), .size = 4, .min = 2,
     .max = PG_SHARDS_MAX, .flags = SPW_OPT_REQUIRED},
    {.name = "phase", .type = SPW_OPT_ENUM, .off = offsetof(rs_state, phase), .choices = phase_names,
     .flags = SPW_OPT_REQUIRED},
    /* optional (files written before they existed have none: 0, total -1) */
    FIG("started_ms", started_ms, 0),
    FIG("finished_ms", finished_ms, 0),
    FIG("copied", copied, 0),
    FIG("scanned", scanned, 0),
    FIG("total", total, -1),
    FIG("ranges", ranges, 0),
    FIG("ranges_done", ranges_done, 0),
    FIG("verify_runs", v_runs, 0),
    FIG("verify_keys", v_keys, 0),
    FIG("verify_rows", v_rows, 0),
    FIG("mismatched_keys", v_bad, 0),
    FIG("repaired_keys", v_repaired, 0),
    FIG("deleted", deleted, 0),
};

/* 0 with *st, -ENOENT, or another error (a sentence in err). */
static int state_load(const char *dir, rs_state *st, char *err, size_t cap)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/reshard", dir);
    char *text;
    size_t len;
    int r = spw_os_read_file(path, 4096, &text, &len);
    if (r < 0) {
        snprintf(err, cap, "reading %s: %s", path, spw_strerror(r));
        return r;
    }
    memset(st, 0, sizeof *st);
    r = spw_opts_parse(state_opts, sizeof state_opts / sizeof state_opts[0], "reshard", "reshard state", text, len,
                       NULL, st, NULL, err, cap);
    spw_free(text);
    if (r == 0 && (st->from >= st->to || st->phase == RS_NONE)) {
        snprintf(err, cap, "%s: from_shards must be below to_shards and phase not none", path);
        r = -1;
    }
    return r < 0 ? SPW_ECORRUPT : 0;
}

static int state_save(const char *dir, uint32_t from, uint32_t to, int phase, const rs_figs *f)
{
    char b[1024];
    int n = snprintf(b, sizeof b,
                     "{\"version\":1,\"from_shards\":%u,\"to_shards\":%u,\"phase\":\"%s\",\"started_ms\":%" PRId64
                     ",\"finished_ms\":%" PRId64 ",\"copied\":%" PRId64 ",\"scanned\":%" PRId64
                     ",\"total\":%" PRId64 ",\"ranges\":%" PRId64 ",\"ranges_done\":%" PRId64
                     ",\"verify_runs\":%" PRId64 ",\"verify_keys\":%" PRId64 ",\"verify_rows\":%" PRId64
                     ",\"mismatched_keys\":%" PRId64 ",\"repaired_keys\":%" PRId64 ",\"deleted\":%" PRId64 "}\n",
                     from, to, phase_names[phase], f->started_ms, f->finished_ms, f->copied, f->scanned, f->total,
                     f->ranges, f->ranges_done, f->v_runs, f->v_keys, f->v_rows, f->v_bad, f->v_repaired,
                     f->deleted);
    return spw_os_write_file_atomic(dir, "reshard", "reshard.tmp", b, (size_t)n, SPW_OS_SYNC_FULL);
}

static int find_col(const pg *g, int src)
{
    for (uint32_t i = 0; i < g->ncols; i++)
        if (g->cols[i].src == src)
            return (int)i;
    return -1;
}

/* ---- the worker's part ---- */

void spw__pg_reshard_route(pg *g, const spw_sink_window *w, uint32_t nw, size_t total)
{
    g->dual_now = 0;
    if (!g->from)
        return;
    /* in_window before the phase is read: the thread stores cutover, then
     * reads in_window, so either this window sees cutover or the thread
     * waits for it (both seq_cst) */
    atomic_store(&g->in_window, 1);
    if (atomic_load(&g->phase) >= RS_CUTOVER) {
        atomic_store(&g->in_window, 0);
        return;
    }
    if (g->old_cap < total) {
        g->old_cap = total;
        g->old_of = spw_xrealloc(g->old_of, total * sizeof *g->old_of);
    }
    uint32_t moving = 0;
    for (uint32_t j = 0; j < nw; j++) {
        const spw_sink_rec *recs = w[j].recs;
        size_t at = g->woff[j];
        for (uint32_t i = 0; i < w[j].n; i++) {
            int moves = g->shard_of[at + i] >= g->from;
            moving += (uint32_t)moves;
            g->old_of[at + i] =
                moves ? spw_ring_shard(&g->old_ring, recs[i].key, recs[i].key_len > 0 ? (size_t)recs[i].key_len : 0)
                      : UINT32_MAX;
        }
    }
    g->dual_moving = moving;
    g->dual_now = 1;
}

void spw__pg_reshard_window_end(pg *g)
{
    if (!g->from)
        return;
    if (g->dual_now && g->dual_moving) /* committed or not: at worst one verify more */
        atomic_fetch_add(&g->moved_written, g->dual_moving);
    atomic_store(&g->in_window, 0);
}

/* A statement's failure as the sentence: 0 or -1. */
static int ok_or(PGresult *r, ExecStatusType want, char *err, size_t cap, const char *what)
{
    int ok = PQresultStatus(r) == want;
    if (!ok)
        spw__pg_pq_msg(err, cap, what, PQresultErrorMessage(r));
    return ok ? 0 : -1;
}

#define RESHARD_DDL                                                                                              \
    "SET client_min_messages = warning; CREATE TABLE IF NOT EXISTS " PG_RESHARD_TABLE " (sink text NOT NULL,"   \
    " stream text NOT NULL, partition integer NOT NULL, shard integer NOT NULL, from_shard integer NOT NULL,"    \
    " boundary bigint NOT NULL, copied bigint NOT NULL, PRIMARY KEY (sink, stream, partition, shard, from_shard))"

int spw__pg_reshard_seed(pg *g, uint32_t partition, uint64_t *min)
{
    if (atomic_load(&g->phase) >= RS_CUTOVER)
        return 0;
    uint64_t b = UINT64_MAX;
    for (uint32_t os = 0; os < g->from; os++)
        if (g->sh[os].next[partition] < b)
            b = g->sh[os].next[partition];
    char ps[16], nss[16], bs[24], inc[24];
    snprintf(ps, sizeof ps, "%u", partition);
    snprintf(bs, sizeof bs, "%" PRIu64, b);
    snprintf(inc, sizeof inc, "%" PRIu64, g->incarnation);
    for (uint32_t ns = g->from; ns < g->nshards; ns++) {
        pg_shard *s = &g->sh[ns];
        snprintf(nss, sizeof nss, "%u", ns);
        PGresult *r = PQexec(s->c, RESHARD_DDL);
        int bad = ok_or(r, PGRES_COMMAND_OK, g->pos_err, sizeof g->pos_err, "creating " PG_RESHARD_TABLE);
        PQclear(r);
        if (bad)
            goto fail;
        const char *p3[] = {g->sink, g->stream, ps, nss};
        r = PQexecParams(s->c,
                         "SELECT 1 FROM " PG_RESHARD_TABLE
                         " WHERE sink = $1 AND stream = $2 AND partition = $3 AND shard = $4 LIMIT 1",
                         4, NULL, p3, NULL, NULL, 0);
        bad = ok_or(r, PGRES_TUPLES_OK, g->pos_err, sizeof g->pos_err, "reading " PG_RESHARD_TABLE);
        int have = !bad && PQntuples(r) > 0;
        PQclear(r);
        if (bad)
            goto fail;
        if (have)
            continue;
        /* progress row at the boundary and a cursor per old shard, together */
        r = PQexec(s->c, "BEGIN");
        bad = ok_or(r, PGRES_COMMAND_OK, g->pos_err, sizeof g->pos_err, "seeding the new shard");
        PQclear(r);
        const char *p6[] = {g->sink, g->stream, ps, nss, bs, inc};
        if (!bad) {
            r = PQexecParams(s->c,
                             "INSERT INTO " PG_PROGRESS_TABLE
                             " (sink, stream, partition, shard, next_offset, incarnation) VALUES ($1, $2, $3, $4, $5, $6)"
                             " ON CONFLICT (sink, stream, partition, shard) DO UPDATE SET"
                             " next_offset = EXCLUDED.next_offset, incarnation = EXCLUDED.incarnation, updated_at = now()",
                             6, NULL, p6, NULL, NULL, 0);
            bad = ok_or(r, PGRES_COMMAND_OK, g->pos_err, sizeof g->pos_err, "seeding the new shard's progress");
            PQclear(r);
        }
        for (uint32_t os = 0; os < g->from && !bad; os++) {
            char oss[16];
            snprintf(oss, sizeof oss, "%u", os);
            const char *p5[] = {g->sink, g->stream, ps, nss, oss, bs};
            r = PQexecParams(s->c,
                             "INSERT INTO " PG_RESHARD_TABLE
                             " (sink, stream, partition, shard, from_shard, boundary, copied)"
                             " VALUES ($1, $2, $3, $4, $5, $6, 0) ON CONFLICT DO NOTHING",
                             6, NULL, p5, NULL, NULL, 0);
            bad = ok_or(r, PGRES_COMMAND_OK, g->pos_err, sizeof g->pos_err, "seeding the backfill cursors");
            PQclear(r);
        }
        r = PQexec(s->c, bad ? "ROLLBACK" : "COMMIT");
        if (!bad)
            bad = ok_or(r, PGRES_COMMAND_OK, g->pos_err, sizeof g->pos_err, "seeding the new shard: COMMIT");
        PQclear(r);
        if (bad)
            goto fail;
        spw__pg_ensure_next(s, partition);
        s->next[partition] = b;
        spw_info("sink %s: reshard: shard %u takes partition %u's records from offset %" PRIu64
                 " (earlier ones are backfilled)",
                 g->sink, ns, partition, b);
    }
    uint64_t m = UINT64_MAX;
    for (uint32_t i = 0; i < g->nshards; i++)
        if (g->sh[i].next[partition] < m)
            m = g->sh[i].next[partition];
    *min = m;
    return 0;
fail:
    spw_warn("sink %s: reshard: shard %u: %s", g->sink, g->from, g->pos_err);
    for (uint32_t ns = g->from; ns < g->nshards; ns++)
        for (uint32_t l = 0; l < g->lanes; l++)
            spw__pg_drop(g, spw__pg_lane(g, ns, l));
    return -1;
}

/* ---- the reshard's thread ---- */

static int rs_stopping(pg *g)
{
    pg_reshard *rs = g->rs;
    pthread_mutex_lock(&rs->mu);
    int s = rs->stop;
    pthread_mutex_unlock(&rs->mu);
    return s || atomic_load(&g->stopping);
}

/* Waits up to ms or until stopped; returns whether stopped. */
static int rs_nap(pg *g, uint64_t ms)
{
    pg_reshard *rs = g->rs;
    uint64_t until = spw_mono_ns() + ms * 1000000u;
    pthread_mutex_lock(&rs->mu);
    while (!rs->stop && spw_cond_wait_until(&rs->cv, &rs->mu, until) == 0) {
    }
    int s = rs->stop;
    pthread_mutex_unlock(&rs->mu);
    return s || atomic_load(&g->stopping);
}

static void rs_error(pg *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rs_error(pg *g, const char *fmt, ...)
{
    pg_reshard *rs = g->rs;
    char e[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e, sizeof e, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&rs->mu);
    int same = strcmp(rs->err, e) == 0;
    snprintf(rs->err, sizeof rs->err, "%s", e);
    pthread_mutex_unlock(&rs->mu);
    if (!same)
        spw_warn("sink %s: reshard: %s", g->sink, e);
}

static PGconn *rs_connect(pg *g, const char *conninfo, char *err, size_t cap)
{
    const char *keys[] = {"connect_timeout", "keepalives", "dbname", "client_encoding", NULL};
    const char *vals[] = {"5", "1", conninfo, "UTF8", NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        spw__pg_pq_msg(err, cap, "connecting", c ? PQerrorMessage(c) : "out of memory");
        if (c)
            PQfinish(c);
        return NULL;
    }
    char sql[96];
    snprintf(sql, sizeof sql, "SET statement_timeout = %" PRIu32, g->statement_timeout_ms);
    PGresult *r = PQexec(c, sql);
    int bad = ok_or(r, PGRES_COMMAND_OK, err, cap, "setting statement_timeout");
    PQclear(r);
    if (bad) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* The thread's connection to shard si, made if needed: NULL with the error said. */
static PGconn *conn(pg *g, uint32_t si)
{
    pg_reshard *rs = g->rs;
    if (rs->c[si] && PQstatus(rs->c[si]) != CONNECTION_OK) {
        PQfinish(rs->c[si]);
        rs->c[si] = NULL;
    }
    if (!rs->c[si]) {
        char e[300];
        rs->c[si] = rs_connect(g, g->sh[si].conninfo, e, sizeof e);
        if (!rs->c[si])
            rs_error(g, "shard %u: %s", si, e);
    }
    return rs->c[si];
}

static void drop_conn(pg *g, uint32_t si)
{
    if (g->rs->c[si])
        PQfinish(g->rs->c[si]);
    g->rs->c[si] = NULL;
}

/* Every cursor row of every new shard: 0, or -1 (said). */
static int load_ranges(pg *g)
{
    pg_reshard *rs = g->rs;
    rs->nr = 0;
    for (uint32_t ns = g->from; ns < g->nshards; ns++) {
        PGconn *c = conn(g, ns);
        if (!c)
            return -1;
        char e[300];
        PGresult *r = PQexec(c, RESHARD_DDL);
        int bad = ok_or(r, PGRES_COMMAND_OK, e, sizeof e, "creating " PG_RESHARD_TABLE);
        PQclear(r);
        if (bad) {
            rs_error(g, "shard %u: %s", ns, e);
            drop_conn(g, ns);
            return -1;
        }
        const char *p[] = {g->sink, g->stream};
        r = PQexecParams(c,
                         "SELECT partition, shard, from_shard, boundary, copied FROM " PG_RESHARD_TABLE
                         " WHERE sink = $1 AND stream = $2 ORDER BY partition, from_shard",
                         2, NULL, p, NULL, NULL, 0);
        if (ok_or(r, PGRES_TUPLES_OK, e, sizeof e, "reading " PG_RESHARD_TABLE) < 0) {
            PQclear(r);
            rs_error(g, "shard %u: %s", ns, e);
            drop_conn(g, ns);
            return -1;
        }
        int n = PQntuples(r);
        rs->r = spw_xrealloc(rs->r, (size_t)(rs->nr + (uint32_t)n + 1) * sizeof *rs->r);
        for (int i = 0; i < n; i++) {
            rs_range *x = &rs->r[rs->nr];
            x->part = (uint32_t)atol(PQgetvalue(r, i, 0));
            x->ns = (uint32_t)atol(PQgetvalue(r, i, 1));
            x->os = (uint32_t)atol(PQgetvalue(r, i, 2));
            x->boundary = strtoull(PQgetvalue(r, i, 3), NULL, 10);
            x->copied = strtoull(PQgetvalue(r, i, 4), NULL, 10);
            if (x->ns == ns && x->os < g->from)
                rs->nr++;
        }
        PQclear(r);
    }
    return 0;
}

/* Appends the column list "a", "b", ... (as_text: "a"::text AS c0, ...:
 * renamed, so that ORDER BY "a" in the same statement means the table's
 * column, not the text output column of that name). */
static void put_cols(pg *g, spw_buf *q, int as_text)
{
    for (uint32_t c = 0; c < g->ncols; c++) {
        if (c)
            spw_buf_puts(q, ", ");
        spw__pg_quote_ident(q, g->cols[c].name, strlen(g->cols[c].name));
        if (as_text) {
            char alias[32];
            snprintf(alias, sizeof alias, "::text AS c%u", c);
            spw_buf_puts(q, alias);
        }
    }
}

static void put_col(pg *g, spw_buf *q, int c)
{
    spw__pg_quote_ident(q, g->cols[c].name, strlen(g->cols[c].name));
}

/* " FROM table WHERE partition = $1 AND offset < $2", or with range
 * "... AND offset >= $2 AND offset < $3": a partition's rows below a
 * boundary, or in [from, to). */
static void put_from_where(pg *g, spw_buf *q, int range)
{
    pg_reshard *rs = g->rs;
    spw_buf_puts(q, " FROM ");
    spw_buf_puts(q, g->qtable);
    spw_buf_puts(q, " WHERE ");
    put_col(g, q, rs->pcol);
    spw_buf_puts(q, " = $1 AND ");
    put_col(g, q, rs->ocol);
    if (range) {
        spw_buf_puts(q, " >= $2 AND ");
        put_col(g, q, rs->ocol);
        spw_buf_puts(q, " < $3");
    } else {
        spw_buf_puts(q, " < $2");
    }
}

/* Appends s to a PostgreSQL array literal's elements. */
static void put_array_elem(spw_buf *a, const char *s, size_t n)
{
    spw_buf_puts(a, a->len > 1 ? ",\"" : "\"");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"' || s[i] == '\\')
            spw_buf_puts(a, "\\");
        spw_buf_put(a, s + i, 1);
    }
    spw_buf_puts(a, "\"");
}

/* One batch of range x: 1 copied (more may follow), 0 the range is done, -1 error (said). */
static int copy_batch(pg *g, rs_range *x)
{
    pg_reshard *rs = g->rs;
    if (x->copied >= x->boundary)
        return 0;
    PGconn *oc = conn(g, x->os), *nc = oc ? conn(g, x->ns) : NULL;
    if (!nc)
        return -1;
    char e[300];
    spw_buf q = SPW_BUF_INIT;
    spw_buf_puts(&q, "SELECT ");
    put_cols(g, &q, 1);
    put_from_where(g, &q, 1);
    spw_buf_puts(&q, " ORDER BY ");
    put_col(g, &q, rs->ocol);
    spw_buf_puts(&q, " LIMIT $4");
    spw_buf_put(&q, "", 1);
    char ps[16], lo[24], hi[24], lim[16];
    snprintf(ps, sizeof ps, "%u", x->part);
    snprintf(lo, sizeof lo, "%" PRIu64, x->copied);
    snprintf(hi, sizeof hi, "%" PRIu64, x->boundary);
    snprintf(lim, sizeof lim, "%u", g->rs_batch);
    const char *p4[] = {ps, lo, hi, lim};
    PGresult *r = PQexecParams(oc, (const char *)q.p, 4, NULL, p4, NULL, NULL, 0);
    spw_buf_fini(&q);
    if (ok_or(r, PGRES_TUPLES_OK, e, sizeof e, "reading rows to copy") < 0) {
        PQclear(r);
        rs_error(g, "shard %u: %s", x->os, e);
        drop_conn(g, x->os);
        return -1;
    }
    int n = PQntuples(r);
    uint64_t next = x->boundary;
    if ((uint32_t)n == g->rs_batch)
        next = strtoull(PQgetvalue(r, n - 1, rs->ocol), NULL, 10) + 1;
    spw_buf rows = SPW_BUF_INIT, keys = SPW_BUF_INIT;
    spw_buf_puts(&keys, "{");
    uint32_t moving = 0;
    for (int i = 0; i < n; i++) {
        const char *k = PQgetvalue(r, i, rs->kcol);
        size_t kl = PQgetisnull(r, i, rs->kcol) ? 0 : strlen(k);
        if (spw_ring_shard(&g->ring, k, kl) != x->ns)
            continue;
        moving++;
        if (!PQgetisnull(r, i, rs->kcol))
            put_array_elem(&keys, k, kl);
        for (uint32_t c = 0; c < g->ncols; c++) {
            if (c)
                spw_buf_puts(&rows, "\t");
            if (PQgetisnull(r, i, (int)c))
                spw_buf_puts(&rows, "\\N");
            else
                spw__pg_copy_escape(&rows, PQgetvalue(r, i, (int)c), (size_t)PQgetlength(r, i, (int)c));
        }
        spw_buf_puts(&rows, "\n");
    }
    PQclear(r);
    spw_buf_puts(&keys, "}");
    spw_buf_put(&keys, "", 1);
    /* on the new shard: this range's rows of these keys (a batch copied
     * before), the cursor, the rows: one transaction */
    char nx[24], nss[16], oss[16];
    snprintf(nx, sizeof nx, "%" PRIu64, next);
    snprintf(nss, sizeof nss, "%u", x->ns);
    snprintf(oss, sizeof oss, "%u", x->os);
    int bad = 0;
    r = PQexec(nc, "BEGIN");
    bad = ok_or(r, PGRES_COMMAND_OK, e, sizeof e, "BEGIN");
    PQclear(r);
    if (!bad && moving) {
        spw_buf_puts(&q, "DELETE");
        put_from_where(g, &q, 1);
        spw_buf_puts(&q, " AND (");
        put_col(g, &q, rs->kcol);
        spw_buf_puts(&q, "::text = ANY ($4::text[]) OR ");
        put_col(g, &q, rs->kcol);
        spw_buf_puts(&q, " IS NULL)");
        spw_buf_put(&q, "", 1);
        const char *pd[] = {ps, lo, nx, (const char *)keys.p};
        r = PQexecParams(nc, (const char *)q.p, 4, NULL, pd, NULL, NULL, 0);
        spw_buf_fini(&q);
        bad = ok_or(r, PGRES_COMMAND_OK, e, sizeof e, "clearing the range");
        PQclear(r);
    }
    if (!bad) {
        const char *pu[] = {g->sink, g->stream, ps, nss, oss, nx};
        r = PQexecParams(nc,
                         "UPDATE " PG_RESHARD_TABLE " SET copied = $6 WHERE sink = $1 AND stream = $2 AND"
                         " partition = $3 AND shard = $4 AND from_shard = $5",
                         6, NULL, pu, NULL, NULL, 0);
        bad = ok_or(r, PGRES_COMMAND_OK, e, sizeof e, "moving the backfill cursor");
        PQclear(r);
    }
    if (!bad && moving) {
        spw_buf_puts(&q, "COPY ");
        spw_buf_puts(&q, g->qtable);
        spw_buf_puts(&q, " (");
        put_cols(g, &q, 0);
        spw_buf_puts(&q, ") FROM STDIN");
        spw_buf_put(&q, "", 1);
        r = PQexec(nc, (const char *)q.p);
        spw_buf_fini(&q);
        bad = ok_or(r, PGRES_COPY_IN, e, sizeof e, "COPY");
        PQclear(r);
        if (!bad && (PQputCopyData(nc, (const char *)rows.p, (int)rows.len) != 1 || PQputCopyEnd(nc, NULL) != 1)) {
            spw__pg_pq_msg(e, sizeof e, "COPY data", PQerrorMessage(nc));
            bad = 1;
        }
        if (!bad) {
            r = PQgetResult(nc);
            bad = ok_or(r, PGRES_COMMAND_OK, e, sizeof e, "COPY");
            PQclear(r);
            while ((r = PQgetResult(nc)))
                PQclear(r);
        }
    }
    if (!bad) {
        r = PQexec(nc, "COMMIT");
        bad = ok_or(r, PGRES_COMMAND_OK, e, sizeof e, "COMMIT");
        PQclear(r);
    }
    spw_buf_fini(&rows);
    spw_buf_fini(&keys);
    if (bad) {
        rs_error(g, "shard %u: copying from shard %u: %s", x->ns, x->os, e);
        drop_conn(g, x->ns); /* the transaction's outcome: read the cursor again */
        return -1;
    }
    x->copied = next;
    pthread_mutex_lock(&rs->mu);
    rs->scanned += (uint64_t)n;
    rs->copied += moving;
    rs->err[0] = 0;
    pthread_mutex_unlock(&rs->mu);
    rs->copied_run += moving;
    return 1;
}

/* One number from a query with parameters, or -1 (said). */
static int64_t num(pg *g, uint32_t si, const char *sql, int np, const char *const *p)
{
    PGconn *c = conn(g, si);
    if (!c)
        return -1;
    PGresult *r = PQexecParams(c, sql, np, NULL, p, NULL, NULL, 0);
    char e[300];
    if (ok_or(r, PGRES_TUPLES_OK, e, sizeof e, "counting") < 0 || PQntuples(r) != 1) {
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            snprintf(e, sizeof e, "counting: no row");
        PQclear(r);
        rs_error(g, "shard %u: %s", si, e);
        drop_conn(g, si);
        return -1;
    }
    int64_t v = PQgetisnull(r, 0, 0) ? 0 : strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* The rows each range's backfill reads (old shard, below the boundary) and those already copied. */
static int count_totals(pg *g)
{
    pg_reshard *rs = g->rs;
    uint64_t total = 0, scanned = 0;
    for (uint32_t i = 0; i < rs->nr; i++) {
        rs_range *x = &rs->r[i];
        spw_buf q = SPW_BUF_INIT;
        spw_buf_puts(&q, "SELECT count(*), count(*) FILTER (WHERE ");
        put_col(g, &q, rs->ocol);
        spw_buf_puts(&q, " < $3)");
        put_from_where(g, &q, 0);
        spw_buf_put(&q, "", 1);
        char ps[16], b[24], c[24];
        snprintf(ps, sizeof ps, "%u", x->part);
        snprintf(b, sizeof b, "%" PRIu64, x->boundary);
        snprintf(c, sizeof c, "%" PRIu64, x->copied);
        const char *p[] = {ps, b, c};
        PGconn *oc = conn(g, x->os);
        if (!oc) {
            spw_buf_fini(&q);
            return -1;
        }
        PGresult *r = PQexecParams(oc, (const char *)q.p, 3, NULL, p, NULL, NULL, 0);
        spw_buf_fini(&q);
        char e[300];
        if (ok_or(r, PGRES_TUPLES_OK, e, sizeof e, "counting the rows to copy") < 0) {
            PQclear(r);
            rs_error(g, "shard %u: %s", x->os, e);
            drop_conn(g, x->os);
            return -1;
        }
        total += strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        scanned += strtoull(PQgetvalue(r, 0, 1), NULL, 10);
        PQclear(r);
    }
    uint64_t copied = 0;
    for (uint32_t ns = g->from; ns < g->nshards; ns++) {
        /* rows below the boundaries on a new shard are the backfill's */
        for (uint32_t i = 0; i < rs->nr; i++) {
            rs_range *x = &rs->r[i];
            if (x->ns != ns || x->os != 0)
                continue;
            spw_buf q = SPW_BUF_INIT;
            spw_buf_puts(&q, "SELECT count(*)");
            put_from_where(g, &q, 0);
            spw_buf_put(&q, "", 1);
            char ps[16], b[24];
            snprintf(ps, sizeof ps, "%u", x->part);
            snprintf(b, sizeof b, "%" PRIu64, x->boundary);
            const char *p[] = {ps, b};
            int64_t v = num(g, ns, (const char *)q.p, 2, p);
            spw_buf_fini(&q);
            if (v < 0)
                return -1;
            copied += (uint64_t)v;
        }
    }
    pthread_mutex_lock(&rs->mu);
    rs->total = total;
    rs->scanned = scanned;
    rs->copied = copied;
    rs->totals_known = 1;
    pthread_mutex_unlock(&rs->mu);
    return 0;
}

/* ---- verify ---- */

typedef struct kc {
    char *key;
    uint64_t n, sum;
} kc;

static int kc_cmp(const void *a, const void *b) { return strcmp(((const kc *)a)->key, ((const kc *)b)->key); }

/* Per key of shard si's partition rows below bound whose key passes keep (old ring → want, or new ring → want). */
static int key_counts(pg *g, uint32_t si, uint32_t part, uint64_t bound, const spw_ring *ring, uint32_t want, kc **out,
                      uint32_t *nout)
{
    pg_reshard *rs = g->rs;
    PGconn *c = conn(g, si);
    if (!c)
        return -1;
    spw_buf q = SPW_BUF_INIT;
    spw_buf_puts(&q, "SELECT ");
    put_col(g, &q, rs->kcol);
    spw_buf_puts(&q, "::text, count(*), sum(");
    put_col(g, &q, rs->ocol);
    spw_buf_puts(&q, ")::text");
    put_from_where(g, &q, 0);
    spw_buf_puts(&q, " GROUP BY 1");
    spw_buf_put(&q, "", 1);
    char ps[16], b[24], e[300];
    snprintf(ps, sizeof ps, "%u", part);
    snprintf(b, sizeof b, "%" PRIu64, bound);
    const char *p[] = {ps, b};
    PGresult *r = PQexecParams(c, (const char *)q.p, 2, NULL, p, NULL, NULL, 0);
    spw_buf_fini(&q);
    if (ok_or(r, PGRES_TUPLES_OK, e, sizeof e, "counting rows per key") < 0) {
        PQclear(r);
        rs_error(g, "shard %u: %s", si, e);
        drop_conn(g, si);
        return -1;
    }
    int n = PQntuples(r);
    kc *v = spw_xcalloc((size_t)n + 1, sizeof *v);
    uint32_t k = 0;
    for (int i = 0; i < n; i++) {
        const char *key = PQgetisnull(r, i, 0) ? "" : PQgetvalue(r, i, 0);
        if (spw_ring_shard(ring, key, strlen(key)) != want)
            continue;
        size_t kl = strlen(key);
        v[k].key = spw_xmalloc(kl + 1);
        memcpy(v[k].key, key, kl + 1);
        v[k].n = strtoull(PQgetvalue(r, i, 1), NULL, 10);
        v[k].sum = strtoull(PQgetvalue(r, i, 2), NULL, 10);
        k++;
    }
    PQclear(r);
    qsort(v, k, sizeof *v, kc_cmp);
    *out = v;
    *nout = k;
    return 0;
}

static void kc_free(kc *v, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        spw_free(v[i].key);
    spw_free(v);
}

/* A shard's progress of partition (0 if none), or -1. */
static int64_t progress_of(pg *g, uint32_t si, uint32_t part)
{
    char ps[16], sh[16];
    snprintf(ps, sizeof ps, "%u", part);
    snprintf(sh, sizeof sh, "%u", si);
    const char *p[] = {g->sink, g->stream, ps, sh};
    return num(g, si,
               "SELECT coalesce(max(next_offset), 0) FROM " PG_PROGRESS_TABLE
               " WHERE sink = $1 AND stream = $2 AND partition = $3 AND shard = $4",
               4, p);
}

/* Compares every range: 1 all equal, 0 differences (their ranges sent back), -1 error. */
static int verify(pg *g)
{
    pg_reshard *rs = g->rs;
    uint64_t keys = 0, rows = 0, bad = 0;
    char first[300] = "";
    for (uint32_t i = 0; i < rs->nr; i++) {
        if (rs_stopping(g))
            return -1;
        rs_range *x = &rs->r[i];
        int64_t a = progress_of(g, x->os, x->part), b = a >= 0 ? progress_of(g, x->ns, x->part) : -1;
        if (b < 0)
            return -1;
        uint64_t bound = (uint64_t)(a < b ? a : b);
        kc *o = NULL, *nw = NULL;
        uint32_t no = 0, nn = 0;
        if (key_counts(g, x->os, x->part, bound, &g->ring, x->ns, &o, &no) < 0)
            return -1;
        if (key_counts(g, x->ns, x->part, bound, &g->old_ring, x->os, &nw, &nn) < 0) {
            kc_free(o, no);
            return -1;
        }
        uint64_t diff = 0;
        uint32_t ii = 0, jj = 0;
        while (ii < no || jj < nn) {
            int c = ii == no ? 1 : jj == nn ? -1 : strcmp(o[ii].key, nw[jj].key);
            const kc *ko = c <= 0 ? &o[ii] : NULL, *kn = c >= 0 ? &nw[jj] : NULL;
            uint64_t on = ko ? ko->n : 0, nnn = kn ? kn->n : 0, os = ko ? ko->sum : 0, nsum = kn ? kn->sum : 0;
            keys++;
            rows += on;
            if (on != nnn || os != nsum) {
                diff++;
                if (!first[0])
                    snprintf(first, sizeof first,
                             "key \"%.80s\" partition %u below offset %" PRIu64 ": %" PRIu64
                             " rows on shard %u, %" PRIu64 " on shard %u",
                             ko ? ko->key : kn->key, x->part, bound, on, x->os, nnn, x->ns);
            }
            ii += c <= 0;
            jj += c >= 0;
        }
        kc_free(o, no);
        kc_free(nw, nn);
        if (diff) {
            /* the range again from its start: each batch replaces its rows */
            char ps[16], nss[16], oss[16];
            snprintf(ps, sizeof ps, "%u", x->part);
            snprintf(nss, sizeof nss, "%u", x->ns);
            snprintf(oss, sizeof oss, "%u", x->os);
            const char *pu[] = {g->sink, g->stream, ps, nss, oss};
            PGconn *nc = conn(g, x->ns);
            if (!nc)
                return -1;
            PGresult *r = PQexecParams(nc,
                                       "UPDATE " PG_RESHARD_TABLE " SET copied = 0 WHERE sink = $1 AND stream = $2"
                                       " AND partition = $3 AND shard = $4 AND from_shard = $5",
                                       5, NULL, pu, NULL, NULL, 0);
            char e[300];
            int fail = ok_or(r, PGRES_COMMAND_OK, e, sizeof e, "resetting the backfill cursor");
            PQclear(r);
            if (fail) {
                rs_error(g, "shard %u: %s", x->ns, e);
                drop_conn(g, x->ns);
                return -1;
            }
            x->copied = 0;
            bad += diff;
        }
    }
    pthread_mutex_lock(&rs->mu);
    rs->v_keys = keys;
    rs->v_rows = rows;
    rs->v_bad = bad;
    rs->v_repaired += bad;
    rs->v_runs++;
    snprintf(rs->v_first, sizeof rs->v_first, "%s", first);
    pthread_mutex_unlock(&rs->mu);
    if (bad)
        spw_warn("sink %s: reshard: verify found %" PRIu64 " key(s) differing (first: %s); copying their ranges "
                 "again",
                 g->sink, bad, first);
    return bad ? 0 : 1;
}

/* ---- deleting rows of keys ---- */

/* Deletes on shard si the rows of every key whose owner on ring is (want_owner ? == : !=) who, in
 * transaction-sized chunks of keys, or (in_txn) within the caller's transaction. rows deleted, or -1. */
static int64_t delete_keys(pg *g, PGconn *c, const spw_ring *ring, uint32_t who, int want_owner, char *e, size_t cap)
{
    pg_reshard *rs = g->rs;
    spw_buf q = SPW_BUF_INIT;
    spw_buf_puts(&q, "SELECT DISTINCT ");
    put_col(g, &q, rs->kcol);
    spw_buf_puts(&q, "::text FROM ");
    spw_buf_puts(&q, g->qtable);
    spw_buf_put(&q, "", 1);
    PGresult *r = PQexec(c, (const char *)q.p);
    spw_buf_fini(&q);
    if (ok_or(r, PGRES_TUPLES_OK, e, cap, "listing keys") < 0) {
        PQclear(r);
        return -1;
    }
    int64_t deleted = 0;
    int n = PQntuples(r), i = 0;
    while (i < n) {
        spw_buf a = SPW_BUF_INIT;
        spw_buf_puts(&a, "{");
        int cnt = 0, null_too = 0;
        for (; i < n && cnt < 500; i++) {
            const char *k = PQgetisnull(r, i, 0) ? "" : PQgetvalue(r, i, 0);
            uint32_t o = spw_ring_shard(ring, k, strlen(k));
            if ((o == who) != want_owner)
                continue;
            if (PQgetisnull(r, i, 0))
                null_too = 1;
            else
                put_array_elem(&a, k, strlen(k));
            cnt++;
        }
        spw_buf_puts(&a, "}");
        spw_buf_put(&a, "", 1);
        if (cnt) {
            spw_buf_puts(&q, "DELETE FROM ");
            spw_buf_puts(&q, g->qtable);
            spw_buf_puts(&q, " WHERE ");
            put_col(g, &q, rs->kcol);
            spw_buf_puts(&q, "::text = ANY ($1::text[])");
            if (null_too) {
                spw_buf_puts(&q, " OR ");
                put_col(g, &q, rs->kcol);
                spw_buf_puts(&q, " IS NULL");
            }
            spw_buf_put(&q, "", 1);
            const char *p[] = {(const char *)a.p};
            PGresult *d = PQexecParams(c, (const char *)q.p, 1, NULL, p, NULL, NULL, 0);
            spw_buf_fini(&q);
            int bad = ok_or(d, PGRES_COMMAND_OK, e, cap, "deleting rows");
            if (!bad)
                deleted += atoll(PQcmdTuples(d));
            PQclear(d);
            if (bad) {
                spw_buf_fini(&a);
                PQclear(r);
                return -1;
            }
        }
        spw_buf_fini(&a);
    }
    PQclear(r);
    return deleted;
}

/* ---- phases ---- */

/* The figures shown now, for the state file. */
static rs_figs figs_now(pg_reshard *rs)
{
    pthread_mutex_lock(&rs->mu);
    rs_figs f = {.started_ms = rs->started_ms,
                 .finished_ms = rs->finished_ms,
                 .copied = (int64_t)rs->copied,
                 .scanned = (int64_t)rs->scanned,
                 .total = rs->totals_known ? (int64_t)rs->total : -1,
                 .ranges = rs->shown_nr,
                 .ranges_done = rs->shown_done,
                 .v_runs = (int64_t)rs->v_runs,
                 .v_keys = (int64_t)rs->v_keys,
                 .v_rows = (int64_t)rs->v_rows,
                 .v_bad = (int64_t)rs->v_bad,
                 .v_repaired = (int64_t)rs->v_repaired,
                 .deleted = (int64_t)rs->deleted};
    pthread_mutex_unlock(&rs->mu);
    return f;
}

/* Writes the phase (again, for the figures: cutover after each old shard's deletes). */
static int set_phase(pg *g, int phase)
{
    pg_reshard *rs = g->rs;
    if (phase == RS_DONE) {
        pthread_mutex_lock(&rs->mu);
        rs->finished_ms = spw_wall_ms();
        pthread_mutex_unlock(&rs->mu);
    }
    rs_figs f = figs_now(rs);
    int r = state_save(rs->dir, g->from, g->nshards, phase, &f);
    if (r < 0) {
        rs_error(g, "writing %s/reshard: %s", rs->dir, spw_strerror(r));
        return -1;
    }
    if (atomic_exchange(&g->phase, phase) != phase)
        spw_info("sink %s: reshard %u → %u shards: %s", g->sink, g->from, g->nshards, phase_names[phase]);
    return 0;
}

/* The rate limit: naps so that copied_run rows took at least copied_run / rows_per_s seconds. */
static int pace(pg *g)
{
    pg_reshard *rs = g->rs;
    uint64_t due = rs->t0_ns + rs->copied_run * 1000000000ull / g->rs_rows_per_s, now = spw_mono_ns();
    if (due <= now)
        return rs_stopping(g);
    return rs_nap(g, (due - now) / 1000000u + 1);
}

static void *rs_main(void *arg)
{
    pg *g = arg;
    pg_reshard *rs = g->rs;
    while (!rs_stopping(g)) {
        int ph = atomic_load(&g->phase);
        if (ph == RS_DONE)
            break;
        if (!atomic_load(&rs->attached)) {
            rs_nap(g, 50);
            continue;
        }
        if (ph == RS_DUAL_WRITE) {
            if (g->rs_pause == RS_BACKFILL || load_ranges(g) < 0) {
                rs_nap(g, g->rs_pause == RS_BACKFILL ? 50 : 1000);
                continue;
            }
            set_phase(g, RS_BACKFILL);
            continue;
        }
        if (ph == RS_BACKFILL) {
            pthread_mutex_lock(&rs->mu);
            int known = rs->totals_known;
            pthread_mutex_unlock(&rs->mu);
            if ((rs->nr == 0 && load_ranges(g) < 0) || (!known && count_totals(g) < 0)) {
                rs_nap(g, 1000);
                continue;
            }
            if (!rs->t0_ns) {
                rs->t0_ns = spw_mono_ns();
                rs->copied_run = 0;
            }
            int more = 0, failed = 0;
            for (uint32_t i = 0; i < rs->nr && !rs_stopping(g); i++) {
                int r = copy_batch(g, &rs->r[i]);
                if (r < 0) {
                    failed = 1;
                    break;
                }
                more |= r;
                if (r > 0 && pace(g))
                    break;
            }
            uint32_t done = 0;
            for (uint32_t i = 0; i < rs->nr; i++)
                done += rs->r[i].copied >= rs->r[i].boundary;
            pthread_mutex_lock(&rs->mu);
            rs->shown_nr = rs->nr;
            rs->shown_done = done;
            pthread_mutex_unlock(&rs->mu);
            if (failed) {
                rs->nr = 0; /* the cursors again from the shards (a lost COMMIT may have moved one) */
                pthread_mutex_lock(&rs->mu);
                rs->totals_known = 0;
                pthread_mutex_unlock(&rs->mu);
                rs_nap(g, 1000);
                continue;
            }
            if (!more && !rs_stopping(g)) {
                if (g->rs_pause == RS_VERIFY) {
                    rs_nap(g, 50);
                    continue;
                }
                set_phase(g, RS_VERIFY);
            }
            continue;
        }
        if (ph == RS_VERIFY) {
            if (rs->nr == 0 && load_ranges(g) < 0) {
                rs_nap(g, 1000);
                continue;
            }
            uint64_t written = atomic_load(&g->moved_written); /* before: a row written during verify counts */
            int v = verify(g);
            if (v < 0) {
                rs_nap(g, 1000);
                continue;
            }
            if (v == 0) {
                rs->t0_ns = 0;
                set_phase(g, RS_BACKFILL);
                continue;
            }
            if (g->rs_pause == RS_CUTOVER) {
                /* held before cutover: the answer stands until rows of
                 * moving keys are written (the dual writes count them),
                 * checked again at most every RS_VERIFY_HELD_MS anyway */
                set_phase(g, RS_VERIFY); /* its figures kept */
                uint64_t since = spw_mono_ms();
                while (atomic_load(&g->moved_written) == written && spw_mono_ms() - since < RS_VERIFY_HELD_MS &&
                       !rs_nap(g, 200)) {
                }
                continue;
            }
            if (set_phase(g, RS_CUTOVER) < 0) {
                rs_nap(g, 1000);
                continue;
            }
            /* a window that began dual-writing ends before old shards are touched */
            while (atomic_load(&g->in_window) && !rs_nap(g, 5)) {
            }
            continue;
        }
        if (ph == RS_CUTOVER) {
            while (atomic_load(&g->in_window) && !rs_nap(g, 5)) {
            }
            int failed = 0;
            for (uint32_t os = 0; os < g->from && g->rs_delete_moved && !failed; os++) {
                PGconn *c = conn(g, os);
                char e[300];
                int64_t d = c ? delete_keys(g, c, &g->ring, os, 0, e, sizeof e) : -1;
                if (c && d < 0) {
                    rs_error(g, "shard %u: deleting moved rows: %s", os, e);
                    drop_conn(g, os);
                }
                if (d < 0) {
                    failed = 1;
                    break;
                }
                pthread_mutex_lock(&rs->mu);
                rs->deleted += (uint64_t)d;
                pthread_mutex_unlock(&rs->mu);
                set_phase(g, RS_CUTOVER); /* the figure kept (a restart deletes the rest, and adds them) */
                /* test builds: held here, between old shards (sink.h) */
                while (spw_sink_test_hold && spw_sink_test_hold(g->sink, "reshard_cutover_deleted") && !rs_nap(g, 10)) {
                }
            }
            if (failed || set_phase(g, RS_DONE) < 0) {
                rs_nap(g, 1000);
                continue;
            }
            pthread_mutex_lock(&rs->mu);
            rs->err[0] = 0;
            pthread_mutex_unlock(&rs->mu);
            break;
        }
    }
    for (uint32_t i = 0; i < PG_SHARDS_MAX; i++)
        drop_conn(g, i);
    return NULL;
}

/* ---- the kind's hooks ---- */

static pg_reshard *rs_new(const char *dir)
{
    pg_reshard *rs = spw_xcalloc(1, sizeof *rs);
    snprintf(rs->dir, sizeof rs->dir, "%s", dir);
    pthread_mutex_init(&rs->mu, NULL);
    spw_cond_init(&rs->cv);
    return rs;
}

void spw__pg_set_dir(void *st, const char *dir)
{
    pg *g = st;
    if (g->rs)
        return;
    g->rs = rs_new(dir);
    pg_reshard *rs = g->rs;
    rs_state s;
    char err[400];
    int r = state_load(dir, &s, err, sizeof err);
    if (r == -ENOENT)
        return;
    if (r < 0) {
        spw_error("sink %s: %s; the reshard state is ignored", g->sink, err);
        return;
    }
    if (s.to != g->nshards) {
        /* written by a PUT or an abort whose definition did not land, or
         * a reshard before this one: it does not describe these shards */
        char path[4300];
        snprintf(path, sizeof path, "%s/reshard", dir);
        spw_info("sink %s: the reshard state (%u → %u shards) does not match the definition's %u shards; removed",
                 g->sink, s.from, s.to, g->nshards);
        unlink(path);
        return;
    }
    rs->from = s.from;
    rs->to = s.to;
    rs->started_ms = s.f.started_ms;
    rs->finished_ms = s.f.finished_ms;
    rs->v_runs = (uint64_t)s.f.v_runs;
    rs->v_keys = (uint64_t)s.f.v_keys;
    rs->v_rows = (uint64_t)s.f.v_rows;
    rs->v_bad = (uint64_t)s.f.v_bad;
    rs->v_repaired = (uint64_t)s.f.v_repaired;
    rs->deleted = (uint64_t)s.f.deleted;
    rs->shown_nr = (uint32_t)s.f.ranges;
    rs->shown_done = (uint32_t)s.f.ranges_done;
    if (s.phase >= RS_VERIFY) { /* the backfill's figures are final (before, the thread counts them again) */
        rs->copied = (uint64_t)s.f.copied;
        rs->scanned = (uint64_t)s.f.scanned;
        rs->total = s.f.total >= 0 ? (uint64_t)s.f.total : 0;
        rs->totals_known = s.f.total >= 0;
    }
    atomic_store(&g->phase, s.phase);
    if (s.phase == RS_DONE)
        return; /* shown by GET; the sink runs with every shard */
    rs->kcol = find_col(g, SRC_KEY);
    rs->pcol = find_col(g, SRC_PARTITION);
    rs->ocol = find_col(g, SRC_OFFSET);
    if (rs->kcol < 0 || rs->pcol < 0 || rs->ocol < 0) {
        spw_error("sink %s: resharding needs columns mapping $key, $partition and $offset; the reshard waits",
                  g->sink);
        snprintf(rs->err, sizeof rs->err, "resharding needs columns mapping $key, $partition and $offset");
    }
    g->from = s.from;
    spw_ring_init(&g->old_ring, g->from);
    if (rs->kcol >= 0 && rs->pcol >= 0 && rs->ocol >= 0 && pthread_create(&rs->th, NULL, rs_main, g) == 0) {
        rs->started = 1;
        spw_thread_name(rs->th, "spw-pg-reshard");
    }
}

void spw__pg_reshard_attached(pg *g)
{
    if (g->rs)
        atomic_store(&g->rs->attached, 1);
}

void spw__pg_reshard_stop(pg *g)
{
    pg_reshard *rs = g->rs;
    if (!rs)
        return;
    pthread_mutex_lock(&rs->mu);
    rs->stop = 1;
    pthread_cond_broadcast(&rs->cv);
    pthread_mutex_unlock(&rs->mu);
}

void spw__pg_reshard_free(pg *g)
{
    pg_reshard *rs = g->rs;
    if (rs) {
        spw__pg_reshard_stop(g);
        if (rs->started)
            pthread_join(rs->th, NULL);
        spw_free(rs->r);
        pthread_mutex_destroy(&rs->mu);
        pthread_cond_destroy(&rs->cv);
        spw_free(rs);
    }
    if (g->old_ring.pts)
        spw_ring_free(&g->old_ring);
    spw_free(g->old_of);
}

static const char *same_but_shards(const pg *a, const pg *b)
{
    if (strcmp(a->table, b->table) != 0)
        return "options.table";
    if (a->ncols != b->ncols)
        return "options.columns";
    for (uint32_t i = 0; i < a->ncols; i++) {
        const pg_col *x = &a->cols[i], *y = &b->cols[i];
        if (strcmp(x->name, y->name) != 0 || x->src != y->src)
            return "options.columns";
        if (x->src == SRC_PTR && (x->ptr.ntok != y->ptr.ntok || memcmp(x->ptr.storage, y->ptr.storage, sizeof x->ptr.storage) != 0))
            return "options.columns";
    }
    if (a->text_only != b->text_only)
        return "options.copy_format";
    if (a->statement_timeout_ms != b->statement_timeout_ms)
        return "options.statement_timeout_ms";
    if (a->copy_min_rows != b->copy_min_rows)
        return "options.copy_min_rows";
    return NULL;
}

int spw__pg_change(void *st, const char *options, size_t len, char *err, size_t cap)
{
    pg *g = st;
    void *nst;
    if (spw_sink_kind_postgres.open(g->sink, g->stream, options, len, &nst, err, cap) < 0)
        return SPW_EINVAL;
    pg *n = nst;
    int r = 1;
    int ph = atomic_load(&g->phase);
    int resharding = g->from && ph < RS_DONE;
    const char *other = same_but_shards(g, n);
    uint32_t keep = n->nshards < g->nshards ? n->nshards : g->nshards;
    int prefix = 1;
    for (uint32_t i = 0; i < keep; i++)
        prefix &= strcmp(g->sh[i].conninfo, n->sh[i].conninfo) == 0;
    if (resharding && (other || n->nshards != g->nshards || !prefix)) {
        snprintf(err, cap,
                 "sink %s is resharding (phase %s, %u to %u shards): only the reshard_* options may change until "
                 "it is done, or aborted before cutover (POST /v1/sinks/%s/reshard/abort)",
                 g->sink, phase_names[ph], g->from, g->nshards, g->sink);
        r = -EEXIST;
    } else if (other) {
        r = 0; /* not an online change: the caller's 409 */
    } else if (!prefix || n->nshards < g->nshards) {
        snprintf(err, cap,
                 "sink %s: shards can only be added, at the end of options.shards (removing or reordering shards "
                 "would move keys between the shards that stay)",
                 g->sink);
        r = -EEXIST;
    } else if (n->nshards > g->nshards) {
        if (!g->rs) {
            snprintf(err, cap, "sink %s: no directory for the reshard state", g->sink);
            r = -EIO;
        } else if (find_col(n, SRC_KEY) < 0 || find_col(n, SRC_PARTITION) < 0 || find_col(n, SRC_OFFSET) < 0) {
            snprintf(err, cap,
                     "resharding a postgres sink needs options.columns to map $key, $partition and $offset (the "
                     "backfill finds, copies and compares rows by them)");
            r = SPW_EINVAL;
        } else {
            rs_figs f = {.started_ms = spw_wall_ms(), .total = -1};
            int w = state_save(g->rs->dir, g->nshards, n->nshards, RS_DUAL_WRITE, &f);
            if (w < 0) {
                snprintf(err, cap, "writing %s/reshard: %s", g->rs->dir, spw_strerror(w));
                r = w;
            } else {
                spw_info("sink %s: reshard from %u to %u shards: dual_write", g->sink, g->nshards, n->nshards);
            }
        }
    }
    spw_sink_kind_postgres.close(n);
    return r;
}

/* options.shards as GET shows them (sink_def.c spw_sinks_redact): a
 * string with "[redacted]" in it is shard i's running connection string
 * if it equals that one redacted alike (as JSON text), and is then put
 * back whole; any other (a new shard, another host or database) cannot
 * be, since its password is not known. */
int spw__pg_unredact(void *st, const char *options, size_t len, spw_buf *out, char *err, size_t cap)
{
    pg *g = st;
    if (!memmem(options, len, "[redacted]", 10))
        return 0;
    spw_json_span obj = {.p = options, .n = len, .type = SPW_JSON_OBJECT};
    spw_json_iter it;
    spw_json_span k, v;
    spw_json_iter_init(&it, &obj);
    int hit = 0, first = 1, r = 0;
    spw_buf_puts(out, "{");
    while (r == 0 && spw_json_iter_next(&it, &k, &v)) {
        if (!first)
            spw_buf_puts(out, ",");
        first = 0;
        spw_buf_put(out, k.p, k.n);
        spw_buf_puts(out, ":");
        if (!spw_json_str_eq(&k, "shards") || v.type != SPW_JSON_ARRAY) {
            spw_buf_put(out, v.p, v.n);
            continue;
        }
        spw_buf_puts(out, "[");
        spw_json_ptr root = {0};
        spw_json_error je;
        const char *p = spw_json_ws(v.p + 1, v.p + v.n), *end = v.p + v.n;
        for (uint32_t i = 0; p < end && *p != ']'; i++) {
            spw_json_span e;
            const char *ee;
            if (spw_json_scan(p, end, &root, 1, &e, &ee, &je))
                break; /* open's parse says what is wrong */
            if (i)
                spw_buf_puts(out, ",");
            if (e.type == SPW_JSON_STRING && memmem(e.p, e.n, "[redacted]", 10)) {
                int same = 0;
                if (i < g->nshards) {
                    spw_buf o = SPW_BUF_INIT, red = SPW_BUF_INIT;
                    spw_json_xput_str(&o, g->sh[i].conninfo, strlen(g->sh[i].conninfo));
                    spw_sinks_redact((const char *)o.p, o.len, &red);
                    same = red.len == e.n && memcmp(red.p, e.p, e.n) == 0;
                    if (same)
                        spw_buf_put(out, o.p, o.len);
                    spw_buf_fini(&o);
                    spw_buf_fini(&red);
                }
                if (!same) {
                    snprintf(err, cap,
                             "options.shards[%u]: a redacted password (\"[redacted]\", as GET shows the running "
                             "shards) stands only for the running shard %u's own; it can't be used for a new or "
                             "changed shard: write that connection string whole",
                             i, i);
                    r = SPW_EINVAL;
                    break;
                }
                hit = 1;
            } else {
                spw_buf_put(out, e.p, e.n);
            }
            p = spw_json_ws(ee, end);
            if (p < end && *p == ',')
                p = spw_json_ws(p + 1, end);
        }
        spw_buf_puts(out, "]");
    }
    spw_buf_puts(out, "}");
    return r < 0 ? r : hit;
}

const char *spw__pg_phase(void *st)
{
    pg *g = st;
    int ph = atomic_load(&g->phase);
    return g->from && ph != RS_NONE && ph != RS_DONE ? phase_names[ph] : NULL;
}

void spw__pg_status_json(void *st, spw_buf *b)
{
    pg *g = st;
    pg_reshard *rs = g->rs;
    int ph = atomic_load(&g->phase);
    if (!rs || ph == RS_NONE)
        return;
    pthread_mutex_lock(&rs->mu);
    spw_buf_xprintf(b,
                    ",\"reshard\":{\"phase\":\"%s\",\"from_shards\":%u,\"to_shards\":%u,\"backfill\":{\"copied\":%" PRIu64
                    ",\"scanned\":%" PRIu64 ",\"total\":",
                    phase_names[ph], rs->from, rs->to, rs->copied, rs->scanned);
    if (rs->totals_known)
        spw_buf_xprintf(b, "%" PRIu64, rs->total);
    else
        spw_buf_xprintf(b, "null");
    spw_buf_xprintf(b, ",\"ranges\":%u,\"ranges_done\":%u", rs->shown_nr, rs->shown_done);
    spw_buf_xprintf(b, ",\"rows_per_s\":%u},\"verify\":{\"runs\":%" PRIu64 ",\"keys\":%" PRIu64 ",\"rows\":%" PRIu64
                       ",\"mismatched_keys\":%" PRIu64 ",\"repaired_keys\":%" PRIu64 ",\"first_difference\":",
                    g->rs_rows_per_s, rs->v_runs, rs->v_keys, rs->v_rows, rs->v_bad, rs->v_repaired);
    if (rs->v_first[0])
        spw_json_xput_str(b, rs->v_first, strlen(rs->v_first));
    else
        spw_buf_xprintf(b, "null");
    spw_buf_xprintf(b, "},\"delete_moved\":%s,\"deleted\":%" PRIu64 ",\"pause_before\":\"%s\",\"started_ms\":",
                    g->rs_delete_moved ? "true" : "false", rs->deleted,
                    g->rs_pause ? phase_names[g->rs_pause] : "none");
    if (rs->started_ms > 0)
        spw_buf_xprintf(b, "%" PRId64, rs->started_ms);
    else
        spw_buf_xprintf(b, "null");
    spw_buf_xprintf(b, ",\"finished_ms\":");
    if (rs->finished_ms > 0)
        spw_buf_xprintf(b, "%" PRId64, rs->finished_ms);
    else
        spw_buf_xprintf(b, "null");
    spw_buf_xprintf(b, ",\"last_error\":");
    if (rs->err[0])
        spw_json_xput_str(b, rs->err, strlen(rs->err));
    else
        spw_buf_xprintf(b, "null");
    spw_buf_xprintf(b, "}");
    pthread_mutex_unlock(&rs->mu);
}

/* The options object with shards cut to the first n: members copied as they are. */
static int options_with_shards(const pg *g, const char *opts, size_t len, uint32_t n, spw_buf *out)
{
    spw_json_span obj = {.p = opts, .n = len, .type = SPW_JSON_OBJECT};
    spw_json_iter it;
    spw_json_span k, v;
    spw_json_iter_init(&it, &obj);
    spw_buf_puts(out, "{");
    int first = 1;
    while (spw_json_iter_next(&it, &k, &v)) {
        if (!first)
            spw_buf_puts(out, ",");
        first = 0;
        spw_buf_put(out, k.p, k.n); /* the key with its quotes */
        spw_buf_puts(out, ":");
        if (spw_json_str_eq(&k, "shards")) {
            spw_buf_puts(out, "[");
            for (uint32_t i = 0; i < n; i++) {
                if (i)
                    spw_buf_puts(out, ",");
                spw_json_xput_str(out, g->sh[i].conninfo, strlen(g->sh[i].conninfo));
            }
            spw_buf_puts(out, "]");
        } else {
            spw_buf_put(out, v.p, v.n);
        }
    }
    spw_buf_puts(out, "}");
    return 0;
}

int spw__pg_abort(void *st, const char *dir, const char *opts, size_t len, spw_buf *options, char *err, size_t cap)
{
    pg *g = st;
    rs_state s;
    int r = state_load(dir, &s, err, cap);
    if (r == -ENOENT || (r == 0 && (s.to != g->nshards || s.phase == RS_DONE))) {
        snprintf(err, cap, "sink %s is not resharding", g->sink);
        return -EEXIST;
    }
    if (r < 0)
        return r;
    if (s.phase >= RS_CUTOVER) {
        snprintf(err, cap,
                 "sink %s is past cutover (phase %s): the new placement is the only one written; abort is possible "
                 "before cutover only",
                 g->sink, phase_names[s.phase]);
        return -EEXIST;
    }
    g->rs = rs_new(dir);
    g->rs->kcol = find_col(g, SRC_KEY);
    g->from = s.from;
    if (g->rs->kcol < 0) {
        snprintf(err, cap, "resharding needs a column mapping $key");
        return SPW_EINVAL;
    }
    for (uint32_t ns = s.from; ns < g->nshards; ns++) {
        char e[300];
        PGconn *c = rs_connect(g, g->sh[ns].conninfo, e, sizeof e);
        if (!c) {
            snprintf(err, cap, "shard %u: %s; nothing was rolled back on it (abort again when it is up)", ns, e);
            return -EIO;
        }
        PGresult *x = PQexec(c, PG_PROGRESS_DDL "; " RESHARD_DDL "; BEGIN");
        int bad = ok_or(x, PGRES_COMMAND_OK, e, sizeof e, "BEGIN");
        PQclear(x);
        int64_t d = bad ? -1 : delete_keys(g, c, &g->ring, ns, 1, e, sizeof e);
        if (d >= 0) {
            char nss[16];
            snprintf(nss, sizeof nss, "%u", ns);
            const char *p[] = {g->sink, g->stream, nss};
            x = PQexecParams(c,
                             "DELETE FROM " PG_RESHARD_TABLE " WHERE sink = $1 AND stream = $2 AND shard = $3", 3,
                             NULL, p, NULL, NULL, 0);
            bad = ok_or(x, PGRES_COMMAND_OK, e, sizeof e, "deleting the backfill cursors");
            PQclear(x);
            if (!bad) {
                x = PQexecParams(c,
                                 "DELETE FROM " PG_PROGRESS_TABLE " WHERE sink = $1 AND stream = $2 AND shard = $3",
                                 3, NULL, p, NULL, NULL, 0);
                bad = ok_or(x, PGRES_COMMAND_OK, e, sizeof e, "deleting the progress rows");
                PQclear(x);
            }
            if (!bad) {
                x = PQexec(c, "COMMIT");
                bad = ok_or(x, PGRES_COMMAND_OK, e, sizeof e, "COMMIT");
                PQclear(x);
            }
        } else {
            bad = 1;
        }
        PQfinish(c);
        if (bad) {
            snprintf(err, cap, "shard %u: %s; nothing was rolled back on it (abort again)", ns, e);
            return -EIO;
        }
        spw_info("sink %s: reshard aborted: shard %u: %" PRId64 " moved row(s) deleted", g->sink, ns, d);
    }
    options_with_shards(g, opts, len, s.from, options);
    return 0;
}
