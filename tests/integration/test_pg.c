/*
 * The postgres sink end to end (docs/api.md "Sinks", docs/api.md "postgres
 * sink") against two real PostgreSQL servers started here (initdb +
 * pg_ctl in a temp dir, private ports, 127.0.0.1 only; as the postgres
 * user when run as root), stopped by pg_ctl at the end (and on a failed
 * check). PostgreSQL's binaries missing is a failure: scripts/deps.sh
 * installs them.
 *   - Bad options are refused (400) at PUT.
 *   - N events (SPW_PG_EVENTS, default 1,000,000) drained into two shards;
 *     Spillway killed -9 mid-drain and restarted; one shard stopped as if
 *     it crashed (pg_ctl -m immediate) mid-drain while more events arrive
 *     (the sink retries, says why) and started again (crash recovery).
 *     At the end, on the union of the shards, count(*) = count(DISTINCT
 *     id) = events sent, and each key's rows are on one shard only.
 *   - Poison records (violating a CHECK constraint) land in the DLQ
 *     stream with PostgreSQL's error text; every other event is in the
 *     table.
 *   - COPY formats: the same events through a sink in binary format (a
 *     table whose every column allows it), one in text format
 *     (copy_format "text") and one writing INSERT ... VALUES instead of
 *     COPY (copy_min_rows above its batch) give identical rows, the same
 *     records refused, and each sink used the format it says
 *     (PostgreSQL's statement log).
 *   - A postgres sink without "batch" gets the kind's defaults.
 */
#include "pg.h"
#include "spillway.h"

static const char *BIN;
static char *TMP;
/* 0 and 1: the shards of most tests (UTF8); 2: LATIN1, 3: SQL_ASCII (the
 * encoding test). The servers themselves: pg.h. */
#define NPG 4
static pgsrv PG[NPG];

/* Stops shard i: mode "fast" (clean), or "immediate" (as a crash: every
 * backend quits mid-transaction, the next start recovers from the WAL). */
static void pg_stop_mode(int i, const char *mode) { pgsrv_stop_mode(&PG[i], mode); }
static void pg_stop(int i) { pg_stop_mode(i, "fast"); }
static void pg_start(int i) { pgsrv_start(&PG[i]); }

static void pg_init(int i, const char *encoding)
{
    char name[16];
    snprintf(name, sizeof name, "pg%d", i);
    pgsrv_init_enc(&PG[i], TMP, name, encoding);
}

static PGconn *pg_conn(int i) { return pgsrv_conn(&PG[i]); }
static void pg_exec(int i, const char *sql) { pgsrv_exec(&PG[i], sql); }
/* One number from a query on shard i (-1 if the shard does not answer). */
static long long pg_num(int i, const char *sql) { return pgsrv_num(&PG[i], sql); }

static long long total(const char *table)
{
    char q[128];
    snprintf(q, sizeof q, "SELECT count(*) FROM %s", table);
    long long a = pg_num(0, q), b = pg_num(1, q);
    return a < 0 || b < 0 ? -1 : a + b;
}

static void wait_rows(const char *table, long long want)
{
    long long n = -1;
    for (int i = 0; i < 1800; i++) {
        n = total(table);
        if (n >= want)
            break;
        usleep(100000);
    }
    if (n != want)
        fprintf(stderr, "table %s: %lld rows, want %lld\n", table, n, want);
    CHECK_EQ(n, want);
}

static const char *TABLE_SQL = "CREATE TABLE events (id bigint NOT NULL, k text, part int, off bigint, v int "
                               "CHECK (v >= 0), s text, ts timestamptz, eid bigint)";

/* connections: options.connections (0: left out, the default 1) */
static void sink_body(char *b, size_t cap, const char *stream, const char *table, int max_events, int connections)
{
    char conns[48] = "";
    if (connections)
        snprintf(conns, sizeof conns, "\"connections\":%d,", connections);
    snprintf(b, cap,
             "{\"stream\":\"%s\",\"kind\":\"postgres\",\"dlq\":\"dlq\",\"batch\":{\"max_events\":%d,"
             "\"max_wait_ms\":20},\"retry\":{\"initial_ms\":50,\"max_ms\":500},\"options\":{%s\"shards\":["
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\","
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"%s\",\"columns\":{"
             "\"id\":\"/i\",\"k\":\"$key\",\"part\":\"$partition\",\"off\":\"$offset\",\"v\":\"/v\",\"s\":\"/s\","
             "\"ts\":\"$ts\",\"eid\":\"$id\"}}}",
             stream, max_events, conns, PG[0].port, PG[1].port, table);
}

static void test_options(int port)
{
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x", "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{}}"), 400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[],\"table\":\"t\","
                        "\"columns\":{\"a\":\"$key\"}}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[\"host=x\"],\"table\":\"t\","
                        "\"columns\":{\"a\":\"$nope\"}}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[\"host=x\"],\"table\":\"t\","
                        "\"columns\":{}}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[\"host=x\"],"
                        "\"columns\":{\"a\":\"$key\"}}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[\"bad = = conninfo\"],"
                        "\"table\":\"t\",\"columns\":{\"a\":\"$key\"}}}"),
             400);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x",
                        "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[\"host=x\"],"
                        "\"table\":\"t\",\"columns\":{\"a\":\"$key\"},\"copy_format\":\"binary\"}}"),
             400);
    /* options.connections: 1 to 16 */
    for (int bad = 0; bad < 3; bad++) {
        char b[512];
        snprintf(b, sizeof b,
                 "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[\"host=x\"],\"table\":\"t\","
                 "\"columns\":{\"a\":\"$key\"},\"connections\":%s}}",
                 bad == 0 ? "0" : bad == 1 ? "17" : "\"2\"");
        CHECK_EQ(req_status(port, "PUT", "/v1/sinks/x", b), 400);
    }
    CHECK_EQ(req_status(port, "GET", "/v1/sinks/x", NULL), 404);
    /* without "batch": the postgres kind's defaults (50000 events, 8 MiB) */
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/d",
                        "{\"stream\":\"ev\",\"kind\":\"postgres\",\"options\":{\"shards\":[\"host=127.0.0.1 "
                        "port=1 connect_timeout=1\"],\"table\":\"t\",\"columns\":{\"a\":\"$key\"}}}"),
             201);
    resp r = http_json(port, "GET", "/v1/sinks/d", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"max_events\":50000,\"max_bytes\":8388608,") != NULL);
    free(r.body);
    /* given: kept */
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/d2",
                        "{\"stream\":\"ev\",\"kind\":\"postgres\",\"batch\":{\"max_events\":7},\"options\":{"
                        "\"shards\":[\"host=127.0.0.1 port=1 connect_timeout=1\"],\"table\":\"t\",\"columns\":{"
                        "\"a\":\"$key\"}}}"),
             201);
    r = http_json(port, "GET", "/v1/sinks/d2", NULL);
    CHECK(strstr(r.body, "\"max_events\":7,\"max_bytes\":8388608,") != NULL);
    free(r.body);
    CHECK_EQ(req_status(port, "DELETE", "/v1/sinks/d", NULL), 204);
    CHECK_EQ(req_status(port, "DELETE", "/v1/sinks/d2", NULL), 204);
}

/* The whole of shard i's server log (malloc'd). */
static char *pg_log(int i)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/log", PG[i].dir);
    FILE *f = fopen(path, "r");
    CHECK(f);
    size_t cap = 1 << 16, len = 0;
    char *b = malloc(cap);
    CHECK(b);
    size_t n;
    while ((n = fread(b + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 == cap) {
            cap *= 2;
            b = realloc(b, cap);
            CHECK(b);
        }
    }
    fclose(f);
    b[len] = 0;
    return b;
}

/* Does every COPY statement into table in log end with "(FORMAT binary)"
 * (want 1) or none (want 0)? And there is at least one. */
static void check_copy_format(const char *log, const char *table, int want)
{
    char pat[64];
    snprintf(pat, sizeof pat, "COPY \"%s\" (", table);
    int seen = 0;
    for (const char *p = strstr(log, pat); p; p = strstr(p + 1, pat)) {
        size_t line = strcspn(p, "\n");
        char *l = strndup(p, line);
        int bin = strstr(l, "FROM STDIN (FORMAT binary)") != NULL;
        if (bin != want)
            fprintf(stderr, "table %s: COPY statement in the wrong format: %s\n", table, l);
        CHECK_EQ(bin, want);
        CHECK(strstr(l, "FROM STDIN") != NULL);
        free(l);
        seen++;
    }
    CHECK(seen > 0);
}

/* Records in partition 0 of stream (a 1-partition stream). */
static size_t stream_count(int binport, const char *stream)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);
    spillway_fetch_result *fr;
    CHECK_EQ(spillway_client_fetch(c, stream, 0, 0, 4 << 20, &fr), 0);
    size_t n = spillway_fetch_count(fr);
    spillway_fetch_free(fr);
    spillway_client_close(c);
    return n;
}

static void count_failed(void *opaque, const spillway_delivery *d)
{
    if (d->status) {
        fprintf(stderr, "produce to %s failed: %d\n", d->stream, d->status);
        __atomic_add_fetch((int *)opaque, 1, __ATOMIC_RELAXED);
    }
}

/* Events for the format test: edge cases of keys, values and timestamps. */
static int produce_formats(int binport, const char *stream)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_producer *p;
    int failed = 0;
    spillway_producer_config pc;
    spillway_producer_config_init(&pc);
    pc.on_delivery = count_failed;
    pc.opaque = &failed;
    CHECK_EQ(spillway_producer_new(addr, &pc, &p), 0);
    static const int64_t ts[] = {SPILLWAY_TS_NOW, -1, 0, 946684800000, 946684799999, 1700000000123, -62135596800000};
    int n = 0;
    for (int i = 0; i < 300; i++) {
        char key[64], val[512];
        int kl = snprintf(key, sizeof key, i % 3 == 0 ? "k\\%d \xc3\xa9 \"q\"" : "k%d", i % 40);
        int vl = snprintf(val, sizeof val,
                          "{\"i\":%d,\"s\":\"tab\\there\\nnew \\\\ back \\\"q\\\" \\u00e9 \\ud83d\\ude00\","
                          "\"n\":%d.5,\"o\":{\"a\":[1,\"x\\ty\",null],\"b\":%s},\"nul\":null}",
                          i, i - 150, i % 2 ? "true" : "false");
        int64_t t = ts[i % (int)(sizeof ts / sizeof ts[0])];
        CHECK_EQ(spillway_producer_send(p, stream, i % 7 == 0 ? NULL : key, i % 7 == 0 ? -1 : kl, val, (size_t)vl, t,
                                   SPILLWAY_ACK_LEVEL_DEFAULT, NULL),
                 0);
        n++;
    }
    /* refused by every sink: a value that is not JSON (jsonb column), a
     * timestamp past PostgreSQL's range (year 296,682) */
    CHECK_EQ(spillway_producer_send(p, stream, "bad", 3, "not json \\ \t at all", 19, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_DEFAULT,
                               NULL),
             0);
    CHECK_EQ(spillway_producer_send(p, stream, "bad", 3, "{\"i\":1000}", 10, INT64_C(9300000000000000),
                               SPILLWAY_ACK_LEVEL_DEFAULT, NULL),
             0);
    /* and a string field holding NUL (\u0000, unescaped for column s), which no text column takes; a
     * statement cannot even carry it: the INSERT sink (copy_min_rows) sends that share by COPY */
    static const char nul[] = "{\"i\":1001,\"s\":\"nul \\u0000 here\"}";
    CHECK_EQ(spillway_producer_send(p, stream, "bad", 3, nul, sizeof nul - 1, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_DEFAULT,
                                    NULL),
             0);
    CHECK_EQ(spillway_producer_flush(p, 60000), 0);
    spillway_producer_close(p, 1000);
    CHECK_EQ(failed, 0);
    return n;
}

static const char *FMT_COLS = "id bigint, k text, part int, off bigint, ts timestamptz, tsl timestamp, tsms bigint, "
                              "v jsonb, vj json, s text, sv varchar(200), n jsonb, o jsonb, miss text, nul text";
static const char *FMT_SELECT = "SELECT id, k, part, off, ts, tsl, tsms, v, vj::text, s, sv, n, o, miss, nul FROM ";

/* copy_min_rows 0: every transaction by COPY; 10000: by INSERT (the batch is 64 records) */
static void fmt_sink_body(char *b, size_t cap, const char *table, const char *format, int copy_min_rows)
{
    snprintf(b, cap,
             "{\"stream\":\"fmt\",\"kind\":\"postgres\",\"dlq\":\"fdlq\",\"batch\":{\"max_events\":64,"
             "\"max_wait_ms\":20},\"retry\":{\"initial_ms\":50,\"max_ms\":500},\"options\":{\"shards\":["
             "\"host=127.0.0.1 port=%d user=fmt dbname=postgres\",\"host=127.0.0.1 port=%d user=fmt dbname=postgres\"],"
             "\"table\":\"%s\",\"copy_format\":\"%s\",\"copy_min_rows\":%d,\"columns\":{\"id\":\"$id\",\"k\":\"$key\",\"part\":\"$partition\","
             "\"off\":\"$offset\",\"ts\":\"$ts\",\"tsl\":\"$ts\",\"tsms\":\"$ts\",\"v\":\"$value\",\"vj\":\"$value\","
             "\"s\":\"/s\",\"sv\":\"/s\",\"n\":\"/n\",\"o\":\"/o\",\"miss\":\"/nope\",\"nul\":\"/nul\"}}}",
             PG[0].port, PG[1].port, table, format, copy_min_rows);
}

/* Did table get its rows by INSERT ... VALUES, in one message with BEGIN
 * and COMMIT (at least once), and by COPY only what a statement cannot
 * carry (the record with a NUL byte): every COPY into it was refused (its
 * statement logged again with the error), and there was one? */
static void check_insert_only(const char *log, const char *table)
{
    char pat[64];
    snprintf(pat, sizeof pat, "COPY \"%s\" (", table);
    int sent = 0, refused = 0;
    for (const char *p = strstr(log, pat); p; p = strstr(p + 1, pat)) {
        const char *l = p;
        while (l > log && l[-1] != '\n')
            l--;
        char *line = strndup(l, (size_t)(p - l));
        sent += strstr(line, "statement: ") != NULL;
        refused += strstr(line, "STATEMENT:  ") != NULL;
        free(line);
    }
    snprintf(pat, sizeof pat, "; INSERT INTO \"%s\" (", table);
    int inserts = 0;
    for (const char *p = strstr(log, pat); p; p = strstr(p + 1, pat)) {
        size_t line = strcspn(p, "\n");
        char *l = strndup(p, line);
        CHECK(strstr(l, ") VALUES (") != NULL);
        free(l);
        inserts++;
    }
    fprintf(stderr, "table %s: %d statements by INSERT, %d by COPY (%d refused)\n", table, inserts, sent, refused);
    CHECK(inserts > 0);
    CHECK_EQ(sent, refused);
}

/* Binary and text COPY, and INSERT (copy_min_rows), give the same rows
 * and refuse the same records. */
static void test_formats(int port, int binport)
{
    char sql[1024], body[2048];
    for (int i = 0; i < 2; i++) {
        /* the sinks connect as fmt, whose statements the server logs */
        pg_exec(i, "CREATE ROLE fmt LOGIN SUPERUSER");
        pg_exec(i, "ALTER ROLE fmt SET log_statement = 'all'");
        snprintf(sql, sizeof sql, "CREATE TABLE fmt_b (%s); CREATE TABLE fmt_t (%s); CREATE TABLE fmt_i (%s)",
                 FMT_COLS, FMT_COLS, FMT_COLS);
        pg_exec(i, sql);
    }
    put_stream(port, "fmt", "{\"partitions\":2,\"format\":\"bytes\"}"); /* bytes: a value that is not JSON too */
    put_stream(port, "fdlq", "{\"partitions\":1}");
    fmt_sink_body(body, sizeof body, "fmt_b", "auto", 0);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/fb", body), 201);
    fmt_sink_body(body, sizeof body, "fmt_t", "text", 0);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/ft", body), 201);
    fmt_sink_body(body, sizeof body, "fmt_i", "auto", 10000);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/fi", body), 201);
    int n = produce_formats(binport, "fmt");
    wait_rows("fmt_b", n);
    wait_rows("fmt_t", n);
    wait_rows("fmt_i", n);
    for (int i = 0; i < 600 && stream_count(binport, "fdlq") < 9; i++)
        usleep(100000);
    usleep(300000); /* anything extra would show now */
    CHECK_EQ(stream_count(binport, "fdlq"), 9); /* each sink refused the same three */
    static const char *const other[] = {"fmt_t", "fmt_i"};
    for (int i = 0; i < 2; i++) {
        for (int o = 0; o < 2; o++)
            for (int dir = 0; dir < 2; dir++) {
                snprintf(sql, sizeof sql, "SELECT count(*) FROM (%s%s EXCEPT ALL %s%s) x", FMT_SELECT,
                         dir ? other[o] : "fmt_b", FMT_SELECT, dir ? "fmt_b" : other[o]);
                long long d = pg_num(i, sql);
                if (d != 0)
                    fprintf(stderr, "shard %d: %lld rows of %s not in %s\n", i, d, dir ? other[o] : "fmt_b",
                            dir ? "fmt_b" : other[o]);
                CHECK_EQ(d, 0);
            }
    }
    /* and the values are the ones sent (spot checks, on the union) */
    static const char *const zero[] = {
        "SELECT count(*) FROM fmt_b WHERE s <> E'tab\\there\\nnew \\\\ back \"q\" \\u00e9 \\U0001F600' OR sv <> s",
        "SELECT count(*) FROM fmt_b WHERE miss IS NOT NULL OR nul IS NOT NULL OR v->>'i' IS NULL OR vj::jsonb <> v",
        "SELECT count(*) FROM fmt_b WHERE o->'a'->>1 <> E'x\\ty' OR n::text <> ((v->>'i')::int - 150)::text || '.5'",
        "SELECT count(*) FROM fmt_b WHERE tsms = -1 AND (ts <> '1969-12-31 23:59:59.999+00' OR "
        "tsl <> '1969-12-31 23:59:59.999')",
        "SELECT count(*) FROM fmt_b WHERE tsms = 946684800000 AND ts <> '2000-01-01 00:00:00+00'",
        "SELECT count(*) FROM fmt_b WHERE tsms = -62135596800000 AND ts <> '0001-01-01 00:00:00+00'",
        "SELECT count(*) FROM fmt_b WHERE ts <> 'epoch'::timestamptz + tsms * interval '1 millisecond' OR "
        "tsl <> (ts AT TIME ZONE 'UTC')",
        "SELECT count(*) FROM fmt_b WHERE (k IS NULL) <> ((v->>'i')::int % 7 = 0)",
        "SELECT count(*) FROM fmt_b WHERE (v->>'i')::int % 3 = 0 AND (v->>'i')::int % 7 <> 0 AND "
        "k <> E'k\\\\' || ((v->>'i')::int % 40) || E' \\u00e9 \"q\"'",
    };
    for (size_t q = 0; q < sizeof zero / sizeof zero[0]; q++) {
        long long a = pg_num(0, zero[q]), b = pg_num(1, zero[q]);
        if (a != 0 || b != 0)
            fprintf(stderr, "%s: %lld + %lld\n", zero[q], a, b);
        CHECK_EQ(a + b, 0);
    }
    int at_minus1 = 0; /* events sent with ts -1: i % 7 == 1 */
    for (int i = 0; i < 300; i++)
        at_minus1 += i % 7 == 1;
    CHECK_EQ(pg_num(0, "SELECT count(*) FROM fmt_b WHERE tsms = -1") +
                 pg_num(1, "SELECT count(*) FROM fmt_b WHERE tsms = -1"),
             at_minus1);
    for (int i = 0; i < 2; i++) {
        char *log = pg_log(i);
        check_copy_format(log, "fmt_b", 1);
        check_copy_format(log, "fmt_t", 0);
        check_insert_only(log, "fmt_i"); /* the NUL record's shard went by COPY */
        free(log);
    }
}

/* Waits until the sink's GET body contains needle. */
static void wait_sink_says(int port, const char *sink, const char *needle)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/sinks/%s", sink);
    for (int i = 0; i < 600; i++) {
        resp r = http_json(port, "GET", path, NULL);
        int ok = r.status == 200 && strstr(r.body, needle);
        if (ok || i == 599)
            fprintf(stderr, "sink %s: %s", sink, r.body);
        free(r.body);
        if (ok)
            return;
        usleep(100000);
    }
    CHECK(!"the sink did not report it");
}

/*
 * A position past the partition's end at attach (as a power loss leaves
 * it when the sink was shown records that were then cut): the progress
 * rows on PostgreSQL are set DOWN to the end, so the records that take
 * those offsets are loaded (with GREATEST alone they were skipped); logged
 * and counted in /metrics. The rows of the lost records stay (documented:
 * they cannot be told from a re-created stream's old rows). Here the
 * phantom rows and the progress are written by hand: 4 rows at offsets
 * 10..13 of a partition holding 10 records, progress 14 on both shards.
 */
static void test_rewind(srv *s, const char *data)
{
    put_stream(s->port, "rw", "{\"partitions\":1}");
    for (int i = 0; i < 2; i++)
        pg_exec(i, "CREATE TABLE rw (id bigint NOT NULL, k text, part int, off bigint, v int CHECK (v >= 0), "
                   "s text, ts timestamptz, eid bigint)");
    char body[2048];
    sink_body(body, sizeof body, "rw", "rw", 100, 0);
    CHECK_EQ(req_status(s->port, "PUT", "/v1/sinks/rw", body), 201);
    pg_produce(s->binport, "rw", 0, 10, 10, 0);
    wait_rows("rw", 10);
    resp gr = http_json(s->port, "GET", "/v1/streams/rw", NULL);
    const char *ip = strstr(gr.body, "\"incarnation\":");
    CHECK(ip != NULL);
    unsigned long long inc = strtoull(ip + 14, NULL, 10); /* the rows are this stream's */
    free(gr.body);
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    /* The records after the end are produced before the sink attaches
     * (PostgreSQL connections take a while): the end at open counts. */
    for (int i = 0; i < 2; i++) {
        char q[512];
        snprintf(q, sizeof q,
                 "INSERT INTO rw (id, k, part, off, v) VALUES (%d, 'x', 0, %d, 0), (%d, 'x', 0, %d, 0);"
                 "INSERT INTO spillway_sink_progress (sink, stream, partition, shard, next_offset, incarnation) VALUES "
                 "('rw', 'rw', 0, %d, 14, %llu) ON CONFLICT (sink, stream, partition, shard) DO UPDATE SET next_offset = 14",
                 1000 + 2 * i, 10 + 2 * i, 1001 + 2 * i, 11 + 2 * i, i, inc);
        pg_exec(i, q);
    }
    CHECK_EQ(total("rw"), 14);
    char logp[4400];
    snprintf(logp, sizeof logp, "%s.log", data);
    srv_start_log(s, BIN, data, NULL, logp);
    pg_produce(s->binport, "rw", 100, 4, 4, 0); /* offsets 10..13 */
    for (int i = 0; i < 600; i++) {
        long long n = pg_num(0, "SELECT count(*) FROM rw WHERE id >= 100 AND id < 1000") +
                      pg_num(1, "SELECT count(*) FROM rw WHERE id >= 100 AND id < 1000");
        if (n == 4)
            break;
        usleep(100000);
    }
    CHECK_EQ(pg_num(0, "SELECT count(*) FROM rw WHERE id >= 100 AND id < 1000") +
                 pg_num(1, "SELECT count(*) FROM rw WHERE id >= 100 AND id < 1000"),
             4);
    const char *phantom = "SELECT count(*) FROM rw WHERE id >= 1000";
    CHECK_EQ(pg_num(0, phantom) + pg_num(1, phantom), 4); /* left in place (documented) */
    CHECK_EQ(total("rw"), 18);
    for (int i = 0; i < 2; i++) /* each new record once, at its offset */
        CHECK_EQ(pg_num(i, "SELECT count(*) FROM rw WHERE id >= 100 AND id < 1000 AND off <> id - 90"), 0);
    resp r = http_json(s->port, "GET", "/metrics", NULL);
    CHECK(strstr(r.body, "\nspillway_positions_clamped_total 1\n"));
    free(r.body);
    char text[1 << 16];
    FILE *f = fopen(logp, "r");
    CHECK(f != NULL);
    size_t tl = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[tl] = 0;
    CHECK(strstr(text, "sink rw: partition 0 position 14 is past the partition's end 10"));
    CHECK(strstr(text, "progress 14 set down to 10; rows table rw holds for offsets 10..13"));

    /* Only one shard past the end (18 on shard 0, 14 = the end on shard 1):
     * the sink's position (the lowest) is not past it, yet shard 0 must be
     * set down too, or the records routed to it at 14..17 are skipped. */
    CHECK_EQ(srv_stop(s, SIGTERM), 0);
    pg_exec(0, "INSERT INTO rw (id, k, part, off, v) VALUES (2000, 'x', 0, 14, 0), (2001, 'x', 0, 15, 0);"
               "UPDATE spillway_sink_progress SET next_offset = 18 WHERE sink = 'rw'");
    CHECK_EQ(pg_num(1, "SELECT next_offset FROM spillway_sink_progress WHERE sink = 'rw'"), 14);
    srv_start_log(s, BIN, data, NULL, logp);
    pg_produce(s->binport, "rw", 200, 4, 4, 0); /* offsets 14..17 */
    const char *q2a = "SELECT count(*) FROM rw WHERE id >= 200 AND id < 1000";
    for (int i = 0; i < 600 && pg_num(0, q2a) + pg_num(1, q2a) < 4; i++)
        usleep(100000);
    CHECK_EQ(pg_num(0, q2a) + pg_num(1, q2a), 4);
    CHECK(pg_num(0, q2a) > 0); /* some of them went to the shard that was past the end */
    for (int i = 0; i < 2; i++)
        CHECK_EQ(pg_num(i, "SELECT count(*) FROM rw WHERE id >= 200 AND id < 1000 AND off <> id - 186"), 0);
    r = http_json(s->port, "GET", "/metrics", NULL);
    CHECK(strstr(r.body, "\nspillway_positions_clamped_total 1\n"));
    free(r.body);
    f = fopen(logp, "r");
    CHECK(f != NULL);
    tl = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[tl] = 0;
    CHECK(strstr(text, "sink rw: partition 0: the target's position was past the partition's end 14 in part"));
    CHECK(strstr(text, "sink rw: shard 0: partition 0 progress 18 set down to 14"));
}

/* One-shard sink body for the encoding test. */
static void enc_sink_body(char *b, size_t cap, int shard, const char *dlq)
{
    snprintf(b, cap,
             "{\"stream\":\"enc\",\"kind\":\"postgres\",\"dlq\":\"%s\",\"batch\":{\"max_events\":100,"
             "\"max_wait_ms\":20},\"retry\":{\"initial_ms\":50,\"max_ms\":500},\"options\":{\"shards\":["
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"enc\",\"columns\":{"
             "\"id\":\"/i\",\"s\":\"/s\",\"j\":\"$value\"}}}",
             dlq, PG[shard].port);
}

/*
 * Encodings: the sink writes UTF-8 whatever the database's encoding.
 *   - LATIN1 database: text LATIN1 holds arrives as the same characters
 *     (the sink's client_encoding is UTF8, so PostgreSQL converts; taken
 *     as LATIN1 bytes it would be mojibake), and a record with a character
 *     LATIN1 lacks is rejected (SQLSTATE 22P05) into the DLQ — the records
 *     after it are loaded, nothing stalls.
 *   - SQL_ASCII database: refused at attach with a sentence naming
 *     server_encoding; the stream is not loaded.
 */
static void test_encodings(int port, int binport)
{
    pg_init(2, "LATIN1");
    pg_init(3, "SQL_ASCII");
    for (int i = 2; i < 4; i++)
        pg_exec(i, "CREATE TABLE enc (id bigint NOT NULL, s text, j jsonb)");
    put_stream(port, "enc", "{\"partitions\":1}");
    put_stream(port, "dlqenc", "{\"partitions\":1}");
    put_stream(port, "dlqascii", "{\"partitions\":1}");
    /* 0 plain; 1 e-acute as a JSON escape; 2 e-acute as UTF-8 bytes;
     * 3 an emoji (not in LATIN1); 4 plain, after it. */
    const char *body = "{\"i\":0,\"s\":\"plain\"}\n"
                       "{\"i\":1,\"s\":\"caf\\u00e9\"}\n"
                       "{\"i\":2,\"s\":\"caf\xc3\xa9\"}\n"
                       "{\"i\":3,\"s\":\"smile \xf0\x9f\x98\x80\"}\n"
                       "{\"i\":4,\"s\":\"after\"}\n";
    resp r = http(port, "POST", "/v1/streams/enc/events", "application/x-ndjson", body, strlen(body));
    CHECK_EQ(r.status, 202);
    free(r.body);
    char sb[2048];
    enc_sink_body(sb, sizeof sb, 2, "dlqenc");
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/enclatin", sb), 201);
    enc_sink_body(sb, sizeof sb, 3, "dlqascii");
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/encascii", sb), 201);

    /* LATIN1: 0, 1, 2, 4 loaded; 3 dead-lettered with PostgreSQL's reason. */
    wait_sink_says(port, "enclatin", "\"position\":5,");
    CHECK_EQ(pg_num(2, "SELECT count(*) FROM enc"), 4);
    CHECK_EQ(pg_num(2, "SELECT count(*) FROM enc WHERE id = 3"), 0);
    /* The characters, not their UTF-8 bytes taken as LATIN1. */
    CHECK_EQ(pg_num(2, "SELECT count(*) FROM enc WHERE id IN (1, 2) AND convert_to(s, 'UTF8') = '\\x636166c3a9'"), 2);
    CHECK_EQ(pg_num(2, "SELECT count(*) FROM enc WHERE id = 1 AND j->>'s' = s"), 1);
    wait_sink_says(port, "enclatin", "\"dlq_total\":1");
    CHECK_EQ(stream_count(binport, "dlqenc"), 1);
    {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
        spillway_client *c;
        CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);
        spillway_fetch_result *fr;
        CHECK_EQ(spillway_client_fetch(c, "dlqenc", 0, 0, 1 << 20, &fr), 0);
        spillway_fetched f;
        spillway_fetch_get(fr, 0, &f);
        char *v = strndup((const char *)f.value, f.value_len);
        fprintf(stderr, "dlq record: %s\n", v);
        CHECK(strstr(v, "has no equivalent in encoding") != NULL);
        CHECK(strstr(v, "\"i\":3") != NULL);
        free(v);
        spillway_fetch_free(fr);
        spillway_client_close(c);
    }

    /* SQL_ASCII: refused at attach, the setting named; nothing loaded. */
    wait_sink_says(port, "encascii", "server_encoding is SQL_ASCII");
    CHECK_EQ(pg_num(3, "SELECT count(*) FROM enc"), 0);
    CHECK_EQ(stream_count(binport, "dlqascii"), 0);
    CHECK_EQ(req_status(port, "DELETE", "/v1/sinks/encascii", NULL), 204);
    CHECK_EQ(req_status(port, "DELETE", "/v1/sinks/enclatin", NULL), 204);
    pg_stop(2);
    pg_stop(3);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    CHECK(pgsrv_find() == 0);
    TMP = spw_test_tmpdir("pg");
    pg_init(0, "UTF8");
    pg_init(1, "UTF8");
    for (int i = 0; i < 2; i++) {
        pg_exec(i, TABLE_SQL);
        pg_exec(i, "CREATE TABLE poison (id bigint NOT NULL, k text, part int, off bigint, v int CHECK (v >= 0), "
                   "s text, ts timestamptz, eid bigint)");
    }
    int N = getenv("SPW_PG_EVENTS") ? atoi(getenv("SPW_PG_EVENTS")) : 1000000;
    CHECK(N >= 1000);
    int EXTRA = N / 10;

    char data[4200];
    snprintf(data, sizeof data, "%s/spw", TMP);
    srv s;
    srv_start(&s, BIN, data, NULL);
    put_stream(s.port, "ev", "{\"partitions\":4}");
    put_stream(s.port, "dlq", "{\"partitions\":1}");
    test_options(s.port);
    char body[2048];

    /* a missing table: a clear error, retried; nothing lost once it exists */
    put_stream(s.port, "late", "{\"partitions\":2}");
    sink_body(body, sizeof body, "late", "later", 100, 0);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/late", body), 201);
    pg_produce(s.binport, "late", 0, 500, 50, 0);
    wait_sink_says(s.port, "late", "table later does not exist on shard");
    for (int i = 0; i < 2; i++)
        pg_exec(i, "CREATE TABLE later (id bigint NOT NULL, k text, part int, off bigint, v int, s text)");
    wait_sink_says(s.port, "late", "has no column ts");
    for (int i = 0; i < 2; i++)
        pg_exec(i, "ALTER TABLE later ADD COLUMN ts timestamptz, ADD COLUMN eid bigint");
    wait_rows("later", 500);

    /* exactly once through kill -9 and a shard outage, with two
     * connections per shard (partitions 0 and 2 on one, 1 and 3 on the
     * other: each commits its own transactions and progress rows) */
    sink_body(body, sizeof body, "ev", "events", 1000, 2);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/pg", body), 201);
    pg_produce(s.binport, "ev", 0, N, 1000, 0);
    for (int i = 0; i < 1200 && total("events") < N / 4; i++)
        usleep(5000);
    long long before = total("events");
    CHECK_EQ(srv_stop(&s, SIGKILL), 128 + SIGKILL);
    fprintf(stderr, "killed -9 with %lld of %d rows in\n", before, N);
    srv_start(&s, BIN, data, NULL);
    for (int i = 0; i < 1200 && total("events") < N / 2; i++) /* the restarted sink is loading again */
        usleep(5000);
    pg_stop_mode(1, "immediate");
    fprintf(stderr, "shard 1 stopped (immediate) with %lld rows on shard 0\n", pg_num(0, "SELECT count(*) FROM events"));
    pg_produce(s.binport, "ev", N, EXTRA, 1000, 0);
    wait_sink_says(s.port, "pg", "\"state\":\"retrying\"");
    pg_start(1);
    wait_rows("events", N + EXTRA);
    usleep(500000); /* anything extra would show now */
    CHECK_EQ(total("events"), N + EXTRA);
    for (int i = 0; i < 2; i++) {
        long long c = pg_num(i, "SELECT count(*) FROM events"), d = pg_num(i, "SELECT count(DISTINCT id) FROM events");
        CHECK_EQ(c, d);
        CHECK_EQ(pg_num(i, "SELECT count(*) FROM events WHERE s <> E'tab\\there' OR ts IS NULL OR eid IS NULL"), 0);
    }
    /* ids: the two shards' sets are disjoint and cover 0 .. N+EXTRA-1 */
    CHECK_EQ(pg_num(0, "SELECT count(*) FROM events WHERE id < 0"), 0);
    long long s0 = pg_num(0, "SELECT coalesce(sum(id),0) FROM events"), s1 = pg_num(1, "SELECT coalesce(sum(id),0) FROM events");
    long long M = N + EXTRA;
    CHECK_EQ(s0 + s1, M * (M - 1) / 2);
    CHECK_EQ(pg_num(0, "SELECT max(id) FROM events") < M && pg_num(1, "SELECT max(id) FROM events") < M, 1);
    /* each key on one shard only: key sets of the shards are disjoint */
    {
        PGconn *a = pg_conn(0), *b = pg_conn(1);
        PGresult *ra = PQexec(a, "SELECT DISTINCT k FROM events"), *rb = PQexec(b, "SELECT DISTINCT k FROM events");
        CHECK(PQresultStatus(ra) == PGRES_TUPLES_OK && PQresultStatus(rb) == PGRES_TUPLES_OK);
        CHECK_EQ(PQntuples(ra) + PQntuples(rb), 1000);
        CHECK(PQntuples(ra) > 0 && PQntuples(rb) > 0);
        for (int i = 0; i < PQntuples(ra); i++)
            for (int j = 0; j < PQntuples(rb); j++)
                CHECK(strcmp(PQgetvalue(ra, i, 0), PQgetvalue(rb, j, 0)) != 0);
        PQclear(ra);
        PQclear(rb);
        PQfinish(a);
        PQfinish(b);
    }
    fprintf(stderr, "events: %lld rows on shard 0, %lld on shard 1\n", pg_num(0, "SELECT count(*) FROM events"),
            pg_num(1, "SELECT count(*) FROM events"));

    /* poison: every 97th event violates CHECK (v >= 0) */
    put_stream(s.port, "ps", "{\"partitions\":2}");
    sink_body(body, sizeof body, "ps", "poison", 500, 0);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/ps", body), 201);
    int P = 2000, bad = 0;
    for (int i = 0; i < P; i++)
        bad += i % 97 == 0;
    pg_produce(s.binport, "ps", 0, P, 100, 97);
    wait_rows("poison", P - bad);
    wait_sink_says(s.port, "ps", "\"dlq_total\":");
    for (int i = 0; i < 600; i++) {
        resp r = http_json(s.port, "GET", "/v1/sinks/ps", NULL);
        char want[64];
        snprintf(want, sizeof want, "\"dlq_total\":%d", bad);
        int ok = strstr(r.body, want) != NULL;
        free(r.body);
        if (ok)
            break;
        usleep(100000);
    }
    CHECK_EQ(pg_num(0, "SELECT count(*) FROM poison WHERE v < 0") + pg_num(1, "SELECT count(*) FROM poison WHERE v < 0"), 0);
    /* the DLQ stream holds the poison records with PostgreSQL's message */
    {
        char addr[64];
        snprintf(addr, sizeof addr, "127.0.0.1:%d", s.binport);
        spillway_client *c;
        CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);
        spillway_fetch_result *fr;
        CHECK_EQ(spillway_client_fetch(c, "dlq", 0, 0, 4 << 20, &fr), 0);
        size_t cnt = spillway_fetch_count(fr);
        CHECK_EQ(cnt, (size_t)bad);
        for (size_t i = 0; i < cnt; i++) {
            spillway_fetched f;
            spillway_fetch_get(fr, i, &f);
            char *v = strndup((const char *)f.value, f.value_len);
            if (i == 0)
                fprintf(stderr, "dlq record: %s\n", v);
            CHECK(strstr(v, "violates check constraint") != NULL);
            free(v);
        }
        spillway_fetch_free(fr);
        spillway_client_close(c);
    }
    test_formats(s.port, s.binport);
    test_rewind(&s, data);
    test_encodings(s.port, s.binport);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    for (int i = 0; i < NPG; i++)
        pg_stop(i);
    spw_test_rmrf(TMP);
    free(TMP);
    return 0;
}
