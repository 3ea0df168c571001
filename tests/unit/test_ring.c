/*
 * The consistent-hash ring (src/core/ring.h): going from 3 to 4 shards
 * moves 20-30% of a million keys (ideal: 1/4), and only to the new shard;
 * each of 3 or 4 shards gets its fair share within ±10%; the map is
 * deterministic (the documented hash), and bad shard counts are refused.
 */
#include "core/ring.h"

#include "core/error.h"
#include "test.h"

#define NKEYS 1000000

int main(void)
{
    spw_ring r3, r4, again;
    CHECK_EQ(spw_ring_init(&r3, 0), SPW_EINVAL);
    CHECK_EQ(spw_ring_init(&r3, SPW_RING_SHARDS_MAX + 1), SPW_EINVAL);
    CHECK_OK(spw_ring_init(&r3, 3));
    CHECK_OK(spw_ring_init(&r4, 4));
    CHECK_OK(spw_ring_init(&again, 3));
    uint32_t c3[3] = {0}, c4[4] = {0}, moved = 0;
    char key[32];
    for (uint32_t i = 0; i < NKEYS; i++) {
        int n = snprintf(key, sizeof key, "user-%u", i);
        uint32_t a = spw_ring_shard(&r3, key, (size_t)n), b = spw_ring_shard(&r4, key, (size_t)n);
        CHECK(a < 3 && b < 4);
        CHECK_EQ(spw_ring_shard(&again, key, (size_t)n), a);
        c3[a]++;
        c4[b]++;
        if (a != b) {
            CHECK_EQ(b, 3); /* keys only move to the new shard */
            moved++;
        }
    }
    printf("moved %u of %u keys (%.1f%%); 3 shards:", moved, NKEYS, 100.0 * moved / NKEYS);
    for (int s = 0; s < 3; s++)
        printf(" %u", c3[s]);
    printf("; 4 shards:");
    for (int s = 0; s < 4; s++)
        printf(" %u", c4[s]);
    printf("\n");
    fflush(stdout);
    CHECK(moved >= NKEYS / 5 && moved <= NKEYS * 3 / 10);
    for (int s = 0; s < 3; s++)
        CHECK(c3[s] >= NKEYS / 3 * 0.9 && c3[s] <= NKEYS / 3 * 1.1);
    for (int s = 0; s < 4; s++)
        CHECK(c4[s] >= NKEYS / 4 * 0.9 && c4[s] <= NKEYS / 4 * 1.1);
    /* the empty key (records without a key) has a shard too */
    CHECK(spw_ring_shard(&r4, NULL, 0) < 4);
    spw_ring_free(&r3);
    spw_ring_free(&r4);
    spw_ring_free(&again);
    return 0;
}
