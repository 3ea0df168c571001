/*
 * The postgres sink's COPY rows: a record as one row of COPY's text format
 * (escaping, ISO 8601 times) or of its binary format (the send forms of the
 * types pg_conn.c's binary_ok accepts), each mapped column's value taken
 * from the key, the value, a JSON pointer into it, or the record's
 * timestamp, id, partition or offset. Pure formatting: no connection.
 */
#include "sink/postgres/pg_int.h"

/* ---- COPY rows ---- */

void spw__pg_copy_escape(spw_buf *b, const char *p, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        char e = 0;
        switch (p[i]) {
        case '\\': e = '\\'; break;
        case '\n': e = 'n'; break;
        case '\r': e = 'r'; break;
        case '\t': e = 't'; break;
        default: continue;
        }
        spw_buf_put(b, p + run, i - run);
        char two[2] = {'\\', e};
        spw_buf_put(b, two, 2);
        run = i + 1;
    }
    spw_buf_put(b, p + run, n - run);
}

static void put_ts(spw_buf *b, int64_t ms, int is_time)
{
    char t[64];
    if (is_time) {
        time_t sec = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
        int milli = (int)(ms - (int64_t)sec * 1000);
        struct tm tm;
        gmtime_r(&sec, &tm);
        snprintf(t, sizeof t, "%04d-%02d-%02d %02d:%02d:%02d.%03d+00", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, milli);
    } else {
        snprintf(t, sizeof t, "%" PRId64, ms);
    }
    spw_buf_puts(b, t);
}

static void put_u64(spw_buf *b, uint64_t v) { spw_buf_put_u64(b, v); }

/* The text of a key, value or JSON-pointer column for r: 1 with *p, *n,
 * or 0 for NULL (no key; value not JSON or no such field; JSON null). A
 * JSON string field is its unescaped text; any other field its JSON. */
static int col_text(pg *g, const pg_col *col, const spw_sink_rec *r, const char **p, size_t *n)
{
    if (col->src == SRC_KEY) {
        *p = (const char *)r->key;
        *n = r->key_len > 0 ? (size_t)r->key_len : 0;
        return r->key_len >= 0;
    }
    if (col->src == SRC_VALUE) {
        *p = (const char *)r->value;
        *n = r->value_len;
        return 1;
    }
    spw_json_span f;
    spw_json_error je;
    const char *end;
    const char *vp = (const char *)r->value;
    if (spw_json_scan(vp, vp + r->value_len, &col->ptr, 1, &f, &end, &je) || f.type == SPW_JSON_NONE ||
        f.type == SPW_JSON_NULL)
        return 0;
    if (f.type != SPW_JSON_STRING) {
        *p = f.p;
        *n = f.n;
        return 1;
    }
    if (g->tmpcap < f.n) {
        g->tmpcap = f.n;
        g->tmp = spw_xrealloc(g->tmp, g->tmpcap);
    }
    long u = spw_json_unescape(&f, g->tmp, g->tmpcap);
    *p = g->tmp;
    *n = u > 0 ? (size_t)u : 0;
    return 1;
}

/* One COPY text line for record r. */
void spw__pg_put_row_text(pg *g, const pg_shard *s, uint32_t partition, const spw_sink_rec *r)
{
    spw_buf *b = &g->copy;
    for (uint32_t c = 0; c < g->ncols; c++) {
        const pg_col *col = &g->cols[c];
        if (c)
            spw_buf_puts(b, "\t");
        switch (col->src) {
        case SRC_TS: put_ts(b, r->ts, s->is_time[c]); break;
        case SRC_ID: put_u64(b, r->id); break;
        case SRC_PARTITION: put_u64(b, partition); break;
        case SRC_OFFSET: put_u64(b, r->offset); break;
        default: {
            const char *p;
            size_t n;
            if (col_text(g, col, r, &p, &n))
                spw__pg_copy_escape(b, p, n);
            else
                spw_buf_puts(b, "\\N");
        }
        }
    }
    spw_buf_puts(b, "\n");
}

/* An escape-string literal E'...' of p[0, n): quotes and backslashes
 * doubled (E'' reads backslashes as escapes whatever
 * standard_conforming_strings says; the connection's client_encoding is
 * UTF8, pg_conn.c, so no byte of a character is taken for either). -1 for
 * a NUL byte. A literal of unknown type: INSERT converts it to the
 * column's type by the type's text input, as COPY's text format does. */
static int put_literal(spw_buf *b, const char *p, size_t n)
{
    if (memchr(p, 0, n))
        return -1;
    spw_buf_puts(b, "E'");
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] != '\'' && p[i] != '\\')
            continue;
        spw_buf_put(b, p + run, i + 1 - run); /* the character, then itself again */
        run = i;
    }
    spw_buf_put(b, p + run, n - run);
    spw_buf_puts(b, "'");
    return 0;
}

int spw__pg_put_row_values(pg *g, const pg_shard *s, uint32_t partition, const spw_sink_rec *r, spw_buf *b)
{
    size_t len0 = b->len;
    spw_buf_puts(b, "(");
    for (uint32_t c = 0; c < g->ncols; c++) {
        const pg_col *col = &g->cols[c];
        if (c)
            spw_buf_puts(b, ", ");
        switch (col->src) {
        case SRC_TS: spw_buf_puts(b, "'"); put_ts(b, r->ts, s->is_time[c]); spw_buf_puts(b, "'"); break;
        case SRC_ID: spw_buf_puts(b, "'"); put_u64(b, r->id); spw_buf_puts(b, "'"); break;
        case SRC_PARTITION: spw_buf_puts(b, "'"); put_u64(b, partition); spw_buf_puts(b, "'"); break;
        case SRC_OFFSET: spw_buf_puts(b, "'"); put_u64(b, r->offset); spw_buf_puts(b, "'"); break;
        default: {
            const char *p;
            size_t n;
            if (!col_text(g, col, r, &p, &n)) {
                spw_buf_puts(b, "NULL");
            } else if (put_literal(b, p, n) < 0) {
                b->len = len0;
                return -1;
            }
        }
        }
    }
    spw_buf_puts(b, ")");
    return 0;
}

/* COPY binary format (PostgreSQL's "Binary Format" of COPY; docs/api.md
 * "postgres sink"): a signature, flags and header-extension length; per
 * row an int16 field count, then per field an int32 length (-1: NULL) and
 * the type's send form; an int16 -1 at the end. Integers big-endian. */

/* The low bytes (2, 4 or 8) of v, big-endian. */
static inline void put_be(spw_buf *b, uint64_t v, unsigned bytes)
{
    uint64_t be = __builtin_bswap64(v << (8 * (8 - bytes))); /* little-endian host (core/endian.h) */
    spw_buf_put(b, &be, bytes);
}

/* Milliseconds from 1970-01-01 to PostgreSQL's epoch, 2000-01-01. */
#define PG_EPOCH_MS INT64_C(946684800000)
/* Inside PostgreSQL's timestamp range (4714-11-24 BC to 294277 AD) with a
 * margin: ms outside gets a finite out-of-range value, so the server
 * answers "timestamp out of range" as it does for the text form. */
#define TS_MS_MIN INT64_C(-210866803200000)
#define TS_MS_MAX INT64_C(9224318015999999)

static void put_ts_bin(spw_buf *b, int64_t ms, uint32_t oid)
{
    put_be(b, 8, 4);
    if (oid == OID_INT8) {
        put_be(b, (uint64_t)ms, 8);
        return;
    }
    int64_t us = ms >= TS_MS_MIN && ms <= TS_MS_MAX ? (ms - PG_EPOCH_MS) * 1000 : INT64_MAX - 1;
    put_be(b, (uint64_t)us, 8);
}

/* One COPY binary row for record r (every column passed binary_ok). */
void spw__pg_put_row_bin(pg *g, const pg_shard *s, uint32_t partition, const spw_sink_rec *r)
{
    spw_buf *b = &g->copy;
    put_be(b, g->ncols, 2);
    for (uint32_t c = 0; c < g->ncols; c++) {
        const pg_col *col = &g->cols[c];
        switch (col->src) {
        case SRC_TS: put_ts_bin(b, r->ts, s->oid[c]); break;
        case SRC_ID: put_be(b, 8, 4); put_be(b, r->id, 8); break;
        case SRC_OFFSET: put_be(b, 8, 4); put_be(b, r->offset, 8); break;
        case SRC_PARTITION:
            if (s->oid[c] == OID_INT4) {
                put_be(b, 4, 4);
                put_be(b, partition, 4);
            } else {
                put_be(b, 8, 4);
                put_be(b, partition, 8);
            }
            break;
        default: {
            const char *p;
            size_t n;
            if (!col_text(g, col, r, &p, &n)) {
                put_be(b, UINT32_MAX, 4); /* -1: NULL */
                break;
            }
            int jsonb = s->oid[c] == OID_JSONB; /* jsonb's send form: version 1, then the JSON text */
            put_be(b, n + (size_t)jsonb, 4);
            if (jsonb)
                spw_buf_put(b, "\1", 1);
            spw_buf_put(b, p, n);
        }
        }
    }
}
