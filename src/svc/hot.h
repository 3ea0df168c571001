/*
 * The produce service's side of hot keys (catalog/hotkeys.h): counting a
 * request's keys and handing a key that passed its stream's threshold to
 * an I/O worker, which records the split durably before it takes effect;
 * the hottest keys and the splits in GET /v1/streams/{s} and /metrics.
 * Routing a split key's events is spw_produce_route's (produce.h).
 */
#ifndef SPW_SVC_HOT_H
#define SPW_SVC_HOT_H

#include <stdint.h>

#include "catalog/catalog.h"
#include "core/buf.h"

struct spw_svc;
struct spw_metrics;

/* Counts the keys of a request about to be appended to s (s->hot set);
 * keys over the threshold are queued for spw_hot_record on svc->io
 * (without io, or with its queue full, the decision waits for a later
 * request). Any thread; no I/O. */
void spw__hot_observe(struct spw_svc *svc, spw_stream *s, const spw_record *in, uint32_t n);

/* ,"hot_keys_state":{"split":[..],"top":[..],"refused":n} for a stream
 * with hot_keys (nothing for others), appended to a describe. */
void spw_hot_describe(spw_stream *s, spw_buf *b);

/* spillway_stream_hot_key_events_per_second{stream,key} (at most "top"
 * keys per stream) and spillway_stream_hot_keys_split{stream}. */
void spw_hot_metrics_register(struct spw_metrics *m, struct spw_svc *svc);

#endif
