/* Element types of activations: conversion between float32 and the 16-bit
 * types, one value at a time (portable, bit-exact) and in runs (vectorized
 * where the CPU has the instructions). See dtype.h for the public side. */
#ifndef SBN_CORE_ELEMENT_H
#define SBN_CORE_ELEMENT_H

#include <stdint.h>
#include <string.h>
#include <syncbn/dtype.h>

#if defined(__F16C__)
#include <immintrin.h>
#endif

float element_bfloat16_to_float(uint16_t bits);
uint16_t element_float_to_bfloat16(float value);
float element_float16_to_float(uint16_t bits);
uint16_t element_float_to_float16(float value);

/* Runs of values, inline: the kernels convert short runs (a few dozen
 * values of one channel), where a call and its setup cost as much as the
 * conversion. F32, BF16 or F16 only:
 *   elements_to_float: dst[k] = element first + k of the tensor at base;
 *   elements_from_float: element first + k of the tensor at base = src[k]
 *   rounded to the type. */

/* GCC and clang let these alias any object, like char. */
typedef uint32_t __attribute__((may_alias)) aliasing_u32;

static inline void bfloat16_run_to_float(float *dst, const uint16_t *src, int64_t count)
{
    aliasing_u32 *out = (aliasing_u32 *)dst;
#pragma omp simd
    for (int64_t k = 0; k < count; k++) out[k] = (uint32_t)src[k] << 16;
}

static inline void float_run_to_bfloat16(uint16_t *dst, const float *src, int64_t count)
{
    const aliasing_u32 *in = (const aliasing_u32 *)src;
#pragma omp simd
    for (int64_t k = 0; k < count; k++) {
        const uint32_t bits = in[k];
        const uint32_t rounded = (bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16, quiet = (bits >> 16) | 0x0040u;
        dst[k] = (uint16_t)((bits & 0x7fffffffu) > 0x7f800000u ? quiet : rounded);
    }
}

static inline void float16_run_to_float(float *dst, const uint16_t *src, int64_t count)
{
    int64_t k = 0;
#if defined(__F16C__)
    for (; k + 8 <= count; k += 8)
        _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + k))));
#endif
    for (; k < count; k++) dst[k] = element_float16_to_float(src[k]);
}

static inline void float_run_to_float16(uint16_t *dst, const float *src, int64_t count)
{
    int64_t k = 0;
#if defined(__F16C__)
    for (; k + 8 <= count; k += 8)
        _mm_storeu_si128((__m128i *)(dst + k), _mm256_cvtps_ph(_mm256_loadu_ps(src + k), _MM_FROUND_TO_NEAREST_INT));
#endif
    for (; k < count; k++) dst[k] = element_float_to_float16(src[k]);
}

static inline void elements_to_float(float *dst, const void *base, sbn_dtype type, int64_t first, int64_t count)
{
    if (type == SBN_DTYPE_BF16) bfloat16_run_to_float(dst, (const uint16_t *)base + first, count);
    else if (type == SBN_DTYPE_F16) float16_run_to_float(dst, (const uint16_t *)base + first, count);
    else memcpy(dst, (const float *)base + first, (size_t)count * sizeof *dst);
}

static inline void elements_from_float(void *base, sbn_dtype type, int64_t first, const float *src, int64_t count)
{
    if (type == SBN_DTYPE_BF16) float_run_to_bfloat16((uint16_t *)base + first, src, count);
    else if (type == SBN_DTYPE_F16) float_run_to_float16((uint16_t *)base + first, src, count);
    else memcpy((float *)base + first, src, (size_t)count * sizeof *src);
}

#endif
