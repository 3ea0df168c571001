/*
 * A strict, allocation-free JSON scanner (RFC 8259) for the ingest path.
 * It validates one value and, in the same pass, finds up to
 * SPW_JSON_MAX_PTRS JSON Pointers (RFC 6901) — the stream's key and
 * timestamp fields — so an event is checked and its fields located without
 * building a tree; the event's bytes are then stored as received.
 *
 * Strict means: UTF-8 validated (no overlongs, surrogates or code points
 * past U+10FFFF), no control characters in strings, only the escapes RFC
 * 8259 names (\u escapes must pair surrogates), numbers by the RFC grammar,
 * no trailing commas, nesting at most SPW_JSON_MAX_DEPTH.
 */
#ifndef SPW_JSON_H
#define SPW_JSON_H

#include <stddef.h>
#include <stdint.h>

#define SPW_JSON_MAX_DEPTH 64
#define SPW_JSON_MAX_PTRS 2
#define SPW_JSON_MAX_PTR_TOKENS 16

enum spw_json_type {
    SPW_JSON_NONE = 0,
    SPW_JSON_OBJECT,
    SPW_JSON_ARRAY,
    SPW_JSON_STRING,
    SPW_JSON_NUMBER,
    SPW_JSON_TRUE,
    SPW_JSON_FALSE,
    SPW_JSON_NULL,
};

/* A compiled JSON Pointer: tokens unescaped (~0 → ~, ~1 → /). */
typedef struct spw_json_ptr {
    uint32_t ntok;
    const char *tok[SPW_JSON_MAX_PTR_TOKENS];
    uint32_t tok_len[SPW_JSON_MAX_PTR_TOKENS];
    char storage[256];
} spw_json_ptr;

/* Compiles "/a/b~1c" into p. Returns 0, or -1 if malformed or too long. */
int spw_json_ptr_compile(spw_json_ptr *p, const char *text);

/* A value found by a pointer: its raw bytes in the input (strings include
 * their quotes) and its type. */
typedef struct spw_json_span {
    const char *p;
    size_t n;
    int type;
} spw_json_span;

typedef struct spw_json_error {
    size_t offset;   /* byte offset of the error from the start of the input */
    const char *msg; /* static sentence */
} spw_json_error;

/*
 * Scans one JSON value in [p, end), skipping whitespace before it. On
 * success returns 0, *value_end points just after the value, and found[i]
 * (for i < nptrs) holds the value at ptrs[i] or type SPW_JSON_NONE. On
 * failure returns -1 and fills *err.
 */
int spw_json_scan(const char *p, const char *end, const spw_json_ptr *ptrs, int nptrs, spw_json_span *found,
                  const char **value_end, spw_json_error *err);

/*
 * Walks the members of an object span (from spw_json_scan, so valid):
 *   spw_json_iter it; spw_json_iter_init(&it, &span);
 *   while (spw_json_iter_next(&it, &key, &value)) ...
 * key is the raw member name span (with quotes); value the member's span.
 */
typedef struct spw_json_iter {
    const char *p, *end;
} spw_json_iter;
void spw_json_iter_init(spw_json_iter *it, const spw_json_span *obj);
int spw_json_iter_next(spw_json_iter *it, spw_json_span *key, spw_json_span *value);
/* Does the string span equal the C string s (after unescaping)? */
int spw_json_str_eq(const spw_json_span *str, const char *s);

/* Skips JSON whitespace (space, tab, CR, LF). */
const char *spw_json_ws(const char *p, const char *end);

/*
 * Decodes a string span (with quotes) into out (at most cap bytes).
 * REQUIRES: the span came from spw_json_scan (so it is valid).
 * Returns the decoded length, or -1 if it does not fit.
 */
long spw_json_unescape(const spw_json_span *s, char *out, size_t cap);

/* Parses an integer number span (no fraction/exponent) into *v. Returns 0 or -1. */
int spw_json_int64(const spw_json_span *s, int64_t *v);

/* Validates one UTF-8 sequence at p (lead byte >= 0x80, p < end): no
 * overlongs, surrogates or code points past U+10FFFF. Returns its length
 * (2-4) or 0. */
size_t spw_utf8_seq_len(const unsigned char *p, const unsigned char *end);

/*
 * Output: the server's one JSON writer (responses, stored definitions,
 * dead-letter records, error bodies). Each appends to b and returns 0 or
 * SPW_ENOMEM (b then holds a prefix of the output).
 *
 * spw_json_put_str writes s[0..n) as a JSON string: '"' and '\\' escaped
 * with a backslash, bytes below 0x20 and DEL as \u00XX, valid UTF-8 kept as
 * it is, and any other byte as \ufffd, so the output is always valid JSON.
 */
struct spw_buf;
int spw_json_put_str(struct spw_buf *b, const char *s, size_t n);
/* Bytes as a base64 (RFC 4648, padded) JSON string. */
int spw_json_put_b64(struct spw_buf *b, const uint8_t *p, size_t n);
/* The same for output whose size the caller bounds: out of memory aborts,
 * as spw_xmalloc. */
void spw_json_xput_str(struct spw_buf *b, const char *s, size_t n);
void spw_json_xput_b64(struct spw_buf *b, const uint8_t *p, size_t n);
/*
 * The canonical text of a valid JSON value (a span from spw_json_scan):
 * no whitespace, each string decoded and written again by
 * spw_json_put_str, numbers and literals as written, object members in
 * their order. Two texts that differ only in spacing or in how a string
 * is escaped give the same canonical text.
 */
int spw_json_put_canon(struct spw_buf *b, const spw_json_span *v);

#endif
