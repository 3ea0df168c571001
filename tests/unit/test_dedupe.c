/*
 * The dedupe table (admit/dedupe.h): first use, finished answers,
 * in-flight and conflicting keys, expiry, the entry bound, scopes, and the
 * rebuild of complete and crash-cut requests from batches.
 */
#include "admit/dedupe.h"
#include "core/siphash.h"
#include "core/alloc.h"
#include "test.h"

static void test_lifecycle(void)
{
    spw_dd *d = spw_dd_new(1000);
    spw_dd_entry *e = NULL;
    spw_dd_result res = {0};
    CHECK_EQ(spw_dd_begin(d, 1, 42, 3, 1000, &e, &res), SPW_DD_NEW);
    CHECK(e != NULL);
    /* In flight: a second use waits; another size is a conflict. */
    spw_dd_entry *e2 = NULL;
    CHECK_EQ(spw_dd_begin(d, 1, 42, 3, 1001, &e2, &res), SPW_DD_BUSY);
    CHECK_EQ(spw_dd_begin(d, 1, 42, 4, 1001, &e2, &res), SPW_DD_CONFLICT);
    /* Another scope, the same key: independent. */
    CHECK_EQ(spw_dd_begin(d, 2, 42, 3, 1001, &e2, &res), SPW_DD_NEW);
    spw_dd_finish(d, e2, NULL, 0); /* failed: forgotten */
    CHECK_EQ(spw_dd_begin(d, 2, 42, 3, 1002, &e2, &res), SPW_DD_NEW);
    spw_dd_finish(d, e2, NULL, 0);
    spw_dd_slot slots[2] = {{.partition = 0, .count = 2, .first_offset = 10}, {.partition = 3, .count = 1, .first_offset = 7}};
    spw_dd_result r = {.n_events = 3, .first_ticket = 555, .complete = 1, .ids_known = 1, .nslots = 2, .slots = slots};
    spw_dd_finish(d, e, &r, 5000);
    CHECK_EQ(spw_dd_begin(d, 1, 42, 3, 4999, &e2, &res), SPW_DD_DONE);
    CHECK_EQ(res.n_events, 3);
    CHECK_EQ(res.first_ticket, 555);
    CHECK_EQ(res.nslots, 2);
    CHECK_EQ(res.slots[1].partition, 3);
    CHECK_EQ(res.slots[1].first_offset, 7);
    spw_free(res.slots);
    /* Expired: the key is new again. */
    CHECK_EQ(spw_dd_begin(d, 1, 42, 3, 5000, &e2, &res), SPW_DD_NEW);
    spw_dd_finish(d, e2, NULL, 0);
    spw_dd_stats st;
    spw_dd_stats_get(d, &st);
    CHECK_EQ(st.entries, 0);
    CHECK_EQ(st.hits, 1);
    spw_dd_free(d);
}

static void test_bound(void)
{
    spw_dd *d = spw_dd_new(1024);
    spw_dd_result res = {0};
    spw_dd_slot slot = {.partition = 0, .count = 1, .first_offset = 0};
    spw_dd_result r = {.n_events = 1, .complete = 1, .ids_known = 1, .nslots = 1, .slots = &slot};
    /* 1024 keys, each remembered until 1,000,000 ms. */
    for (uint64_t k = 1; k <= 1024; k++) {
        spw_dd_entry *e;
        CHECK_EQ(spw_dd_begin(d, 9, k, 1, 100, &e, &res), SPW_DD_NEW);
        spw_dd_finish(d, e, &r, 1000000);
    }
    spw_dd_stats st;
    spw_dd_stats_get(d, &st);
    CHECK_EQ(st.entries, 1024);
    /* Full of keys inside their windows: a new key is refused (counted),
     * never an old one forgotten — every key is still answered. */
    spw_dd_entry *e;
    for (uint64_t k = 1025; k <= 2000; k++)
        CHECK_EQ(spw_dd_begin(d, 9, k, 1, 5000, &e, &res), SPW_DD_FULL);
    spw_dd_stats_get(d, &st);
    CHECK_EQ(st.entries, 1024);
    CHECK_EQ(st.refused, 2000 - 1024);
    CHECK_EQ(st.evicted, 0);
    for (uint64_t k = 1; k <= 1024; k++) {
        CHECK_EQ(spw_dd_begin(d, 9, k, 1, 5000, &e, &res), SPW_DD_DONE);
        spw_free(res.slots);
    }
    /* Once their window has passed they make room, in any stripe. */
    CHECK_EQ(spw_dd_begin(d, 9, 1025, 1, 1000000, &e, &res), SPW_DD_NEW);
    spw_dd_finish(d, e, &r, 3000000);
    spw_dd_stats_get(d, &st);
    CHECK_EQ(st.entries, 1);
    CHECK_EQ(st.evicted, 1024);
    /* The rebuild at start never refuses: the table may start above the bound. */
    for (uint64_t k = 1; k <= 2000; k++)
        spw_dd_restore(d, 8, k, 1, k, 0, k, 1, 3000000);
    spw_dd_stats_get(d, &st);
    CHECK_EQ(st.entries, 2001);
    CHECK_EQ(spw_dd_begin(d, 8, 7, 1, 1000000, &e, &res), SPW_DD_DONE);
    spw_free(res.slots);
    CHECK_EQ(spw_dd_begin(d, 8, 5000, 1, 1000000, &e, &res), SPW_DD_FULL);
    /* Dropping a scope forgets its keys. */
    spw_dd_drop_scope(d, 9);
    spw_dd_drop_scope(d, 8);
    spw_dd_stats_get(d, &st);
    CHECK_EQ(st.entries, 0);
    spw_dd_free(d);
}

static void test_restore(void)
{
    spw_dd *d = spw_dd_new(1000);
    /* A request of 5 events over partitions 0 (3) and 2 (2), both stored. */
    spw_dd_restore(d, 1, 7, 5, 900, 2, 40, 2, 10000);
    spw_dd_restore(d, 1, 7, 5, 897, 0, 100, 3, 10000);
    spw_dd_entry *e = NULL;
    spw_dd_result res = {0};
    CHECK_EQ(spw_dd_begin(d, 1, 7, 5, 50, &e, &res), SPW_DD_DONE);
    CHECK_EQ(res.first_ticket, 897);
    CHECK(res.complete && res.ids_known);
    CHECK_EQ(res.nslots, 2);
    spw_free(res.slots);
    /* A request of 4 whose partition-1 batch was lost: partial. */
    spw_dd_restore(d, 1, 8, 4, 1000, 0, 5, 3, 10000);
    CHECK_EQ(spw_dd_begin(d, 1, 8, 4, 50, &e, &res), SPW_DD_PARTIAL);
    CHECK(!res.complete);
    CHECK_EQ(res.nslots, 1);
    CHECK_EQ(res.slots[0].first_offset, 5);
    spw_free(res.slots);
    /* While it is being completed, retries wait. */
    spw_dd_entry *e2;
    CHECK_EQ(spw_dd_begin(d, 1, 8, 4, 51, &e2, &res), SPW_DD_BUSY);
    /* Completing fails: it stays partial (what the log holds). */
    spw_dd_finish(d, e, NULL, 0);
    CHECK_EQ(spw_dd_begin(d, 1, 8, 4, 52, &e, &res), SPW_DD_PARTIAL);
    spw_free(res.slots);
    spw_dd_slot slots[2] = {{0, 3, 5, 0, 0}, {1, 1, 9, 0, 0}};
    spw_dd_result done = {.n_events = 4, .complete = 1, .ids_known = 0, .nslots = 2, .slots = slots};
    spw_dd_finish(d, e, &done, 10000);
    CHECK_EQ(spw_dd_begin(d, 1, 8, 4, 53, &e, &res), SPW_DD_DONE);
    CHECK(res.complete && !res.ids_known);
    CHECK_EQ(res.nslots, 2);
    spw_free(res.slots);
    spw_dd_free(d);
}

static void test_keys(void)
{
    spw_dd *d = spw_dd_new(10);
    CHECK(spw_dd_http_key(d, "", "a") != spw_dd_http_key(d, "t", "a"));
    CHECK(spw_dd_http_key(d, "a", "") != spw_dd_http_key(d, "", "a"));
    CHECK(spw_dd_http_key(d, "ab", "c") != spw_dd_http_key(d, "a", "bc")); /* the tenant's length is hashed */
    CHECK(spw_dd_producer_key(d, "", 1, 2) != spw_dd_producer_key(d, "", 2, 1));
    CHECK(spw_dd_producer_key(d, "", 1, 2) != 0);
    /* the tenant is in producer keys too: the same producer id and
     * sequence from another tenant is another request */
    CHECK(spw_dd_producer_key(d, "acme", 7, 0) != spw_dd_producer_key(d, "globex", 7, 0));
    /* keyed: the same input under another secret is another key, and
     * under the same secret the same key (what the restart relies on) */
    uint64_t a = spw_dd_http_key(d, "t", "k");
    spw_dd_set_secret(d, 1, 2);
    uint64_t b = spw_dd_http_key(d, "t", "k");
    CHECK(a != b);
    spw_dd_set_secret(d, 3, 4);
    CHECK(spw_dd_http_key(d, "t", "k") != b);
    spw_dd_set_secret(d, 1, 2);
    CHECK_EQ(spw_dd_http_key(d, "t", "k"), b);
    /* SipHash-2-4 under (1, 2) of 'H', 1, 't', 'k' */
    uint8_t in[4] = {'H', 1, 't', 'k'};
    CHECK_EQ(b, spw_siphash24(1, 2, in, 4));
    spw_dd_free(d);
}

/* A request that failed after reaching the log: indeterminate, never
 * forgotten, until a retry resolves it. */
static void test_indeterminate(void)
{
    spw_dd *d = spw_dd_new(100);
    spw_dd_entry *e, *e2;
    spw_dd_result res = {0};
    CHECK_EQ(spw_dd_begin(d, 1, 9, 3, 10, &e, &res), SPW_DD_NEW);
    uint32_t parts[2] = {0, 1};
    spw_dd_fail(d, e, NULL, parts, 2, 777, 1000);
    /* Not forgotten: the retry must resolve it. */
    CHECK_EQ(spw_dd_begin(d, 1, 9, 3, 20, &e, &res), SPW_DD_INDET);
    CHECK_EQ(res.nunknown, 2);
    CHECK_EQ(res.unknown[0], 0);
    CHECK_EQ(res.unknown[1], 1);
    CHECK_EQ(res.attempt_ticket, 777);
    CHECK_EQ(res.nslots, 0);
    spw_dd_result_free(&res);
    /* While one resolves, others wait; a size conflict is still one. */
    CHECK_EQ(spw_dd_begin(d, 1, 9, 3, 21, &e2, &res), SPW_DD_BUSY);
    CHECK_EQ(spw_dd_begin(d, 1, 9, 4, 21, &e2, &res), SPW_DD_CONFLICT);
    /* Could not resolve yet: indeterminate again. */
    spw_dd_unresolved(d, e);
    CHECK_EQ(spw_dd_begin(d, 1, 9, 3, 22, &e, &res), SPW_DD_INDET);
    spw_dd_result_free(&res);
    /* Resolved: partition 0 holds 2 of the 3 events; the completion fails
     * before appending: what the log holds stays (a cut request). */
    spw_dd_slot got = {.partition = 0, .count = 2, .first_offset = 40};
    spw_dd_result r = {.n_events = 3, .nslots = 1, .slots = &got};
    spw_dd_update(d, e, &r);
    spw_dd_finish(d, e, NULL, 0);
    CHECK_EQ(spw_dd_begin(d, 1, 9, 3, 23, &e, &res), SPW_DD_PARTIAL);
    CHECK_EQ(res.nslots, 1);
    CHECK_EQ(res.slots[0].first_offset, 40);
    CHECK_EQ(res.nunknown, 0);
    /* The completion fails after reaching the log: indeterminate, keeping
     * the stored slot known and the attempted partition unknown. */
    uint32_t p1 = 1;
    spw_dd_fail(d, e, &res, &p1, 1, 900, 1000);
    spw_dd_result_free(&res);
    CHECK_EQ(spw_dd_begin(d, 1, 9, 3, 24, &e, &res), SPW_DD_INDET);
    CHECK_EQ(res.nslots, 1);
    CHECK_EQ(res.nunknown, 1);
    CHECK_EQ(res.unknown[0], 1);
    CHECK_EQ(res.attempt_ticket, 900);
    spw_dd_result_free(&res);
    spw_dd_unresolved(d, e);
    /* An indeterminate key expires with its window like any other. */
    CHECK_EQ(spw_dd_begin(d, 1, 9, 3, 1000, &e, &res), SPW_DD_NEW);
    spw_dd_finish(d, e, NULL, 0);
    spw_dd_free(d);
}

int main(void)
{
    test_lifecycle();
    test_bound();
    test_restore();
    test_keys();
    test_indeterminate();
    printf("test_dedupe: ok\n");
    return 0;
}
