/* Status names and the thread-local error message. */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

enum { MESSAGE_BYTES = 1024 };
static _Thread_local char last_error_message[MESSAGE_BYTES];

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

/* Appends tail to the NUL-terminated text in buffer, truncating to fit. */
static void append_text(char *buffer, size_t size, const char *tail)
{
    const size_t used = strlen(buffer), room = size - 1 - used, length = strlen(tail);
    const size_t take = length < room ? length : room;
    memcpy(buffer + used, tail, take);
    buffer[used + take] = '\0';
}

/* Both format into a local buffer and copy it in, so that an argument
 * pointing into the current message (sbn_errmsg()) is still read intact. */
sbn_status sbn_fail(sbn_status status, const char *format, ...)
{
    char text[MESSAGE_BYTES];
    va_list args;
    va_start(args, format);
    vsnprintf(text, sizeof text, format, args);
    va_end(args);
    memcpy(last_error_message, text, sizeof text);
    return status;
}

sbn_status sbn_fail_with_cause(sbn_status status, const char *format, ...)
{
    char text[MESSAGE_BYTES];
    va_list args;
    va_start(args, format);
    const int written = vsnprintf(text, sizeof text, format, args);
    va_end(args);
    if (written >= 0) {
        append_text(text, sizeof text, ": ");
        append_text(text, sizeof text, last_error_message);
    }
    memcpy(last_error_message, text, sizeof text);
    return status;
}
