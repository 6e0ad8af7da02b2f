/* Element types of activations: conversion between float32 and the 16-bit
 * types, one value at a time (portable, bit-exact) and in runs (vectorized
 * where the CPU has the instructions). See shape.h for the public side. */
#ifndef SBN_CORE_ELEMENT_H
#define SBN_CORE_ELEMENT_H

#include <stdint.h>
#include <syncbn/dtype.h>

float element_bfloat16_to_float(uint16_t bits);
uint16_t element_float_to_bfloat16(float value);
float element_float16_to_float(uint16_t bits);
uint16_t element_float_to_float16(float value);

/* F32, BF16 or F16 only. dst[k] = element first + k of the tensor at base, as float, k < count. */
void elements_to_float(float *dst, const void *base, sbn_dtype type, int64_t first, int64_t count);
/* Element first + k of the tensor at base = src[k] rounded to the type. */
void elements_from_float(void *base, sbn_dtype type, int64_t first, const float *src, int64_t count);

#endif
