/*
 * ack=replicated (docs/api.md "Replicated acknowledgement") against a real
 * replicated PostgreSQL: a primary and a synchronous standby on loopback
 * (initdb, pg_basebackup -R, synchronous_standby_names), a postgres sink
 * named by the stream's replicate_to.
 *
 *   1. Refusals: ack=replicated on a stream without replicate_to (400
 *      replication_not_configured); a stream whose sink does not exist yet
 *      (503 replication_unavailable); a sink that drains another stream
 *      named by replicate_to (503); a stream default of "replicated"
 *      without replicate_to (400).
 *   2. Acknowledged: replicated requests over HTTP are answered 202 once
 *      the sink committed them on the primary, whose commits wait for the
 *      standby.
 *   2b. Rejected: a record the target refuses (text into a bigint
 *      column) is dead-lettered by the sink; its replicated request gets
 *      422 replication_rejected, not 202 (it is not in the replica), over
 *      HTTP, on a retry with its Idempotency-Key (after a restart of
 *      the server too) and over the binary protocol; the requests around
 *      it get 202.
 *   3. Standby down: the sink's COMMIT waiting for it is cancelled
 *      (pg_cancel_backend: PostgreSQL commits locally and warns "might not
 *      have been replicated"), then its backend terminated: the requests
 *      waiting for those commits get 504, not 202. Then replicated
 *      requests get 504 replication_timeout
 *      (none 202), a retry with the same Idempotency-Key too (nothing
 *      appended twice); fsync requests on another stream keep being
 *      answered 202. Standby back: later replicated requests get 202 and
 *      the retried ones 202 as duplicates.
 *   4. Machine loss: kill -9 the server and delete its data directory,
 *      stop the primary as a crash, promote the standby: every event ever
 *      acknowledged 202 is in the standby exactly once.
 */
#include "spillway.h"
#include "pg.h"

static const char *BIN;

#define MAXEV 2000
static int acked[MAXEV]; /* 1: answered 202 with ack=replicated */
static int appended[MAXEV];

/* POST one event {"i":i} to stream with ack and an Idempotency-Key; the status (body in *body if asked). */
static int post(int port, const char *stream, const char *ack, int i, char **body)
{
    char path[200], ev[64], hdr[100];
    snprintf(path, sizeof path, "/v1/streams/%s/events?ack=%s", stream, ack);
    snprintf(ev, sizeof ev, "{\"i\":%d}", i);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: ev-%d\r\n", i);
    resp r = http_ex(port, "POST", path, "application/json", hdr, ev, strlen(ev));
    if (body)
        *body = r.body;
    else
        free(r.body);
    return r.status;
}

static void on_delivery(void *opaque, const spillway_delivery *d)
{
    *(int *)opaque = d->status;
}

/* POST the event ev to stream with ack=replicated and Idempotency-Key key; the status (body in *body). */
static int post_ev(int port, const char *stream, const char *key, const char *ev, char **body)
{
    char path[200], hdr[100];
    snprintf(path, sizeof path, "/v1/streams/%s/events?ack=replicated", stream);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: %s\r\n", key);
    resp r = http_ex(port, "POST", path, "application/json", hdr, ev, strlen(ev));
    *body = r.body;
    return r.status;
}

/* post of event i with ack=replicated, again while the answer is 503 (the
 * sink still attaching; 400 tries, 25 ms apart): the last status. */
static int post_attached(int port, const char *stream, int i)
{
    int st = 503;
    for (int tries = 0; tries < 400 && st == 503; tries++) {
        st = post(port, stream, "replicated", i, NULL);
        if (st == 503)
            usleep(25 * 1000);
    }
    return st;
}

/* post_ev, again while the answer is 503 (the sink still attaching; 400
 * tries, 25 ms apart): the last status (its body in *body). */
static int post_ev_attached(int port, const char *stream, const char *key, const char *ev, char **body)
{
    int st = 503;
    for (int tries = 0; tries < 400 && st == 503; tries++) {
        st = post_ev(port, stream, key, ev, body);
        if (st == 503) {
            free(*body);
            usleep(25 * 1000);
        }
    }
    return st;
}

/* One event ev to stream over the binary protocol with ack=replicated
 * (the client library's producer, producer id + sequence deduped): its
 * status. */
static int bin_post_ev(int binport, const char *stream, const char *ev)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    int status = 1;
    spillway_producer_config cfg;
    spillway_producer_config_init(&cfg);
    cfg.on_delivery = on_delivery;
    cfg.opaque = &status;
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, &cfg, &p), 0);
    CHECK_EQ(spillway_producer_send(p, stream, NULL, -1, ev, strlen(ev), SPILLWAY_TS_NOW,
                                    SPILLWAY_ACK_LEVEL_REPLICATED, NULL),
             0);
    spillway_producer_flush(p, 30000);
    spillway_producer_close(p, 1000);
    return status;
}

/* Event {"i":i} to stream r: bin_post_ev. */
static int bin_post(int binport, int i)
{
    char ev[64];
    snprintf(ev, sizeof ev, "{\"i\":%d}", i);
    return bin_post_ev(binport, "r", ev);
}

static long long count_in(const pgsrv *pg, const char *where)
{
    char q[300];
    snprintf(q, sizeof q, "SELECT count(*) FROM t WHERE %s", where);
    return pgsrv_num(pg, q);
}

/* Sends replicated event i over HTTP, waits (bounded) until a backend
 * of the primary waits for the standby (the sink's COMMIT), calls fn
 * (pg_cancel_backend or pg_terminate_backend) on it, and checks the
 * request is answered 504. */
static void pg_cut(const srv *s, const pgsrv *pri, int i, const char *fn)
{
    char req[512], ev[64], q[200];
    int el = snprintf(ev, sizeof ev, "{\"i\":%d}", i);
    int rl = snprintf(req, sizeof req,
                      "POST /v1/streams/r/events?ack=replicated HTTP/1.1\r\nHost: t\r\nIdempotency-Key: ev-%d\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                      i, el, ev);
    int fd = tcp_connect(s->port);
    send_all(fd, req, (size_t)rl);
    long long waiting = 0;
    for (int k = 0; k < 400 && waiting < 1; k++) {
        waiting = pgsrv_num(pri, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'");
        if (waiting < 1)
            usleep(5000);
    }
    CHECK(waiting >= 1);
    snprintf(q, sizeof q, "SELECT count(%s(pid)) FROM pg_stat_activity WHERE wait_event = 'SyncRep'", fn);
    CHECK(pgsrv_num(pri, q) >= 1);
    static char buf[1 << 16];
    size_t have = 0;
    resp rr = {0};
    CHECK(read_resp(fd, &rr, buf, sizeof buf, &have) == 0);
    if (rr.status != 504)
        fprintf(stderr, "after %s of the sink's COMMIT: %d %s\n", fn, rr.status, rr.body);
    CHECK_EQ(rr.status, 504);
    free(rr.body);
    close(fd);
    appended[i] = 1;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    signal(SIGPIPE, SIG_IGN);
    if (pgsrv_find() != 0)
        return 77;
    char *tmp = spw_test_tmpdir("repl");
    static pgsrv pri, stb;
    pgsrv_init(&pri, tmp, "pri");
    pgsrv_exec(&pri, "CREATE TABLE t (id bigint NOT NULL)");
    pgsrv_standby(&stb, &pri, tmp, "stb");

    char data[4200], body[1024];
    snprintf(data, sizeof data, "%s/spw", tmp);
    srv s;
    srv_start(&s, BIN, data, NULL);

    /* 1. Refusals. */
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/bad", "{\"ack\":\"replicated\"}"), 400);
    put_stream(s.port, "plain", "{\"partitions\":1}");
    put_stream(s.port, "r", "{\"partitions\":2,\"replicate_to\":\"pgr\",\"replication_timeout_ms\":1500}");
    put_stream(s.port, "fx", "{\"partitions\":1,\"replicate_to\":\"fwd\"}");
    char *b = NULL;
    CHECK_EQ(post(s.port, "plain", "replicated", 0, &b), 400);
    CHECK(strstr(b, "replication_not_configured") != NULL);
    free(b);
    CHECK_EQ(post(s.port, "r", "replicated", 0, &b), 503);
    CHECK(strstr(b, "replication_unavailable") != NULL);
    free(b);
    snprintf(body, sizeof body,
             "{\"stream\":\"r\",\"kind\":\"postgres\",\"batch\":{\"max_wait_ms\":5},"
             "\"retry\":{\"initial_ms\":50,\"max_ms\":200},\"options\":{\"shards\":["
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"t\","
             "\"columns\":{\"id\":\"/i\"},\"statement_timeout_ms\":500}}",
             pri.port);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/pgr", body), 201);
    /* A stream's replica is its own sink, of a kind that replicates: a
     * stream naming pgr (which drains r) is refused, and so is a forward
     * sink that a stream names. */
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/wrong", "{\"partitions\":1,\"replicate_to\":\"pgr\"}"), 400);
    snprintf(body, sizeof body,
             "{\"stream\":\"fx\",\"kind\":\"forward\",\"options\":{\"address\":\"127.0.0.1:%d\",\"stream\":\"plain\"}}",
             s.binport);
    b = NULL;
    resp fr = http_json(s.port, "PUT", "/v1/sinks/fwd", body);
    CHECK_EQ(fr.status, 400);
    CHECK(strstr(fr.body, "cannot acknowledge ack=replicated") != NULL);
    free(fr.body);
    snprintf(body, sizeof body,
             "{\"stream\":\"plain\",\"kind\":\"postgres\",\"options\":{\"shards\":["
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"t\",\"columns\":{\"id\":\"/i\"}}}",
             pri.port);
    fr = http_json(s.port, "PUT", "/v1/sinks/fwd", body); /* fx names fwd: it must drain fx */
    CHECK_EQ(fr.status, 400);
    CHECK(strstr(fr.body, "must drain it") != NULL);
    free(fr.body);

    /* 2. Acknowledged once the standby holds it. The first requests may
     * meet the sink still attaching (503). */
    int n = 1, st;
    CHECK_EQ(post_attached(s.port, "r", n), 202);
    acked[n] = appended[n] = 1;
    n++;
    for (; n < 200; n++) {
        CHECK_EQ(post(s.port, "r", "replicated", n, NULL), 202);
        acked[n] = appended[n] = 1;
    }
    /* the binary protocol too */
    for (; n < 210; n++) {
        CHECK_EQ(bin_post(s.binport, n), 0);
        acked[n] = appended[n] = 1;
    }

    /* 2b. A record the target refuses is dead-lettered: its request is
     * not in the replica, and is answered so. */
    pgsrv_exec(&pri, "CREATE TABLE t2 (id bigint NOT NULL)");
    put_stream(s.port, "rd", "{\"partitions\":1,\"replicate_to\":\"pgd\",\"replication_timeout_ms\":20000}");
    put_stream(s.port, "rdlq", "{\"partitions\":1}");
    snprintf(body, sizeof body,
             "{\"stream\":\"rd\",\"kind\":\"postgres\",\"dlq\":\"rdlq\",\"batch\":{\"max_wait_ms\":5},"
             "\"retry\":{\"initial_ms\":50,\"max_ms\":200},\"options\":{\"shards\":["
             "\"host=127.0.0.1 port=%d user=postgres dbname=postgres\"],\"table\":\"t2\","
             "\"columns\":{\"id\":\"/i\"}}}",
             pri.port);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/pgd", body), 201);
    CHECK_EQ(post_ev_attached(s.port, "rd", "good-1", "{\"i\":1}", &b), 202);
    free(b);
    st = post_ev(s.port, "rd", "bad-1", "{\"i\":\"not a number\"}", &b);
    if (st != 422)
        fprintf(stderr, "a dead-lettered replicated request: %d %s\n", st, b);
    CHECK_EQ(st, 422);
    CHECK(strstr(b, "replication_rejected") != NULL);
    CHECK(strstr(b, "dead-lettered") != NULL);
    free(b);
    CHECK_EQ(post_ev(s.port, "rd", "bad-1", "{\"i\":\"not a number\"}", &b), 422); /* its retry: the same */
    CHECK(strstr(b, "replication_rejected") != NULL);
    free(b);
    CHECK_EQ(post_ev(s.port, "rd", "good-2", "{\"i\":2}", &b), 202);
    free(b);
    CHECK_EQ(bin_post_ev(s.binport, "rd", "{\"i\":\"nor this\"}"), SPILLWAY_ERR_REPLICATION_REJECTED);
    CHECK_EQ(bin_post_ev(s.binport, "rd", "{\"i\":3}"), 0);
    CHECK_EQ(pgsrv_num(&pri, "SELECT count(*) FROM t2"), 3);
    CHECK(srv_metric(s.port, "spillway_replicated_rejected_total") >= 3);
    { /* spillway top shows them */
        cli_out o = cli_run(BIN, "top --once --interval 300ms --server 127.0.0.1:%d", s.port);
        CHECK_EQ(o.rc, 0);
        const char *kv = strstr(o.text, " replication_rejected_total=");
        CHECK(kv != NULL);
        CHECK(atof(kv + 28) >= 3);
        free(o.text);
    }
    /* After a restart too: the sink reads its dead letters back from its
     * dlq stream, so the retry is not answered 202. */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    srv_start(&s, BIN, data, NULL);
    st = post_ev_attached(s.port, "rd", "bad-1", "{\"i\":\"not a number\"}", &b);
    if (st != 422)
        fprintf(stderr, "a dead-lettered replicated request retried after a restart: %d %s\n", st, b);
    CHECK_EQ(st, 422);
    free(b);
    CHECK_EQ(post_attached(s.port, "r", n), 202); /* pgr attached again */
    acked[n] = appended[n] = 1;
    n++;

    /* 3. The standby down: 504, never 202; fsync elsewhere goes on. */
    pgsrv_stop_mode(&stb, "fast");
    /* The sink's COMMIT waiting for the standby is cancelled (its
     * connection stays), then its backend terminated: either way the
     * transaction committed on the primary only (PostgreSQL's warning
     * "might not have been replicated"). The request waiting for it must
     * not be answered 202 when the sink finds its progress row moved. */
    pg_cut(&s, &pri, n++, "pg_cancel_backend");
    pg_cut(&s, &pri, n++, "pg_terminate_backend");
    int first_down = n;
    for (; n < first_down + 4; n++) {
        CHECK_EQ(post(s.port, "r", "replicated", n, &b), 504);
        CHECK(strstr(b, "replication_timeout") != NULL);
        free(b);
        appended[n] = 1;
        for (int k = 0; k < 5; k++)
            CHECK_EQ(post(s.port, "plain", "fsync", 1000 + n * 5 + k, NULL), 202);
    }
    CHECK_EQ(bin_post(s.binport, n), SPILLWAY_ERR_REPLICATION_TIMEOUT);
    appended[n++] = 1;
    /* a retry of a timed-out request: the same answer, nothing appended again */
    CHECK_EQ(post(s.port, "r", "replicated", first_down, NULL), 504);
    long long on_primary = count_in(&pri, "true");
    /* committed on the primary, or still waiting (the cut requests and those after them may be either) */
    CHECK(on_primary >= first_down - 3 && on_primary <= n - 1);

    /* The standby back: the backlog drains, replicated requests get 202 again. */
    pgsrv_start(&stb);
    st = 0;
    for (int tries = 0; tries < 100 && st != 202; tries++) {
        st = post(s.port, "r", "replicated", n, NULL);
        appended[n] = 1;
        if (st == 504)
            n++; /* another event: a retry would be the same one */
    }
    CHECK_EQ(st, 202);
    acked[n] = 1;
    n++;
    for (int i = first_down; i < first_down + 4; i++) {
        CHECK_EQ(post(s.port, "r", "replicated", i, &b), 202); /* duplicate, now replicated */
        CHECK(strstr(b, "\"duplicate\":true") != NULL);
        free(b);
        acked[i] = 1;
    }
    for (int end = n + 100; n < end; n++) {
        CHECK_EQ(post(s.port, "r", "replicated", n, NULL), 202);
        acked[n] = appended[n] = 1;
    }
    /* spillway top shows them (from /metrics) */
    cli_out o = cli_run(BIN, "top --once --interval 300ms --server 127.0.0.1:%d", s.port);
    CHECK_EQ(o.rc, 0);
    const char *kv = strstr(o.text, " replicated_total=");
    CHECK(kv != NULL);
    CHECK(atof(kv + 18) >= 100); /* since the restart in 2b */
    kv = strstr(o.text, " replication_timeouts_total=");
    CHECK(kv != NULL);
    CHECK(atof(kv + 28) >= 6);
    free(o.text);

    /* 4. The machine is lost: the server without a trace, the primary as
     * a crash; the standby promoted holds every acknowledged event once. */
    srv_stop(&s, SIGKILL);
    CHECK_EQ(pgsrv_sh("rm -rf %s", data), 0);
    pgsrv_stop_mode(&pri, "immediate");
    pgsrv_promote(&stb);
    long long want = 0, missing = 0;
    for (int i = 0; i < n; i++) {
        if (!acked[i])
            continue;
        want++;
        char w[64];
        snprintf(w, sizeof w, "id = %d", i);
        long long c = count_in(&stb, w);
        if (c != 1) {
            fprintf(stderr, "event %d acknowledged: %lld rows on the promoted standby\n", i, c);
            missing++;
        }
    }
    CHECK_EQ(missing, 0);
    CHECK(want >= 300);
    CHECK_EQ(pgsrv_num(&stb, "SELECT count(*) - count(DISTINCT id) FROM t"), 0);
    printf("test_replicated: %lld acknowledged events, each once on the promoted standby\n", want);

    pgsrv_stop_all();
    spw_test_rmrf(tmp);
    free(tmp);
    puts("test_replicated: ok");
    return 0;
}
