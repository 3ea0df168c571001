/*
 * Kafka consumer groups against the Kafka listener (docs/protocol-kafka.md
 * "Consumer groups"): three librdkafka high-level consumers in one group
 * (subscribe; client-side assignment; FindCoordinator, JoinGroup,
 * SyncGroup, Heartbeat, OffsetCommit, OffsetFetch, LeaveGroup) share a
 * 6-partition stream; once all three hold partitions one leaves, the
 * other two take its partitions over and every message is consumed; the
 * group's committed offsets are the consumer-group store's, read back over
 * HTTP at the partitions' ends; a new member of the group starts from
 * them (nothing is read again).
 */
#include <librdkafka/rdkafka.h>

#include "server.h"

#define NPART 6
#define N1 3000
#define N2 600

static const char *BIN;

static rd_kafka_t *consumer(int kport, const char *group)
{
    char e[256], bs[64];
    snprintf(bs, sizeof bs, "127.0.0.1:%d", kport);
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    CHECK(rd_kafka_conf_set(c, "bootstrap.servers", bs, e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "group.id", group, e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "auto.offset.reset", "earliest", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "session.timeout.ms", "6000", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "heartbeat.interval.ms", "300", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "auto.commit.interval.ms", "200", e, sizeof e) == RD_KAFKA_CONF_OK);
    CHECK(rd_kafka_conf_set(c, "log_level", getenv("KDEBUG") ? "7" : "3", e, sizeof e) == RD_KAFKA_CONF_OK);
    if (getenv("KDEBUG"))
        CHECK(rd_kafka_conf_set(c, "debug", getenv("KDEBUG"), e, sizeof e) == RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e);
    CHECK(rk != NULL);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(t, "cg", RD_KAFKA_PARTITION_UA);
    CHECK_EQ(rd_kafka_subscribe(rk, t), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(t);
    return rk;
}

static int assigned(rd_kafka_t *rk, int *parts)
{
    rd_kafka_topic_partition_list_t *a = NULL;
    if (rd_kafka_assignment(rk, &a) != RD_KAFKA_RESP_ERR_NO_ERROR || !a)
        return 0;
    int n = a->cnt;
    for (int i = 0; parts && i < a->cnt; i++)
        parts[a->elems[i].partition]++;
    rd_kafka_topic_partition_list_destroy(a);
    return n;
}

static int seen[N1 + N2];
static int consumed, dups;

/* Takes what each consumer has queued (up to 500 messages each, without
 * waiting); when none had anything, waits up to 50 ms on each. Returns
 * messages taken. The loops below are bounded by rounds that took
 * nothing (2000: 100 s at least), never by time alone. */
static int take(rd_kafka_t *rk, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, timeout_ms);
    if (!m)
        return 0;
    int got = 0;
    if (!m->err && m->len > 0) {
        char txt[128];
        size_t l = m->len < sizeof txt - 1 ? m->len : sizeof txt - 1;
        memcpy(txt, m->payload, l);
        txt[l] = 0;
        const char *vp = strstr(txt, "\"v\":");
        CHECK(vp != NULL);
        int v = atoi(vp + 4);
        CHECK(v >= 0 && v < N1 + N2);
        if (seen[v]++)
            dups++;
        else
            consumed++;
        got = 1;
    }
    rd_kafka_message_destroy(m);
    return got;
}

static int poll_all(rd_kafka_t **c, int n)
{
    int got = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; c[i] && k < 500 && take(c[i], 0); k++)
            got++;
    if (got)
        return got;
    for (int i = 0; i < n; i++)
        if (c[i])
            got += take(c[i], 50);
    return got;
}

static void produce(int port, int from, int to)
{
    char *body = malloc(64 * (size_t)(to - from) + 16);
    size_t n = 0;
    for (int i = from; i < to; i++)
        n += (size_t)sprintf(body + n, "{\"k\":\"key-%d\",\"v\":%d}\n", i % 50, i);
    resp r = http(port, "POST", "/v1/streams/cg/events", "application/x-ndjson", body, n);
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(body);
}

/* Committed offsets over HTTP: every partition's committed == end. */
static int committed_at_end(int port, const char *group)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/streams/cg/groups/%s", group);
    resp r = http_json(port, "GET", path, NULL);
    int ok = r.status == 200 && strstr(r.body, "\"lag\":0}") != NULL;
    for (int p = 0; ok && p < NPART; p++) {
        char pat[64];
        snprintf(pat, sizeof pat, "{\"partition\":%d,\"committed\":", p);
        const char *q = strstr(r.body, pat);
        ok = q && atoll(q + strlen(pat)) > 0;
    }
    if (!ok)
        fprintf(stderr, "group %s: %d %s\n", group, r.status, r.body);
    free(r.body);
    return ok;
}

int main(int argc, char **argv)
{
    CHECK(argc >= 2);
    BIN = argv[1];
    char *dir = spw_test_tmpdir("kafka-groups");
    srv s;
    const char *extra[] = {"--listen-kafka", "127.0.0.1:0", "--fsync-interval", "20ms", NULL};
    srv_start(&s, BIN, dir, extra);
    CHECK(s.kafkaport > 0);
    CHECK_EQ(req_status(s.port, "PUT", "/v1/streams/cg", "{\"partitions\":6,\"key\":\"/k\"}"), 201);

    rd_kafka_t *c[3];
    for (int i = 0; i < 3; i++)
        c[i] = consumer(s.kafkaport, "order-writers");
    /* 1. all three hold partitions. */
    int all3 = 0;
    for (int idle = 0; idle < 2000 && !all3;) {
        if (!poll_all(c, 3))
            idle++;
        int parts[NPART] = {0};
        int a0 = assigned(c[0], parts), a1 = assigned(c[1], parts), a2 = assigned(c[2], parts);
        int each_once = 1;
        for (int p = 0; p < NPART; p++)
            each_once &= parts[p] == 1;
        all3 = a0 > 0 && a1 > 0 && a2 > 0 && each_once;
    }
    CHECK(all3);
    /* Messages for all three; a third of them consumed before one leaves. */
    produce(s.port, 0, N1);
    for (int idle = 0; idle < 2000 && consumed < N1 / 3;)
        if (!poll_all(c, 3))
            idle++;
    CHECK(consumed >= N1 / 3);
    if (getenv("KDEBUG"))
        fprintf(stderr, "PHASE %s consumed %d at %ld\n", "2.", consumed, (long)time(NULL));
    /* 2. one leaves (commits, LeaveGroup); the two left take over all six. */
    CHECK_EQ(rd_kafka_consumer_close(c[2]), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(c[2]);
    c[2] = NULL;
    int two = 0;
    for (int idle = 0; idle < 2000 && (!two || consumed < N1);) {
        if (!poll_all(c, 2))
            idle++;
        int parts[NPART] = {0};
        int a0 = assigned(c[0], parts), a1 = assigned(c[1], parts);
        int each_once = 1;
        for (int p = 0; p < NPART; p++)
            each_once &= parts[p] == 1;
        two = a0 > 0 && a1 > 0 && each_once;
    }
    CHECK(two);
    CHECK_EQ(consumed, N1);
    if (getenv("KDEBUG"))
        fprintf(stderr, "PHASE %s consumed %d at %ld\n", "3.", consumed, (long)time(NULL));
    /* 3. more messages, consumed by the two. */
    produce(s.port, N1, N1 + N2);
    for (int idle = 0; idle < 2000 && consumed < N1 + N2;)
        if (!poll_all(c, 2))
            idle++;
    CHECK_EQ(consumed, N1 + N2);
    for (int i = 0; i < 2; i++) {
        CHECK_EQ(rd_kafka_consumer_close(c[i]), RD_KAFKA_RESP_ERR_NO_ERROR);
        rd_kafka_destroy(c[i]);
    }
    if (getenv("KDEBUG"))
        fprintf(stderr, "PHASE %s consumed %d at %ld\n", "4.", consumed, (long)time(NULL));
    /* 4. the committed offsets are the group store's, at the ends. */
    CHECK(committed_at_end(s.port, "order-writers"));
    if (getenv("KDEBUG"))
        fprintf(stderr, "PHASE %s consumed %d at %ld\n", "5.", consumed, (long)time(NULL));
    /* 5. a new member starts from them: nothing read again. */
    int before = consumed + dups;
    rd_kafka_t *d[1] = {consumer(s.kafkaport, "order-writers")};
    for (int round = 0; round < 60 || !assigned(d[0], NULL); round++) {
        poll_all(d, 1);
        CHECK(round < 2000);
    }
    CHECK_EQ(consumed + dups, before);
    CHECK_EQ(rd_kafka_consumer_close(d[0]), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(d[0]);
    printf("test_kafka_groups: %d consumed, %d consumed again after the rebalance\n", consumed, dups);
    CHECK_EQ(srv_stop(&s, SIGTERM), 0);
    spw_test_rmrf(dir);
    free(dir);
    return 0;
}
