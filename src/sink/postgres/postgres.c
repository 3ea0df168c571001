/*
 * The `postgres` sink: loads a stream into a table sharded over several
 * PostgreSQL servers, exactly once (docs/api.md "postgres sink").
 * Options: {"shards":["libpq conninfo",...],"table":"name" or
 * "schema.name","columns":{"col":"/json/pointer" | "$key" | "$ts" | "$id" |
 * "$partition" | "$offset" | "$value", ...}}.
 *
 * Routing: a record's key picks its shard on the consistent-hash ring of
 * src/core/ring.h, so a key's rows are on one shard only.
 *
 * Loading: COPY ... FROM STDIN in text format. The values come from JSON
 * text and PostgreSQL's per-type input functions parse text into any
 * column type (integers, numeric, jsonb, timestamptz, text, ...), so text
 * costs us one escaping pass; binary would need the column types' wire
 * encodings reimplemented here for every type, for little gain on the
 * server side at these row widths.
 *
 * Exactly once: on each shard, a window's rows for that shard and the row
 * (sink, stream, partition, shard) → next_offset of the progress table
 * spillway_sink_progress (created if missing) are committed in one
 * transaction; next_offset is the window's end, so "records of this
 * partition below next_offset that belong here are here". At start
 * (position) the sink reads every shard's value, resumes each partition
 * at the minimum over shards, and skips on each shard the records below
 * what that shard holds. After a connection error the outcome of a COMMIT
 * is unknown, so the connection is dropped and the shard's values are read
 * again before it is written to. commit (after dead-lettering and after a
 * window) moves the shards that are behind up to the framework's position,
 * so a dead-lettered record is not written again and restarts start near.
 *
 * Errors: a shard that cannot be reached, or any error but bad data →
 * RETRY (the connection is dropped and made again next time); a missing
 * table or column → RETRY with a sentence saying what is missing (creating
 * the table is the user's job); a database whose server_encoding is
 * SQL_ASCII → RETRY with a sentence naming the setting (the sink connects
 * with client_encoding UTF8 and needs a database that converts it); data
 * the table refuses (SQLSTATE classes 22 data exception — a character the
 * database's encoding cannot hold included — and 23 integrity constraint
 * violation) → REJECT with PostgreSQL's message, and the framework bisects
 * to the bad record.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <libpq-fe.h>
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
#define PG_CONNINFO_MAX 1024
#define PG_PROGRESS_TABLE "spillway_sink_progress"

enum { SRC_PTR, SRC_KEY, SRC_TS, SRC_ID, SRC_PARTITION, SRC_OFFSET, SRC_VALUE };

typedef struct pg_col {
    char name[64];
    int src;
    spw_json_ptr ptr;
} pg_col;

typedef struct pg_shard {
    char conninfo[PG_CONNINFO_MAX];
    PGconn *c;
    int ready;   /* connected, progress table there, progress loaded */
    int checked; /* the user's table and columns were found */
    int binary;  /* COPY in binary format here (every column's type and source allow it) */
    int inflight; /* a COPY was begun (pg_begin) and waits for pg_end */
    uint64_t inflight_end; /* its window's end: next_offset once committed */
    uint32_t oid[PG_COLS_MAX]; /* each mapped column's type on this shard */
    uint8_t is_time[PG_COLS_MAX]; /* date/time category: $ts as ISO 8601 text */
    uint64_t *next; /* per partition: what this shard holds */
    uint32_t nnext;
} pg_shard;

typedef struct pg {
    char sink[128];
    char stream[130];
    char table[300];  /* as given */
    char qtable[620]; /* quoted */
    int text_only;    /* options.copy_format "text" */
    pg_col cols[PG_COLS_MAX];
    uint32_t ncols;
    pg_shard *sh;
    uint32_t nshards;
    spw_ring ring;
    spw_buf copy, sql;
    char *tmp; /* unescaped JSON strings */
    size_t tmpcap;
    uint32_t *shard_of;
    size_t shard_cap;
    int res;       /* between pg_begin and pg_end: the window's answer so far (W_*) */
    uint64_t incarnation; /* the stream's (catalog/catalog.h), from pg_position: progress rows carry it */
    char e1[512];  /* and its sentence */
    char pos_err[512]; /* why the last pg_position failed */
} pg;

/* ---- options ---- */

static void quote_ident(spw_buf *b, const char *s, size_t n)
{
    spw_buf_puts(b, "\"");
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"')
            spw_buf_puts(b, "\"");
        spw_buf_put(b, s + i, 1);
    }
    spw_buf_puts(b, "\"");
}

static const char *parse_columns(void *st, const spw_json_span *obj, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    pg *g = st;
    spw_json_iter it;
    spw_json_span k, v;
    spw_json_iter_init(&it, obj);
    while (spw_json_iter_next(&it, &k, &v)) {
        if (g->ncols == PG_COLS_MAX)
            return "options.columns: at most 64 columns";
        pg_col *c = &g->cols[g->ncols];
        long n = spw_json_unescape(&k, c->name, sizeof c->name - 1);
        if (n <= 0 || memchr(c->name, 0, (size_t)n))
            return "options.columns: column names must be 1 to 63 bytes";
        c->name[n] = 0;
        for (uint32_t j = 0; j < g->ncols; j++)
            if (strcmp(g->cols[j].name, c->name) == 0)
                return "options.columns: a column is named twice";
        char src[300];
        n = v.type == SPW_JSON_STRING ? spw_json_unescape(&v, src, sizeof src - 1) : -1;
        if (n <= 0)
            return "options.columns: each source must be a JSON pointer (\"/a/b\") or one of $key, $ts, $id, "
                   "$partition, $offset, $value";
        src[n] = 0;
        static const struct {
            const char *name;
            int src;
        } named[] = {{"$key", SRC_KEY},       {"$ts", SRC_TS},         {"$id", SRC_ID},
                     {"$partition", SRC_PARTITION}, {"$offset", SRC_OFFSET}, {"$value", SRC_VALUE}};
        c->src = -1;
        for (size_t j = 0; j < sizeof named / sizeof named[0]; j++)
            if (strcmp(src, named[j].name) == 0)
                c->src = named[j].src;
        if (c->src < 0) {
            if (src[0] != '/' || spw_json_ptr_compile(&c->ptr, src) < 0)
                return "options.columns: a source is neither a JSON pointer (\"/a/b\", at most 16 levels) nor one "
                       "of $key, $ts, $id, $partition, $offset, $value";
            c->src = SRC_PTR;
        }
        g->ncols++;
    }
    if (g->ncols == 0)
        return "options.columns must name at least one column";
    return NULL;
}

static void pg_free(pg *g)
{
    for (uint32_t i = 0; i < g->nshards; i++) {
        if (g->sh[i].c)
            PQfinish(g->sh[i].c);
        spw_free(g->sh[i].next);
    }
    spw_free(g->sh);
    if (g->ring.pts)
        spw_ring_free(&g->ring);
    spw_buf_fini(&g->copy);
    spw_buf_fini(&g->sql);
    spw_free(g->tmp);
    spw_free(g->shard_of);
    spw_free(g);
}

/* options.shards: 1 to 64 libpq connection strings, each checked by libpq. */
static const char *parse_shards(void *st, const spw_json_span *v, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    pg *g = st;
    spw_json_ptr root = {0};
    spw_json_error je;
    const char *p = spw_json_ws(v->p + 1, v->p + v->n);
    uint32_t cnt = 0;
    spw_json_span e[PG_SHARDS_MAX + 1];
    while (*p != ']') {
        const char *ee;
        if (cnt > PG_SHARDS_MAX)
            return "options.shards: at most 64 shards";
        if (spw_json_scan(p, v->p + v->n, &root, 1, &e[cnt], &ee, &je) || e[cnt].type != SPW_JSON_STRING)
            return "options.shards must be an array of libpq connection strings";
        cnt++;
        p = spw_json_ws(ee, v->p + v->n);
        if (*p == ',')
            p = spw_json_ws(p + 1, v->p + v->n);
    }
    if (cnt == 0 || cnt > PG_SHARDS_MAX)
        return "options.shards must list 1 to 64 libpq connection strings";
    g->sh = spw_xcalloc(cnt, sizeof *g->sh);
    g->nshards = cnt;
    for (uint32_t i = 0; i < cnt; i++) {
        long n = spw_json_unescape(&e[i], g->sh[i].conninfo, PG_CONNINFO_MAX - 1);
        if (n < 0 || memchr(g->sh[i].conninfo, 0, (size_t)n))
            return "options.shards: a connection string is longer than 1023 bytes";
        g->sh[i].conninfo[n] = 0;
        char *perr = NULL;
        PQconninfoOption *co = PQconninfoParse(g->sh[i].conninfo, &perr);
        if (!co) {
            PQfreemem(perr);
            return "options.shards: a connection string does not parse (libpq conninfo: "
                   "\"host=H port=P dbname=D user=U\" or a postgresql:// URI)";
        }
        PQconninfoFree(co);
    }
    return NULL;
}

static const char *const copy_formats[] = {"auto", "text", NULL};

/* The options (docs/api.md "postgres sink"): one table, core/opts.h. */
static const spw_opt pg_opts[] = {
    {.name = "shards", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_ARRAY, .parse = parse_shards,
     .flags = SPW_OPT_REQUIRED, .must = "an array of libpq connection strings",
     .help = "libpq connection strings; shard i is the i-th"},
    {.name = "table", .type = SPW_OPT_STR, .off = offsetof(pg, table), .size = sizeof ((pg *)0)->table,
     .flags = SPW_OPT_REQUIRED, .must = "a table name (\"name\" or \"schema.name\")",
     .help = "the target table, \"name\" or \"schema.name\""},
    {.name = "columns", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .parse = parse_columns,
     .flags = SPW_OPT_REQUIRED, .must = "an object {\"column\":\"/pointer\" or \"$key\", ...}",
     .help = "{\"column\":\"/pointer\" or \"$key\", ...}"},
    {.name = "copy_format", .type = SPW_OPT_ENUM, .off = offsetof(pg, text_only), .choices = copy_formats,
     .help = "auto: COPY binary where every column allows it; text: always text"},
};

static int pg_open(const char *sink, const char *stream, const char *options, size_t len, void **st, char *err,
                   size_t cap)
{
    pg *g = spw_xcalloc(1, sizeof *g);
    snprintf(g->sink, sizeof g->sink, "%s", sink);
    snprintf(g->stream, sizeof g->stream, "%s", stream);
    if (spw_opts_parse(pg_opts, sizeof pg_opts / sizeof pg_opts[0], "options", "postgres sink", options, len,
                       NULL, g, NULL, err, cap) < 0) {
        pg_free(g);
        return SPW_EINVAL;
    }
    /* "schema.name" → "schema"."name"; a name with more dots is one identifier after the first */
    spw_buf q = SPW_BUF_INIT;
    const char *dot = strchr(g->table, '.');
    if (dot && dot != g->table && dot[1]) {
        quote_ident(&q, g->table, (size_t)(dot - g->table));
        spw_buf_puts(&q, ".");
        quote_ident(&q, dot + 1, strlen(dot + 1));
    } else {
        quote_ident(&q, g->table, strlen(g->table));
    }
    snprintf(g->qtable, sizeof g->qtable, "%.*s", (int)q.len, (const char *)q.p);
    spw_buf_fini(&q);
    spw_ring_init(&g->ring, g->nshards);
    *st = g;
    return 0;
}

/* ---- connections ---- */

static void drop(pg_shard *s)
{
    if (s->c)
        PQfinish(s->c);
    s->c = NULL;
    s->ready = 0;
    s->checked = 0;
    s->inflight = 0;
}

/* The first line of libpq's message for the connection (or result). */
static void pq_msg(char *err, size_t cap, const char *prefix, const char *msg)
{
    size_t n = strcspn(msg ? msg : "", "\n");
    snprintf(err, cap, "%s: %.*s", prefix, (int)n, msg ? msg : "");
}

static int ensure_next(pg_shard *s, uint32_t partition)
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
        pq_msg(err, cap, what, PQresultErrorMessage(r));
    PQclear(r);
    return ok ? 0 : -1;
}

/* Connected, progress table there, this shard's progress loaded: 0, or
 * -2 (cannot connect) or -1 (a statement failed) with err. */
static int ready(pg *g, uint32_t si, char *err, size_t cap)
{
    pg_shard *s = &g->sh[si];
    if (s->c && PQstatus(s->c) != CONNECTION_OK)
        drop(s);
    if (s->ready)
        return 0;
    if (!s->c) {
        /* client_encoding after dbname: it wins over the conninfo's own. */
        const char *keys[] = {"connect_timeout", "dbname", "client_encoding", NULL};
        const char *vals[] = {"5", s->conninfo, "UTF8", NULL};
        s->c = PQconnectdbParams(keys, vals, 1);
        if (!s->c || PQstatus(s->c) != CONNECTION_OK) {
            char pre[64];
            snprintf(pre, sizeof pre, "connecting to shard %u", si);
            pq_msg(err, cap, pre, s->c ? PQerrorMessage(s->c) : "out of memory");
            drop(s);
            return -2;
        }
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
            drop(s);
            return -1;
        }
        if (!ce || strcmp(ce, "UTF8") != 0) {
            snprintf(err, cap,
                     "shard %u: client_encoding is %s after asking for UTF8 (does the connection's options "
                     "set it?); the sink writes UTF-8 text",
                     si, ce ? ce : "unknown");
            drop(s);
            return -1;
        }
    }
    char pre[64];
    snprintf(pre, sizeof pre, "shard %u: creating " PG_PROGRESS_TABLE, si);
    if (exec_cmd(s->c,
                 "SET client_min_messages = warning;"
                 "CREATE TABLE IF NOT EXISTS " PG_PROGRESS_TABLE " (sink text NOT NULL, stream text NOT NULL,"
                 " partition integer NOT NULL, shard integer NOT NULL, next_offset bigint NOT NULL,"
                 " updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (sink, stream, partition, shard));"
                 "ALTER TABLE " PG_PROGRESS_TABLE " ADD COLUMN IF NOT EXISTS incarnation bigint NOT NULL DEFAULT 0",
                 err, cap, pre)) {
        drop(s);
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
        pq_msg(err, cap, pre, PQresultErrorMessage(r));
        PQclear(r);
        drop(s);
        return -1;
    }
    for (uint32_t i = 0; i < s->nnext; i++)
        s->next[i] = 0;
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
        ensure_next(s, (uint32_t)p);
        s->next[p] = (uint64_t)n;
    }
    PQclear(r);
    s->ready = 1;
    return 0;
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
static int check_table(pg *g, uint32_t si, char *err, size_t cap)
{
    pg_shard *s = &g->sh[si];
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
        pq_msg(err, cap, pre, PQresultErrorMessage(r));
        PQclear(r);
        drop(s);
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

static int pg_position(void *st, uint64_t incarnation, uint32_t partition, uint64_t *next)
{
    pg *g = st;
    if (incarnation != g->incarnation) {
        /* Another stream of this name: reread every shard's rows against it. */
        g->incarnation = incarnation;
        for (uint32_t i = 0; i < g->nshards; i++)
            g->sh[i].ready = 0;
    }
    uint64_t min = UINT64_MAX;
    for (uint32_t i = 0; i < g->nshards; i++) {
        char *err = g->pos_err;
        int r = ready(g, i, err, sizeof g->pos_err);
        if (r < 0) {
            spw_warn("sink %s: %s", g->sink, err);
            return r == -2 ? -ECONNREFUSED : -EIO; /* the log line has PostgreSQL's words */
        }
        ensure_next(&g->sh[i], partition);
        if (g->sh[i].next[partition] < min)
            min = g->sh[i].next[partition];
    }
    *next = min;
    return 0;
}

static const char *pg_position_error(void *st) { return ((pg *)st)->pos_err; }

/* ---- COPY rows ---- */

static void put_escaped(spw_buf *b, const char *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        char e = 0;
        switch (p[i]) {
        case '\\': e = '\\'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        default: continue;
        }
        spw_buf_put(b, p + run, i - run);
        char two[2] = {'\\', e};
        spw_buf_put(b, two, 2);
        run = i + 1;
    }
    spw_buf_put(b, p + run, n - run);
}

static void put_ts(spw_buf *b, int64_t ms, int is_time)
{
    char t[64];
    if (is_time) {
        time_t sec = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        int milli = (int)(ms - (int64_t)sec * 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        snprintf(t, sizeof t, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
    } else {
        snprintf(t, sizeof t, "%" PRId64, ms);
    }
    spw_buf_puts(b, t);
}

static void put_u64(spw_buf *b, uint64_t v) { spw_buf_put_u64(b, v); }

/* The text of a key, value or JSON-pointer column for r: 1 with *p, *n,
 * or 0 for NULL (no key; value not JSON or no such field; JSON null). A
 * JSON string field is its unescaped text; any other field its JSON. */
static int col_text(pg *g, const pg_col *col, const spw_sink_rec *r, const char **p, size_t *n)
{
    if (col->src == SRC_KEY) {
        *p = (const char *)r->key;
        *n = r->key_len > 0 ? (size_t)r->key_len : 0;
        return r->key_len >= 0;
    }
    if (col->src == SRC_VALUE) {
        *p = (const char *)r->value;
        *n = r->value_len;
        return 1;
    }
    spw_json_span f;
    spw_json_error je;
    const char *end;
    const char *vp = (const char *)r->value;
    if (spw_json_scan(vp, vp + r->value_len, &col->ptr, 1, &f, &end, &je) || f.type == SPW_JSON_NONE ||
        f.type == SPW_JSON_NULL)
        return 0;
    if (f.type != SPW_JSON_STRING) {
        *p = f.p;
        *n = f.n;
        return 1;
    }
    if (g->tmpcap < f.n) {
        g->tmpcap = f.n;
        g->tmp = spw_xrealloc(g->tmp, g->tmpcap);
    }
    long u = spw_json_unescape(&f, g->tmp, g->tmpcap);
    *p = g->tmp;
    *n = u > 0 ? (size_t)u : 0;
    return 1;
}

/* One COPY text line for record r. */
static void put_row_text(pg *g, const pg_shard *s, uint32_t partition, const spw_sink_rec *r)
{
    spw_buf *b = &g->copy;
    for (uint32_t c = 0; c < g->ncols; c++) {
        const pg_col *col = &g->cols[c];
        if (c)
            spw_buf_puts(b, "\t");
        switch (col->src) {
        case SRC_TS: put_ts(b, r->ts, s->is_time[c]); break;
        case SRC_ID: put_u64(b, r->id); break;
        case SRC_PARTITION: put_u64(b, partition); break;
        case SRC_OFFSET: put_u64(b, r->offset); break;
        default: {
            const char *p;
            size_t n;
            if (col_text(g, col, r, &p, &n))
                put_escaped(b, p, n);
            else
                spw_buf_puts(b, "\\N");
        }
        }
    }
    spw_buf_puts(b, "\n");
}

/* COPY binary format (PostgreSQL's "Binary Format" of COPY; docs/api.md
 * "postgres sink"): a signature, flags and header-extension length; per
 * row an int16 field count, then per field an int32 length (-1: NULL) and
 * the type's send form; an int16 -1 at the end. Integers big-endian. */
static const uint8_t copy_bin_header[19] = {'P', 'G', 'C', 'O', 'P', 'Y', '\n', 0xff, '\r', '\n', 0,
                                            0,   0,   0,   0,   0,   0,   0,    0};
static const uint8_t copy_bin_trailer[2] = {0xff, 0xff};

/* The low bytes (2, 4 or 8) of v, big-endian. */
static inline void put_be(spw_buf *b, uint64_t v, unsigned bytes)
{
    uint64_t be = __builtin_bswap64(v << (8 * (8 - bytes))); /* little-endian host (core/endian.h) */
    spw_buf_put(b, &be, bytes);
}

/* Milliseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01. */
#define PG_EPOCH_MS INT64_C(946684800000)
/* Inside PostgreSQL's timestamp range (4714-11-24 BC to 294277 AD) with a
 * margin: ms outside gets a finite out-of-range value, so the server
 * answers "timestamp out of range" as it does for the text form. */
#define TS_MS_MIN INT64_C(-210866803200000)
#define TS_MS_MAX INT64_C(9224318015999999)

static void put_ts_bin(spw_buf *b, int64_t ms, uint32_t oid)
{
    put_be(b, 8, 4);
    if (oid == OID_INT8) {
        put_be(b, (uint64_t)ms, 8);
        return;
    }
    int64_t us = ms >= TS_MS_MIN && ms <= TS_MS_MAX ? (ms - PG_EPOCH_MS) * 1000 : INT64_MAX - 1;
    put_be(b, (uint64_t)us, 8);
}

/* One COPY binary row for record r (every column passed binary_ok). */
static void put_row_bin(pg *g, const pg_shard *s, uint32_t partition, const spw_sink_rec *r)
{
    spw_buf *b = &g->copy;
    put_be(b, g->ncols, 2);
    for (uint32_t c = 0; c < g->ncols; c++) {
        const pg_col *col = &g->cols[c];
        switch (col->src) {
        case SRC_TS: put_ts_bin(b, r->ts, s->oid[c]); break;
        case SRC_ID: put_be(b, 8, 4); put_be(b, r->id, 8); break;
        case SRC_OFFSET: put_be(b, 8, 4); put_be(b, r->offset, 8); break;
        case SRC_PARTITION:
            if (s->oid[c] == OID_INT4) {
                put_be(b, 4, 4);
                put_be(b, partition, 4);
            } else {
                put_be(b, 8, 4);
                put_be(b, partition, 8);
            }
            break;
        default: {
            const char *p;
            size_t n;
            if (!col_text(g, col, r, &p, &n)) {
                put_be(b, UINT32_MAX, 4); /* -1: NULL */
                break;
            }
            int jsonb = s->oid[c] == OID_JSONB; /* jsonb's send form: version 1, then the JSON text */
            put_be(b, n + (size_t)jsonb, 4);
            if (jsonb)
                spw_buf_put(b, "\1", 1);
            spw_buf_put(b, p, n);
        }
        }
    }
}

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
static int fail(pg *g, uint32_t si, PGresult *r, const char *what, char *err, size_t cap)
{
    pg_shard *s = &g->sh[si];
    char pre[96];
    snprintf(pre, sizeof pre, "shard %u: %s", si, what);
    pq_msg(err, cap, pre, r ? PQresultErrorMessage(r) : PQerrorMessage(s->c));
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
    drop(s);
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
static PGresult *put_progress(pg *g, uint32_t si, uint32_t partition, uint64_t next)
{
    char ps[16], sh[16], nx[24], inc[24];
    snprintf(ps, sizeof ps, "%u", partition);
    snprintf(sh, sizeof sh, "%u", si);
    snprintf(nx, sizeof nx, "%" PRIu64, next);
    snprintf(inc, sizeof inc, "%" PRIu64, g->incarnation);
    const char *params[] = {g->sink, g->stream, ps, sh, nx, inc};
    return PQexecParams(g->sh[si].c, PROGRESS_UPSERT "($1, $2, $3, $4, $5, $6)" PROGRESS_ON_CONFLICT, 6, NULL,
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

/*
 * Begins writing the rows of records [0, n) routed to shard si (not yet
 * there) and the shard's progress in one transaction, in two round trips
 * and the rows' stream:
 *   "BEGIN; INSERT progress ... ON CONFLICT ...; COPY t (cols) FROM STDIN"
 *   rows, in COPY_PIECE pieces as they are formatted; end of data
 * here, and the COPY's answer and "COMMIT" in shard_end. The progress row
 * goes first; it commits with the rows or not at all. W_OK with
 * s->inflight set when shard_end must follow.
 */
static int shard_begin(pg *g, uint32_t si, uint32_t partition, const spw_sink_rec *recs, uint32_t n, char *err,
                       size_t cap)
{
    pg_shard *s = &g->sh[si];
    uint64_t end = recs[n - 1].offset + 1;
    uint32_t mine = 0;
    for (uint32_t i = 0; i < n; i++)
        mine += g->shard_of[i] == si;
    if (mine == 0)
        return W_OK; /* nothing of this window goes there: a shard that is down does not matter */
    if (ready(g, si, err, cap) < 0)
        return W_RETRY;
    ensure_next(s, partition);
    uint32_t rows = 0;
    for (uint32_t i = 0; i < n; i++)
        rows += g->shard_of[i] == si && recs[i].offset >= s->next[partition];
    if (rows == 0)
        return W_OK;
    if (check_table(g, si, err, cap) < 0)
        return W_RETRY;
    spw_buf *q = &g->sql;
    q->len = 0;
    spw_buf_puts(q, "BEGIN; " PROGRESS_UPSERT "(");
    if (put_literal(s->c, q, g->sink) < 0 || (spw_buf_puts(q, ", "), put_literal(s->c, q, g->stream)) < 0)
        return fail(g, si, NULL, "quoting the progress row", err, cap);
    char nums[80];
    snprintf(nums, sizeof nums, ", %u, %u, %" PRIu64 ", %" PRIu64 ")", partition, si, end, g->incarnation);
    spw_buf_puts(q, nums);
    spw_buf_puts(q, PROGRESS_ON_CONFLICT "; COPY ");
    spw_buf_puts(q, g->qtable);
    spw_buf_puts(q, " (");
    for (uint32_t c = 0; c < g->ncols; c++) {
        if (c)
            spw_buf_puts(q, ", ");
        quote_ident(q, g->cols[c].name, strlen(g->cols[c].name));
    }
    spw_buf_puts(q, s->binary ? ") FROM STDIN (FORMAT binary)" : ") FROM STDIN");
    spw_buf_put(q, "", 1);
    /* One simple-query message: PQexec stops at the COPY (PGRES_COPY_IN),
     * or returns the first error (the statements after it are skipped). */
    PGresult *r = PQexec(s->c, (const char *)q->p);
    if (PQresultStatus(r) != PGRES_COPY_IN)
        return fail(g, si, r, "BEGIN, progress and COPY", err, cap);
    PQclear(r);
    g->copy.len = 0;
    if (s->binary)
        spw_buf_put(&g->copy, copy_bin_header, sizeof copy_bin_header);
    for (uint32_t i = 0; i < n; i++) {
        if (g->shard_of[i] != si || recs[i].offset < s->next[partition])
            continue;
        if (s->binary)
            put_row_bin(g, s, partition, &recs[i]);
        else
            put_row_text(g, s, partition, &recs[i]);
        if (g->copy.len >= COPY_PIECE) {
            if (PQputCopyData(s->c, (const char *)g->copy.p, (int)g->copy.len) != 1)
                return fail(g, si, NULL, "COPY data", err, cap);
            g->copy.len = 0;
        }
    }
    if (s->binary)
        spw_buf_put(&g->copy, copy_bin_trailer, sizeof copy_bin_trailer);
    if ((g->copy.len && PQputCopyData(s->c, (const char *)g->copy.p, (int)g->copy.len) != 1) ||
        PQputCopyEnd(s->c, NULL) != 1)
        return fail(g, si, NULL, "COPY data", err, cap);
    s->inflight = 1;
    s->inflight_end = end;
    return W_OK;
}

/* The COPY's answer and COMMIT of what shard_begin began. */
static int shard_end(pg *g, uint32_t si, uint32_t partition, char *err, size_t cap)
{
    pg_shard *s = &g->sh[si];
    s->inflight = 0;
    PGresult *r = PQgetResult(s->c);
    if (PQresultStatus(r) != PGRES_COMMAND_OK) {
        /* drain to the end of the command before rolling back */
        PGresult *more;
        while ((more = PQgetResult(s->c)))
            PQclear(more);
        return fail(g, si, r, "COPY", err, cap);
    }
    PQclear(r);
    while ((r = PQgetResult(s->c)))
        PQclear(r);
    r = PQexec(s->c, "COMMIT");
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        return fail(g, si, r, "COMMIT", err, cap);
    PQclear(r);
    s->next[partition] = s->inflight_end;
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

/* Sends the window to every shard it touches (so the shards parse in
 * parallel, and the sink loop reads its next batch meanwhile). */
static int pg_begin(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                    size_t cap)
{
    (void)done;
    (void)err;
    (void)cap;
    pg *g = st;
    if (g->shard_cap < n) {
        g->shard_cap = n;
        g->shard_of = spw_xrealloc(g->shard_of, (size_t)n * sizeof *g->shard_of);
    }
    if (g->nshards == 1)
        memset(g->shard_of, 0, (size_t)n * sizeof *g->shard_of);
    else
        for (uint32_t i = 0; i < n; i++)
            g->shard_of[i] =
                spw_ring_shard(&g->ring, recs[i].key, recs[i].key_len > 0 ? (size_t)recs[i].key_len : 0);
    g->res = W_OK;
    g->e1[0] = 0;
    for (uint32_t si = 0; si < g->nshards; si++) {
        char e[512] = "";
        fold(g, shard_begin(g, si, partition, recs, n, e, sizeof e), e);
    }
    return SPW_SINK_OK; /* pg_end answers for the window */
}

/* Commits what pg_begin began on each shard; answers for the window. */
static int pg_end(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                  size_t cap)
{
    pg *g = st;
    for (uint32_t si = 0; si < g->nshards; si++) {
        if (!g->sh[si].inflight)
            continue;
        char e[512] = "";
        fold(g, shard_end(g, si, partition, e, sizeof e), e);
    }
    /* the delivered prefix: records every shard now holds */
    uint32_t d = 0;
    while (d < n) {
        pg_shard *s = &g->sh[g->shard_of[d]];
        if (partition >= s->nnext || recs[d].offset >= s->next[partition])
            break;
        d++;
    }
    *done = d;
    if (g->res == W_OK)
        return SPW_SINK_OK;
    snprintf(err, cap, "%s", g->e1);
    return g->res == W_REJECT ? SPW_SINK_REJECT : SPW_SINK_RETRY;
}

/* Records below next are delivered or dead-lettered: shards behind move up. */
static int pg_commit(void *st, uint32_t partition, uint64_t next)
{
    pg *g = st;
    for (uint32_t si = 0; si < g->nshards; si++) {
        pg_shard *s = &g->sh[si];
        char err[512];
        int rr = ready(g, si, err, sizeof err);
        if (rr < 0) {
            spw_warn("sink %s: %s", g->sink, err);
            return rr == -2 ? -ECONNREFUSED : -EIO;
        }
        ensure_next(s, partition);
        if (s->next[partition] >= next)
            continue;
        PGresult *r = put_progress(g, si, partition, next);
        int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
        if (!ok)
            pq_msg(err, sizeof err, "saving progress", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok) {
            spw_warn("sink %s: shard %u: %s", g->sink, si, err);
            drop(s);
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
static int pg_rewind(void *st, uint32_t partition, uint64_t end)
{
    pg *g = st;
    int moved = 0;
    for (uint32_t si = 0; si < g->nshards; si++) {
        pg_shard *s = &g->sh[si];
        char err[512];
        int rr = ready(g, si, err, sizeof err);
        if (rr < 0) {
            spw_warn("sink %s: %s", g->sink, err);
            return rr == -2 ? -ECONNREFUSED : -EIO;
        }
        ensure_next(s, partition);
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
            pq_msg(err, sizeof err, "setting progress down", PQresultErrorMessage(r));
        PQclear(r);
        if (!ok) {
            spw_warn("sink %s: shard %u: %s", g->sink, si, err);
            drop(s); /* read the shard's values again before it is used */
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

static void pg_close(void *st) { pg_free(st); }

const spw_sink_kind spw_sink_kind_postgres = {
    .name = "postgres",
    .open = pg_open,
    .opts = pg_opts,
    .nopts = sizeof pg_opts / sizeof pg_opts[0],
    .write_begin = pg_begin,
    .write_end = pg_end,
    .position = pg_position,
    .position_error = pg_position_error,
    .commit = pg_commit,
    .rewind = pg_rewind,
    .close = pg_close,
    /* Each window is one transaction per shard, whose COMMIT waits for
     * PostgreSQL's WAL flush: larger windows than other kinds' pay for it
     * (docs/operations.md "PostgreSQL benchmark"). */
    .default_max_events = 50000,
    .default_max_bytes = 8u << 20,
};
