/*
 * Error codes. Every fallible function returns 0 (or a non-negative count)
 * on success and a negative errno-style value on failure, as libuv does, so
 * errors from the OS pass through unchanged. Codes the OS does not have get
 * values below SPW__ERR_BASE. spw_strerror() names all of them.
 *
 * "Try again" is SPW_EAGAIN: the operation was refused for now (a budget is
 * full) and may succeed later with no change by the caller.
 */
#ifndef SPW_ERROR_H
#define SPW_ERROR_H

#include <errno.h>

#define SPW_OK 0
#define SPW_EAGAIN (-EAGAIN)       /* budget full / try again later */
#define SPW_ENOMEM (-ENOMEM)
#define SPW_EINVAL (-EINVAL)       /* bad argument or bad input */
#define SPW_EMSGSIZE (-EMSGSIZE)   /* larger than any budget could hold */
#define SPW_ERANGE (-ERANGE)       /* offset outside the log */
#define SPW_EROFS (-EROFS)         /* partition failed an I/O and is read-only */
#define SPW_ECANCELED (-ECANCELED) /* log closing */

#define SPW__ERR_BASE (-10000)
#define SPW_ECORRUPT (SPW__ERR_BASE - 1) /* checksum or structure mismatch */
#define SPW_ETRUNC (SPW__ERR_BASE - 2)   /* data ends inside a structure */
#define SPW_EDISKLIMIT (SPW__ERR_BASE - 20) /* the configured max-disk-bytes is reached */
#define SPW_ECONFLICT (SPW__ERR_BASE - 21)  /* a versioned key is not at the version the request expects */
#define SPW_EDELETED (SPW__ERR_BASE - 22)   /* the stream was deleted (its partitions retired: docs/architecture.md) */

/* Returns a static human-readable sentence for an error code. */
const char *spw_strerror(int err);

#endif
