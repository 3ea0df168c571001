/*
 * The C client library: see include/spillway.h and docs/protocol.md.
 * This file holds what every part of it shares: error strings and server
 * addresses. One concept a file beside it:
 *   producer.c     the producer: batching, send, flush, close, sequences;
 *   producer_io.c  its I/O thread: connections, in-flight batches, answers;
 *   sync_client.c  the synchronous client: AUTH, FETCH, METADATA.
 * client_impl.h holds what they share; client_int.h what tests reach.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "spillway.h"
#include "client/client_int.h"
#include "client/client_impl.h"
#include "core/clock.h"
#include "core/hash.h"
#include "core/hostport.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/endian.h"
#include "core/error.h"
#include "core/ring.h"
#include "wire/frame.h"

const char *spillway_errstr(int err)
{
    switch (err) {
    case 0: return "success";
    case SPILLWAY_ERR_BAD_REQUEST: return "the server refused the request as malformed (400)";
    case SPILLWAY_ERR_UNAUTHORIZED: return "no valid token: the server needs one (401)";
    case SPILLWAY_ERR_FORBIDDEN: return "the token is not allowed to do this on this stream (403)";
    case SPILLWAY_ERR_NOT_FOUND: return "no such stream or partition (404)";
    case SPILLWAY_ERR_REQUEST_TIMEOUT: return "the request did not reach the server in time (408)";
    case SPILLWAY_ERR_CONFLICT: return "this producer id and sequence were used for other records (409 sequence_reused)";
    case SPILLWAY_ERR_TOO_LARGE: return "record, frame or batch too large (413)";
    case SPILLWAY_ERR_OUT_OF_RANGE: return "offset outside the partition (416)";
    case SPILLWAY_ERR_RATE_LIMITED: return "rate limited (429)";
    case SPILLWAY_ERR_INTERNAL: return "the server failed the request (500)";
    case SPILLWAY_ERR_NOT_IMPLEMENTED: return "not implemented by the server (501)";
    case SPILLWAY_ERR_OVERLOADED: return "the server is overloaded (503)";
    case SPILLWAY_ERR_REPLICATION_REJECTED:
        return "stored on the server, but its replica's target refused a record (422 replication_rejected)";
    case SPILLWAY_ERR_REPLICATION_TIMEOUT:
        return "stored on the server, but its replica did not confirm it in time (504 replication_timeout)";
    case SPILLWAY_ERR_TLS: return "TLS: the CA file did not load, or the handshake failed (a certificate that does "
                                  "not verify, or a server without TLS)";
    case SPILLWAY_ERR_DISK: return "the server's disk is full or failing (507)";
    case SPILLWAY_ERR_PROTOCOL: return "the peer broke the protocol";
    case SPILLWAY_ERR_TIMEOUT: return "timed out";
    case SPILLWAY_ERR_CANCELED: return "canceled: the producer was closed first";
    default: return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
    }
}

/* ---- hashing (documented in spillway.h) ---- */

/* ---- addresses ---- */

int spw__client_parse_hostport(const char *s, size_t n, char *name, size_t namecap, char *host, uint16_t *port)
{
    if (n == 0 || n >= namecap)
        return SPILLWAY_ERR_INVALID;
    memcpy(name, s, n);
    name[n] = 0;
    /* "[IPV6]:PORT": the literal checked by spw_hostport_parse */
    char h[SPW_CLIENT_HOST_MAX + 1];
    int v6;
    if (spw_hostport_parse(name, h, sizeof h, port, 0, &v6))
        return SPILLWAY_ERR_INVALID;
    size_t hl = strlen(h);
    if (!v6) {
        if (name[0] == '-' || name[0] == '.')
            return SPILLWAY_ERR_INVALID;
        for (size_t i = 0; i < hl; i++) {
            char c = h[i];
            if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                  c == '.'))
                return SPILLWAY_ERR_INVALID;
        }
    }
    memcpy(host, h, hl + 1);
    return 0;
}

int spw__client_resolve(const char *host, uint16_t port, struct sockaddr_storage *out, socklen_t *lens)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    char ps[8];
    snprintf(ps, sizeof ps, "%u", (unsigned)port);
    struct addrinfo *res = NULL;
    if (getaddrinfo(host, ps, &hints, &res) != 0 || !res)
        return SPILLWAY_ERR_INVALID;
    int n = 0;
    for (struct addrinfo *a = res; a && n < SPW_CLIENT_ADDRS_MAX; a = a->ai_next) {
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) || a->ai_addrlen > sizeof *out)
            continue;
        memcpy(&out[n], a->ai_addr, a->ai_addrlen);
        lens[n] = a->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    return n ? n : SPILLWAY_ERR_INVALID;
}
