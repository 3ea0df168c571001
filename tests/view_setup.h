/*
 * The setup the view unit tests share (tests/unit/test_view_*.c): a
 * temporary data directory with a log and a catalog, a stream created
 * from its JSON definition, views put by definition, and the teardown
 * that closes and removes it all. Each helper CHECKs its calls, so a test
 * reads as what it does to the views.
 */
#ifndef SPW_TEST_VIEW_SETUP_H
#define SPW_TEST_VIEW_SETUP_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/catalog.h"
#include "log/log.h"
#include "view/view.h"
#include "test.h"

typedef struct vs_env {
    char *dir; /* the data directory (removed by vs_close) */
    spw_log *log;
    spw_catalog *cat;
} vs_env;

/* A fresh data directory named after tag, its log and catalog
 * (segment_bytes: the catalog's segment size, 0 for its default). */
static inline void vs_open(vs_env *e, const char *tag, uint64_t segment_bytes)
{
    e->dir = spw_test_tmpdir(tag);
    CHECK_OK(spw_log_open(NULL, &e->log));
    CHECK_OK(spw_catalog_open(e->log, e->dir, segment_bytes, &e->cat));
}

/* Creates stream name from its JSON definition def: the stream, referenced
 * (the caller puts it with spw_stream_put). */
static inline spw_stream *vs_stream(vs_env *e, const char *name, const char *def)
{
    spw_stream_config c;
    char err[256];
    int r = spw_stream_config_parse(&c, name, def, strlen(def), err, sizeof err);
    if (r != 0)
        fprintf(stderr, "stream %s: %s\n", name, err);
    CHECK_EQ(r, 0);
    CHECK_EQ(spw_catalog_create(e->cat, &c), 1);
    spw_stream *s = spw_stream_get(e->cat, name, strlen(name));
    CHECK(s != NULL);
    return s;
}

/* Creates view name (body: its JSON definition); it must be new. */
static inline void vs_put_view(spw_views *m, const char *name, const char *body)
{
    spw_buf b = SPW_BUF_INIT;
    char err[400];
    int r = spw_views_put(m, name, body, strlen(body), &b, err, sizeof err);
    if (r != 1)
        fprintf(stderr, "view %s: %d %s\n", name, r, err);
    CHECK_EQ(r, 1);
    spw_buf_fini(&b);
}

/* Closes the catalog and the log and removes the data directory.
 * REQUIRES: the views closed and every stream put. */
static inline void vs_close(vs_env *e)
{
    spw_catalog_close(e->cat);
    spw_log_close(e->log);
    spw_test_rmrf(e->dir);
    free(e->dir);
    e->dir = NULL;
}

#endif
