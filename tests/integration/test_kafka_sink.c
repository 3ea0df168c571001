/*
 * The `kafka` sink end to end (docs/api.md "Sinks", docs/api.md "kafka
 * sink"). There is no Kafka broker here: this test process runs
 * librdkafka's mock cluster (rd_kafka_mock_cluster_new, real TCP
 * listeners on 127.0.0.1) and the real server binary's sink points at its
 * bootstrap servers; the test consumes the topics back with an rdkafka
 * consumer.
 *   - API: bad kafka options (no brokers, bad topic, unknown field, a
 *     property librdkafka does not know, a property the sink fixes) are
 *     refused with 400 and create nothing.
 *   - Every event arrives once: key, value and timestamp intact, in order
 *     per key, each key on one Kafka partition.
 *   - A broker error injected by the mock (Produce answered with
 *     retriable errors) loses and doubles nothing.
 *   - The broker down for a while: the sink retries (state "retrying",
 *     last error set, lag grows) and nothing is lost when it comes back
 *     (records may appear twice: at least once).
 *   - A record over message.max.bytes goes to the DLQ stream with
 *     librdkafka's error text; the others arrive in order.
 *   - ack=replicated through a kafka sink named by replicate_to (acks=all):
 *     202 once the messages are in Kafka; the broker down: 504
 *     replication_timeout (none 202) and a retry too; back up: 202, the
 *     retries as duplicates, and every acknowledged event is in the topic.
 *   - Three brokers, one refusing a Produce request as too large: the
 *     records acknowledged on the other partitions are not sent again
 *     while the refused ones are bisected; order per key kept.
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include "server.h"
#include "spillway.h"

#define TS0 1700000000000LL /* event i gets timestamp TS0 + i */

static const char *BIN;

/* A JSON number field of a body ("\"name\":N"), or -1. */
static long long jnum(const char *body, const char *name)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", name);
    const char *p = strstr(body, pat);
    return p ? atoll(p + strlen(pat)) : -1;
}

/* Produces events first..first+n-1 to stream: key "k<i%keys>", value
 * {"i":i} (padded to 3000 bytes for i == big), timestamp TS0 + i. */
static void produce(int binport, const char *stream, int first, int n, int keys, int big)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new(addr, NULL, &p), 0);
    static char val[3200];
    char key[32];
    for (int i = first; i < first + n; i++) {
        int kl = snprintf(key, sizeof key, "k%d", i % keys);
        int vl;
        if (i == big) {
            char pad[3001];
            memset(pad, 'x', 3000);
            pad[3000] = 0;
            vl = snprintf(val, sizeof val, "{\"i\":%d,\"pad\":\"%s\"}", i, pad);
        } else {
            vl = snprintf(val, sizeof val, "{\"i\":%d}", i);
        }
        CHECK_EQ(spillway_producer_send(p, stream, key, kl, val, (size_t)vl, TS0 + i, SPILLWAY_ACK_LEVEL_DEFAULT, NULL), 0);
    }
    CHECK_EQ(spillway_producer_flush(p, 30000), 0);
    spillway_producer_close(p, 1000);
}

/* Waits (bounded) until the sink has delivered want records (in total,
 * dead letters included) and reports lag 0. */
static void wait_drained(int port, const char *sink, long long want)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/sinks/%s", sink);
    for (int i = 0; i < 1200; i++) {
        resp r = http_json(port, "GET", path, NULL);
        CHECK_EQ(r.status, 200);
        long long lag = jnum(r.body, "lag"), got = jnum(r.body, "delivered_total") + jnum(r.body, "dlq_total");
        free(r.body);
        if (lag == 0 && got >= want)
            return;
        usleep(100000);
    }
    CHECK(!"sink did not drain within 120 s");
}

typedef struct msg {
    int i;         /* from the value */
    int key;       /* k<key> */
    int32_t part;  /* Kafka partition */
    int64_t ts;
} msg;

/* Every message of topic (nparts partitions) from the beginning, in
 * partition then offset order; *n messages. Reads until every partition
 * reports its end. */
static msg *consume_all(const char *bootstraps, const char *topic, int nparts, size_t *n)
{
    char e[256];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(c, "bootstrap.servers", bootstraps, e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "group.id", "spw-test", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "enable.partition.eof", "true", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "log_level", "3", e, sizeof e) == RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
    CHECK(rk != NULL);
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(nparts);
    for (int p = 0; p < nparts; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset = RD_KAFKA_OFFSET_BEGINNING;
    CHECK(rd_kafka_assign(rk, l) == RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(l);
    size_t cap = 1024;
    msg *out = malloc(cap * sizeof *out);
    *n = 0;
    int eof[64] = {0}, neof = 0;
    for (int rounds = 0; rounds < 100000 && neof < nparts; rounds++) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (!eof[m->partition]++)
                neof++;
        } else {
            CHECK_EQ(m->err, RD_KAFKA_RESP_ERR_NO_ERROR);
            CHECK(!eof[m->partition]); /* nothing after the end: the sink had drained */
            if (*n == cap)
                out = realloc(out, (cap *= 2) * sizeof *out);
            msg *g = &out[(*n)++];
            char v[64];
            CHECK(m->len < sizeof v + 4000);
            size_t vl = m->len < sizeof v - 1 ? m->len : sizeof v - 1;
            memcpy(v, m->payload, vl);
            v[vl] = 0;
            CHECK(sscanf(v, "{\"i\":%d", &g->i) == 1);
            char k[32];
            CHECK(m->key && m->key_len > 1 && m->key_len < sizeof k);
            memcpy(k, m->key, m->key_len);
            k[m->key_len] = 0;
            CHECK(k[0] == 'k');
            g->key = atoi(k + 1);
            g->part = m->partition;
            rd_kafka_timestamp_type_t tt;
            g->ts = rd_kafka_message_timestamp(m, &tt);
            CHECK_EQ(tt, RD_KAFKA_TIMESTAMP_CREATE_TIME);
            /* the value arrived byte for byte */
            char want[64];
            int wl = snprintf(want, sizeof want, "{\"i\":%d}", g->i);
            CHECK(m->len == (size_t)wl && memcmp(m->payload, want, (size_t)wl) == 0);
        }
        rd_kafka_message_destroy(m);
    }
    CHECK_EQ(neof, nparts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return out;
}

/* Events 0..total-1 (keys i % keys) are all in msgs: key and timestamp
 * right, each key on one partition, and per key the events appear in
 * order, where a repeat of an event already seen is allowed only when
 * exact is 0. Returns the number of repeats. */
static size_t check_events(const msg *msgs, size_t n, int total, int keys, int exact)
{
    int *next = calloc((size_t)keys, sizeof *next); /* per key: the next event expected */
    int32_t *part = malloc((size_t)keys * sizeof *part);
    for (int k = 0; k < keys; k++)
        part[k] = -1, next[k] = k;
    size_t repeats = 0;
    for (size_t j = 0; j < n; j++) {
        const msg *g = &msgs[j];
        CHECK(g->key >= 0 && g->key < keys);
        CHECK_EQ(g->i % keys, g->key);
        CHECK(g->i >= 0 && g->i < total);
        CHECK_EQ(g->ts, TS0 + g->i);
        if (part[g->key] < 0)
            part[g->key] = g->part;
        CHECK_EQ(part[g->key], g->part);
        if (g->i == next[g->key]) {
            next[g->key] += keys;
        } else {
            CHECK(!exact);
            CHECK(g->i < next[g->key]); /* a resend, never a record from the future */
            repeats++;
        }
    }
    for (int k = 0; k < keys && k < total; k++)
        CHECK(next[k] >= total); /* every event of every key, in order */
    free(next);
    free(part);
    return repeats;
}

/* POST {"i":i} to bytes stream with key k1, ack=replicated and Idempotency-Key rk-i: the status. */
static int post_replicated(int port, const char *stream, int i)
{
    char path[128], ev[64], hdr[96];
    snprintf(path, sizeof path, "/v1/streams/%s/events?ack=replicated", stream);
    snprintf(ev, sizeof ev, "{\"i\":%d}", i);
    snprintf(hdr, sizeof hdr, "Idempotency-Key: rk-%d\r\nSpillway-Key: k1\r\n", i);
    resp r = http_ex(port, "POST", path, "application/octet-stream", hdr, ev, strlen(ev));
    if (r.status != 202 && r.status != 503 && getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%d %s\n", r.status, r.body);
    free(r.body);
    return r.status;
}

/* ack=replicated through a kafka sink (docs/api.md "Replicated acknowledgement"). */
static void test_replicated(int port, rd_kafka_mock_cluster_t *mc, const char *bs)
{
    CHECK_EQ(rd_kafka_mock_topic_create(mc, "rk", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_EQ(req_status(port, "PUT", "/v1/streams/rk",
                        "{\"partitions\":1,\"format\":\"bytes\",\"replicate_to\":\"krep\","
                        "\"replication_timeout_ms\":1500}"),
             201);
    char body[1024];
    snprintf(body, sizeof body,
             "{\"stream\":\"rk\",\"kind\":\"kafka\",\"retry\":{\"initial_ms\":50,\"max_ms\":200},"
             "\"options\":{\"brokers\":\"%s\",\"timeout_ms\":1000,\"properties\":{\"linger.ms\":1}}}",
             bs);
    CHECK_EQ(req_status(port, "PUT", "/v1/sinks/krep", body), 201);
    static char acked[400];
    int n = 0, st = 0;
    for (int tries = 0; tries < 400 && st != 202; tries++) { /* 503 until the sink attached */
        st = post_replicated(port, "rk", n);
        if (st == 503)
            usleep(25000);
    }
    CHECK_EQ(st, 202);
    acked[n++] = 1;
    for (; n < 50; n++) {
        CHECK_EQ(post_replicated(port, "rk", n), 202);
        acked[n] = 1;
    }
    /* the broker down: nothing is acknowledged as replicated */
    CHECK_EQ(rd_kafka_mock_broker_set_down(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    int down = n;
    for (; n < down + 3; n++)
        CHECK_EQ(post_replicated(port, "rk", n), 504);
    CHECK_EQ(post_replicated(port, "rk", down), 504); /* a retry: nothing appended again */
    CHECK_EQ(rd_kafka_mock_broker_set_up(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    st = 0;
    for (int tries = 0; tries < 100 && st != 202 && n < 390; tries++)
        if ((st = post_replicated(port, "rk", n)) != 202)
            n++;
    CHECK_EQ(st, 202);
    acked[n++] = 1;
    for (int i = down; i < down + 3; i++) {
        CHECK_EQ(post_replicated(port, "rk", i), 202); /* the retries: duplicates, now in Kafka */
        acked[i] = 1;
    }
    size_t got;
    msg *m = consume_all(bs, "rk", 1, &got);
    static char seen[400];
    for (size_t j = 0; j < got; j++)
        if (m[j].i >= 0 && m[j].i < 400)
            seen[m[j].i] = 1;
    for (int i = 0; i < n; i++)
        if (acked[i] && !seen[i]) {
            fprintf(stderr, "event %d acknowledged as replicated is not in the topic\n", i);
            CHECK(!"an acknowledged event is missing");
        }
    free(m);
    CHECK_EQ(req_status(port, "DELETE", "/v1/sinks/krep", NULL), 204);
    /* the sink gone: refused before anything is appended */
    CHECK_EQ(post_replicated(port, "rk", 399), 503);
}

static void test_api(int port, const char *bs)
{
    char b[1024];
    const char *bad[] = {
        "{}",
        "{\"topic\":\"t\"}",
        "{\"brokers\":\"\"}",
        "{\"brokers\":\"%s\",\"topic\":\"bad topic\"}",
        "{\"brokers\":\"%s\",\"topic\":\"\"}",
        "{\"brokers\":\"%s\",\"nope\":1}",
        "{\"brokers\":\"%s\",\"timeout_ms\":5}",
        "{\"brokers\":\"%s\",\"properties\":[]}",
        "{\"brokers\":\"%s\",\"properties\":{\"no.such.property\":\"1\"}}",
        "{\"brokers\":\"%s\",\"properties\":{\"compression.codec\":\"bogus\"}}",
        "{\"brokers\":\"%s\",\"properties\":{\"acks\":\"1\"}}",
        "{\"brokers\":\"%s\",\"properties\":{\"enable.idempotence\":false}}",
        "{\"brokers\":\"%s\",\"properties\":{\"linger.ms\":{}}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char opts[512];
        snprintf(opts, sizeof opts, bad[i], bs);
        snprintf(b, sizeof b, "{\"stream\":\"ev\",\"kind\":\"kafka\",\"options\":%s}", opts);
        resp r = http_json(port, "PUT", "/v1/sinks/x", b);
        if (r.status != 400)
            fprintf(stderr, "case %zu: %s -> %d %s\n", i, opts, r.status, r.body);
        CHECK_EQ(r.status, 400);
        free(r.body);
    }
    /* librdkafka's own sentence reaches the client */
    snprintf(b, sizeof b,
             "{\"stream\":\"ev\",\"kind\":\"kafka\",\"options\":{\"brokers\":\"%s\",\"properties\":"
             "{\"no.such.property\":\"1\"}}}",
             bs);
    resp r = http_json(port, "PUT", "/v1/sinks/x", b);
    CHECK(strstr(r.body, "options.properties.no.such.property: No such configuration property"));
    free(r.body);
    r = http_json(port, "GET", "/v1/sinks", NULL);
    CHECK(strcmp(r.body, "{\"sinks\":[]}\n") == 0); /* nothing was created */
    free(r.body);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *dir = spw_test_tmpdir("kafka-sink");
    srv s;
    srv_start(&s, BIN, dir, NULL); /* before the mock cluster's threads exist */

    char e[256];
    rd_kafka_conf_t *hc = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(hc, "log_level", "3", e, sizeof e) == RD_KAFKA_CONF_OK);
    rd_kafka_t *host = rd_kafka_new(RD_KAFKA_PRODUCER, hc, e, sizeof e);
    CHECK(host != NULL);
    rd_kafka_mock_cluster_t *mc = rd_kafka_mock_cluster_new(host, 1);
    CHECK(mc != NULL);
    const char *bs = rd_kafka_mock_cluster_bootstraps(mc);
    CHECK_EQ(rd_kafka_mock_topic_create(mc, "ev", 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_EQ(rd_kafka_mock_topic_create(mc, "small", 1, 1), RD_KAFKA_RESP_ERR_NO_ERROR);

    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/ev", "{\"partitions\":2}"), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/ps", "{\"partitions\":1}"), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/dlq", "{\"partitions\":1}"), 201);

    test_api(s.port, bs);

    /* 1. every event once, intact, in order per key */
    const int KEYS = 37;
    char body[2048];
    snprintf(body, sizeof body,
             "{\"stream\":\"ev\",\"kind\":\"kafka\",\"dlq\":\"dlq\","
             "\"batch\":{\"max_events\":500,\"max_wait_ms\":50},\"retry\":{\"initial_ms\":50,\"max_ms\":400},"
             "\"options\":{\"brokers\":\"%s\",\"timeout_ms\":2000,\"properties\":{\"linger.ms\":2}}}",
             bs);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/kf", body), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/kf", body), 200);
    produce(s.binport, "ev", 0, 3000, KEYS, -1);
    wait_drained(s.port, "kf", 3000);
    size_t n;
    msg *m = consume_all(bs, "ev", 3, &n);
    CHECK_EQ(n, 3000);
    check_events(m, n, 3000, KEYS, 1);
    int used[3] = {0};
    for (size_t j = 0; j < n; j++)
        used[m[j].part] = 1;
    CHECK(used[0] + used[1] + used[2] >= 2); /* keyed messages spread over partitions */
    free(m);
    resp r = http_json(s.port, "GET", "/v1/sinks/kf", NULL);
    CHECK(strstr(r.body, "\"kind\":\"kafka\""));
    CHECK(strstr(r.body, "\"state\":\"running\""));
    CHECK_EQ(jnum(r.body, "delivered_total"), 3000);
    free(r.body);

    /* 2. Produce requests answered with retriable errors: the producer
     * retries them itself; nothing lost, nothing doubled (idempotence) */
    CHECK_EQ(rd_kafka_mock_broker_push_request_error_rtts(
                 mc, 1, 0 /* Produce */, 6, RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0,
                 RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 0, RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0,
                 RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, 0,
                 RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS, 0),
             RD_KAFKA_RESP_ERR_NO_ERROR);
    produce(s.binport, "ev", 3000, 1000, KEYS, -1);
    wait_drained(s.port, "kf", 4000);
    size_t left = 99;
    CHECK_EQ(rd_kafka_mock_broker_error_stack_cnt(mc, 1, 0, &left), RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_EQ(left, 0); /* every injected error was answered to a Produce request */
    m = consume_all(bs, "ev", 3, &n);
    CHECK_EQ(n, 4000);
    check_events(m, n, 4000, KEYS, 1);
    free(m);

    /* 3. the broker down for a while: retrying, lag grows, nothing lost */
    CHECK_EQ(rd_kafka_mock_broker_set_down(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    produce(s.binport, "ev", 4000, 1000, KEYS, -1);
    int saw_retry = 0;
    for (int i = 0; i < 600 && !saw_retry; i++) {
        r = http_json(s.port, "GET", "/v1/sinks/kf", NULL);
        saw_retry = strstr(r.body, "\"state\":\"retrying\"") && jnum(r.body, "lag") > 0 &&
                    strstr(r.body, "\"last_error\":\"target unavailable: kafka ");
        if (saw_retry && getenv("SPW_TEST_VERBOSE"))
            fprintf(stderr, "%s\n", r.body);
        free(r.body);
        if (!saw_retry)
            usleep(100000);
    }
    CHECK(saw_retry);
    CHECK_EQ(rd_kafka_mock_broker_set_up(mc, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    wait_drained(s.port, "kf", 5000);
    m = consume_all(bs, "ev", 3, &n);
    CHECK(n >= 5000);
    size_t rep = check_events(m, n, 5000, KEYS, 0);
    CHECK_EQ(n - 5000, rep);
    printf("broker down: %zu repeat(s)\n", rep);
    free(m);
    r = http_json(s.port, "GET", "/v1/sinks/kf", NULL);
    CHECK(strstr(r.body, "\"state\":\"running\""));
    free(r.body);

    test_replicated(s.port, mc, bs);

    /* 4. a record over message.max.bytes: DLQ with librdkafka's text */
    snprintf(body, sizeof body,
             "{\"stream\":\"ps\",\"kind\":\"kafka\",\"dlq\":\"dlq\","
             "\"batch\":{\"max_events\":500,\"max_wait_ms\":50},\"retry\":{\"initial_ms\":50,\"max_ms\":400},"
             "\"options\":{\"brokers\":\"%s\",\"topic\":\"small\",\"timeout_ms\":5000,"
             "\"properties\":{\"message.max.bytes\":2000}}}",
             bs);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/pois", body), 201);
    produce(s.binport, "ps", 0, 50, 5, 20);
    wait_drained(s.port, "pois", 50);
    m = consume_all(bs, "small", 1, &n);
    CHECK_EQ(n, 49);
    for (size_t j = 0; j < n; j++)
        CHECK_EQ(m[j].i, (int)(j < 20 ? j : j + 1)); /* all but 20, in order */
    free(m);
    r = http_json(s.port, "GET", "/v1/sinks/pois", NULL);
    CHECK_EQ(jnum(r.body, "dlq_total"), 1);
    CHECK_EQ(jnum(r.body, "delivered_total"), 49);
    free(r.body);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s.binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 5000, &c), 0);
    spillway_fetch_result *fr;
    CHECK_EQ(spillway_client_fetch(c, "dlq", 0, 0, 1 << 20, &fr), 0);
    CHECK_EQ(spillway_fetch_count(fr), 1);
    spillway_fetched f;
    spillway_fetch_get(fr, 0, &f);
    char *dl = strndup((const char *)f.value, f.value_len);
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "dlq: %.300s\n", dl);
    CHECK(strstr(dl, "\"error\":\"kafka topic small refused the record: Broker: Message size too large\""));
    CHECK(strstr(dl, "\"sink\":\"pois\",\"stream\":\"ps\",\"partition\":0,\"offset\":20,"));
    free(dl);
    spillway_fetch_free(fr);
    spillway_client_close(c);

    /* 5. a three-broker cluster (a partition led by each), one Produce
     * request of broker 2 refused as too large: that partition's records
     * are rejected and bisected (then accepted alone); those acknowledged
     * on the other partitions are not sent again (exact count), and every
     * key keeps its order */
    rd_kafka_mock_cluster_t *mc3 = rd_kafka_mock_cluster_new(host, 3);
    CHECK(mc3 != NULL);
    const char *bs3 = rd_kafka_mock_cluster_bootstraps(mc3);
    CHECK_EQ(rd_kafka_mock_topic_create(mc3, "three", 3, 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    for (int p = 0; p < 3; p++)
        CHECK_EQ(rd_kafka_mock_partition_set_leader(mc3, "three", p, p + 1), RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/p3", "{\"partitions\":1}"), 201);
    produce(s.binport, "p3", 0, 600, KEYS, -1); /* before the sink: one full batch */
    CHECK_EQ(rd_kafka_mock_broker_push_request_error_rtts(mc3, 2, 0 /* Produce */, 1,
                                                          RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE, 0),
             RD_KAFKA_RESP_ERR_NO_ERROR);
    snprintf(body, sizeof body,
             "{\"stream\":\"p3\",\"kind\":\"kafka\",\"dlq\":\"dlq\","
             "\"batch\":{\"max_events\":600,\"max_wait_ms\":50},\"retry\":{\"initial_ms\":50,\"max_ms\":400},"
             "\"options\":{\"brokers\":\"%s\",\"topic\":\"three\",\"timeout_ms\":5000}}",
             bs3);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/sinks/three", body), 201);
    wait_drained(s.port, "three", 600);
    size_t left3 = 99;
    CHECK_EQ(rd_kafka_mock_broker_error_stack_cnt(mc3, 2, 0, &left3), RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_EQ(left3, 0);
    r = http_json(s.port, "GET", "/v1/sinks/three", NULL);
    if (getenv("SPW_TEST_VERBOSE"))
        fprintf(stderr, "%s\n", r.body);
    CHECK_EQ(jnum(r.body, "dlq_total"), 0);
    CHECK_EQ(jnum(r.body, "delivered_total"), 600);
    CHECK(jnum(r.body, "errors_total") >= 1); /* the refused write happened */
    free(r.body);
    m = consume_all(bs3, "three", 3, &n);
    CHECK_EQ(n, 600);
    check_events(m, n, 600, KEYS, 1);
    free(m);

    /* 6. the definitions survive a restart */
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    srv_start(&s, BIN, dir, NULL);
    r = http_json(s.port, "GET", "/v1/sinks/kf", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"kind\":\"kafka\""));
    free(r.body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);

    rd_kafka_mock_cluster_destroy(mc3);
    rd_kafka_mock_cluster_destroy(mc);
    rd_kafka_destroy(host);
    spw_test_rmrf(dir);
    free(dir);
    printf("test_kafka_sink: ok\n");
    return 0;
}
