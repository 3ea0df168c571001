/*
 * Adding up the parts of one view key held by several nodes
 * (docs/api.md "Reads across nodes"): a view grouped by a JSON field, not
 * by the stream's key, has a part of a group on every node that got such
 * events, and a cluster read merges them. These are the merges that are
 * exact whatever the order: counts and sums add, min is the min of mins,
 * max the max of maxes, a bucket is final when it is final on every node.
 */
#ifndef SPW_CLI_VIEW_MERGE_H
#define SPW_CLI_VIEW_MERGE_H

#include <stddef.h>

#include "core/buf.h"
#include "core/json.h"

/*
 * Appends to out one JSON object merging the n objects parts (n >= 1, each
 * an object span from spw_json_scan): the members of parts[0] in its
 * order, "count" and "sum" added (an exact 64-bit integer while every part
 * and every partial sum is one, else a double printed with 17 significant
 * digits, as one server's sums: docs/api.md "Numbers"), "min" and "max"
 * the least and greatest part (kept as that part wrote it), "final" true
 * when every part's is, any other member parts[0]'s. A member missing
 * from a part counts as absent from it.
 */
void spw__cli_view_merge(const spw_json_span *parts, size_t n, spw_buf *out);

/* The number member name of obj as a double (0 if absent or not a number). */
double spw__cli_view_num(const spw_json_span *obj, const char *name);

#endif
