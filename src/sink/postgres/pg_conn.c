/*
 * The postgres sink's connections: connecting to a shard (client_encoding
 * UTF8; a SQL_ASCII database refused with a sentence naming the setting),
 * creating the progress table if missing and reading this sink's progress
 * rows (spw__pg_ready), checking the user's table and each mapped column's
 * type, which decides text or binary COPY per shard (spw__pg_check_table,
 * binary_ok), and the resume position over every shard (spw__pg_position).
 * A connection whose state is unknown is dropped (spw__pg_drop) and made
 * again next time; its progress is then read again before it is written to,
 * once no backend of an earlier connection is left to commit (fence).
 *
 * Hangs: every connection has TCP keepalives (keepalives_idle 30 s,
 * interval 10 s, count 3) and tcp_user_timeout 60 s, so a peer that
 * vanished is noticed (a connection string may set its own), and every
 * statement statement_timeout (options.statement_timeout_ms), so a
 * statement blocked behind a lock or a stuck server fails and is retried.
 * When the sink stops, spw__pg_interrupt (any thread) cancels the
 * statement each shard is running (PQcancel on the connection's cancel
 * handle) and no new connection is made: the transaction rolls back, the
 * write answers RETRY, and the records are written after the restart.
 *
 * PQcancel (libpq 15 has no other) opens a connection of its own to the
 * server's address and waits for the server to close it, with no timeout
 * of any kind: a server that accepts TCP connections and never answers
 * (a listener that does not accept, a hung proxy) keeps it forever. So it
 * runs on a detached thread of its own (pg_cancel_run, shared by the
 * shard, the thread and the interrupter, freed by the last to let go);
 * the interrupter waits PG_CANCEL_WAIT_MS for it and then goes on, saying
 * so. A shard starts no second cancel while one is running. The statement
 * itself is still bounded by statement_timeout, so the stop ends then.
 */
#include "sink/postgres/pg_int.h"

#include "core/clock.h"
#include "core/hash.h"
#include "core/thread.h"

/* ---- cancel requests ---- */

typedef struct pg_cancel_run {
    pthread_mutex_t mu;
    pthread_cond_t cv; /* running went to 0 */
    PGcancel *cn;
    int refs;    /* the shard's, a running thread's, a waiting interrupter's */
    int running; /* a thread is in PQcancel */
    int ok;      /* its answer */
    char err[256];
} pg_cancel_run;

static pg_cancel_run *cancel_run_new(PGcancel *cn)
{
    pg_cancel_run *r = spw_xcalloc(1, sizeof *r);
    pthread_mutex_init(&r->mu, NULL);
    spw_cond_init(&r->cv);
    r->cn = cn;
    r->refs = 1;
    return r;
}

static void cancel_run_put(pg_cancel_run *r)
{
    pthread_mutex_lock(&r->mu);
    int last = --r->refs == 0;
    pthread_mutex_unlock(&r->mu);
    if (!last)
        return;
    PQfreeCancel(r->cn);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    spw_free(r);
}

static void *cancel_main(void *arg)
{
    pg_cancel_run *r = arg;
    spw_thread_name(pthread_self(), "spw-pg-cancel"); /* detached: it names itself */
    char err[256] = "";
    int ok = PQcancel(r->cn, err, sizeof err);
    pthread_mutex_lock(&r->mu);
    r->ok = ok;
    snprintf(r->err, sizeof r->err, "%s", err);
    r->running = 0;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    cancel_run_put(r);
    return NULL;
}

/* Starts r's cancel on a detached thread, holding a reference for the
 * caller too: 0, or -1 (one is running already, or no thread). */
static int cancel_start(pg_cancel_run *r)
{
    pthread_mutex_lock(&r->mu);
    if (r->running) {
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    r->running = 1;
    r->refs += 2;
    pthread_mutex_unlock(&r->mu);
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int e = pthread_create(&th, &at, cancel_main, r);
    pthread_attr_destroy(&at);
    if (e) {
        pthread_mutex_lock(&r->mu);
        r->running = 0;
        r->refs -= 2; /* the shard's reference is still there */
        pthread_mutex_unlock(&r->mu);
        return -1;
    }
    return 0;
}

/* ---- connections ---- */

void spw__pg_drop(pg *g, pg_shard *s)
{
    pthread_mutex_lock(&g->cancel_mu);
    if (s->cancel)
        cancel_run_put(s->cancel);
    s->cancel = NULL;
    pthread_mutex_unlock(&g->cancel_mu);
    if (s->c)
        PQfinish(s->c);
    s->c = NULL;
    s->spw__pg_ready = 0;
    s->checked = 0;
    s->inflight = 0;
}

/* The first line of libpq's message for the connection (or result). */
void spw__pg_pq_msg(char *err, size_t cap, const char *prefix, const char *msg)
{
    size_t n = strcspn(msg ? msg : "", "\n");
    snprintf(err, cap, "%s: %.*s", prefix, (int)n, msg ? msg : "");
}

int spw__pg_ensure_next(pg_shard *s, uint32_t partition)
{
    if (partition < s->nnext)
        return 0;
    uint32_t n = partition + 1;
    s->next = spw_xrealloc(s->next, (size_t)n * sizeof *s->next);
    for (uint32_t i = s->nnext; i < n; i++)
        s->next[i] = 0;
    s->nnext = n;
    return 0;
}

/* Runs a command without results: 0, or -1 with err set (the result's message). */
static int exec_cmd(PGconn *c, const char *sql, char *err, size_t cap, const char *what)
{
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        spw__pg_pq_msg(err, cap, what, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* PostgreSQL's warning when a COMMIT's wait for the synchronous standby
 * is cancelled: "canceling wait for synchronous replication ...", detail
 * "The transaction has already committed locally, but might not have
 * been replicated to the standby." */
static void on_notice(void *arg, const PGresult *res)
{
    pg_shard *s = arg;
    const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
    const char *d = PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL);
    if ((m && strstr(m, "wait for synchronous replication")) || (d && strstr(d, "might not have been replicated")))
        atomic_store(&s->repl_unsure, 1);
}

/*
 * After a cancelled wait (repl_unsure): a transaction that writes WAL
 * commits, and its COMMIT waits for the standby to hold WAL up to it, so
 * once it finishes without the warning everything committed before is on
 * the standby too. It must write WAL: PostgreSQL waits for the standby
 * only at the commit of a transaction that did (an id alone, as
 * pg_current_xact_id() takes, commits without waiting). So it rewrites one
 * of this shard's progress rows as it is (one WAL record). With no row
 * there, no transaction of this sink ever committed on this shard, and
 * there is nothing to confirm. 0, or -2 (still unsure) with err.
 */
static int confirm_replicated(pg *g, pg_shard *s, char *err, size_t cap)
{
    uint32_t si = s->si;
    atomic_store(&s->repl_unsure, 0);
    char pre[96], shard[16];
    snprintf(pre, sizeof pre, "shard %u: confirming that the synchronous standby holds earlier commits", si);
    snprintf(shard, sizeof shard, "%u", si);
    const char *params[] = {g->sink, g->stream, shard};
    PGresult *r = PQexecParams(s->c,
                               "UPDATE " PG_PROGRESS_TABLE " SET next_offset = next_offset WHERE sink = $1 AND stream = $2 "
                               "AND shard = $3 AND partition = (SELECT min(partition) FROM " PG_PROGRESS_TABLE
                               " WHERE sink = $1 AND stream = $2 AND shard = $3)",
                               3, NULL, params, NULL, NULL, 0);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        spw__pg_pq_msg(err, cap, pre, PQresultErrorMessage(r));
    PQclear(r);
    if (!ok || atomic_load(&s->repl_unsure)) {
        if (!err[0] || atomic_load(&s->repl_unsure))
            snprintf(err, cap, "%s: the commit's wait for the standby was cancelled again (is the standby down?)", pre);
        atomic_store(&s->repl_unsure, 1);
        spw__pg_drop(g, s);
        return -2;
    }
    return 0;
}

int spw__pg_replicates(void *st, char *why, size_t cap)
{
    pg *g = st;
    for (uint32_t si = 0; si < g->nshards; si++) {
        if (spw__pg_ready(g, &g->sh[si], why, cap) < 0)
            return 0;
        PGresult *r = PQexec(g->sh[si].c, "SELECT current_setting('synchronous_commit'), "
                                          "current_setting('synchronous_standby_names')");
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            char pre[64];
            snprintf(pre, sizeof pre, "shard %u: reading synchronous_commit", si);
            spw__pg_pq_msg(why, cap, pre, PQresultErrorMessage(r));
            PQclear(r);
            spw__pg_drop(g, &g->sh[si]);
            return 0;
        }
        const char *sc = PQgetvalue(r, 0, 0), *names = PQgetvalue(r, 0, 1);
        int ok = strcmp(sc, "on") == 0 || strcmp(sc, "remote_write") == 0 || strcmp(sc, "remote_apply") == 0;
        if (!ok)
            snprintf(why, cap,
                     "shard %u: synchronous_commit is '%s': commits do not wait for a standby (it must be on, "
                     "remote_write or remote_apply)",
                     si, sc);
        else if (!names[0])
            snprintf(why, cap,
                     "shard %u: synchronous_standby_names is empty: this server's commits wait for no standby "
                     "(set it on the primary to the standby's application_name)",
                     si);
        int has_names = names[0] != 0;
        PQclear(r); /* sc and names point into r */
        if (!ok || !has_names)
            return 0;
        /* Configured, but is a synchronous standby connected now? If not,
         * commits wait (replicated requests time out) until one is: said,
         * not refused (docs/operations.md "Replication"). */
        r = PQexec(g->sh[si].c, "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')");
        if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && atoll(PQgetvalue(r, 0, 0)) == 0)
            spw_warn("sink %s: shard %u: no synchronous standby is connected (pg_stat_replication): its commits, "
                     "and ack=replicated requests, wait until one is",
                     g->sink, si);
        PQclear(r);
    }
    return 1;
}

/*
 * Does the progress table exist with every column this version writes?
 * 1, 0, or -1 (the query failed). Asked before the DDL, which then runs
 * only on a first connect or after an upgrade: ALTER TABLE takes an
 * ACCESS EXCLUSIVE lock even when the column is there, so running it at
 * every connect waited for any open transaction on the table (another
 * sink's commit, a user's report) and failed for a role that may write
 * the table but does not own it.
 */
static int progress_table_current(PGconn *c)
{
    PGresult *r = PQexec(c, "SELECT 1 FROM pg_catalog.pg_attribute WHERE attrelid = "
                            "pg_catalog.to_regclass('" PG_PROGRESS_TABLE "') AND attname = 'incarnation' "
                            "AND NOT attisdropped");
    int st = PQresultStatus(r), n = st == PGRES_TUPLES_OK ? PQntuples(r) : -1;
    PQclear(r);
    return n < 0 ? -1 : n > 0;
}

/*
 * The fence against an earlier session's transaction (docs/api.md
 * "Exactly once"): a group's transaction may still be running in the
 * backend of a connection this sink no longer has (the server restarted
 * after kill -9, or a connection was dropped with its outcome unknown),
 * every statement of it sent, and commit after this session read the
 * progress rows, which would then send its rows again. Every connection
 * of the sink to a shard holds a shared session advisory lock on the
 * shard's key (sink, stream, shard) as long as it lives; a new one takes
 * it and waits until no backend holds it but the live connections of this
 * shard, before reading the progress. A backend of an earlier session
 * holds it until it exits, after its last transaction committed or rolled
 * back. One still there after FENCE_GRACE_MS is terminated
 * (pg_terminate_backend, allowed for backends of the same role: its
 * transaction ends either way, which is all the wait is for); after
 * statement_timeout the connect fails and is tried again.
 */
#define FENCE_GRACE_MS 1000
#define FENCE_POLL_MS 10

static uint64_t fence_key(const pg *g, uint32_t si)
{
    uint64_t h = spw_fnv1a64(14695981039346656037ull, g->sink, strlen(g->sink) + 1);
    h = spw_fnv1a64(h, g->stream, strlen(g->stream) + 1);
    uint8_t b[4] = {(uint8_t)si, (uint8_t)(si >> 8), (uint8_t)(si >> 16), (uint8_t)(si >> 24)};
    return spw_fnv1a64(h, b, sizeof b);
}

/* Which backends other than this shard's live connections hold the key:
 * their count (pids in pids[0..n), at most cap), or -1 (err set). */
static int fence_others(pg *g, pg_shard *s, uint64_t key, int *pids, int cap, char *err, size_t errcap)
{
    char mine[PG_LANES_MAX * 12 + 8] = "{"; /* every lane's pid: ",%d" takes at most 12 */
    size_t at = 1;
    for (uint32_t l = 0; l < g->lanes; l++) {
        pg_shard *c = spw__pg_lane(g, s->si, l);
        if (c->c && PQstatus(c->c) == CONNECTION_OK)
            at += (size_t)snprintf(mine + at, sizeof mine - at, "%s%d", at > 1 ? "," : "", PQbackendPID(c->c));
    }
    snprintf(mine + at, sizeof mine - at, "}");
    char hi[16], lo[16];
    snprintf(hi, sizeof hi, "%" PRIu32, (uint32_t)(key >> 32));
    snprintf(lo, sizeof lo, "%" PRIu32, (uint32_t)key);
    const char *params[] = {hi, lo, mine};
    /* A bigint key shows as classid (high half), objid (low half), objsubid 1. */
    PGresult *r = PQexecParams(s->c,
                               "SELECT pid FROM pg_catalog.pg_locks WHERE locktype = 'advisory' AND granted "
                               "AND database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = "
                               "pg_catalog.current_database()) AND classid = $1::oid AND objid = $2::oid "
                               "AND objsubid = 1 AND pid <> ALL ($3::int[])",
                               3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char pre[64];
        snprintf(pre, sizeof pre, "shard %u: looking for earlier connections (pg_locks)", s->si);
        spw__pg_pq_msg(err, errcap, pre, PQresultErrorMessage(r));
        PQclear(r);
        return -1;
    }
    int n = PQntuples(r);
    for (int i = 0; i < n && i < cap; i++)
        pids[i] = atoi(PQgetvalue(r, i, 0));
    PQclear(r);
    return n;
}

/* Takes this new session's share of the fence and waits for the earlier
 * sessions' backends to end: 0, or -1 with err. */
static int fence(pg *g, pg_shard *s, char *err, size_t cap)
{
    uint64_t key = fence_key(g, s->si);
    char k[24];
    snprintf(k, sizeof k, "%" PRId64, (int64_t)key);
    const char *params[] = {k};
    PGresult *r = PQexecParams(s->c, "SELECT pg_catalog.pg_advisory_lock_shared($1::bigint)", 1, NULL, params, NULL,
                               NULL, 0);
    int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
    if (!ok) {
        char pre[64];
        snprintf(pre, sizeof pre, "shard %u: taking the sink's advisory lock", s->si);
        spw__pg_pq_msg(err, cap, pre, PQresultErrorMessage(r));
    }
    PQclear(r);
    if (!ok)
        return -1;
    uint64_t t0 = spw_mono_ms(), limit = g->statement_timeout_ms ? g->statement_timeout_ms : 60000;
    int terminated = 0, pids[8];
    for (;;) {
        int n = fence_others(g, s, key, pids, 8, err, cap);
        if (n <= 0)
            return n;
        uint64_t waited = spw_mono_ms() - t0;
        if (atomic_load(&g->stopping)) {
            snprintf(err, cap, "shard %u: the sink is stopping", s->si);
            return -1;
        }
        if (waited >= limit) {
            snprintf(err, cap,
                     "shard %u: backend %d, of an earlier connection of this sink, has not ended after %" PRIu64
                     " ms; its transaction may still commit, so the progress is not read before it ends (end it, "
                     "or let this role terminate it: pg_signal_backend)",
                     s->si, pids[0], waited);
            return -1;
        }
        if (!terminated && waited >= FENCE_GRACE_MS) {
            terminated = 1;
            for (int i = 0; i < n && i < 8; i++) {
                char pid[16];
                snprintf(pid, sizeof pid, "%d", pids[i]);
                const char *tp[] = {pid};
                spw_warn("sink %s: shard %u: backend %d of an earlier connection of this sink is still running "
                         "after %d ms; terminating it (its transaction commits or rolls back before the progress is "
                         "read)",
                         g->sink, s->si, pids[i], FENCE_GRACE_MS);
                PQclear(PQexecParams(s->c, "SELECT pg_catalog.pg_terminate_backend($1::int)", 1, NULL, tp, NULL,
                                     NULL, 0));
            }
        }
        spw_sleep_until(spw_mono_ns() + FENCE_POLL_MS * 1000000ull);
    }
}

/* Connected, progress table there, this shard's progress loaded: 0, or
 * -2 (cannot connect) or -1 (a statement failed) with err. */
int spw__pg_ready(pg *g, pg_shard *s, char *err, size_t cap)
{
    uint32_t si = s->si;
    if (s->c && PQstatus(s->c) != CONNECTION_OK)
        spw__pg_drop(g, s);
    if (s->spw__pg_ready)
        return 0;
    if (!s->c) {
        if (atomic_load(&g->stopping)) {
            snprintf(err, cap, "shard %u: the sink is stopping", si);
            return -2;
        }
        /* The keepalives before dbname: the conninfo's own win. client_encoding
         * after dbname: it wins over the conninfo's own. */
        const char *keys[] = {"connect_timeout",    "keepalives",       "keepalives_idle", "keepalives_interval",
                              "keepalives_count",   "tcp_user_timeout", "dbname",          "client_encoding",
                              NULL};
        const char *vals[] = {"5", "1", "30", "10", "3", "60000", s->conninfo, "UTF8", NULL};
        s->c = PQconnectdbParams(keys, vals, 1);
        if (!s->c || PQstatus(s->c) != CONNECTION_OK) {
            char pre[64];
            snprintf(pre, sizeof pre, "connecting to shard %u", si);
            spw__pg_pq_msg(err, cap, pre, s->c ? PQerrorMessage(s->c) : "out of memory");
            spw__pg_drop(g, s);
            return -2;
        }
        PQsetNoticeReceiver(s->c, on_notice, s);
        /* A new session cannot know whether the last commit of the one
         * before (lost mid-COMMIT, or before a restart) reached the
         * standby: confirmed below before anything counts as replicated. */
        atomic_store(&s->repl_unsure, 1);
        /* The sink sends UTF-8 (JSON's encoding): the server must take it
         * as UTF-8 and be able to convert it. SQL_ASCII converts nothing
         * (JSON's \u escapes fail for every record that has one, not as
         * bad data) and checks nothing: refused, with the setting named. */
        const char *se = PQparameterStatus(s->c, "server_encoding");
        const char *ce = PQparameterStatus(s->c, "client_encoding");
        if (!se || strcmp(se, "SQL_ASCII") == 0) {
            snprintf(err, cap,
                     "shard %u: the database's server_encoding is %s; the sink writes UTF-8 text and needs an "
                     "encoding that holds it (UTF8, or one PostgreSQL converts UTF-8 to: create the database with "
                     "ENCODING 'UTF8', e.g. initdb --encoding=UTF8)",
                     si, se ? se : "unknown");
            spw__pg_drop(g, s);
            return -1;
        }
        if (!ce || strcmp(ce, "UTF8") != 0) {
            snprintf(err, cap,
                     "shard %u: client_encoding is %s after asking for UTF8 (does the connection's options "
                     "set it?); the sink writes UTF-8 text",
                     si, ce ? ce : "unknown");
            spw__pg_drop(g, s);
            return -1;
        }
        PGcancel *cn = PQgetCancel(s->c);
        pthread_mutex_lock(&g->cancel_mu);
        s->cancel = cn ? cancel_run_new(cn) : NULL;
        pthread_mutex_unlock(&g->cancel_mu);
        char sql[96];
        snprintf(sql, sizeof sql, "SET statement_timeout = %" PRIu32, g->statement_timeout_ms);
        PGresult *r = PQexec(s->c, sql);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok) {
            char pre[64];
            snprintf(pre, sizeof pre, "shard %u: setting statement_timeout", si);
            spw__pg_pq_msg(err, cap, pre, PQresultErrorMessage(r));
        }
        PQclear(r);
        if (!ok || fence(g, s, err, cap) < 0) {
            spw__pg_drop(g, s);
            return -1;
        }
    }
    char pre[64];
    int have = progress_table_current(s->c);
    if (have < 0) {
        snprintf(pre, sizeof pre, "shard %u: looking up " PG_PROGRESS_TABLE, si);
        spw__pg_pq_msg(err, cap, pre, PQerrorMessage(s->c));
        spw__pg_drop(g, s);
        return -1;
    }
    snprintf(pre, sizeof pre, "shard %u: creating " PG_PROGRESS_TABLE, si);
    if (!have && exec_cmd(s->c, PG_PROGRESS_DDL, err, cap, pre)) {
        spw__pg_drop(g, s);
        return -1;
    }
    char shard[16];
    snprintf(shard, sizeof shard, "%u", si);
    const char *params[] = {g->sink, g->stream, shard};
    PGresult *r = PQexecParams(s->c,
                               "SELECT partition, next_offset, incarnation FROM " PG_PROGRESS_TABLE
                               " WHERE sink = $1 AND stream = $2 AND shard = $3",
                               3, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        snprintf(pre, sizeof pre, "shard %u: reading progress", si);
        spw__pg_pq_msg(err, cap, pre, PQresultErrorMessage(r));
        PQclear(r);
        spw__pg_drop(g, s);
        return -1;
    }
    pg_shard *h = spw__pg_home(g, s); /* the shard's progress, whichever connection reads it */
    for (uint32_t i = 0; i < h->nnext; i++)
        h->next[i] = 0;
    for (int i = 0; i < PQntuples(r); i++) {
        long long p = atoll(PQgetvalue(r, i, 0)), n = atoll(PQgetvalue(r, i, 1));
        if (p < 0 || p >= 65536 || n < 0)
            continue;
        uint64_t inc = strtoull(PQgetvalue(r, i, 2), NULL, 10);
        if (inc != g->incarnation) {
            /* Written for an earlier stream of this name (deleted and
             * created again): its positions mean nothing here. The next
             * commit of this partition overwrites the row. */
            spw_warn("sink %s: shard %u: the progress of partition %lld belongs to an earlier stream %s "
                     "(incarnation %" PRIu64 ", now %" PRIu64 "); starting it from the oldest offset",
                     g->sink, si, p, g->stream, inc, g->incarnation);
            n = 0;
        }
        spw__pg_ensure_next(h, (uint32_t)p);
        h->next[p] = (uint64_t)n;
    }
    PQclear(r);
    if (atomic_load(&s->repl_unsure) && confirm_replicated(g, s, err, cap) < 0)
        return -2;
    s->spw__pg_ready = 1;
    return 0;
}
/* Can a column of type oid get source src in COPY's binary format, with
 * the same result (value or error) as the text form would give? */
static int binary_ok(int src, uint32_t oid, int int_times)
{
    switch (src) {
    case SRC_ID:
    case SRC_OFFSET: return oid == OID_INT8;
    case SRC_PARTITION: return oid == OID_INT8 || oid == OID_INT4;
    case SRC_TS: return oid == OID_INT8 || ((oid == OID_TIMESTAMPTZ || oid == OID_TIMESTAMP) && int_times);
    default: /* key, value, JSON pointer: text the type's receive function parses as its input function does */
        return oid == OID_TEXT || oid == OID_VARCHAR || oid == OID_JSON || oid == OID_JSONB;
    }
}

/* The user's table and every mapped column exist (their types, and so the
 * COPY format): 0, or -1 with err. */
int spw__pg_check_table(pg *g, pg_shard *s, char *err, size_t cap)
{
    uint32_t si = s->si;
    if (s->checked)
        return 0;
    const char *params[] = {g->qtable};
    PGresult *r = PQexecParams(s->c,
                               "SELECT a.attname, t.typcategory, a.atttypid FROM pg_attribute a JOIN pg_type t"
                               " ON t.oid = a.atttypid WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND"
                               " NOT a.attisdropped",
                               1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) != PGRES_TUPLES_OK) {
        char pre[400];
        snprintf(pre, sizeof pre, "shard %u: looking up table %s", si, g->table);
        spw__pg_pq_msg(err, cap, pre, PQresultErrorMessage(r));
        PQclear(r);
        spw__pg_drop(g, s);
        return -1;
    }
    if (PQntuples(r) == 0) {
        snprintf(err, cap,
                 "table %s does not exist on shard %u (create it there, with the mapped columns: the sink "
                 "does not create tables)",
                 g->table, si);
        PQclear(r);
        return -1;
    }
    const char *idt = PQparameterStatus(s->c, "integer_datetimes");
    int int_times = idt && strcmp(idt, "on") == 0;
    s->binary = !g->text_only;
    for (uint32_t c = 0; c < g->ncols; c++) {
        int found = 0;
        for (int i = 0; i < PQntuples(r) && !found; i++) {
            if (strcmp(PQgetvalue(r, i, 0), g->cols[c].name) == 0) {
                found = 1;
                s->is_time[c] = PQgetvalue(r, i, 1)[0] == 'D'; /* date/time category */
                s->oid[c] = (uint32_t)strtoul(PQgetvalue(r, i, 2), NULL, 10);
                if (!binary_ok(g->cols[c].src, s->oid[c], int_times))
                    s->binary = 0;
            }
        }
        if (!found) {
            snprintf(err, cap, "table %s on shard %u has no column %s (add it: the sink does not alter tables)",
                     g->table, si, g->cols[c].name);
            PQclear(r);
            return -1;
        }
    }
    PQclear(r);
    s->checked = 1;
    return 0;
}

int spw__pg_position(void *st, uint64_t incarnation, uint32_t partition, uint64_t *next)
{
    pg *g = st;
    if (incarnation != g->incarnation) {
        /* Another stream of this name: reread every shard's rows against it. */
        g->incarnation = incarnation;
        for (uint32_t k = 0; k < g->nshards * g->lanes; k++)
            spw__pg_conn_at(g, k)->spw__pg_ready = 0;
    }
    uint64_t min = UINT64_MAX;
    for (uint32_t i = 0; i < g->nshards; i++) {
        char *err = g->pos_err;
        pg_shard *s = &g->sh[i];
        int r = spw__pg_ready(g, s, err, sizeof g->pos_err);
        if (r < 0) {
            spw_warn("sink %s: %s", g->sink, err);
            return r == -2 ? -ECONNREFUSED : -EIO; /* the log line has PostgreSQL's words */
        }
        spw__pg_ensure_next(s, partition);
        if (s->next[partition] < min)
            min = s->next[partition];
    }
    if (g->from && spw__pg_reshard_seed(g, partition, &min) < 0)
        return -EIO; /* the warning is logged, the sentence in pos_err */
    *next = min;
    return 0;
}

const char *spw__pg_position_error(void *st) { return ((pg *)st)->pos_err; }

void spw__pg_interrupt(void *st)
{
    pg *g = st;
    atomic_store(&g->stopping, 1);
    spw__pg_reshard_stop(g);
    pg_cancel_run *runs[PG_SHARDS_MAX * PG_LANES_MAX];
    uint32_t shard[PG_SHARDS_MAX * PG_LANES_MAX], n = 0;
    pthread_mutex_lock(&g->cancel_mu);
    for (uint32_t k = 0; k < g->nshards * g->lanes; k++) {
        pg_shard *s = spw__pg_conn_at(g, k);
        /* a connection with nothing running ignores it */
        if (s->cancel && cancel_start(s->cancel) == 0) {
            runs[n] = s->cancel;
            shard[n++] = s->si;
        }
    }
    pthread_mutex_unlock(&g->cancel_mu);
    /* Not under cancel_mu: the worker may drop its connections meanwhile. */
    uint64_t until = spw_mono_ns() + (uint64_t)PG_CANCEL_WAIT_MS * 1000000u;
    for (uint32_t k = 0; k < n; k++) {
        pg_cancel_run *r = runs[k];
        pthread_mutex_lock(&r->mu);
        while (r->running && spw_cond_wait_until(&r->cv, &r->mu, until) == 0) {
        }
        int running = r->running, ok = r->ok;
        char err[256];
        snprintf(err, sizeof err, "%s", r->err);
        pthread_mutex_unlock(&r->mu);
        if (running)
            spw_warn("sink %s: shard %u: the request to cancel its statement was not answered within %d ms (the "
                     "server takes connections and does not answer them); not waiting for it: the statement "
                     "ends at its statement_timeout",
                     g->sink, shard[k], PG_CANCEL_WAIT_MS);
        else if (!ok)
            spw_warn("sink %s: shard %u: cancelling its statement: %.*s", g->sink, shard[k],
                     (int)strcspn(err, "\n"), err);
        cancel_run_put(r);
    }
}
