/*
 * Help text at 80 columns: see help.h. The text is read as blocks — a
 * table row or a prose line, with the lines that continue it — and each
 * block is written again filled to the width.
 */
#include "core/help.h"

#include <string.h>

#include "core/buf.h"

/* A line reaching this column was wrapped by its author, not ended: the
 * next line of the block's indentation continues it. */
#define JOIN_COL 64

/* The description column of line l (length n): after the first gap of two
 * or more spaces that follows text (a flag, a setting's name and type),
 * if it is left of column 48; else the line's indentation (prose). */
static size_t desc_col(const char *l, size_t n)
{
    size_t i = 0;
    while (i < n && l[i] == ' ')
        i++;
    size_t lead = i;
    for (; i + 2 < n && i < 48; i++)
        if (l[i] != ' ' && l[i + 1] == ' ' && l[i + 2] == ' ') {
            size_t j = i + 1;
            while (j < n && l[j] == ' ')
                j++;
            return j < 48 ? j : lead;
        }
    return lead;
}

/* Writes head (its first line's start, kept as is) then words filled to
 * width, continuation lines indented by hang. */
static void fill(FILE *f, const char *head, size_t head_len, const char *text, size_t len, size_t hang, size_t width)
{
    fwrite(head, 1, head_len, f);
    size_t col = head_len, i = 0;
    int first = 1;
    while (i < len) {
        while (i < len && text[i] == ' ')
            i++;
        size_t w = 0;
        while (i + w < len && text[i + w] != ' ')
            w++;
        if (w == 0)
            break;
        if (!first && col + 1 + w > width) {
            fprintf(f, "\n%*s", (int)hang, "");
            col = hang;
            first = 1;
        }
        if (!first) {
            fputc(' ', f);
            col++;
        }
        fwrite(text + i, 1, w, f);
        col += w;
        i += w;
        first = 0;
    }
    fputc('\n', f);
}

void spw_help_write(FILE *f, const char *text, size_t width)
{
    spw_buf blk = SPW_BUF_INIT; /* the open block's words */
    const char *head = NULL;    /* its first line, up to its description column */
    size_t head_len = 0, hang = 0, last_len = 0;
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        size_t lead = 0;
        while (lead < n && p[lead] == ' ')
            lead++;
        size_t dc = lead < n ? desc_col(p, n) : 0;
        if (head && lead < n && lead == hang && dc == lead && last_len >= JOIN_COL) {
            spw_buf_put(&blk, " ", 1); /* continues the block */
            spw_buf_put(&blk, p + lead, n - lead);
            last_len = n;
        } else {
            if (head)
                fill(f, head, head_len, (const char *)blk.p, blk.len, hang, width);
            head = NULL;
            blk.len = 0;
            if (lead == n) {
                fputc('\n', f);
            } else {
                head = p;
                head_len = dc;
                hang = dc;
                last_len = n;
                spw_buf_put(&blk, p + dc, n - dc);
            }
        }
        p += n;
        if (*p == '\n')
            p++;
    }
    if (head)
        fill(f, head, head_len, (const char *)blk.p, blk.len, hang, width);
    spw_buf_fini(&blk);
}
