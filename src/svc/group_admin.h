/*
 * Consumer-group administration, for every front end (HTTP in
 * http/groups_http.c; docs/api.md "Consumer groups"): the groups of a
 * stream, and an operator's reset of a group's committed offsets to the
 * earliest stored offset, the durable end, or a given offset (as Kafka's
 * kafka-consumer-groups --reset-offsets), refused while a member holds a
 * lease on one of its partitions. The reset's save (a file write and
 * fsyncs) goes through the consume service's commit queue, off the loops
 * (spw_consume_commit_saved).
 */
#ifndef SPW_SVC_GROUP_ADMIN_H
#define SPW_SVC_GROUP_ADMIN_H

#include <stdint.h>

#include "catalog/catalog.h"
#include "core/buf.h"
#include "svc/consume.h"
#include "svc/status.h"

/*
 * Front ends whose groups have members of their own register here (the
 * Kafka group coordinator, kafka/kafka_group.c: a Kafka group's offsets
 * are the Spillway group's of the same name, on each stream it reads).
 * fn(arg, group, member, cap) returns 1, with one member's id in member,
 * while group has members; a reset is refused then, and the list shows
 * the group active. Process-wide; any thread.
 */
typedef int (*spw_group_members_fn)(void *arg, const char *group, char *member, size_t cap);
void spw_svc_group_members_register(spw_group_members_fn fn, void *arg);
void spw_svc_group_members_unregister(void *arg);

/*
 * A reset of group runs now (from before it checks for members until it
 * has changed the offsets)? A front end that adds members checks this
 * under its own members lock before adding one, and refuses the join
 * (retriably) while it is 1: a member that joined between the reset's
 * check and its change would read from the offsets the reset replaces.
 * Any thread.
 */
int spw_svc_group_resetting(const char *group);

/* Test builds only (server/testhooks.c): called by a reset after its
 * member checks, before it changes the offsets; NULL otherwise. */
extern void (*spw_svc_group_reset_test_pause)(const char *group);

/* One group of a stream, as spw_svc_groups_list gives it. */
typedef struct spw_group_summary {
    char name[SPW_GROUP_NAME_MAX + 1];
    uint32_t partitions;
    uint32_t leased; /* partitions leased now */
    int members_elsewhere; /* a registered front end's members (a Kafka group) */
    uint64_t lag;    /* records stored after the committed offsets, all partitions */
    char member[SPW_GROUP_MEMBER_MAX + 1]; /* a member holding a lease, "" if none */
} spw_group_summary;

/* The groups of stream s (of its incarnation), sorted by name: *out
 * (spw_free it), returns their count. */
uint32_t spw_svc_groups_list(spw_consume *cs, spw_stream *s, spw_group_summary **out);
/* The same as the JSON of GET /v1/streams/{s}/groups (docs/api.md), without
 * its closing newline, appended to out: the one rendering HTTP and the
 * binary protocol's GROUP_LIST answer with. */
void spw_svc_groups_list_json(spw_consume *cs, spw_stream *s, spw_buf *out);

typedef enum { SPW_RESET_EARLIEST, SPW_RESET_LATEST, SPW_RESET_OFFSET } spw_reset_to;

/* A reset's outcome per partition. */
typedef struct spw_reset_part {
    uint64_t before, after;
    int changed; /* this partition was reset (all, or the one asked for) */
} spw_reset_part;

/*
 * Resets group gname of stream s: every partition, or only partition
 * (>= 0), to its oldest stored offset (earliest), its durable end
 * (latest), or offset (SPW_RESET_OFFSET: from the oldest stored offset to
 * the durable end; below the oldest it would start there anyway, so it is
 * refused too). SPW_SC_OK with *g (save it: spw_consume_commit_saved),
 * *n partitions and *parts (spw_free it); else the code with msg and
 * nothing changed: SPW_SC_NO_SUCH_GROUP, SPW_SC_NO_SUCH_PARTITION,
 * SPW_SC_BAD_OFFSET, SPW_SC_GROUP_ACTIVE.
 */
spw_sc spw_svc_group_reset(spw_consume *cs, spw_stream *s, const char *gname, spw_reset_to to, uint64_t offset,
                           int64_t partition, spw_group **g, spw_reset_part **parts, uint32_t *n, char *msg,
                           size_t cap);

/*
 * A reset as its request body says it (docs/api.md "Reset": {"to":
 * "earliest"|"latest"|N[,"partition":P]}, at most 4096 bytes) and its
 * answer's JSON (without a closing newline) appended to answer: the one
 * parse and rendering HTTP and the binary protocol's GROUP_RESET share.
 * SPW_SC_OK with *g to save (spw_consume_commit_saved), else the code of
 * spw_svc_group_reset or SPW_SC_BAD_JSON, with msg.
 */
spw_sc spw_svc_group_reset_json(spw_consume *cs, spw_stream *s, const char *gname, const char *body, size_t len,
                                spw_group **g, spw_buf *answer, char *msg, size_t cap);

#endif
