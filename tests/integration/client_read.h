/*
 * Test support for the C client library: read a stream back from one
 * server, record by record, through spillway_client_fetch. The records
 * follow the tests' convention: value "{\"i\":N,...}" (N the record's
 * index) and key "k<N % 1000>".
 */
#ifndef SPW_TEST_CLIENT_READ_H
#define SPW_TEST_CLIENT_READ_H

#include "server.h"
#include "spillway.h"

/* Reads every record of stream s on one server into counts[i] (the
 * record's index is in its value "{\"i\":N}"; indexes from keyless_from
 * on have no key). Returns records read. */
static inline uint64_t bin_read_all(int binport, const char *s, uint32_t *counts, uint32_t n, uint32_t keyless_from)
{
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", binport);
    spillway_client *c;
    CHECK_EQ(spillway_client_connect(addr, 10000, &c), 0);
    spillway_metadata *m;
    CHECK_EQ(spillway_client_metadata(c, s, &m), 0);
    CHECK_EQ(spillway_metadata_count(m), 1);
    spillway_stream_info si;
    CHECK_EQ(spillway_metadata_stream(m, 0, &si), 0);
    uint64_t total = 0;
    for (uint32_t p = 0; p < si.partitions; p++) {
        uint64_t end = si.end_offsets[p], off = 0;
        int rounds = 0;
        while (off < end) {
            spillway_fetch_result *fr;
            CHECK_EQ(spillway_client_fetch(c, s, p, off, 1 << 20, &fr), 0);
            size_t k = spillway_fetch_count(fr);
            if (k == 0 && rounds++ < 1000) {
                /* written, not durable yet: this FETCH at the durable end
                 * asked for the fsync; a later one sees them */
                spillway_fetch_free(fr);
                usleep(1000);
                continue;
            }
            CHECK(k > 0);
            for (size_t j = 0; j < k; j++) {
                spillway_fetched rec;
                spillway_fetch_get(fr, j, &rec);
                CHECK_EQ(rec.offset, off + j);
                unsigned idx;
                CHECK(sscanf((const char *)rec.value, "{\"i\":%u", &idx) == 1);
                CHECK(idx < n);
                counts[idx]++;
                /* the key routes: key "k<idx % 1000>"; none from keyless_from on */
                char key[16];
                int kl = snprintf(key, sizeof key, "k%u", idx % 1000);
                if (idx >= keyless_from)
                    CHECK_EQ(rec.key_len, -1);
                else
                    CHECK(rec.key_len == kl && memcmp(rec.key, key, (size_t)kl) == 0);
            }
            off += k;
            total += k;
            spillway_fetch_free(fr);
            CHECK(++rounds < 100000);
        }
    }
    spillway_metadata_free(m);
    spillway_client_close(c);
    return total;
}

#endif
