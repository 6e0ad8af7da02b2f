/* Status names and the thread-local error message. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>

static _Thread_local char last_error_message[512];

static const char *const status_names[] = {
    [SBN_OK] = "SBN_OK",
    [SBN_ERR_ARG] = "SBN_ERR_ARG",
    [SBN_ERR_SHAPE] = "SBN_ERR_SHAPE",
    [SBN_ERR_BATCH] = "SBN_ERR_BATCH",
    [SBN_ERR_NOMEM] = "SBN_ERR_NOMEM",
    [SBN_ERR_COMM] = "SBN_ERR_COMM",
    [SBN_ERR_MISMATCH] = "SBN_ERR_MISMATCH",
    [SBN_ERR_IO] = "SBN_ERR_IO",
    [SBN_ERR_FORMAT] = "SBN_ERR_FORMAT",
};

const char *sbn_status_str(sbn_status status)
{
    if ((unsigned)status >= sizeof status_names / sizeof status_names[0])
        return "SBN_UNKNOWN_STATUS";
    return status_names[status];
}

const char *sbn_errmsg(void) { return last_error_message; }

sbn_status sbn_fail(sbn_status status, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(last_error_message, sizeof last_error_message, format, args);
    va_end(args);
    return status;
}
