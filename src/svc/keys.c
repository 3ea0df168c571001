/*
 * Key requests of versioned streams: see keys.h. History reads go through
 * the version store's (key, version) → offset index and read each record
 * at its offset with the record cursor (small reads: one batch each), so
 * a key's 1,000 events cost 1,000 short reads, whatever the partition
 * holds besides.
 */
#include "svc/keys.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/json.h"
#include "log/cursor.h"

static spw_sc fail(char *msg, size_t cap, spw_sc c, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static spw_sc fail(char *msg, size_t cap, spw_sc c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, cap, fmt, ap);
    va_end(ap);
    return c;
}

static spw_sc es_for(spw_stream *s, spw_es **es, char *msg, size_t cap)
{
    if (!s->cfg.versioned)
        return fail(msg, cap, SPW_SC_NOT_VERSIONED, "stream %s is not versioned: it has no keys to read by version",
                    s->cfg.name);
    int r = spw_es_of(s, es);
    if (r)
        return fail(msg, cap, spw_sc_read(r), "the stream's version store cannot be opened: %s", spw_strerror(r));
    return SPW_SC_OK;
}

spw_sc spw_keys_get(spw_stream *s, const void *key, size_t n, spw_es_key *out, char *msg, size_t cap)
{
    spw_es *es;
    spw_sc c = es_for(s, &es, msg, cap);
    if (c)
        return c;
    if (!spw_es_lookup(es, key, n, out))
        return fail(msg, cap, SPW_SC_NO_SUCH_KEY, "no event of this key was written");
    return SPW_SC_OK;
}

/* Is rv the key's record? */
static int is_key(const spw_record_view *rv, const void *key, size_t n)
{
    return rv->key_len >= 0 && (size_t)rv->key_len == n && memcmp(rv->key, key, n) == 0;
}

spw_sc spw_keys_events(spw_stream *s, const void *key, size_t n, uint64_t from_version, uint32_t limit,
                       spw_keys_event_fn fn, void *arg, uint64_t *next_version, char *msg, size_t cap)
{
    spw_es *es;
    spw_sc c = es_for(s, &es, msg, cap);
    if (c)
        return c;
    if (from_version == 0)
        from_version = 1;
    spw_es_key k;
    if (!spw_es_lookup(es, key, n, &k))
        return fail(msg, cap, SPW_SC_NO_SUCH_KEY, "no event of this key was written");
    uint32_t part = spw_stream_partition(key, n, s->cfg.partitions);
    /* Read before the index: a record the index misses lies at or past it. */
    uint64_t indexed = spw_es_indexed(es, part);
    uint64_t *vers = spw_xmalloc((limit ? limit : 1) * sizeof *vers);
    uint64_t *offs = spw_xmalloc((limit ? limit : 1) * sizeof *offs);
    int got = limit ? spw_es_history(es, key, n, from_version, limit, vers, offs) : 0;
    uint64_t next = from_version;
    spw_cursor cur;
    spw_cursor_init(&cur, s->parts[part], 0, 1); /* one batch a read: the next may be large */
    spw_record_view rv;
    int stop = 0;
    uint64_t decoded = 0; /* records read from the log (spw_es_count_history) */
    if (got < 0) {
        c = fail(msg, cap, spw_sc_read(got), "the version store could not be read: %s", spw_strerror(got));
        goto out;
    }
    /* Retention may have deleted the key's oldest versions (es.h
     * spw_es_oldest_kept): a read from one of those says where the log
     * now starts for the key, rather than skipping them silently. */
    spw_part_state pst;
    spw_part_state_get(s->parts[part], &pst);
    if (pst.start_offset > 0 && from_version <= k.version) {
        uint64_t oldest = 0;
        int r = spw_es_oldest_kept(es, key, n, k.version, pst.start_offset, &oldest);
        if (r < 0) {
            c = fail(msg, cap, spw_sc_read(r), "the version store could not be read: %s", spw_strerror(r));
            goto out;
        }
        if (from_version < oldest) {
            if (next_version)
                *next_version = oldest;
            c = oldest > k.version
                    ? fail(msg, cap, SPW_SC_VERSIONS_DELETED,
                           "retention deleted every event of this key (versions 1 to %" PRIu64
                           "); its version goes on from there: start from a snapshot",
                           k.version)
                    : fail(msg, cap, SPW_SC_VERSIONS_DELETED,
                           "retention deleted versions 1 to %" PRIu64 " of this key; the oldest kept is %" PRIu64
                           ": read from_version=%" PRIu64 ", from a snapshot at or after %" PRIu64,
                           oldest - 1, oldest, oldest, oldest - 1);
            spw_cursor_fini(&cur);
            spw_free(vers);
            spw_free(offs);
            return c;
        }
    }
    for (int i = 0; i < got && !stop; i++) {
        if (vers[i] != next)
            break; /* a gap (a write that failed): the tail scan below does not fill it either */
        /* Within the batch the cursor holds (a request's events share one):
         * step forward to it rather than read the batch again. */
        int r;
        if (cur.in_batch && offs[i] >= cur.next && offs[i] < spw_batch_next_offset(&cur.h)) {
            while ((r = spw_cursor_next(&cur, &rv)) == 1 && ++decoded && rv.offset < offs[i])
                ;
        } else {
            spw_cursor_seek(&cur, s->parts[part], offs[i]);
            r = spw_cursor_next(&cur, &rv);
            decoded += r == 1;
        }
        if (r != 1 || rv.offset != offs[i] || rv.version != vers[i] || !is_key(&rv, key, n)) {
            c = fail(msg, cap, r == 1 ? SPW_SC_READ_FAILED : spw_sc_read(r),
                     "version %" PRIu64 " at offset %" PRIu64 " of partition %u cannot be read: %s", vers[i], offs[i],
                     part, r == 1 ? "it holds another record (run spillway check)" : spw_strerror(r < 0 ? r : SPW_ERANGE));
            goto out;
        }
        stop = fn(arg, part, &rv) != 0;
        next++;
    }
    /* The tail the index does not hold yet: short (the indexer follows the
     * durable end within milliseconds). */
    if (!stop && (uint32_t)(next - from_version) < limit) {
        spw_part_state st;
        spw_part_state_get(s->parts[part], &st);
        spw_cursor_seek(&cur, s->parts[part], indexed > st.start_offset ? indexed : st.start_offset);
        int r;
        while ((uint32_t)(next - from_version) < limit && !stop && (r = spw_cursor_next(&cur, &rv)) == 1)
            if (++decoded && is_key(&rv, key, n) && rv.version == next) {
                stop = fn(arg, part, &rv) != 0;
                next++;
            }
    }
out:
    spw_es_count_history(es, decoded);
    spw_cursor_fini(&cur);
    spw_free(vers);
    spw_free(offs);
    if (next_version)
        *next_version = next;
    return c;
}

spw_sc spw_keys_snapshot_store(spw_stream *s, const void *key, size_t n, uint64_t version, const char *state,
                               size_t len, char *msg, size_t cap)
{
    spw_es *es;
    spw_sc c = es_for(s, &es, msg, cap);
    if (c)
        return c;
    if (version < 1 || version > SPW_VERSION_MAX)
        return fail(msg, cap, SPW_SC_BAD_SNAPSHOT, "the snapshot's version must be an integer from 1 to %llu",
                    (unsigned long long)SPW_VERSION_MAX);
    const char *vend, *end = state + len;
    spw_json_span none;
    spw_json_error e;
    if (len == 0 || spw_json_scan(state, end, NULL, 0, &none, &vend, &e) || *spw_json_ws(state, end) != '{' ||
        spw_json_ws(vend, end) != end)
        return fail(msg, cap, SPW_SC_BAD_SNAPSHOT, "the snapshot's state must be one JSON object");
    spw_es_key k = {0};
    uint64_t current = spw_es_lookup(es, key, n, &k) ? k.version : 0;
    if (version > current)
        return fail(msg, cap, SPW_SC_SNAPSHOT_AHEAD,
                    "the snapshot is of version %" PRIu64 " and the key is at version %" PRIu64 "; nothing was stored",
                    version, current);
    int r = spw_es_snapshot_put(es, key, n, version, state, len);
    if (r)
        return fail(msg, cap, SPW_SC_WRITE_FAILED, "the snapshot could not be stored: %s", spw_strerror(r));
    return SPW_SC_OK;
}

spw_sc spw_keys_snapshot_put(spw_stream *s, const void *key, size_t n, const char *body, size_t len, char *msg,
                             size_t cap)
{
    if (!s->cfg.versioned)
        return fail(msg, cap, SPW_SC_NOT_VERSIONED, "stream %s is not versioned: it has no keys to read by version",
                    s->cfg.name);
    spw_json_ptr ptrs[2];
    if (spw_json_ptr_compile(&ptrs[0], "/version") || spw_json_ptr_compile(&ptrs[1], "/state"))
        return fail(msg, cap, SPW_SC_INTERNAL, "json pointers");
    spw_json_span found[2];
    const char *vend;
    spw_json_error e;
    const char *p = body ? body : "", *end = p + len;
    if (spw_json_scan(p, end, ptrs, 2, found, &vend, &e))
        return fail(msg, cap, SPW_SC_BAD_SNAPSHOT, "the body is not JSON: %s at byte %zu", e.msg, e.offset);
    const char *start = spw_json_ws(p, end);
    if (*start != '{' || spw_json_ws(vend, end) != end)
        return fail(msg, cap, SPW_SC_BAD_SNAPSHOT, "the body must be one JSON object {\"version\":v,\"state\":{..}}");
    int64_t v;
    if (found[0].type != SPW_JSON_NUMBER || spw_json_int64(&found[0], &v) || v < 1 || (uint64_t)v > SPW_VERSION_MAX)
        return fail(msg, cap, SPW_SC_BAD_SNAPSHOT, "\"version\" must be an integer from 1 to %llu",
                    (unsigned long long)SPW_VERSION_MAX);
    if (found[1].type != SPW_JSON_OBJECT)
        return fail(msg, cap, SPW_SC_BAD_SNAPSHOT, "\"state\" must be a JSON object");
    return spw_keys_snapshot_store(s, key, n, (uint64_t)v, found[1].p, found[1].n, msg, cap);
}

spw_sc spw_keys_snapshot_get(spw_stream *s, const void *key, size_t n, uint64_t *version, spw_buf *state, char *msg,
                             size_t cap)
{
    spw_es *es;
    spw_sc c = es_for(s, &es, msg, cap);
    if (c)
        return c;
    int r = spw_es_snapshot_get(es, key, n, version, state);
    if (r < 0)
        return fail(msg, cap, spw_sc_read(r), "the snapshot could not be read: %s", spw_strerror(r));
    if (r == 0)
        return fail(msg, cap, SPW_SC_NO_SNAPSHOT, "no snapshot of this key was put");
    return SPW_SC_OK;
}
