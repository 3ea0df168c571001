/*
 * The view requests over the views of src/view (svc/views.h): one
 * function serves each request and maps the view layer's errors onto the
 * status table, so HTTP (http/view_api.c) and any other front end answer
 * alike.
 */
#include "svc/views.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/clock.h"
#include "core/error.h"
#include "svc/metrics.h"

static spw_sc map_err(int r)
{
    switch (r) {
    case SPW_EINVAL: return SPW_SC_BAD_PARAMETER;
    case -ENOENT: return SPW_SC_NO_SUCH_VIEW;
    case SPW_VIEW_ENOKEY: return SPW_SC_UNKNOWN_KEY;
    default: return spw_sc_read(r);
    }
}

/* Reads from an I/O loop that needed a file of a store (spw_view_req.uncached). */
static _Atomic uint64_t g_reads_uncached;

spw_sc spw_view_serve(spw_svc *svc, const spw_view_req *r, spw_buf *out, int *created, char *err, size_t cap)
{
    spw_views *m = svc->views;
    *created = 0;
    if (!m) {
        snprintf(err, cap, "views are not running on this server");
        return SPW_SC_UNAVAILABLE;
    }
    int rc;
    switch (r->op) {
    case SPW_VIEW_LIST:
        spw_views_list_json(m, out);
        return SPW_SC_OK;
    case SPW_VIEW_GET:
        if (spw_views_get_json(m, r->name, out) < 0) {
            snprintf(err, cap, "no view named %s", r->name);
            return SPW_SC_NO_SUCH_VIEW;
        }
        return SPW_SC_OK;
    case SPW_VIEW_PUT:
        rc = spw_views_put(m, r->name, r->body, r->body_len, out, err, cap);
        if (rc == SPW_EINVAL)
            return SPW_SC_BAD_CONFIG;
        if (rc == -ENOENT)
            return SPW_SC_NO_SUCH_STREAM;
        if (rc == -EEXIST)
            return SPW_SC_EXISTS;
        if (rc == -EBUSY)
            return SPW_SC_UNAVAILABLE;
        if (rc < 0)
            return SPW_SC_CREATE_FAILED;
        *created = rc == 1;
        return SPW_SC_OK;
    case SPW_VIEW_DELETE:
    case SPW_VIEW_REBUILD:
        rc = r->op == SPW_VIEW_DELETE ? spw_views_delete(m, r->name) : spw_views_rebuild(m, r->name);
        if (rc < 0) {
            snprintf(err, cap, "no view named %s", r->name);
            return SPW_SC_NO_SUCH_VIEW;
        }
        return SPW_SC_OK;
    case SPW_VIEW_KEY:
    case SPW_VIEW_SERIES:
    case SPW_VIEW_TOP: {
        size_t len0 = out->len;
        int cached = r->uncached != NULL;
        if (r->op == SPW_VIEW_KEY)
            rc = spw_views_read_key(m, r->name, r->key, r->klen, cached, out, err, cap);
        else if (r->op == SPW_VIEW_SERIES)
            rc = spw_views_read_series(m, r->name, r->key, r->klen, r->window, r->from, r->to, cached, out, err,
                                       cap);
        else
            rc = spw_views_read_top(m, r->name, r->window, r->at, r->by, r->n ? r->n : 10, cached, out, err, cap);
        if (rc == SPW_VIEW_EUNCACHED && cached) {
            out->len = len0;
            *r->uncached = 1;
            atomic_fetch_add(&g_reads_uncached, 1);
            snprintf(err, cap, "the read needs a file of the view's store");
            return SPW_SC_UNAVAILABLE;
        }
        break;
    }
    case SPW_VIEW_VERIFY:
        rc = spw_views_verify(m, r->name, r->n, out, err, cap);
        if (rc == SPW_EINVAL)
            return SPW_SC_UNAVAILABLE;
        break;
    default:
        snprintf(err, cap, "no such view request");
        return SPW_SC_BAD_REQUEST;
    }
    return rc < 0 ? map_err(rc) : SPW_SC_OK;
}

int spw_view_parse_min(const char *text, spw_view_min *min, uint32_t cap, uint32_t *n, char *err, size_t errcap)
{
    *n = 0;
    const char *p = text;
    while (*p) {
        char *e;
        if (*p < '0' || *p > '9')
            goto bad;
        unsigned long long part = strtoull(p, &e, 10);
        if (*e != ':' || part >= SPW_STREAM_PARTITIONS_MAX)
            goto bad;
        p = e + 1;
        if (*p < '0' || *p > '9')
            goto bad;
        unsigned long long off = strtoull(p, &e, 10);
        if (off == ULLONG_MAX || (*e != ',' && *e != 0) || *n == cap)
            goto bad;
        min[(*n)++] = (spw_view_min){(uint32_t)part, off};
        p = *e ? e + 1 : e;
        if (*e == ',' && !*p)
            goto bad;
    }
    if (*n == 0)
        goto bad;
    return 0;
bad:
    snprintf(err, errcap, "min_offsets must be PARTITION:OFFSET pairs separated by commas (\"0:41,2:7\"), at most %u",
             cap);
    return -1;
}

typedef struct wait_tr {
    void (*done)(void *arg, spw_sc sc);
    void *arg;
} wait_tr;

static void wait_done(void *a, int r)
{
    wait_tr *t = a;
    void (*done)(void *, spw_sc) = t->done;
    void *arg = t->arg;
    spw_free(t);
    done(arg, r == 1 ? SPW_SC_OK : r == 0 ? SPW_SC_VIEW_LAG : SPW_SC_NO_SUCH_VIEW);
}

void spw_view_wait(spw_svc *svc, const char *name, const spw_view_min *min, uint32_t n, uint32_t wait_ms,
                   void (*done)(void *arg, spw_sc sc), void *arg)
{
    if (!svc->views) {
        done(arg, SPW_SC_NO_SUCH_VIEW);
        return;
    }
    wait_tr *t = spw_xmalloc(sizeof *t);
    t->done = done;
    t->arg = arg;
    spw_views_wait(svc->views, name, min, n, spw_mono_ms() + wait_ms, wait_done, t);
}

static int sees(void *ctx, const char *stream) { return spw_metrics_sees(ctx, stream); }

/* Only views of streams the viewer may see (as per-stream series). */
static void m_views(void *ctx, spw_metrics_out *o)
{
    spw_svc *svc = ctx;
    if (svc->views)
        spw_views_metrics(svc->views, o->b, sees, o);
}

static uint64_t m_reads_uncached(void *ctx)
{
    (void)ctx;
    return atomic_load(&g_reads_uncached);
}

void spw_view_metrics_register(spw_svc *svc)
{
    spw_metrics_add_block(svc->metrics, m_views, svc);
    spw_metrics_add_u64(svc->metrics, "spillway_view_reads_uncached_total",
                        "view reads (HTTP and binary) whose entries were in neither the memtable nor the block cache: "
                        "made on an I/O worker, not the loop",
                        SPW_METRIC_COUNTER, m_reads_uncached, NULL);
}
