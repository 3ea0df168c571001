/*
 * The view requests (docs/api.md "Views"), once for every front end: a
 * request is a protocol-neutral spw_view_req, its answer a status code
 * (svc/status.h) and a JSON body. The views themselves are src/view; this
 * file maps their errors onto the status table, parses what every front
 * end passes the same way (min_offsets "P:O,P:O", durations) and puts
 * the views' families on /metrics.
 */
#ifndef SPW_SVC_VIEWS_H
#define SPW_SVC_VIEWS_H

#include <stdint.h>

#include "core/buf.h"
#include "svc/status.h"
#include "svc/svc.h"
#include "view/view.h"

typedef enum {
    SPW_VIEW_LIST,
    SPW_VIEW_GET,
    SPW_VIEW_PUT,
    SPW_VIEW_DELETE,
    SPW_VIEW_REBUILD,
    SPW_VIEW_KEY,
    SPW_VIEW_SERIES,
    SPW_VIEW_TOP,
    SPW_VIEW_VERIFY, /* reads the log: not on an I/O loop (svc/views.h) */
} spw_view_op;

#define SPW_VIEW_MIN_MAX 1024 /* min_offsets entries at most */
#define SPW_VIEW_WAIT_MS_MAX 60000

typedef struct spw_view_req {
    spw_view_op op;
    const char *name;
    const void *key; /* KEY, SERIES */
    size_t klen;
    const char *body; /* PUT */
    size_t body_len;
    const char *window; /* SERIES, TOP ("" or NULL: the smallest) */
    int64_t from, to, at; /* INT64_MIN: the default */
    const char *by;       /* TOP: "count" or "sum" ("" or NULL: count) */
    uint32_t n;           /* TOP; VERIFY: the sample (1: every key) */
    /* KEY, SERIES, TOP from an I/O loop: set, the read takes only what
     * needs no file of the store (the memtable, the block cache); one that
     * would read a file answers nothing, sets *uncached and is to be made
     * again on an I/O worker with uncached NULL (view/view.h "cached") */
    int *uncached;
} spw_view_req;

/*
 * Serves r now: SPW_SC_OK with the answer's JSON appended to out
 * (*created = 1 when a PUT created the view: HTTP 201), or an error code
 * with its sentence in err. DELETE and REBUILD append nothing.
 */
spw_sc spw_view_serve(spw_svc *svc, const spw_view_req *r, spw_buf *out, int *created, char *err, size_t cap);

/* Parses "P:O,P:O,..." into min (at most cap entries): 0 and *n, or -1
 * with a sentence in err. */
int spw_view_parse_min(const char *text, spw_view_min *min, uint32_t cap, uint32_t *n, char *err, size_t errcap);

/*
 * Read your writes: calls done(arg, sc) once — SPW_SC_OK when the view
 * has applied every min[i], SPW_SC_VIEW_LAG when wait_ms passed first,
 * SPW_SC_NO_SUCH_VIEW — from the view's apply thread or from the caller's
 * (at once). The front end then serves its read (spw_view_serve).
 */
void spw_view_wait(spw_svc *svc, const char *name, const spw_view_min *min, uint32_t n, uint32_t wait_ms,
                   void (*done)(void *arg, spw_sc sc), void *arg);

/* The views' families on /metrics (svc/metrics.h). */
void spw_view_metrics_register(spw_svc *svc);

#endif
