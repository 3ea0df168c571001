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
 */
#include "pg.h"
#include "spillway.h"

static const char *BIN;
static pgsrv PG;

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

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    CHECK(pgsrv_find() == 0);
    char *tmp = spw_test_tmpdir("pggroup");
    pgsrv_init(&PG, tmp, "pg");
    pgsrv_exec(&PG, "ALTER SYSTEM SET log_statement = 'all'");
    pgsrv_exec(&PG, "SELECT pg_reload_conf()");
    pgsrv_exec(&PG, "CREATE TABLE ev (id bigint NOT NULL, k text, part int, off bigint, v int CHECK (v >= 0))");

    char data[4200];
    snprintf(data, sizeof data, "%s/spw", tmp);
    srv s;
    srv_start(&s, BIN, data, NULL);
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

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    pgsrv_stop_mode(&PG, "fast");
    spw_test_rmrf(tmp);
    free(tmp);
    return 0;
}
