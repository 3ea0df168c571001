/*
 * The consistent-hash ring (src/core/ring.h): going from 3 to 4 shards
 * moves 20-30% of a million keys (ideal: 1/4), and only to the new shard;
 * each of 3 or 4 shards gets its fair share within ±10%; the map is
 * deterministic (the documented hash), and bad shard counts are refused.
 *
 * One ring serves the postgres sink's shards and the C client's servers
 * (core/ring.h): each keeps its documented placement (fixed placements
 * below, taken from the two separate implementations this one replaced),
 * and the client routes every key exactly as spw_ring_shard does over a
 * ring of "host:port#v" labels with 160 points a server, and so does the
 * command line's cluster ring (cli/cluster.h).
 */
#include "core/ring.h"

#include "cli/cluster.h"
#include "client/client_int.h"
#include "core/error.h"
#include "test.h"

#define MOVED_3_TO_4 22230u /* the keys client_moves sees move (22.2%) */

static const char *const keys[] = {"", "a", "user-1", "user-42", "device-7", "k0", "k1", "k2", "orders/123",
                                   "\xc3\xa9t\xc3\xa9"};
#define NK (sizeof keys / sizeof keys[0])

static const char *const servers[] = {"127.0.0.1:7001", "127.0.0.1:7002", "localhost:7003"};

static int client_label(void *arg, uint32_t i, uint32_t v, char *out, size_t cap)
{
    (void)arg;
    return snprintf(out, cap, "%s#%u", servers[i], v);
}

/* Both documented placements, and the client's route is the ring's. */
static void placements(void)
{
    static const uint32_t shard4[NK] = {1, 2, 2, 0, 2, 2, 3, 3, 1, 3};
    static const uint32_t server3[NK] = {0, 2, 1, 2, 1, 2, 2, 0, 1, 1};
    spw_ring r4, rc;
    CHECK_OK(spw_ring_init(&r4, 4));
    CHECK_OK(spw_ring_build(&rc, 3, SPW_RING_CLIENT_VNODES, client_label, NULL));
    spillway_producer *p;
    CHECK_EQ(spillway_producer_new("127.0.0.1:7001,127.0.0.1:7002,localhost:7003", NULL, &p), 0);
    for (size_t i = 0; i < NK; i++) {
        size_t n = strlen(keys[i]);
        CHECK_EQ(spw_ring_shard(&r4, keys[i], n), shard4[i]);
        CHECK_EQ(spw_ring_shard(&rc, keys[i], n), server3[i]);
        CHECK_EQ(spw__producer_route(p, keys[i], (int32_t)n), server3[i]);
    }
    /* The command line's ring (cli/cluster.h: produce, bench, view with
     * --server a,b,c) places keys as the library does, http:// or not. */
    static spw_cli_cluster cl;
    CHECK_EQ(spw__cli_cluster_parse("test", "127.0.0.1:7001,http://127.0.0.1:7002,localhost:7003", NULL, &cl), 0);
    for (size_t i = 0; i < NK; i++)
        CHECK_EQ(spw__cli_cluster_node(&cl, keys[i], strlen(keys[i])), server3[i]);
    spw__cli_cluster_free(&cl);
    /* --ring: the placement of another list of the same length */
    CHECK_EQ(spw__cli_cluster_parse("test", "127.0.0.1:8001,127.0.0.1:8002,127.0.0.1:8003",
                                    "127.0.0.1:7001,127.0.0.1:7002,localhost:7003", &cl), 0);
    for (size_t i = 0; i < NK; i++)
        CHECK_EQ(spw__cli_cluster_node(&cl, keys[i], strlen(keys[i])), server3[i]);
    spw__cli_cluster_free(&cl);
    CHECK_EQ(spw__cli_cluster_parse("test", "127.0.0.1:8001,127.0.0.1:8002", "127.0.0.1:7001", &cl), 2);
    CHECK_EQ(spw__cli_cluster_parse("test", "127.0.0.1:8001,127.0.0.1:8001", NULL, &cl), 2);
    CHECK_EQ(spw__cli_cluster_parse("test", "127.0.0.1:8001,", NULL, &cl), 2);
    /* a hundred thousand keys: the same fold as the old implementations gave */
    unsigned long long a = 0, b = 0;
    char k[32];
    for (unsigned i = 0; i < 100000; i++) {
        int n = snprintf(k, sizeof k, "user-%u", i);
        uint32_t s = spw__producer_route(p, k, n);
        CHECK_EQ(spw_ring_shard(&rc, k, (size_t)n), s);
        a = a * 31 + s;
        b = b * 31 + spw_ring_shard(&r4, k, (size_t)n);
    }
    CHECK(a == 5622807250070357775ull);
    CHECK(b == 12149844552045889423ull);
    spillway_producer_close(p, 0);
    spw_ring_free(&r4);
    spw_ring_free(&rc);
    CHECK_EQ(spw_ring_build(&rc, 0, 10, client_label, NULL), SPW_EINVAL);
    CHECK_EQ(spw_ring_build(&rc, 3, 0, client_label, NULL), SPW_EINVAL);
}

/* A fourth server "localhost:7004" after the three above. */
static const char *const servers4[] = {"127.0.0.1:7001", "127.0.0.1:7002", "localhost:7003", "localhost:7004"};

static int client_label4(void *arg, uint32_t i, uint32_t v, char *out, size_t cap)
{
    (void)arg;
    return snprintf(out, cap, "%s#%u", servers4[i], v);
}

/*
 * Adding a node to the client's ring (include/spillway.h "Routing",
 * docs/operations.md "Growing a deployment: adding a node"): going from
 * 3 to 4 servers moves 1/4 of the keys ideally; over the fixed keys
 * "user-0" .. "user-99999" the documented band is 20% to 30% (160 points
 * a server), every moved key goes to the new server, and the count is
 * pinned (the hash is documented, so it cannot drift).
 */
static void client_moves(void)
{
    spw_ring r3, r4;
    CHECK_OK(spw_ring_build(&r3, 3, SPW_RING_CLIENT_VNODES, client_label, NULL));
    CHECK_OK(spw_ring_build(&r4, 4, SPW_RING_CLIENT_VNODES, client_label4, NULL));
    uint32_t moved = 0;
    char k[32];
    for (unsigned i = 0; i < 100000; i++) {
        int n = snprintf(k, sizeof k, "user-%u", i);
        uint32_t a = spw_ring_shard(&r3, k, (size_t)n), b = spw_ring_shard(&r4, k, (size_t)n);
        if (a != b) {
            CHECK_EQ(b, 3);
            moved++;
        }
    }
    printf("client ring, 3 -> 4 servers: %u of 100000 keys moved (%.1f%%)\n", moved, moved / 1000.0);
    CHECK(moved >= 20000 && moved <= 30000);
    CHECK_EQ(moved, MOVED_3_TO_4);
    spw_ring_free(&r3);
    spw_ring_free(&r4);
}

#define NKEYS 1000000

int main(void)
{
    placements();
    client_moves();
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
