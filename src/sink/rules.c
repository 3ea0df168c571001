/*
 * The sink rules (the pure parts of the sink loop): see rules.h. The
 * bisection keeps a window
 * [pos, pos+span): a rejected window shrinks to half of what it left
 * undelivered, a delivered one doubles, so one bad record in a batch of
 * 5000 is found in about 13 writes and the records after it go out in
 * growing windows again.
 */
#include "sink/rules.h"

#include <assert.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/crc32c.h"
#include "core/error.h"

#define PROGRESS_MAGIC "spillway-sink-progress "

int spw_sink_batch_due(const spw_sink_batch_cfg *c, uint32_t count, uint64_t bytes, uint64_t age_ms)
{
    if (count == 0)
        return 0;
    return count >= c->max_events || bytes >= c->max_bytes || age_ms >= c->max_wait_ms;
}

uint64_t spw_sink_backoff_ms(uint64_t initial_ms, uint64_t max_ms, uint32_t attempt, uint64_t rnd)
{
    if (initial_ms == 0)
        initial_ms = 1;
    if (max_ms < initial_ms)
        max_ms = initial_ms;
    uint64_t d = initial_ms;
    for (uint32_t i = 0; i < attempt && d < max_ms; i++)
        d *= 2;
    if (d > max_ms)
        d = max_ms;
    uint64_t half = d / 2;
    return half + rnd % (d - half + 1);
}

/* Commits [0, upto), waiting out failures. 0 or SPW_ECANCELED. */
static int commit(const spw_sink_deliver_ops *ops, void *arg, uint32_t upto, uint32_t *attempt)
{
    int r;
    while ((r = ops->progress(arg, upto)) != 0) {
        char err[128];
        snprintf(err, sizeof err, "committing progress: %s", spw_strerror(r));
        if (ops->wait(arg, (*attempt)++, err))
            return SPW_ECANCELED;
    }
    return 0;
}

int spw_sink_deliver(const spw_sink_deliver_ops *ops, void *arg, uint32_t n)
{
    uint32_t pos = 0, span = n, attempt = 0;
    char err[512];
    while (pos < n) {
        uint32_t len = span < n - pos ? span : n - pos;
        assert(len >= 1);
        uint32_t done = 0;
        err[0] = 0;
        int r = ops->write(arg, pos, len, &done, err, sizeof err);
        if (done > len)
            done = len;
        if (r == SPW_SINK_OK)
            done = len;
        if (done > 0) {
            pos += done;
            if (commit(ops, arg, pos, &attempt))
                return SPW_ECANCELED;
        }
        if (r == SPW_SINK_OK) {
            attempt = 0;
            span = span > n / 2 ? n : span * 2;
            continue;
        }
        uint32_t rem = len - done;
        if (rem == 0)
            continue;
        if (r == SPW_SINK_REJECT) {
            attempt = 0;
            if (rem > 1) {
                span = rem / 2;
                continue;
            }
            /* A window of one rejected: this record is bad. */
            int d;
            while ((d = ops->dead(arg, pos, err[0] ? err : "rejected by the target")) != 0) {
                char e2[160];
                snprintf(e2, sizeof e2, "writing to the dead-letter stream: %s", spw_strerror(d));
                if (ops->wait(arg, attempt++, e2))
                    return SPW_ECANCELED;
            }
            pos++;
            if (commit(ops, arg, pos, &attempt))
                return SPW_ECANCELED;
            span = 1;
            continue;
        }
        if (ops->wait(arg, attempt++, err[0] ? err : "target unavailable"))
            return SPW_ECANCELED;
    }
    return 0;
}

int spw_sink_progress_encode(spw_buf *out, uint64_t incarnation, const uint64_t *next, uint32_t n)
{
    size_t start = out->len;
    char line[64];
    if (spw_buf_puts(out, PROGRESS_MAGIC "2\n"))
        return SPW_ENOMEM;
    snprintf(line, sizeof line, "incarnation %" PRIu64 "\npartitions %" PRIu32 "\n", incarnation, n);
    if (spw_buf_puts(out, line))
        return SPW_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        snprintf(line, sizeof line, "%" PRIu32 " %" PRIu64 "\n", i, next[i]);
        if (spw_buf_puts(out, line))
            return SPW_ENOMEM;
    }
    uint32_t crc = spw_crc32c(out->p + start, out->len - start);
    snprintf(line, sizeof line, "crc32c %08" PRIx32 "\n", crc);
    return spw_buf_puts(out, line);
}

/* Reads an unsigned decimal ending at term; advances *p past term. */
static int read_u64(const char **p, const char *end, char term, uint64_t *v)
{
    const char *q = *p;
    uint64_t x = 0;
    if (q >= end || *q < '0' || *q > '9')
        return -1;
    while (q < end && *q >= '0' && *q <= '9') {
        if (x > (UINT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (uint64_t)(*q - '0');
        q++;
    }
    if (q >= end || *q != term)
        return -1;
    *p = q + 1;
    *v = x;
    return 0;
}

int spw_sink_progress_parse(const char *text, size_t len, uint64_t *incarnation, uint64_t *next, uint32_t cap,
                            uint32_t *n)
{
    const char *p = text, *end = text + len;
    size_t ml = strlen(PROGRESS_MAGIC);
    uint64_t version, inc = 0;
    if (len < ml || memcmp(p, PROGRESS_MAGIC, ml) != 0)
        return SPW_ECORRUPT;
    p += ml;
    if (read_u64(&p, end, '\n', &version) || version < 1 || version > 2)
        return SPW_ECORRUPT;
    if (version == 2) { /* version 1 has no incarnation line: 0 */
        if (end - p < 12 || memcmp(p, "incarnation ", 12) != 0)
            return SPW_ECORRUPT;
        p += 12;
        if (read_u64(&p, end, '\n', &inc))
            return SPW_ECORRUPT;
    }
    uint64_t np;
    if (end - p < 11 || memcmp(p, "partitions ", 11) != 0)
        return SPW_ECORRUPT;
    p += 11;
    if (read_u64(&p, end, '\n', &np) || np > cap)
        return SPW_ECORRUPT;
    for (uint64_t i = 0; i < np; i++) {
        uint64_t idx, v;
        if (read_u64(&p, end, ' ', &idx) || idx != i || read_u64(&p, end, '\n', &v))
            return SPW_ECORRUPT;
        next[i] = v;
    }
    size_t body = (size_t)(p - text);
    if (end - p != 16 || memcmp(p, "crc32c ", 7) != 0 || p[15] != '\n')
        return SPW_ECORRUPT;
    char hex[9];
    memcpy(hex, p + 7, 8);
    hex[8] = 0;
    char *e;
    unsigned long crc = strtoul(hex, &e, 16);
    if (*e || crc != spw_crc32c(text, body))
        return SPW_ECORRUPT;
    *incarnation = inc;
    *n = (uint32_t)np;
    return 0;
}

int spw_sink_commit(const spw_sink_deliver_ops *ops, void *arg, uint32_t upto)
{
    uint32_t attempt = 0;
    return commit(ops, arg, upto, &attempt);
}
