/* Internal: how library code reports an error. */
#ifndef SBN_CORE_ERROR_H
#define SBN_CORE_ERROR_H

#include <syncbn/status.h>

/* Sets this thread's message (printf-style) and returns status, so that a
 * failing path reads `return sbn_fail(SBN_ERR_ARG, "x is NULL");`. */
/* Exported (SBN_API) although not public: libsyncbn_train reports its errors
 * through libsyncbn's one thread-local message. */
SBN_API sbn_status sbn_fail(sbn_status status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

/* As sbn_fail, then ": " and this thread's current message, the failure
 * that caused this one: "SyncBN layer 2 forward: <why the collective failed>".
 * The cause is copied out before the new text is written (passing
 * sbn_errmsg() to sbn_fail would format the buffer into itself). */
SBN_API sbn_status sbn_fail_with_cause(sbn_status status, const char *format, ...)
    __attribute__((format(printf, 2, 3)));

#endif
