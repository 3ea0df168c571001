/*
 * The postgres sink's group transactions (docs/api.md "postgres sink",
 * docs/operations.md "Replication"), against a real PostgreSQL with every
 * statement logged (log_statement 'all'):
 *
 *   1. Records of four partitions, all durable before the sink exists and
 *      due at the same moment (max_wait_ms), land in ONE transaction (one
 *      xmin for every row), with the four partitions' progress rows, and
 *      the sink's COMMIT travels in the same message as its BEGIN,
 *      progress upsert and COPY: the log holds no COMMIT of its own.
 *   2. A group holding a record the table refuses (CHECK violation) falls
 *      back to delivering each partition's window by itself: the bad
 *      records go to the dead-letter stream, every other row is in the
 *      table exactly once, and every partition's progress row reaches the
 *      partition's end.
 *   2b. options.connections 2, on a stream of its own: records durable
 *      before the sink exists go in exactly two transactions, one per
 *      connection (partitions 0 and 2, 1 and 3), each with its partitions'
 *      progress rows; refused records are dead-lettered and every other
 *      row is there once; no transaction mixes the connections'
 *      partitions; the sink holds two backends on the server; changing
 *      connections to 3 is an online change (202) and the rows after it
 *      are there once each, in transactions of one connection's partitions;
 *      a group below copy_min_rows goes in one transaction (one connection).
 *   2b''. Each connection's share of a group is capped by max_events by
 *      itself: a backlog of four partitions, each below the cap but the
 *      first two together past it, goes in one group, one transaction per
 *      connection with its two partitions (a cap on the whole group made
 *      four transactions, one connection loading at a time).
 *   2b'. Partitions that become due one after the other go together: one
 *      record in one partition, and 700 ms later in the other (max_wait_ms
 *      5000: the second must be durable before the first is due, however
 *      slow the sends after the 700 ms are): when the first is due, the
 *      second, durable but not due yet, goes along in the same transaction
 *      (one xmin), not 700 ms later in a commit of its own.
 *   2c. A sink connects while another session holds a transaction open on
 *      the progress table (ROW EXCLUSIVE, as any sink's commit or a user's
 *      UPDATE of it takes): the sink reads the catalog and, the table being
 *      current, runs no DDL, so it loads its rows at once (an ALTER TABLE
 *      at every connect waited for that transaction, up to
 *      statement_timeout).
 *   3. The replica of a stream (replicate_to, the primary now with a
 *      synchronous standby): records that become durable while the sink's
 *      COMMIT waits for the standby go into the very next transaction.
 *      Record 1's transaction is held at its COPY by a table lock while
 *      record 2 is appended, then at its COMMIT by the standby being down
 *      while record 3 is appended: 2 and 3 must share a transaction (a
 *      sink that read its next group before ending the pending one would
 *      have sent 2 alone, and 3 would have waited for a third commit).
 *   3b. ... unless the cap cut the pending group (more waited than one
 *      group takes): then the next group is read while the COMMIT waits,
 *      as for any sink, so the target is not idle while the sink reads.
 *      With batch.max_events 2 and the standby down, records 1, 2, 3 are
 *      appended in one request: {1, 2} is cut by the cap and its COMMIT
 *      waits; {3} is read meanwhile; record 4, appended while the COMMIT
 *      waits, goes into a third transaction (a sink that ended the cut
 *      group first would have read {3, 4} after it).
 *      Those groups of a few rows go by INSERT ... VALUES, not COPY, each
 *      in ONE message with its BEGIN, progress rows and COMMIT (below
 *      copy_min_rows: one round trip, not two).
 *   3c. A pending group of an eighth of the cap or more (3 records,
 *      max_events 16) counts as cut: record 4, durable while {1, 2, 3}
 *      is held at its COPY (a table lock), is read while {1, 2, 3}'s COMMIT
 *      waits for the standby, and record 5, appended during that wait,
 *      goes into a third transaction.
 *   4. A replicated request is answered once its commit is done, not after
 *      the bookkeeping that follows it: with the fsync of the sink's local
 *      progress file held at a gate (spillway_test, SPW_TEST_SYNC_GATE), a
 *      replicated request still gets 202 (it got 504 when answered after
 *      that file was saved).
 */
#include "pg.h"
#include "spillway.h"

static const char *BIN;
static char SGATE[4300]; /* the server's SPW_TEST_SYNC_GATE */
static pgsrv PG, STB;

#define NPART 4

/* n events of stream, ids first.., keys "k<i % 97>", value {"i":i,"v":v}
 * with v = -1 (refused by the table) when bad_every divides i. */
static void send_events(int binport, const char *stream, int first, int n, int bad_every)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, NULL, &p), 0);
    for (int i = first; i < first + n; i++) {
        char key[16], val[64];
        int kl = snprintf(key, sizeof key, "k%d", i % 97);
        int vl = snprintf(val, sizeof val, "{\"i\":%d,\"v\":%d}", i, bad_every && i % bad_every == 0 ? -1 : 1);
        CHECK_EQ(spillway_producer_send(p, stream, key, kl, val, (size_t)vl, SPILLWAY_TS_NOW, SPILLWAY_ACK_LEVEL_FSYNC,
                                        NULL),
                 0);
    }
    CHECK_EQ(spillway_producer_flush(p, 60000), 0);
    spillway_producer_close(p, 1000);
}

static long long num(const char *sql) { return pgsrv_num(&PG, sql); }

static void wait_num(const char *sql, long long want)
{
    long long n = -1;
    for (int i = 0; i < 600 && n != want; i++) {
        n = num(sql);
        if (n != want)
            usleep(100000);
    }
    if (n != want)
        fprintf(stderr, "%s: %lld, want %lld\n", sql, n, want);
    CHECK_EQ(n, want);
}

/* The server's log (malloc'd). */
static char *read_log(void)
{
    char path[4300];
    snprintf(path, sizeof path, "%s/log", PG.dir);
    FILE *f = fopen(path, "r");
    CHECK(f);
    CHECK(fseek(f, 0, SEEK_END) == 0);
    long len = ftell(f);
    CHECK(len >= 0);
    rewind(f);
    char *b = malloc((size_t)len + 1);
    CHECK(b);
    CHECK_EQ(fread(b, 1, (size_t)len, f), (size_t)len);
    b[len] = 0;
    fclose(f);
    return b;
}

/* Lines of log holding needle. */
static int count_lines(const char *log, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(log, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* POST {"i":i} to stream at ack: the status. */
static int post_one(int port, const char *stream, const char *ack, int i)
{
    char path[128], ev[32];
    snprintf(path, sizeof path, "/v1/streams/%s/events?ack=%s", stream, ack);
    int n = snprintf(ev, sizeof ev, "{\"i\":%d}", i);
    resp r = http_ex(port, "POST", path, "application/json", NULL, ev, (size_t)n);
    free(r.body);
    return r.status;
}

/* Until the sink's transaction (its message starts with BEGIN; INSERT
 * INTO spillway_sink_progress) waits on the primary as cond says. */
static void wait_sink_backend(const char *cond)
{
    char q[512];
    snprintf(q, sizeof q,
             "SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'BEGIN; INSERT INTO spillway_sink_progress%%' "
             "AND %s",
             cond);
    wait_num(q, 1);
}

static long long xmin_of(int i)
{
    char q[96];
    snprintf(q, sizeof q, "SELECT xmin::text::bigint FROM rep WHERE id = %d", i);
    return num(q);
}

/* 2b. options.connections 2 (partitions 0 and 2 on one connection, 1 and
 * 3 on the other), on a stream of its own: records durable before the
 * sink exists go in exactly two transactions, one per connection, each
 * with its two partitions' rows and progress rows; then a group holding
 * refused records: every other row once, the bad ones dead-lettered,
 * still no transaction mixing the connections' partitions; and the sink
 * holds two backends on the server. */
static void test_connections(srv *s)
{
    pgsrv_exec(&PG, "CREATE TABLE ev2 (id bigint NOT NULL, k text, part int, off bigint, v int CHECK (v >= 0))");
    char body[1024];
    snprintf(body, sizeof body, "{\"partitions\":%d}", NPART);
    put_stream(s->port, "g2", body);
    put_stream(s->port, "dlq2", "{\"partitions\":1}");
    int N = 400, M = 600, bad = 0;
    for (int i = N; i < N + M; i++)
        bad += i % 53 == 0;
    send_events(s->binport, "g2", 0, N, 0);
    snprintf(body, sizeof body,
             "{\"stream\":\"g2\",\"kind\":\"postgres\",\"dlq\":\"dlq2\",\"batch\":{\"max_events\":10000,"
             "\"max_wait_ms\":2000},\"retry\":{\"initial_ms\":50,\"max_ms\":500},\"options\":{\"connections\":2,"
             "\"shards\":[\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"ev2\",\"columns\":{"
             "\"id\":\"/i\",\"k\":\"$key\",\"part\":\"$partition\",\"off\":\"$offset\",\"v\":\"/v\"}}}",
             PG.port);
    CHECK_EQ(req_status(s->port, "PUT", "/v1/sinks/gl", body), 201);
    wait_num("SELECT count(*) FROM ev2", N);
    const char *mixed =
        "SELECT count(*) FROM (SELECT xmin::text FROM ev2 GROUP BY 1 HAVING count(DISTINCT part % 2) > 1) x";
    CHECK_EQ(num("SELECT count(DISTINCT xmin::text) FROM ev2"), 2);
    CHECK_EQ(num(mixed), 0);
    CHECK_EQ(num("SELECT count(*) FROM (SELECT xmin::text FROM ev2 GROUP BY 1 HAVING count(DISTINCT part) = 2) x"), 2);
    /* each partition's progress row committed with its connection's rows */
    wait_num("SELECT sum(next_offset) FROM spillway_sink_progress WHERE sink = 'gl'", N);
    CHECK_EQ(num("SELECT count(*) FROM spillway_sink_progress p WHERE sink = 'gl' AND p.xmin::text IN (SELECT "
                 "xmin::text FROM ev2 WHERE ev2.part = p.partition)"),
             NPART);
    /* the sessions whose last statement was one of this sink's transactions */
    CHECK_EQ(num("SELECT count(DISTINCT pid) FROM pg_stat_activity WHERE query LIKE "
                 "'BEGIN; INSERT INTO spillway_sink_progress%''gl''%'"),
             2);

    send_events(s->binport, "g2", N, M, 53);
    wait_num("SELECT count(*) FROM ev2", N + M - bad);
    CHECK_EQ(num("SELECT count(DISTINCT id) FROM ev2"), N + M - bad);
    CHECK_EQ(num("SELECT count(*) FROM ev2 WHERE v < 0"), 0);
    wait_num("SELECT sum(next_offset) FROM spillway_sink_progress WHERE sink = 'gl'", N + M);
    CHECK_EQ(part_field(s->port, "/v1/streams/dlq2", 0, "end_offset"), (uint64_t)bad);
    CHECK_EQ(num(mixed), 0);
    fprintf(stderr, "connections 2: %d rows, %d dead-lettered, in %lld transactions\n", N + M - bad, bad,
            num("SELECT count(DISTINCT xmin::text) FROM ev2"));
    /* connections is an online change (202): three now, and still once each */
    char *c2 = strstr(body, "\"connections\":2");
    CHECK(c2);
    c2[strlen("\"connections\":")] = '3';
    CHECK_EQ(req_status(s->port, "PUT", "/v1/sinks/gl", body), 202);
    send_events(s->binport, "g2", N + M, 300, 0);
    wait_num("SELECT count(*) FROM ev2", N + M + 300 - bad);
    CHECK_EQ(num("SELECT count(DISTINCT id) FROM ev2"), N + M + 300 - bad);
    wait_num("SELECT sum(next_offset) FROM spillway_sink_progress WHERE sink = 'gl'", N + M + 300);
    CHECK_EQ(num("SELECT count(*) FROM (SELECT xmin::text FROM ev2 WHERE id >= 1000 GROUP BY 1 HAVING "
                 "count(*) >= 64 AND count(DISTINCT part % 3) > 1) x"),
             0);
    CHECK(num("SELECT count(*) FROM (SELECT xmin::text FROM ev2 WHERE id >= 1000 GROUP BY 1 HAVING "
              "count(*) >= 64) x") >= 1);

    /* a group below copy_min_rows (10 records, sent within the sink's
     * max_wait_ms) goes by one connection: one transaction, one commit.
     * Each partition's records are durable after its own fsync; one
     * partition's window, due max_wait_ms after its records were first
     * seen, takes along only what the others hold durable by then: 2 s
     * (not 300 ms) leaves room for a slow fsync on a loaded machine
     * (TSan, ctest -j2), where a partition's records became durable after
     * another's window was due and went in a second transaction. */
    send_events(s->binport, "g2", N + M + 300, 10, 0);
    wait_num("SELECT count(*) FROM ev2", N + M + 310 - bad);
    CHECK(num("SELECT count(DISTINCT part) FROM ev2 WHERE id >= 1300") >= 2);
    CHECK_EQ(num("SELECT count(DISTINCT xmin::text) FROM ev2 WHERE id >= 1300"), 1);
    CHECK_EQ(req_status(s->port, "DELETE", "/v1/sinks/gl", NULL), 204);
}

/* PUT /v1/sinks/NAME: a postgres sink from stream into table of PG with
 * the JSON members batch (e.g. "\"batch\":{...},", or "") before its
 * options, opts (e.g. "\"connections\":2,", or "") first among them, and
 * the columns' members. */
static void put_pg_sink(srv *s, const char *name, const char *stream, const char *batch, const char *opts,
                        const char *table, const char *columns)
{
    char path[128], body[2048];
    snprintf(path, sizeof path, "/v1/sinks/%s", name);
    snprintf(body, sizeof body,
             "{\"stream\":\"%s\",\"kind\":\"postgres\",%s\"options\":{%s\"shards\":[\"host=127.0.0.1 port=%d "
             "user=postgres dbname=postgres\"],\"table\":\"%s\",\"columns\":{%s}}}",
             stream, batch, opts, PG.port, table, columns);
    CHECK_EQ(req_status(s->port, "PUT", path, body), 201);
}

/* 2b''. Each connection's share of a group is capped by itself, not the
 * group: a backlog of four partitions, each below batch.max_events but
 * the first two together at it or past, goes in ONE group of two
 * transactions, one per connection, each with its two partitions. A cap
 * on the whole group stopped after the first two partitions (four
 * transactions of one partition each), so in a backlog one connection
 * loaded while the other waited. */
static void test_lane_cap(srv *s)
{
    pgsrv_exec(&PG, "CREATE TABLE ev5 (id bigint NOT NULL, part int)");
    char body[1024];
    snprintf(body, sizeof body, "{\"partitions\":%d}", NPART);
    put_stream(s->port, "g5", body);
    int N = 240;
    send_events(s->binport, "g5", 0, N, 0);
    uint64_t c[NPART], most = 0;
    for (int p = 0; p < NPART; p++) {
        c[p] = part_field(s->port, "/v1/streams/g5", p, "end_offset");
        most = c[p] > most ? c[p] : most;
    }
    uint64_t cap = most + 1; /* every partition below it */
    fprintf(stderr, "lane cap: partitions %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 ", max_events %" PRIu64 "\n",
            c[0], c[1], c[2], c[3], cap);
    CHECK(c[0] + c[1] >= cap); /* the keys' spread (fixed) makes the case */
    char batch[96];
    snprintf(batch, sizeof batch, "\"batch\":{\"max_events\":%" PRIu64 ",\"max_wait_ms\":300},", cap);
    put_pg_sink(s, "g5", "g5", batch, "\"connections\":2,", "ev5", "\"id\":\"/i\",\"part\":\"$partition\"");
    wait_num("SELECT count(*) FROM ev5", N);
    CHECK_EQ(num("SELECT count(DISTINCT xmin::text) FROM ev5"), 2);
    CHECK_EQ(num("SELECT count(*) FROM (SELECT xmin::text FROM ev5 GROUP BY 1 HAVING count(DISTINCT part % 2) = 1 "
                 "AND count(DISTINCT part) = 2) x"),
             2);
    CHECK_EQ(req_status(s->port, "DELETE", "/v1/sinks/g5", NULL), 204);
}

static void test_late_partition(srv *s)
{
    pgsrv_exec(&PG, "CREATE TABLE ev4 (id bigint NOT NULL, part int)");
    put_stream(s->port, "g4", "{\"partitions\":2}");
    put_pg_sink(s, "g4", "g4", "\"batch\":{\"max_wait_ms\":5000},", "", "ev4", "\"id\":\"/i\",\"part\":\"$partition\"");
    send_events(s->binport, "g4", 0, 1, 0);
    int first = part_field(s->port, "/v1/streams/g4", 0, "end_offset") ? 0 : 1;
    usleep(700000);
    int n = 1; /* one event at a time (ack=fsync) until one is in the other partition */
    while (n < 40 && part_field(s->port, "/v1/streams/g4", 1 - first, "end_offset") == 0)
        send_events(s->binport, "g4", n++, 1, 0);
    CHECK_EQ(part_field(s->port, "/v1/streams/g4", 1 - first, "end_offset"), 1);
    wait_num("SELECT count(*) FROM ev4", n);
    CHECK_EQ(num("SELECT count(DISTINCT part) FROM ev4"), 2);
    CHECK_EQ(num("SELECT count(DISTINCT xmin::text) FROM ev4"), 1);
    CHECK_EQ(req_status(s->port, "DELETE", "/v1/sinks/g4", NULL), 204);
}

static void test_progress_locked(srv *s)
{
    pgsrv_exec(&PG, "CREATE TABLE ev3 (id bigint NOT NULL)");
    put_stream(s->port, "g3", "{\"partitions\":1}");
    PGconn *hold = pgsrv_conn(&PG);
    PGresult *r = PQexec(hold, "BEGIN; LOCK TABLE spillway_sink_progress IN ROW EXCLUSIVE MODE");
    CHECK_EQ(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    put_pg_sink(s, "gl3", "g3", "\"batch\":{\"max_wait_ms\":50},", "\"statement_timeout_ms\":120000,", "ev3",
                "\"id\":\"/i\"");
    send_events(s->binport, "g3", 0, 5, 0);
    long long n = -1;
    for (int i = 0; i < 150 && n != 5; i++) { /* 15 s, well below the sink's statement_timeout */
        n = num("SELECT count(*) FROM ev3");
        if (n != 5)
            usleep(100000);
    }
    fprintf(stderr, "rows loaded while the progress table was held: %lld of 5\n", n);
    CHECK_EQ(n, 5);
    r = PQexec(hold, "COMMIT");
    CHECK_EQ(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(hold);
    CHECK_EQ(req_status(s->port, "DELETE", "/v1/sinks/gl3", NULL), 204);
}

static void test_replica(srv *s, const char *tmp)
{
    pgsrv_standby(&STB, &PG, tmp, "stb");
    pgsrv_exec(&PG, "CREATE TABLE rep (id bigint NOT NULL, k text)");
    put_stream(s->port, "r", "{\"partitions\":1,\"replicate_to\":\"rs\",\"replication_timeout_ms\":60000}");
    char body[1024];
    snprintf(body, sizeof body,
             "{\"stream\":\"r\",\"kind\":\"postgres\",\"retry\":{\"initial_ms\":50,\"max_ms\":500},"
             "\"options\":{\"shards\":[\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"rep\","
             "\"columns\":{\"id\":\"/i\",\"k\":\"$key\"}}}",
             PG.port);
    CHECK_EQ(req_status(s->port, "PUT", "/v1/sinks/rs", body), 201);
    int st = 0;
    for (int i = 0; i < 600 && st != 202; i++) { /* until the sink has attached and replicates */
        st = post_one(s->port, "r", "replicated", 0);
        if (st != 202)
            usleep(50000);
    }
    CHECK_EQ(st, 202);
    PGconn *l = pgsrv_conn(&PG);
    PGresult *r = PQexec(l, "BEGIN; LOCK TABLE rep IN SHARE MODE");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    CHECK_EQ(post_one(s->port, "r", "fsync", 1), 202);
    wait_sink_backend("wait_event_type = 'Lock'"); /* record 1's COPY waits for the lock */
    CHECK_EQ(post_one(s->port, "r", "fsync", 2), 202);
    pgsrv_stop_mode(&STB, "fast");
    r = PQexec(l, "COMMIT");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(l);
    wait_sink_backend("wait_event = 'SyncRep'"); /* record 1's COMMIT waits for the standby */
    CHECK_EQ(post_one(s->port, "r", "fsync", 3), 202);
    pgsrv_start(&STB);
    wait_num("SELECT count(*) FROM rep", 4);
    fprintf(stderr, "replica transactions (xmin) of records 1, 2, 3: %lld %lld %lld\n", xmin_of(1), xmin_of(2),
            xmin_of(3));
    CHECK(xmin_of(1) != xmin_of(2));
    CHECK_EQ(xmin_of(2), xmin_of(3));
    CHECK_EQ(num("SELECT count(DISTINCT id) FROM rep"), 4);
    {
        /* groups of a few rows (below copy_min_rows) went by INSERT, each
         * in one message with its BEGIN, progress rows and COMMIT: one
         * round trip, no COPY */
        char *log = read_log();
        int copies = count_lines(log, "COPY \"rep\" (");
        int one = 0;
        const char *pat = "statement: BEGIN; INSERT INTO spillway_sink_progress";
        for (const char *p = strstr(log, pat); p; p = strstr(p + 1, pat)) {
            char *l = strndup(p, strcspn(p, "\n"));
            one += strstr(l, "; INSERT INTO \"rep\" (\"id\", \"k\") VALUES (") != NULL &&
                   strlen(l) > 8 && strcmp(l + strlen(l) - 8, "; COMMIT") == 0;
            free(l);
        }
        fprintf(stderr, "rep: %d transactions in one message by INSERT, %d COPY statements\n", one, copies);
        CHECK_EQ(copies, 0);
        CHECK(one >= 3);
        free(log);
    }
}

static long long xmin_in(const char *table, int i)
{
    char q[128];
    snprintf(q, sizeof q, "SELECT xmin::text::bigint FROM %s WHERE id = %d", table, i);
    return num(q);
}

/* Table TABLE (id), stream STREAM whose replica is sink SINK (batch.max_events
 * max_events, options.copy_min_rows copy_min_rows) into it: made, and the
 * sink attached (a replicated request of record 0 answered 202). */
static void replica_sink(srv *s, const char *stream, const char *sink, const char *table, int max_events,
                         int copy_min_rows)
{
    char q[128], body[1024];
    snprintf(q, sizeof q, "CREATE TABLE %s (id bigint NOT NULL)", table);
    pgsrv_exec(&PG, q);
    snprintf(body, sizeof body, "{\"partitions\":1,\"replicate_to\":\"%s\",\"replication_timeout_ms\":60000}", sink);
    put_stream(s->port, stream, body);
    snprintf(body, sizeof body,
             "{\"stream\":\"%s\",\"kind\":\"postgres\",\"batch\":{\"max_events\":%d},"
             "\"retry\":{\"initial_ms\":50,\"max_ms\":500},\"options\":{\"shards\":[\"host=127.0.0.1 port=%d "
             "user=postgres dbname=postgres\"],\"table\":\"%s\",\"copy_min_rows\":%d,\"columns\":{\"id\":\"/i\"}}}",
             stream, max_events, PG.port, table, copy_min_rows);
    char path[128];
    snprintf(path, sizeof path, "/v1/sinks/%s", sink);
    CHECK_EQ(req_status(s->port, "PUT", path, body), 201);
    int st = 0;
    for (int i = 0; i < 600 && st != 202; i++) {
        st = post_one(s->port, stream, "replicated", 0);
        if (st != 202)
            usleep(50000);
    }
    CHECK_EQ(st, 202);
}

/* Records 1, 2, 3 appended to stream in one request (ack=fsync). */
static void post_three(srv *s, const char *stream)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/%s/events?ack=fsync", stream);
    const char *three = "[{\"i\":1},{\"i\":2},{\"i\":3}]";
    resp r = http_ex(s->port, "POST", path, "application/json", NULL, three, strlen(three));
    CHECK_EQ(r.status, 202);
    free(r.body);
}

static void test_replica_cut(srv *s)
{
    replica_sink(s, "r3", "rs3", "rep3", 2, 64);
    pgsrv_stop_mode(&STB, "fast");
    post_three(s, "r3");
    wait_sink_backend("wait_event = 'SyncRep'"); /* {1, 2}'s COMMIT waits for the standby */
    CHECK_EQ(post_one(s->port, "r3", "fsync", 4), 202);
    pgsrv_start(&STB);
    wait_num("SELECT count(*) FROM rep3", 5);
    fprintf(stderr, "replica transactions (xmin) of records 1, 2, 3, 4 (cap 2): %lld %lld %lld %lld\n",
            xmin_in("rep3", 1), xmin_in("rep3", 2), xmin_in("rep3", 3), xmin_in("rep3", 4));
    CHECK_EQ(xmin_in("rep3", 1), xmin_in("rep3", 2));
    CHECK(xmin_in("rep3", 2) != xmin_in("rep3", 3));
    CHECK(xmin_in("rep3", 3) != xmin_in("rep3", 4));
    CHECK_EQ(num("SELECT count(DISTINCT id) FROM rep3"), 5);
}

/* 3c. A pending group not cut by the cap but of an eighth of it or more
 * (3 records, max_events 16) is treated as cut: the next group is read
 * while its COMMIT waits. {1, 2, 3} is held at its COPY (copy_min_rows 0:
 * the sink waits for the COPY to start) by a table lock while record 4 is
 * appended, then at its COMMIT by the standby being
 * down: 4 is read meanwhile (its own transaction), and 5, appended while
 * the COMMIT waits, goes into a third (a sink that ended {1, 2, 3} first
 * would have read 4 and 5 together). */
static void test_replica_big(srv *s)
{
    replica_sink(s, "r4", "rs4", "rep4", 16, 0);
    PGconn *l = pgsrv_conn(&PG);
    PGresult *r = PQexec(l, "BEGIN; LOCK TABLE rep4 IN SHARE MODE");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    post_three(s, "r4");
    wait_sink_backend("wait_event_type = 'Lock'"); /* {1, 2, 3}'s COPY waits for the lock */
    CHECK_EQ(post_one(s->port, "r4", "fsync", 4), 202);
    pgsrv_stop_mode(&STB, "fast");
    r = PQexec(l, "COMMIT");
    CHECK(PQresultStatus(r) == PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(l);
    wait_sink_backend("wait_event = 'SyncRep'"); /* {1, 2, 3}'s COMMIT waits for the standby */
    CHECK_EQ(post_one(s->port, "r4", "fsync", 5), 202);
    pgsrv_start(&STB);
    wait_num("SELECT count(*) FROM rep4", 6);
    fprintf(stderr, "replica transactions (xmin) of records 1, 3, 4, 5 (cap 16): %lld %lld %lld %lld\n",
            xmin_in("rep4", 1), xmin_in("rep4", 3), xmin_in("rep4", 4), xmin_in("rep4", 5));
    CHECK_EQ(xmin_in("rep4", 1), xmin_in("rep4", 3));
    CHECK(xmin_in("rep4", 3) != xmin_in("rep4", 4));
    CHECK(xmin_in("rep4", 4) != xmin_in("rep4", 5));
    CHECK_EQ(num("SELECT count(DISTINCT id) FROM rep4"), 6);
}

static void test_bookkeeping(srv *s)
{
    pgsrv_exec(&PG, "CREATE TABLE rep2 (id bigint NOT NULL)");
    /* replication_timeout_ms 10 s: a request answered only after the held
     * save never gets 202; one answered at its commit gets it well within
     * that, even under TSan on a loaded machine (3 s left little room) */
    put_stream(s->port, "r2", "{\"partitions\":1,\"replicate_to\":\"rs2\",\"replication_timeout_ms\":10000}");
    put_pg_sink(s, "rs2", "r2", "", "", "rep2", "\"id\":\"/i\"");
    int st = 0;
    for (int i = 0; i < 600 && st != 202; i++) {
        st = post_one(s->port, "r2", "replicated", 0);
        if (st != 202)
            usleep(50000);
    }
    CHECK_EQ(st, 202);
    usleep(1200 * 1000); /* the local progress file is saved at most once a second: due at the next commit */
    FILE *f = fopen(SGATE, "w");
    CHECK(f);
    fclose(f);
    st = post_one(s->port, "r2", "replicated", 1);
    char waiting[4400];
    snprintf(waiting, sizeof waiting, "%s.waiting", SGATE);
    int held = 0;
    for (int i = 0; i < 400 && !held; i++) { /* the save after that commit is held at the gate (20 s at most) */
        held = access(waiting, F_OK) == 0;
        if (!held)
            usleep(50000);
    }
    CHECK(unlink(SGATE) == 0);
    fprintf(stderr, "replicated request with the progress file's fsync held: %d (held: %d)\n", st, held);
    CHECK(held);
    CHECK_EQ(st, 202);
    wait_num("SELECT count(*) FROM rep2", 2);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    BIN = argv[2]; /* spillway_test: the sync gate of test_bookkeeping */
    CHECK(pgsrv_find() == 0);
    char *tmp = spw_test_tmpdir("pggroup");
    pgsrv_init(&PG, tmp, "pg");
    pgsrv_exec(&PG, "ALTER SYSTEM SET log_statement = 'all'");
    pgsrv_exec(&PG, "SELECT pg_reload_conf()");
    pgsrv_exec(&PG, "CREATE TABLE ev (id bigint NOT NULL, k text, part int, off bigint, v int CHECK (v >= 0))");

    char data[4200];
    snprintf(data, sizeof data, "%s/spw", tmp);
    snprintf(SGATE, sizeof SGATE, "%s/sgate", tmp);
    setenv("SPW_TEST_SYNC_GATE", SGATE, 1);
    srv s;
    srv_start(&s, BIN, data, NULL);
    unsetenv("SPW_TEST_SYNC_GATE");
    char body[1024];
    snprintf(body, sizeof body, "{\"partitions\":%d}", NPART);
    put_stream(s.port, "g", body);
    put_stream(s.port, "dlq", "{\"partitions\":1}");

    /* 1. four partitions' records, durable before the sink starts */
    int N = 400;
    send_events(s.binport, "g", 0, N, 0);
    for (int p = 0; p < NPART; p++) /* every partition has some */
        CHECK(part_field(s.port, "/v1/streams/g", p, "end_offset") > 0);
    snprintf(body, sizeof body,
             "{\"stream\":\"g\",\"kind\":\"postgres\",\"dlq\":\"dlq\",\"batch\":{\"max_events\":10000,"
             "\"max_wait_ms\":300},\"retry\":{\"initial_ms\":50,\"max_ms\":500},\"options\":{\"shards\":["
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"ev\",\"columns\":{"
             "\"id\":\"/i\",\"k\":\"$key\",\"part\":\"$partition\",\"off\":\"$offset\",\"v\":\"/v\"}}}",
             PG.port);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/gs", body), 201);
    wait_num("SELECT count(*) FROM ev", N);
    CHECK_EQ(num("SELECT count(DISTINCT part) FROM ev"), NPART);
    /* one transaction wrote them all */
    CHECK_EQ(num("SELECT count(DISTINCT xmin::text) FROM ev"), 1);
    /* and every partition's progress row, in that transaction */
    CHECK_EQ(num("SELECT count(*) FROM spillway_sink_progress WHERE sink = 'gs'"), NPART);
    CHECK_EQ(num("SELECT count(*) FROM spillway_sink_progress p WHERE sink = 'gs' AND "
                 "p.xmin::text = (SELECT min(xmin::text) FROM ev)"),
             NPART);
    CHECK_EQ(num("SELECT sum(next_offset) FROM spillway_sink_progress WHERE sink = 'gs'"), N);
    {
        /* the COMMIT went with the COPY: two round trips, none for COMMIT alone */
        char *log = read_log();
        int alone = count_lines(log, "statement: COMMIT\n");
        int with = count_lines(log, "FROM STDIN; COMMIT\n") + count_lines(log, "FROM STDIN (FORMAT binary); COMMIT\n");
        if (alone || with < 1)
            fprintf(stderr, "log: %d COMMIT statements alone, %d with a COPY\n", alone, with);
        CHECK_EQ(alone, 0);
        CHECK(with >= 1);
        free(log);
    }

    /* 2. bad records inside groups: each window by itself, dead letters, nothing twice */
    int M = 600, bad = 0;
    for (int i = N; i < N + M; i++)
        bad += i % 53 == 0;
    send_events(s.binport, "g", N, M, 53);
    wait_num("SELECT count(*) FROM ev", N + M - bad);
    CHECK_EQ(num("SELECT count(DISTINCT id) FROM ev"), N + M - bad);
    CHECK_EQ(num("SELECT count(*) FROM ev WHERE v < 0"), 0);
    wait_num("SELECT sum(next_offset) FROM spillway_sink_progress WHERE sink = 'gs'", N + M);
    CHECK_EQ(part_field(s.port, "/v1/streams/dlq", 0, "end_offset"), (uint64_t)bad);
    fprintf(stderr, "%d rows, %d dead-lettered, in %lld transactions\n", N + M - bad, bad,
            num("SELECT count(DISTINCT xmin::text) FROM ev"));

    test_connections(&s);
    test_lane_cap(&s);
    test_late_partition(&s);
    test_progress_locked(&s);
    test_replica(&s, tmp);
    test_replica_cut(&s);
    test_replica_big(&s);
    test_bookkeeping(&s);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    pgsrv_stop_mode(&STB, "fast");
    pgsrv_stop_mode(&PG, "fast");
    spw_test_rmrf(tmp);
    free(tmp);
    return 0;
}
