/*
 * The Kafka listener's throughput with librdkafka (bench/run.sh kafka,
 * docs/protocol-kafka.md): a producer of N messages (100-byte values,
 * keys over K distinct values, batches of up to 1000 messages, linger.ms
 * 5, acks=all: ack fsync) to a topic of the server at --broker, timed from
 * the first send to the last delivery report; then one consumer-group
 * member reading all N from the beginning. Prints
 *   BENCH kafka protocol=kafka ack=fsync events=N keys=K events_per_s=X errors=E
 *   BENCH kafka-consume protocol=kafka events=N events_per_s=X
 * Usage: spw_kafka_bench --broker HOST:PORT --topic T [--events N] [--keys K]
 *                        [--phase both|produce|consume]
 * --phase produce or consume runs one half only (consume reads N messages
 * already in the topic, with a new group each run): to profile the server
 * over one of them (perf stat -p on the server around the run).
 */
#include <librdkafka/rdkafka.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static long delivered, failed;

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err)
        failed++;
    else
        delivered++;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static void set(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char e[256];
    if (rd_kafka_conf_set(c, k, v, e, sizeof e) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "spw_kafka_bench: %s=%s: %s\n", k, v, e);
        exit(2);
    }
}

int main(int argc, char **argv)
{
    const char *broker = NULL, *topic = "kbench";
    const char *phase = "both";
    long n = 1000000, keys = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--broker"))
            broker = argv[i + 1];
        else if (!strcmp(argv[i], "--topic"))
            topic = argv[i + 1];
        else if (!strcmp(argv[i], "--events"))
            n = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--keys"))
            keys = atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--phase"))
            phase = argv[i + 1];
        else {
            fprintf(stderr, "spw_kafka_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    int produce = !strcmp(phase, "both") || !strcmp(phase, "produce");
    int consume = !strcmp(phase, "both") || !strcmp(phase, "consume");
    if (!broker || n <= 0 || keys <= 0 || (!produce && !consume)) {
        fprintf(stderr, "usage: spw_kafka_bench --broker HOST:PORT [--topic T] [--events N] [--keys K] "
                        "[--phase both|produce|consume]\n");
        return 2;
    }
    char e[256];
    rd_kafka_conf_t *c;
    if (!produce) {
        delivered = n;
        goto consume;
    }
    c = rd_kafka_conf_new();
    set(c, "bootstrap.servers", broker);
    set(c, "acks", "all");
    set(c, "linger.ms", "5");
    set(c, "batch.num.messages", "1000");
    set(c, "queue.buffering.max.messages", "1000000");
    rd_kafka_conf_set_dr_msg_cb(c, on_dr);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof e);
    if (!rk) {
        fprintf(stderr, "spw_kafka_bench: %s\n", e);
        return 1;
    }
    char value[100];
    memset(value, 'v', sizeof value);
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        char key[24];
        int kl = snprintf(key, sizeof key, "key-%ld", i % keys);
        while (rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(key, (size_t)kl),
                                 RD_KAFKA_V_VALUE(value, sizeof value), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                 RD_KAFKA_V_END) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 1);
        if ((i & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, 600000);
    double t1 = now_s();
    rd_kafka_destroy(rk);
    printf("produced %ld in %.2f s (%ld failed)\n", delivered, t1 - t0, failed);
    printf("BENCH kafka protocol=kafka ack=fsync events=%ld keys=%ld batch=1000 linger_ms=5 size=100 "
           "events_per_s=%.0f errors=%ld\n",
           n, keys, (double)delivered / (t1 - t0), failed);
    if (!consume)
        return failed == 0 ? 0 : 1;

consume:
    c = rd_kafka_conf_new();
    set(c, "bootstrap.servers", broker);
    char gid[64];
    snprintf(gid, sizeof gid, "kbench-readers-%ld", (long)time(NULL));
    set(c, "group.id", produce ? "kbench-readers" : gid);
    set(c, "auto.offset.reset", "earliest");
    set(c, "fetch.max.bytes", "16777216");
    rd_kafka_t *ck = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
    if (!ck) {
        fprintf(stderr, "spw_kafka_bench: %s\n", e);
        return 1;
    }
    rd_kafka_poll_set_consumer(ck);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_subscribe(ck, t);
    rd_kafka_topic_partition_list_destroy(t);
    long got = 0, idle = 0;
    double c0 = 0;
    while (got < delivered && idle < 300) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(ck, 100);
        if (!m) {
            idle++;
            continue;
        }
        if (!m->err) {
            if (!got)
                c0 = now_s();
            got++;
            idle = 0;
        }
        rd_kafka_message_destroy(m);
    }
    double c1 = now_s();
    rd_kafka_consumer_close(ck);
    rd_kafka_destroy(ck);
    printf("consumed %ld in %.2f s\n", got, c1 - c0);
    printf("BENCH kafka-consume protocol=kafka events=%ld events_per_s=%.0f\n", got,
           got > 1 ? (double)got / (c1 - c0) : 0.0);
    return got == delivered && failed == 0 ? 0 : 1;
}
