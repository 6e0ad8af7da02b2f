/* syncbn — element types.
 *
 * One list for every tensor the library reads or writes: activations
 * (sbn_shape.dtype: F32, BF16 or F16) and tensor files (every type).
 * BF16 is bfloat16 and F16 IEEE binary16, each element stored as its bits
 * (a uint16_t); names are safetensors' spellings.
 */
#ifndef SYNCBN_DTYPE_H
#define SYNCBN_DTYPE_H

#include <stdint.h>
#include <syncbn/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sbn_dtype {
    SBN_DTYPE_F32, SBN_DTYPE_F64, SBN_DTYPE_I64, SBN_DTYPE_I32, SBN_DTYPE_U8, SBN_DTYPE_BF16, SBN_DTYPE_F16
} sbn_dtype;

SBN_API int64_t sbn_dtype_size(sbn_dtype dtype);     /* bytes per element; 0 for an unknown dtype */
SBN_API const char *sbn_dtype_name(sbn_dtype dtype); /* "F32", "BF16", ...; "?" for an unknown dtype */

/* Conversion between float32 and BF16/F16, as PyTorch's .float() and
 * .to(dtype): widening is exact; narrowing rounds to nearest, ties to even,
 * keeps NaN a (quiet) NaN, gives +-inf past the type's range (F16: from
 * 65520 on) and keeps subnormals (no flush to zero). dst and src must not
 * overlap. Errors: SBN_ERR_ARG (a type other than BF16/F16/F32, count < 0,
 * a NULL pointer with count > 0). */
SBN_API sbn_status sbn_convert_to_float(float *dst, const void *src, sbn_dtype src_type, int64_t count);
SBN_API sbn_status sbn_convert_from_float(void *dst, sbn_dtype dst_type, const float *src, int64_t count);

#ifdef __cplusplus
}
#endif
#endif
