/*
 * The checks before a request, once for every front end: every request
 * that names a stream (produce, read/FETCH, METADATA of one stream,
 * group GET/poll/commit) first has its names checked against the name
 * rule (core/name.h), then the token's permission (svc/auth.h), then
 * the stream looked up in the catalog — in that order, so a bad name is
 * refused before anyone learns whether the stream exists, and a token
 * learns nothing about streams it may not use. The answers are codes of
 * the status table (svc/status.h) with their sentences; the front end
 * only encodes them. Authentication itself (who the caller is: an HTTP
 * Authorization header, a binary connection's AUTH) is the front end's,
 * as it is framing; it passes the token it found.
 *
 * Contracts:
 *   - who is the caller's token, NULL when the server has no tokens file
 *     (then every permission is granted).
 *   - A refused permission counts in auth->forbidden (the
 *     spillway_auth_refused_total{reason="forbidden"} metric), once.
 *   - On SPW_SC_OK *out holds a reference to the stream (spw_stream_put);
 *     on any other code *out is NULL and msg holds the sentence.
 *   - Thread-safe: the catalog and the token table are.
 */
#ifndef SPW_SVC_REQUEST_H
#define SPW_SVC_REQUEST_H

#include <stddef.h>

#include "svc/status.h"

struct spw_catalog;
struct spw_stream;
struct spw_auth;
struct spw_token;

/* A request's names against the name rules: the stream's (SPW_SC_BAD_NAME)
 * and, when group is not NULL, the group's and a member's (len 0: none)
 * (SPW_SC_BAD_GROUP_NAME). SPW_SC_OK or the code, with msg. */
spw_sc spw_svc_names(const char *name, size_t len, const char *group, size_t glen, const char *member, size_t mlen,
                     char *msg, size_t cap);

/* The stream name (len bytes) names, after the name rule, who's perms
 * (SPW_PERM_*; 0: any token that may name the stream) and the lookup:
 * SPW_SC_OK with *out, or SPW_SC_BAD_NAME, SPW_SC_FORBIDDEN,
 * SPW_SC_NO_SUCH_STREAM with msg. */
spw_sc spw_svc_stream_for(struct spw_catalog *cat, struct spw_auth *auth, const struct spw_token *who,
                          const char *name, size_t len, unsigned perms, struct spw_stream **out, char *msg,
                          size_t cap);

/* who's perms on stream name, as spw_svc_stream_for checks them (for a
 * request that names no stream yet: name NULL checks nothing). */
spw_sc spw_svc_allowed(struct spw_auth *auth, const struct spw_token *who, const char *name, size_t len,
                       unsigned perms, char *msg, size_t cap);

#endif
