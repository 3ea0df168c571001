/*
 * What the consumer-group tests share (test_groups over HTTP,
 * test_bingroups over the binary protocol): events into stream "s" and
 * the positions GET /v1/streams/s and …/groups/G report.
 */
#ifndef SPW_TEST_GROUPS_H
#define SPW_TEST_GROUPS_H

#include "server.h"

/* n events {"k":"key(base+i)%13","n":base+i} into stream s, at ack (NULL:
 * the stream's default); CHECKs the 202. */
static inline void produce_ack(int port, int n, int base, const char *ack)
{
    char *body = malloc((size_t)n * 64 + 1);
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)sprintf(body + len, "{\"k\":\"key%d\",\"n\":%d}\n", (base + i) % 13, base + i);
    char path[64];
    snprintf(path, sizeof path, "/v1/streams/s/events%s%s", ack ? "?ack=" : "", ack ? ack : "");
    resp r = http(port, "POST", path, "application/x-ndjson", body, len);
    CHECK_EQ(r.status, 202);
    free(r.body);
    free(body);
}

static inline void produce(int port, int n, int base) { produce_ack(port, n, base, NULL); }

static inline uint64_t end_offset(int port, int part) { return part_field(port, "/v1/streams/s", part, "end_offset"); }

/* committed / lag of partition part in GET /v1/streams/s/groups/G. */
static inline uint64_t group_field(int port, const char *group, int part, const char *field)
{
    char path[256];
    snprintf(path, sizeof path, "/v1/streams/s/groups/%s", group);
    return part_field(port, path, part, field);
}

#endif
