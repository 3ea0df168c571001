/*
 * The Kafka listener (docs/protocol-kafka.md) with real Kafka clients:
 * kcat from Debian and librdkafka, against the real server binary.
 *   - kcat -L: topics are streams with their partitions, this node the
 *     only broker and the controller.
 *   - kcat -P (keys, an explicit partition, gzip/snappy/lz4/zstd batches,
 *     headers): read back over HTTP with the same keys, values,
 *     partitions and timestamps the producer set.
 *   - Events produced over HTTP read with kcat -C -e: same partition,
 *     offset, key, timestamp and value.
 *   - A librdkafka producer with enable.idempotence=true and acks=all:
 *     every delivery report's partition and offset hold that message
 *     (key, value, timestamp) over HTTP and over the binary protocol's
 *     FETCH, each message exactly once; a librdkafka consumer reads them
 *     all back the same; a record produced over the binary protocol is
 *     read with kcat with its key and timestamp.
 *   - CreateTopics, kafka-auto-create, a rate limit's throttle time,
 *     SASL/PLAIN onto the tokens, and hostile request bodies for every API
 *     served.
 *   - A json stream refuses a non-JSON value with INVALID_RECORD and
 *     stores nothing of its batch.
 *   - Fetch's wait: a Fetch with max_wait 60 s at the end is answered
 *     with the record a later produce adds (under an alarm that fails the
 *     test long before 60 s: the durable hook woke it); one with a
 *     min_bytes larger than one record's batch is not answered with one
 *     record, and is with two.
 *   - Large Fetch answers reuse the loop's spare buffer: 16 Fetches of 4
 *     MiB fault in fewer than 512 pages in the server (a new buffer each
 *     time faulted in all 1024 of each).
 *   - Raw requests: an API we do not serve and a version we do not serve
 *     are answered with error 35 and the connection goes on; the same
 *     idempotent batch sent twice is stored once and both answers carry
 *     the first attempt's offset.
 */
#include <librdkafka/rdkafka.h>
#include <poll.h>

#include "core/crc32c.h"
#include "kafka/kcodec.h"
#include "server.h"
#include "spillway.h"

#define TS0 1700000000000LL

static const char *BIN;

/* Runs a shell command; its stdout (malloc'ed). The command must exit 0. */
static char *run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    size_t cap = 1 << 20, n = 0;
    char *out = malloc(cap);
    size_t k;
    while ((k = fread(out + n, 1, cap - 1 - n, f)) > 0)
        n += k;
    out[n] = 0;
    int st = pclose(f);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        fprintf(stderr, "command failed (%d): %s\noutput: %s\n", st, cmd, out);
    CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    return out;
}

/* The records of a partition over HTTP (NDJSON lines). */
static char *http_read(int port, const char *stream, int part)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/%s/events?partition=%d&offset=0&limit=10000", stream, part);
    resp r = http_json(port, "GET", path, NULL);
    CHECK_EQ(r.status, 200);
    return r.body;
}

static int count_lines(const char *s, const char *needle)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

/* ---- 1. kcat ---- */

static void test_kcat(const srv *s)
{
    char *md = run("timeout 30 kcat -b 127.0.0.1:%d -L 2>&1", s->kafkaport);
    CHECK(strstr(md, "topic \"orders\" with 3 partitions") != NULL);
    CHECK(strstr(md, "topic \"raw\" with 2 partitions") != NULL);
    char want[128];
    snprintf(want, sizeof want, "broker 0 at 127.0.0.1:%d (controller)", s->kafkaport);
    CHECK(strstr(md, want) != NULL);
    CHECK(strstr(md, "partition 2, leader 0, replicas: 0, isrs: 0") != NULL);
    free(md);

    /* Keyed JSON into partition 2, then gzip, snappy, lz4 and zstd batches
     * with a header into partition 1. */
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    long long before = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
    free(run("printf 'k1|{\"n\":1}\\nk2|{\"n\":2}\\nk1|{\"n\":3}\\n' | timeout 30 kcat -b 127.0.0.1:%d -P -t orders "
             "-p 2 -K'|' -X acks=all 2>&1",
             s->kafkaport));
    const char *codecs[] = {"gzip", "snappy", "lz4", "zstd"};
    for (int i = 0; i < 4; i++)
        free(run("printf 'c|{\"codec\":\"%s\"}\\n' | timeout 30 kcat -b 127.0.0.1:%d -P -t orders -p 1 -K'|' -z %s "
                 "-H trace=t%d 2>&1",
                 codecs[i], s->kafkaport, codecs[i], i));
    clock_gettime(CLOCK_REALTIME, &t);
    long long after = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;

    char *p2 = http_read(s->port, "orders", 2);
    CHECK_EQ(count_lines(p2, "\"offset\":"), 3);
    CHECK(strstr(p2, "\"offset\":0,") && strstr(p2, "\"key\":\"k1\",\"value\":{\"n\":1}"));
    CHECK(strstr(p2, "\"offset\":1,") && strstr(p2, "\"key\":\"k2\",\"value\":{\"n\":2}"));
    CHECK(strstr(p2, "\"offset\":2,") && strstr(p2, "\"key\":\"k1\",\"value\":{\"n\":3}"));
    /* The producer's create time is each record's timestamp. */
    for (const char *q = p2; (q = strstr(q, "\"ts\":")); q++) {
        long long ts = atoll(q + 5);
        CHECK(ts >= before && ts <= after);
    }
    free(p2);
    char *p1 = http_read(s->port, "orders", 1);
    CHECK_EQ(count_lines(p1, "\"offset\":"), 4);
    for (int i = 0; i < 4; i++) {
        char v[64];
        snprintf(v, sizeof v, "\"key\":\"c\",\"value\":{\"codec\":\"%s\"}", codecs[i]);
        CHECK(strstr(p1, v) != NULL);
    }
    free(p1);
    /* Headers come back on a Kafka read. */
    char *hd = run("timeout 30 kcat -b 127.0.0.1:%d -C -t orders -p 1 -o beginning -e -f '%%o %%k %%h %%s\\n' 2>/dev/null",
                   s->kafkaport);
    CHECK(strstr(hd, "0 c trace=t0 {\"codec\":\"gzip\"}") != NULL);
    CHECK(strstr(hd, "3 c trace=t3 {\"codec\":\"zstd\"}") != NULL);
    free(hd);

    /* Produced over HTTP, read with kcat: partitions, offsets, keys and
     * timestamps as the HTTP answer and the request said. */
    resp r = http_json(s->port, "POST", "/v1/streams/hj/events",
                       "[{\"id\":\"a\",\"ts\":1700000000001,\"v\":1},{\"id\":\"b\",\"ts\":1700000000002,\"v\":2},"
                       "{\"id\":\"a\",\"ts\":1700000000003,\"v\":3}]");
    CHECK_EQ(r.status, 202);
    free(r.body);
    char *all = http_read(s->port, "hj", 0);
    char *all1 = http_read(s->port, "hj", 1);
    char *kc = run("timeout 30 kcat -b 127.0.0.1:%d -C -t hj -o beginning -e -f '%%p %%o %%k %%T %%s\\n' 2>/dev/null",
                   s->kafkaport);
    CHECK_EQ(count_lines(kc, "\n"), 3);
    for (int part = 0; part < 2; part++) {
        char *h = part ? all1 : all;
        for (const char *q = h; (q = strstr(q, "{\"partition\":")); q++) {
            int pp = atoi(q + 13);
            const char *o = strstr(q, "\"offset\":"), *k = strstr(q, "\"key\":\""), *ts = strstr(q, "\"ts\":");
            const char *v = strstr(q, "\"value\":");
            CHECK(o && k && ts && v);
            char key[16] = {0};
            sscanf(k + 7, "%15[^\"]", key);
            const char *ve = strchr(v, '}');
            char line[256];
            snprintf(line, sizeof line, "%d %d %s %lld %.*s\n", pp, atoi(o + 9), key, atoll(ts + 5),
                     (int)(ve + 1 - (v + 8)), v + 8);
            if (!strstr(kc, line))
                fprintf(stderr, "missing in kcat output: %s(got:\n%s)\n", line, kc);
            CHECK(strstr(kc, line) != NULL);
        }
    }
    free(kc);
    free(all);
    free(all1);
}

/* ---- 2. librdkafka: idempotent producer, consumer ---- */

#define NMSG 500

typedef struct dr {
    int n, failed;
    int part[NMSG];
    long long off[NMSG];
    rd_kafka_resp_err_t last_err;
} dr;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    dr *d = opaque;
    intptr_t i = (intptr_t)m->_private;
    if (m->err) {
        d->failed++;
        d->last_err = m->err;
    } else if (i >= 0 && i < NMSG) {
        d->part[i] = m->partition;
        d->off[i] = m->offset;
    }
    d->n++;
}

static rd_kafka_t *producer(const srv *s, dr *d, int idempotent)
{
    char e[256], bs[64];
    snprintf(bs, sizeof bs, "127.0.0.1:%d", s->kafkaport);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(c, "bootstrap.servers", bs, e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "acks", "all", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "enable.idempotence", idempotent ? "true" : "false", e, sizeof e) ==
          RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "linger.ms", "5", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "compression.codec", "lz4", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "message.timeout.ms", "30000", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "retries", idempotent ? "1000" : "0", e, sizeof e) == RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_dr_msg_cb(c, on_dr);
    rd_kafka_conf_set_opaque(c, d);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof e);
    CHECK(rk != NULL);
    return rk;
}

static void test_librdkafka(const srv *s)
{
    dr d;
    memset(&d, 0, sizeof d);
    rd_kafka_t *rk = producer(s, &d, 1);
    for (int i = 0; i < NMSG; i++) {
        char key[16], val[64];
        snprintf(key, sizeof key, "key-%d", i % 7);
        snprintf(val, sizeof val, "{\"i\":%d}", i);
        CHECK_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("orders"), RD_KAFKA_V_KEY(key, strlen(key)),
                                   RD_KAFKA_V_VALUE(val, strlen(val)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                   RD_KAFKA_V_TIMESTAMP(TS0 + i), RD_KAFKA_V_OPAQUE((void *)(intptr_t)i),
                                   RD_KAFKA_V_END),
                 RD_KAFKA_RESP_ERR_NO_ERROR);
        if (i % 100 == 0)
            rd_kafka_poll(rk, 0);
    }
    CHECK_EQ(rd_kafka_flush(rk, 60000), RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_EQ(d.n, NMSG);
    CHECK_EQ(d.failed, 0);
    rd_kafka_destroy(rk);

    /* Every delivery report's place holds its message, and only it. */
    char *parts[3];
    int total = 0;
    for (int p = 0; p < 3; p++) {
        parts[p] = http_read(s->port, "orders", p);
        total += count_lines(parts[p], "\"offset\":");
    }
    CHECK_EQ(total, NMSG + 3 + 4); /* and the 7 of kcat */
    for (int i = 0; i < NMSG; i++) {
        char want[160];
        snprintf(want, sizeof want, "\"offset\":%lld,", d.off[i]);
        const char *q = strstr(parts[d.part[i]], want);
        CHECK(q != NULL);
        snprintf(want, sizeof want, "\"ts\":%lld,\"key\":\"key-%d\",\"value\":{\"i\":%d}}", TS0 + i, i % 7, i);
        const char *eol = strchr(q, '\n');
        CHECK(eol && strstr(q, want) && strstr(q, want) < eol);
    }
    for (int p = 0; p < 3; p++)
        free(parts[p]);

    /* A consumer reads them back (the simple consumer: no group). */
    char e[256], bs[64];
    snprintf(bs, sizeof bs, "127.0.0.1:%d", s->kafkaport);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(c, "bootstrap.servers", bs, e, sizeof e) == RD_KAFKA_CONF_OK);
    rd_kafka_t *ck = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
    CHECK(ck != NULL);
    rd_kafka_topic_t *t = rd_kafka_topic_new(ck, "orders", NULL);
    static unsigned char seen[NMSG];
    int got = 0;
    for (int p = 0; p < 3; p++)
        CHECK_EQ(rd_kafka_consume_start(t, p, RD_KAFKA_OFFSET_BEGINNING), 0);
    for (int round = 0; round < 600 && got < NMSG; round++) {
        for (int p = 0; p < 3; p++) {
            rd_kafka_message_t *m;
            while ((m = rd_kafka_consume(t, p, 100)) != NULL) {
                if (!m->err && m->len > 5 && memcmp(m->payload, "{\"i\":", 5) == 0) {
                    int i = atoi((const char *)m->payload + 5);
                    CHECK(i >= 0 && i < NMSG);
                    CHECK_EQ(seen[i], 0);
                    seen[i] = 1;
                    got++;
                    rd_kafka_timestamp_type_t tt;
                    CHECK_EQ(rd_kafka_message_timestamp(m, &tt), TS0 + i);
                    char key[16];
                    snprintf(key, sizeof key, "key-%d", i % 7);
                    CHECK(m->key_len == strlen(key) && memcmp(m->key, key, m->key_len) == 0);
                    CHECK_EQ(m->partition, d.part[i]);
                    CHECK_EQ(m->offset, d.off[i]);
                }
                rd_kafka_message_destroy(m);
            }
        }
    }
    CHECK_EQ(got, NMSG);
    for (int p = 0; p < 3; p++)
        rd_kafka_consume_stop(t, p);

    /* The binary protocol's FETCH reads the same records at the same
     * places, with the same keys and timestamps. */
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", s->binport);
    spillway_client *bc;
    CHECK_EQ(spillway_client_connect(addr, 5000, &bc), 0);
    int bgot = 0;
    for (uint32_t p = 0; p < 3; p++) {
        for (uint64_t off = 0;;) {
            spillway_fetch_result *fr;
            CHECK_EQ(spillway_client_fetch(bc, "orders", p, off, 0, &fr), 0);
            size_t cnt = spillway_fetch_count(fr);
            for (size_t k = 0; k < cnt; k++) {
                spillway_fetched f;
                spillway_fetch_get(fr, k, &f);
                if (f.value_len > 5 && memcmp(f.value, "{\"i\":", 5) == 0) {
                    int i = atoi((const char *)f.value + 5);
                    CHECK(i >= 0 && i < NMSG);
                    CHECK_EQ((int)p, d.part[i]);
                    CHECK_EQ((long long)f.offset, d.off[i]);
                    CHECK_EQ(f.ts, TS0 + i);
                    char key[16];
                    snprintf(key, sizeof key, "key-%d", i % 7);
                    CHECK(f.key_len == (int32_t)strlen(key) && memcmp(f.key, key, (size_t)f.key_len) == 0);
                    bgot++;
                }
            }
            off = spillway_fetch_next_offset(fr);
            spillway_fetch_free(fr);
            if (cnt == 0)
                break;
        }
    }
    spillway_client_close(bc);
    CHECK_EQ(bgot, NMSG);
    /* Produced over the binary protocol, read over Kafka. */
    spillway_producer *bp;
    CHECK_EQ(spillway_producer_new(addr, NULL, &bp), 0);
    CHECK_EQ(spillway_producer_send(bp, "braw", "bk", 2, "binval", 6, TS0 + 777, SPILLWAY_ACK_LEVEL_FSYNC, NULL), 0);
    CHECK_EQ(spillway_producer_flush(bp, 30000), 0);
    spillway_producer_close(bp, 5000);
    char *kb = run("timeout 30 kcat -b 127.0.0.1:%d -C -t braw -o beginning -e -f '%%k %%T %%s\\n' 2>/dev/null",
                   s->kafkaport);
    CHECK(strstr(kb, "bk 1700000000777 binval\n") != NULL);
    free(kb);
    rd_kafka_topic_destroy(t);
    rd_kafka_destroy(ck);

    /* A json stream refuses a value that is not JSON: INVALID_RECORD, and
     * nothing of that batch is stored. */
    memset(&d, 0, sizeof d);
    rk = producer(s, &d, 0);
    CHECK_EQ(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("orders"), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE("not json", 8),
                               RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE((void *)(intptr_t)-1),
                               RD_KAFKA_V_END),
             RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_EQ(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    CHECK_EQ(d.failed, 1);
    CHECK_EQ(d.last_err, RD_KAFKA_RESP_ERR_INVALID_RECORD);
    rd_kafka_destroy(rk);
    char *p0 = http_read(s->port, "orders", 0);
    CHECK(strstr(p0, "not json") == NULL);
    free(p0);
}

/* ---- 3. raw requests ---- */

static void kreq_send(int fd, int16_t key, int16_t ver, int32_t corr, const spw_buf *body)
{
    spw_buf b = SPW_BUF_INIT;
    spw_kw_i32(&b, 0);
    spw_kw_i16(&b, key);
    spw_kw_i16(&b, ver);
    spw_kw_i32(&b, corr);
    spw_kw_str(&b, "test", 4);
    if (body)
        spw_buf_put(&b, body->p, body->len);
    spw_kw_set_i32(&b, 0, (int32_t)(b.len - 4));
    send_all(fd, b.p, b.len);
    spw_buf_fini(&b);
}

/* One answer: its bytes after the size (malloc'ed), *n their count. */
static uint8_t *kresp_read(int fd, size_t *n)
{
    uint8_t hdr[4];
    size_t got = 0;
    while (got < 4) {
        ssize_t k = recv(fd, hdr + got, 4 - got, 0);
        CHECK(k > 0);
        got += (size_t)k;
    }
    size_t len = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
    CHECK(len >= 4 && len < (16u << 20));
    uint8_t *p = malloc(len);
    got = 0;
    while (got < len) {
        ssize_t k = recv(fd, p + got, len - got, 0);
        CHECK(k > 0);
        got += (size_t)k;
    }
    *n = len;
    return p;
}

/* A Produce v7 of the built record batch to topic/0 at acks -1; the
 * answer's base offset, its error code in err and throttle time. */
static int64_t produce_batch(int fd, const char *topic, int32_t corr, const spw_buf *batch, int16_t *err,
                             int32_t *throttle)
{
    spw_buf body = SPW_BUF_INIT;
    spw_kw_str(&body, NULL, -1);
    spw_kw_i16(&body, -1);
    spw_kw_i32(&body, 30000);
    spw_kw_i32(&body, 1);
    spw_kw_str(&body, topic, (int32_t)strlen(topic));
    spw_kw_i32(&body, 1);
    spw_kw_i32(&body, 0);
    spw_kw_bytes(&body, batch->p, (int32_t)batch->len);
    kreq_send(fd, 0, 7, corr, &body);
    size_t rn;
    uint8_t *a = kresp_read(fd, &rn);
    spw_kr r;
    spw_kr_init(&r, a, rn);
    CHECK_EQ(spw_kr_i32(&r), corr);
    CHECK_EQ(spw_kr_i32(&r), 1);
    const char *name;
    int32_t nl;
    spw_kr_str(&r, &name, &nl);
    CHECK(nl == (int32_t)strlen(topic) && memcmp(name, topic, (size_t)nl) == 0);
    CHECK_EQ(spw_kr_i32(&r), 1);
    CHECK_EQ(spw_kr_i32(&r), 0);
    *err = spw_kr_i16(&r);
    int64_t off = spw_kr_i64(&r);
    (void)spw_kr_i64(&r); /* log append time */
    (void)spw_kr_i64(&r); /* log start offset */
    *throttle = spw_kr_i32(&r);
    CHECK(!r.bad && spw_kr_left(&r) == 0);
    free(a);
    spw_buf_fini(&body);
    return off;
}

/* A Produce v7 of one batch (producer pid, epoch 0, base sequence seq) of
 * n records to raw/0 at acks -1; the answer's base offset. */
static int64_t produce_to(int fd, const char *topic, int32_t corr, int64_t pid, int32_t seq, int n, int16_t *err,
                          int32_t *throttle)
{
    spw_buf batch = SPW_BUF_INIT;
    spw_kbatch_w w;
    CHECK_EQ(spw_kbatch_begin(&batch, &w, 0, TS0), 0);
    for (int i = 0; i < n; i++) {
        char v[32];
        int vl = snprintf(v, sizeof v, "seq%d-%d", seq, i);
        CHECK_EQ(spw_kbatch_add(&batch, &w, i, TS0 + i, (const uint8_t *)"k", 1, (const uint8_t *)v, vl, NULL, 0, 0),
                 0);
    }
    spw_kbatch_end(&batch, &w);
    /* producer id, epoch, base sequence at bytes 43, 51, 53; CRC again */
    spw_buf t = {.p = batch.p + 43, .len = 0, .cap = 14};
    spw_kw_i64(&t, pid);
    spw_kw_i16(&t, 0);
    spw_kw_i32(&t, seq);
    t = (spw_buf){.p = batch.p + 17, .len = 0, .cap = 4};
    spw_kw_i32(&t, (int32_t)spw_crc32c(batch.p + 21, batch.len - 21));
    int64_t off = produce_batch(fd, topic, corr, &batch, err, throttle);
    spw_buf_fini(&batch);
    return off;
}

static int64_t produce_raw(int fd, int32_t corr, int64_t pid, int32_t seq, int n, int16_t *err)
{
    int32_t throttle;
    int64_t off = produce_to(fd, "raw", corr, pid, seq, n, err, &throttle);
    CHECK_EQ(throttle, 0);
    return off;
}

/* ---- Fetch's wait ---- */

/* Sends a Fetch v4 of topic/0 from offset, max_bytes for the answer and
 * the partition. */
static void fetch_send_max(int fd, int32_t corr, const char *topic, int64_t off, int32_t max_wait, int32_t min_bytes,
                           int32_t max_bytes)
{
    spw_buf body = SPW_BUF_INIT;
    spw_kw_i32(&body, -1); /* replica id */
    spw_kw_i32(&body, max_wait);
    spw_kw_i32(&body, min_bytes);
    spw_kw_i32(&body, max_bytes);
    spw_kw_i8(&body, 0);
    spw_kw_i32(&body, 1);
    spw_kw_str(&body, topic, (int32_t)strlen(topic));
    spw_kw_i32(&body, 1);
    spw_kw_i32(&body, 0);
    spw_kw_i64(&body, off);
    spw_kw_i32(&body, max_bytes);
    kreq_send(fd, 1, 4, corr, &body);
    spw_buf_fini(&body);
}

static void fetch_send(int fd, int32_t corr, const char *topic, int64_t off, int32_t max_wait, int32_t min_bytes)
{
    fetch_send_max(fd, corr, topic, off, max_wait, min_bytes, 1 << 20);
}

/* Reads a Fetch v4 answer of one partition: its records (counted over its
 * batches), *hw the high watermark, *rlen the records' bytes, *vals their
 * bytes (malloc'ed, to search values in). */
static int fetch_read(int fd, int32_t corr, int64_t *hw, size_t *rlen, char **vals)
{
    size_t n;
    uint8_t *a = kresp_read(fd, &n);
    spw_kr r;
    spw_kr_init(&r, a, n);
    CHECK_EQ(spw_kr_i32(&r), corr);
    CHECK_EQ(spw_kr_i32(&r), 0); /* throttle */
    CHECK_EQ(spw_kr_i32(&r), 1);
    const char *name;
    int32_t nl;
    spw_kr_str(&r, &name, &nl);
    CHECK_EQ(spw_kr_i32(&r), 1);
    CHECK_EQ(spw_kr_i32(&r), 0);
    CHECK_EQ(spw_kr_i16(&r), 0);
    *hw = spw_kr_i64(&r);
    (void)spw_kr_i64(&r);           /* last stable offset */
    CHECK_EQ(spw_kr_i32(&r), 0); /* aborted transactions */
    const uint8_t *b;
    int32_t bl;
    spw_kr_bytes(&r, &b, &bl);
    CHECK(!r.bad && spw_kr_left(&r) == 0);
    int count = 0;
    for (int32_t at = 0; at + 61 <= bl;) {
        int32_t blen = (int32_t)((uint32_t)b[at + 8] << 24 | (uint32_t)b[at + 9] << 16 | (uint32_t)b[at + 10] << 8 |
                                 b[at + 11]);
        count += (int)((uint32_t)b[at + 57] << 24 | (uint32_t)b[at + 58] << 16 | (uint32_t)b[at + 59] << 8 |
                       b[at + 60]);
        at += 12 + blen;
        CHECK(at <= bl);
    }
    *rlen = bl > 0 ? (size_t)bl : 0;
    *vals = malloc(*rlen + 1);
    memcpy(*vals, b, *rlen);
    (*vals)[*rlen] = 0;
    for (size_t i = 0; i < *rlen; i++)
        if (!(*vals)[i])
            (*vals)[i] = ' '; /* strstr over the bytes */
    free(a);
    return count;
}

static int readable(int fd, int ms)
{
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    return poll(&pf, 1, ms);
}

static void test_fetch_wait(const srv *s)
{
    int fd = tcp_connect(s->kafkaport), fa = tcp_connect(s->kafkaport);
    int16_t err;
    int32_t throttle;
    CHECK_EQ(produce_to(fd, "fw", 1, -1, 0, 1, &err, &throttle), 0);
    CHECK_EQ(err, 0);
    /* A Fetch at the end with 60 s to wait: the produce's record wakes it.
     * The alarm fails the test if only the deadline would answer it. */
    alarm(30);
    fetch_send(fa, 2, "fw", 1, 60000, 1);
    CHECK_EQ(readable(fa, 300), 0); /* nothing yet: it waits */
    CHECK_EQ(produce_to(fd, "fw", 3, -1, 1, 1, &err, &throttle), 1);
    int64_t hw;
    size_t one;
    char *vals;
    CHECK_EQ(fetch_read(fa, 2, &hw, &one, &vals), 1);
    CHECK_EQ(hw, 2);
    CHECK(strstr(vals, "seq1-0") != NULL);
    free(vals);
    /* min_bytes one byte over one record's batch: one record is not
     * enough, two are. */
    fetch_send(fa, 4, "fw", 2, 60000, (int32_t)one + 1);
    CHECK_EQ(produce_to(fd, "fw", 5, -1, 2, 1, &err, &throttle), 2);
    CHECK_EQ(readable(fa, 500), 0); /* one record (durable by now at acks -1): still waiting */
    CHECK_EQ(produce_to(fd, "fw", 6, -1, 3, 1, &err, &throttle), 3);
    size_t two;
    CHECK_EQ(fetch_read(fa, 4, &hw, &two, &vals), 2);
    CHECK_EQ(hw, 4);
    CHECK(two > one && strstr(vals, "seq2-0") != NULL && strstr(vals, "seq3-0") != NULL);
    free(vals);
    /* Answers over 64 KiB (handed to the connection without a copy when
     * nothing is unsent before them, appended when something is): two
     * Fetches in one write, both of the 4000 records after offset 4. */
    CHECK_EQ(produce_to(fd, "fw", 7, -1, 4, 4000, &err, &throttle), 4);
    fetch_send(fa, 8, "fw", 4, 60000, 1);
    fetch_send(fa, 9, "fw", 4, 60000, 1);
    size_t big;
    for (int32_t corr = 8; corr <= 9; corr++) {
        CHECK_EQ(fetch_read(fa, corr, &hw, &big, &vals), 4000);
        CHECK_EQ(hw, 4004);
        CHECK(big > (64u << 10) && strstr(vals, "seq4-0") != NULL && strstr(vals, "seq4-3999") != NULL);
        free(vals);
    }
    alarm(0);
    close(fa);
    close(fd);
}

/* The server's minor page faults so far (/proc/PID/stat, field 10). */
static unsigned long long minor_faults(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *p = strrchr(buf, ')'); /* after the command name */
    CHECK(p != NULL);
    unsigned long long v = 0;
    CHECK_EQ(sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %llu", &v), 1); /* state .. flags, minflt */
    return v;
}

/* Large Fetch answers are built in the loop's spare buffer, the last
 * large answer's once written (kafka_int.h, kloop.spare): 16 Fetches of
 * the same 4 MiB (1024 pages) of records fault in far fewer pages than
 * one answer's worth, where a new buffer each time (32 MiB of address
 * space for a Fetch of max_bytes 16 MiB) faulted in every page it wrote,
 * each time. */
static void test_fetch_reuse(const srv *s)
{
    int fd = tcp_connect(s->kafkaport);
    static uint8_t v[1000];
    memset(v, 'r', sizeof v);
    spw_buf batch = SPW_BUF_INIT;
    for (int32_t corr = 1; corr <= 4; corr++) { /* 4 x 1000 records of 1000 bytes */
        spw_kbatch_w w;
        batch.len = 0;
        CHECK_EQ(spw_kbatch_begin(&batch, &w, 0, TS0), 0);
        for (int i = 0; i < 1000; i++)
            CHECK_EQ(spw_kbatch_add(&batch, &w, i, TS0, NULL, -1, v, (int32_t)sizeof v, NULL, 0, 0), 0);
        spw_kbatch_end(&batch, &w);
        int16_t err;
        int32_t throttle;
        CHECK_EQ(produce_batch(fd, "fr", corr, &batch, &err, &throttle), (int64_t)(corr - 1) * 1000);
        CHECK_EQ(err, 0);
    }
    spw_buf_fini(&batch);
    int64_t hw;
    size_t got;
    char *vals;
    fetch_send_max(fd, 10, "fr", 0, 1000, 1, 16 << 20); /* the first: its buffer becomes the spare */
    CHECK_EQ(fetch_read(fd, 10, &hw, &got, &vals), 4000);
    CHECK(got > 4000u * 1000u);
    free(vals);
    unsigned long long f0 = minor_faults(s->pid);
    for (int32_t corr = 11; corr <= 26; corr++) {
        fetch_send_max(fd, corr, "fr", 0, 1000, 1, 16 << 20);
        size_t again;
        CHECK_EQ(fetch_read(fd, corr, &hw, &again, &vals), 4000);
        CHECK_EQ(again, got);
        CHECK_EQ(hw, 4000);
        free(vals);
    }
    unsigned long long faults = minor_faults(s->pid) - f0;
    printf("test_fetch_reuse: 16 Fetches of %zu bytes: %llu minor faults in the server\n", got, faults);
    CHECK(faults < 512);
    close(fd);
}

static void test_raw(const srv *s)
{
    int fd = tcp_connect(s->kafkaport);
    size_t n;
    /* DescribeGroups (not served): error 35, and the connection goes on. */
    spw_buf body = SPW_BUF_INIT;
    spw_kw_i32(&body, 1);
    spw_kw_str(&body, "g", 1);
    kreq_send(fd, 15, 0, 41, &body);
    uint8_t *a = kresp_read(fd, &n);
    CHECK(n >= 6);
    CHECK(a[0] == 0 && a[1] == 0 && a[2] == 0 && a[3] == 41);
    CHECK(a[4] == 0 && a[5] == 35);
    free(a);
    /* ApiVersions v9 (not served): error 35 and the versions served. */
    kreq_send(fd, 18, 9, 42, NULL);
    a = kresp_read(fd, &n);
    CHECK(n >= 10 && a[3] == 42 && a[5] == 35);
    free(a);
    /* ApiVersions v0: Produce 3..8 among them. */
    kreq_send(fd, 18, 0, 43, NULL);
    a = kresp_read(fd, &n);
    spw_kr r;
    spw_kr_init(&r, a, n);
    CHECK_EQ(spw_kr_i32(&r), 43);
    CHECK_EQ(spw_kr_i16(&r), 0);
    int32_t na = spw_kr_i32(&r);
    int found = 0;
    for (int32_t i = 0; i < na; i++) {
        int16_t k = spw_kr_i16(&r), mn = spw_kr_i16(&r), mx = spw_kr_i16(&r);
        if (k == 0 && mn == 3 && mx == 8)
            found = 1;
    }
    CHECK(!r.bad && found);
    free(a);

    /* InitProducerId, then one idempotent batch sent twice: stored once. */
    body.len = 0;
    spw_kw_str(&body, NULL, -1);
    spw_kw_i32(&body, 60000);
    kreq_send(fd, 22, 1, 44, &body);
    a = kresp_read(fd, &n);
    spw_kr_init(&r, a, n);
    CHECK_EQ(spw_kr_i32(&r), 44);
    (void)spw_kr_i32(&r);
    CHECK_EQ(spw_kr_i16(&r), 0);
    int64_t pid = spw_kr_i64(&r);
    CHECK(!r.bad && pid > 0);
    free(a);
    int16_t err;
    int64_t o1 = produce_raw(fd, 45, pid, 0, 3, &err);
    CHECK_EQ(err, 0);
    int64_t o2 = produce_raw(fd, 46, pid, 0, 3, &err);
    CHECK_EQ(err, 0);
    CHECK_EQ(o2, o1);
    int64_t o3 = produce_raw(fd, 47, pid, 3, 2, &err);
    CHECK_EQ(err, 0);
    CHECK_EQ(o3, o1 + 3);
    char *h = http_read(s->port, "raw", 0);
    CHECK_EQ(count_lines(h, "\"offset\":"), 5);
    free(h);

    /* Admission: past a stream's rate limit a partition is refused with
     * the retriable 19 and the service's retry-after as throttle time,
     * nothing stored. */
    CHECK_EQ(req_status(s->port, "PUT", "/v1/streams/slow",
                        "{\"partitions\":2,\"format\":\"bytes\",\"rate_limit\":{\"rate\":1,\"burst\":3}}"),
             201);
    int32_t throttle;
    (void)produce_to(fd, "slow", 48, -1, -1, 3, &err, &throttle);
    CHECK_EQ(err, 0);
    CHECK_EQ(throttle, 0);
    (void)produce_to(fd, "slow", 49, -1, -1, 3, &err, &throttle);
    CHECK_EQ(err, 19);
    CHECK(throttle > 0);
    h = http_read(s->port, "slow", 0);
    CHECK_EQ(count_lines(h, "\"offset\":"), 3);
    free(h);
    spw_buf_fini(&body);
    close(fd);
}

/* Hostile bodies: for every API and version served (but JoinGroup and
 * SyncGroup, which may rightly wait for other members), requests whose
 * body is random bytes of random length, or a valid-looking prefix cut
 * short, each answered with its correlation id on a connection that stays
 * open; the server still answers ApiVersions afterwards. */
static void test_garbage(const srv *s)
{
    static const int16_t apis[][3] = {{0, 3, 8}, {1, 4, 11}, {2, 1, 5}, {3, 0, 8}, {18, 0, 3}, {22, 0, 1},
                                      {10, 0, 2}, {12, 0, 3}, {13, 0, 2}, {8, 0, 7}, {9, 1, 5}, {19, 0, 4},
                                      {17, 0, 1}, {36, 0, 1}};
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int fd = tcp_connect(s->kafkaport);
    int32_t corr = 1000;
    for (size_t a = 0; a < sizeof apis / sizeof apis[0]; a++) {
        for (int16_t v = apis[a][1]; v <= apis[a][2]; v++) {
            for (int k = 0; k < 12; k++) {
                spw_buf body = SPW_BUF_INIT;
                size_t len = (size_t)(rng % 160);
                for (size_t i = 0; i < len; i++) {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    uint8_t b = (uint8_t)rng;
                    if (k % 3 == 0 && i < 8)
                        b = (uint8_t)(i == 3 ? 1 : 0); /* small counts first: deeper into the decoders */
                    spw_buf_put(&body, &b, 1);
                }
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                if (apis[a][0] == 17 && v == 0 && k % 2 == 0)
                    continue; /* a v0 handshake would turn the next frame into a bare SASL message */
                if (apis[a][0] == 17 && v == 0)
                    body.len = 0; /* an empty mechanism: refused, no bare frame follows */
                kreq_send(fd, apis[a][0], v, ++corr, &body);
                spw_buf_fini(&body);
                size_t n;
                uint8_t *ans = kresp_read(fd, &n);
                CHECK(n >= 4);
                spw_kr r;
                spw_kr_init(&r, ans, n);
                CHECK_EQ(spw_kr_i32(&r), corr);
                free(ans);
            }
        }
    }
    /* A Produce whose topic has a null partition array. */
    spw_buf body = SPW_BUF_INIT;
    spw_kw_str(&body, NULL, -1);
    spw_kw_i16(&body, 1);
    spw_kw_i32(&body, 1000);
    spw_kw_i32(&body, 1);
    spw_kw_str(&body, "raw", 3);
    spw_kw_i32(&body, -1);
    kreq_send(fd, 0, 7, ++corr, &body);
    spw_buf_fini(&body);
    size_t n;
    uint8_t *ans = kresp_read(fd, &n);
    CHECK(n >= 8 && ans[3] == (uint8_t)corr);
    free(ans);
    kreq_send(fd, 18, 0, ++corr, NULL);
    ans = kresp_read(fd, &n);
    CHECK(n >= 6 && ans[4] == 0 && ans[5] == 0);
    free(ans);
    close(fd);
    CHECK_EQ(req_status(s->port, "GET", "/healthz", NULL), 200);
}

/* CreateTopics v1 of one topic: its error code. */
static int16_t create_topic(int fd, int32_t corr, const char *name, int32_t np, int16_t rf, int nconf, int validate)
{
    spw_buf body = SPW_BUF_INIT;
    spw_kw_i32(&body, 1);
    spw_kw_str(&body, name, (int32_t)strlen(name));
    spw_kw_i32(&body, np);
    spw_kw_i16(&body, rf);
    spw_kw_i32(&body, 0); /* assignments */
    spw_kw_i32(&body, nconf);
    for (int i = 0; i < nconf; i++) {
        spw_kw_str(&body, "retention.ms", 12);
        spw_kw_str(&body, "1000", 4);
    }
    spw_kw_i32(&body, 10000);
    spw_kw_i8(&body, (int8_t)validate);
    kreq_send(fd, 19, 1, corr, &body);
    spw_buf_fini(&body);
    size_t n;
    uint8_t *a = kresp_read(fd, &n);
    spw_kr r;
    spw_kr_init(&r, a, n);
    CHECK_EQ(spw_kr_i32(&r), corr);
    CHECK_EQ(spw_kr_i32(&r), 1);
    const char *tn;
    int32_t tl;
    spw_kr_str(&r, &tn, &tl);
    CHECK(tl == (int32_t)strlen(name) && memcmp(tn, name, (size_t)tl) == 0);
    int16_t err = spw_kr_i16(&r);
    CHECK(!r.bad);
    free(a);
    return err;
}

/* CreateTopics makes a bytes stream with the partitions asked for, and
 * refuses what it cannot honour, creating nothing then. */
static void test_create(const srv *s)
{
    int fd = tcp_connect(s->kafkaport);
    CHECK_EQ(create_topic(fd, 1, "made", 5, -1, 0, 1), 0); /* validate only */
    CHECK_EQ(req_status(s->port, "GET", "/v1/streams/made", NULL), 404);
    CHECK_EQ(create_topic(fd, 2, "made", 5, 1, 0, 0), 0);
    resp r = http_json(s->port, "GET", "/v1/streams/made", NULL);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"partitions\":5") && strstr(r.body, "\"format\":\"bytes\""));
    free(r.body);
    CHECK_EQ(create_topic(fd, 3, "made", 5, 1, 0, 0), 36);   /* exists */
    CHECK_EQ(create_topic(fd, 4, "zero", 0, 1, 0, 0), 37);   /* partitions */
    CHECK_EQ(create_topic(fd, 5, "rf3", 2, 3, 0, 0), 38);    /* replication factor */
    CHECK_EQ(create_topic(fd, 6, "conf", 2, 1, 1, 0), 40);   /* configs */
    CHECK_EQ(create_topic(fd, 7, "bad/name", 2, 1, 0, 0), 17);
    CHECK_EQ(req_status(s->port, "GET", "/v1/streams/zero", NULL), 404);
    CHECK_EQ(req_status(s->port, "GET", "/v1/streams/rf3", NULL), 404);
    CHECK_EQ(req_status(s->port, "GET", "/v1/streams/conf", NULL), 404);
    close(fd);
    char *md = run("timeout 30 kcat -b 127.0.0.1:%d -L -t made 2>&1", s->kafkaport);
    CHECK(strstr(md, "topic \"made\" with 5 partitions") != NULL);
    free(md);
    /* Without kafka-auto-create, naming a topic creates nothing. */
    free(run("timeout 20 kcat -b 127.0.0.1:%d -m 3 -L -t nothere 2>&1; true", s->kafkaport));
    CHECK_EQ(req_status(s->port, "GET", "/v1/streams/nothere", NULL), 404);
}

/* With a tokens file: SASL/PLAIN with tenant = user, token = password;
 * nothing without it, a wrong password refused, permissions applied. */
static void test_sasl(const char *dir)
{
    char tokens[4200], sub[4200];
    snprintf(tokens, sizeof tokens, "%s/tokens.json", dir);
    FILE *f = fopen(tokens, "w");
    CHECK(f != NULL);
    fputs("{\"tokens\": [\n"
          "  {\"token\": \"adm1n-t0ken\", \"tenant\": \"ops\", \"streams\": [\"*\"], "
          "\"permissions\": [\"produce\", \"consume\", \"admin\"]},\n"
          "  {\"token\": \"acme-t0ken\", \"tenant\": \"acme\", \"streams\": [\"orders\"], "
          "\"permissions\": [\"produce\", \"consume\"]}\n"
          "]}\n",
          f);
    fclose(f);
    snprintf(sub, sizeof sub, "%s/sasl", dir);
    srv s;
    const char *extra[] = {"--listen-kafka", "127.0.0.1:0", "--fsync-interval", "20ms", "--tokens-file", tokens,
                           "--kafka-auto-create", NULL};
    srv_start(&s, BIN, sub, extra);
    resp r = http_ex(s.port, "PUT", "/v1/streams/orders", "application/json", "Authorization: Bearer adm1n-t0ken\r\n",
                     "{\"partitions\":2,\"format\":\"bytes\"}", 33);
    CHECK_EQ(r.status, 201);
    free(r.body);
    r = http_ex(s.port, "PUT", "/v1/streams/secret", "application/json", "Authorization: Bearer adm1n-t0ken\r\n",
                "{\"partitions\":1,\"format\":\"bytes\"}", 33);
    CHECK_EQ(r.status, 201);
    free(r.body);
    const char *sasl = "-X security.protocol=SASL_PLAINTEXT -X sasl.mechanisms=PLAIN";
    /* acme sees only orders; produces and reads it back. */
    char *md = run("timeout 30 kcat -b 127.0.0.1:%d %s -X sasl.username=acme -X sasl.password=acme-t0ken -L 2>&1",
                   s.kafkaport, sasl);
    CHECK(strstr(md, "topic \"orders\" with 2 partitions") != NULL);
    CHECK(strstr(md, "secret") == NULL);
    free(md);
    free(run("printf 'a|one\\nb|two\\n' | timeout 30 kcat -b 127.0.0.1:%d %s -X sasl.username=acme "
             "-X sasl.password=acme-t0ken -P -t orders -p 0 -K'|' 2>&1",
             s.kafkaport, sasl));
    char *got = run("timeout 30 kcat -b 127.0.0.1:%d %s -X sasl.username=acme -X sasl.password=acme-t0ken -C -t orders "
                    "-p 0 -o beginning -e -f '%%k=%%s\\n' 2>/dev/null",
                    s.kafkaport, sasl);
    CHECK(strstr(got, "a=one\nb=two\n") != NULL);
    free(got);
    /* A wrong password, a user that is not the token's tenant, no SASL at all. */
    got = run("timeout 20 kcat -b 127.0.0.1:%d %s -X sasl.username=acme -X sasl.password=wrong -m 5 -L 2>&1; true",
              s.kafkaport, sasl);
    CHECK(strstr(got, "topic \"orders\"") == NULL);
    free(got);
    got = run("timeout 20 kcat -b 127.0.0.1:%d %s -X sasl.username=ops -X sasl.password=acme-t0ken -m 5 -L 2>&1; true",
              s.kafkaport, sasl);
    CHECK(strstr(got, "topic \"orders\"") == NULL);
    free(got);
    got = run("timeout 20 kcat -b 127.0.0.1:%d -m 5 -L 2>&1; true", s.kafkaport);
    CHECK(strstr(got, "topic \"orders\"") == NULL);
    free(got);
    got = run("printf 'x\\n' | timeout 20 kcat -b 127.0.0.1:%d -P -t orders -p 0 2>&1; true", s.kafkaport);
    free(got);
    got = run("printf 'x\\n' | timeout 20 kcat -b 127.0.0.1:%d %s -X sasl.username=acme -X sasl.password=acme-t0ken "
              "-P -t secret -p 0 2>&1; true",
              s.kafkaport, sasl);
    CHECK(strstr(got, "uthoriz") != NULL); /* TOPIC_AUTHORIZATION_FAILED */
    free(got);
    /* kafka-auto-create: a Metadata naming a missing topic creates it, for
     * a login with admin only. */
    free(run("timeout 20 kcat -b 127.0.0.1:%d %s -X sasl.username=acme -X sasl.password=acme-t0ken -m 5 -L -t fresh "
             "2>&1; true",
             s.kafkaport, sasl));
    r = http_ex(s.port, "GET", "/v1/streams/fresh", NULL, "Authorization: Bearer adm1n-t0ken\r\n", NULL, 0);
    CHECK_EQ(r.status, 404);
    free(r.body);
    md = run("timeout 20 kcat -b 127.0.0.1:%d %s -X sasl.username=ops -X sasl.password=adm1n-t0ken -L -t fresh 2>&1",
             s.kafkaport, sasl);
    CHECK(strstr(md, "topic \"fresh\" with 4 partitions") != NULL);
    free(md);
    r = http_ex(s.port, "GET", "/v1/streams/fresh", NULL, "Authorization: Bearer adm1n-t0ken\r\n", NULL, 0);
    CHECK_EQ(r.status, 200);
    CHECK(strstr(r.body, "\"format\":\"bytes\"") != NULL);
    free(r.body);
    r = http_ex(s.port, "GET", "/v1/streams/orders/events?partition=0&offset=0", NULL,
                "Authorization: Bearer adm1n-t0ken\r\n", NULL, 0);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(count_lines(r.body, "\"offset\":"), 2); /* nothing but acme's two */
    free(r.body);
    r = http_ex(s.port, "GET", "/v1/streams/secret/events?partition=0&offset=0", NULL,
                "Authorization: Bearer adm1n-t0ken\r\n", NULL, 0);
    CHECK_EQ(r.status, 200);
    CHECK_EQ(count_lines(r.body, "\"offset\":"), 0);
    free(r.body);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    if (system("command -v kcat >/dev/null 2>&1") != 0) {
        printf("test_kafka_listener: skipped: kcat is not installed (scripts/deps.sh)\n");
        return 77;
    }
    char *dir = spw_test_tmpdir("kafka-listener");
    srv s;
    const char *extra[] = {"--listen-kafka", "127.0.0.1:0", "--fsync-interval", "20ms", NULL};
    srv_start(&s, BIN, dir, extra);
    CHECK(s.kafkaport > 0);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/orders", "{\"partitions\":3}"), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/raw", "{\"partitions\":2,\"format\":\"bytes\"}"), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/fw", "{\"partitions\":1,\"format\":\"bytes\"}"), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/fr", "{\"partitions\":1,\"format\":\"bytes\"}"), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/braw", "{\"partitions\":2,\"format\":\"bytes\"}"), 201);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/hj", "{\"partitions\":2,\"key\":\"/id\",\"timestamp\":\"/ts\"}"),
             201);
    test_kcat(&s);
    test_librdkafka(&s);
    test_raw(&s);
    test_fetch_wait(&s);
    test_fetch_reuse(&s);
    test_create(&s);
    test_garbage(&s);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    test_sasl(dir);
    spw_test_rmrf(dir);
    free(dir);
    return 0;
}
