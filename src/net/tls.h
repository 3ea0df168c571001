/*
 * TLS for the listeners (docs/operations.md "TLS"): a server certificate
 * and its key, loaded from PEM files into an OpenSSL SSL_CTX, TLS 1.2 at
 * least. One spw_tls serves every listener of the process; the connection
 * core (net/conn.c) makes each accepted connection's session from it and
 * runs the handshake and the record layer on the I/O loops.
 *
 * Reload (SIGHUP): spw_tls_reload reads both files again into a new
 * SSL_CTX and, only if that succeeds, makes it the current one; a bad
 * file changes nothing. The SSL_CTX is reference-counted (OpenSSL's own
 * count: every session holds one), so connections made before keep the
 * context they began with and the old one is freed with its last session;
 * connections accepted after use the new one.
 *
 * OpenSSL writes with write(2), not send(MSG_NOSIGNAL): a process serving
 * TLS ignores SIGPIPE (spillway serve does; docs/operations.md "Signals").
 */
#ifndef SPW_TLS_H
#define SPW_TLS_H

#include <stddef.h>

typedef struct spw_tls spw_tls;
struct ssl_st;

/* Loads cert (PEM: the certificate, then any intermediates) and key (PEM
 * private key). 0, or -1 with the reason in err. */
int spw_tls_open(const char *cert, const char *key, spw_tls **out, char *err, size_t cap);
/* Reads the two files again (see above). 0, or -1 with the reason in err
 * and the current context kept. Any thread. */
int spw_tls_reload(spw_tls *t, char *err, size_t cap);
/* "subject ..., serial ..., expires ..." of the current certificate. */
void spw_tls_describe(spw_tls *t, char *out, size_t cap);
/* A server session over the accepted socket fd, from the current context
 * (NULL: out of memory). Any thread. */
struct ssl_st *spw_tls_session(spw_tls *t, int fd);
/* REQUIRES: no listener uses t any more (sessions made from it may live
 * on: they hold their context). */
void spw_tls_free(spw_tls *t);

#endif
