/*
 * Consumer groups (docs/api.md): per stream and group, a committed offset per
 * partition (the next offset to deliver) and at most one lease per
 * partition. A lease hands the records [from, to) of one partition to one
 * member until it is committed or expires; an expired lease is dropped and
 * its records are delivered again from the committed offset. Leases live
 * in memory only (a restart drops them all); committed offsets are durable:
 *
 *   DATA/groups/STREAM/GROUP   JSON, docs/formats/group-offsets.md
 *                              (temp file + fsync + rename + fsync of the
 *                              directory)
 *
 * This file is the state and its file; the service around it (long-poll parking,
 * answers, persistence off the I/O loop) is svc/consume.c.
 * Every function here is thread-safe: a group has its own mutex, the
 * registry a rwlock taken for lookups.
 */
#ifndef SPW_GROUPS_H
#define SPW_GROUPS_H

#include <pthread.h>
#include <stdint.h>

#define SPW_GROUP_NAME_MAX 128
#define SPW_GROUP_MEMBER_MAX 64
#define SPW_GROUP_PARTS_MAX 4096

typedef struct spw_groups spw_groups;
typedef struct spw_group spw_group;

/* A lease as the API shows it: "P-HHHHHHHHHHHHHHHH" (partition in decimal,
 * 16 hex digits of a process-unique id). */
typedef struct spw_lease {
    uint32_t partition;
    uint64_t id;
    uint64_t from; /* first offset delivered (the committed offset then) */
    uint64_t to;   /* one past the last offset delivered */
} spw_lease;

/* Per partition, for GET and /metrics. */
typedef struct spw_group_part_info {
    uint64_t committed;
    int held;                          /* a live lease */
    int64_t lease_left_ms;             /* when held */
    char holder[SPW_GROUP_MEMBER_MAX + 1]; /* when held */
} spw_group_part_info;

/* Group names follow the name rule (core/name.h) with at most 128
 * characters; member names the same rule with at most 64. */
int spw_group_name_ok(const char *name, size_t len);
int spw_group_member_ok(const char *name, size_t len);

/* Loads every DATA/groups/STREAM/GROUP (a file that does not parse is
 * logged and skipped, never fatal). Returns 0 or -errno (DATA/groups
 * cannot be created). */
int spw_groups_open(const char *data_dir, spw_groups **out);
void spw_groups_close(spw_groups *gs);

/*
 * The group (stream, name) of the stream's incarnation (catalog.h), or
 * NULL. A group of an older incarnation (left from an earlier stream of the
 * same name) is dropped and its file removed, logged; one of a newer
 * incarnation is not the caller's (it holds a deleted stream): NULL. With create and no such group, makes
 * it with nparts partitions committed at start[] (the first offset each
 * partition will deliver), marked dirty (not yet on disk), and sets
 * *created. The pointer stays valid until spw_groups_close.
 */
spw_group *spw_group_find(spw_groups *gs, const char *stream, uint64_t incarnation, const char *name, int create,
                          uint32_t nparts, const uint64_t *start, int *created);
uint32_t spw_group_nparts(const spw_group *g);
const char *spw_group_stream(const spw_group *g);
const char *spw_group_name(const spw_group *g);

/* Calls fn for every group (of every stream) while holding the registry's
 * read lock: fn must not create groups. */
void spw_groups_each(spw_groups *gs, void (*fn)(void *arg, spw_group *g), void *arg);

/*
 * Takes a lease for member on a partition nobody holds and with records
 * past its committed offset: end[p] is partition p's end (written offset),
 * first[p] its oldest stored offset (a committed offset below it starts at
 * it: retention deleted those records).
 * An expired lease counts as free (taking it over ends it). Partitions
 * are tried round robin so every one gets its turn.
 * Returns 1 with *l filled (l->to = l->from: set it with
 * spw_group_lease_delivered), or 0 if none is free with records.
 */
int spw_group_acquire(spw_group *g, const uint64_t *end, const uint64_t *first, uint32_t n, int64_t now_ms,
                      uint32_t lease_ms, const char *member, spw_lease *l);
/* Records what the lease delivered: [l->from, to). 0, or -ESTALE if the
 * lease is gone. */
int spw_group_lease_delivered(spw_group *g, const spw_lease *l, uint64_t to);
/* The records of the lease's partition from l->from up to to cannot be
 * read (damaged on disk): the committed offset moves to to (saved with the
 * next save) and the lease, kept, starts there (l->from = l->to = to).
 * 0, or -ESTALE if the lease is gone. */
int spw_group_skip(spw_group *g, spw_lease *l, uint64_t to);
/* Drops a lease without committing (a read failed). */
void spw_group_release(spw_group *g, const spw_lease *l);
/* Could a poll get something now (same test as acquire, nothing taken)? */
int spw_group_ready(spw_group *g, const uint64_t *end, const uint64_t *first, uint32_t n, int64_t now_ms);

/*
 * Commits offset (the next offset to read) on lease (partition, id) and
 * ends the lease. Returns 0 (the group is now dirty), or
 *   -ESTALE  no such lease (committed, taken over, from before a restart)
 *   -ETIME   the lease expired
 *   -ERANGE  offset outside [from, to] of the lease's records
 *   -EINVAL  no such partition
 * and changes nothing.
 */
int spw_group_commit(spw_group *g, uint32_t partition, uint64_t id, uint64_t offset, int64_t now_ms);

/* Sets partition's committed offset without a lease (the Kafka group
 * protocol: members own partitions by assignment and commit directly); a
 * lease on it ends. 0 (dirty if it changed), or -EINVAL no such partition. */
int spw_group_set_committed(spw_group *g, uint32_t partition, uint64_t offset);
/*
 * Sets the committed offsets of the partitions p < n with to[p] !=
 * UINT64_MAX (an operator's reset) in one step, refused while any of the
 * group's partitions is leased (a member holds records it has not
 * committed, and its commit would move the offset back): then -EBUSY,
 * holder (cap bytes, may be NULL) names a member holding one and nothing
 * changes. Expired leases end (their commits answer stale). 0 (dirty if
 * an offset changed).
 */
int spw_group_reset(spw_group *g, const uint64_t *to, uint32_t n, int64_t now_ms, char *holder, size_t cap);
/* Copies the group's state (n entries). */
void spw_group_info(spw_group *g, spw_group_part_info *out, uint32_t n, int64_t now_ms);

/* Writes the group's committed offsets to its file if they changed since
 * the last save. Returns 0 or -errno (the group stays dirty). Saves of one
 * group are serialized. */
int spw_group_save(spw_groups *gs, spw_group *g);

/* A committed offset past the partition's end (end: its end when opened,
 * spw_part_open_end) is set down to end: returns 1 with *old the offset it
 * had (the caller logs it and saves the group), else 0. Any thread. */
int spw_group_clamp(spw_group *g, uint32_t partition, uint64_t end, uint64_t *old);

/* Stream deleted (called by spw_catalog_delete under its create/delete
 * lock: spw_catalog_set_groups): forgets its groups (their memory stays until
 * spw_groups_close: parked polls may still point at them; they lease
 * nothing and are never saved) and removes DATA/groups/STREAM. Returns 0
 * or the first -errno of the removal (logged). */
int spw_groups_drop_stream(spw_groups *gs, const char *stream);
/* Test builds only (server/testhooks.c): called as a drop starts. */
extern void (*spw_groups_test_drop_pause)(const char *stream);

/* "P-HHHH..." of a lease into out (cap >= 32); parsing the reverse:
 * 0 or -EINVAL. */
void spw_lease_format(const spw_lease *l, char *out, size_t cap);
int spw_lease_parse(const char *s, size_t n, uint32_t *partition, uint64_t *id);

#endif
