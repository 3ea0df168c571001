/*
 * The listeners' TLS contexts (net/tls.h). The context pointer is read
 * under a mutex when a connection is accepted and swapped under it by a
 * reload; SSL_new takes its own reference to the context, so the swap
 * only drops the holder's reference and the old context lives on in the
 * sessions made from it.
 */
#include "net/tls.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

struct spw_tls {
    pthread_mutex_t mu;
    SSL_CTX *ctx; /* current: new connections' */
    char *cert, *key;
};

/* OpenSSL's first error (the queue emptied) after what, into err. */
static void ssl_err(char *err, size_t cap, const char *what, const char *path)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    snprintf(err, cap, "%s %s: %s", what, path, e ? buf : "unknown error");
}

static SSL_CTX *ctx_load(const char *cert, const char *key, char *err, size_t cap)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        ssl_err(err, cap, "cannot make a TLS context for", cert);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Renegotiation off: a client could otherwise make a read need a
     * write at any time (and it costs the server a handshake). An EOF
     * without close_notify reads as an EOF: each protocol's framing says
     * whether a message was cut. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_COMPRESSION);
    /* Writes go out as far as the socket takes them (like send), from a
     * buffer that may move between tries (the connection's out grows). */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        ssl_err(err, cap, "tls-cert", cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        if (ERR_GET_REASON(ERR_peek_error()) == X509_R_KEY_VALUES_MISMATCH) {
            char what[1200];
            snprintf(what, sizeof what, "tls-key %s does not match the certificate in", key);
            ssl_err(err, cap, what, cert);
        } else {
            ssl_err(err, cap, "tls-key", key);
        }
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        ssl_err(err, cap, "tls-key does not match the certificate in", cert);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

int spw_tls_open(const char *cert, const char *key, spw_tls **out, char *err, size_t cap)
{
    SSL_CTX *ctx = ctx_load(cert, key, err, cap);
    if (!ctx)
        return -1;
    spw_tls *t = spw_xcalloc(1, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    t->ctx = ctx;
    t->cert = spw_xstrdup(cert);
    t->key = spw_xstrdup(key);
    *out = t;
    return 0;
}

int spw_tls_reload(spw_tls *t, char *err, size_t cap)
{
    SSL_CTX *ctx = ctx_load(t->cert, t->key, err, cap);
    if (!ctx)
        return -1;
    pthread_mutex_lock(&t->mu);
    SSL_CTX *old = t->ctx;
    t->ctx = ctx;
    pthread_mutex_unlock(&t->mu);
    SSL_CTX_free(old); /* the holder's reference; its sessions keep theirs */
    return 0;
}

void spw_tls_describe(spw_tls *t, char *out, size_t cap)
{
    pthread_mutex_lock(&t->mu);
    X509 *x = SSL_CTX_get0_certificate(t->ctx);
    char subj[256] = "?", serial[80] = "?", until[64] = "?";
    if (x) {
        X509_NAME_oneline(X509_get_subject_name(x), subj, sizeof subj);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        char *hex = bn ? BN_bn2hex(bn) : NULL;
        if (hex)
            snprintf(serial, sizeof serial, "%s", hex);
        OPENSSL_free(hex);
        BN_free(bn);
        BIO *b = BIO_new(BIO_s_mem());
        if (b && ASN1_TIME_print(b, X509_get0_notAfter(x))) {
            int n = BIO_read(b, until, sizeof until - 1);
            until[n > 0 ? n : 0] = 0;
        }
        BIO_free(b);
    }
    pthread_mutex_unlock(&t->mu);
    snprintf(out, cap, "subject %s, serial %s, expires %s", subj, serial, until);
}

SSL *spw_tls_session(spw_tls *t, int fd)
{
    pthread_mutex_lock(&t->mu);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);
    if (!ssl)
        return NULL;
    if (SSL_set_fd(ssl, fd) != 1) {
        SSL_free(ssl);
        return NULL;
    }
    SSL_set_accept_state(ssl);
    return ssl;
}

void spw_tls_free(spw_tls *t)
{
    if (!t)
        return;
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    spw_free(t->cert);
    spw_free(t->key);
    spw_free(t);
}
