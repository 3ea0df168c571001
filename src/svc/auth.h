/*
 * Authentication and authorization (docs/operations.md "Tokens"):
 * the tokens file, which maps a bearer token to a tenant, the streams it
 * may touch and its permissions (produce, consume, admin), and the checks
 * both front ends make with it.
 *
 * Tables. A loaded file is an immutable, reference-counted spw_tokens.
 * The spw_auth holder points at the current one; SIGHUP builds a new table
 * from the file and swaps the pointer under a write lock, and a file that
 * does not parse leaves the old table in place. A request takes the read
 * lock only long enough to take a reference to the current table (no lock
 * is held while it is handled) and drops the reference when done, so a
 * swapped-out table lives until its last request finishes. A binary
 * connection keeps its reference between frames and takes a new one only
 * when the holder's generation changed (one atomic load per frame), so a
 * revoked token stops working on connections that authenticated before.
 *
 * Lookup. Each table has its own random 128-bit key; a token is found by
 * SipHash-2-4 of it under that key in an open-addressing table, and the
 * candidate is then compared in constant time. The probe sequence depends
 * only on a keyed hash the client cannot compute, so response times say
 * nothing about how close a guess was.
 *
 * Stream patterns: an exact stream name, a prefix ending in '*'
 * ("metrics.*" matches every name that starts with "metrics."), or "*".
 */
#ifndef SPW_AUTH_H
#define SPW_AUTH_H

#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>


#define SPW_TOKEN_MAX 256        /* bytes of a token in the file */
#define SPW_TENANT_MAX 63        /* [a-zA-Z0-9._-]{1,63} */
#define SPW_TOKENS_FILE_MAX (16u << 20)

enum { SPW_PERM_PRODUCE = 1u, SPW_PERM_CONSUME = 2u, SPW_PERM_ADMIN = 4u };

typedef struct spw_stream_pattern {
    char *text;   /* the name, or the prefix without its '*' */
    uint32_t len;
    int prefix;   /* 1: matches names that start with text ("*" is the empty prefix) */
} spw_stream_pattern;

typedef struct spw_token {
    char *token; /* the secret, NUL-terminated */
    uint32_t token_len;
    char tenant[SPW_TENANT_MAX + 1];
    unsigned perms; /* SPW_PERM_* */
    uint32_t npatterns;
    spw_stream_pattern *patterns;
} spw_token;

typedef struct spw_tokens spw_tokens;

/*
 * Parses the text of a tokens file (docs/operations.md):
 *   {"tokens":[{"token":"...","tenant":"acme","streams":["orders","metrics.*"],
 *               "permissions":["produce","consume","admin"]}, ...]}
 * Strict: every member of an entry is required, unknown members, wrong
 * types, duplicate members, an empty or malformed token, a token given
 * twice, a bad tenant name, a bad stream pattern or an unknown permission
 * are errors. Returns 0 and a table with one reference, or -1 with a
 * sentence naming the entry (by index and tenant, never by token) in err.
 */
int spw_tokens_parse(const char *text, size_t len, spw_tokens **out, char *err, size_t errcap);
/* The same from a file (at most SPW_TOKENS_FILE_MAX bytes); err starts
 * with the path. */
int spw_tokens_load(const char *path, spw_tokens **out, char *err, size_t errcap);
/* Takes and drops a reference; the last put frees the table. */
void spw_tokens_ref(spw_tokens *t);
void spw_tokens_put(spw_tokens *t);
uint32_t spw_tokens_count(const spw_tokens *t);
/* The entry whose token is exactly tok[0..len), or NULL. The entry lives
 * as long as the reference to t. */
const spw_token *spw_tokens_find(const spw_tokens *t, const char *tok, size_t len);

/* Does stream name[0..len) match one of e's patterns? */
int spw_token_sees(const spw_token *e, const char *name, size_t len);
/* Has e every permission in perms (0: none needed) and does name match
 * one of its patterns? */
int spw_token_allows(const spw_token *e, unsigned perms, const char *name, size_t len);

/* ---- the holder: the current table, reloaded on SIGHUP ---- */

typedef struct spw_auth {
    char path[1024];
    pthread_rwlock_t lock; /* guards cur; held only to swap it or take a reference */
    spw_tokens *cur;
    _Atomic uint64_t gen; /* bumped at every swap */
    /* for /metrics: refusals, and reloads that swapped or kept the table */
    _Atomic uint64_t unauthorized, forbidden;
    _Atomic uint64_t reloads_ok, reloads_failed;
} spw_auth;

/* Loads path into a new holder. Returns 0, or -1 with the reason in err. */
int spw_auth_open(const char *path, spw_auth **out, char *err, size_t errcap);
/* Reads the file again: 0 swapped in (the old table goes with its last
 * reference), -1 the old table stays and err says why. */
int spw_auth_reload(spw_auth *a, char *err, size_t errcap);
/* REQUIRES: nobody uses a anymore (the listeners are stopped). */
void spw_auth_close(spw_auth *a);
/* A reference to the current table (drop it with spw_tokens_put). */
spw_tokens *spw_auth_acquire(spw_auth *a, uint64_t *gen);

/* ---- a connection's login (binary protocol AUTH) ---- */

typedef struct spw_auth_session {
    char token[SPW_TOKEN_MAX + 1];
    uint32_t token_len; /* 0: not logged in */
    uint64_t gen;       /* of t */
    spw_tokens *t;      /* referenced, or NULL */
    const spw_token *e; /* token_len's entry in t, or NULL (revoked) */
} spw_auth_session;

/* Logs s in with tok. Returns 0 (s->e set), or -1: unknown token, and s
 * is logged out (a failed AUTH also ends an earlier login). */
int spw_auth_session_login(spw_auth *a, spw_auth_session *s, const char *tok, size_t len);
/* The session's entry in the current table (looked up again after a
 * reload), or NULL when not logged in or the token was revoked. */
const spw_token *spw_auth_session_who(spw_auth *a, spw_auth_session *s);
void spw_auth_session_fini(spw_auth_session *s);

/* A permission's name ("produce", ...) for messages. */
const char *spw_perm_name(unsigned perm);

#endif
