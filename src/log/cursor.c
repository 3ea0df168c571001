/*
 * The record cursor: see cursor.h. It reads whole CRC-checked batches with
 * spw_part_read into its buffer, then hands them out record by record (or
 * batch by batch). Entering a batch decodes every record of it, once, into
 * an array of record views before the first is returned: that is what
 * makes a batch whose records do not decode damaged whole, at the same
 * offsets for every reader, wherever its read began, and the records are
 * then returned from the array without a second decode.
 */
#include "log/cursor.h"

#include "core/error.h"

void spw_cursor_init(spw_cursor *c, spw_part *p, uint64_t from, size_t read_bytes)
{
    *c = (spw_cursor){.p = p, .next = from, .read_bytes = read_bytes ? read_bytes : 1};
    c->data = (spw_buf)SPW_BUF_INIT;
    c->scratch = (spw_buf)SPW_BUF_INIT;
    c->views = (spw_buf)SPW_BUF_INIT;
}

void spw_cursor_seek(spw_cursor *c, spw_part *p, uint64_t from)
{
    c->p = p;
    c->next = from;
    c->data.len = 0;
    c->pos = 0;
    c->in_batch = 0;
    c->damage_from = c->resume = 0;
}

void spw_cursor_fini(spw_cursor *c)
{
    spw_buf_fini(&c->data);
    spw_buf_fini(&c->scratch);
    spw_buf_fini(&c->views);
    c->in_batch = 0;
}

static int damaged(spw_cursor *c, uint64_t resume)
{
    c->damage_from = c->next;
    c->resume = resume > c->next ? resume : 0;
    c->data.len = c->pos = 0; /* asking again reads again: the same answer */
    c->in_batch = 0;
    return SPW_ECORRUPT;
}

/* Makes the batch holding c->next current: 1, or 0 / an error as
 * spw_cursor_next. */
static int enter_batch(spw_cursor *c)
{
    for (;;) {
        if (c->pos >= c->data.len) {
            uint64_t bad_next = 0;
            c->data.len = c->pos = 0;
            int n = spw_part_read(c->p, c->next, c->read_bytes, &c->data, &bad_next);
            if (n == 0) {
                spw_part_sync_soon(c->p); /* a reader waits at the visible end */
                return 0;
            }
            if (n == SPW_ECORRUPT)
                return damaged(c, bad_next);
            if (n < 0)
                return n;
        }
        const uint8_t *b = c->data.p + c->pos;
        size_t avail = c->data.len - c->pos;
        /* spw_part_read checked every batch's header and CRC */
        if (spw_batch_parse(b, avail, &c->h) || c->h.length > avail)
            return damaged(c, 0);
        c->pos += c->h.length;
        if (spw_batch_next_offset(&c->h) <= c->next)
            continue; /* wholly before the cursor */
        const uint8_t *recs;
        size_t len;
        int r = spw_batch_records(b, &c->h, &c->scratch, &recs, &len);
        if (r == SPW_ENOMEM)
            return r;
        c->nviews = c->vi = 0;
        if (r == 0 && c->h.record_count > len)
            r = SPW_ECORRUPT; /* every record takes a byte at least */
        if (r == 0) {
            size_t need = (size_t)c->h.record_count * sizeof(spw_record_view);
            c->views.len = 0;
            if (spw_buf_reserve(&c->views, need))
                return SPW_ENOMEM;
            spw_record_view *v = (spw_record_view *)c->views.p;
            spw_rec_iter it;
            spw_rec_iter_init(&it, &c->h, recs, len);
            /* spw_rec_next stops at record_count: 0 only if the section ends there */
            while ((r = spw_rec_next(&it, &v[c->nviews])) == 1)
                c->nviews++;
        }
        if (r < 0)
            return damaged(c, spw_batch_next_offset(&c->h));
        c->batch = b;
        c->in_batch = 1;
        return 1;
    }
}

int spw_cursor_next(spw_cursor *c, spw_record_view *rv)
{
    for (;;) {
        if (!c->in_batch) {
            int r = enter_batch(c);
            if (r <= 0)
                return r;
        }
        const spw_record_view *v = (const spw_record_view *)c->views.p;
        while (c->vi < c->nviews) {
            const spw_record_view *x = &v[c->vi++];
            if (x->offset < c->next)
                continue;
            *rv = *x;
            c->next = x->offset + 1;
            return 1;
        }
        c->in_batch = 0;
    }
}

int spw_cursor_next_batch(spw_cursor *c, const uint8_t **batch, const spw_batch_hdr **h)
{
    if (c->in_batch && spw_batch_next_offset(&c->h) <= c->next)
        c->in_batch = 0; /* spw_cursor_next returned its last record */
    if (!c->in_batch) {
        int r = enter_batch(c);
        if (r <= 0)
            return r;
    }
    c->in_batch = 0;
    *batch = c->batch;
    *h = &c->h;
    c->next = spw_batch_next_offset(&c->h);
    return 1;
}
