/* syncbn — status codes and error messages.
 *
 * Every public function that can fail returns an sbn_status. SBN_OK is 0; on
 * any other code sbn_errmsg() returns a sentence naming the problem (which
 * argument, which size, which rank). The message is thread-local and stays
 * until the next failing call on the same thread.
 */
#ifndef SYNCBN_STATUS_H
#define SYNCBN_STATUS_H

/* Marks the public API: the libraries are built with -fvisibility=hidden,
 * so only functions declared with SBN_API are exported. */
#ifndef SBN_API
#define SBN_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sbn_status {
    SBN_OK = 0,
    SBN_ERR_ARG,       /* a NULL pointer, an option out of range, an unknown enum value,
                          a call out of order (backward before any forward) */
    SBN_ERR_SHAPE,     /* negative or overflowing sizes, a channel count other than the layer's */
    SBN_ERR_BATCH,     /* training with fewer than 2 values per channel (global count for SyncBN) */
    SBN_ERR_NOMEM,     /* an allocation failed */
    SBN_ERR_COMM,      /* the communicator failed or timed out waiting for its peers */
    SBN_ERR_MISMATCH,  /* ranks of one communicator disagree (channels, mode, layer, pass) */
    SBN_ERR_IO,        /* a file could not be opened, read or written */
    SBN_ERR_FORMAT     /* a file's contents are malformed */
} sbn_status;

/* The name of a status code ("SBN_ERR_SHAPE"); never NULL. */
SBN_API const char *sbn_status_str(sbn_status status);

/* The detail of the last error on this thread ("" if none yet); never NULL. */
SBN_API const char *sbn_errmsg(void);

#ifdef __cplusplus
}
#endif
#endif
