/* 16-bit activations (shape.dtype BF16 and F16) and the fused ReLU.
 *
 * Accuracy: every kernel (channel_stats, forward_train, normalize,
 * backward_reduce, backward_apply with and without mean_dy, backward_train)
 * and the layer (training and eval, forward and backward) against a float64
 * computation written here from the formulas on the exactly widened 16-bit
 * inputs. Each 16-bit output must be within 1 ulp of that value in its type
 * (plus 1e-13 of the magnitude of the terms combined, the float64 value's own
 * uncertainty); the statistics and sums within ~1e-12 of theirs. The data
 * force the cases the double fix-up exists for: a bias chosen per channel to
 * cancel y at one element (the float result would be mostly rounding error),
 * dy tuned so that dx nearly cancels at one element, mean_dy_xmu chosen so
 * that backward_apply cancels, count-2 channels (dx cancels by itself), and a
 * constant channel (y == bias exactly, here -0). F16 overflow (+-inf past
 * 65504) and a NaN channel are checked as well. Both layouts, shapes with
 * odd sizes and runs split at 256 values (s > 256, C > 256), OpenMP thread
 * counts 1 and 3.
 *
 * Fused ReLU: for F32, BF16 and F16, the layer with fuse_relu and the
 * *_relu kernels are bit for bit (memcmp) what the plain layer / kernels
 * followed by a separate ReLU give: y = relu(y_bn), and backward fed dy
 * masked by ReLU's rule (0 where y_bn <= 0, dy elsewhere, NaN passing).
 *
 * Errors: backward with another dtype than the forward, a non-float
 * activation dtype, relu kernels without invstd. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "core/element.h"
#include "support/support.h"

static const double EPS = 1e-5;

typedef struct case_shape { int64_t n, c, s; } case_shape;

/* Odd sizes; (N,C) inputs (s == 1); s > 256 and C > 256 (a 16-bit run is
 * 256 values, so both layouts split rows/planes into several runs); count 2. */
/* s = 700: channels-first planes long enough for the channel-at-a-time backward. */
static const case_shape shapes[] = {{2, 3, 5}, {4, 7, 33}, {3, 5, 1}, {16, 3, 300}, {1, 300, 2}, {4, 3, 700}};
enum { SHAPES = sizeof shapes / sizeof shapes[0] };

static const sbn_dtype half_types[] = {SBN_DTYPE_BF16, SBN_DTYPE_F16};
static const sbn_dtype all_types[] = {SBN_DTYPE_F32, SBN_DTYPE_BF16, SBN_DTYPE_F16};
static const sbn_layout layouts[] = {SBN_NCS, SBN_NSC};
static const int thread_counts[] = {1, 3};

/* ---------- elements, read and written independently of the library ---------- */

static size_t element_size(sbn_dtype type) { return type == SBN_DTYPE_F32 ? 4 : 2; }

static double get(sbn_dtype type, const void *base, int64_t at)
{
    if (type == SBN_DTYPE_F32) return ((const float *)base)[at];
    const uint16_t bits = ((const uint16_t *)base)[at];
    if (type == SBN_DTYPE_F16) {
        _Float16 h;
        memcpy(&h, &bits, sizeof h);
        return (double)h;
    }
    const uint32_t wide = (uint32_t)bits << 16;
    float f;
    memcpy(&f, &wide, sizeof f);
    return f;
}

/* Rounds v to the type (only to make inputs: any rounding would do). */
static void put(sbn_dtype type, void *base, int64_t at, double v)
{
    if (type == SBN_DTYPE_F32) {
        ((float *)base)[at] = (float)v;
    } else if (type == SBN_DTYPE_F16) {
        const _Float16 h = (_Float16)v;
        memcpy((uint16_t *)base + at, &h, sizeof h);
    } else {
        ((uint16_t *)base)[at] = element_float_to_bfloat16((float)v);
    }
}

static void put_bits_zero(sbn_dtype type, void *base, int64_t at)
{
    memset((char *)base + (size_t)at * element_size(type), 0, element_size(type));
}

/* The spacing of the 16-bit type at |v|: F16 2^(e-10), subnormals 2^-24;
 * BF16 2^(e-7), subnormals 2^-133 (2^e <= |v| < 2^(e+1)). */
static double ulp16(sbn_dtype type, double v)
{
    int e = -100000;
    if (v != 0.0) {
        (void)frexp(fabs(v), &e);
        e -= 1;
    }
    if (type == SBN_DTYPE_F16) return ldexp(1.0, (e < -14 ? -14 : e) - 10);
    return ldexp(1.0, (e < -126 ? -126 : e) - 7);
}

/* ---------- layouts ---------- */

static int64_t offset_of(sbn_shape shape, int64_t i, int64_t c, int64_t j)
{
    return shape.layout == SBN_NCS ? (i * shape.c + c) * shape.s + j : (i * shape.s + j) * shape.c + c;
}

/* Value p (0 <= p < n*s) of channel c. */
static int64_t channel_at(sbn_shape shape, int64_t c, int64_t p) { return offset_of(shape, p / shape.s, c, p % shape.s); }

static int64_t per_channel(sbn_shape shape) { return shape.n * shape.s; }
static int64_t elements(sbn_shape shape) { return shape.n * shape.c * shape.s; }

/* ---------- reporting ---------- */

static char context[160];

static void set_context(const char *what, sbn_shape shape)
{
    snprintf(context, sizeof context, "[%s %s %s (%lld,%lld,%lld) %d threads]", what, sbn_dtype_name(shape.dtype),
             shape.layout == SBN_NCS ? "NCS" : "NSC", (long long)shape.n, (long long)shape.c, (long long)shape.s,
             omp_get_max_threads());
}

/* What the checks saw, so the tests can assert that the hard cases occurred. */
static struct {
    int64_t needs_exact; /* outputs a float evaluation of the terms would get more than 1 ulp wrong */
    int64_t infinities;  /* outputs that are +-inf (F16 overflow) */
    int64_t nans;
    int64_t negative_zeros; /* BN outputs (before ReLU) that are -0 */
    int64_t zeros;          /* BN outputs (before ReLU) that are +-0 */
} seen;

typedef struct tally { int64_t bad, checked; } tally;

static int64_t status_fails(tally *t, sbn_status st, const char *call)
{
    if (st == SBN_OK) return 0;
    fprintf(stderr, "%s %s: %s (%s)\n", context, call, sbn_status_str(st), sbn_errmsg());
    t->bad++;
    return 1;
}

/* Output element (i, c, j) against its float64 value `want`; `terms` is the
 * magnitude of the terms that were combined (for the reference's own
 * uncertainty, and to tell whether the element needs the exact path). */
static void check_output(tally *t, const char *label, sbn_shape shape, const void *out, int64_t i, int64_t c,
                         int64_t j, double want, double terms)
{
    const int64_t at = offset_of(shape, i, c, j);
    const double got = get(shape.dtype, out, at);
    const double overflow = 65520.0 * (1.0 + 0x1p-11); /* beyond doubt: rounds to inf */
    int ok;
    if (isnan(want)) ok = isnan(got);
    else if (shape.dtype == SBN_DTYPE_F16 && fabs(want) >= overflow) ok = isinf(got) && (got > 0) == (want > 0);
    else if (shape.dtype == SBN_DTYPE_F16 && fabs(want) > 65504.0)
        ok = (got > 0) == (want > 0) && (isinf(got) || fabs(got) == 65504.0);
    else ok = isfinite(got) && fabs(got - want) <= ulp16(shape.dtype, want) + 1e-13 * terms;
    t->checked++;
    seen.infinities += isinf(got) != 0;
    seen.nans += isnan(got) != 0;
    if (isfinite(want) && 0x1p-22 * terms > ulp16(shape.dtype, want)) seen.needs_exact++;
    if (!ok && t->bad++ < 6) {
        const uint16_t bits = ((const uint16_t *)out)[at];
        fprintf(stderr, "%s %s: element (n %lld, c %lld, s %lld) at %lld: expected %.10g, got %.10g (0x%04x), "
                        "1 ulp %.3g, terms %.3g\n",
                context, label, (long long)i, (long long)c, (long long)j, (long long)at, want, got, bits,
                ulp16(shape.dtype, want), terms);
    }
}

/* A per-channel double (or float) result against its float64 value, within rtol * scale. */
static void check_close(tally *t, const char *label, int64_t c, double got, double want, double scale, double rtol)
{
    const int ok = isnan(want) ? isnan(got) : fabs(got - want) <= rtol * scale;
    t->checked++;
    if (!ok && t->bad++ < 6)
        fprintf(stderr, "%s %s[%lld]: expected %.17g, got %.17g (difference %.3g, allowed %.3g)\n", context, label,
                (long long)c, want, got, got - want, rtol * scale);
}

/* ---------- data ---------- */

typedef struct data {
    sbn_shape shape;
    void *x, *dy;
    float *weight, *bias;
} data;

/* x ~ N(0.5, 2), dy ~ N(0, dy_scale), weight +-U(0.5, 1.5) * weight_scale,
 * bias ~ N(0, 1) * weight_scale (outputs cross zero), except channels 3, 7, ...
 * whose weights are 2^-9 times smaller. Channel 0 is constant
 * (when there are other channels) with a negative weight and bias -0, so its
 * training output is exactly -0 (x - mean == 0, 0 * negative + -0). */
static data make_data(sbn_shape shape, uint64_t seed, double weight_scale, double dy_scale)
{
    data d = {.shape = shape};
    const size_t bytes = (size_t)elements(shape) * element_size(shape.dtype) + 1;
    d.x = malloc(bytes), d.dy = malloc(bytes);
    d.weight = malloc((size_t)shape.c * sizeof(float)), d.bias = malloc((size_t)shape.c * sizeof(float));
    test_rng rng = {seed * 7919 + 17};
    for (int64_t c = 0; c < shape.c; c++) {
        const double sign = test_rng_uniform(&rng) < 0.3 ? -1.0 : 1.0;
        d.weight[c] = (float)(sign * (0.5 + test_rng_uniform(&rng)) * weight_scale);
        d.bias[c] = (float)(test_rng_normal(&rng) * weight_scale);
    }
    /* Every fourth channel a small weight: its cancelled y (cancel_bias) is
     * ~1e-10, which F16 rounds to +-0 with the residual's sign. */
    for (int64_t c = 3; c < shape.c; c += 4) d.weight[c] *= 0x1p-9f;
    const int constant_channel = shape.c >= 2;
    if (constant_channel) d.weight[0] = -fabsf(d.weight[0]), d.bias[0] = -0.0f;
    for (int64_t c = 0; c < shape.c; c++)
        for (int64_t p = 0; p < per_channel(shape); p++) {
            const int64_t at = channel_at(shape, c, p);
            put(shape.dtype, d.x, at, c == 0 && constant_channel ? 1.25 : 0.5 + 2.0 * test_rng_normal(&rng));
            put(shape.dtype, d.dy, at, dy_scale * test_rng_normal(&rng));
        }
    return d;
}

static void free_data(data *d) { free(d->x), free(d->dy), free(d->weight), free(d->bias); }

static double x_at(const data *d, int64_t c, int64_t p) { return get(d->shape.dtype, d->x, channel_at(d->shape, c, p)); }
static double dy_at(const data *d, int64_t c, int64_t p)
{
    return get(d->shape.dtype, d->dy, channel_at(d->shape, c, p));
}

/* ---------- the float64 reference ---------- */

/* Two-pass mean and m2 per channel; invstd = 1/sqrt(m2/count + eps). */
static void ref_stats(const data *d, double *mean, double *m2, double *invstd)
{
    const int64_t count = per_channel(d->shape);
    for (int64_t c = 0; c < d->shape.c; c++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t p = 0; p < count; p++) sum += x_at(d, c, p);
        mean[c] = sum / (double)count;
        for (int64_t p = 0; p < count; p++) sq += (x_at(d, c, p) - mean[c]) * (x_at(d, c, p) - mean[c]);
        m2[c] = sq;
        invstd[c] = 1.0 / sqrt(sq / (double)count + EPS);
    }
}

/* sum(dy), sum(dy * (x - mean)) and the sums of their absolute values. */
typedef struct sums { double dy, dy_xmu, abs_dy, abs_dy_xmu; } sums;

static sums ref_sums(const data *d, const void *dy, int64_t c, double mean)
{
    sums s = {0, 0, 0, 0};
    for (int64_t p = 0; p < per_channel(d->shape); p++) {
        const double g = get(d->shape.dtype, dy, channel_at(d->shape, c, p)), xmu = x_at(d, c, p) - mean;
        s.dy += g, s.dy_xmu += g * xmu, s.abs_dy += fabs(g), s.abs_dy_xmu += fabs(g * xmu);
    }
    return s;
}

static double weight_of(const float *weight, int64_t c) { return weight ? weight[c] : 1.0; }
static double bias_of(const float *bias, int64_t c) { return bias ? bias[c] : 0.0; }

/* y = (x - mean) * invstd * weight + bias, and the magnitude of its terms. */
static double ref_y(double x, double mean, double invstd, double weight, double bias, double *terms)
{
    *terms = (fabs(x) + fabs(mean)) * fabs(invstd * weight) + fabs(bias);
    return (x - mean) * invstd * weight + bias;
}

/* dx = weight*invstd * ((dy - mean_dy) - (x - mean) * invstd^2 * mean_dy_xmu), and its terms
 * (with the uncertainty of mean_dy and mean_dy_xmu when they are sums: abs_* / count). */
static double ref_dx(double x, double dy, double mean, double invstd, double weight, double mean_dy,
                     double mean_dy_xmu, double abs_mean_dy, double abs_mean_dy_xmu, double *terms)
{
    const double gain = weight * invstd;
    *terms = fabs(gain) * (fabs(dy) + fabs(mean_dy) + abs_mean_dy +
                           (fabs(x) + fabs(mean)) * invstd * invstd * (fabs(mean_dy_xmu) + abs_mean_dy_xmu));
    return gain * ((dy - mean_dy) - (x - mean) * invstd * invstd * mean_dy_xmu);
}

/* ---------- adversarial inputs ---------- */

/* A value p of channel c with |x - mean| * invstd in [lo, hi], or -1. */
static int64_t pick_value(const data *d, int64_t c, double mean, double invstd, double lo, double hi, int64_t start)
{
    const int64_t count = per_channel(d->shape);
    for (int64_t k = 0; k < count; k++) {
        const int64_t p = (start + k) % count;
        const double a = fabs(x_at(d, c, p) - mean) * invstd;
        if (a >= lo && a <= hi) return p;
    }
    return -1;
}

/* bias[c] = -(float)((x_p - mean) * invstd * weight) for one value p of each
 * odd channel: y_p is then the float rounding residual of the bias, ~2^-25
 * of the terms, which a float evaluation gets wrong. */
static void cancel_bias(const data *d, float *bias, const double *mean, const double *invstd, const float *weight)
{
    for (int64_t c = 1; c < d->shape.c; c += 2) {
        if (!isfinite(mean[c]) || !isfinite(invstd[c])) continue;
        const int64_t p = pick_value(d, c, mean[c], invstd[c], 0.5, 3.0, 7 * c + 3);
        if (p < 0) continue;
        bias[c] = (float)(-(x_at(d, c, p) - mean[c]) * invstd[c] * weight_of(weight, c));
    }
}

/* dx_p / (weight*invstd) under batch statistics, from the whole channel. */
static double batch_dx_unscaled(const data *d, int64_t c, int64_t p, double mean, double invstd, double *terms)
{
    const sums s = ref_sums(d, d->dy, c, mean);
    const double count = (double)per_channel(d->shape);
    return ref_dx(x_at(d, c, p), dy_at(d, c, p), mean, invstd, 1.0 / invstd, s.dy / count, s.dy_xmu / count, 0, 0,
                  terms);
}

/* Tunes dy in each odd channel so that the batch-statistics dx nearly
 * cancels at one value p: dy_p solved for, then three helper values (set to
 * 0 first) each absorbing the rounding residual left so far; every stage
 * shrinks it by the type's precision. */
static void cancel_dx(data *d, const double *mean, const double *invstd)
{
    const int64_t count = per_channel(d->shape);
    if (count < 8) return;
    for (int64_t c = 1; c < d->shape.c; c += 2) {
        if (!isfinite(mean[c]) || !isfinite(invstd[c])) continue;
        const int64_t p = pick_value(d, c, mean[c], invstd[c], 0.3, 1.5, 5 * c + 1);
        if (p < 0) continue;
        const double a_p = (x_at(d, c, p) - mean[c]) * invstd[c];
        int64_t order[4] = {p, -1, -1, -1};
        int helpers = 1;
        for (int64_t q = 0; q < count && helpers < 4; q++) {
            const double coef = 1.0 / (double)count + a_p * (x_at(d, c, q) - mean[c]) * invstd[c] / (double)count;
            if (q != p && fabs(coef) > 0.5 / (double)count) order[helpers++] = q;
        }
        for (int h = 1; h < helpers; h++) put(d->shape.dtype, d->dy, channel_at(d->shape, c, order[h]), 0.0);
        for (int stage = 0; stage < helpers; stage++) {
            double terms;
            const double r = batch_dx_unscaled(d, c, p, mean[c], invstd[c], &terms);
            if (fabs(r) <= 1e-10 * terms) break;
            const int64_t q = order[stage];
            const double a_q = (x_at(d, c, q) - mean[c]) * invstd[c];
            const double coef = (q == p ? 1.0 : 0.0) - 1.0 / (double)count - a_p * a_q / (double)count;
            const int64_t at = channel_at(d->shape, c, q);
            put(d->shape.dtype, d->dy, at, get(d->shape.dtype, d->dy, at) - r / coef);
        }
    }
}

/* The scale of 16-bit test data: F16 with larger weights and gradients, so
 * that cancelled results stay above its subnormals. */
static double weight_scale_of(sbn_dtype type) { return type == SBN_DTYPE_F16 ? 64.0 : 1.0; }
static double dy_scale_of(sbn_dtype type) { return type == SBN_DTYPE_F16 ? 16.0 : 1.0; }

/* ---------- kernel checks ---------- */

static void check_forward(tally *t, const char *label, const data *d, const void *y, const double *mean,
                          const double *invstd, const float *weight, const float *bias)
{
    const sbn_shape shape = d->shape;
    for (int64_t c = 0; c < shape.c; c++)
        for (int64_t p = 0; p < per_channel(shape); p++) {
            double terms;
            const double want = ref_y(x_at(d, c, p), mean[c], invstd[c], weight_of(weight, c), bias_of(bias, c), &terms);
            check_output(t, label, shape, y, p / shape.s, c, p % shape.s, want, terms);
        }
}

/* dx with the given mean_dy / mean_dy_xmu (NULL: through fixed statistics);
 * abs_* are their uncertainties' scales (0 when they are inputs). */
static void check_backward(tally *t, const char *label, const data *d, const void *dy, const void *dx,
                           const double *mean, const double *invstd, const float *weight, const double *mean_dy,
                           const double *mean_dy_xmu, const double *abs_mean_dy, const double *abs_mean_dy_xmu)
{
    const sbn_shape shape = d->shape;
    for (int64_t c = 0; c < shape.c; c++)
        for (int64_t p = 0; p < per_channel(shape); p++) {
            double terms;
            const double g = get(shape.dtype, dy, channel_at(shape, c, p));
            const double want = ref_dx(x_at(d, c, p), g, mean[c], invstd[c], weight_of(weight, c),
                                       mean_dy ? mean_dy[c] : 0.0, mean_dy ? mean_dy_xmu[c] : 0.0,
                                       abs_mean_dy ? abs_mean_dy[c] : 0.0, abs_mean_dy_xmu ? abs_mean_dy_xmu[c] : 0.0,
                                       &terms);
            check_output(t, label, shape, dx, p / shape.s, c, p % shape.s, want, terms);
        }
}

static void check_sums(tally *t, const char *label, const data *d, const double *sum_dy, const double *sum_dy_xmu,
                       const double *mean)
{
    for (int64_t c = 0; c < d->shape.c; c++) {
        const sums s = ref_sums(d, d->dy, c, mean[c]);
        check_close(t, label, c, sum_dy[c], s.dy, s.abs_dy + 1e-300, 1e-12);
        check_close(t, label, c, sum_dy_xmu[c], s.dy_xmu, s.abs_dy_xmu + 1e-300, 1e-12);
    }
}

static void check_stats(tally *t, const char *label, const data *d, const double *mean, const double *m2,
                        const double *invstd, const double *want_mean, const double *want_m2, const double *want_invstd)
{
    const double count = (double)per_channel(d->shape);
    for (int64_t c = 0; c < d->shape.c; c++) {
        check_close(t, label, c, mean[c], want_mean[c], fabs(want_mean[c]) + sqrt(want_m2[c] / count), 1e-12);
        check_close(t, label, c, m2[c], want_m2[c], want_m2[c], 1e-12);
        if (invstd) check_close(t, label, c, invstd[c], want_invstd[c], want_invstd[c], 1e-12);
    }
}

static int64_t kernel_accuracy(sbn_shape shape, uint64_t seed)
{
    set_context("kernels", shape);
    data d = make_data(shape, seed, weight_scale_of(shape.dtype), dy_scale_of(shape.dtype));
    const int64_t C = shape.c, count = per_channel(shape);
    double *ref = malloc(3 * (size_t)C * sizeof *ref), *got = malloc(9 * (size_t)C * sizeof *got);
    double *rmean = ref, *rm2 = ref + C, *rinv = ref + 2 * C;
    double *mean = got, *m2 = got + C, *inv = got + 2 * C, *sum_dy = got + 3 * C, *sum_dy_xmu = got + 4 * C;
    double *mean_dy = got + 5 * C, *mean_dy_xmu = got + 6 * C, *abs_mean_dy = got + 7 * C, *abs_mean_dy_xmu = got + 8 * C;
    ref_stats(&d, rmean, rm2, rinv);
    cancel_bias(&d, d.bias, rmean, rinv, d.weight);
    cancel_dx(&d, rmean, rinv);
    const size_t bytes = (size_t)elements(shape) * element_size(shape.dtype) + 1;
    void *y = malloc(bytes), *dx = malloc(bytes), *inplace = malloc(bytes);
    tally t = {0, 0};

    if (!status_fails(&t, sbn_kernel_channel_stats(mean, m2, shape, d.x), "channel_stats"))
        check_stats(&t, "channel_stats", &d, mean, m2, NULL, rmean, rm2, rinv);

    if (!status_fails(&t, sbn_kernel_forward_train(y, mean, m2, inv, shape, d.x, d.weight, d.bias, EPS),
                      "forward_train")) {
        check_stats(&t, "forward_train stats", &d, mean, m2, inv, rmean, rm2, rinv);
        check_forward(&t, "forward_train y", &d, y, rmean, rinv, d.weight, d.bias);
    }

    if (!status_fails(&t, sbn_kernel_normalize(y, shape, d.x, rmean, rinv, d.weight, d.bias), "normalize"))
        check_forward(&t, "normalize y", &d, y, rmean, rinv, d.weight, d.bias);
    /* In place (y == x) gives the same bits. */
    memcpy(inplace, d.x, bytes);
    if (!status_fails(&t, sbn_kernel_normalize(inplace, shape, inplace, rmean, rinv, d.weight, d.bias),
                      "normalize in place") &&
        memcmp(inplace, y, bytes - 1) != 0) {
        fprintf(stderr, "%s normalize in place differs from out of place\n", context);
        t.bad++;
    }
    /* Other statistics (as in eval), no affine parameters (scratch: the mean_dy arrays, set again below). */
    double *eval_mean = mean_dy, *eval_invstd = mean_dy_xmu;
    for (int64_t c = 0; c < C; c++) eval_mean[c] = rmean[c] + 0.3 / rinv[c], eval_invstd[c] = rinv[c] * 0.7;
    if (!status_fails(&t, sbn_kernel_normalize(y, shape, d.x, eval_mean, eval_invstd, NULL, NULL), "normalize plain"))
        check_forward(&t, "normalize plain y", &d, y, eval_mean, eval_invstd, NULL, NULL);

    if (!status_fails(&t, sbn_kernel_backward_reduce(sum_dy, sum_dy_xmu, shape, d.x, d.dy, rmean), "backward_reduce"))
        check_sums(&t, "backward_reduce", &d, sum_dy, sum_dy_xmu, rmean);

    /* backward_apply with mean_dy, mean_dy_xmu given: the natural values,
     * except in odd channels a mean_dy_xmu that cancels dx at one value to
     * 1e-9 of its terms. */
    for (int64_t c = 0; c < C; c++) {
        const sums s = ref_sums(&d, d.dy, c, rmean[c]);
        mean_dy[c] = s.dy / (double)count, mean_dy_xmu[c] = s.dy_xmu / (double)count;
        if (c % 2 == 1) {
            const int64_t p = pick_value(&d, c, rmean[c], rinv[c], 0.5, 3.0, 11 * c + 2);
            if (p >= 0 && dy_at(&d, c, p) != mean_dy[c])
                mean_dy_xmu[c] = (dy_at(&d, c, p) - mean_dy[c]) / ((x_at(&d, c, p) - rmean[c]) * rinv[c] * rinv[c]) *
                                 (1.0 + 1e-9);
        }
    }
    if (!status_fails(&t, sbn_kernel_backward_apply(dx, shape, d.x, d.dy, rmean, rinv, d.weight, mean_dy, mean_dy_xmu),
                      "backward_apply"))
        check_backward(&t, "backward_apply dx", &d, d.dy, dx, rmean, rinv, d.weight, mean_dy, mean_dy_xmu, NULL, NULL);
    memcpy(inplace, d.dy, bytes);
    if (!status_fails(&t, sbn_kernel_backward_apply(inplace, shape, d.x, inplace, rmean, rinv, d.weight, mean_dy,
                                                    mean_dy_xmu),
                      "backward_apply in place") &&
        memcmp(inplace, dx, bytes - 1) != 0) {
        fprintf(stderr, "%s backward_apply in place differs from out of place\n", context);
        t.bad++;
    }
    if (!status_fails(&t, sbn_kernel_backward_apply(dx, shape, d.x, d.dy, rmean, rinv, d.weight, NULL, NULL),
                      "backward_apply fixed"))
        check_backward(&t, "backward_apply fixed dx", &d, d.dy, dx, rmean, rinv, d.weight, NULL, NULL, NULL, NULL);

    if (!status_fails(&t, sbn_kernel_backward_train(dx, sum_dy, sum_dy_xmu, shape, d.x, d.dy, rmean, rinv, d.weight),
                      "backward_train")) {
        check_sums(&t, "backward_train", &d, sum_dy, sum_dy_xmu, rmean);
        for (int64_t c = 0; c < C; c++) {
            const sums s = ref_sums(&d, d.dy, c, rmean[c]);
            mean_dy[c] = s.dy / (double)count, mean_dy_xmu[c] = s.dy_xmu / (double)count;
            abs_mean_dy[c] = s.abs_dy / (double)count, abs_mean_dy_xmu[c] = s.abs_dy_xmu / (double)count;
        }
        check_backward(&t, "backward_train dx", &d, d.dy, dx, rmean, rinv, d.weight, mean_dy, mean_dy_xmu, abs_mean_dy,
                       abs_mean_dy_xmu);
    }
    if (t.bad) fprintf(stderr, "%s %lld of %lld checks failed\n", context, (long long)t.bad, (long long)t.checked);
    free(ref), free(got), free(y), free(dx), free(inplace);
    free_data(&d);
    return t.bad;
}

/* ---------- layer checks ---------- */

/* A training step then an eval step (running statistics) of a plain BN
 * layer, every output against float64. weight_scale/dy_scale as make_data;
 * nan_at >= 0 puts a NaN at that value of channel 1. */
static int64_t layer_accuracy(sbn_shape shape, uint64_t seed, double weight_scale, double dy_scale, int64_t nan_at)
{
    set_context(nan_at >= 0 ? "layer with NaN" : "layer", shape);
    data d = make_data(shape, seed, weight_scale, dy_scale);
    const int64_t C = shape.c, count = per_channel(shape);
    if (nan_at >= 0) put(shape.dtype, d.x, channel_at(shape, 1, nan_at), NAN);
    double *ref = malloc(7 * (size_t)C * sizeof *ref);
    double *rmean = ref, *rm2 = ref + C, *rinv = ref + 2 * C, *mean_dy = ref + 3 * C, *mean_dy_xmu = ref + 4 * C;
    double *abs_mean_dy = ref + 5 * C, *abs_mean_dy_xmu = ref + 6 * C;
    ref_stats(&d, rmean, rm2, rinv);
    cancel_bias(&d, d.bias, rmean, rinv, d.weight);
    cancel_dx(&d, rmean, rinv);
    const size_t bytes = (size_t)elements(shape) * element_size(shape.dtype) + 1;
    void *y = malloc(bytes), *dx = malloc(bytes);
    tally t = {0, 0};
    sbn_bn *bn = NULL;
    if (status_fails(&t, sbn_bn_create(C, NULL, NULL, &bn), "create")) goto done;
    memcpy(sbn_bn_weight(bn), d.weight, (size_t)C * sizeof(float));
    memcpy(sbn_bn_bias(bn), d.bias, (size_t)C * sizeof(float));

    /* Training. */
    if (status_fails(&t, sbn_bn_forward(bn, shape, d.x, y, true), "forward train")) goto done;
    check_forward(&t, "train y", &d, y, rmean, rinv, d.weight, d.bias);
    for (int64_t c = 0; c < C; c++) {
        const double want_mean = 0.1 * rmean[c], want_var = 0.9 + 0.1 * rm2[c] / (double)(count - 1);
        const double spread = sqrt(rm2[c] / (double)count);
        check_close(&t, "running_mean", c, sbn_bn_running_mean(bn)[c], want_mean,
                    fabs(want_mean) + 1e-12 * (fabs(rmean[c]) + spread), 0x1p-23);
        check_close(&t, "running_var", c, sbn_bn_running_var(bn)[c], want_var, want_var, 0x1p-23);
    }
    sbn_bn_zero_grad(bn);
    if (status_fails(&t, sbn_bn_backward(bn, shape, d.x, d.dy, dx), "backward train")) goto done;
    for (int64_t c = 0; c < C; c++) {
        const sums s = ref_sums(&d, d.dy, c, rmean[c]);
        mean_dy[c] = s.dy / (double)count, mean_dy_xmu[c] = s.dy_xmu / (double)count;
        abs_mean_dy[c] = s.abs_dy / (double)count, abs_mean_dy_xmu[c] = s.abs_dy_xmu / (double)count;
        check_close(&t, "train grad_weight", c, sbn_bn_grad_weight(bn)[c], rinv[c] * s.dy_xmu,
                    fabs(rinv[c] * s.dy_xmu) + 1e-12 * rinv[c] * s.abs_dy_xmu, 0x1p-23);
        check_close(&t, "train grad_bias", c, sbn_bn_grad_bias(bn)[c], s.dy, fabs(s.dy) + 1e-12 * s.abs_dy, 0x1p-23);
    }
    check_backward(&t, "train dx", &d, d.dy, dx, rmean, rinv, d.weight, mean_dy, mean_dy_xmu, abs_mean_dy,
                   abs_mean_dy_xmu);

    /* Eval: the layer's running statistics (checked above), a bias that
     * cancels y at one value per odd channel with them. */
    for (int64_t c = 0; c < C; c++) {
        rmean[c] = sbn_bn_running_mean(bn)[c];
        rinv[c] = 1.0 / sqrt((double)sbn_bn_running_var(bn)[c] + EPS);
    }
    cancel_bias(&d, sbn_bn_bias(bn), rmean, rinv, d.weight);
    if (status_fails(&t, sbn_bn_forward(bn, shape, d.x, y, false), "forward eval")) goto done;
    check_forward(&t, "eval y", &d, y, rmean, rinv, d.weight, sbn_bn_bias(bn));
    sbn_bn_zero_grad(bn);
    if (status_fails(&t, sbn_bn_backward(bn, shape, d.x, d.dy, dx), "backward eval")) goto done;
    check_backward(&t, "eval dx", &d, d.dy, dx, rmean, rinv, d.weight, NULL, NULL, NULL, NULL);
    for (int64_t c = 0; c < C; c++) {
        const sums s = ref_sums(&d, d.dy, c, rmean[c]);
        check_close(&t, "eval grad_weight", c, sbn_bn_grad_weight(bn)[c], rinv[c] * s.dy_xmu,
                    fabs(rinv[c] * s.dy_xmu) + 1e-12 * rinv[c] * s.abs_dy_xmu, 0x1p-23);
        check_close(&t, "eval grad_bias", c, sbn_bn_grad_bias(bn)[c], s.dy, fabs(s.dy) + 1e-12 * s.abs_dy, 0x1p-23);
    }
done:
    if (t.bad) fprintf(stderr, "%s %lld of %lld checks failed\n", context, (long long)t.bad, (long long)t.checked);
    sbn_bn_destroy(bn);
    free(ref), free(y), free(dx);
    free_data(&d);
    return t.bad;
}

/* ---------- the loops ---------- */

typedef int64_t (*shape_check)(sbn_shape shape, uint64_t seed);

/* Every 16-bit type, layout and shape under OpenMP 1 and 3 threads. */
static int64_t for_every_half_case(shape_check check)
{
    const int saved = omp_get_max_threads();
    int64_t bad = 0;
    uint64_t seed = 1;
    for (size_t t = 0; t < sizeof thread_counts / sizeof thread_counts[0]; t++) {
        omp_set_num_threads(thread_counts[t]);
        for (size_t k = 0; k < sizeof half_types / sizeof half_types[0]; k++)
            for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++)
                for (size_t i = 0; i < SHAPES; i++) {
                    const sbn_shape shape = {shapes[i].n, shapes[i].c, shapes[i].s, layouts[l], half_types[k]};
                    bad += check(shape, seed++);
                }
    }
    omp_set_num_threads(saved);
    return bad;
}

static void test_kernels_16bit(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof seen);
    assert_int_equal(for_every_half_case(kernel_accuracy), 0);
    fprintf(stderr, "kernels: %lld outputs needed the exact path\n", (long long)seen.needs_exact);
    assert_true(seen.needs_exact > 100);
}

static int64_t plain_layer_accuracy(sbn_shape shape, uint64_t seed)
{
    return layer_accuracy(shape, seed, weight_scale_of(shape.dtype), dy_scale_of(shape.dtype), -1);
}

static void test_layer_16bit(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof seen);
    assert_int_equal(for_every_half_case(plain_layer_accuracy), 0);
    fprintf(stderr, "layer: %lld outputs needed the exact path\n", (long long)seen.needs_exact);
    assert_true(seen.needs_exact > 100);
}

/* F16: weights that take normalized values past 65504, in training and
 * eval, forward and backward: +-inf where the float64 value rounds past the
 * range, within 1 ulp elsewhere. */
static void test_f16_overflow(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof seen);
    int64_t bad = 0;
    for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++)
        for (size_t i = 0; i < SHAPES; i++) {
            const sbn_shape shape = {shapes[i].n, shapes[i].c, shapes[i].s, layouts[l], SBN_DTYPE_F16};
            bad += layer_accuracy(shape, 40 + i, 3e4, 16.0, -1);
        }
    fprintf(stderr, "F16 overflow: %lld infinities\n", (long long)seen.infinities);
    assert_int_equal(bad, 0);
    assert_true(seen.infinities > 100);
    assert_int_equal(seen.nans, 0);
}

/* A NaN in channel 1: in training that channel's outputs (y, dx, running
 * statistics, grads) are NaN, the others exact; in eval with running
 * statistics untouched by it, only that element. */
static void test_nan_channel(void **state)
{
    (void)state;
    int64_t bad = 0;
    for (size_t k = 0; k < sizeof half_types / sizeof half_types[0]; k++)
        for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++)
            for (size_t i = 0; i < SHAPES; i++) {
                const sbn_shape shape = {shapes[i].n, shapes[i].c, shapes[i].s, layouts[l], half_types[k]};
                memset(&seen, 0, sizeof seen);
                const int64_t nan_at = per_channel(shape) / 2;
                bad += layer_accuracy(shape, 60 + i, weight_scale_of(shape.dtype), dy_scale_of(shape.dtype), nan_at);
                /* y and dx of channel 1, training and eval; grads checked as NaN too. */
                assert_true(seen.nans >= 4 * per_channel(shape));

                /* Eval of a fresh layer: only the NaN element. */
                data d = make_data(shape, 80 + i, 1.0, 1.0);
                put(shape.dtype, d.x, channel_at(shape, 1, nan_at), NAN);
                void *y = malloc((size_t)elements(shape) * 2);
                sbn_bn *bn;
                assert_int_equal(sbn_bn_create(shape.c, NULL, NULL, &bn), SBN_OK);
                assert_int_equal(sbn_bn_forward(bn, shape, d.x, y, false), SBN_OK);
                int64_t nans = 0;
                for (int64_t e = 0; e < elements(shape); e++) nans += isnan(get(shape.dtype, y, e));
                assert_int_equal(nans, 1);
                assert_true(isnan(get(shape.dtype, y, channel_at(shape, 1, nan_at))));
                sbn_bn_destroy(bn);
                free(y);
                free_data(&d);
            }
    assert_int_equal(bad, 0);
}

/* ---------- fused ReLU: bit for bit what a separate ReLU gives ---------- */

/* relu of a BN output in place: F32 through nn.h's sbn_relu_forward; 16-bit
 * on the bits: v <= 0 becomes +0 (0x0000), anything else (NaN too) stays. */
static void relu_reference(sbn_dtype type, void *y, int64_t count)
{
    if (type == SBN_DTYPE_F32) {
        sbn_relu_forward(y, y, count);
        return;
    }
    for (int64_t e = 0; e < count; e++) {
        const double v = get(type, y, e);
        seen.zeros += v == 0.0;
        seen.negative_zeros += v == 0.0 && signbit(v);
        if (v <= 0.0) put_bits_zero(type, y, e);
    }
}

/* dy where y_bn > 0 or NaN, +0 where y_bn <= 0. */
static void relu_mask(sbn_dtype type, void *masked, const void *dy, const void *y_bn, int64_t count)
{
    memcpy(masked, dy, (size_t)count * element_size(type));
    for (int64_t e = 0; e < count; e++) {
        const double v = get(type, y_bn, e);
        if (type == SBN_DTYPE_F32) seen.zeros += v == 0.0, seen.negative_zeros += v == 0.0 && signbit(v);
        if (v <= 0.0) put_bits_zero(type, masked, e);
    }
}

/* memcmp, and the first differing element when they differ. */
static int64_t differs(const char *label, sbn_dtype type, const void *got, const void *want, int64_t count)
{
    const size_t size = element_size(type);
    if (memcmp(got, want, (size_t)count * size) == 0) return 0;
    for (int64_t e = 0; e < count; e++)
        if (memcmp((const char *)got + e * (int64_t)size, (const char *)want + e * (int64_t)size, size) != 0) {
            fprintf(stderr, "%s %s: element %lld: fused %.10g, separate ReLU %.10g\n", context, label, (long long)e,
                    get(type, got, e), get(type, want, e));
            break;
        }
    return 1;
}

static int64_t doubles_differ(const char *label, const double *got, const double *want, int64_t count)
{
    if (memcmp(got, want, (size_t)count * sizeof *got) == 0) return 0;
    for (int64_t c = 0; c < count; c++)
        if (memcmp(got + c, want + c, sizeof *got) != 0) {
            fprintf(stderr, "%s %s[%lld]: fused %.17g, separate %.17g\n", context, label, (long long)c, got[c], want[c]);
            break;
        }
    return 1;
}

enum relu_mode { RELU_TRAIN, RELU_EVAL_RUNNING, RELU_EVAL_UNTRACKED, RELU_MODES };
static const char *const relu_mode_names[] = {"fused layer train", "fused layer eval", "fused layer eval untracked"};

/* Two layers, one with fuse_relu, same parameters; the plain one followed by
 * a separate ReLU must give the fused one's y, dx and grads bit for bit. */
static int64_t relu_layer_case(sbn_shape shape, uint64_t seed, enum relu_mode mode)
{
    set_context(relu_mode_names[mode], shape);
    data d = make_data(shape, seed, weight_scale_of(shape.dtype), dy_scale_of(shape.dtype));
    const int64_t C = shape.c, count = elements(shape);
    double *ref = malloc(3 * (size_t)C * sizeof *ref);
    ref_stats(&d, ref, ref + C, ref + 2 * C);
    cancel_bias(&d, d.bias, ref, ref + 2 * C, d.weight);
    const size_t bytes = (size_t)count * element_size(shape.dtype) + 1;
    void *y_bn = malloc(bytes), *y_fused = malloc(bytes), *masked = malloc(bytes), *dx_sep = malloc(bytes),
         *dx_fused = malloc(bytes);
    int64_t bad = 0;
    sbn_bn_options plain = sbn_bn_defaults(), fused;
    if (mode == RELU_EVAL_UNTRACKED) plain.track_running_stats = false;
    fused = plain;
    fused.fuse_relu = true;
    sbn_bn *a = NULL, *b = NULL;
    tally t = {0, 0};
    if (status_fails(&t, sbn_bn_create(C, &plain, NULL, &a), "create") ||
        status_fails(&t, sbn_bn_create(C, &fused, NULL, &b), "create"))
        goto done;
    sbn_bn *layers[2] = {a, b};
    for (int k = 0; k < 2; k++) {
        memcpy(sbn_bn_weight(layers[k]), d.weight, (size_t)C * sizeof(float));
        memcpy(sbn_bn_bias(layers[k]), d.bias, (size_t)C * sizeof(float));
    }
    const bool training = mode == RELU_TRAIN;
    if (mode == RELU_EVAL_RUNNING) {
        /* Running statistics from a training step, then a bias cancelling at
         * one value per odd channel with them, and a NaN input element. */
        for (int k = 0; k < 2; k++)
            if (status_fails(&t, sbn_bn_forward(layers[k], shape, d.x, y_bn, true), "forward train")) goto done;
        double *rinv = ref + 2 * C;
        for (int64_t c = 0; c < C; c++) {
            ref[c] = sbn_bn_running_mean(a)[c];
            rinv[c] = 1.0 / sqrt((double)sbn_bn_running_var(a)[c] + EPS);
        }
        cancel_bias(&d, sbn_bn_bias(a), ref, rinv, d.weight);
        memcpy(sbn_bn_bias(b), sbn_bn_bias(a), (size_t)C * sizeof(float));
        if (C > 2) put(shape.dtype, d.x, channel_at(shape, 2, 0), NAN);
    }
    if (status_fails(&t, sbn_bn_forward(a, shape, d.x, y_bn, training), "forward plain") ||
        status_fails(&t, sbn_bn_forward(b, shape, d.x, y_fused, training), "forward fused"))
        goto done;
    relu_mask(shape.dtype, masked, d.dy, y_bn, count);
    relu_reference(shape.dtype, y_bn, count); /* y_bn is now relu(y_bn) */
    bad += differs("y", shape.dtype, y_fused, y_bn, count);
    if (mode == RELU_TRAIN) {
        bad += memcmp(sbn_bn_running_mean(a), sbn_bn_running_mean(b), (size_t)C * sizeof(float)) != 0;
        bad += memcmp(sbn_bn_running_var(a), sbn_bn_running_var(b), (size_t)C * sizeof(float)) != 0;
    }
    sbn_bn_zero_grad(a), sbn_bn_zero_grad(b);
    if (status_fails(&t, sbn_bn_backward(a, shape, d.x, masked, dx_sep), "backward plain") ||
        status_fails(&t, sbn_bn_backward(b, shape, d.x, d.dy, dx_fused), "backward fused"))
        goto done;
    bad += differs("dx", shape.dtype, dx_fused, dx_sep, count);
    bad += differs("grad_weight", SBN_DTYPE_F32, sbn_bn_grad_weight(b), sbn_bn_grad_weight(a), C);
    bad += differs("grad_bias", SBN_DTYPE_F32, sbn_bn_grad_bias(b), sbn_bn_grad_bias(a), C);
    /* In place, dx == dy, as a model runs it: the same bits. */
    memcpy(dx_fused, d.dy, bytes - 1);
    if (status_fails(&t, sbn_bn_backward(b, shape, d.x, dx_fused, dx_fused), "backward fused, dx == dy")) goto done;
    bad += differs("dx (dx == dy)", shape.dtype, dx_fused, dx_sep, count);
    /* Parameter gradients only (dx NULL). */
    sbn_bn_zero_grad(a), sbn_bn_zero_grad(b);
    if (status_fails(&t, sbn_bn_backward(a, shape, d.x, masked, NULL), "backward plain, no dx") ||
        status_fails(&t, sbn_bn_backward(b, shape, d.x, d.dy, NULL), "backward fused, no dx"))
        goto done;
    bad += differs("grad_weight (no dx)", SBN_DTYPE_F32, sbn_bn_grad_weight(b), sbn_bn_grad_weight(a), C);
    bad += differs("grad_bias (no dx)", SBN_DTYPE_F32, sbn_bn_grad_bias(b), sbn_bn_grad_bias(a), C);
done:
    sbn_bn_destroy(a), sbn_bn_destroy(b);
    free(ref), free(y_bn), free(y_fused), free(masked), free(dx_sep), free(dx_fused);
    free_data(&d);
    return bad + t.bad;
}

/* The *_relu kernels against the plain kernels and a separate ReLU/mask. */
static int64_t relu_kernel_case(sbn_shape shape, uint64_t seed, bool affine)
{
    set_context(affine ? "relu kernels" : "relu kernels, no affine", shape);
    data d = make_data(shape, seed, weight_scale_of(shape.dtype), dy_scale_of(shape.dtype));
    const int64_t C = shape.c, count = elements(shape);
    double *v = malloc(16 * (size_t)C * sizeof *v);
    double *mean_a = v, *m2_a = v + C, *inv_a = v + 2 * C, *mean_b = v + 3 * C, *m2_b = v + 4 * C, *inv_b = v + 5 * C;
    double *sdy_a = v + 6 * C, *sdx_a = v + 7 * C, *sdy_b = v + 8 * C, *sdx_b = v + 9 * C;
    double *mean_dy = v + 10 * C, *mean_dy_xmu = v + 11 * C, *eval_mean = v + 12 * C, *eval_inv = v + 13 * C;
    ref_stats(&d, mean_a, m2_a, inv_a);
    cancel_bias(&d, d.bias, mean_a, inv_a, d.weight);
    /* A NaN input in channel 2: with batch statistics the whole channel is
     * NaN, with the others (eval) only that output, whose dy passes. */
    if (C > 2) put(shape.dtype, d.x, channel_at(shape, 2, per_channel(shape) / 2), NAN);
    const float *w = affine ? d.weight : NULL, *b = affine ? d.bias : NULL;
    const size_t bytes = (size_t)count * element_size(shape.dtype) + 1;
    void *ya = malloc(bytes), *yb = malloc(bytes), *masked = malloc(bytes), *dxa = malloc(bytes),
         *dxb = malloc(bytes);
    tally t = {0, 0};
    int64_t bad = 0;

    /* forward_train_relu: statistics identical, y = relu(forward_train's y). */
    if (status_fails(&t, sbn_kernel_forward_train(ya, mean_a, m2_a, inv_a, shape, d.x, w, b, EPS), "forward_train") ||
        status_fails(&t, sbn_kernel_forward_train_relu(yb, mean_b, m2_b, inv_b, shape, d.x, w, b, EPS),
                     "forward_train_relu"))
        goto done;
    bad += doubles_differ("forward_train_relu mean", mean_b, mean_a, C);
    bad += doubles_differ("forward_train_relu m2", m2_b, m2_a, C);
    bad += doubles_differ("forward_train_relu invstd", inv_b, inv_a, C);
    relu_reference(shape.dtype, ya, count);
    bad += differs("forward_train_relu y", shape.dtype, yb, ya, count);

    /* normalize_relu, with the batch statistics and with others (eval). */
    for (int64_t c = 0; c < C; c++) {
        const double m = isnan(mean_a[c]) ? 0.5 : mean_a[c], inv = isnan(inv_a[c]) ? 0.5 : inv_a[c];
        eval_mean[c] = m - 0.2 / inv, eval_inv[c] = inv * 1.3;
    }
    const double *means[2] = {mean_a, eval_mean}, *invs[2] = {inv_a, eval_inv};
    for (int k = 0; k < 2; k++) {
        if (status_fails(&t, sbn_kernel_normalize(ya, shape, d.x, means[k], invs[k], w, b), "normalize") ||
            status_fails(&t, sbn_kernel_normalize_relu(yb, shape, d.x, means[k], invs[k], w, b), "normalize_relu"))
            goto done;
        relu_reference(shape.dtype, ya, count);
        bad += differs(k ? "normalize_relu y (eval statistics)" : "normalize_relu y", shape.dtype, yb, ya, count);
        memcpy(dxa, d.x, bytes);
        if (status_fails(&t, sbn_kernel_normalize_relu(dxa, shape, dxa, means[k], invs[k], w, b),
                         "normalize_relu in place"))
            goto done;
        bad += differs("normalize_relu in place", shape.dtype, dxa, yb, count);
    }

    /* Backward: the mask from normalize's output with the same statistics and parameters. */
    for (int k = 0; k < 2; k++) {
        const double *mean = means[k], *inv = invs[k];
        if (status_fails(&t, sbn_kernel_normalize(ya, shape, d.x, mean, inv, w, b), "normalize")) goto done;
        relu_mask(shape.dtype, masked, d.dy, ya, count);

        if (status_fails(&t, sbn_kernel_backward_reduce(sdy_a, sdx_a, shape, d.x, masked, mean), "backward_reduce") ||
            status_fails(&t, sbn_kernel_backward_reduce_relu(sdy_b, sdx_b, shape, d.x, d.dy, mean, inv, w, b),
                         "backward_reduce_relu"))
            goto done;
        bad += doubles_differ("backward_reduce_relu sum_dy", sdy_b, sdy_a, C);
        bad += doubles_differ("backward_reduce_relu sum_dy_xmu", sdx_b, sdx_a, C);

        for (int64_t c = 0; c < C; c++)
            mean_dy[c] = sdy_a[c] / (double)per_channel(shape), mean_dy_xmu[c] = sdx_a[c] / (double)per_channel(shape);
        for (int with_means = 0; with_means < 2; with_means++) {
            const double *md = with_means ? mean_dy : NULL, *mdx = with_means ? mean_dy_xmu : NULL;
            if (status_fails(&t, sbn_kernel_backward_apply(dxa, shape, d.x, masked, mean, inv, w, md, mdx),
                             "backward_apply") ||
                status_fails(&t, sbn_kernel_backward_apply_relu(dxb, shape, d.x, d.dy, mean, inv, w, b, md, mdx),
                             "backward_apply_relu"))
                goto done;
            bad += differs(with_means ? "backward_apply_relu dx" : "backward_apply_relu dx (fixed)", shape.dtype, dxb,
                           dxa, count);
            /* dx == dy in place */
            memcpy(yb, d.dy, bytes);
            if (status_fails(&t, sbn_kernel_backward_apply_relu(yb, shape, d.x, yb, mean, inv, w, b, md, mdx),
                             "backward_apply_relu in place"))
                goto done;
            bad += differs("backward_apply_relu in place", shape.dtype, yb, dxb, count);
        }

        if (status_fails(&t, sbn_kernel_backward_train(dxa, sdy_a, sdx_a, shape, d.x, masked, mean, inv, w),
                         "backward_train") ||
            status_fails(&t, sbn_kernel_backward_train_relu(dxb, sdy_b, sdx_b, shape, d.x, d.dy, mean, inv, w, b),
                         "backward_train_relu"))
            goto done;
        bad += differs("backward_train_relu dx", shape.dtype, dxb, dxa, count);
        bad += doubles_differ("backward_train_relu sum_dy", sdy_b, sdy_a, C);
        bad += doubles_differ("backward_train_relu sum_dy_xmu", sdx_b, sdx_a, C);
        if (status_fails(&t, sbn_kernel_backward_train_relu(NULL, sdy_b, sdx_b, shape, d.x, d.dy, mean, inv, w, b),
                         "backward_train_relu without dx"))
            goto done;
        bad += doubles_differ("backward_train_relu sum_dy (no dx)", sdy_b, sdy_a, C);
        bad += doubles_differ("backward_train_relu sum_dy_xmu (no dx)", sdx_b, sdx_a, C);
    }
done:
    free(v), free(ya), free(yb), free(masked), free(dxa), free(dxb);
    free_data(&d);
    return bad + t.bad;
}

/* Every element type (F32 too), layout and shape, under 1 and 3 threads. */
static void test_relu_layer(void **state)
{
    (void)state;
    memset(&seen, 0, sizeof seen);
    const int saved = omp_get_max_threads();
    int64_t bad = 0;
    uint64_t seed = 100;
    for (size_t th = 0; th < sizeof thread_counts / sizeof thread_counts[0]; th++) {
        omp_set_num_threads(thread_counts[th]);
        for (size_t k = 0; k < sizeof all_types / sizeof all_types[0]; k++)
            for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++)
                for (size_t i = 0; i < SHAPES; i++)
                    for (int mode = 0; mode < RELU_MODES; mode++) {
                        const sbn_shape shape = {shapes[i].n, shapes[i].c, shapes[i].s, layouts[l], all_types[k]};
                        bad += relu_layer_case(shape, seed++, (enum relu_mode)mode);
                    }
    }
    omp_set_num_threads(saved);
    fprintf(stderr, "fused layer: %lld BN outputs were zero, %lld of them -0\n", (long long)seen.zeros,
            (long long)seen.negative_zeros);
    assert_int_equal(bad, 0);
    assert_true(seen.negative_zeros > 0);
}

static void test_relu_kernels(void **state)
{
    (void)state;
    const int saved = omp_get_max_threads();
    int64_t bad = 0;
    uint64_t seed = 500;
    for (size_t th = 0; th < sizeof thread_counts / sizeof thread_counts[0]; th++) {
        omp_set_num_threads(thread_counts[th]);
        for (size_t k = 0; k < sizeof all_types / sizeof all_types[0]; k++)
            for (size_t l = 0; l < sizeof layouts / sizeof layouts[0]; l++)
                for (size_t i = 0; i < SHAPES; i++)
                    for (int affine = 0; affine < 2; affine++) {
                        const sbn_shape shape = {shapes[i].n, shapes[i].c, shapes[i].s, layouts[l], all_types[k]};
                        bad += relu_kernel_case(shape, seed++, affine);
                    }
    }
    omp_set_num_threads(saved);
    assert_int_equal(bad, 0);
}

/* ---------- errors ---------- */

static void expect_error(sbn_status got, sbn_status want, const char *part, const char *what)
{
    if (got != want || !strstr(sbn_errmsg(), part))
        fprintf(stderr, "%s: got %s \"%s\", want %s naming \"%s\"\n", what, sbn_status_str(got), sbn_errmsg(),
                sbn_status_str(want), part);
    assert_int_equal(got, want);
    assert_non_null(strstr(sbn_errmsg(), part));
}

static void test_errors(void **state)
{
    (void)state;
    enum { N = 2, C = 3, S = 4, COUNT = N * C * S };
    uint16_t x[COUNT], dy[COUNT], y[COUNT], dx[COUNT];
    float xf[COUNT], yf[COUNT], dyf[COUNT], dxf[COUNT];
    for (int k = 0; k < COUNT; k++) {
        xf[k] = (float)(k % 5) - 1.5f, dyf[k] = (float)(k % 3) - 0.7f;
        x[k] = element_float_to_bfloat16(xf[k]), dy[k] = element_float_to_bfloat16(dyf[k]);
    }
    const sbn_shape bf16 = {N, C, S, SBN_NCS, SBN_DTYPE_BF16}, f16 = {N, C, S, SBN_NCS, SBN_DTYPE_F16};
    const sbn_shape f32 = {N, C, S, SBN_NCS, SBN_DTYPE_F32}, i64 = {N, C, S, SBN_NCS, SBN_DTYPE_I64};
    const sbn_shape f64 = {N, C, S, SBN_NSC, SBN_DTYPE_F64};

    /* Backward with another dtype than the forward. */
    sbn_bn *bn;
    assert_int_equal(sbn_bn_create(C, NULL, NULL, &bn), SBN_OK);
    assert_int_equal(sbn_bn_forward(bn, bf16, x, y, true), SBN_OK);
    expect_error(sbn_bn_backward(bn, f16, x, dy, dx), SBN_ERR_SHAPE, "F16", "backward F16 after forward BF16");
    assert_non_null(strstr(sbn_errmsg(), "BF16"));
    expect_error(sbn_bn_backward(bn, f32, xf, dyf, dxf), SBN_ERR_SHAPE, "F32", "backward F32 after forward BF16");
    assert_int_equal(sbn_bn_backward(bn, bf16, x, dy, dx), SBN_OK); /* the forward is still there */
    assert_int_equal(sbn_bn_forward(bn, f32, xf, yf, true), SBN_OK);
    expect_error(sbn_bn_backward(bn, bf16, x, dy, dx), SBN_ERR_SHAPE, "BF16", "backward BF16 after forward F32");

    /* A non-float activation dtype: the layer and every kernel. */
    expect_error(sbn_bn_forward(bn, i64, x, y, true), SBN_ERR_ARG, "I64", "forward I64");
    expect_error(sbn_bn_forward(bn, f64, x, y, false), SBN_ERR_ARG, "F64", "forward F64");
    expect_error(sbn_bn_backward(bn, i64, x, dy, dx), SBN_ERR_ARG, "I64", "backward I64");
    expect_error(sbn_shape_check(i64, NULL), SBN_ERR_ARG, "I64", "shape_check I64");
    sbn_shape unknown = bf16;
    unknown.dtype = (sbn_dtype)99;
    expect_error(sbn_shape_check(unknown, NULL), SBN_ERR_ARG, "99", "shape_check dtype 99");
    sbn_bn_destroy(bn);

    double mean[C] = {0.1, 0.2, 0.3}, m2[C], invstd[C] = {1.0, 2.0, 0.5}, s1[C], s2[C];
    const float weight[C] = {1, -2, 0.5f}, bias[C] = {0.1f, 0.2f, -0.3f};
    expect_error(sbn_kernel_channel_stats(mean, m2, i64, x), SBN_ERR_ARG, "I64", "channel_stats I64");
    expect_error(sbn_kernel_normalize(y, i64, x, mean, invstd, weight, bias), SBN_ERR_ARG, "I64", "normalize I64");
    expect_error(sbn_kernel_forward_train(y, mean, m2, invstd, i64, x, weight, bias, EPS), SBN_ERR_ARG, "I64",
                 "forward_train I64");
    expect_error(sbn_kernel_backward_reduce(s1, s2, i64, x, dy, mean), SBN_ERR_ARG, "I64", "backward_reduce I64");
    expect_error(sbn_kernel_backward_apply(dx, i64, x, dy, mean, invstd, weight, NULL, NULL), SBN_ERR_ARG, "I64",
                 "backward_apply I64");
    expect_error(sbn_kernel_backward_train(dx, s1, s2, i64, x, dy, mean, invstd, weight), SBN_ERR_ARG, "I64",
                 "backward_train I64");
    expect_error(sbn_kernel_normalize_relu(y, i64, x, mean, invstd, weight, bias), SBN_ERR_ARG, "I64",
                 "normalize_relu I64");

    /* The relu kernels need invstd (to recompute the forward's output). */
    expect_error(sbn_kernel_normalize_relu(y, bf16, x, mean, NULL, weight, bias), SBN_ERR_ARG, "invstd",
                 "normalize_relu invstd NULL");
    expect_error(sbn_kernel_forward_train_relu(y, mean, m2, NULL, bf16, x, weight, bias, EPS), SBN_ERR_ARG, "invstd",
                 "forward_train_relu invstd NULL");
    expect_error(sbn_kernel_backward_reduce_relu(s1, s2, bf16, x, dy, mean, NULL, weight, bias), SBN_ERR_ARG, "invstd",
                 "backward_reduce_relu invstd NULL");
    expect_error(sbn_kernel_backward_apply_relu(dx, bf16, x, dy, mean, NULL, weight, bias, NULL, NULL), SBN_ERR_ARG,
                 "invstd", "backward_apply_relu invstd NULL");
    expect_error(sbn_kernel_backward_train_relu(dx, s1, s2, bf16, x, dy, mean, NULL, weight, bias), SBN_ERR_ARG,
                 "invstd", "backward_train_relu invstd NULL");
    expect_error(sbn_kernel_backward_train_relu(NULL, s1, s2, f16, x, dy, mean, NULL, weight, bias), SBN_ERR_ARG,
                 "invstd", "backward_train_relu invstd NULL, no dx");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kernels_16bit), cmocka_unit_test(test_layer_16bit),
        cmocka_unit_test(test_f16_overflow),  cmocka_unit_test(test_nan_channel),
        cmocka_unit_test(test_relu_layer),    cmocka_unit_test(test_relu_kernels),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
