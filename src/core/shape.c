/* Shape validation shared by every kernel and layer. */
#include <syncbn/shape.h>

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

sbn_status sbn_shape_check(sbn_shape shape, int64_t *elements)
{
    if (shape.layout != SBN_NCS && shape.layout != SBN_NSC)
        return sbn_fail(SBN_ERR_ARG, "unknown layout %d (expected SBN_NCS or SBN_NSC)", (int)shape.layout);
    if (shape.dtype != SBN_DTYPE_F32 && shape.dtype != SBN_DTYPE_BF16 && shape.dtype != SBN_DTYPE_F16)
        return sbn_fail(SBN_ERR_ARG, "activation dtype %s (%d) is not F32, BF16 or F16", sbn_dtype_name(shape.dtype),
                        (int)shape.dtype);
    if (shape.n < 0 || shape.c < 0 || shape.s < 0)
        return sbn_fail(SBN_ERR_SHAPE, "negative size in shape (n=%lld, c=%lld, s=%lld)",
                        (long long)shape.n, (long long)shape.c, (long long)shape.s);
    int64_t count = 0, values_per_channel = 0;
    /* Bytes, not just elements, must fit: a float tensor of count elements is
     * 4*count bytes. n*s (values per channel) must fit too, even when c == 0. */
    if (__builtin_mul_overflow(shape.n, shape.c, &count) || __builtin_mul_overflow(count, shape.s, &count) ||
        __builtin_mul_overflow(shape.n, shape.s, &values_per_channel) || count > (int64_t)(PTRDIFF_MAX / 8))
        return sbn_fail(SBN_ERR_SHAPE, "shape (n=%lld, c=%lld, s=%lld) has more elements than fit in memory",
                        (long long)shape.n, (long long)shape.c, (long long)shape.s);
    if (elements)
        *elements = count;
    return SBN_OK;
}
