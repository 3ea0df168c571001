/*
 * Produce over the Kafka protocol (docs/protocol-kafka.md "Produce"): the
 * decoder and encoder over the produce service (svc/produce.h), which owns
 * admission, validation, dedupe and the submit. Each (topic, partition)
 * of a request is one service request: its record batches (magic 2,
 * decompressed here) become the service's events — key, value, timestamp
 * and headers — written to that partition at the ack level acks says
 * (0 none, 1 written, -1 fsync). The Kafka answer is encoded once every
 * partition's service request has answered; with acks=0 nothing is sent.
 *
 * An idempotent producer's batches (producer id >= 0) carry the
 * producer id, epoch and base sequence; they become the service's
 * producer id (a hash of the Kafka producer id and epoch, the stream and
 * the partition: Kafka counts sequences per partition) and sequence, so a
 * retried batch is answered from the dedupe table with the offsets of
 * the first attempt rather than written twice (admit/dedupe.h).
 */
#include "kafka/kafka_int.h"

#include "core/clock.h"

#define KV_CHUNK 256

/* Headers of a partition's records, in chunks that never move (the
 * service keeps pointers to them until its call returns). */
typedef struct kvchunk {
    struct kvchunk *next;
    uint32_t used;
    spw_kv kv[KV_CHUNK];
} kvchunk;

/* A partition's records as the service's events. */
typedef struct ksrc {
    spw_kr batches;  /* the records field */
    spw_kbatch b;    /* the current batch */
    spw_kr recs;     /* its plain records */
    int32_t left;    /* records of it still to read */
    int in_batch;
    uint32_t index;  /* records so far (the event index) */
    uint32_t batch_no;
    size_t max_plain;
    spw_buf *plain;  /* decompressed batches, kept until the call returns */
    uint32_t nplain;
    kvchunk *kvs;
    int16_t kerr;    /* the Kafka error of a records field that does not decode */
} ksrc;

static void ksrc_fini(ksrc *x)
{
    for (uint32_t i = 0; i < x->nplain; i++)
        spw_buf_fini(&x->plain[i]);
    spw_free(x->plain);
    while (x->kvs) {
        kvchunk *k = x->kvs;
        x->kvs = k->next;
        spw_free(k);
    }
}

static spw_kv *kv_alloc(ksrc *x, uint32_t n)
{
    if (n > KV_CHUNK)
        return NULL;
    if (!x->kvs || x->kvs->used + n > KV_CHUNK) {
        kvchunk *k = spw_try_malloc(sizeof *k);
        if (!k)
            return NULL;
        k->used = 0;
        k->next = x->kvs;
        x->kvs = k;
    }
    spw_kv *r = &x->kvs->kv[x->kvs->used];
    x->kvs->used += n;
    return r;
}

static int ksrc_refuse(ksrc *x, spw_produce_res *res, int16_t kerr, spw_sc sc, const char *what)
{
    x->kerr = kerr;
    spw_produce_refuse_at(res, sc, NULL, SIZE_MAX, "record batch %u: %s; nothing was appended", x->batch_no, what);
    return -1;
}

static int ksrc_next(void *arg, spw_produce_ev *ev, spw_produce_res *res)
{
    ksrc *x = arg;
    while (!x->in_batch || x->left == 0) {
        if (x->in_batch) {
            if (spw_kr_left(&x->recs) != 0)
                return ksrc_refuse(x, res, KERR_CORRUPT_MESSAGE, SPW_SC_BAD_REQUEST,
                                   "bytes follow the batch's last record");
            x->in_batch = 0;
            x->batch_no++;
        }
        if (spw_kr_left(&x->batches) == 0)
            return 0;
        if (spw_kbatch_next(&x->batches, &x->b))
            return ksrc_refuse(x, res, KERR_CORRUPT_MESSAGE, SPW_SC_BAD_REQUEST,
                               "not a record batch of magic 2 with a valid CRC");
        if (x->b.attributes & (SPW_KBATCH_ATTR_TRANSACTIONAL | SPW_KBATCH_ATTR_CONTROL))
            return ksrc_refuse(x, res, KERR_INVALID_RECORD, SPW_SC_BAD_REQUEST,
                               "transactional and control batches are not supported");
        spw_buf *pl = spw_try_realloc(x->plain, (x->nplain + 1) * sizeof *x->plain);
        if (!pl)
            return ksrc_refuse(x, res, KERR_UNKNOWN_SERVER_ERROR, SPW_SC_OVERLOADED, "out of memory");
        x->plain = pl;
        spw_buf *scratch = &x->plain[x->nplain++];
        *scratch = (spw_buf)SPW_BUF_INIT;
        const uint8_t *p;
        size_t n;
        switch (spw_kbatch_plain(&x->b, scratch, x->max_plain, &p, &n)) {
        case SPW_KB_OK:
            /* The decompressed records of all the partition's batches
             * together stay within max-request-bytes. */
            if ((x->b.attributes & SPW_KBATCH_ATTR_COMPRESSION) && scratch->len <= x->max_plain)
                x->max_plain -= scratch->len;
            break;
        case SPW_KB_COMPRESSION:
            return ksrc_refuse(x, res, KERR_UNSUPPORTED_COMPRESSION_TYPE, SPW_SC_BAD_REQUEST,
                               "unknown compression type");
        case SPW_KB_TOO_LARGE:
            return ksrc_refuse(x, res, KERR_MESSAGE_TOO_LARGE, SPW_SC_REQUEST_TOO_LARGE,
                               "its records decompress past max-request-bytes");
        case SPW_KB_NOMEM:
            return ksrc_refuse(x, res, KERR_UNKNOWN_SERVER_ERROR, SPW_SC_OVERLOADED, "out of memory");
        default:
            return ksrc_refuse(x, res, KERR_CORRUPT_MESSAGE, SPW_SC_BAD_REQUEST, "its records do not decompress");
        }
        spw_kr_init(&x->recs, p, n);
        x->left = x->b.count;
        x->in_batch = 1;
    }
    spw_krec rec;
    if (spw_krec_next(&x->recs, &x->b, &rec))
        return ksrc_refuse(x, res, KERR_CORRUPT_MESSAGE, SPW_SC_BAD_REQUEST, "a record does not decode");
    x->left--;
    spw_kv *hv = NULL;
    if (rec.header_count > 0) {
        hv = kv_alloc(x, (uint32_t)rec.header_count);
        if (!hv)
            return ksrc_refuse(x, res, KERR_INVALID_RECORD, SPW_SC_BAD_REQUEST,
                               "a record has more than 256 headers");
        spw_kr h;
        spw_kr_init(&h, rec.headers, rec.headers_len);
        for (int32_t i = 0; i < rec.header_count; i++) {
            const uint8_t *k, *v;
            int32_t kl, vl;
            spw_krec_header(&h, &k, &kl, &v, &vl); /* checked by spw_krec_next */
            hv[i] = (spw_kv){.key = k, .key_len = (uint32_t)kl, .value = v, .value_len = vl < 0 ? 0 : (uint32_t)vl};
        }
    }
    *ev = (spw_produce_ev){.value = rec.value ? (const char *)rec.value : "",
                           .len = rec.value_len < 0 ? 0 : (uint32_t)rec.value_len,
                           .key = rec.key,
                           .key_len = rec.key_len,
                           .has_ts = rec.ts >= 0,
                           .ts = rec.ts,
                           .headers = hv,
                           .header_count = hv ? (uint32_t)rec.header_count : 0,
                           .index = x->index++};
    return 1;
}

/* ---- the request ---- */

typedef struct kpart {
    struct kprod *pr;
    int32_t topic;   /* index in kprod.topics */
    int32_t index;   /* Kafka partition */
    int16_t err;
    int64_t base_offset;
    int32_t rec_err; /* -1, or the record an INVALID_RECORD is about */
    uint32_t throttle_ms;
    char *msg;       /* error message, or NULL */
} kpart;

typedef struct ktopic {
    char *name;
    int32_t len;
    int32_t first, n; /* its partitions in kprod.parts */
} ktopic;

typedef struct kprod {
    kreq *q;
    kconn *c;
    uint32_t pending; /* service requests not answered yet */
    int32_t ntopics, nparts;
    ktopic *topics;
    kpart *parts;
} kprod;

static void kprod_free(kprod *pr)
{
    for (int32_t i = 0; i < pr->ntopics; i++)
        spw_free(pr->topics[i].name);
    for (int32_t i = 0; i < pr->nparts; i++)
        spw_free(pr->parts[i].msg);
    spw_free(pr->topics);
    spw_free(pr->parts);
    spw_free(pr);
}

static void part_set(kpart *kp, spw_produce_res *res, int16_t kerr_override)
{
    if (res->code == SPW_SC_OK) {
        kp->err = KERR_NONE;
        kp->base_offset = res->nslots ? (int64_t)res->slots[0].first_offset : -1;
        return;
    }
    kp->err = kerr_override ? kerr_override : spw__kerr_of(res->code);
    kp->base_offset = -1;
    kp->throttle_ms = res->retry_ms;
    kp->rec_err = kp->err == KERR_INVALID_RECORD && res->at_event ? (int32_t)res->index : -1;
    char m[600];
    if (res->at_event)
        snprintf(m, sizeof m, "record %u: %s", res->index, res->msg);
    else
        snprintf(m, sizeof m, "%s", res->msg);
    spw_free(kp->msg);
    kp->msg = spw_xstrdup(m);
}

/* The answer, once every partition has one. */
static void produce_encode(kprod *pr)
{
    kreq *q = pr->q;
    int v = q->api_version;
    spw_buf *o = &q->out;
    uint32_t throttle = 0;
    int e = spw__kq_begin(q) || spw_kw_i32(o, pr->ntopics);
    for (int32_t t = 0; !e && t < pr->ntopics; t++) {
        ktopic *tp = &pr->topics[t];
        e = spw_kw_str(o, tp->name, tp->len) || spw_kw_i32(o, tp->n);
        for (int32_t i = 0; !e && i < tp->n; i++) {
            kpart *kp = &pr->parts[tp->first + i];
            if (kp->throttle_ms > throttle)
                throttle = kp->throttle_ms;
            e = spw_kw_i32(o, kp->index) || spw_kw_i16(o, kp->err) || spw_kw_i64(o, kp->base_offset) ||
                spw_kw_i64(o, -1); /* log append time: records keep their create time */
            if (v >= 5)
                e = e || spw_kw_i64(o, -1); /* log start offset: not said */
            if (v >= 8) {
                if (kp->rec_err >= 0)
                    e = e || spw_kw_i32(o, 1) || spw_kw_i32(o, kp->rec_err) ||
                        spw_kw_str(o, kp->msg, (int32_t)strlen(kp->msg));
                else
                    e = e || spw_kw_i32(o, 0);
                e = e || spw_kw_str(o, kp->msg, kp->msg ? (int32_t)strlen(kp->msg) : -1);
            }
        }
    }
    e = e || spw_kw_i32(o, (int32_t)throttle);
    if (e)
        o->len = 0;
    q->ready = 1;
}

static void part_done(spw_produce_res *res, void *user)
{
    kpart *kp = user;
    kprod *pr = kp->pr;
    kconn *c = pr->c;
    SPW_ASSERT(c->inflight > 0 && c->loop->inflight > 0 && pr->pending > 0);
    c->inflight--;
    c->loop->inflight--;
    part_set(kp, res, 0);
    if (--pr->pending == 0) {
        produce_encode(pr);
        spw__kq_flush(c);
    }
}

/* A 64-bit mix (splitmix64's finaliser) for the service's producer id. */
static uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    h ^= h >> 30;
    h *= 0xbf58476d1ce4e5b9ull;
    h ^= h >> 27;
    h *= 0x94d049bb133111ebull;
    h ^= h >> 31;
    return h;
}

static void produce_part(kconn *c, kprod *pr, kpart *kp, spw_stream *s, int ack, const uint8_t *recs, int32_t len)
{
    spw_svc *svc = c->loop->srv->svc;
    ksrc x;
    memset(&x, 0, sizeof x);
    spw_kr_init(&x.batches, recs, len > 0 ? (size_t)len : 0);
    x.max_plain = c->loop->srv->cfg.max_request_bytes;
    /* An idempotent producer's first batch says who and which sequence. */
    uint64_t pid = 0;
    uint32_t seq = 0;
    {
        spw_kr peek = x.batches;
        spw_kbatch b;
        if (spw_kbatch_next(&peek, &b) == SPW_KB_OK && b.producer_id >= 0 && b.base_sequence >= 0) {
            pid = mix(mix(mix((uint64_t)b.producer_id, (uint64_t)(uint16_t)b.producer_epoch), s->uid),
                      (uint64_t)(uint32_t)kp->index);
            if (pid == 0)
                pid = 1;
            seq = (uint32_t)b.base_sequence;
        }
    }
    spw_produce_in in = {.s = s,
                         .tenant = c->tenant,
                         .peer = c->peer,
                         .priority = -1,
                         .ack = ack,
                         .partition = (uint32_t)kp->index,
                         .trailing = SPW_PRODUCE_TRAIL_OBJECT,
                         .next = ksrc_next,
                         .src = &x,
                         .producer_id = pid,
                         .producer_seq = seq,
                         .post = spw__kloop_post,
                         .loop = c->loop,
                         .done = part_done,
                         .user = kp};
    c->inflight++;
    c->loop->inflight++;
    pr->pending++;
    spw_produce_res res;
    int async = spw_produce_request(svc, &in, &res) == 0;
    if (!async) {
        c->inflight--;
        c->loop->inflight--;
        pr->pending--;
        part_set(kp, &res, x.kerr);
        spw_produce_res_fini(&res);
    }
    ksrc_fini(&x);
}

void spw__k_produce(kconn *c, kreq *q, spw_kr *r)
{
    const char *tid;
    int32_t tidl;
    spw_kr_str(r, &tid, &tidl);
    int16_t acks = spw_kr_i16(r);
    (void)spw_kr_i32(r); /* timeout: the ack level decides when we answer */
    int32_t nt = spw_kr_array(r, 6);
    kprod *pr = spw_xcalloc(1, sizeof *pr);
    pr->q = q;
    pr->c = c;
    q->prod = pr;
    if (nt > 0)
        pr->topics = spw_xcalloc((size_t)nt, sizeof *pr->topics);
    /* First pass: the layout (names, partitions), so that answers made
     * while later partitions are submitted have their slots. */
    spw_kr save = *r;
    int32_t total = 0;
    for (int32_t t = 0; t < nt && !r->bad; t++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
        int32_t np = spw_kr_array(r, 8);
        if (np < 0)
            np = 0; /* a null array: no partitions */
        pr->topics[t].name = spw_xmalloc(l > 0 ? (size_t)l + 1 : 1);
        if (l > 0)
            memcpy(pr->topics[t].name, n, (size_t)l);
        pr->topics[t].name[l > 0 ? l : 0] = 0;
        pr->topics[t].len = l;
        pr->topics[t].first = total;
        pr->topics[t].n = np;
        pr->ntopics = t + 1;
        for (int32_t i = 0; i < np && !r->bad; i++) {
            (void)spw_kr_i32(r);
            const uint8_t *b;
            int32_t bl;
            spw_kr_bytes(r, &b, &bl);
        }
        total += np;
    }
    if (r->bad) {
        spw__kq_begin(q);
        spw_kw_i32(&q->out, 0);
        spw_kw_i32(&q->out, 0);
        q->ready = 1; /* an answer without topics: the request did not decode */
        spw_warn("Kafka listener: a Produce request from %s does not decode", c->peer);
        return;
    }
    pr->parts = spw_xcalloc(total ? (size_t)total : 1, sizeof *pr->parts);
    pr->nparts = total;
    int ack = acks == 0 ? SPW_ACK_NONE : acks == 1 ? SPW_ACK_WRITTEN : SPW_ACK_FSYNC;
    if (acks == 0)
        q->no_answer = 1;
    *r = save;
    pr->pending = 1; /* the decoder's own, so no partition answers the request early */
    for (int32_t t = 0; t < nt; t++) {
        const char *n;
        int32_t l;
        spw_kr_str(r, &n, &l);
        int32_t np = spw_kr_array(r, 8);
        if (np < 0)
            np = 0;
        for (int32_t i = 0; i < np; i++) {
            kpart *kp = &pr->parts[pr->topics[t].first + i];
            kp->pr = pr;
            kp->topic = t;
            kp->index = spw_kr_i32(r);
            kp->rec_err = -1;
            kp->base_offset = -1;
            const uint8_t *b;
            int32_t bl;
            spw_kr_bytes(r, &b, &bl);
            if (acks != 0 && acks != 1 && acks != -1) {
                kp->err = KERR_INVALID_REQUIRED_ACKS;
                continue;
            }
            if (tid) {
                kp->err = KERR_INVALID_REQUEST; /* transactions are not supported */
                kp->msg = spw_xstrdup("transactional producers are not supported");
                continue;
            }
            int16_t err;
            spw_stream *s = spw__k_stream(c, n, l, SPW_PERM_PRODUCE, &err);
            if (!s) {
                kp->err = err;
                continue;
            }
            produce_part(c, pr, kp, s, ack, b, bl);
        }
    }
    if (--pr->pending == 0)
        produce_encode(pr);
}

void spw__k_prod_free(struct kprod *pr) { kprod_free(pr); }
