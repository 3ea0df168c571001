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
 *
 * Files (over pg_int.h, the kind's private interface): this one parses the
 * options and holds the kind's table; pg_conn.c connects to the shards,
 * checks their encoding, table and column types and reads their progress
 * (position); pg_rows.c formats records as COPY rows, text or binary;
 * pg_deliver.c writes windows (COPY + progress row in one transaction per
 * shard), classifies failures for the framework's bisection and DLQ, and
 * moves or rewinds progress rows (commit, rewind).
 */
#include "sink/postgres/pg_int.h"

/* ---- options ---- */

void spw__pg_quote_ident(spw_buf *b, const char *s, size_t n)
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
    spw__pg_reshard_free(g); /* its thread first: it reads the shards' list */
    for (uint32_t k = 0; g->sh && k < g->nshards * g->lanes; k++) {
        pg_shard *s = spw__pg_conn_at(g, k);
        spw__pg_drop(g, s);
        spw_free(s->next);
        spw_free(s->if_part);
        spw_free(s->if_end);
    }
    pthread_mutex_destroy(&g->cancel_mu);
    spw_free(g->sh);
    spw_free(g->ln);
    if (g->ring.pts)
        spw_ring_free(&g->ring);
    spw_buf_fini(&g->copy);
    spw_buf_fini(&g->sql);
    spw_free(g->tmp);
    spw_free(g->shard_of);
    spw_free(g->woff);
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
static const char *const pause_names[] = {"none", "backfill", "verify", "cutover", NULL};

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
    {.name = "statement_timeout_ms", .type = SPW_OPT_INT, .off = offsetof(pg, statement_timeout_ms), .size = 4,
     .def = 60000, .min = 0, .max = 86400000,
     .help = "PostgreSQL's statement_timeout for the sink's statements (0: none); a statement past it is retried"},
    {.name = "copy_min_rows", .type = SPW_OPT_INT, .off = offsetof(pg, copy_min_rows), .size = 4, .def = 64,
     .min = 0, .max = 10000,
     .help = "a shard's share of a transaction with fewer rows (and at most 1 MiB) goes by INSERT in the same "
             "message as BEGIN and COMMIT: one round trip, not COPY's two (0: always COPY)"},
    {.name = "connections", .type = SPW_OPT_INT, .off = offsetof(pg, connections), .size = 4, .def = 1, .min = 1,
     .max = PG_LANES_MAX,
     .help = "connections per shard; in a transaction of copy_min_rows records or more, partition p's rows go "
             "by connection p % connections, each in a transaction of its own, so PostgreSQL loads a batch on "
             "that many backends at once (a smaller one goes by one connection)"},
    /* resharding (pg_reshard.c); these may change while a reshard runs */
    {.name = "reshard_rows_per_s", .type = SPW_OPT_INT, .off = offsetof(pg, rs_rows_per_s), .size = 4, .def = 10000,
     .min = 1, .max = 10000000, .help = "a reshard's backfill copies at most this many rows a second"},
    {.name = "reshard_batch_rows", .type = SPW_OPT_INT, .off = offsetof(pg, rs_batch), .size = 4, .def = 1000,
     .min = 1, .max = 100000, .help = "rows a backfill batch reads from an old shard (one transaction on the new)"},
    {.name = "reshard_delete_moved", .type = SPW_OPT_BOOL, .off = offsetof(pg, rs_delete_moved),
     .help = "at cutover, delete the moved keys' rows from the old shards"},
    {.name = "reshard_pause_before", .type = SPW_OPT_ENUM, .off = offsetof(pg, rs_pause), .choices = pause_names,
     .help = "hold a reshard before this phase (backfill, verify or cutover) until the option changes"},
};

static int pg_open(const char *sink, const char *stream, const char *options, size_t len, void **st, char *err,
                   size_t cap)
{
    pg *g = spw_xcalloc(1, sizeof *g);
    g->lanes = g->lanes_now = 1;
    pthread_mutex_init(&g->cancel_mu, NULL);
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
        spw__pg_quote_ident(&q, g->table, (size_t)(dot - g->table));
        spw_buf_puts(&q, ".");
        spw__pg_quote_ident(&q, dot + 1, strlen(dot + 1));
    } else {
        spw__pg_quote_ident(&q, g->table, strlen(g->table));
    }
    snprintf(g->qtable, sizeof g->qtable, "%.*s", (int)q.len, (const char *)q.p);
    spw_buf_fini(&q);
    spw_ring_init(&g->ring, g->nshards);
    if (g->connections > 1)
        g->ln = spw_xcalloc((size_t)g->nshards * (g->connections - 1), sizeof *g->ln);
    g->lanes = g->connections;
    for (uint32_t si = 0; si < g->nshards; si++)
        for (uint32_t l = 0; l < g->lanes; l++) {
            pg_shard *s = spw__pg_lane(g, si, l);
            if (l)
                memcpy(s->conninfo, g->sh[si].conninfo, sizeof s->conninfo);
            s->si = si;
            s->lane = l;
        }
    if (g->rs_pause)
        g->rs_pause += RS_DUAL_WRITE; /* none, backfill, verify, cutover → 0, RS_BACKFILL, ... */
    *st = g;
    return 0;
}


static void pg_close(void *st) { pg_free(st); }

/* Each connection of a shard carries its partitions (p % connections) in
 * a transaction of its own (pg_deliver.c, lane_of). */
static uint32_t pg_group_lanes(void *st) { return ((pg *)st)->lanes; }

const spw_sink_kind spw_sink_kind_postgres = {
    .name = "postgres",
    .open = pg_open,
    .opts = pg_opts,
    .nopts = sizeof pg_opts / sizeof pg_opts[0],
    .write_begin = spw__pg_begin,
    .write_end = spw__pg_end,
    .group_begin = spw__pg_group_begin,
    .group_end = spw__pg_group_end,
    .group_lanes = pg_group_lanes,
    .position = spw__pg_position,
    .position_error = spw__pg_position_error,
    .commit = spw__pg_commit,
    .rewind = spw__pg_rewind,
    .close = pg_close,
    .interrupt = spw__pg_interrupt,
    .replicates = spw__pg_replicates,
    .set_dir = spw__pg_set_dir,
    .change = spw__pg_change,
    .status_json = spw__pg_status_json,
    .phase = spw__pg_phase,
    .abort = spw__pg_abort,
    .unredact = spw__pg_unredact,
    /* Each window is one transaction per shard, whose COMMIT waits for
     * PostgreSQL's WAL flush: larger windows than other kinds' pay for it
     * (docs/operations.md "PostgreSQL benchmark"). */
    .default_max_events = 50000,
    .default_max_bytes = 8u << 20,
};
