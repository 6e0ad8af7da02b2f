/* Element conversions (dtype.h, src/core/element.h) against independent truth:
 *   - float16: GCC's _Float16 conversions (libgcc's soft-float routines,
 *     correctly rounded; this test is built without -march=native, so they
 *     are not the F16C instructions the library may use), every one of the
 *     65536 patterns widened, and millions of floats narrowed: every exponent
 *     times mantissas around each rounding position, every midpoint between
 *     neighbouring float16 values and the floats next to it, and the edges
 *     (65504, 65520, subnormals, zeros, inf, NaN);
 *   - bfloat16: widening is bits << 16 exactly; narrowing against a rounding
 *     written here in double arithmetic (the two neighbouring bfloat16
 *     values, the nearer one, ties to even), over a comparable sweep;
 *   - both the public run conversions (sbn_convert_*, vectorized where the
 *     CPU allows, with a scalar tail) and the portable scalar functions;
 *   - the error paths. */
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/element.h"
#include "support/support.h"

/* ---------- bits ---------- */

static uint32_t bits_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

static float float_of(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* ---------- truth ---------- */

static float gcc_f16_to_float(uint16_t bits)
{
    _Float16 h;
    memcpy(&h, &bits, sizeof h);
    return (float)h;
}

static uint16_t gcc_float_to_f16(float f)
{
    volatile float in = f; /* keep the conversion at run time, in libgcc */
    _Float16 h = (_Float16)in;
    uint16_t bits;
    memcpy(&bits, &h, sizeof bits);
    return bits;
}

static int f16_is_nan(uint16_t b) { return (b & 0x7c00u) == 0x7c00u && (b & 0x03ffu) != 0; }
static int bf16_is_nan(uint16_t b) { return (b & 0x7f80u) == 0x7f80u && (b & 0x007fu) != 0; }

/* Round-to-nearest-even of a non-NaN float to bfloat16, in double
 * arithmetic: the spacing of bfloat16 at |f| (8 significant bits; below
 * 2^-126 the fixed subnormal spacing 2^-133), the neighbours below and
 * above, the nearer one, the even one on a tie, inf from 2^128 on. */
static uint16_t reference_float_to_bf16(float f)
{
    if (f == 0.0f || isinf(f)) return (uint16_t)(bits_of(f) >> 16);
    const double a = fabs((double)f);
    int e;
    (void)frexp(a, &e); /* 2^(e-1) <= a < 2^e */
    int binade = e - 1;
    if (binade < -126) binade = -126;
    const double ulp = ldexp(1.0, binade - 7);
    const double k = floor(a / ulp); /* a / ulp is exact: a power-of-two division */
    const double lo = k * ulp, hi = (k + 1.0) * ulp;
    double r;
    if (a - lo < hi - a) r = lo;
    else if (a - lo > hi - a) r = hi;
    else r = fmod(k, 2.0) == 0.0 ? lo : hi;
    const float rf = r >= 0x1p128 ? INFINITY : (float)r; /* r is a bfloat16 value: exact in float */
    const uint32_t b = bits_of(copysignf(rf, f));
    if (b & 0xffffu) {
        fprintf(stderr, "reference_float_to_bf16(%a): not a bfloat16 value %a\n", (double)f, (double)rf);
        abort();
    }
    return (uint16_t)(b >> 16);
}

/* ---------- sweeps ---------- */

static uint64_t rng_next(uint64_t *s)
{
    /* splitmix64 */
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef struct float_list {
    float *v;
    int64_t count, capacity;
} float_list;

static void push(float_list *l, float f)
{
    if (l->count == l->capacity) {
        l->capacity = l->capacity ? 2 * l->capacity : 1 << 16;
        l->v = realloc(l->v, (size_t)l->capacity * sizeof *l->v);
        if (!l->v) abort();
    }
    l->v[l->count++] = f;
}

static void push_both_signs(float_list *l, float f)
{
    push(l, f);
    push(l, -f);
}

/* 23-bit mantissas around every rounding position (a tie at bit shift-1,
 * one below and above, the all-ones and all-zeros tails), the edges, and
 * random ones: `total` in all. */
static uint32_t *mantissa_set(int total, uint64_t seed)
{
    uint32_t *m = malloc((size_t)total * sizeof *m);
    int k = 0;
    const uint32_t edges[] = {0, 1, 2, 0x7fffff, 0x7ffffe, 0x400000, 0x3fffff, 0x400001, 0x7fe000, 0x7ff000};
    for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) m[k++] = edges[e];
    for (unsigned shift = 1; shift <= 23; shift++) {
        const uint32_t full = (1u << shift) - 1u, half = 1u << (shift - 1u);
        for (int r = 0; r < 8; r++) {
            const uint32_t high = (uint32_t)rng_next(&seed) << shift;
            const uint32_t lows[] = {0, 1, half - 1u, half, half + 1u, full};
            for (size_t j = 0; j < sizeof lows / sizeof lows[0]; j++) m[k++] = (high | lows[j]) & 0x7fffffu;
        }
    }
    while (k < total) m[k++] = (uint32_t)rng_next(&seed) & 0x7fffffu;
    return m;
}

/* Every biased exponent (zeros and subnormals, inf and NaN included), both
 * signs, times the mantissa set. */
static void push_exponent_sweep(float_list *l, const uint32_t *mantissas, int count)
{
    for (uint32_t sign = 0; sign < 2; sign++)
        for (uint32_t exponent = 0; exponent < 256; exponent++)
            for (int k = 0; k < count; k++) push(l, float_of(sign << 31 | exponent << 23 | mantissas[k]));
}

static void push_nans(float_list *l)
{
    const uint32_t nans[] = {0x7fc00000u, 0x7f800001u, 0x7fa00000u, 0x7f802000u, 0x7f801000u, 0x7fffffffu,
                             0xffc00000u, 0xff800001u, 0xffffffffu, 0x7f810000u, 0x7f80ffffu, 0x7fbfffffu};
    for (size_t k = 0; k < sizeof nans / sizeof nans[0]; k++) push(l, float_of(nans[k]));
}

/* ---------- float16 ---------- */

static void test_f16_widen_all_patterns(void **state)
{
    (void)state;
    enum { ALL = 65536 };
    uint16_t *src = malloc(ALL * sizeof *src);
    float *run = malloc(ALL * sizeof *run), *shifted = malloc(ALL * sizeof *shifted);
    for (int b = 0; b < ALL; b++) src[b] = (uint16_t)b;
    assert_int_equal(sbn_convert_to_float(run, src, SBN_DTYPE_F16, ALL), SBN_OK);
    /* Starting one element in, so every value also goes through the other lane position / the scalar tail. */
    assert_int_equal(sbn_convert_to_float(shifted, src + 1, SBN_DTYPE_F16, ALL - 1), SBN_OK);
    int64_t bad = 0;
    for (int b = 0; b < ALL; b++) {
        const float want = gcc_f16_to_float((uint16_t)b);
        const float got[3] = {run[b], element_float16_to_float((uint16_t)b), b > 0 ? shifted[b - 1] : want};
        for (int w = 0; w < 3; w++) {
            const int ok = isnan(want) ? isnan(got[w]) : bits_of(got[w]) == bits_of(want);
            if (!ok && bad++ < 8)
                fprintf(stderr, "F16 0x%04x -> float (%s): got %a (0x%08x), want %a (0x%08x)\n", b,
                        w == 0 ? "sbn_convert_to_float" : w == 1 ? "element_float16_to_float" : "offset run",
                        (double)got[w], bits_of(got[w]), (double)want, bits_of(want));
        }
    }
    free(src), free(run), free(shifted);
    assert_int_equal(bad, 0);
}

/* The floats of the float16 sweep. */
static float_list f16_sweep(void)
{
    float_list l = {0};
    uint32_t *mantissas = mantissa_set(8192, 11);
    push_exponent_sweep(&l, mantissas, 8192); /* 2 * 256 * 8192 = 2^22 */
    free(mantissas);
    /* Every float16 value, the midpoint to the next one up (exact in float),
     * and the floats either side of both. 0x7bff's next is "65536": the
     * midpoint 65520 is where overflow to inf starts. */
    for (uint32_t h = 0; h < 0x7c00u; h++) {
        const float v = gcc_f16_to_float((uint16_t)h);
        const float next = h == 0x7bffu ? 65536.0f : gcc_f16_to_float((uint16_t)(h + 1));
        const float mid = (v + next) / 2.0f;
        push_both_signs(&l, v);
        push_both_signs(&l, nextafterf(v, INFINITY));
        if (v > 0.0f) push_both_signs(&l, nextafterf(v, 0.0f));
        push_both_signs(&l, mid);
        push_both_signs(&l, nextafterf(mid, 0.0f));
        push_both_signs(&l, nextafterf(mid, INFINITY));
    }
    const float edges[] = {65504.0f, nextafterf(65520.0f, 0.0f), 65520.0f, nextafterf(65520.0f, INFINITY),
                           65536.0f, 1e10f, FLT_MAX, INFINITY, 0.0f, 0x1p-24f, 0x1p-25f,
                           nextafterf(0x1p-25f, 0.0f), nextafterf(0x1p-25f, 1.0f), 0x3p-26f, 0x1p-14f,
                           nextafterf(0x1p-14f, 0.0f), 0x1.ffcp-15f, 0x1.ffep-15f, FLT_MIN, 0x1p-149f, 1e-40f};
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) push_both_signs(&l, edges[k]);
    push_nans(&l);
    return l;
}

static void test_f16_narrow_sweep(void **state)
{
    (void)state;
    float_list l = f16_sweep();
    assert_true(l.count >= (1 << 22));
    uint16_t *run = malloc((size_t)l.count * sizeof *run), *shifted = malloc((size_t)l.count * sizeof *shifted);
    assert_int_equal(sbn_convert_from_float(run, SBN_DTYPE_F16, l.v, l.count), SBN_OK);
    assert_int_equal(sbn_convert_from_float(shifted, SBN_DTYPE_F16, l.v + 3, l.count - 3), SBN_OK);
    int64_t bad = 0, nans = 0, infs = 0, subnormals = 0;
    for (int64_t k = 0; k < l.count; k++) {
        const float f = l.v[k];
        const uint16_t want = gcc_float_to_f16(f);
        const uint16_t got[3] = {run[k], element_float_to_float16(f), k >= 3 ? shifted[k - 3] : want};
        for (int w = 0; w < 3; w++) {
            const int ok = isnan(f) ? f16_is_nan(got[w]) : got[w] == want;
            if (!ok && bad++ < 8)
                fprintf(stderr, "float %a (0x%08x) -> F16 (%s): got 0x%04x, want 0x%04x\n", (double)f, bits_of(f),
                        w == 0 ? "sbn_convert_from_float" : w == 1 ? "element_float_to_float16" : "offset run",
                        got[w], want);
        }
        nans += isnan(f);
        infs += (want & 0x7fffu) == 0x7c00u && !isinf(f);
        subnormals += (want & 0x7c00u) == 0 && (want & 0x3ffu) != 0;
    }
    fprintf(stderr, "F16 narrowing: %lld floats (%lld NaN, %lld finite overflowing to inf, %lld to subnormals)\n",
            (long long)l.count, (long long)nans, (long long)infs, (long long)subnormals);
    assert_true(infs > 0 && subnormals > 0 && nans > 0);
    /* The documented edges, spelled out. */
    assert_int_equal(element_float_to_float16(65504.0f), 0x7bff);
    assert_int_equal(element_float_to_float16(nextafterf(65520.0f, 0.0f)), 0x7bff);
    assert_int_equal(element_float_to_float16(65520.0f), 0x7c00);
    assert_int_equal(element_float_to_float16(-65520.0f), 0xfc00);
    assert_int_equal(element_float_to_float16(0x1p-25f), 0x0000); /* tie between 0 and 2^-24: even */
    assert_int_equal(element_float_to_float16(nextafterf(0x1p-25f, 1.0f)), 0x0001);
    assert_int_equal(element_float_to_float16(0x3p-25f), 0x0002); /* tie 1.5 * 2^-24: even */
    assert_int_equal(element_float_to_float16(0x3p-26f), 0x0001); /* 0.75 * 2^-24 */
    assert_int_equal(element_float_to_float16(-0.0f), 0x8000);
    free(run), free(shifted), free(l.v);
    assert_int_equal(bad, 0);
}

/* Every count from 0 to 40 at every offset 0..8: vector body and scalar tail together. */
static void test_f16_run_lengths(void **state)
{
    (void)state;
    float src[64];
    uint16_t bits[64];
    uint64_t seed = 5;
    for (int k = 0; k < 64; k++) {
        src[k] = (float)((double)(int64_t)(rng_next(&seed) % 2000001 - 1000000) * 1e-4);
        bits[k] = (uint16_t)rng_next(&seed);
    }
    src[7] = 70000.0f, src[20] = 0x1p-25f, src[33] = 3e-8f;
    int64_t bad = 0;
    for (int offset = 0; offset <= 8; offset++)
        for (int count = 0; count <= 40; count++) {
            uint16_t narrow[64];
            float wide[64];
            for (int k = 0; k < 64; k++) narrow[k] = 0xabcd, wide[k] = -7.0f;
            assert_int_equal(sbn_convert_from_float(narrow, SBN_DTYPE_F16, src + offset, count), SBN_OK);
            assert_int_equal(sbn_convert_to_float(wide, bits + offset, SBN_DTYPE_F16, count), SBN_OK);
            for (int k = 0; k < 64; k++) {
                const uint16_t want_narrow = k < count ? gcc_float_to_f16(src[offset + k]) : 0xabcd;
                const float want_wide = k < count ? gcc_f16_to_float(bits[offset + k]) : -7.0f;
                const int wide_ok = isnan(want_wide) ? isnan(wide[k]) : bits_of(wide[k]) == bits_of(want_wide);
                if ((narrow[k] != want_narrow || !wide_ok) && bad++ < 8)
                    fprintf(stderr, "offset %d count %d element %d: narrow 0x%04x (want 0x%04x), wide %a (want %a)\n",
                            offset, count, k, narrow[k], want_narrow, (double)wide[k], (double)want_wide);
            }
        }
    assert_int_equal(bad, 0);
}

/* ---------- bfloat16 ---------- */

static void test_bf16_widen_all_patterns(void **state)
{
    (void)state;
    enum { ALL = 65536 };
    uint16_t *src = malloc(ALL * sizeof *src);
    float *run = malloc(ALL * sizeof *run), *shifted = malloc(ALL * sizeof *shifted);
    for (int b = 0; b < ALL; b++) src[b] = (uint16_t)b;
    assert_int_equal(sbn_convert_to_float(run, src, SBN_DTYPE_BF16, ALL), SBN_OK);
    assert_int_equal(sbn_convert_to_float(shifted, src + 1, SBN_DTYPE_BF16, ALL - 1), SBN_OK);
    int64_t bad = 0;
    for (int b = 0; b < ALL; b++) {
        const uint32_t want = (uint32_t)b << 16; /* exact, NaN payloads included */
        const uint32_t got[3] = {bits_of(run[b]), bits_of(element_bfloat16_to_float((uint16_t)b)),
                                 b > 0 ? bits_of(shifted[b - 1]) : want};
        for (int w = 0; w < 3; w++)
            if (got[w] != want && bad++ < 8)
                fprintf(stderr, "BF16 0x%04x -> float (%d): got 0x%08x, want 0x%08x\n", b, w, got[w], want);
    }
    free(src), free(run), free(shifted);
    assert_int_equal(bad, 0);
}

static float_list bf16_sweep(void)
{
    float_list l = {0};
    uint64_t seed = 23;
    /* Every exponent and sign, all 128 values of the kept 7 mantissa bits,
     * times low halves around the tie (0x8000) and random ones. */
    for (uint32_t sign = 0; sign < 2; sign++)
        for (uint32_t exponent = 0; exponent < 256; exponent++)
            for (uint32_t kept = 0; kept < 128; kept++) {
                const uint32_t lows[] = {0, 1, 2, 0x7ffe, 0x7fff, 0x8000, 0x8001, 0xffff, 0xfffe, 0x4000, 0xc000,
                                         (uint32_t)rng_next(&seed) & 0xffffu, (uint32_t)rng_next(&seed) & 0xffffu,
                                         (uint32_t)rng_next(&seed) & 0xffffu, (uint32_t)rng_next(&seed) & 0xffffu,
                                         (uint32_t)rng_next(&seed) & 0xffffu};
                for (size_t j = 0; j < sizeof lows / sizeof lows[0]; j++)
                    push(&l, float_of(sign << 31 | exponent << 23 | kept << 16 | lows[j]));
            }
    for (int k = 0; k < (1 << 21); k++) push(&l, float_of((uint32_t)rng_next(&seed))); /* any pattern */
    const float edges[] = {FLT_MAX, 0x1.fefffep127f, 0x1.ff0000p127f, 0x1.fe0000p127f, INFINITY, 0.0f, FLT_MIN,
                           0x1p-149f, 0x1p-134f, 0x1p-133f, 0x3p-135f, nextafterf(FLT_MIN, 0.0f), 1.0f, 1.00390625f,
                           1.005859375f};
    for (size_t k = 0; k < sizeof edges / sizeof edges[0]; k++) push_both_signs(&l, edges[k]);
    push_nans(&l);
    return l;
}

static void test_bf16_narrow_sweep(void **state)
{
    (void)state;
    float_list l = bf16_sweep();
    uint16_t *run = malloc((size_t)l.count * sizeof *run), *shifted = malloc((size_t)l.count * sizeof *shifted);
    assert_int_equal(sbn_convert_from_float(run, SBN_DTYPE_BF16, l.v, l.count), SBN_OK);
    assert_int_equal(sbn_convert_from_float(shifted, SBN_DTYPE_BF16, l.v + 1, l.count - 1), SBN_OK);
    int64_t bad = 0, overflows = 0, ties = 0, nans = 0;
    for (int64_t k = 0; k < l.count; k++) {
        const float f = l.v[k];
        const uint16_t want = isnan(f) ? 0 : reference_float_to_bf16(f);
        const uint16_t got[3] = {run[k], element_float_to_bfloat16(f), k >= 1 ? shifted[k - 1] : want};
        for (int w = 0; w < 3; w++) {
            const int ok = isnan(f) ? bf16_is_nan(got[w]) : got[w] == want;
            if (!ok && bad++ < 8)
                fprintf(stderr, "float %a (0x%08x) -> BF16 (%s): got 0x%04x, want 0x%04x\n", (double)f, bits_of(f),
                        w == 0 ? "sbn_convert_from_float" : w == 1 ? "element_float_to_bfloat16" : "offset run",
                        got[w], want);
        }
        overflows += !isinf(f) && !isnan(f) && (want & 0x7fffu) == 0x7f80u;
        ties += (bits_of(f) & 0xffffu) == 0x8000u;
        nans += isnan(f);
    }
    fprintf(stderr, "BF16 narrowing: %lld floats (%lld ties, %lld overflowing to inf, %lld NaN)\n",
            (long long)l.count, (long long)ties, (long long)overflows, (long long)nans);
    assert_true(overflows > 0 && ties > 0 && nans > 0);
    /* Spelled out: ties to even, overflow, a NaN whose top half alone would read as inf. */
    assert_int_equal(element_float_to_bfloat16(1.00390625f), 0x3f80);  /* 1 + 2^-8: tie, down to even */
    assert_int_equal(element_float_to_bfloat16(1.01171875f), 0x3f82);  /* 1 + 3*2^-8: tie, up to even */
    assert_int_equal(element_float_to_bfloat16(0x1.ff0000p127f), 0x7f80); /* halfway to 2^128: inf */
    assert_true(bf16_is_nan(element_float_to_bfloat16(float_of(0x7f800001u))));
    free(run), free(shifted), free(l.v);
    assert_int_equal(bad, 0);
}

/* ---------- F32 and errors ---------- */

static void test_f32_copies(void **state)
{
    (void)state;
    const float src[5] = {1.5f, -0.0f, NAN, INFINITY, 1e-40f};
    float dst[5];
    assert_int_equal(sbn_convert_to_float(dst, src, SBN_DTYPE_F32, 5), SBN_OK);
    assert_memory_equal(dst, src, sizeof src);
    memset(dst, 0, sizeof dst);
    assert_int_equal(sbn_convert_from_float(dst, SBN_DTYPE_F32, src, 5), SBN_OK);
    assert_memory_equal(dst, src, sizeof src);
}

static void expect_arg_error(sbn_status st, const char *part, const char *what)
{
    if (st != SBN_ERR_ARG || !strstr(sbn_errmsg(), part))
        fprintf(stderr, "%s: got %s \"%s\", want SBN_ERR_ARG naming \"%s\"\n", what, sbn_status_str(st), sbn_errmsg(),
                part);
    assert_int_equal(st, SBN_ERR_ARG);
    assert_true(sbn_errmsg()[0] != '\0');
    assert_non_null(strstr(sbn_errmsg(), part));
}

static void test_errors(void **state)
{
    (void)state;
    float f[4] = {1, 2, 3, 4}, f_before[4];
    uint16_t h[4] = {1, 2, 3, 4}, h_before[4];
    memcpy(f_before, f, sizeof f), memcpy(h_before, h, sizeof h);
    /* Types that are not F32/BF16/F16, known and unknown. */
    const struct { sbn_dtype type; const char *name; } bad_types[] = {
        {SBN_DTYPE_I64, "I64"}, {SBN_DTYPE_F64, "F64"}, {SBN_DTYPE_I32, "I32"}, {SBN_DTYPE_U8, "U8"},
        {(sbn_dtype)77, "77"},
    };
    for (size_t k = 0; k < sizeof bad_types / sizeof bad_types[0]; k++) {
        expect_arg_error(sbn_convert_to_float(f, h, bad_types[k].type, 4), bad_types[k].name, "to_float type");
        expect_arg_error(sbn_convert_from_float(h, bad_types[k].type, f, 4), bad_types[k].name, "from_float type");
        /* Even with nothing to convert. */
        expect_arg_error(sbn_convert_to_float(f, h, bad_types[k].type, 0), bad_types[k].name, "to_float type, 0");
    }
    assert_memory_equal(f, f_before, sizeof f);
    assert_memory_equal(h, h_before, sizeof h);
    /* count < 0 */
    expect_arg_error(sbn_convert_to_float(f, h, SBN_DTYPE_F16, -1), "count", "to_float count -1");
    expect_arg_error(sbn_convert_from_float(h, SBN_DTYPE_BF16, f, -5), "count", "from_float count -5");
    expect_arg_error(sbn_convert_to_float(f, h, SBN_DTYPE_BF16, INT64_MIN), "count", "to_float INT64_MIN");
    /* NULL with count > 0 */
    expect_arg_error(sbn_convert_to_float(NULL, h, SBN_DTYPE_F16, 1), "dst", "to_float dst NULL");
    expect_arg_error(sbn_convert_to_float(f, NULL, SBN_DTYPE_F16, 1), "src", "to_float src NULL");
    expect_arg_error(sbn_convert_from_float(NULL, SBN_DTYPE_BF16, f, 1), "dst", "from_float dst NULL");
    expect_arg_error(sbn_convert_from_float(h, SBN_DTYPE_BF16, NULL, 1), "src", "from_float src NULL");
    expect_arg_error(sbn_convert_from_float(h, SBN_DTYPE_F32, NULL, 1), "src", "from_float F32 src NULL");
    assert_memory_equal(f, f_before, sizeof f);
    assert_memory_equal(h, h_before, sizeof h);
    /* NULL with count 0 is fine. */
    assert_int_equal(sbn_convert_to_float(NULL, NULL, SBN_DTYPE_F16, 0), SBN_OK);
    assert_int_equal(sbn_convert_from_float(NULL, SBN_DTYPE_BF16, NULL, 0), SBN_OK);
    /* Names and sizes. */
    assert_string_equal(sbn_dtype_name(SBN_DTYPE_BF16), "BF16");
    assert_string_equal(sbn_dtype_name(SBN_DTYPE_F16), "F16");
    assert_string_equal(sbn_dtype_name((sbn_dtype)77), "?");
    assert_int_equal(sbn_dtype_size(SBN_DTYPE_BF16), 2);
    assert_int_equal(sbn_dtype_size(SBN_DTYPE_F16), 2);
    assert_int_equal(sbn_dtype_size(SBN_DTYPE_F32), 4);
    assert_int_equal(sbn_dtype_size((sbn_dtype)77), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f16_widen_all_patterns), cmocka_unit_test(test_f16_narrow_sweep),
        cmocka_unit_test(test_f16_run_lengths),        cmocka_unit_test(test_bf16_widen_all_patterns),
        cmocka_unit_test(test_bf16_narrow_sweep),      cmocka_unit_test(test_f32_copies),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
