/*
 * The coalescing buffer (src/admit/coalbuf.h): acceptance order of the
 * survivors, newest-per-key replacement, events that must not be
 * replaced, keyless events, table growth, a random run against a plain
 * model, and memory running out.
 */
#include "admit/coalbuf.h"

#include "core/alloc.h"
#include "test.h"

typedef struct ev {
    spw_coalbuf_node node;
    char key[16];
    int id;
} ev;

static ev *mk(int id, const char *key, int supersedable)
{
    ev *e = calloc(1, sizeof *e);
    e->id = id;
    if (key) {
        snprintf(e->key, sizeof e->key, "%s", key);
        e->node.key = (const uint8_t *)e->key;
        e->node.key_len = (int32_t)strlen(e->key);
    } else {
        e->node.key_len = -1;
    }
    e->node.supersedable = (uint8_t)supersedable;
    return e;
}

/* Puts e; returns the id of the event it replaced (freed), or -1. */
static int put(spw_coalbuf *b, ev *e)
{
    spw_coalbuf_node *g = spw_coalbuf_put(b, &e->node);
    if (!g)
        return -1;
    CHECK(g->next == NULL && g->prev == NULL);
    int id = ((ev *)g)->id;
    free(g);
    return id;
}

/* Takes everything; writes the ids in order to out (cap n), frees; returns the count. */
static size_t take(spw_coalbuf *b, int *out, size_t n)
{
    size_t k = 0;
    spw_coalbuf_node *x = spw_coalbuf_take(b);
    CHECK(b->len == 0 && b->head == NULL && b->tail == NULL);
    while (x) {
        spw_coalbuf_node *next = x->next;
        CHECK(k < n);
        out[k++] = ((ev *)x)->id;
        free(x);
        x = next;
    }
    return k;
}

static void test_basic(void)
{
    spw_coalbuf b;
    spw_coalbuf_init(&b, 42);
    int out[16];
    CHECK(spw_coalbuf_take(&b) == NULL);
    CHECK_EQ(put(&b, mk(1, "a", 1)), -1);
    CHECK_EQ(put(&b, mk(2, "b", 1)), -1);
    CHECK_EQ(put(&b, mk(3, "c", 1)), -1);
    CHECK_EQ(b.len, 3);
    /* a newer "a" replaces the older one and goes to the tail */
    CHECK_EQ(put(&b, mk(4, "a", 1)), 1);
    CHECK_EQ(b.len, 3);
    CHECK_EQ(put(&b, mk(5, "b", 1)), 2);
    CHECK_EQ(put(&b, mk(6, "a", 1)), 4);
    CHECK_EQ(take(&b, out, 16), 3);
    CHECK(out[0] == 3 && out[1] == 5 && out[2] == 6);
    /* after a take, nothing is remembered: the same key is new again */
    CHECK_EQ(put(&b, mk(7, "a", 1)), -1);
    CHECK_EQ(take(&b, out, 16), 1);
    CHECK_EQ(out[0], 7);
    spw_coalbuf_fini(&b);
}

static void test_not_supersedable_and_keyless(void)
{
    spw_coalbuf b;
    spw_coalbuf_init(&b, 7);
    int out[16];
    /* an event that may not be replaced stays, but the newer one is the
     * key's newest: a third replaces the second, not the first */
    CHECK_EQ(put(&b, mk(1, "k", 0)), -1);
    CHECK_EQ(put(&b, mk(2, "k", 1)), -1);
    CHECK_EQ(put(&b, mk(3, "k", 1)), 2);
    /* a non-supersedable newcomer still replaces a supersedable older one */
    CHECK_EQ(put(&b, mk(4, "k", 0)), 3);
    CHECK_EQ(put(&b, mk(5, "k", 1)), -1);
    /* keyless events are never replaced and replace nothing */
    CHECK_EQ(put(&b, mk(6, NULL, 1)), -1);
    CHECK_EQ(put(&b, mk(7, NULL, 1)), -1);
    /* the empty key is a key, distinct from no key */
    CHECK_EQ(put(&b, mk(8, "", 1)), -1);
    CHECK_EQ(put(&b, mk(9, "", 1)), 8);
    /* keys differing in length only are different keys */
    CHECK_EQ(put(&b, mk(10, "kk", 1)), -1);
    CHECK_EQ(take(&b, out, 16), 7);
    int want[] = {1, 4, 5, 6, 7, 9, 10};
    for (int i = 0; i < 7; i++)
        CHECK_EQ(out[i], want[i]);
    spw_coalbuf_fini(&b);
}

static void test_growth(void)
{
    spw_coalbuf b;
    spw_coalbuf_init(&b, 1);
    enum { K = 20000 };
    static int out[K];
    char key[16];
    for (int i = 0; i < K; i++) {
        snprintf(key, sizeof key, "key-%d", i);
        CHECK_EQ(put(&b, mk(i, key, 1)), -1);
    }
    CHECK(b.nbuckets >= K);
    /* update every key in reverse order: each replaces its first value */
    for (int i = K - 1; i >= 0; i--) {
        snprintf(key, sizeof key, "key-%d", i);
        CHECK_EQ(put(&b, mk(K + i, key, 1)), i);
    }
    CHECK_EQ(b.len, K);
    CHECK_EQ(take(&b, out, K), K);
    for (int i = 0; i < K; i++)
        CHECK_EQ(out[i], 2 * K - 1 - i);
    /* a large table is let go after a take */
    CHECK_EQ(b.nbuckets, 0);
    spw_coalbuf_fini(&b);
}

/* A random run against a plain model: a list of (id, key, supersedable),
 * where putting a keyed event removes the newest earlier one of its key
 * if that one is supersedable. */
static void test_model(void)
{
    enum { OPS = 200000, KEYS = 50, MAXQ = OPS };
    static int m_id[MAXQ], m_key[MAXQ], m_sup[MAXQ], out[MAXQ];
    size_t mlen = 0;
    spw_coalbuf b;
    spw_coalbuf_init(&b, 99);
    uint64_t x = 88172645463325252ull;
    int next_id = 0;
    for (int op = 0; op < OPS; op++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if (x % 1000 == 0) {
            size_t n = take(&b, out, MAXQ);
            CHECK_EQ(n, mlen);
            for (size_t i = 0; i < n; i++)
                CHECK_EQ(out[i], m_id[i]);
            mlen = 0;
            continue;
        }
        int key = (int)(x >> 20) % (KEYS + 1) - 1; /* -1: no key */
        int sup = (x >> 40) % 4 != 0;
        char ks[16];
        snprintf(ks, sizeof ks, "%d", key);
        int id = next_id++;
        int got = put(&b, mk(id, key < 0 ? NULL : ks, sup));
        int want = -1;
        if (key >= 0)
            for (size_t i = mlen; i-- > 0;)
                if (m_key[i] == key) {
                    if (m_sup[i]) {
                        want = m_id[i];
                        memmove(&m_id[i], &m_id[i + 1], (mlen - i - 1) * sizeof *m_id);
                        memmove(&m_key[i], &m_key[i + 1], (mlen - i - 1) * sizeof *m_key);
                        memmove(&m_sup[i], &m_sup[i + 1], (mlen - i - 1) * sizeof *m_sup);
                        mlen--;
                    }
                    break;
                }
        CHECK_EQ(got, want);
        m_id[mlen] = id;
        m_key[mlen] = key;
        m_sup[mlen] = sup;
        mlen++;
        CHECK_EQ(b.len, mlen);
    }
    size_t n = take(&b, out, MAXQ);
    CHECK_EQ(n, mlen);
    for (size_t i = 0; i < n; i++)
        CHECK_EQ(out[i], m_id[i]);
    spw_coalbuf_fini(&b);
}

/* No memory for the table: events are queued unmapped (not coalesced),
 * in order, and nothing breaks; with memory back, coalescing resumes. */
static void test_no_memory(void)
{
    spw_coalbuf b;
    spw_coalbuf_init(&b, 5);
    int out[8];
    spw_alloc_fail_after(0);
    CHECK_EQ(put(&b, mk(1, "a", 1)), -1);
    CHECK_EQ(b.nbuckets, 0);
    spw_alloc_fail_after(-1);
    CHECK_EQ(put(&b, mk(2, "a", 1)), -1); /* 1 was never mapped: both stay */
    CHECK_EQ(put(&b, mk(3, "a", 1)), 2);
    CHECK_EQ(take(&b, out, 8), 2);
    CHECK(out[0] == 1 && out[1] == 3);
    spw_coalbuf_fini(&b);
}

int main(void)
{
    test_basic();
    test_not_supersedable_and_keyless();
    test_growth();
    test_model();
    test_no_memory();
    printf("test_coalbuf: ok\n");
    return 0;
}
