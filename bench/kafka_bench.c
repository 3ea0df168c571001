/*
 * The Kafka listener's throughput with librdkafka (bench/run.sh kafka,
 * docs/protocol-kafka.md): a producer of N messages (100-byte values,
 * keys over K distinct values, batches of up to 1000 messages, linger.ms
 * 5, acks=all: ack fsync) to a topic of the server at --broker, timed from
 * the first send to the last delivery report; then a consumer group of M
 * members reading all N from the beginning, for each M of --members.
 *
 * The group: M threads, each its own librdkafka consumer (its own
 * connections and fetcher thread) in one new group, subscribed to the
 * topic. The members' first assignments are held paused until the group
 * has formed (every member holds partitions, all of them assigned: a
 * Kafka broker's group.initial.rebalance.delay.ms does the same), so each
 * member reads its own partitions, not a first member everything. Only
 * messages handed to the application count, each (partition, offset) once
 * (a message delivered again after a rebalance is counted in dups= and not
 * in the rate), from the first message to the N-th distinct one: the join
 * is not in the rate. cpu_us_per_msg is this process's CPU time (every
 * librdkafka thread) over the same span, divided by N.
 *
 * The consumer is set up as a Kafka user sets up a throughput consumer;
 * the settings are printed on the "consumer" line: fetch.max.bytes = the
 * listener's largest Fetch answer (16 MiB), max.partition.fetch.bytes 1
 * MiB (the default), fetch.wait.max.ms 100, queued.min.messages 1000000
 * (the fetcher keeps a partition's queue that full), check.crcs false
 * (the default: the TCP checksum and the server's CRC32C on the stored
 * batches), enable.partition.eof false, auto commit every 5 s (the
 * defaults), and the application takes messages in batches of up to 1000
 * with rd_kafka_consume_batch_queue (--poll single: one
 * rd_kafka_consumer_poll per message). --conf KEY=VALUE (repeated) sets
 * or overrides a consumer property.
 *
 * Prints
 *   BENCH kafka protocol=kafka ack=fsync events=N keys=K events_per_s=X errors=E
 *   BENCH kafka-consume protocol=kafka members=M events=N events_per_s=X ...
 * Usage: spw_kafka_bench --broker HOST:PORT --topic T [--events N] [--keys K]
 *                        [--phase both|produce|consume] [--members M,...]
 *                        [--poll batch|single] [--conf KEY=VALUE]...
 * --phase produce or consume runs one half only (consume reads N messages
 * already in the topic, with a new group each run): to profile the server
 * over one of them (perf stat -p on the server around the run).
 */
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_MEMBERS 16
#define MAX_PARTS 4096
#define MAX_CONF 32
#define BATCH 1000

static long delivered, failed;
static const char *conf[MAX_CONF];
static int nconf, poll_single;

/* The consumer settings of a throughput consumer (the file's comment);
 * --conf adds to them or overrides them. */
static const char *const tuned[][2] = {
    {"fetch.max.bytes", "16777216"},     {"max.partition.fetch.bytes", "1048576"},
    {"fetch.wait.max.ms", "100"},        {"queued.min.messages", "1000000"},
    {"check.crcs", "false"},             {"enable.partition.eof", "false"},
    {"enable.auto.commit", "true"},      {"auto.commit.interval.ms", "5000"},
    {"auto.offset.reset", "earliest"},
};

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

static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* One group read: shared by its members. */
typedef struct {
    const char *broker, *topic;
    char group[96];
    int members, nparts;
    long n;
    atomic_int assigned[MAX_MEMBERS]; /* partitions each member holds */
    atomic_int go;                    /* the group has formed: read */
    atomic_int fail;
    atomic_llong next[MAX_PARTS]; /* per partition: the next offset not yet counted */
    atomic_long unique, dups, errs;
    atomic_int started;
    double t_first, t_last, cpu_first, cpu_last;
} grun;

typedef struct {
    grun *g;
    int idx;
    long got; /* distinct messages this member counted */
    rd_kafka_t *rk;
} gmember;

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts,
                         void *opaque)
{
    gmember *m = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        if (!atomic_load(&m->g->go))
            rd_kafka_pause_partitions(rk, parts); /* until the group has formed */
        atomic_store(&m->g->assigned[m->idx], parts->cnt);
    } else {
        atomic_store(&m->g->assigned[m->idx], 0);
        rd_kafka_assign(rk, NULL);
    }
}

/* Every member holds partitions (as many members as partitions at most)
 * and all partitions are held. */
static int formed(grun *g)
{
    int sum = 0;
    for (int i = 0; i < g->members; i++) {
        int a = atomic_load(&g->assigned[i]);
        if (a == 0 && i < g->nparts)
            return 0;
        sum += a;
    }
    return sum == g->nparts;
}

/* Counts a delivered message once per (partition, offset). */
static void count(gmember *m, const rd_kafka_message_t *msg)
{
    grun *g = m->g;
    if (msg->err) {
        atomic_fetch_add(&g->errs, 1);
        return;
    }
    if (msg->partition < 0 || msg->partition >= MAX_PARTS)
        return;
    atomic_llong *nx = &g->next[msg->partition];
    long long cur = atomic_load_explicit(nx, memory_order_relaxed);
    while (msg->offset >= cur && !atomic_compare_exchange_weak(nx, &cur, msg->offset + 1))
        ;
    if (msg->offset < cur) {
        atomic_fetch_add(&g->dups, 1);
        return;
    }
    if (!atomic_exchange(&g->started, 1)) {
        g->t_first = now_s();
        g->cpu_first = cpu_s();
    }
    m->got++;
    if (atomic_fetch_add(&g->unique, 1) + 1 == g->n) {
        g->t_last = now_s();
        g->cpu_last = cpu_s();
    }
}

static void *member_main(void *arg)
{
    gmember *m = arg;
    grun *g = m->g;
    rd_kafka_queue_t *q = rd_kafka_queue_get_consumer(m->rk);
    rd_kafka_message_t *msgs[BATCH];
    int resumed = 0;
    double idle_since = now_s();
    long seen = 0;
    while (atomic_load(&g->unique) < g->n && !atomic_load(&g->fail)) {
        if (!resumed && atomic_load(&g->go)) {
            rd_kafka_topic_partition_list_t *a = NULL;
            if (!rd_kafka_assignment(m->rk, &a)) {
                rd_kafka_resume_partitions(m->rk, a);
                rd_kafka_topic_partition_list_destroy(a);
            }
            resumed = 1;
        }
        if (!poll_single) {
            ssize_t k = rd_kafka_consume_batch_queue(q, 100, msgs, BATCH);
            for (ssize_t i = 0; i < k; i++) {
                count(m, msgs[i]);
                rd_kafka_message_destroy(msgs[i]);
            }
        } else {
            rd_kafka_message_t *msg = rd_kafka_consumer_poll(m->rk, 100);
            if (msg) {
                count(m, msg);
                rd_kafka_message_destroy(msg);
            }
        }
        if (!atomic_load(&g->go) && formed(g))
            atomic_store(&g->go, 1);
        long u = atomic_load(&g->unique);
        if (u != seen) {
            seen = u;
            idle_since = now_s();
        } else if (now_s() - idle_since > 30) {
            fprintf(stderr, "spw_kafka_bench: group %s: nothing new for 30 s (%ld of %ld read%s)\n", g->group, u,
                    g->n, atomic_load(&g->go) ? "" : ", the group did not form");
            atomic_store(&g->fail, 1);
        }
    }
    rd_kafka_queue_destroy(q);
    return NULL;
}

/* The topic's partition count, from the broker's metadata. */
static int topic_parts(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md;
    if (rd_kafka_metadata(rk, 1, NULL, &md, 10000))
        return -1;
    int n = -1;
    for (int i = 0; i < md->topic_cnt; i++)
        if (!strcmp(md->topics[i].topic, topic) && !md->topics[i].err)
            n = md->topics[i].partition_cnt;
    rd_kafka_metadata_destroy(md);
    return n;
}

/* A group of `members` members reads the topic's n messages. */
static int consume_run(const char *broker, const char *topic, int members, long n)
{
    static grun g; /* large (per-partition counters): not on the stack */
    memset(&g, 0, sizeof g);
    g.broker = broker;
    g.topic = topic;
    g.members = members;
    g.n = n;
    snprintf(g.group, sizeof g.group, "kbench-readers-%d-%ld-%ld", members, (long)time(NULL), (long)getpid());
    gmember m[MAX_MEMBERS];
    char e[256];
    for (int i = 0; i < members; i++) {
        m[i] = (gmember){.g = &g, .idx = i};
        rd_kafka_conf_t *c = rd_kafka_conf_new();
        set(c, "bootstrap.servers", broker);
        set(c, "group.id", g.group);
        for (size_t t = 0; t < sizeof tuned / sizeof tuned[0]; t++)
            set(c, tuned[t][0], tuned[t][1]);
        for (int t = 0; t < nconf; t++) {
            char k[128];
            const char *eq = strchr(conf[t], '=');
            snprintf(k, sizeof k, "%.*s", (int)(eq - conf[t]), conf[t]);
            set(c, k, eq + 1);
        }
        rd_kafka_conf_set_rebalance_cb(c, on_rebalance);
        rd_kafka_conf_set_opaque(c, &m[i]);
        if (!(m[i].rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, e, sizeof e))) {
            fprintf(stderr, "spw_kafka_bench: %s\n", e);
            return 1;
        }
        rd_kafka_poll_set_consumer(m[i].rk);
    }
    g.nparts = topic_parts(m[0].rk, topic);
    if (g.nparts <= 0 || g.nparts > MAX_PARTS) {
        fprintf(stderr, "spw_kafka_bench: topic %s: no partitions in the metadata\n", topic);
        return 1;
    }
    pthread_t th[MAX_MEMBERS];
    for (int i = 0; i < members; i++) {
        rd_kafka_topic_partition_list_t *t = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(t, topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_subscribe(m[i].rk, t);
        rd_kafka_topic_partition_list_destroy(t);
    }
    for (int i = 0; i < members; i++)
        pthread_create(&th[i], NULL, member_main, &m[i]);
    for (int i = 0; i < members; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < members; i++) {
        rd_kafka_consumer_close(m[i].rk);
        rd_kafka_destroy(m[i].rk);
    }
    long got = atomic_load(&g.unique);
    double span = got == n && n > 1 ? g.t_last - g.t_first : 0;
    printf("consumer: %s", poll_single ? "rd_kafka_consumer_poll" : "rd_kafka_consume_batch_queue(1000)");
    for (size_t t = 0; t < sizeof tuned / sizeof tuned[0]; t++)
        printf(" %s=%s", tuned[t][0], tuned[t][1]);
    for (int t = 0; t < nconf; t++)
        printf(" %s", conf[t]);
    printf("\nconsumed %ld of %ld in %.2f s by %d member(s) of group %s\n", got, n, span, members, g.group);
    printf("BENCH kafka-consume protocol=kafka members=%d partitions=%d events=%ld events_per_s=%.0f "
           "cpu_us_per_msg=%.3f dups=%ld errors=%ld per_member=",
           members, g.nparts, got, span > 0 ? (double)got / span : 0.0,
           span > 0 ? (g.cpu_last - g.cpu_first) * 1e6 / (double)got : 0.0, atomic_load(&g.dups),
           atomic_load(&g.errs));
    for (int i = 0; i < members; i++)
        printf("%s%ld", i ? "/" : "", m[i].got);
    printf("\n");
    fflush(stdout);
    return got == n ? 0 : 1;
}

int main(int argc, char **argv)
{
    const char *broker = NULL, *topic = "kbench";
    const char *phase = "both", *members = "1";
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
        else if (!strcmp(argv[i], "--members"))
            members = argv[i + 1];
        else if (!strcmp(argv[i], "--poll") && (!strcmp(argv[i + 1], "batch") || !strcmp(argv[i + 1], "single")))
            poll_single = !strcmp(argv[i + 1], "single");
        else if (!strcmp(argv[i], "--conf") && strchr(argv[i + 1], '=') && nconf < MAX_CONF)
            conf[nconf++] = argv[i + 1];
        else {
            fprintf(stderr, "spw_kafka_bench: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    int produce = !strcmp(phase, "both") || !strcmp(phase, "produce");
    int consume = !strcmp(phase, "both") || !strcmp(phase, "consume");
    if (!broker || n <= 0 || keys <= 0 || (!produce && !consume)) {
        fprintf(stderr, "usage: spw_kafka_bench --broker HOST:PORT [--topic T] [--events N] [--keys K] "
                        "[--phase both|produce|consume] [--members M[,M...]] [--poll batch|single] "
                        "[--conf KEY=VALUE]...\n");
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
    for (const char *m = members; *m;) {
        char *end;
        long k = strtol(m, &end, 10);
        if (k < 1 || k > MAX_MEMBERS || (*end && *end != ',')) {
            fprintf(stderr, "spw_kafka_bench: --members: counts 1..%d separated by commas\n", MAX_MEMBERS);
            return 2;
        }
        if (consume_run(broker, topic, (int)k, delivered))
            return 1;
        m = *end ? end + 1 : end;
    }
    return failed == 0 ? 0 : 1;
}
