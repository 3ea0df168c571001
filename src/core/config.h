/*
 * Configuration as a table (one row per setting: name, type, default,
 * bounds, help) that drives the config file, the command-line flags and
 * --help from one place, as nginx's directive tables do. Sizes take
 * B/KiB/MiB/GiB (and KB/MB/GB as powers of 1000), durations ms/s/m/h.
 *
 * Config file: one "name = value" per line; '#' starts a comment; names are
 * the flag names without "--" (docs/operations.md has a full example).
 */
#ifndef SPW_CONFIG_H
#define SPW_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { SPW_CFG_STR, SPW_CFG_U32, SPW_CFG_SIZE, SPW_CFG_DURATION, SPW_CFG_BOOL } spw_cfg_type;

typedef struct spw_cfg_entry {
    const char *name;
    spw_cfg_type type;
    size_t off;  /* offset of the field in the config struct */
    size_t cap;  /* SPW_CFG_STR: size of the char array */
    const char *def;
    uint64_t min, max; /* bounds for numbers (sizes in bytes, durations in ms) */
    const char *help;
} spw_cfg_entry;

/* Fills obj with every default. */
void spw_cfg_defaults(const spw_cfg_entry *t, size_t n, void *obj);
/* Sets one setting from text. Returns 0, or -1 with a sentence in err. */
int spw_cfg_set(const spw_cfg_entry *t, size_t n, void *obj, const char *name, const char *value, char *err,
                size_t errcap);
/* Reads a config file. Returns 0, or -1 with "path:line: reason" in err. */
int spw_cfg_load(const spw_cfg_entry *t, size_t n, void *obj, const char *path, char *err, size_t errcap);
/* Prints "  --name VALUE  help (default ...)" lines, one per setting
 * (callers wrap them: core/help.h). */
void spw_cfg_help(const spw_cfg_entry *t, size_t n, FILE *f);
/* The settings as a config file that changes nothing: each one's help as
 * comment lines, then "#name = default" (packaging/spillway.conf is this
 * output: spillway serve --print-config). Lines at most 80 columns. */
void spw_cfg_sample(const spw_cfg_entry *t, size_t n, FILE *f);
/* Longest line of a config file, without its newline. */
#define SPW_CFG_LINE_MAX 16384
/* A line whose name starts with a prefix (see spw_cfg_load_ex): name and
 * value trimmed, value kept to the end of the line ('#' is no comment
 * there). Returns 0, or -1 with a sentence in err. */
typedef int (*spw_cfg_extra_fn)(void *user, const char *name, const char *value, char *err, size_t errcap);
/* spw_cfg_load, but lines whose name starts with prefix (non-NULL) go to fn
 * instead of the table (skipped if fn is NULL), and with t NULL every
 * other line is skipped. Errors are "path:line: reason". */
int spw_cfg_load_ex(const spw_cfg_entry *t, size_t n, void *obj, const char *path, const char *prefix,
                    spw_cfg_extra_fn fn, void *user, char *err, size_t errcap);
const spw_cfg_entry *spw_cfg_find(const spw_cfg_entry *t, size_t n, const char *name);

int spw_parse_size(const char *s, uint64_t *out);        /* 0 or -1 */
int spw_parse_duration_ms(const char *s, uint64_t *out); /* 0 or -1 */

#endif
