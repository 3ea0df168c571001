/*
 * A reset of a consumer group that Kafka consumers use (docs/api.md
 * "Reset"): while a librdkafka consumer is a member of the Kafka group of
 * that name, POST .../groups/G/reset is refused (409 group_active naming
 * the Kafka member) and the list shows the group active; once the
 * consumer has left, the reset is applied, and a consumer that joins
 * afterwards reads from the reset offsets.
 */
#include <librdkafka/rdkafka.h>

#include "server.h"

#define N 40

static rd_kafka_t *consumer(int kport)
{
    char e[256], bs[64];
    snprintf(bs, sizeof bs, "127.0.0.1:%d", kport);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(c, "bootstrap.servers", bs, e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "group.id", "kg", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "auto.offset.reset", "earliest", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "enable.auto.commit", "false", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "session.timeout.ms", "6000", e, sizeof e) == RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
    CHECK(rk != NULL);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, "rk", RD_KAFKA_PARTITION_UA);
    CHECK_EQ(rd_kafka_subscribe(rk, t), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(t);
    return rk;
}

/* Reads until n messages came (bounded: 2000 empty polls of 50 ms). */
static int read_n(rd_kafka_t *rk, int n)
{
    int got = 0;
    for (int idle = 0; got < n && idle < 2000;) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 50);
        if (!m) {
            idle++;
            continue;
        }
        if (!m->err)
            got++;
        rd_kafka_message_destroy(m);
    }
    return got;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    char *dir = spw_test_tmpdir("kgreset");
    srv s;
    const char *extra[] = {"--listen-kafka", "127.0.0.1:0", "--fsync-interval", "20ms", NULL};
    srv_start(&s, argv[1], dir, extra);
    CHECK(s.kafkaport > 0);
    put_stream(s.port, "rk", "{\"partitions\":1}");
    char body[64 * N];
    size_t n = 0;
    for (int i = 0; i < N; i++)
        n += (size_t)sprintf(body + n, "{\"v\":%d}\n", i);
    resp r = http(s.port, "POST", "/v1/streams/rk/events", "application/x-ndjson", body, n);
    CHECK_EQ(r.status, 202);
    free(r.body);

    rd_kafka_t *rk = consumer(s.kafkaport);
    CHECK_EQ(read_n(rk, N), N);
    CHECK_EQ(rd_kafka_commit(rk, NULL, 0), RD_KAFKA_RESP_ERR_NO_ERROR); /* the group exists, at N */
    CHECK_EQ(part_field(s.port, "/v1/streams/rk/groups/kg", 0, "committed"), N);

    r = http_json(s.port, "POST", "/v1/streams/rk/groups/kg/reset", "{\"to\":\"earliest\"}");
    if (r.status != 409)
        fprintf(stderr, "reset with a Kafka member: %d %s\n", r.status, r.body);
    CHECK_EQ(r.status, 409);
    CHECK(strstr(r.body, "\"code\":\"group_active\"") && strstr(r.body, "Kafka member"));
    free(r.body);
    r = http_json(s.port, "GET", "/v1/streams/rk/groups", NULL);
    CHECK(strstr(r.body, "{\"group\":\"kg\",") && strstr(r.body, "\"active\":true"));
    free(r.body);
    CHECK_EQ(part_field(s.port, "/v1/streams/rk/groups/kg", 0, "committed"), N); /* unchanged */

    rd_kafka_consumer_close(rk); /* LeaveGroup */
    rd_kafka_destroy(rk);
    int st = 0;
    for (int i = 0; i < 500 && st != 200; i++) { /* the leave is processed by then */
        st = req_status(s.port, "POST", "/v1/streams/rk/groups/kg/reset", "{\"to\":30}");
        if (st != 200)
            usleep(10000);
    }
    CHECK_EQ(st, 200);
    CHECK_EQ(part_field(s.port, "/v1/streams/rk/groups/kg", 0, "committed"), 30);
    /* a new member starts from the reset offset: the last N - 30 records */
    rk = consumer(s.kafkaport);
    CHECK_EQ(read_n(rk, N - 30), N - 30);
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
    CHECK(m == NULL || m->err); /* nothing more */
    if (m)
        rd_kafka_message_destroy(m);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_group_reset_kafka: ok");
    return 0;
}
