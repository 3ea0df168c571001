/*
 * Internals shared by the files of src/view and by no one else: the
 * definition, a view, the manager, and the store's entries
 * (docs/formats/view.md byte by byte; the constants below name it).
 *
 * Locking: m->mu guards the list of views. v->mu guards a view's shown
 * state (counters copied after each commit, state, waiters, stop and
 * rebuild flags); the apply thread alone owns v->db's writes, the cursor
 * and the holds. Readers use v->db concurrently (RocksDB is thread-safe)
 * under a reference (v->refs) that keeps the view from being freed.
 */
#ifndef SPW_VIEW_INT_H
#define SPW_VIEW_INT_H

#include <pthread.h>
#include <rocksdb/c.h>
#include <stdatomic.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/json.h"
#include "log/cursor.h"
#include "catalog/catalog.h"
#include "view/view.h"

#define VIEW_DEF_MAX 8192
/* An apply thread sleeps until the log's durable hook says some durable
 * end moved (view.c), or this long at most: the fallback of a missed
 * wake-up (and the pace of a forward view's retries) */
#define VIEW_IDLE_MS 1000
/* One apply batch (one WriteBatch) folds records until the durable end
 * of every partition, or until one of these bounds: the larger a batch,
 * the more records of a key (and of a window bucket) one entry stands for */
#define VIEW_BATCH_RECORDS (1u << 20) /* records */
#define VIEW_BATCH_ENTRIES (1u << 19) /* entries of the fold table before the roll-up */
#define VIEW_READ_BYTES (1u << 20) /* cursor read size */
/* A batch writes one operand per store entry: past this many batches
 * since the last flush the store bounds each key's chain of operands in
 * the memtable to this many (view_store.c) */
#define VIEW_CHAIN_MAX 64
#define VIEW_FLUSH_MS 1000         /* default: a store with unflushed batches is flushed this often */
#define VIEW_SERIES_MAX 10000      /* buckets one series answer may span */
#define VIEW_TOP_MAX 1000
#define VIEW_TIME_MAX (1LL << 53) /* |ms| of an aggregate's record times and of read times (285,000 years) */

enum { VK_LATEST, VK_AGGREGATE, VK_SUM };
enum { VT_EVENT, VT_ARRIVAL };
enum { VO_OFFSET, VO_TS };

typedef struct view_def {
    char name[SPW_STREAM_NAME_MAX + 1];
    char stream[SPW_STREAM_NAME_MAX + 1];
    int kind;
    char field[128];    /* JSON pointer ("" for latest) */
    char group_by[128]; /* "$key" or a JSON pointer */
    uint32_t nwin;
    int64_t win_ms[SPW_VIEW_MAX_WINDOWS];
    int time;
    int64_t grace_ms;
    int order_by;
    int merge; /* aggregate: records are partial aggregates to merge (docs/api.md "Merge views") */
    /* aggregate: final buckets of the smallest window sent to another node ("" host: no forward) */
    /* fwd_host without brackets (an IPv6 literal: "::1"); fwd_addr as
     * written back and named in messages and Host ("[::1]:7700") */
    char fwd_host[256], fwd_port[8], fwd_addr[300], fwd_stream[SPW_STREAM_NAME_MAX + 1], fwd_token[512];
    /* derived */
    int by_key; /* group_by is "$key" */
    int page_level; /* aggregate: levels 0..page_level live packed in one page entry per key (docs/formats/view.md) */
    spw_json_ptr ptrs[2];
    int nptrs, ptr_group, ptr_field; /* indexes into ptrs, -1 if none */
} view_def;

/* ---- numbers: an integer while every value and sum is one, else binary64 ---- */
typedef struct view_num {
    int dbl; /* 0: i holds it; 1: d */
    int64_t i;
    double d;
} view_num;

/* An aggregate: count, sum, min, max (min/max meaningless when count 0). */
typedef struct view_agg {
    uint64_t count;
    view_num sum, min, max;
} view_agg;

#define VIEW_AGG_LEN 33 /* u64 count, u8 flags, 3 x 8 bytes (docs/formats/view.md) */

/* ---- store keys (docs/formats/view.md "Keys") ---- */
#define VIEW_META_KEY "\x00meta"
#define VIEW_META_KEY_LEN 5
#define VIEW_META_VERSION 3
#define VIEW_P_LATEST 'L'
#define VIEW_P_SUM 'S'
#define VIEW_P_ALL 'A'
#define VIEW_P_BUCKET 'B'
#define VIEW_P_PAGE 'P'
/* A page entry ('P' start KEY) holds one view key's buckets of levels 0
 * to the page level, inside one bucket of the page level: the highest
 * level whose window is at most VIEW_PAGE_SPAN smallest windows. Its
 * value is a list of sub-buckets, VIEW_SUB_LEN bytes each, in (level,
 * index) order: level (1), index (4: the bucket's start is the page's
 * start plus index windows of its level), aggregate (33). */
#define VIEW_PAGE_SPAN 4096
#define VIEW_SUB_LEN 38

/* A store's meta entry, decoded. */
typedef struct view_meta {
    uint64_t incarnation;
    uint32_t nparts;
    uint64_t keys, late, skipped_damaged, skipped_invalid, applied;
    int64_t fwd_next; /* forward: buckets of the smallest window starting before it were sent (INT64_MIN: none) */
    uint64_t next[SPW_STREAM_PARTITIONS_MAX];
    int64_t wm[SPW_STREAM_PARTITIONS_MAX]; /* highest time applied per partition (INT64_MIN: none) */
} view_meta;

enum { VS_CATCHING_UP, VS_LIVE, VS_REBUILDING, VS_NO_STREAM, VS_FAILED };

/* A set of store keys known to be in the store (view_fold.c): the apply
 * thread's memory of which view keys exist, so that a batch need not
 * read an entry to learn whether its key is new (for the keys count).
 * Bounded (VIEW_KSET_MAX keys, VIEW_KSET_BYTES of key bytes): keys past
 * the bound are read as before. Emptied whenever the store is. */
#define VIEW_KSET_MAX (1u << 21)
#define VIEW_KSET_BYTES (128u << 20)
typedef struct kslot {
    uint64_t h; /* 0: empty */
    uint32_t off, len;
} kslot;
typedef struct view_kset {
    kslot *s;
    uint32_t n, nslot;
    spw_buf arena;
} view_kset;
typedef struct view_waiter {
    struct view_waiter *next;
    spw_view_min *min;
    uint32_t n;
    uint64_t deadline_ms;
    void (*done)(void *arg, int r);
    void *arg;
    int r; /* the answer, once taken off the list */
} view_waiter;

typedef struct spw_view {
    struct spw_views *m;
    view_def def;
    char *canon;
    char dir[4300]; /* DATA/views/NAME */
    rocksdb_t *db;
    rocksdb_options_t *opts;
    int hinted; /* opts insert with a hint per first key byte (view_store.c) */
    rocksdb_writeoptions_t *wo;
    rocksdb_readoptions_t *ro;
    rocksdb_readoptions_t *ro_cached; /* read tier: memtable and block cache only (view.h "cached") */
    pthread_t th;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    _Atomic int refs; /* the list's + readers' */
    /* under mu */
    int stop, deleted, rebuild;
    int kicked; /* the durable hook fired since the thread last looked */
    int state;
    view_meta shown; /* the last committed meta */
    uint64_t end[SPW_STREAM_PARTITIONS_MAX]; /* partition ends at the last cycle */
    uint64_t behind_since_ms; /* when the thread last found itself caught up (0: is) */
    char last_error[256];
    view_waiter *waiters;
    /* apply thread only */
    view_meta meta;     /* what the store holds once the current batch commits */
    spw_stream *s;
    spw_hold *holds[SPW_STREAM_PARTITIONS_MAX];
    uint64_t flushed[SPW_STREAM_PARTITIONS_MAX]; /* offsets a flush made durable */
    /* a flush asked for without waiting (view_apply.c flush_done): the
     * offsets it covers, for the holds once it is on disk */
    int fl_pending;
    uint32_t fl_nparts;
    uint64_t fl_next[SPW_STREAM_PARTITIONS_MAX];
    int dirty; /* batches since the last flush */
    int chain_bound; /* max_successive_merges is VIEW_CHAIN_MAX (not 0) in the open store */
    uint64_t last_flush_ms;
    spw_cursor cur;
    view_kset known; /* keys known to be in the store */
    /* counters (atomic: /metrics) */
    _Atomic uint64_t store_writes, batches, flushes;
    _Atomic uint64_t wake_durable; /* cycles the log's durable hook set off */
    struct spw_view *next_dead;
} spw_view;

struct spw_views {
    spw_catalog *cat;
    spw_log *log; /* its durable hook wakes the apply threads */
    uint64_t flush_ms;
    char dir[4096];
    pthread_mutex_t mu;
    /* held besides mu while v/n change; alone by the log's durable hook
     * (a leaf but for the views' v->mu) */
    pthread_mutex_t kick_mu;
    spw_view *v[SPW_VIEWS_MAX];
    uint32_t n;
    spw_view *dying;
};

/* view_def.c */
int spw__view_def_parse(view_def *d, const char *name, const char *body, size_t len, char *err, size_t cap);
void spw__view_def_json(const view_def *d, spw_buf *b);
/* Compiles d's pointers into d->ptrs: again after every copy of a
 * view_def (a compiled pointer points into its own storage). */
void spw__view_def_compile(view_def *d);
int spw__view_duration(const char *s, size_t n, int64_t *ms); /* "10s" → 10000; 0 or -1 */
void spw__view_put_duration(spw_buf *b, int64_t ms);         /* as a JSON string, its largest exact unit */
int spw__view_window_index(const view_def *d, const char *text); /* level, or -1 */

/* view_store.c: numbers, entries, meta */
int spw__view_num_parse(const spw_json_span *v, view_num *out); /* 0, or -1 if not a number */
void spw__view_num_add(view_num *a, const view_num *b);
int spw__view_num_cmp(const view_num *a, const view_num *b);
void spw__view_num_json(spw_buf *b, const view_num *n);
void spw__view_agg_one(view_agg *a, const view_num *x);
void spw__view_agg_merge(view_agg *a, const view_agg *b);
void spw__view_agg_encode(const view_agg *a, uint8_t out[VIEW_AGG_LEN]);
int spw__view_agg_decode(const void *p, size_t n, view_agg *a);
void spw__view_agg_json(spw_buf *b, const view_agg *a, int minmax);
size_t spw__view_bucket_key(uint8_t *out, int level, int64_t start, const void *key, size_t klen);
/* 'P', start (8, as in a bucket key), key: the length (out has 9 + klen bytes) */
size_t spw__view_page_key(uint8_t *out, int64_t start, const void *key, size_t klen);
int64_t spw__view_key_start(const uint8_t *k); /* the start stored at k (8 bytes) */
/* Is p, n a well-formed page value (whole sub-buckets, in strictly
 * increasing (level, index) order, flags valid)? */
int spw__view_page_check(const void *p, size_t n);
/* Sub-bucket i of page value p: its level, index and aggregate. */
void spw__view_page_sub(const void *p, size_t i, int *level, uint32_t *index, view_agg *a);
/* The first sub-bucket at or after (level, index) in page value p (n bytes): its position (n / VIEW_SUB_LEN if none) */
size_t spw__view_page_find(const void *p, size_t n, int level, uint32_t index);
void spw__view_meta_encode(const view_meta *mt, spw_buf *b);
int spw__view_meta_decode(const void *p, size_t n, view_meta *mt);
void spw__view_meta_reset(view_meta *mt, uint64_t incarnation, uint32_t nparts);
static inline int64_t spw__view_floor(int64_t t, int64_t w)
{
    int64_t q = t / w;
    if (t % w != 0 && t < 0)
        q--;
    return q * w;
}
/* The view's watermark: the lowest partition watermark (INT64_MIN while
 * a partition has applied nothing). */
int64_t spw__view_watermark(const view_meta *mt);

/* view_store.c: the store */
int spw__view_store_open(spw_view *v, char *err, size_t cap);
void spw__view_store_close(spw_view *v);
int spw__view_store_wipe(spw_view *v, const view_meta *fresh, char *err, size_t cap); /* one batch: all gone, fresh meta */
int spw__view_store_get(spw_view *v, const rocksdb_readoptions_t *ro, const void *k, size_t kl, spw_buf *val);
/* A RocksDB read's error e (freed): SPW_VIEW_EUNCACHED for Incomplete (a
 * read with the block cache's tier that needed a file), else logged, -EIO. */
int spw__view_store_err(spw_view *v, char *e);
int spw__view_store_read_meta(spw_view *v, view_meta *mt, int *found);
/* Turns RocksDB's bound on merge chains (VIEW_CHAIN_MAX operands of a key
 * in the memtable) on (bound 1) or off: 0 or -EIO. Apply thread only. */
int spw__view_store_chain(spw_view *v, int bound);

/* ---- the fold table (view_fold.c): store key → pending change ---- */
#define VIEW_KEY_MAX 4096

typedef struct fent {
    uint64_t h;
    size_t koff;
    uint16_t klen; /* at most 10 + VIEW_KEY_MAX */
    /* a page entry: are its sub-buckets in the fold's sub-bucket hash
     * table (view_fold.c sub_get)? */
    uint16_t hashed;
    /* a page entry: its sub-buckets (fbkt index + 1; 0: none); a key's
     * 'A' entry: sub_head is its last page entry (fent index + 1), of start pstart */
    uint32_t sub_head, sub_last;
    /* a page entry: its sub-buckets' highest index + 1 (0: none), how
     * many it has, and the index of sub_last's */
    uint32_t sub_end, nsubs, last_idx;
    int64_t pstart;
    union {
        struct { /* latest */
            uint32_t part;
            uint64_t offset, id;
            int64_t ts;
            size_t voff;
            uint32_t vlen;
        };
        view_agg agg; /* sum, aggregate */
    };
} fent;

/* A sub-bucket of the smallest window in a page entry of the fold. */
typedef struct fbkt {
    uint64_t key;  /* the page's fent index << 32 | the bucket's index in the page */
    uint32_t next; /* the page's next sub-bucket (index + 1; 0: none) */
    uint32_t hashed; /* in the hash table (its page's are) */
    view_agg agg;
} fbkt;

typedef struct fold {
    fent *e;
    uint32_t n, cap;
    uint32_t *slot; /* index + 1; 0 empty */
    uint32_t nslot;
    fbkt *sub; /* sub-buckets of page entries, and the hash table of those of hashed pages */
    uint32_t nsub, subcap, *sslot, nsslot, nhashed;
    spw_buf arena;
    uint64_t bytes;
    /* the look ahead (spw__view_fold_ahead): records ahead by their offset
     * (tag), their store key's hash and, once read, their slot's entry */
    struct {
        uint64_t tag, h;
        uint32_t ent; /* entry index + 1; 0: not read or none */
    } ahead[16];
} fold;

void spw__view_fold_reset(fold *f);
void spw__view_fold_free(fold *f);
fent *spw__view_fold_get(fold *f, const void *k, size_t kl, int *isnew);
uint64_t spw__view_hash(const void *p, size_t n);
/* Does latest candidate (ts, id) a come after b in the view's order? */
int spw__view_latest_after(int order_by, int64_t ats, uint64_t aid, int64_t bts, uint64_t bid);
/* Folds one record of partition p into f and mt's counters and watermark.
 * kbuf: 2 * (VIEW_KEY_MAX + 16) bytes of scratch. sample > 1: only view
 * keys whose hash is a multiple of sample go into f (counters and
 * watermarks take every record). */
void spw__view_fold_record(const view_def *d, view_meta *mt, fold *f, uint32_t p, const spw_record_view *rv,
                           char *kbuf, uint32_t sample);
/* Prefetches what folding the records ahead of the last one c returned
 * will touch (their table slot, entry, key bytes and page entry, in three
 * steps some records apart: each step's load is in cache when the next
 * step reads it), so the fold's lookups do not wait on memory one after
 * another. Views grouped by the record's key only; a hint, never a
 * change to f's contents. */
void spw__view_fold_ahead(const view_def *d, fold *f, const spw_cursor *c);
/* Rolls the page entries up into the windows above the page level; kb:
 * VIEW_KEY_MAX + 16 bytes of scratch. */
void spw__view_rollup(const view_def *d, fold *f, uint8_t *kb);
/* Every page entry's sub-buckets side by side: ord (f->nsub) gets each
 * sub-bucket as (index << 32 | fbkt index), page by page in entry
 * order, and start (f->n) each entry's first place in it. One pass over
 * the sub-buckets in their order in memory, so that the page values
 * need not follow each page's list through memory (a cache miss a
 * sub-bucket, each waiting on the one before). */
void spw__view_page_order(const fold *f, uint32_t *start, uint64_t *ord);
/* The page value of page entry e (its sub-buckets of every level up to
 * the page level, rolled up from the smallest) into val (replaced).
 * subs: e's e->nsubs sub-buckets from spw__view_page_order, or NULL
 * (its list is followed). */
void spw__view_page_value(const view_def *d, const fold *f, const fent *e, const uint64_t *subs, spw_buf *val);

int spw__view_kset_has(const view_kset *ks, const void *k, size_t kl);
void spw__view_kset_add(view_kset *ks, const void *k, size_t kl);
void spw__view_kset_clear(view_kset *ks);
void spw__view_kset_free(view_kset *ks);

/* view_forward.c: sends final buckets (forward views); 0, 1 when it sent
 * as many as one call may and more may be waiting (call again without a
 * nap), or an error (err says why; *retry_ms set to when to try again).
 * Apply thread only. */
int spw__view_forward(spw_view *v, uint64_t *retry_ms, char *err, size_t cap);

/* view_apply.c */
void *spw__view_apply_thread(void *arg);

/* view.c */
spw_view *spw__view_ref(spw_views *m, const char *name); /* referenced, or NULL */
void spw__view_unref(spw_view *v);

#endif
