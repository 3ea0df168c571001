/*
 * kill -9 under an idempotent Kafka producer (docs/protocol-kafka.md):
 * librdkafka with enable.idempotence=true and acks=all (ack fsync)
 * produces numbered messages to the Kafka listener; the server is killed
 * with SIGKILL twice while batches are in flight and restarted on the
 * same port each time, and the producer, never told, retries what it had
 * in flight with the same producer id and sequences. Afterwards every
 * message the client reported delivered is in the stream exactly once
 * (the retried batches were answered from the dedupe table rebuilt at
 * start, admit/dedupe.h), and no message is there twice.
 */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>

#include "integration/server.h"

#define N 30000

static const char *BIN;
static _Atomic int delivered_n, failed_n;
static unsigned char delivered[N];

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    intptr_t i = (intptr_t)m->_private;
    if (m->err) {
        atomic_fetch_add(&failed_n, 1);
    } else {
        delivered[i] = 1;
        atomic_fetch_add(&delivered_n, 1);
    }
}

static void start(srv *s, const char *dir, int kport)
{
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", kport);
    const char *extra[] = {"--listen-kafka", listen, "--fsync-interval", "20ms", NULL};
    srv_start(s, BIN, dir, extra);
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *dir = spw_test_tmpdir("kafka-kill9");
    srv s;
    start(&s, dir, 0);
    int kport = s.kafkaport;
    CHECK(kport > 0);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/ev", "{\"partitions\":4,\"format\":\"bytes\"}"), 201);

    char e[256], bs[64];
    snprintf(bs, sizeof bs, "127.0.0.1:%d", kport);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(c, "bootstrap.servers", bs, e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "enable.idempotence", "true", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "acks", "all", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "linger.ms", "2", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "batch.num.messages", "200", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "message.timeout.ms", "120000", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "log_level", "0", e, sizeof e) == RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_dr_msg_cb(c, on_dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof e);
    CHECK(rk != NULL);

    int kills = 0;
    for (int i = 0; i < N; i++) {
        char val[32];
        int vl = snprintf(val, sizeof val, "m%06d", i);
        char key[16];
        int kl = snprintf(key, sizeof key, "k%d", i % 97);
        rd_kafka_resp_err_t err;
        while ((err = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("ev"), RD_KAFKA_V_KEY(key, (size_t)kl),
                                        RD_KAFKA_V_VALUE(val, (size_t)vl), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                        RD_KAFKA_V_OPAQUE((void *)(intptr_t)i), RD_KAFKA_V_END)) ==
               RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 10);
        CHECK_EQ(err, RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_poll(rk, 0);
        /* Two kills, each once some messages are acknowledged and more are
         * in flight. */
        if (kills < 2 && i == (kills + 1) * N / 3) {
            for (int w = 0; w < 3000 && atomic_load(&delivered_n) <= kills * N / 3; w++)
                rd_kafka_poll(rk, 1);
            printf("test_kafka_kill9: kill -9 with %d of %d messages not yet acknowledged\n",
                   i + 1 - atomic_load(&delivered_n) - atomic_load(&failed_n), i + 1);
            CHECK_EQ(srv_stop(&s, SIGKILL), 128 + SIGKILL);
            kills++;
            start(&s, dir, kport);
            CHECK_EQ(s.kafkaport, kport);
        }
    }
    CHECK_EQ(rd_kafka_flush(rk, 180000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    CHECK_EQ(kills, 2);
    printf("test_kafka_kill9: %d delivered, %d failed\n", atomic_load(&delivered_n), atomic_load(&failed_n));
    CHECK(atomic_load(&delivered_n) > N / 2);

    static unsigned char count[N];
    int total = 0;
    for (int p = 0; p < 4; p++) {
        for (uint64_t off = 0;;) {
            char path[128];
            snprintf(path, sizeof path, "/v1/streams/ev/events?partition=%d&offset=%llu&limit=5000", p,
                     (unsigned long long)off);
            resp r = http_json(s.port, "GET", path, NULL);
            CHECK_EQ(r.status, 200);
            int got = 0;
            for (const char *q = r.body; (q = strstr(q, "\"value\":\"")); q++) {
                /* bytes values are base64: "m" + 6 digits is 7 bytes; decode the digits */
                const char *v = q + 9;
                static const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
                unsigned char raw[16];
                int rn = 0;
                uint32_t acc = 0;
                int bits = 0;
                for (; *v && *v != '"' && *v != '=' && rn < 15; v++) {
                    const char *d = strchr(b64, *v);
                    CHECK(d != NULL);
                    acc = acc << 6 | (uint32_t)(d - b64);
                    bits += 6;
                    if (bits >= 8) {
                        raw[rn++] = (unsigned char)(acc >> (bits - 8));
                        bits -= 8;
                    }
                }
                CHECK(rn == 7 && raw[0] == 'm');
                raw[7] = 0;
                int id = atoi((const char *)raw + 1);
                CHECK(id >= 0 && id < N);
                count[id]++;
                got++;
                total++;
            }
            free(r.body);
            if (got == 0)
                break;
            off += (uint64_t)got;
        }
    }
    int missing = 0, twice = 0;
    for (int i = 0; i < N; i++) {
        if (delivered[i] && count[i] == 0)
            missing++;
        if (count[i] > 1)
            twice++;
    }
    printf("test_kafka_kill9: %d records stored, %d delivered missing, %d stored twice\n", total, missing, twice);
    CHECK_EQ(missing, 0);
    CHECK_EQ(twice, 0);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    return 0;
}
