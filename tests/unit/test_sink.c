/*
 * The sink loop's pure parts (src/sink/rules.h): batch triggers, backoff
 * bounds, delivery with bisection and dead letters against a fake target,
 * and the progress file's text form.
 */
#include "core/crc32c.h"
#include "sink/rules.h"

#include <string.h>

#include "core/error.h"
#include "test.h"

static void test_batch_due(void)
{
    spw_sink_batch_cfg c = {.max_events = 10, .max_bytes = 1000, .max_wait_ms = 200};
    CHECK(!spw_sink_batch_due(&c, 0, 0, 5000)); /* nothing to write */
    CHECK(!spw_sink_batch_due(&c, 9, 999, 199));
    CHECK(spw_sink_batch_due(&c, 10, 0, 0));    /* full by events */
    CHECK(spw_sink_batch_due(&c, 1, 1000, 0));  /* full by bytes */
    CHECK(spw_sink_batch_due(&c, 1, 1, 200));   /* old enough */
}

static void test_backoff(void)
{
    for (uint32_t a = 0; a < 70; a++) {
        for (uint64_t rnd = 0; rnd < 2000; rnd += 37) {
            uint64_t d = 100;
            for (uint32_t i = 0; i < a && d < 30000; i++)
                d *= 2;
            if (d > 30000)
                d = 30000;
            uint64_t ms = spw_sink_backoff_ms(100, 30000, a, rnd * 7919);
            CHECK(ms >= d / 2);
            CHECK(ms <= d);
            CHECK(ms <= 30000);
        }
    }
    /* jitter: draws differ */
    CHECK(spw_sink_backoff_ms(100, 30000, 3, 1) != spw_sink_backoff_ms(100, 30000, 3, 2));
    /* degenerate bounds stay sane */
    CHECK(spw_sink_backoff_ms(0, 0, 5, 12345) <= 1);
    CHECK_EQ(spw_sink_backoff_ms(500, 100, 0, 0), 250);
}

/* A fake target: records whose index is in bad[] are refused; down > 0
 * answers RETRY that many times first; partial makes REJECT report the
 * delivered prefix. */
typedef struct fake {
    uint32_t n;
    int bad[1000];
    int delivered[1000];
    int dead[1000];
    uint32_t committed;
    int down;
    int partial;
    uint32_t writes, waits, dead_fail;
    uint32_t stop_after_waits;
} fake;

static int f_write(void *arg, uint32_t from, uint32_t n, uint32_t *done, char *err, size_t cap)
{
    fake *f = arg;
    f->writes++;
    CHECK(from >= f->committed); /* never behind the committed position */
    if (f->down > 0) {
        f->down--;
        snprintf(err, cap, "down");
        return 1;
    }
    uint32_t first_bad = UINT32_MAX;
    for (uint32_t i = from; i < from + n; i++)
        if (f->bad[i]) {
            first_bad = i;
            break;
        }
    if (first_bad == UINT32_MAX) {
        for (uint32_t i = from; i < from + n; i++)
            f->delivered[i]++;
        return 0;
    }
    if (f->partial) {
        for (uint32_t i = from; i < first_bad; i++)
            f->delivered[i]++;
        *done = first_bad - from;
    }
    snprintf(err, cap, "bad record %u", first_bad);
    return 2;
}

static int f_dead(void *arg, uint32_t i, const char *err)
{
    fake *f = arg;
    if (f->dead_fail) {
        f->dead_fail--;
        return -EIO;
    }
    char want[64];
    snprintf(want, sizeof want, "bad record %u", i);
    CHECK(strcmp(err, want) == 0); /* the target's sentence for that record */
    f->dead[i]++;
    return 0;
}

static int f_progress(void *arg, uint32_t upto)
{
    fake *f = arg;
    CHECK(upto > f->committed); /* moves forward only */
    f->committed = upto;
    return 0;
}

static int f_wait(void *arg, uint32_t attempt, const char *err)
{
    fake *f = arg;
    (void)attempt;
    (void)err;
    f->waits++;
    return f->stop_after_waits && f->waits >= f->stop_after_waits;
}

static const spw_sink_deliver_ops fops = {f_write, f_dead, f_progress, f_wait};

static void check_exactly_once(const fake *f)
{
    CHECK_EQ(f->committed, f->n);
    for (uint32_t i = 0; i < f->n; i++) {
        CHECK_EQ(f->delivered[i], f->bad[i] ? 0 : 1);
        CHECK_EQ(f->dead[i], f->bad[i] ? 1 : 0);
    }
}

static void test_deliver(void)
{
    for (int partial = 0; partial < 2; partial++) {
        /* all good: one write */
        static fake f;
        memset(&f, 0, sizeof f);
        f.n = 1000;
        f.partial = partial;
        CHECK_EQ(spw_sink_deliver(&fops, &f, f.n), 0);
        CHECK_EQ(f.writes, 1);
        check_exactly_once(&f);

        /* one bad record among 1000: found in about log2(1000) writes */
        memset(&f, 0, sizeof f);
        f.n = 1000;
        f.partial = partial;
        f.bad[617] = 1;
        CHECK_EQ(spw_sink_deliver(&fops, &f, f.n), 0);
        check_exactly_once(&f);
        CHECK(f.writes <= 40);

        /* several bad, first and last included, and adjacent ones */
        memset(&f, 0, sizeof f);
        f.n = 1000;
        f.partial = partial;
        f.bad[0] = f.bad[1] = f.bad[500] = f.bad[999] = f.bad[333] = 1;
        CHECK_EQ(spw_sink_deliver(&fops, &f, f.n), 0);
        check_exactly_once(&f);

        /* every record bad */
        memset(&f, 0, sizeof f);
        f.n = 64;
        f.partial = partial;
        for (int i = 0; i < 64; i++)
            f.bad[i] = 1;
        CHECK_EQ(spw_sink_deliver(&fops, &f, f.n), 0);
        check_exactly_once(&f);

        /* target down for a while, then a bad record, then a DLQ failure */
        memset(&f, 0, sizeof f);
        f.n = 100;
        f.partial = partial;
        f.down = 5;
        f.bad[42] = 1;
        f.dead_fail = 2;
        CHECK_EQ(spw_sink_deliver(&fops, &f, f.n), 0);
        check_exactly_once(&f);
        CHECK_EQ(f.waits, 5 + 2);
    }
    /* stopping while the target is down: cancelled, nothing committed */
    static fake g;
    memset(&g, 0, sizeof g);
    g.n = 10;
    g.down = 1000;
    g.stop_after_waits = 3;
    CHECK_EQ(spw_sink_deliver(&fops, &g, g.n), SPW_ECANCELED);
    CHECK_EQ(g.committed, 0);
    CHECK_EQ(g.waits, 3);
}

static void test_progress(void)
{
    uint64_t next[3] = {0, 12345678901234ull, 7};
    spw_buf b = SPW_BUF_INIT;
    CHECK_OK(spw_sink_progress_encode(&b, 7301234567890123ull, next, 3));
    uint64_t got[8], inc = 0;
    uint32_t n = 0;
    CHECK_EQ(spw_sink_progress_parse((const char *)b.p, b.len, &inc, got, 8, &n), 0);
    CHECK_EQ(n, 3);
    CHECK(inc == 7301234567890123ull);
    for (int i = 0; i < 3; i++)
        CHECK(got[i] == next[i]);
    static const char want[] =
        "spillway-sink-progress 2\nincarnation 7301234567890123\npartitions 3\n0 0\n1 12345678901234\n2 7\ncrc32c ";
    CHECK(memcmp(b.p, want, sizeof want - 1) == 0);
    /* too many partitions for the caller */
    CHECK_EQ(spw_sink_progress_parse((const char *)b.p, b.len, &inc, got, 2, &n), SPW_ECORRUPT);
    /* every flipped byte and every truncation is caught */
    for (size_t i = 0; i < b.len; i++) {
        char t[256];
        memcpy(t, b.p, b.len);
        t[i] ^= 0x01;
        CHECK_EQ(spw_sink_progress_parse(t, b.len, &inc, got, 8, &n), SPW_ECORRUPT);
        CHECK_EQ(spw_sink_progress_parse((const char *)b.p, i, &inc, got, 8, &n), SPW_ECORRUPT);
    }
    spw_buf_fini(&b);
    /* zero partitions is valid */
    CHECK_OK(spw_sink_progress_encode(&b, 0, next, 0));
    CHECK_EQ(spw_sink_progress_parse((const char *)b.p, b.len, &inc, got, 8, &n), 0);
    CHECK_EQ(n, 0);
    CHECK(inc == 0);
    spw_buf_fini(&b);
    /* version 1 (no incarnation line) is read as incarnation 0 */
    static const char v1[] = "spillway-sink-progress 1\npartitions 2\n0 5\n1 9\n";
    spw_buf_puts(&b, v1);
    char crc[32];
    snprintf(crc, sizeof crc, "crc32c %08x\n", (unsigned)spw_crc32c(v1, sizeof v1 - 1));
    spw_buf_puts(&b, crc);
    inc = 1;
    CHECK_EQ(spw_sink_progress_parse((const char *)b.p, b.len, &inc, got, 8, &n), 0);
    CHECK(n == 2 && got[0] == 5 && got[1] == 9 && inc == 0);
    spw_buf_fini(&b);
}

int main(void)
{
    test_batch_due();
    test_backoff();
    test_deliver();
    test_progress();
    printf("test_sink: ok\n");
    return 0;
}
