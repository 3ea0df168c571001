/*
 * The postgres sink's delivery: a window, or a group of windows of several
 * partitions, is sent to every shard it touches (spw__pg_begin,
 * spw__pg_group_begin: per shard one message "BEGIN; progress rows'
 * upsert; COPY of its rows; COMMIT" and the rows, or below copy_min_rows
 * rows "BEGIN; progress rows' upsert; INSERT of its rows; COMMIT" alone:
 * one round trip) and the answers are read later (spw__pg_end,
 * spw__pg_group_end), so the shards parse in parallel and one COMMIT per
 * shard carries every partition of a group.
 * A failure is classified here: bad data (SQLSTATE classes 22, 23) rolls
 * back and answers REJECT, so the framework bisects to the record and
 * dead-letters it; anything else drops the connection and answers RETRY.
 * spw__pg_commit moves the progress rows of shards that are behind up to
 * the framework's position; spw__pg_rewind sets them back (both in their
 * own statements).
 */

/* COPY binary format's signature + flags + header-extension length, and
 * its end (pg_rows.c formats the rows between them). */
#include "sink/postgres/pg_int.h"

static const uint8_t copy_bin_header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0,
                                            0,   0,   0,   0,   0,   0,   0,    0};
static const uint8_t copy_bin_trailer[2] = {0xff, 0xff};
enum { W_OK, W_RETRY, W_REJECT };

/* Is this failed result bad data (SQLSTATE class 22 or 23)? A record's
 * text the database's encoding cannot hold is one: 22P05
 * untranslatable_character, 22021 character_not_in_repertoire. */
static int is_data_error(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return st && (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0);
}

static int is_missing(const PGresult *r)
{
    const char *st = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    return st && (strcmp(st, "42P01") == 0 || strcmp(st, "42703") == 0);
}

/* After a failed statement inside the transaction: W_REJECT (rolled back, connection kept) or W_RETRY. */
static int fail(pg *g, pg_shard *s, PGresult *r, const char *what, char *err, size_t cap)
{
    char pre[96];
    s->copying = 0;
    if (g->lanes > 1)
        snprintf(pre, sizeof pre, "shard %u (connection %u): %s", s->si, s->lane, what);
    else
        snprintf(pre, sizeof pre, "shard %u: %s", s->si, what);
    spw__pg_pq_msg(err, cap, pre, r ? PQresultErrorMessage(r) : PQerrorMessage(s->c));
    int data = r && is_data_error(r);
    if (r && is_missing(r))
        s->checked = 0;
    if (r)
        PQclear(r);
    if (data && PQstatus(s->c) == CONNECTION_OK) {
        PGresult *rb = PQexec(s->c, "ROLLBACK");
        int ok = PQresultStatus(rb) == PGRES_COMMAND_OK;
        PQclear(rb);
        if (ok)
            return W_REJECT;
    }
    /* anything else: the transaction's outcome may be unknown; reconnect and reread */
    spw__pg_drop(g, s);
    return data ? W_REJECT : W_RETRY;
}

#define PROGRESS_UPSERT                                                                                          \
    "INSERT INTO " PG_PROGRESS_TABLE " AS p (sink, stream, partition, shard, next_offset, incarnation) VALUES "
/* A row of another incarnation (an earlier stream of this name) is
 * replaced, not moved up from. */
#define PROGRESS_ON_CONFLICT                                                                                     \
    " ON CONFLICT (sink, stream, partition, shard) DO UPDATE SET"                                               \
    " next_offset = CASE WHEN p.incarnation = EXCLUDED.incarnation"                                             \
    " THEN GREATEST(p.next_offset, EXCLUDED.next_offset) ELSE EXCLUDED.next_offset END,"                        \
    " incarnation = EXCLUDED.incarnation, updated_at = now()"

/* Upserts (sink, stream, partition, shard) → next (its own statement). */
static PGresult *put_progress(pg *g, pg_shard *s, uint32_t partition, uint64_t next)
{
    char ps[16], sh[16], nx[24], inc[24];
    snprintf(ps, sizeof ps, "%u", partition);
    snprintf(sh, sizeof sh, "%u", s->si);
    snprintf(nx, sizeof nx, "%" PRIu64, next);
    snprintf(inc, sizeof inc, "%" PRIu64, g->incarnation);
    const char *params[] = {g->sink, g->stream, ps, sh, nx, inc};
    return PQexecParams(s->c, PROGRESS_UPSERT "($1, $2, $3, $4, $5, $6)" PROGRESS_ON_CONFLICT, 6, NULL,
                        params, NULL, NULL, 0);
}

/* Appends a string literal for s to the statement b (PQescapeLiteral:
 * quotes and backslashes as the connection's settings need). */
static int put_literal(PGconn *c, spw_buf *b, const char *s)
{
    char *lit = PQescapeLiteral(c, s, strlen(s));
    if (!lit)
        return -1;
    spw_buf_puts(b, lit);
    PQfreemem(lit);
    return 0;
}

/* Rows are handed to libpq in pieces of about this size while the rest
 * are formatted, so the server parses one piece while the next is made. */
#define COPY_PIECE (128u << 10)

/* Routes the records of windows w[0, nw) to their shards:
 * g->shard_of[g->woff[j] + i] is the shard of w[j].recs[i]. */
static void route(pg *g, const spw_sink_window *w, uint32_t nw)
{
    size_t total = 0;
    for (uint32_t j = 0; j < nw; j++)
        total += w[j].n;
    if (g->shard_cap < total) {
        g->shard_cap = total;
        g->shard_of = spw_xrealloc(g->shard_of, total * sizeof *g->shard_of);
    }
    if (g->woff_cap < nw) {
        g->woff_cap = nw;
        g->woff = spw_xrealloc(g->woff, (size_t)nw * sizeof *g->woff);
    }
    size_t at = 0;
    for (uint32_t j = 0; j < nw; j++) {
        g->woff[j] = at;
        const spw_sink_rec *recs = w[j].recs;
        if (g->nshards == 1)
            memset(g->shard_of + at, 0, (size_t)w[j].n * sizeof *g->shard_of);
        else
            for (uint32_t i = 0; i < w[j].n; i++)
                g->shard_of[at + i] =
                    spw_ring_shard(&g->ring, recs[i].key, recs[i].key_len > 0 ? (size_t)recs[i].key_len : 0);
        at += w[j].n;
    }
    spw__pg_reshard_route(g, w, nw, total); /* before cutover: moving keys to their old shard too */
}

/* Does window j's partition go by connection s of its shard (in this group)? */
static inline int lane_of(const pg *g, const pg_shard *s, const spw_sink_window *w, uint32_t j)
{
    return w[j].partition % g->lanes_now == s->lane;
}

/* Is record i of window j (a window of s's lane) for s's shard and not there yet? */
static inline int row_due(const pg *g, const pg_shard *s, const spw_sink_window *w, uint32_t j, uint32_t i)
{
    return spw__pg_goes_to(g, g->woff[j] + i, s->si) &&
           w[j].recs[i].offset >= g->sh[s->si].next[w[j].partition];
}

/* At most this many bytes of rows go by INSERT (copy_min_rows): a
 * statement is parsed whole before it runs, COPY's rows as they come. */
#define INSERT_MAX_BYTES (1u << 20)

/* Appends "VERB table (col, ...)" to q: the head of the INSERT and of the COPY. */
static void put_table_cols(const pg *g, const char *verb, spw_buf *q)
{
    spw_buf_puts(q, verb);
    spw_buf_puts(q, g->qtable);
    spw_buf_puts(q, " (");
    for (uint32_t c = 0; c < g->ncols; c++) {
        if (c)
            spw_buf_puts(q, ", ");
        spw__pg_quote_ident(q, g->cols[c].name, strlen(g->cols[c].name));
    }
    spw_buf_puts(q, ")");
}

/* Appends "INSERT INTO table (cols) VALUES (row), ...; COMMIT" and a NUL
 * to q for the rows of windows w[0, nw) due on connection s (as shard_begin's
 * COPY would send them). -1 (q as it was) when they pass
 * INSERT_MAX_BYTES or a text holds a NUL byte: COPY then. */
static int put_insert(pg *g, const pg_shard *s, const spw_sink_window *w, uint32_t nw, spw_buf *q)
{
    size_t len0 = q->len;
    put_table_cols(g, "INSERT INTO ", q);
    spw_buf_puts(q, " VALUES ");
    size_t rows0 = q->len;
    for (uint32_t j = 0; j < nw; j++) {
        if (!lane_of(g, s, w, j))
            continue;
        for (uint32_t i = 0; i < w[j].n; i++) {
            if (!row_due(g, s, w, j, i))
                continue;
            if (q->len > rows0)
                spw_buf_puts(q, ", ");
            if (spw__pg_put_row_values(g, s, w[j].partition, &w[j].recs[i], q) < 0 ||
                q->len - rows0 > INSERT_MAX_BYTES) {
                q->len = len0;
                return -1;
            }
        }
    }
    spw_buf_puts(q, "; COMMIT");
    spw_buf_put(q, "", 1);
    return 0;
}

/* Connection s made ready for the group (connected, its shard's progress
 * read, the table checked) before any connection's transaction is sent:
 * a first connect may create or alter the progress table (spw__pg_ready),
 * which waits for every open transaction that wrote it, such as another
 * connection's of this group. Sets s->due, the rows it will send. */
static int shard_prepare(pg *g, pg_shard *s, const spw_sink_window *w, uint32_t nw, char *err, size_t cap)
{
    pg_shard *h = spw__pg_home(g, s);
    uint32_t mine = 0;
    s->due = 0;
    for (uint32_t j = 0; j < nw; j++) {
        if (!lane_of(g, s, w, j))
            continue;
        for (uint32_t i = 0; i < w[j].n; i++)
            mine += spw__pg_goes_to(g, g->woff[j] + i, s->si);
    }
    if (mine == 0)
        return W_OK; /* nothing of these windows goes there: a shard that is down does not matter */
    if (spw__pg_ready(g, s, err, cap) < 0)
        return W_RETRY;
    uint32_t rows = 0;
    for (uint32_t j = 0; j < nw; j++) {
        if (!lane_of(g, s, w, j))
            continue;
        spw__pg_ensure_next(h, w[j].partition);
        for (uint32_t i = 0; i < w[j].n; i++)
            rows += row_due(g, s, w, j, i);
    }
    if (rows == 0)
        return W_OK;
    if (spw__pg_check_table(g, s, err, cap) < 0)
        return W_RETRY;
    s->due = rows;
    return W_OK;
}

/*
 * Sends the rows of windows w[0, nw) routed to s's shard and carried by
 * its lane (not yet there), and their progress rows, in one transaction,
 * as one simple-query message and the rows' stream:
 *   "BEGIN; INSERT progress ... VALUES (window 1), (window 2) ... ON
 *    CONFLICT ...; COPY t (cols) FROM STDIN; COMMIT"
 *   rows, in COPY_PIECE pieces as they are formatted; end of data
 * The server runs the statements after COPY once the data ends, so the
 * answers of COPY and COMMIT come back together (shard_end): two round
 * trips per transaction, the first only for the COPY to start. Fewer
 * rows than copy_min_rows (put_insert) go as "...; INSERT INTO t (cols)
 * VALUES (row), ...; COMMIT" in that one message instead: one round trip,
 * which for a few rows is most of the transaction's cost. The
 * progress rows (one per window whose end passes the shard's; a window
 * with no row here still moves it: this shard holds all of its rows
 * below that end) commit with the rows or not at all.
 * This sends the message only: W_OK with s->inflight set when shard_end
 * must follow, and s->copying when the COPY's rows are to be sent
 * (copy_start, then copy_piece: begin_all does so for every connection
 * in turn, so each one's backend parses while the others' rows are
 * formatted and sent).
 */
static int shard_begin(pg *g, pg_shard *s, const spw_sink_window *w, uint32_t nw, char *err, size_t cap)
{
    pg_shard *h = spw__pg_home(g, s);
    uint32_t rows = s->due, nmine = 0;
    if (rows == 0)
        return W_OK;
    for (uint32_t j = 0; j < nw; j++)
        nmine += lane_of(g, s, w, j);
    if (s->if_cap < nmine) {
        s->if_cap = nmine;
        s->if_part = spw_xrealloc(s->if_part, (size_t)nmine * sizeof *s->if_part);
        s->if_end = spw_xrealloc(s->if_end, (size_t)nmine * sizeof *s->if_end);
    }
    s->nif = 0;
    spw_buf *q = &g->sql;
    q->len = 0;
    spw_buf_puts(q, "BEGIN; " PROGRESS_UPSERT);
    for (uint32_t j = 0; j < nw; j++) {
        if (!lane_of(g, s, w, j))
            continue;
        uint64_t end = w[j].recs[w[j].n - 1].offset + 1;
        if (h->next[w[j].partition] >= end)
            continue;
        spw_buf_puts(q, s->nif ? ", (" : "(");
        if (put_literal(s->c, q, g->sink) < 0 || (spw_buf_puts(q, ", "), put_literal(s->c, q, g->stream)) < 0)
            return fail(g, s, NULL, "quoting the progress row", err, cap);
        char nums[96];
        snprintf(nums, sizeof nums, ", %u, %u, %" PRIu64 ", %" PRIu64 ")", w[j].partition, s->si, end,
                 g->incarnation);
        spw_buf_puts(q, nums);
        s->if_part[s->nif] = w[j].partition;
        s->if_end[s->nif] = end;
        s->nif++;
    }
    spw_buf_puts(q, PROGRESS_ON_CONFLICT "; ");
    if (rows < g->copy_min_rows && put_insert(g, s, w, nw, q) == 0) {
        /* One message, no COPY: the answers of all four statements come
         * back together (shard_end), one round trip. */
        if (!PQsendQuery(s->c, (const char *)q->p))
            return fail(g, s, NULL, "sending BEGIN, progress and INSERT", err, cap);
        s->inflight = PG_SENT_INSERT;
        return W_OK;
    }
    put_table_cols(g, "COPY ", q);
    spw_buf_puts(q, s->binary ? " FROM STDIN (FORMAT binary); COMMIT" : " FROM STDIN; COMMIT");
    spw_buf_put(q, "", 1);
    if (!PQsendQuery(s->c, (const char *)q->p))
        return fail(g, s, NULL, "sending BEGIN, progress and COPY", err, cap);
    s->copying = 2; /* copy_start reads the answer */
    s->cj = s->ci = 0;
    return W_OK;
}

/* Reads the answers shard_begin's COPY message gets until the COPY is
 * ready for rows (PGRES_COPY_IN), or the first error (the statements
 * after it are skipped, and the answers are read to their end). */
static int copy_start(pg *g, pg_shard *s, char *err, size_t cap)
{
    PGresult *r;
    while ((r = PQgetResult(s->c)) && PQresultStatus(r) == PGRES_COMMAND_OK)
        PQclear(r);
    if (r && PQresultStatus(r) == PGRES_COPY_IN) {
        PQclear(r);
        return W_OK;
    }
    PGresult *more;
    while ((more = PQgetResult(s->c)))
        PQclear(more);
    return fail(g, s, r, "BEGIN, progress and COPY", err, cap);
}

/* Formats about COPY_PIECE bytes of s's next rows and hands them to
 * libpq; after the last, the end of the data (s->inflight then set). */
static int copy_piece(pg *g, pg_shard *s, const spw_sink_window *w, uint32_t nw, char *err, size_t cap)
{
    g->copy.len = 0;
    if (s->copying == 2 && s->binary)
        spw_buf_put(&g->copy, copy_bin_header, sizeof copy_bin_header);
    s->copying = 1;
    for (; s->cj < nw; s->cj++, s->ci = 0) {
        uint32_t j = s->cj;
        if (!lane_of(g, s, w, j))
            continue;
        for (; s->ci < w[j].n; s->ci++) {
            if (!row_due(g, s, w, j, s->ci))
                continue;
            if (s->binary)
                spw__pg_put_row_bin(g, s, w[j].partition, &w[j].recs[s->ci]);
            else
                spw__pg_put_row_text(g, s, w[j].partition, &w[j].recs[s->ci]);
            if (g->copy.len >= COPY_PIECE) {
                s->ci++;
                if (PQputCopyData(s->c, (const char *)g->copy.p, (int)g->copy.len) != 1)
                    return fail(g, s, NULL, "COPY data", err, cap);
                return W_OK;
            }
        }
    }
    if (s->binary)
        spw_buf_put(&g->copy, copy_bin_trailer, sizeof copy_bin_trailer);
    if ((g->copy.len && PQputCopyData(s->c, (const char *)g->copy.p, (int)g->copy.len) != 1) ||
        PQputCopyEnd(s->c, NULL) != 1)
        return fail(g, s, NULL, "COPY data", err, cap);
    s->copying = 0;
    s->inflight = PG_SENT_COPY;
    return W_OK;
}

/* Reads the answers of what shard_begin sent: the COPY's, then the
 * COMMIT's (the same message ran it); or for INSERT, those of BEGIN, the
 * progress rows' upsert, the INSERT, then the COMMIT's. */
static int shard_end(pg *g, pg_shard *s, char *err, size_t cap)
{
    uint32_t si = s->si;
    int sent = s->inflight;
    s->inflight = PG_SENT_NONE;
    PGresult *r;
    for (int i = 0; i < (sent == PG_SENT_INSERT ? 3 : 1); i++) {
        r = PQgetResult(s->c);
        if (PQresultStatus(r) != PGRES_COMMAND_OK) {
            /* drain to the end of the message before rolling back */
            PGresult *more;
            while ((more = PQgetResult(s->c)))
                PQclear(more);
            return fail(g, s, r, sent == PG_SENT_INSERT ? "BEGIN, progress and INSERT" : "COPY", err, cap);
        }
        PQclear(r);
    }
    r = PQgetResult(s->c);
    /* "COMMIT" answers a transaction that ended with it; anything else
     * (no answer, an error, "ROLLBACK"): the outcome is not known here */
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK && strcmp(PQcmdStatus(r), "COMMIT") == 0;
    if (!ok) {
        PGresult *more;
        while ((more = PQgetResult(s->c)))
            PQclear(more);
        if (r && PQresultStatus(r) == PGRES_COMMAND_OK) {
            PQclear(r);
            snprintf(err, cap, "shard %u: COMMIT did not commit", si);
            spw__pg_drop(g, s);
            return W_RETRY;
        }
        return fail(g, s, r, "COMMIT", err, cap);
    }
    PQclear(r);
    while ((r = PQgetResult(s->c)))
        PQclear(r);
    pg_shard *h = spw__pg_home(g, s);
    for (uint32_t i = 0; i < s->nif; i++)
        if (h->next[s->if_part[i]] < s->if_end[i])
            h->next[s->if_part[i]] = s->if_end[i];
    if (atomic_load(&s->repl_unsure)) {
        /* Committed here; the standby may lack it: not done until a later
         * commit's wait finishes (spw__pg_ready confirms on reconnect). */
        snprintf(err, cap,
                 "shard %u: COMMIT's wait for the synchronous standby was cancelled: committed on the primary, "
                 "maybe not on the standby; confirming",
                 si);
        spw__pg_drop(g, s);
        return W_RETRY;
    }
    return W_OK;
}

/* Folds one shard's answer into the window's: a shard that is down takes
 * precedence (no record is dead-lettered while unsure), then the first. */
static void fold(pg *g, int r, const char *e)
{
    if (r != W_OK && (g->res == W_OK || (r == W_RETRY && g->res == W_REJECT))) {
        g->res = r;
        snprintf(g->e1, sizeof g->e1, "%s", e);
    }
}

/* Sends windows w[0, nw) to every connection of every shard they touch:
 * the messages first, then their COPYs' starts, then the rows a piece
 * per connection in turn, so the backends parse in parallel (and the
 * sink loop reads its next batch while they commit). */
static void begin_all(pg *g, const spw_sink_window *w, uint32_t nw)
{
    route(g, w, nw);
    g->res = W_OK;
    g->e1[0] = 0;
    /* A group below copy_min_rows records goes by one connection per
     * shard: one INSERT message and one commit, where more would only add
     * commits (and waits for the standby) for rows parsed in no time. */
    size_t total = 0;
    for (uint32_t j = 0; j < nw; j++)
        total += w[j].n;
    g->lanes_now = total < g->copy_min_rows ? 1 : g->lanes;
    uint32_t nc = g->nshards * g->lanes, copying = 0;
    for (uint32_t k = 0; k < nc; k++) {
        char e[512] = "";
        fold(g, shard_prepare(g, spw__pg_conn_at(g, k), w, nw, e, sizeof e), e);
    }
    for (uint32_t k = 0; k < nc; k++) {
        char e[512] = "";
        pg_shard *s = spw__pg_conn_at(g, k);
        fold(g, shard_begin(g, s, w, nw, e, sizeof e), e);
        copying += s->copying != 0;
    }
    for (uint32_t k = 0; k < nc && copying; k++) {
        pg_shard *s = spw__pg_conn_at(g, k);
        char e[512] = "";
        if (s->copying)
            fold(g, copy_start(g, s, e, sizeof e), e);
    }
    while (copying) {
        copying = 0;
        for (uint32_t k = 0; k < nc; k++) {
            pg_shard *s = spw__pg_conn_at(g, k);
            if (!s->copying)
                continue;
            char e[512] = "";
            fold(g, copy_piece(g, s, w, nw, e, sizeof e), e);
            copying += s->copying != 0;
        }
    }
}

/* The answers of every connection begin_all sent to, folded into g->res. */
static void end_all(pg *g)
{
    for (uint32_t k = 0; k < g->nshards * g->lanes; k++) {
        pg_shard *s = spw__pg_conn_at(g, k);
        if (!s->inflight)
            continue;
        char e[512] = "";
        fold(g, shard_end(g, s, e, sizeof e), e);
    }
}

static int answer(pg *g, char *err, size_t cap)
{
    if (g->res == W_OK)
        return SPW_SINK_OK;
    snprintf(err, cap, "%s", g->e1);
    return g->res == W_REJECT ? SPW_SINK_REJECT : SPW_SINK_RETRY;
}

/* One partition's window: a group of one. */
int spw__pg_begin(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                  size_t cap)
{
    (void)done;
    (void)err;
    (void)cap;
    pg *g = st;
    spw_sink_window w = {.partition = partition, .recs = recs, .n = n};
    begin_all(g, &w, 1);
    return SPW_SINK_OK; /* spw__pg_end answers for the window */
}

/* Commits what spw__pg_begin began on each shard; answers for the window. */
int spw__pg_end(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                size_t cap)
{
    pg *g = st;
    end_all(g);
    /* the delivered prefix: records every shard now holds */
    uint32_t d = 0;
    while (d < n) {
        pg_shard *s = &g->sh[g->shard_of[d]];
        if (partition >= s->nnext || recs[d].offset >= s->next[partition])
            break;
        if (g->dual_now && g->old_of[d] != UINT32_MAX) {
            pg_shard *o = &g->sh[g->old_of[d]];
            if (partition >= o->nnext || recs[d].offset >= o->next[partition])
                break;
        }
        d++;
    }
    *done = d;
    spw__pg_reshard_window_end(g);
    return answer(g, err, cap);
}

/* Windows of several partitions, each shard's share in one transaction
 * (sink.h group_begin): what a failure leaves undone is written again
 * window by window, and the shards that committed skip their rows then
 * (their next moved). */
int spw__pg_group_begin(void *st, const spw_sink_window *w, uint32_t nw, char *err, size_t cap)
{
    (void)err;
    (void)cap;
    begin_all(st, w, nw);
    return SPW_SINK_OK; /* spw__pg_group_end answers */
}

int spw__pg_group_end(void *st, const spw_sink_window *w, uint32_t nw, char *err, size_t cap)
{
    (void)w;
    (void)nw;
    pg *g = st;
    end_all(g);
    spw__pg_reshard_window_end(g);
    return answer(g, err, cap);
}

/* Connection s connected and its position of partition known, for a
 * per-shard statement: 0, or -ECONNREFUSED / -EIO (said in a warning). */
static int shard_at(pg *g, pg_shard *s, uint32_t partition)
{
    char err[512];
    int rr = spw__pg_ready(g, s, err, sizeof err);
    if (rr < 0) {
        spw_warn("sink %s: %s", g->sink, err);
        return rr == -2 ? -ECONNREFUSED : -EIO;
    }
    spw__pg_ensure_next(s, partition);
    return 0;
}

/* Records below next are delivered or dead-lettered: shards behind move up. */
int spw__pg_commit(void *st, uint32_t partition, uint64_t next)
{
    pg *g = st;
    for (uint32_t si = 0; si < g->nshards; si++) {
        pg_shard *s = &g->sh[si];
        char err[512];
        int rr = shard_at(g, s, partition);
        if (rr < 0)
            return rr;
        if (s->next[partition] >= next)
            continue;
        PGresult *r = put_progress(g, s, partition, next);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            spw__pg_pq_msg(err, sizeof err, "saving progress", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok) {
            spw_warn("sink %s: shard %u: %s", g->sink, si, err);
            spw__pg_drop(g, s);
            return -EIO;
        }
        s->next[partition] = next;
    }
    return 0;
}

/*
 * The position was past the partition's end at attach (docs/api.md,
 * "postgres sink"): each shard whose progress row is past end is set down
 * to end (the upsert of a window only raises it), so the records that now
 * hold those offsets are loaded, not skipped. Rows the table holds for
 * offsets >= end are left alone: they may be rows of records a power loss
 * cut (loaded before reads were limited to durable records), but the same
 * state follows from a stream deleted and created again, whose old rows
 * are the user's data; the error line names the range, and a table that
 * maps $partition and $offset lets the operator find them.
 */
int spw__pg_rewind(void *st, uint32_t partition, uint64_t end)
{
    pg *g = st;
    int moved = 0;
    spw__pg_reshard_attached(g); /* after every partition's position (sink.h) */
    for (uint32_t si = 0; si < g->nshards; si++) {
        pg_shard *s = &g->sh[si];
        char err[512];
        int rr = shard_at(g, s, partition);
        if (rr < 0)
            return rr;
        if (s->next[partition] <= end)
            continue;
        char ps[16], sh[16], nx[24];
        snprintf(ps, sizeof ps, "%u", partition);
        snprintf(sh, sizeof sh, "%u", si);
        snprintf(nx, sizeof nx, "%" PRIu64, end);
        const char *params[] = {g->sink, g->stream, ps, sh, nx};
        PGresult *r = PQexecParams(s->c,
                                   "UPDATE " PG_PROGRESS_TABLE " SET next_offset = $5, updated_at = now()"
                                   " WHERE sink = $1 AND stream = $2 AND partition = $3 AND shard = $4",
                                   5, NULL, params, NULL, NULL, 0);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            spw__pg_pq_msg(err, sizeof err, "setting progress down", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok) {
            spw_warn("sink %s: shard %u: %s", g->sink, si, err);
            spw__pg_drop(g, s); /* read the shard's values again before it is used */
            return -EIO;
        }
        spw_error("sink %s: shard %u: partition %u progress %" PRIu64 " set down to %" PRIu64
                  "; rows table %s holds for offsets %" PRIu64 "..%" PRIu64
                  " of this partition, if any, came from records that are not in the stream any more and stay",
                  g->sink, si, partition, s->next[partition], end, g->table, end, s->next[partition] - 1);
        s->next[partition] = end;
        moved = 1;
    }
    return moved;
}
