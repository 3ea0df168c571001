/*
 * A reset of a consumer group that Kafka consumers use (docs/api.md
 * "Reset"): while a librdkafka consumer is a member of the Kafka group of
 * that name, POST .../groups/G/reset is refused (409 group_active naming
 * the Kafka member) and the list shows the group active; once the
 * consumer has left, the reset is applied, and a consumer that joins
 * afterwards reads from the reset offsets.
 *
 * A consumer that joins while a reset runs (held by the test build's
 * SPW_TEST_RESET_GATE after its member check, before it changes the
 * offsets) is refused, retriably, until the reset is done; it then reads
 * from the reset offsets — never from the ones the reset replaced.
 */
#include <pthread.h>
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

static int reset_port;
static int reset_status;

static void *reset_earliest(void *arg)
{
    (void)arg;
    reset_status = req_status(reset_port, "POST", "/v1/streams/rk/groups/kg/reset", "{\"to\":\"earliest\"}");
    return NULL;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 3);
    char *dir = spw_test_tmpdir("kgreset");
    char data[4200], gate[4200], waiting[4300], logp[4200];
    snprintf(data, sizeof data, "%s/data", dir);
    snprintf(gate, sizeof gate, "%s/reset-gate", dir);
    snprintf(waiting, sizeof waiting, "%s.waiting", gate);
    snprintf(logp, sizeof logp, "%s/log", dir);
    srv s;
    const char *extra[] = {"--listen-kafka", "127.0.0.1:0", "--fsync-interval", "20ms", NULL};
    setenv("SPW_TEST_RESET_GATE", gate, 1);
    srv_start_log(&s, argv[2], data, extra, logp); /* the test build: the gate */
    unsetenv("SPW_TEST_RESET_GATE");
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

    /* A join while a reset runs: held past the reset's member check. */
    int fd = open(gate, O_WRONLY | O_CREAT, 0644);
    CHECK(fd >= 0);
    close(fd);
    reset_port = s.port;
    pthread_t th;
    CHECK(pthread_create(&th, NULL, reset_earliest, NULL) == 0);
    for (int i = 0; i < 1000 && access(waiting, F_OK) != 0; i++)
        usleep(10000);
    CHECK(access(waiting, F_OK) == 0);
    rk = consumer(s.kafkaport);
    int refused = 0;
    for (int i = 0; i < 400 && !refused; i++) { /* 20 s at most: the consumer joins within a second or two */
        /* (no HTTP request here: the reset holds its I/O loop) */
        m = rd_kafka_consumer_poll(rk, 50);
        if (m)
            rd_kafka_message_destroy(m);
        refused = srv_log_has(logp, "a JoinGroup of consumer group kg waits: the group is being reset");
    }
    CHECK(refused);
    unlink(gate);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK_EQ(reset_status, 200);
    CHECK_EQ(part_field(s.port, "/v1/streams/rk/groups/kg", 0, "committed"), 0);
    CHECK_EQ(read_n(rk, N), N); /* joined after the reset: from its offsets */
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);

    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    puts("test_group_reset_kafka: ok");
    return 0;
}
