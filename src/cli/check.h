/*
 * `spillway check DIR` and `spillway dump SEGMENT`: read-only tools over the
 * segment format (docs/formats/log.md). Neither writes anything.
 */
#ifndef SPW_CHECK_H
#define SPW_CHECK_H

#include <stdio.h>

typedef struct spw_check_result {
    unsigned partitions;
    unsigned segments;
    unsigned long long batches;
    unsigned long long records;
    unsigned long long bytes;
    unsigned damaged;       /* damaged ranges (data) */
    unsigned index_issues;  /* index entries that do not fit the data (rebuildable) */
    unsigned hot_keys_files; /* DATA/streams/NAME/hot_keys files read (a damaged one counts in damaged) */
} spw_check_result;

/*
 * Verifies every batch (header, CRC, every record decodes, offsets dense
 * within and across segments) of every partition directory at or below dir.
 * Prints one "DAMAGED ..." line per damaged range and "INDEX ..." lines for
 * index problems to out. Also checks every hot_keys file at or below dir
 * (docs/formats/hotkeys.md): a damaged one is a "DAMAGED ..." line. Returns 0 when it could read everything (look at
 * res->damaged), or -errno when dir cannot be read.
 */
int spw_check_dir(const char *dir, FILE *out, spw_check_result *res);

/* Prints every batch header and record of one segment file. Returns 0, or
 * 1 if damage stopped the dump, or -errno. */
int spw_dump_segment(const char *path, FILE *out, int headers_only);

#endif
