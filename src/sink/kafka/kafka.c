/*
 * The `kafka` sink: delivers a stream to a Kafka topic with librdkafka's
 * producer (docs/api.md "kafka sink").
 * Options: {"brokers":"host:port[,host:port...]","topic":"NAME",
 *           "timeout_ms":N,"properties":{"librdkafka.property":"value",...}}
 * (topic defaults to the source stream's name, timeout_ms to 10000).
 *
 * One producer per sink, kept across writes, with enable.idempotence=true
 * and acks=all (both fixed: properties may not change them). Every record
 * becomes one message: the event key is the message key (no key: a null
 * key), the value the message value, the event time the message
 * timestamp; the partition is chosen by librdkafka's default partitioner
 * ("consistent_random": CRC32 of the key, null keys spread at random)
 * unless properties.partitioner says otherwise ("murmur2_random" matches
 * the Java client). A write produces the records, flushes, and reads the
 * delivery reports (served on the sink's worker thread inside
 * rd_kafka_flush): all delivered → OK; the first undelivered record
 * failed for a reason the record itself causes (too large, invalid,
 * corrupt) → REJECT with librdkafka's error text; anything else (broker
 * down, timed out, not leader, topic missing) → RETRY. Records delivered
 * past the first failure with no undelivered record of their key before
 * them are remembered by offset and not sent again when the framework
 * writes that window again.
 *
 * Stopping (sink/sink.h, interrupt): from the stopping thread, the
 * producer's queued and in-flight messages are purged (their reports come
 * back as purged: the write answers RETRY and the records are written
 * again after the restart), so rd_kafka_flush returns at once instead of
 * waiting out timeout_ms; close then destroys the producer and its
 * threads. rk_mu guards the rk pointer against that thread.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/name.h"
#include "core/error.h"
#include "core/hash.h"
#include "core/json.h"
#include "core/msg.h"
#include "core/opts.h"
#include "sink/sink.h"

#define KFK_PROPS_MAX 64
#define KFK_PROP_MAX 512
#define PENDING INT32_MIN /* no report yet (every rd_kafka_resp_err_t is above it) */

typedef struct kfk {
    char sink[129];
    char brokers[1024];
    char topic[250];
    uint32_t timeout_ms;
    uint32_t nprops;
    char (*pk)[KFK_PROP_MAX]; /* properties: names */
    char (*pv)[KFK_PROP_MAX]; /* and values */
    rd_kafka_t *rk;       /* set and cleared under rk_mu (read freely on the worker) */
    pthread_mutex_t rk_mu;
    _Atomic int stopping; /* interrupted: writes give up */
    uint64_t gen;        /* reports of earlier writes are ignored */
    int32_t *status;     /* per record of the current write: PENDING, else its rd_kafka_resp_err_t */
    uint32_t n;
    /* Offsets (increasing) of partition skip_part delivered by a write that
     * failed earlier in the window: not sent again. */
    uint32_t skip_part;
    uint64_t *skip;
    uint32_t nskip;
} kfk;

/* Properties the sink sets itself. */
static const char *const fixed_props[] = {
    "bootstrap.servers", "metadata.broker.list", "enable.idempotence", "acks", "request.required.acks",
    "message.timeout.ms", "delivery.timeout.ms", "transactional.id",
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    kfk *k = opaque;
    uintptr_t tag = (uintptr_t)m->_private;
    uint32_t i = (uint32_t)(tag & 0xffffffffu);
    if ((tag >> 32) != (k->gen & 0xffffffffu) || !k->status || i >= k->n)
        return;
    k->status[i] = (int32_t)m->err;
}

/* librdkafka's warnings and errors (log_level 4), in the server's log;
 * called on librdkafka's threads. */
static void on_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    const kfk *k = rd_kafka_opaque(rk);
    (void)level; /* the sink's state says how bad it is */
    spw_warn("sink %s: librdkafka %s: %s", k->sink, fac, buf);
}

/* A configuration with the fixed settings and the user's properties:
 * NULL with a sentence in err when librdkafka refuses one. */
static rd_kafka_conf_t *make_conf(kfk *k, char *err, size_t cap)
{
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    char tmo[16], e[256];
    snprintf(tmo, sizeof tmo, "%" PRIu32, k->timeout_ms);
    const char *set[][2] = {
        {"bootstrap.servers", k->brokers}, {"enable.idempotence", "true"}, {"acks", "all"},
        {"message.timeout.ms", tmo},       {"linger.ms", "5"},             {"log_level", "4"},
    };
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
        if (rd_kafka_conf_set(c, set[i][0], set[i][1], e, sizeof e) != RD_KAFKA_CONF_OK) {
            snprintf(err, cap, "kafka: %s", e);
            rd_kafka_conf_destroy(c);
            return NULL;
        }
    }
    for (uint32_t i = 0; i < k->nprops; i++) {
        if (rd_kafka_conf_set(c, k->pk[i], k->pv[i], e, sizeof e) != RD_KAFKA_CONF_OK) {
            snprintf(err, cap, "options.properties.%s: %s", k->pk[i], e);
            rd_kafka_conf_destroy(c);
            return NULL;
        }
    }
    rd_kafka_conf_set_opaque(c, k);
    rd_kafka_conf_set_dr_msg_cb(c, on_delivery);
    rd_kafka_conf_set_log_cb(c, on_log);
    return c;
}

static int make_producer(kfk *k, char *err, size_t cap)
{
    rd_kafka_conf_t *c = make_conf(k, err, cap);
    if (!c)
        return SPW_EINVAL;
    char e[256];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, e, sizeof e);
    pthread_mutex_lock(&k->rk_mu);
    k->rk = rk;
    pthread_mutex_unlock(&k->rk_mu);
    if (!k->rk) {
        rd_kafka_conf_destroy(c);
        snprintf(err, cap, "kafka: cannot create a producer: %s", e);
        return SPW_EINVAL;
    }
    return 0;
}

/* Drops the producer and whatever it still holds (reports of its
 * messages arrive with an old gen, or not at all). */
static void drop_producer(kfk *k)
{
    if (!k->rk)
        return;
    pthread_mutex_lock(&k->rk_mu);
    rd_kafka_t *rk = k->rk;
    k->rk = NULL;
    pthread_mutex_unlock(&k->rk_mu);
    rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    rd_kafka_poll(rk, 0);
    rd_kafka_destroy(rk);
}

static int topic_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 249 || strcmp(t, ".") == 0 || strcmp(t, "..") == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!spw_name_char(t[i]))
            return 0;
    return 1;
}

/* options.properties: an object of strings (numbers and booleans are
 * taken as their text). NULL or a sentence. */
static const char *parse_props(void *st, const spw_json_span *obj, const spw_opt *o, char *buf, size_t cap)
{
    (void)o, (void)buf, (void)cap;
    kfk *k = st;
    spw_json_iter it;
    spw_json_span name, v;
    spw_json_iter_init(&it, obj);
    while (spw_json_iter_next(&it, &name, &v)) {
        if (k->nprops == KFK_PROPS_MAX)
            return "options.properties has more than 64 entries";
        char *pk = k->pk[k->nprops], *pv = k->pv[k->nprops];
        long nl = spw_json_unescape(&name, pk, KFK_PROP_MAX - 1);
        if (nl <= 0)
            return "options.properties: a property name is empty or too long";
        pk[nl] = 0;
        for (size_t i = 0; i < sizeof fixed_props / sizeof fixed_props[0]; i++)
            if (strcmp(pk, fixed_props[i]) == 0)
                return "options.properties may not set bootstrap.servers, enable.idempotence, acks, "
                       "message.timeout.ms or transactional.id (use options.brokers and options.timeout_ms)";
        long vl;
        if (v.type == SPW_JSON_STRING) {
            vl = spw_json_unescape(&v, pv, KFK_PROP_MAX - 1);
        } else if (v.type == SPW_JSON_NUMBER || v.type == SPW_JSON_TRUE || v.type == SPW_JSON_FALSE) {
            vl = v.n < KFK_PROP_MAX ? (long)v.n : -1;
            if (vl > 0)
                memcpy(pv, v.p, (size_t)vl);
        } else {
            vl = -1;
        }
        if (vl < 0 || memchr(pv, 0, (size_t)vl))
            return "options.properties values must be strings, numbers or booleans (under 512 bytes)";
        pv[vl] = 0;
        k->nprops++;
    }
    return NULL;
}

static void kfk_free(kfk *k)
{
    drop_producer(k);
    spw_free(k->pk);
    spw_free(k->pv);
    spw_free(k->skip);
    pthread_mutex_destroy(&k->rk_mu);
    spw_free(k);
}

/* The options (docs/api.md "kafka sink"): one table, core/opts.h. */
static const spw_opt kfk_opts[] = {
    {.name = "brokers", .type = SPW_OPT_STR, .off = offsetof(kfk, brokers), .size = sizeof ((kfk *)0)->brokers,
     .flags = SPW_OPT_REQUIRED, .must = "\"host:port[,host:port...]\"",
     .help = "\"host:port[,host:port...]\", the bootstrap servers"},
    {.name = "topic", .type = SPW_OPT_STR, .off = offsetof(kfk, topic), .size = sizeof ((kfk *)0)->topic,
     .flags = SPW_OPT_DEF_CTX, .must = "a Kafka topic name", .help = "the topic to write to"},
    {.name = "timeout_ms", .type = SPW_OPT_INT, .off = offsetof(kfk, timeout_ms), .size = 4, .def = 10000,
     .min = 100, .max = 600000, .help = "message.timeout.ms: how long a write may wait for the brokers"},
    {.name = "properties", .type = SPW_OPT_JSON, .min = 1 << SPW_JSON_OBJECT, .def_str = "{}",
     .parse = parse_props, .must = "an object of librdkafka properties",
     .help = "more librdkafka producer properties, values as strings"},
};

static int kfk_open(const char *sink, const char *stream, const char *options, size_t len, void **st, char *err,
                    size_t cap)
{
    kfk *k = spw_xcalloc(1, sizeof *k);
    pthread_mutex_init(&k->rk_mu, NULL);
    snprintf(k->sink, sizeof k->sink, "%s", sink);
    k->pk = spw_xcalloc(KFK_PROPS_MAX, sizeof *k->pk);
    k->pv = spw_xcalloc(KFK_PROPS_MAX, sizeof *k->pv);
    const char *bad = NULL;
    if (spw_opts_parse(kfk_opts, sizeof kfk_opts / sizeof kfk_opts[0], "options", "kafka sink", options, len,
                       stream, k, NULL, err, cap) < 0) {
        kfk_free(k);
        return SPW_EINVAL;
    }
    if (!bad && !topic_ok(k->topic))
        bad = "options.topic must be 1 to 249 characters of a-z, A-Z, 0-9, '.', '_' or '-'";
    if (bad) {
        snprintf(err, cap, "%s", bad);
        kfk_free(k);
        return SPW_EINVAL;
    }
    /* librdkafka checks every property now, so a bad one fails the PUT;
     * the producer itself is created by the first write (open must not
     * wait on the target, and an unused sink holds no threads). */
    rd_kafka_conf_t *c = make_conf(k, err, cap);
    if (!c) {
        kfk_free(k);
        return SPW_EINVAL;
    }
    rd_kafka_conf_destroy(c);
    *st = k;
    return 0;
}

/* Errors the record itself causes: sending it again cannot help. */
static int is_bad_record(rd_kafka_resp_err_t e)
{
    switch (e) {
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_INVALID_MSG:
    case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
    case RD_KAFKA_RESP_ERR_INVALID_RECORD:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
        return 1;
    default:
        return 0;
    }
}

static uint64_t key_hash(const spw_sink_rec *r)
{
    uint64_t h = r->key_len < 0 ? 1 : spw_fnv1a64(SPW_FNV64_OFFSET, r->key, (size_t)r->key_len);
    return h ? h : 2; /* 0 marks a free slot */
}

/* Of records [ok, n), the offsets (into out) of those delivered with no
 * undelivered record of the same key before them in the window: they
 * need not be sent again, and skipping them keeps each key's order. A
 * delivered record behind an undelivered one of its key is sent again
 * after it (a repeat, never a reordering). Keys are compared by hash: a
 * collision only sends a record again. Returns the count. */
static uint32_t skippable(const spw_sink_rec *recs, const int32_t *status, uint32_t ok, uint32_t n, uint64_t *out)
{
    size_t cap = 16;
    while (cap < 2 * (size_t)(n - ok))
        cap *= 2;
    uint64_t *failed = spw_xcalloc(cap, sizeof *failed);
    uint32_t cnt = 0;
    for (uint32_t i = ok; i < n; i++) {
        uint64_t h = key_hash(&recs[i]);
        size_t j = (size_t)spw_fmix64(h) & (cap - 1);
        while (failed[j] && failed[j] != h)
            j = (j + 1) & (cap - 1);
        if (status[i] != 0)
            failed[j] = h;
        else if (!failed[j])
            out[cnt++] = recs[i].offset;
    }
    spw_free(failed);
    return cnt;
}

/* Produces the window (librdkafka sends it in the background); kfk_end
 * serves the delivery reports. */
static int kfk_begin(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                     size_t cap)
{
    kfk *k = st;
    *done = 0;
    if (atomic_load(&k->stopping)) {
        snprintf(err, cap, "the sink is stopping");
        return SPW_SINK_RETRY;
    }
    char fe[512];
    if (k->rk && rd_kafka_fatal_error(k->rk, fe, sizeof fe)) {
        /* an idempotent producer in a fatal state produces nothing more */
        spw_warn("sink %s: kafka producer failed (%s): starting a new one", k->sink, fe);
        drop_producer(k);
    }
    if (!k->rk && make_producer(k, err, cap) < 0)
        return SPW_SINK_RETRY;
    int32_t *status = spw_xmalloc((size_t)n * sizeof *status);
    for (uint32_t i = 0; i < n; i++)
        status[i] = PENDING;
    k->gen++;
    k->status = status;
    k->n = n;
    uint64_t gen = k->gen & 0xffffffffu;
    if (k->nskip && k->skip_part != partition)
        k->nskip = 0;
    uint32_t si = 0, sent = 0;
    for (; sent < n; sent++) {
        const spw_sink_rec *r = &recs[sent];
        while (si < k->nskip && k->skip[si] < r->offset)
            si++;
        if (si < k->nskip && k->skip[si] == r->offset) {
            status[sent] = 0;
            continue;
        }
        rd_kafka_resp_err_t e;
        const void *key = r->key_len >= 0 ? (const void *)r->key : NULL;
        size_t key_len = r->key_len >= 0 ? (size_t)r->key_len : 0;
        /* queue full: serve reports until there is room (bounded) */
        for (int tries = 0;; tries++) {
            e = rd_kafka_producev(k->rk, RD_KAFKA_V_TOPIC(k->topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(key, key_len),
                                  RD_KAFKA_V_VALUE((void *)r->value, r->value_len), RD_KAFKA_V_TIMESTAMP(r->ts),
                                  RD_KAFKA_V_OPAQUE((void *)(uintptr_t)(gen << 32 | sent)), RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL || (uint64_t)tries * 100 >= k->timeout_ms ||
                atomic_load(&k->stopping))
                break;
            rd_kafka_poll(k->rk, 100);
        }
        if (e) {
            /* refused before sending (e.g. larger than message.max.bytes):
             * stop here, so nothing after it arrives before it */
            status[sent] = (int32_t)e;
            break;
        }
    }
    return SPW_SINK_OK;
}

static int kfk_end(void *st, uint32_t partition, const spw_sink_rec *recs, uint32_t n, uint32_t *done, char *err,
                   size_t cap)
{
    kfk *k = st;
    int32_t *status = k->status;
    rd_kafka_resp_err_t fr = rd_kafka_flush(k->rk, (int)k->timeout_ms + 5000);
    k->status = NULL;
    k->n = 0;
    if (fr) /* reports still outstanding: start over with a new producer */
        drop_producer(k);
    uint32_t ok = 0;
    while (ok < n && status[ok] == 0)
        ok++;
    *done = ok;
    /* what got through past the first failure, and what of the old set
     * lies past this window */
    uint64_t *ns = spw_xmalloc(((size_t)n + k->nskip + 1) * sizeof *ns);
    uint32_t nn = 0;
    if (ok < n)
        nn = skippable(recs, status, ok, n, ns);
    for (uint32_t i = 0; i < k->nskip; i++)
        if (k->skip[i] > recs[n - 1].offset)
            ns[nn++] = k->skip[i];
    spw_free(k->skip);
    k->skip = ns;
    k->nskip = nn;
    k->skip_part = partition;
    int res;
    if (ok == n) {
        res = SPW_SINK_OK;
    } else if (status[ok] != PENDING && is_bad_record((rd_kafka_resp_err_t)status[ok])) {
        snprintf(err, cap, "kafka topic %s refused the record: %s", k->topic,
                 rd_kafka_err2str((rd_kafka_resp_err_t)status[ok]));
        res = SPW_SINK_REJECT;
    } else {
        const char *why = status[ok] == PENDING ? "no delivery report in time"
                                                : rd_kafka_err2str((rd_kafka_resp_err_t)status[ok]);
        snprintf(err, cap, "kafka %s topic %s: %s", k->brokers, k->topic, why);
        res = SPW_SINK_RETRY;
    }
    spw_free(status);
    return res;
}


static void kfk_interrupt(void *st)
{
    kfk *k = st;
    atomic_store(&k->stopping, 1);
    pthread_mutex_lock(&k->rk_mu);
    if (k->rk)
        rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    pthread_mutex_unlock(&k->rk_mu);
}

static void kfk_close(void *st)
{
    kfk *k = st;
    if (k->rk && !atomic_load(&k->stopping))
        rd_kafka_flush(k->rk, 1000);
    kfk_free(k);
}

/* ack=replicated (sink/sink.h replicates): a write answers OK only when
 * every record's delivery report is in, and with acks=all (fixed above)
 * the leader reports a record only once every in-sync replica has it;
 * how many that must be is the topic's min.insync.replicas
 * (docs/operations.md "Replication"). */
static int kfk_replicates(void *st, char *why, size_t cap)
{
    (void)st, (void)why, (void)cap;
    return 1;
}

const spw_sink_kind spw_sink_kind_kafka = {
    .name = "kafka",
    .open = kfk_open,
    .opts = kfk_opts,
    .nopts = sizeof kfk_opts / sizeof kfk_opts[0],
    .write_begin = kfk_begin,
    .write_end = kfk_end,
    .position = NULL,
    .commit = NULL,
    .close = kfk_close,
    .interrupt = kfk_interrupt,
    .replicates = kfk_replicates,
};
