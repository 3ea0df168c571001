/*
 * A reader for the Prometheus text exposition format (version 0.0.4), as
 * `spillway top` needs it: sample lines become (name, labels, value)
 * entries of a spw_prom_set that can be looked up by name and label.
 *
 * It is written for a peer it does not trust (a server of another version,
 * a proxy, a test double): every line is bounded (SPW_PROM_LINE_MAX; a
 * longer one is skipped whole), so are names, the labels of a sample and
 * the number of samples kept; comments (# HELP, # TYPE, anything after #)
 * and blank lines are ignored; a malformed or over-long line is skipped and
 * counted, never fatal, so one bad line costs that line only. Label values
 * are unescaped (\\ \" \n); values take Go's forms (1, 1.5e3, +Inf, -Inf,
 * NaN); an optional trailing timestamp is accepted and ignored.
 *
 * Memory: names and label values are copied into the set's own arena, so a
 * set does not point into the text it was parsed from. One set owns its
 * memory (_init/_fini); spw_prom_clear keeps it for the next parse.
 */
#ifndef SPW_PROMTEXT_H
#define SPW_PROMTEXT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define SPW_PROM_LINE_MAX 4096           /* bytes of one line, without its newline */
#define SPW_PROM_NAME_MAX 200            /* metric and label names */
#define SPW_PROM_LABELS_MAX 16           /* labels of one sample */
#define SPW_PROM_SAMPLES_MAX (1u << 18)  /* samples kept by one set */
#define SPW_PROM_HIST_MAX 64             /* buckets spw_prom_hist returns */
#define SPW_PROM_VALUE_MAX 63            /* characters of a value (longer: malformed) */

typedef struct spw_prom_label {
    uint32_t name, name_len;   /* offsets into the set's arena */
    uint32_t value, value_len; /* unescaped; may contain any byte but NUL */
} spw_prom_label;

typedef struct spw_prom_sample {
    uint32_t name, name_len;  /* into the arena */
    uint32_t label0, nlabels; /* into the set's labels */
    double value;
} spw_prom_sample;

typedef struct spw_prom_set {
    spw_buf arena; /* names and label values, each followed by a NUL */
    spw_prom_label *labels;
    size_t nlabels, labels_cap;
    spw_prom_sample *samples;
    size_t n, cap;
    uint64_t skipped; /* lines ignored: too long, malformed, or past SPW_PROM_SAMPLES_MAX */
} spw_prom_set;

void spw_prom_init(spw_prom_set *s);
void spw_prom_fini(spw_prom_set *s);
/* Forgets every sample (and skipped), keeping the memory. */
void spw_prom_clear(spw_prom_set *s);

/*
 * Adds the samples of text [p, p + n) to s (lines end with \n or \r\n; the
 * last may lack it). Returns how many samples were added, or SPW_ENOMEM
 * (what was added before stays valid).
 */
long spw_prom_parse(spw_prom_set *s, const char *p, size_t n);

/*
 * One line without its newline. Returns 1 when a sample was added, 0 for a
 * comment or a blank line, -1 when the line is malformed or too long, or
 * the set is full (s->skipped counts it), SPW_ENOMEM.
 */
int spw_prom_parse_line(spw_prom_set *s, const char *line, size_t n);

/* The NUL-terminated name of sample x; valid until the next parse/clear. */
const char *spw_prom_name(const spw_prom_set *s, const spw_prom_sample *x);
/* The NUL-terminated value of label `label` of x, or NULL if x lacks it. */
const char *spw_prom_label_value(const spw_prom_set *s, const spw_prom_sample *x, const char *label);

/*
 * The first sample named name whose label `label` equals value (label NULL:
 * any labels, value ignored), or NULL.
 */
const spw_prom_sample *spw_prom_find(const spw_prom_set *s, const char *name, const char *label, const char *value);
/* spw_prom_find's value into *v. Returns 1 found, 0 not (*v untouched). */
int spw_prom_get(const spw_prom_set *s, const char *name, const char *label, const char *value, double *v);

/*
 * The buckets of histogram name (samples name_bucket with an "le" label),
 * sorted by upper bound: le[i] (+Inf for the last) and the cumulative
 * count cum[i]. At most cap (≤ SPW_PROM_HIST_MAX) are returned; a bucket
 * whose le does not parse, or a repeated le, is left out. Returns the
 * number of buckets.
 */
size_t spw_prom_hist(const spw_prom_set *s, const char *name, double *le, double *cum, size_t cap);

/*
 * The q-quantile (0 < q < 1) of a histogram given as n sorted upper bounds
 * le[] with cumulative counts cum[] (a single scrape, or the bucket-wise
 * difference of two), interpolating linearly inside the bucket it falls in
 * (the first bucket's lower bound is 0), as Prometheus' histogram_quantile
 * does. A quantile in the +Inf bucket is reported as the largest finite
 * bound. Returns NaN when the histogram holds no observations.
 */
double spw_prom_quantile(const double *le, const double *cum, size_t n, double q);

#endif
