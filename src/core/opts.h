/*
 * JSON option tables: the fields of a JSON object definition (a sink's
 * body and each sink kind's "options") described once, one row per field
 * (name, type, offset, default, bounds, help), as nginx describes its
 * directives (and core/config.h the server's settings). From the table
 * come, in one place:
 *   - parsing: spw_opts_parse fills a struct (defaults first, then each
 *     given field, checked against its bounds), refusing unknown fields,
 *     wrong types, out-of-range values and missing required fields with a
 *     sentence naming the field;
 *   - the canonical form: the same call writes the object again with the
 *     fields given with a value other than their default, in table order,
 *     each value written one way (integers in decimal, strings escaped by
 *     spw_json_put_str, JSON values by spw_json_put_canon, no whitespace).
 *     Two definitions mean the same exactly when their canonical texts are
 *     equal: spacing, the order of fields, escapes, and a default written
 *     out make no difference (docs/architecture.md "Shared utilities and
 *     option tables");
 *   - help: spw_opts_help prints one line per field.
 *
 * A table is a const array; obj may be NULL to check and canonicalize only
 * (each field's parse callback then does not run). Defaults are the
 * table's own values: they are stored without a bounds check (so a
 * default may be a "none" outside the bounds, such as -1), and a parse
 * callback runs for them only on JSON fields (which it stores).
 */
#ifndef SPW_OPTS_H
#define SPW_OPTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/json.h"

typedef enum {
    SPW_OPT_INT,  /* integer in [min, max]; stored as uint32_t (size 4) or int64_t (size 8) */
    SPW_OPT_NUM,  /* number in [dmin, dmax]; stored as double */
    SPW_OPT_STR,  /* string of 1 .. size-1 bytes (no NUL) into char[size] */
    SPW_OPT_ENUM, /* one of choices[]; stored as int (its index) */
    SPW_OPT_BOOL, /* true/false; stored as int */
    SPW_OPT_JSON, /* any JSON value of the types in min (bit per spw_json_type), handed to parse */
} spw_opt_type;

#define SPW_OPT_REQUIRED 1u /* no default: the field must be given */
#define SPW_OPT_NULLABLE 2u /* STR: null is allowed and stores "" (and is the default) */
#define SPW_OPT_DEF_CTX 4u  /* STR: the default is the ctx string given to spw_opts_parse */
#define SPW_OPT_EMPTY_OK 8u /* STR: "" is a value (and, without def_str, the default) */

struct spw_opt;
/* Checks (and with obj, stores) a value: NULL, or a sentence saying what
 * is wrong (static text, or written into buf[0..cap) and buf returned). */
typedef const char *(*spw_opt_parse_fn)(void *obj, const spw_json_span *v, const struct spw_opt *o, char *buf,
                                        size_t cap);

typedef struct spw_opt {
    const char *name;
    spw_opt_type type;
    size_t off;  /* of the field in obj */
    size_t size; /* INT: 4 or 8; STR: the char array's size */
    int64_t def; /* INT, BOOL, ENUM (index) default */
    const char *def_str;        /* STR default (NULL: none); JSON default text (NULL: none) */
    int64_t min, max;           /* INT bounds; JSON: allowed types as bits (1 << SPW_JSON_OBJECT ...) */
    double dmin, dmax, ddef;    /* NUM bounds and default */
    const char *const *choices; /* ENUM: NULL-terminated */
    spw_opt_parse_fn parse;     /* optional; required for JSON */
    unsigned flags;
    const char *must; /* what a bad value is told: "options.X must be <must>" (NULL: from the type) */
    const char *help;
} spw_opt;

/*
 * Parses the JSON object text[0..len) by table t (n rows). where prefixes
 * field names in sentences ("options" gives "options.timeout_ms must be
 * ..."); what names the thing the object defines ("kafka sink" gives
 * "unknown field in kafka sink options (a, b, c)" and "kafka sinks need
 * options.brokers (help)").
 * ctx is the default of SPW_OPT_DEF_CTX fields. obj (may be NULL) gets
 * the values; canon (may be NULL) gets the canonical text appended.
 * Returns 0, or -1 with a sentence in err (obj may be partly filled).
 */
int spw_opts_parse(const spw_opt *t, size_t n, const char *where, const char *what, const char *text, size_t len,
                   const char *ctx, void *obj, spw_buf *canon, char *err, size_t cap);

/* Appends "  NAME  TYPE  (default D; min..max)  help\n" for each field,
 * names prefixed with where and '.'. */
void spw_opts_help(const spw_opt *t, size_t n, const char *where, spw_buf *out);

#endif
