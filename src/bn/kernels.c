/* BN kernels: per-channel reductions and elementwise passes, both layouts.
 *
 * Numerics. Each channel's sums are taken about a shift K, the channel's
 * first value: s1 = sum(x - K), s2 = sum((x - K)^2), in double. Then
 * mean = K + s1/n and m2 = s2 - s1^2/n. Because K is one of the data, |K - mean|
 * is of the order of the spread, so the subtraction in m2 loses at most a
 * few bits even when mean^2 is 1e12 times the variance; and (x - K) of two
 * floats is exact in double, so values near 1e18 cannot overflow.
 *
 * The elementwise passes run in float, twice the SIMD width of double, yet
 * form x - mean with the double mean: mean = hi + lo as two floats, and
 * (x - hi) - lo. x - hi is exact whenever x is within a factor 2 of hi
 * (Sterbenz), which is where cancellation would otherwise hurt (offset
 * inputs); elsewhere its rounding is below that of the float result.
 *
 * Memory. Channels-first (NCS, s > 1): the elementwise passes stream the
 * (sample, channel) planes in memory order, split across threads; the sums
 * go channel by channel (a thread per run of channels) for long planes and
 * plane by plane into per-thread partials for short ones (see "short
 * planes"); the training backward keeps a channel's data in cache between
 * its two passes only for long float32 planes. Channels-last (NSC, and NCS
 * with s == 1, which is the same memory): rows of c values, split across
 * threads by rows and handled in tiles of whole rows; per-thread partial
 * sums share the shift, so combining them is a plain addition in thread
 * order. Every split uses the threads OpenMP granted, not those asked for.
 *
 * Element types. Every loop works on runs of float values: a float32 tensor
 * is read and written in place; a 16-bit one is widened a run of at most
 * RUN values at a time into a buffer on the stack (exactly) and narrowed on
 * the way out. The float evaluation of the elementwise passes is within a
 * few float ulps of the terms it combines, not of the result: where terms
 * cancel (y near 0 with a bias, dx near 0) that is more than half a 16-bit
 * ulp of the result. So for 16-bit outputs each value is also checked:
 * |result| * 2^8 >= |the term added last| (the bias for y, the dy
 * term for dx), which bounds the other term by 257 |result| and so the
 * float error by 2^-13 of the result; a value that fails is recomputed in
 * double. Rounded once to the 16-bit type, every output is then within 1 ulp
 * of the float64 result.
 *
 * ReLU (the _relu kernels): applied to the forward's float result before it
 * is narrowed (narrowing is monotonic and keeps 0, so it commutes with ReLU);
 * the backward recomputes the forward's output from x, narrowed as the
 * forward narrowed it, and treats dy as 0 where that output is <= 0.
 */
#include <syncbn/kernels.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>
#if defined(__AVX512F__) && defined(__AVX512DQ__)
#include <immintrin.h>
#endif

#include "core/element.h"
#include "core/error.h"

/* ---------- validation ---------- */

static sbn_status check_pointers(const void *a, const char *a_name, const void *b, const char *b_name,
                                 const void *c, const char *c_name)
{
    if (!a) return sbn_fail(SBN_ERR_ARG, "%s is NULL", a_name);
    if (!b) return sbn_fail(SBN_ERR_ARG, "%s is NULL", b_name);
    if (!c) return sbn_fail(SBN_ERR_ARG, "%s is NULL", c_name);
    return SBN_OK;
}

static sbn_status check_eps(double eps)
{
    if (!(eps >= 0.0) || !isfinite(eps))
        return sbn_fail(SBN_ERR_ARG, "eps must be finite and >= 0, got %g", eps);
    return SBN_OK;
}

/* NCS with s == 1 has the memory of NSC: (n*C + c)*1 + 0 == (n*1 + 0)*C + c. */
static int is_rows_of_channels(sbn_shape shape) { return shape.layout == SBN_NSC || shape.s == 1; }

/* Rounding can push s2 - s1^2/n a hair below 0; NaN must stay NaN (fmax would drop it). */
static double nonnegative(double v) { return v < 0.0 ? 0.0 : v; }

static double weight_or_one(const float *weight, int64_t c) { return weight ? (double)weight[c] : 1.0; }
static double bias_or_zero(const float *bias, int64_t c) { return bias ? (double)bias[c] : 0.0; }

/* PyTorch's ReLU: 0 where v <= 0 (and +0 for -0), v otherwise, NaN included. */
static float relu(float v) { return v <= 0.0f ? 0.0f : v; }

/* ReLU's backward: gradient g where the output was > 0 (or NaN), else +0. */
static float relu_gate(float output, float g) { return output <= 0.0f ? 0.0f : g; }

/* masked[k] = relu_gate(output[k], dy[k]). With AVX-512 the select is an AND
 * with a mask vector: GCC compiles the plain loop (also written as a bit
 * mask) to a masked load of dy, which waits for the comparison and cannot
 * take its data from a recent store; measured 2-3x slower on AMD Zen 4. */
static void gate_run(float *masked, const float *dy, const float *output, int64_t count)
{
    int64_t k = 0;
#if defined(__AVX512F__) && defined(__AVX512DQ__)
    const __m512 zero = _mm512_setzero_ps();
    for (; k + 16 <= count; k += 16) {
        const __mmask16 keep = _mm512_cmp_ps_mask(_mm512_loadu_ps(output + k), zero, _CMP_NLE_UQ);
        _mm512_storeu_ps(masked + k, _mm512_and_ps(_mm512_loadu_ps(dy + k), _mm512_castsi512_ps(_mm512_movm_epi32(keep))));
    }
#endif
    for (; k < count; k++) masked[k] = relu_gate(output[k], dy[k]);
}

/* ---------- runs of values ---------- */

/* RUN: 16-bit values widened at a time (a multiple of LANES; 1 KiB of floats). */
enum { LANES = 32, RUN = 256 };

/* 2^8: see the top of the file. */
static const float cancellation_limit = 256.0f;

/* Values [first, first + count) of a tensor as floats: the tensor itself when
 * it is float32, otherwise widened into buf (RUN floats). */
static const float *read_run(float *buf, const void *base, sbn_dtype type, int64_t first, int64_t count)
{
    if (type == SBN_DTYPE_F32) return (const float *)base + first;
    elements_to_float(buf, base, type, first, count);
    return buf;
}

/* Where to compute outputs [first, ...): the tensor itself, or buf to narrow with write_run. */
static float *output_run(float *buf, void *base, sbn_dtype type, int64_t first)
{
    return type == SBN_DTYPE_F32 ? (float *)base + first : buf;
}

static void write_run(void *base, sbn_dtype type, int64_t first, const float *values, int64_t count)
{
    if (type != SBN_DTYPE_F32) elements_from_float(base, type, first, values, count);
}

/* The length of the next run: all that remains when the values are used in
 * place (float32 without a ReLU mask to build), at most RUN otherwise. */
static int64_t run_length(sbn_dtype type, bool buffered, int64_t remaining)
{
    return (type == SBN_DTYPE_F32 && !buffered) || remaining < RUN ? remaining : RUN;
}

/* Rounds values as a store to `type` would (the forward's output, for the ReLU mask). */
static void round_to_type(float *values, sbn_dtype type, int64_t count)
{
    if (type == SBN_DTYPE_F32) return;
    uint16_t narrow[RUN];
    elements_from_float(narrow, type, 0, values, count);
    elements_to_float(values, narrow, type, 0, count);
}

/* The first j' >= j below count with marked[j'] set (count if none),
 * skipping 8 unmarked values at a time. */
static int64_t next_marked(const int32_t *marked, int64_t j, int64_t count)
{
    for (; j < count; j++) {
        if ((j & 7) == 0 && j + 8 <= count) {
            int32_t any = 0;
            for (int k = 0; k < 8; k++) any |= marked[j + k];
            if (!any) {
                j += 7;
                continue;
            }
        }
        if (marked[j]) return j;
    }
    return count;
}

/* ---------- per-channel coefficients ---------- */

/* A per-channel affine map y = ((x - mean_hi) - mean_lo) * scale + offset in
 * float, with mean and scale also kept in double for the exact recomputation. */
typedef struct channel_affine {
    float mean_hi, mean_lo, scale, offset;
    double mean, scale_exact;
} channel_affine;

static channel_affine make_affine(double mean, double scale, double offset)
{
    channel_affine a;
    a.mean_hi = (float)mean;
    a.mean_lo = (float)(mean - (double)a.mean_hi);
    a.scale = (float)scale;
    a.offset = (float)offset;
    a.mean = mean;
    a.scale_exact = scale;
    return a;
}

static float apply_affine(float x, channel_affine a) { return ((x - a.mean_hi) - a.mean_lo) * a.scale + a.offset; }

static channel_affine normalize_affine(const double *mean, const double *invstd, const float *weight,
                                       const float *bias, int64_t c)
{
    return make_affine(mean[c], invstd[c] * weight_or_one(weight, c), bias_or_zero(bias, c));
}

/* The gradient map dx = (dy - mean_dy) * gain - (x - mean) * slope, in float,
 * both differences formed against hi + lo splits of the double means. */
typedef struct channel_gradient {
    channel_affine x_centre, dy_centre;
    float slope;
    double slope_exact;
} channel_gradient;

/* dx = weight*invstd * ((dy - mean_dy) - (x - mean) * invstd^2 * mean_dy_xmu); NULL means 0. */
static channel_gradient make_gradient(const double *mean, const double *invstd, const float *weight,
                                      const double *mean_dy, const double *mean_dy_xmu, int64_t c)
{
    const double gain = weight_or_one(weight, c) * invstd[c];
    channel_gradient g;
    g.x_centre = make_affine(mean[c], 1.0, 0.0);
    g.dy_centre = make_affine(mean_dy ? mean_dy[c] : 0.0, gain, 0.0);
    g.slope_exact = mean_dy_xmu ? gain * invstd[c] * invstd[c] * mean_dy_xmu[c] : 0.0;
    g.slope = (float)g.slope_exact;
    return g;
}

static float apply_gradient(float x, float dy, channel_gradient g)
{
    return apply_affine(dy, g.dy_centre) - ((x - g.x_centre.mean_hi) - g.x_centre.mean_lo) * g.slope;
}

/* Everything a kernel call was given, for the passes that read it. */
typedef struct bn_call {
    sbn_shape shape;
    const double *mean, *invstd;
    const float *weight, *bias;
    const double *mean_dy, *mean_dy_xmu; /* backward apply: NULL through fixed statistics */
    bool relu;
    void *gated_dy; /* backward reduce with ReLU: where to store dy masked by the ReLU, or NULL */
} bn_call;

static bool exact_outputs(sbn_shape shape) { return shape.dtype != SBN_DTYPE_F32; }

/* ---------- one channel's runs (channels-first) ---------- */

/* out[j] = the forward map of in[j]; for 16-bit outputs, values whose
 * terms cancel are recomputed in double (see the top of the file). count
 * is at most RUN there: one pass marks them, a second fixes the few marked. */
static void affine_span(float *out, const float *in, int64_t count, channel_affine a, bool exact)
{
    if (!exact) {
#pragma omp simd
        for (int64_t j = 0; j < count; j++) out[j] = apply_affine(in[j], a);
        return;
    }
    int32_t cancels[RUN]; /* as wide as a float: a byte array made GCC vectorize by 64 */
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t j = 0; j < count; j++) {
        const float value = ((in[j] - a.mean_hi) - a.mean_lo) * a.scale + a.offset;
        cancels[j] = fabsf(value) * cancellation_limit < fabsf(a.offset);
        any |= cancels[j];
        out[j] = value;
    }
    for (int64_t j = any ? next_marked(cancels, 0, count) : count; j < count; j = next_marked(cancels, j + 1, count))
        out[j] = (float)(((double)in[j] - a.mean) * a.scale_exact + (double)a.offset);
}

static void relu_span(float *values, int64_t count)
{
#pragma omp simd
    for (int64_t j = 0; j < count; j++) values[j] = relu(values[j]);
}

/* dy where the forward's output (recomputed from x, narrowed to the type) is
 * positive or NaN, 0 where it is <= 0: PyTorch's ReLU backward. */
static void relu_mask_span(float *masked, const float *dy, const float *x, int64_t count, channel_affine forward,
                           sbn_dtype type)
{
    float output[RUN];
    for (int64_t j = 0; j < count; j += RUN) {
        const int64_t run = count - j < RUN ? count - j : RUN;
        affine_span(output, x + j, run, forward, type != SBN_DTYPE_F32);
        round_to_type(output, type, run);
        gate_run(masked + j, dy + j, output, run);
    }
}

static void gradient_span(float *out, const float *x, const float *dy, int64_t count, channel_gradient g, bool exact)
{
    if (!exact) {
#pragma omp simd
        for (int64_t j = 0; j < count; j++) out[j] = apply_gradient(x[j], dy[j], g);
        return;
    }
    int32_t cancels[RUN]; /* as wide as a float: a byte array made GCC vectorize by 64 */
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t j = 0; j < count; j++) {
        const float along = apply_affine(dy[j], g.dy_centre);
        const float across = ((x[j] - g.x_centre.mean_hi) - g.x_centre.mean_lo) * g.slope;
        cancels[j] = fabsf(along - across) * cancellation_limit < fabsf(along);
        any |= cancels[j];
        out[j] = along - across;
    }
    for (int64_t j = any ? next_marked(cancels, 0, count) : count; j < count; j = next_marked(cancels, j + 1, count))
        out[j] = (float)(((double)dy[j] - g.dy_centre.mean) * g.dy_centre.scale_exact -
                         ((double)x[j] - g.x_centre.mean) * g.slope_exact);
}

/* Channel c of an NCS tensor is n blocks of s contiguous values, block i at (i*C + c)*s. */
static int64_t ncs_block(sbn_shape shape, int64_t sample, int64_t c) { return (sample * shape.c + c) * shape.s; }

static double sum_lanes(const double *lanes)
{
    double total = 0.0;
    for (int k = 0; k < LANES; k++) total += lanes[k];
    return total;
}

/* Independent accumulators, so the sums are throughput-bound rather than
 * bound by the latency of one chain of additions. */
static void add_shifted_moments(double *s1, double *s2, const float *v, int64_t count, double shift)
{
    int64_t j = 0;
    for (; j + LANES <= count; j += LANES)
        for (int k = 0; k < LANES; k++) {
            const double d = (double)v[j + k] - shift;
            s1[k] += d;
            s2[k] += d * d;
        }
    for (int k = 0; j < count; j++, k++) {
        const double d = (double)v[j] - shift;
        s1[k] += d;
        s2[k] += d * d;
    }
}

static void ncs_channel_stats(double *mean, double *m2, sbn_shape shape, const void *x, int64_t c)
{
    const int64_t count = shape.n * shape.s;
    if (count == 0) {
        *mean = 0.0;
        *m2 = 0.0;
        return;
    }
    float buf[RUN];
    const double shift = read_run(buf, x, shape.dtype, ncs_block(shape, 0, c), 1)[0];
    double s1[LANES] = {0}, s2[LANES] = {0};
    for (int64_t i = 0; i < shape.n; i++)
        for (int64_t j = 0; j < shape.s;) {
            const int64_t run = run_length(shape.dtype, false, shape.s - j), first = ncs_block(shape, i, c) + j;
            add_shifted_moments(s1, s2, read_run(buf, x, shape.dtype, first, run), run, shift);
            j += run;
        }
    const double sum = sum_lanes(s1), sum_sq = sum_lanes(s2);
    *mean = shift + sum / (double)count;
    *m2 = nonnegative(sum_sq - sum * (sum / (double)count));
}

/* y over `count` values from `first` (one channel), forward map then ReLU. */
static void forward_values(void *y, const void *x, sbn_shape shape, int64_t first, int64_t count, channel_affine a,
                           bool relu_after)
{
    float in_buf[RUN], out_buf[RUN];
    for (int64_t j = 0; j < count;) {
        const int64_t run = run_length(shape.dtype, false, count - j);
        float *out = output_run(out_buf, y, shape.dtype, first + j);
        affine_span(out, read_run(in_buf, x, shape.dtype, first + j, run), run, a, exact_outputs(shape));
        if (relu_after) relu_span(out, run);
        write_run(y, shape.dtype, first + j, out, run);
        j += run;
    }
}

static void add_gradient_sums(double *a, double *b, const float *x, const float *dy, int64_t count, double mean)
{
    int64_t j = 0;
    for (; j + LANES <= count; j += LANES)
        for (int k = 0; k < LANES; k++) {
            a[k] += (double)dy[j + k];
            b[k] += (double)dy[j + k] * ((double)x[j + k] - mean);
        }
    for (int k = 0; j < count; j++, k++) {
        a[k] += (double)dy[j];
        b[k] += (double)dy[j] * ((double)x[j] - mean);
    }
}

/* Reads `count` values of x and dy from `first` (one channel c); with ReLU,
 * dy comes back masked in masked_buf. */
static bool masks_into_buffer(const bn_call *call) { return call->relu; }

/* Where the masked dy of values [first, ...) goes: straight into gated_dy
 * when that is float32 (dx may be dy: each value is read before it is
 * written), else into buf. store_gated then narrows it into gated_dy (exact:
 * a masked value is dy's own or 0). */
static float *gated_target(float *buf, const bn_call *call, int64_t first)
{
    return call->gated_dy && call->shape.dtype == SBN_DTYPE_F32 ? (float *)call->gated_dy + first : buf;
}

static void store_gated(const bn_call *call, int64_t first, const float *masked, int64_t count)
{
    if (call->gated_dy && call->shape.dtype != SBN_DTYPE_F32)
        elements_from_float(call->gated_dy, call->shape.dtype, first, masked, count);
}

/* Values [first, first + count) of dy as floats. With ReLU, dy is masked
 * into a buffer first, from the forward's output recomputed (and for a
 * 16-bit type narrowed as the forward narrowed it); when the call has
 * gated_dy, the masked values are also stored there, so that a following
 * apply pass reads them instead of recomputing. */
static const float *read_dy_run(float *dy_buf, float *masked_buf, const float *xv, const bn_call *call,
                                const void *dy, int64_t c, int64_t first, int64_t count)
{
    const float *dyv = read_run(dy_buf, dy, call->shape.dtype, first, count);
    if (!masks_into_buffer(call)) return dyv;
    float *masked = gated_target(masked_buf, call, first);
    relu_mask_span(masked, dyv, xv, count, normalize_affine(call->mean, call->invstd, call->weight, call->bias, c),
                   call->shape.dtype);
    store_gated(call, first, masked, count);
    return masked;
}

static void ncs_channel_backward_reduce(double *sum_dy, double *sum_dy_xmu, const bn_call *call, const void *x,
                                        const void *dy, int64_t c)
{
    const sbn_shape shape = call->shape;
    float x_buf[RUN], dy_buf[RUN], masked[RUN];
    double a[LANES] = {0}, b[LANES] = {0};
    for (int64_t i = 0; i < shape.n; i++)
        for (int64_t j = 0; j < shape.s;) {
            const int64_t run = run_length(shape.dtype, masks_into_buffer(call), shape.s - j);
            const int64_t first = ncs_block(shape, i, c) + j;
            const float *xv = read_run(x_buf, x, shape.dtype, first, run);
            add_gradient_sums(a, b, xv, read_dy_run(dy_buf, masked, xv, call, dy, c, first, run), run, call->mean[c]);
            j += run;
        }
    *sum_dy = sum_lanes(a);
    *sum_dy_xmu = sum_lanes(b);
}

/* dx over `count` values from `first` (one channel c). */
static void gradient_values(void *dx, const void *x, const void *dy, const bn_call *call, int64_t c, int64_t first,
                            int64_t count, channel_gradient g)
{
    const sbn_dtype type = call->shape.dtype;
    float x_buf[RUN], dy_buf[RUN], masked[RUN], out_buf[RUN];
    for (int64_t j = 0; j < count;) {
        const int64_t run = run_length(type, masks_into_buffer(call), count - j);
        const float *xv = read_run(x_buf, x, type, first + j, run);
        const float *dyv = read_dy_run(dy_buf, masked, xv, call, dy, c, first + j, run);
        float *out = output_run(out_buf, dx, type, first + j);
        gradient_span(out, xv, dyv, run, g, exact_outputs(call->shape));
        write_run(dx, type, first + j, out, run);
        j += run;
    }
}

/* ---------- channels-last: rows of c values ---------- */

/* Per-channel coefficients as arrays, so the loop over a row's channels
 * vectorizes. A row shorter than a run is handled as part of a tile of
 * rows_per_tile whole rows (contiguous in memory), with every array
 * repeated rows_per_tile times: the loops then run over a few hundred
 * values whatever C is (measured: per-row loops of C = 16 ran at a fifth of
 * the channels-first speed). */
typedef struct affine_arrays {
    float *mean_hi, *mean_lo, *scale, *offset;
    double *mean, *scale_exact;
} affine_arrays;

typedef struct gradient_arrays {
    affine_arrays x_centre, dy_centre;
    float *slope;
    double *slope_exact;
} gradient_arrays;

/* Everything a channels-last call needs per channel, in one allocation:
 * `length` entries per array, entry p for channel p % channels. */
typedef struct row_coefficients {
    affine_arrays forward;
    gradient_arrays gradient;
    float *shift; /* row 0, widened: the statistics' shift */
    int64_t channels, rows_per_tile, length;
    void *block;
} row_coefficients;

enum { ROW_FLOAT_ARRAYS = 4 + 4 + 4 + 1 + 1, ROW_DOUBLE_ARRAYS = 2 + 2 + 2 + 1 };

static sbn_status row_coefficients_alloc(row_coefficients *k, int64_t channels)
{
    k->channels = channels > 0 ? channels : 1;
    k->rows_per_tile = k->channels >= RUN ? 1 : RUN / k->channels;
    k->length = k->rows_per_tile * k->channels;
    const size_t n = (size_t)k->length;
    double *doubles = malloc(n * (ROW_DOUBLE_ARRAYS * sizeof(double) + ROW_FLOAT_ARRAYS * sizeof(float)));
    if (!doubles) return sbn_fail(SBN_ERR_NOMEM, "no memory for %lld channel coefficients", (long long)channels);
    float *floats = (float *)(doubles + ROW_DOUBLE_ARRAYS * n);
    affine_arrays *affines[3] = {&k->forward, &k->gradient.x_centre, &k->gradient.dy_centre};
    for (int a = 0; a < 3; a++) {
        affines[a]->mean_hi = floats + (size_t)(4 * a) * n;
        affines[a]->mean_lo = floats + (size_t)(4 * a + 1) * n;
        affines[a]->scale = floats + (size_t)(4 * a + 2) * n;
        affines[a]->offset = floats + (size_t)(4 * a + 3) * n;
        affines[a]->mean = doubles + (size_t)(2 * a) * n;
        affines[a]->scale_exact = doubles + (size_t)(2 * a + 1) * n;
    }
    k->gradient.slope = floats + 12 * n;
    k->gradient.slope_exact = doubles + 6 * n;
    k->shift = floats + 13 * n;
    k->block = doubles;
    return SBN_OK;
}

static void set_affine(affine_arrays a, int64_t c, channel_affine one)
{
    a.mean_hi[c] = one.mean_hi, a.mean_lo[c] = one.mean_lo, a.scale[c] = one.scale, a.offset[c] = one.offset;
    a.mean[c] = one.mean, a.scale_exact[c] = one.scale_exact;
}

static void set_forward_coefficients(row_coefficients *k, const bn_call *call)
{
    for (int64_t p = 0; p < k->length; p++)
        set_affine(k->forward, p,
                   normalize_affine(call->mean, call->invstd, call->weight, call->bias, p % k->channels));
}

static void set_gradient_coefficients(row_coefficients *k, const bn_call *call)
{
    for (int64_t p = 0; p < k->length; p++) {
        const channel_gradient one = make_gradient(call->mean, call->invstd, call->weight, call->mean_dy,
                                                   call->mean_dy_xmu, p % k->channels);
        set_affine(k->gradient.x_centre, p, one.x_centre);
        set_affine(k->gradient.dy_centre, p, one.dy_centre);
        k->gradient.slope[p] = one.slope, k->gradient.slope_exact[p] = one.slope_exact;
    }
}

/* Rows [r, r + tile_rows(k, r, last)) are the next piece of a thread's rows
 * [first, last): a tile, or one row when rows are at least a run long. */
static int64_t tile_rows(const row_coefficients *k, int64_t r, int64_t last)
{
    return last - r < k->rows_per_tile ? last - r : k->rows_per_tile;
}

static affine_arrays affine_from(affine_arrays a, int64_t c0)
{
    affine_arrays at = {a.mean_hi + c0, a.mean_lo + c0, a.scale + c0, a.offset + c0, a.mean + c0, a.scale_exact + c0};
    return at;
}

static void affine_row(float *out, const float *in, int64_t count, affine_arrays a, bool exact)
{
    if (!exact) {
#pragma omp simd
        for (int64_t c = 0; c < count; c++) out[c] = ((in[c] - a.mean_hi[c]) - a.mean_lo[c]) * a.scale[c] + a.offset[c];
        return;
    }
    int32_t cancels[RUN]; /* as wide as a float: a byte array made GCC vectorize by 64 */
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t c = 0; c < count; c++) {
        const float value = ((in[c] - a.mean_hi[c]) - a.mean_lo[c]) * a.scale[c] + a.offset[c];
        cancels[c] = fabsf(value) * cancellation_limit < fabsf(a.offset[c]);
        any |= cancels[c];
        out[c] = value;
    }
    for (int64_t c = any ? next_marked(cancels, 0, count) : count; c < count; c = next_marked(cancels, c + 1, count))
        out[c] = (float)(((double)in[c] - a.mean[c]) * a.scale_exact[c] + (double)a.offset[c]);
}

static void relu_mask_row(float *masked, const float *dy, const float *x, int64_t count, affine_arrays forward,
                          sbn_dtype type)
{
    float output[RUN];
    for (int64_t j = 0; j < count; j += RUN) {
        const int64_t run = count - j < RUN ? count - j : RUN;
        affine_row(output, x + j, run, affine_from(forward, j), type != SBN_DTYPE_F32);
        round_to_type(output, type, run);
        gate_run(masked + j, dy + j, output, run);
    }
}

static void gradient_row(float *out, const float *x, const float *dy, int64_t count, gradient_arrays g, bool exact)
{
    const affine_arrays xc = g.x_centre, dc = g.dy_centre;
    if (!exact) {
#pragma omp simd
        for (int64_t c = 0; c < count; c++)
            out[c] = ((dy[c] - dc.mean_hi[c]) - dc.mean_lo[c]) * dc.scale[c] - ((x[c] - xc.mean_hi[c]) - xc.mean_lo[c]) * g.slope[c];
        return;
    }
    int32_t cancels[RUN]; /* as wide as a float: a byte array made GCC vectorize by 64 */
    int any = 0;
#pragma omp simd reduction(| : any)
    for (int64_t c = 0; c < count; c++) {
        const float along = ((dy[c] - dc.mean_hi[c]) - dc.mean_lo[c]) * dc.scale[c];
        const float across = ((x[c] - xc.mean_hi[c]) - xc.mean_lo[c]) * g.slope[c];
        cancels[c] = fabsf(along - across) * cancellation_limit < fabsf(along);
        any |= cancels[c];
        out[c] = along - across;
    }
    for (int64_t c = any ? next_marked(cancels, 0, count) : count; c < count; c = next_marked(cancels, c + 1, count))
        out[c] = (float)(((double)dy[c] - dc.mean[c]) * dc.scale_exact[c] - ((double)x[c] - xc.mean[c]) * g.slope_exact[c]);
}

static gradient_arrays gradient_from(gradient_arrays g, int64_t c0)
{
    gradient_arrays at = {affine_from(g.x_centre, c0), affine_from(g.dy_centre, c0), g.slope + c0, g.slope_exact + c0};
    return at;
}

/* Rows [first, last) of the calling thread, in order. The split uses the
 * threads OpenMP actually granted to the enclosing region, which may be
 * fewer than asked for (nested regions, OMP_THREAD_LIMIT, OMP_DYNAMIC):
 * splitting by the number requested would silently skip rows. */
static void my_rows(int64_t rows, int64_t *first, int64_t *last)
{
    const int64_t thread = omp_get_thread_num(), threads = omp_get_num_threads();
    *first = rows * thread / threads;
    *last = rows * (thread + 1) / threads;
}

/* Planes [*first, *last) of the calling thread (as my_rows), and the channel
 * of the first: the caller steps the channel along instead of dividing per
 * plane (a division per plane of 49 values cost as much as the plane). */
static int64_t my_planes(sbn_shape shape, int64_t *first, int64_t *last)
{
    my_rows(shape.n * shape.c, first, last);
    return *first % (shape.c > 0 ? shape.c : 1);
}

/* Doubles from one thread's pair of partial sums to the next: 2 * length
 * rounded up to whole cache lines, so that no line is written by two
 * threads (a shared line at each boundary made 2 threads slower than 1). */
static size_t pair_stride(int64_t length) { return ((size_t)length * 2 + 7) / 8 * 8; }
static size_t partial_stride(const row_coefficients *k) { return pair_stride(k->length); }

/* Zeroed, cache-line aligned partial sums: `threads` blocks of `stride` doubles. */
static sbn_status partials_alloc(double **partial, int threads, size_t stride)
{
    const size_t bytes = (size_t)threads * stride * sizeof **partial;
    *partial = aligned_alloc(64, bytes);
    if (!*partial) return sbn_fail(SBN_ERR_NOMEM, "no memory for %d x %zu partial sums", threads, stride);
    memset(*partial, 0, bytes);
    return SBN_OK;
}

/* Two partial sums per coefficient entry (k->length) for each of at most
 * `*threads` threads, zeroed and cache-line aligned: thread t's pair starts
 * at t * partial_stride(k). */
static sbn_status row_partials_alloc(double **partial, int64_t rows, const row_coefficients *k, int *threads)
{
    const int available = omp_get_max_threads();
    *threads = (int)(rows < 1 ? 1 : rows < available ? rows : available);
    return partials_alloc(partial, *threads, partial_stride(k));
}

/* first[c], second[c] = the partial sums of channel c of the `threads`
 * threads that ran, added in thread then entry order: each thread holds
 * `length` first sums (entry p for channel p % channels) then as many second
 * sums, pair_stride(length) doubles from the next thread's. */
static void sum_partials(double *first, double *second, const double *partial, int threads, int64_t channels,
                         int64_t length)
{
    const size_t stride = pair_stride(length);
    for (int64_t c = 0; c < channels; c++) {
        double a = 0.0, b = 0.0;
        for (int t = 0; t < threads; t++)
            for (int64_t p = c; p < length; p += channels) {
                a += partial[(size_t)t * stride + (size_t)p];
                b += partial[(size_t)t * stride + (size_t)length + (size_t)p];
            }
        first[c] = a;
        second[c] = b;
    }
}

/* sum_partials over a tiled call's entries (every tile copy of a channel), then frees them. */
static void row_partials_sum(double *first, double *second, double *partial, int threads, const row_coefficients *k)
{
    sum_partials(first, second, partial, threads, k->channels, k->length);
    free(partial);
}

static void add_row_moments(double *s1, double *s2, const float *v, const float *shift, int64_t count)
{
#pragma omp simd
    for (int64_t c = 0; c < count; c++) {
        const double d = (double)v[c] - (double)shift[c];
        s1[c] += d;
        s2[c] += d * d;
    }
}

static sbn_status nsc_stats(double *mean, double *m2, sbn_shape shape, const void *x)
{
    const int64_t rows = shape.n * shape.s, channels = shape.c;
    if (rows == 0) {
        for (int64_t c = 0; c < channels; c++) mean[c] = m2[c] = 0.0;
        return SBN_OK;
    }
    double *partial;
    int threads;
    row_coefficients k;
    sbn_status st = row_coefficients_alloc(&k, channels);
    if (st != SBN_OK) return st;
    if ((st = row_partials_alloc(&partial, rows, &k, &threads)) != SBN_OK) {
        free(k.block);
        return st;
    }
    elements_to_float(k.shift, x, shape.dtype, 0, channels); /* row 0, repeated along the tile */
    for (int64_t p = channels; p < k.length; p++) k.shift[p] = k.shift[p - channels];
    const float *shift = k.shift;
    int granted = 1;
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        if (t == 0) granted = omp_get_num_threads();
        double *s1 = partial + (size_t)t * partial_stride(&k), *s2 = s1 + k.length;
        float buf[RUN];
        int64_t first, last;
        my_rows(rows, &first, &last);
        for (int64_t r = first, piece; r < last; r += piece) {
            piece = tile_rows(&k, r, last);
            for (int64_t j = 0; j < piece * channels;) {
                const int64_t run = run_length(shape.dtype, false, piece * channels - j);
                add_row_moments(s1 + j, s2 + j, read_run(buf, x, shape.dtype, r * channels + j, run), shift + j, run);
                j += run;
            }
        }
    }
    row_partials_sum(mean, m2, partial, granted, &k); /* s1 in mean, s2 in m2 */
    for (int64_t c = 0; c < channels; c++) {
        const double s1 = mean[c], s2 = m2[c];
        mean[c] = (double)shift[c] + s1 / (double)rows;
        m2[c] = nonnegative(s2 - s1 * (s1 / (double)rows));
    }
    free(k.block);
    return SBN_OK;
}

static sbn_status nsc_normalize(void *y, const bn_call *call, const void *x)
{
    const sbn_shape shape = call->shape;
    const int64_t rows = shape.n * shape.s, channels = shape.c;
    row_coefficients k;
    sbn_status st = row_coefficients_alloc(&k, channels);
    if (st != SBN_OK) return st;
    set_forward_coefficients(&k, call);
    const bool exact = exact_outputs(shape), relu_after = call->relu;
#pragma omp parallel
    {
        float in_buf[RUN], out_buf[RUN];
        int64_t first, last;
        my_rows(rows, &first, &last);
        for (int64_t r = first, piece; r < last; r += piece) {
            piece = tile_rows(&k, r, last);
            for (int64_t j = 0; j < piece * channels;) {
                const int64_t run = run_length(shape.dtype, false, piece * channels - j), at = r * channels + j;
                float *out = output_run(out_buf, y, shape.dtype, at);
                affine_row(out, read_run(in_buf, x, shape.dtype, at, run), run, affine_from(k.forward, j), exact);
                if (relu_after) relu_span(out, run);
                write_run(y, shape.dtype, at, out, run);
                j += run;
            }
        }
    }
    free(k.block);
    return SBN_OK;
}

/* Row r's channels [c0, c0 + count) of dy as floats, masked by the ReLU when the call has one. */
static const float *read_dy_row(float *dy_buf, float *masked_buf, const float *xv, const bn_call *call,
                                const row_coefficients *k, const void *dy, int64_t first, int64_t c0, int64_t count)
{
    const float *dyv = read_run(dy_buf, dy, call->shape.dtype, first, count);
    if (!masks_into_buffer(call)) return dyv;
    float *masked = gated_target(masked_buf, call, first);
    relu_mask_row(masked, dyv, xv, count, affine_from(k->forward, c0), call->shape.dtype);
    store_gated(call, first, masked, count);
    return masked;
}

static void add_row_gradient_sums(double *a, double *b, const float *x, const float *dy, const double *mean,
                                  int64_t count)
{

#pragma omp simd
    for (int64_t c = 0; c < count; c++) {
        a[c] += (double)dy[c];
        b[c] += (double)dy[c] * ((double)x[c] - mean[c]);
    }
}

static sbn_status nsc_backward_reduce(double *sum_dy, double *sum_dy_xmu, const bn_call *call, const void *x,
                                      const void *dy)
{
    const sbn_shape shape = call->shape;
    const int64_t rows = shape.n * shape.s, channels = shape.c;
    double *partial;
    int threads;
    row_coefficients k;
    sbn_status st = row_coefficients_alloc(&k, channels);
    if (st != SBN_OK) return st;
    if ((st = row_partials_alloc(&partial, rows, &k, &threads)) != SBN_OK) {
        free(k.block);
        return st;
    }
    if (call->relu) set_forward_coefficients(&k, call); /* the ReLU's map */
    for (int64_t p = 0; p < k.length; p++) k.forward.mean[p] = call->mean[p % channels]; /* the tiled mean */
    int granted = 1;
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        if (t == 0) granted = omp_get_num_threads();
        double *a = partial + (size_t)t * partial_stride(&k), *b = a + k.length;
        float x_buf[RUN], dy_buf[RUN], masked[RUN];
        int64_t first, last;
        my_rows(rows, &first, &last);
        for (int64_t r = first, piece; r < last; r += piece) {
            piece = tile_rows(&k, r, last);
            for (int64_t j = 0; j < piece * channels;) {
                const int64_t run = run_length(shape.dtype, masks_into_buffer(call), piece * channels - j);
                const int64_t at = r * channels + j;
                const float *xv = read_run(x_buf, x, shape.dtype, at, run);
                add_row_gradient_sums(a + j, b + j, xv, read_dy_row(dy_buf, masked, xv, call, &k, dy, at, j, run),
                                      k.forward.mean + j, run);
                j += run;
            }
        }
    }
    row_partials_sum(sum_dy, sum_dy_xmu, partial, granted, &k);
    free(k.block);
    return SBN_OK;
}

static sbn_status nsc_backward_apply(void *dx, const bn_call *call, const void *x, const void *dy)
{
    const sbn_shape shape = call->shape;
    const int64_t rows = shape.n * shape.s, channels = shape.c;
    row_coefficients k;
    sbn_status st = row_coefficients_alloc(&k, channels);
    if (st != SBN_OK) return st;
    if (call->relu) set_forward_coefficients(&k, call);
    set_gradient_coefficients(&k, call);
    const bool exact = exact_outputs(shape);
#pragma omp parallel
    {
        float x_buf[RUN], dy_buf[RUN], masked[RUN], out_buf[RUN];
        int64_t first, last;
        my_rows(rows, &first, &last);
        for (int64_t r = first, piece; r < last; r += piece) {
            piece = tile_rows(&k, r, last);
            for (int64_t j = 0; j < piece * channels;) {
                const int64_t run = run_length(shape.dtype, masks_into_buffer(call), piece * channels - j);
                const int64_t at = r * channels + j;
                const float *xv = read_run(x_buf, x, shape.dtype, at, run);
                const float *dyv = read_dy_row(dy_buf, masked, xv, call, &k, dy, at, j, run);
                float *out = output_run(out_buf, dx, shape.dtype, at);
                gradient_row(out, xv, dyv, run, gradient_from(k.gradient, j), exact);
                write_run(dx, shape.dtype, at, out, run);
                j += run;
            }
        }
    }
    free(k.block);
    return SBN_OK;
}

/* ---------- the passes, both layouts ---------- */

/* An empty tensor (n, c or s zero) has nothing to read or write, however
 * large its other sizes: zero the per-channel outputs and return at once
 * rather than loop over n or n*s empty rows. */
static void zero_channels(double *first, double *second, int64_t channels)
{
    for (int64_t c = 0; c < channels; c++) first[c] = second[c] = 0.0;
}

/* ---------- channels-first reductions over short planes ---------- */
/* A channel's n blocks of s values are strided; when s is short, going
 * channel by channel reads a few cache lines here and there and spends most
 * of its time in the lanes' tails. Planes in memory order instead, each
 * summed as one vector reduction into the thread's partials for its channel
 * (measured 2-3x faster for s = 49 and 64). The reduction's order follows the
 * indices, not the data's alignment (GCC does not peel here), so the bits do
 * not depend on where the buffers lie: bn_kernels checks it, since a resumed
 * run must repeat every sum. */
enum { SHORT_PLANE = 512 };

static bool short_planes(sbn_shape shape) { return shape.s < SHORT_PLANE; }

/* *s1 += sum(v - shift), *s2 += sum((v - shift)^2), as one vector reduction. */
static void add_plane_moments(double *s1, double *s2, const float *v, int64_t count, double shift)
{
    double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < count; i++) {
        const double d = (double)v[i] - shift;
        a += d;
        b += d * d;
    }
    *s1 += a, *s2 += b;
}

static void add_plane_gradient_sums(double *sum_a, double *sum_b, const float *x, const float *dy, int64_t count,
                                    double mean)
{
    double a = 0.0, b = 0.0;
#pragma omp simd reduction(+ : a, b)
    for (int64_t i = 0; i < count; i++) {
        a += (double)dy[i];
        b += (double)dy[i] * ((double)x[i] - mean);
    }
    *sum_a += a, *sum_b += b;
}

static sbn_status ncs_plane_stats(double *mean, double *m2, sbn_shape shape, const void *x)
{
    const int threads = omp_get_max_threads();
    double *partial, *shift = malloc((size_t)shape.c * sizeof *shift);
    sbn_status st = shift ? partials_alloc(&partial, threads, pair_stride(shape.c))
                          : sbn_fail(SBN_ERR_NOMEM, "no memory for %lld channel shifts", (long long)shape.c);
    if (st != SBN_OK) {
        free(shift);
        return st;
    }
    for (int64_t c = 0; c < shape.c; c++) {
        float first;
        elements_to_float(&first, x, shape.dtype, ncs_block(shape, 0, c), 1);
        shift[c] = first;
    }
    int granted = 1;
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        if (t == 0) granted = omp_get_num_threads();
        double *s1 = partial + (size_t)t * pair_stride(shape.c), *s2 = s1 + shape.c;
        float buf[RUN];
        int64_t first, last, c = my_planes(shape, &first, &last);
        for (int64_t plane = first; plane < last; plane++, c = c + 1 == shape.c ? 0 : c + 1)
            for (int64_t j = 0; j < shape.s;) {
                const int64_t run = run_length(shape.dtype, true, shape.s - j); /* RUN, a multiple of the lanes */
                add_plane_moments(s1 + c, s2 + c,
                                  read_run(buf, x, shape.dtype, plane * shape.s + j, run), run, shift[c]);
                j += run;
            }
    }
    sum_partials(mean, m2, partial, granted, shape.c, shape.c); /* s1 in mean, s2 in m2 */
    const int64_t count = shape.n * shape.s;
    for (int64_t c = 0; c < shape.c; c++) {
        const double s1 = mean[c], s2 = m2[c];
        mean[c] = shift[c] + s1 / (double)count;
        m2[c] = nonnegative(s2 - s1 * (s1 / (double)count));
    }
    free(partial), free(shift);
    return SBN_OK;
}

/* Runs of RUN values whatever the type, so that the sums are taken in the
 * same order with a ReLU mask (which needs a buffer) and without. */
static sbn_status ncs_plane_backward_reduce(double *sum_dy, double *sum_dy_xmu, const bn_call *call, const void *x,
                                            const void *dy)
{
    const sbn_shape shape = call->shape;
    const int threads = omp_get_max_threads();
    double *partial;
    sbn_status st = partials_alloc(&partial, threads, pair_stride(shape.c));
    if (st != SBN_OK) return st;
    int granted = 1;
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        if (t == 0) granted = omp_get_num_threads();
        double *a = partial + (size_t)t * pair_stride(shape.c), *b = a + shape.c;
        float x_buf[RUN], dy_buf[RUN], masked[RUN];
        int64_t first, last, c = my_planes(shape, &first, &last);
        for (int64_t plane = first; plane < last; plane++, c = c + 1 == shape.c ? 0 : c + 1)
            for (int64_t j = 0; j < shape.s;) {
                const int64_t run = run_length(shape.dtype, true, shape.s - j), at = plane * shape.s + j;
                const float *xv = read_run(x_buf, x, shape.dtype, at, run);
                add_plane_gradient_sums(a + c, b + c, xv,
                                        read_dy_run(dy_buf, masked, xv, call, dy, c, at, run), run, call->mean[c]);
                j += run;
            }
    }
    sum_partials(sum_dy, sum_dy_xmu, partial, granted, shape.c, shape.c);
    free(partial);
    return SBN_OK;
}

static sbn_status stats_pass(double *mean, double *m2, sbn_shape shape, const void *x)
{
    if (is_rows_of_channels(shape)) return nsc_stats(mean, m2, shape, x);
    if (short_planes(shape)) return ncs_plane_stats(mean, m2, shape, x);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < shape.c; c++)
        ncs_channel_stats(&mean[c], &m2[c], shape, x, c);
    return SBN_OK;
}

static sbn_status normalize_pass(void *y, const bn_call *call, const void *x)
{
    const sbn_shape shape = call->shape;
    if (is_rows_of_channels(shape)) return nsc_normalize(y, call, x);
    channel_affine *affines = malloc((size_t)shape.c * sizeof *affines);
    if (!affines) return sbn_fail(SBN_ERR_NOMEM, "no memory for %lld channel coefficients", (long long)shape.c);
    for (int64_t c = 0; c < shape.c; c++)
        affines[c] = normalize_affine(call->mean, call->invstd, call->weight, call->bias, c);
    /* No statistics to keep in cache here: stream the (sample, channel)
     * planes in memory order (measured 1.2-1.4x faster than channel order). */
#pragma omp parallel
    {
        int64_t first, last, c = my_planes(shape, &first, &last);
        for (int64_t plane = first; plane < last; plane++, c = c + 1 == shape.c ? 0 : c + 1)
            forward_values(y, x, shape, plane * shape.s, shape.s, affines[c], call->relu);
    }
    free(affines);
    return SBN_OK;
}

static double invstd_of(double m2, int64_t count, double eps) { return 1.0 / sqrt(m2 / (double)count + eps); }

static sbn_status forward_train_pass(void *y, double *mean, double *m2, double *invstd, bn_call *call, const void *x,
                                     double eps)
{
    const sbn_shape shape = call->shape;
    const int64_t count = shape.n * shape.s;
    sbn_status st = stats_pass(mean, m2, shape, x);
    if (st != SBN_OK) return st;
    for (int64_t c = 0; c < shape.c; c++) invstd[c] = invstd_of(m2[c], count, eps);
    return normalize_pass(y, call, x);
}

static sbn_status backward_reduce_pass(double *sum_dy, double *sum_dy_xmu, const bn_call *call, const void *x,
                                       const void *dy)
{
    if (is_rows_of_channels(call->shape)) return nsc_backward_reduce(sum_dy, sum_dy_xmu, call, x, dy);
    if (short_planes(call->shape)) return ncs_plane_backward_reduce(sum_dy, sum_dy_xmu, call, x, dy);
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < call->shape.c; c++)
        ncs_channel_backward_reduce(&sum_dy[c], &sum_dy_xmu[c], call, x, dy, c);
    return SBN_OK;
}

static sbn_status backward_apply_pass(void *dx, const bn_call *call, const void *x, const void *dy)
{
    const sbn_shape shape = call->shape;
    if (is_rows_of_channels(shape)) return nsc_backward_apply(dx, call, x, dy);
    channel_gradient *gradients = malloc((size_t)shape.c * sizeof *gradients);
    if (!gradients) return sbn_fail(SBN_ERR_NOMEM, "no memory for %lld channel coefficients", (long long)shape.c);
    for (int64_t c = 0; c < shape.c; c++)
        gradients[c] = make_gradient(call->mean, call->invstd, call->weight, call->mean_dy, call->mean_dy_xmu, c);
    /* As in normalize: stream the planes in memory order. */
#pragma omp parallel
    {
        int64_t first, last, c = my_planes(shape, &first, &last);
        for (int64_t plane = first; plane < last; plane++, c = c + 1 == shape.c ? 0 : c + 1)
            gradient_values(dx, x, dy, call, c, plane * shape.s, shape.s, gradients[c]);
    }
    free(gradients);
    return SBN_OK;
}

/* With ReLU and dx, the reduce pass stores the masked dy in dx (dx may be dy:
 * each value is read before it is written), and the apply pass reads it
 * back as a plain dy: the forward's output is recomputed once, not twice. */
static sbn_status backward_train_pass(void *dx, double *sum_dy, double *sum_dy_xmu, bn_call *call, const void *x,
                                      const void *dy)
{
    const sbn_shape shape = call->shape;
    const int64_t count = shape.n * shape.s;
    bn_call apply = *call;
    if (dx && call->relu) {
        call->gated_dy = dx;
        apply.relu = false;
    }
    const void *apply_dy = dx && call->relu ? dx : dy;
    if (dx && !is_rows_of_channels(shape) && !short_planes(shape) && shape.dtype == SBN_DTYPE_F32) {
        /* Long float32 planes: a channel at a time, its x and dy still in cache
         * for the second pass (measured 1.2x faster than two passes there). */
#pragma omp parallel for schedule(static)
        for (int64_t c = 0; c < shape.c; c++) {
            ncs_channel_backward_reduce(&sum_dy[c], &sum_dy_xmu[c], call, x, dy, c);
            const double mean_dy = sum_dy[c] / (double)count, mean_dy_xmu = sum_dy_xmu[c] / (double)count;
            const channel_gradient g = make_gradient(call->mean + c, call->invstd + c,
                                                     call->weight ? call->weight + c : NULL, &mean_dy, &mean_dy_xmu, 0);
            for (int64_t i = 0; i < shape.n; i++)
                gradient_values(dx, x, apply_dy, &apply, c, ncs_block(shape, i, c), shape.s, g);
        }
        return SBN_OK;
    }
    /* Otherwise two passes in memory order (short planes are strided blocks
     * channel by channel; 16-bit runs gain nothing from the cache there).
     * The means are allocated first: a failure after the reduce pass has
     * stored the masked dy in dx would leave dx (maybe dy) changed. */
    double *means = dx ? malloc(2 * (size_t)shape.c * sizeof *means + 1) : NULL;
    if (dx && !means) return sbn_fail(SBN_ERR_NOMEM, "no memory for %lld channel means", (long long)shape.c);
    sbn_status st = backward_reduce_pass(sum_dy, sum_dy_xmu, call, x, dy);
    if (st != SBN_OK || !dx) {
        free(means);
        return st;
    }
    for (int64_t c = 0; c < shape.c; c++) {
        means[c] = sum_dy[c] / (double)count;
        means[shape.c + c] = sum_dy_xmu[c] / (double)count;
    }
    apply.mean_dy = means;
    apply.mean_dy_xmu = means + shape.c;
    st = backward_apply_pass(dx, &apply, x, apply_dy);
    free(means);
    return st;
}

/* ---------- public kernels: checks, then the pass ---------- */

static bn_call make_call(sbn_shape shape, const double *mean, const double *invstd, const float *weight,
                         const float *bias, bool relu)
{
    bn_call call = {.shape = shape, .mean = mean, .invstd = invstd, .weight = weight, .bias = bias, .relu = relu};
    return call;
}

sbn_status sbn_kernel_channel_stats(double *mean, double *m2, sbn_shape shape, const void *x)
{
    int64_t elements;
    sbn_status st = sbn_shape_check(shape, &elements);
    if (st == SBN_OK) st = check_pointers(mean, "mean", m2, "m2", x, "x");
    if (st != SBN_OK) return st;
    if (elements == 0) {
        zero_channels(mean, m2, shape.c);
        return SBN_OK;
    }
    return stats_pass(mean, m2, shape, x);
}

static sbn_status normalize_checked(void *y, sbn_shape shape, const void *x, const double *mean,
                                    const double *invstd, const float *weight, const float *bias, bool relu)
{
    int64_t elements;
    sbn_status st = sbn_shape_check(shape, &elements);
    if (st == SBN_OK) st = check_pointers(y, "y", x, "x", mean, "mean");
    if (st == SBN_OK) st = check_pointers(invstd, "invstd", x, "x", x, "x");
    if (st != SBN_OK || elements == 0) return st;
    const bn_call call = make_call(shape, mean, invstd, weight, bias, relu);
    return normalize_pass(y, &call, x);
}

sbn_status sbn_kernel_normalize(void *y, sbn_shape shape, const void *x, const double *mean, const double *invstd,
                                const float *weight, const float *bias)
{
    return normalize_checked(y, shape, x, mean, invstd, weight, bias, false);
}

sbn_status sbn_kernel_normalize_relu(void *y, sbn_shape shape, const void *x, const double *mean,
                                     const double *invstd, const float *weight, const float *bias)
{
    return normalize_checked(y, shape, x, mean, invstd, weight, bias, true);
}

static sbn_status forward_train_checked(void *y, double *mean, double *m2, double *invstd, sbn_shape shape,
                                        const void *x, const float *weight, const float *bias, double eps, bool relu)
{
    int64_t elements;
    sbn_status st = sbn_shape_check(shape, &elements);
    if (st == SBN_OK) st = check_pointers(y, "y", x, "x", mean, "mean");
    if (st == SBN_OK) st = check_pointers(m2, "m2", invstd, "invstd", x, "x");
    if (st == SBN_OK) st = check_eps(eps);
    if (st != SBN_OK) return st;
    if (shape.n * shape.s < 1 && shape.c > 0)
        return sbn_fail(SBN_ERR_BATCH, "training forward needs at least 1 value per channel, got n*s = 0");
    if (elements == 0) return SBN_OK; /* no channels */
    bn_call call = make_call(shape, mean, invstd, weight, bias, relu);
    return forward_train_pass(y, mean, m2, invstd, &call, x, eps);
}

sbn_status sbn_kernel_forward_train(void *y, double *mean, double *m2, double *invstd, sbn_shape shape,
                                    const void *x, const float *weight, const float *bias, double eps)
{
    return forward_train_checked(y, mean, m2, invstd, shape, x, weight, bias, eps, false);
}

sbn_status sbn_kernel_forward_train_relu(void *y, double *mean, double *m2, double *invstd, sbn_shape shape,
                                         const void *x, const float *weight, const float *bias, double eps)
{
    return forward_train_checked(y, mean, m2, invstd, shape, x, weight, bias, eps, true);
}

/* The ReLU variants recompute the forward's output: they need its invstd too. */
static sbn_status backward_reduce_checked(double *sum_dy, double *sum_dy_xmu, sbn_shape shape, const void *x,
                                          const void *dy, const bn_call *call)
{
    int64_t elements;
    sbn_status st = sbn_shape_check(shape, &elements);
    if (st == SBN_OK) st = check_pointers(sum_dy, "sum_dy", sum_dy_xmu, "sum_dy_xmu", x, "x");
    if (st == SBN_OK) st = check_pointers(dy, "dy", call->mean, "mean", x, "x");
    if (st == SBN_OK && call->relu && !call->invstd) st = sbn_fail(SBN_ERR_ARG, "invstd is NULL");
    if (st != SBN_OK) return st;
    if (elements == 0) {
        zero_channels(sum_dy, sum_dy_xmu, shape.c);
        return SBN_OK;
    }
    return backward_reduce_pass(sum_dy, sum_dy_xmu, call, x, dy);
}

sbn_status sbn_kernel_backward_reduce(double *sum_dy, double *sum_dy_xmu, sbn_shape shape, const void *x,
                                      const void *dy, const double *mean)
{
    const bn_call call = make_call(shape, mean, NULL, NULL, NULL, false);
    return backward_reduce_checked(sum_dy, sum_dy_xmu, shape, x, dy, &call);
}

sbn_status sbn_kernel_backward_reduce_relu(double *sum_dy, double *sum_dy_xmu, sbn_shape shape, const void *x,
                                           const void *dy, const double *mean, const double *invstd,
                                           const float *weight, const float *bias)
{
    const bn_call call = make_call(shape, mean, invstd, weight, bias, true);
    return backward_reduce_checked(sum_dy, sum_dy_xmu, shape, x, dy, &call);
}

static sbn_status backward_apply_checked(void *dx, const void *x, const void *dy, bn_call *call)
{
    int64_t elements;
    sbn_status st = sbn_shape_check(call->shape, &elements);
    if (st == SBN_OK) st = check_pointers(dx, "dx", x, "x", dy, "dy");
    if (st == SBN_OK) st = check_pointers(call->mean, "mean", call->invstd, "invstd", x, "x");
    if (st == SBN_OK && (call->mean_dy == NULL) != (call->mean_dy_xmu == NULL))
        st = sbn_fail(SBN_ERR_ARG, "mean_dy and mean_dy_xmu must be both NULL or both set");
    if (st != SBN_OK || elements == 0) return st;
    return backward_apply_pass(dx, call, x, dy);
}

sbn_status sbn_kernel_backward_apply(void *dx, sbn_shape shape, const void *x, const void *dy, const double *mean,
                                     const double *invstd, const float *weight, const double *mean_dy,
                                     const double *mean_dy_xmu)
{
    bn_call call = make_call(shape, mean, invstd, weight, NULL, false);
    call.mean_dy = mean_dy, call.mean_dy_xmu = mean_dy_xmu;
    return backward_apply_checked(dx, x, dy, &call);
}

sbn_status sbn_kernel_backward_apply_relu(void *dx, sbn_shape shape, const void *x, const void *dy,
                                          const double *mean, const double *invstd, const float *weight,
                                          const float *bias, const double *mean_dy, const double *mean_dy_xmu)
{
    bn_call call = make_call(shape, mean, invstd, weight, bias, true);
    call.mean_dy = mean_dy, call.mean_dy_xmu = mean_dy_xmu;
    return backward_apply_checked(dx, x, dy, &call);
}

static sbn_status backward_train_checked(void *dx, double *sum_dy, double *sum_dy_xmu, const void *x, const void *dy,
                                         bn_call *call)
{
    const sbn_shape shape = call->shape;
    int64_t elements;
    sbn_status st = sbn_shape_check(shape, &elements);
    if (st == SBN_OK) st = check_pointers(sum_dy, "sum_dy", sum_dy_xmu, "sum_dy_xmu", x, "x");
    if (st == SBN_OK) st = check_pointers(dy, "dy", call->mean, "mean", call->invstd, "invstd");
    if (st != SBN_OK) return st;
    if (shape.n * shape.s < 1 && shape.c > 0)
        return sbn_fail(SBN_ERR_BATCH, "training backward needs at least 1 value per channel, got n*s = 0");
    if (elements == 0) return SBN_OK; /* no channels */
    return backward_train_pass(dx, sum_dy, sum_dy_xmu, call, x, dy);
}

sbn_status sbn_kernel_backward_train(void *dx, double *sum_dy, double *sum_dy_xmu, sbn_shape shape, const void *x,
                                     const void *dy, const double *mean, const double *invstd, const float *weight)
{
    bn_call call = make_call(shape, mean, invstd, weight, NULL, false);
    return backward_train_checked(dx, sum_dy, sum_dy_xmu, x, dy, &call);
}

sbn_status sbn_kernel_backward_train_relu(void *dx, double *sum_dy, double *sum_dy_xmu, sbn_shape shape,
                                          const void *x, const void *dy, const double *mean, const double *invstd,
                                          const float *weight, const float *bias)
{
    bn_call call = make_call(shape, mean, invstd, weight, bias, true);
    return backward_train_checked(dx, sum_dy, sum_dy_xmu, x, dy, &call);
}
