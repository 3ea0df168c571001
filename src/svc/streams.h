/*
 * Stream definitions for every front end (HTTP PUT/GET /v1/streams/NAME in
 * http/api_streams.c, the binary protocol's STREAM_CREATE and
 * STREAM_DESCRIBE in bin/bin_meta.c; docs/api.md "Streams",
 * docs/protocol.md): one parse and check of a definition, one create
 * through the catalog with one mapping of its outcomes to the status
 * table, one description.
 */
#ifndef SPW_SVC_STREAMS_H
#define SPW_SVC_STREAMS_H

#include <stddef.h>

#include "catalog/catalog.h"
#include "catalog/stream.h"
#include "core/buf.h"
#include "svc/status.h"

struct spw_svc;

/* The definition text (PUT's body, a JSON object) of stream name
 * into *c: SPW_SC_OK, or SPW_SC_BAD_CONFIG with the sentence in msg. */
spw_sc spw_svc_stream_parse(const char *name, const char *def, size_t len, spw_stream_config *c, char *msg,
                            size_t cap);

/* Creates stream c (spw_catalog_create: directories, files, fsyncs — run
 * it on an I/O worker): SPW_SC_OK with *created 1 (new) or 0 (an
 * identical stream exists), or SPW_SC_EXISTS, SPW_SC_DIRECTORY_EXISTS,
 * SPW_SC_CREATE_FAILED with msg. */
spw_sc spw_svc_stream_create(struct spw_svc *svc, const spw_stream_config *c, int *created, char *msg, size_t cap);

/* Stream s as JSON into b: its definition (spw_stream_config_json) and,
 * with detail, its incarnation and each partition's state. */
void spw_svc_stream_json(spw_stream *s, int detail, spw_buf *b);

#endif
