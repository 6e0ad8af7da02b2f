/* Element types: float32, bfloat16, IEEE float16.
 *
 * bfloat16 is the top half of a float32, so widening is a shift and
 * narrowing is rounding the low half away (to nearest, ties to even, NaN
 * kept quiet). float16 has its own exponent range: narrowing rounds into
 * its subnormals and overflows to inf from 65520 on, as C's (_Float16) cast
 * and the F16C instructions do; those instructions are used when the build
 * targets a CPU with them (the scalar code is the reference they are tested
 * against). */
#include "core/element.h"

#include <string.h>

#include "core/error.h"

static uint32_t float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static float bits_float(uint32_t bits)
{
    float value;
    memcpy(&value, &bits, sizeof value);
    return value;
}

float element_bfloat16_to_float(uint16_t bits) { return bits_float((uint32_t)bits << 16); }

uint16_t element_float_to_bfloat16(float value)
{
    const uint32_t bits = float_bits(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((bits >> 16) | 0x0040u); /* NaN, made quiet */
    return (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

float element_float16_to_float(uint16_t bits)
{
    const uint32_t sign = (uint32_t)(bits & 0x8000u) << 16, exponent = (bits >> 10) & 0x1fu, mantissa = bits & 0x3ffu;
    if (exponent == 0) { /* zero or subnormal: mantissa * 2^-24, exact in float */
        const float magnitude = (float)mantissa * 0x1p-24f;
        return bits_float(sign | float_bits(magnitude));
    }
    if (exponent == 31) return bits_float(sign | 0x7f800000u | (mantissa << 13) | (mantissa ? 0x00400000u : 0u));
    return bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

/* Rounds m / 2^shift to the nearest integer, ties to even (shift >= 1). */
static uint32_t shift_round_even(uint32_t m, unsigned shift)
{
    const uint32_t kept = m >> shift, rest = m & ((1u << shift) - 1u), half = 1u << (shift - 1u);
    return kept + (rest > half || (rest == half && (kept & 1u)));
}

uint16_t element_float_to_float16(float value)
{
    const uint32_t bits = float_bits(value), sign = (bits >> 16) & 0x8000u, magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu)); /* NaN */
    if (magnitude >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (magnitude <= 0x33000000u) return (uint16_t)sign;              /* <= 2^-25 rounds to zero */
    if (magnitude < 0x38800000u) {                                    /* below 2^-14: subnormal */
        const uint32_t exponent = magnitude >> 23, mantissa = (magnitude & 0x7fffffu) | 0x800000u;
        return (uint16_t)(sign | shift_round_even(mantissa, 126u - exponent));
    }
    /* Normal: rebias the exponent (127 -> 15) and round 13 mantissa bits
     * away; a carry runs into the exponent, up to inf, as it should. */
    return (uint16_t)(sign | shift_round_even(magnitude - (112u << 23), 13u));
}

/* ---------- public ---------- */

static const struct { const char *name; int64_t size; } dtypes[] = {
    [SBN_DTYPE_F32] = {"F32", 4}, [SBN_DTYPE_F64] = {"F64", 8}, [SBN_DTYPE_I64] = {"I64", 8},
    [SBN_DTYPE_I32] = {"I32", 4}, [SBN_DTYPE_U8] = {"U8", 1},   [SBN_DTYPE_BF16] = {"BF16", 2},
    [SBN_DTYPE_F16] = {"F16", 2},
};
enum { DTYPE_COUNT = sizeof dtypes / sizeof dtypes[0] };

int64_t sbn_dtype_size(sbn_dtype dtype) { return (unsigned)dtype < DTYPE_COUNT ? dtypes[dtype].size : 0; }

const char *sbn_dtype_name(sbn_dtype dtype) { return (unsigned)dtype < DTYPE_COUNT ? dtypes[dtype].name : "?"; }

static int is_float_type(sbn_dtype type)
{
    return type == SBN_DTYPE_F32 || type == SBN_DTYPE_BF16 || type == SBN_DTYPE_F16;
}

static sbn_status check_conversion(const void *dst, const void *src, sbn_dtype type, int64_t count)
{
    if (!is_float_type(type))
        return sbn_fail(SBN_ERR_ARG, "element type %s (%d) is not F32, BF16 or F16", sbn_dtype_name(type), (int)type);
    if (count < 0) return sbn_fail(SBN_ERR_ARG, "count must be >= 0, got %lld", (long long)count);
    if (count > 0 && (!dst || !src)) return sbn_fail(SBN_ERR_ARG, "%s is NULL", dst ? "src" : "dst");
    return SBN_OK;
}

sbn_status sbn_convert_to_float(float *dst, const void *src, sbn_dtype src_type, int64_t count)
{
    sbn_status st = check_conversion(dst, src, src_type, count);
    if (st == SBN_OK && count > 0) elements_to_float(dst, src, src_type, 0, count);
    return st;
}

sbn_status sbn_convert_from_float(void *dst, sbn_dtype dst_type, const float *src, int64_t count)
{
    sbn_status st = check_conversion(dst, src, dst_type, count);
    if (st == SBN_OK && count > 0) elements_from_float(dst, dst_type, 0, src, count);
    return st;
}
