/* BN kernels: per-channel reductions and elementwise passes, both layouts.
 *
 * Numerics. Each channel's sums are taken about a shift K, the channel's
 * first value: s1 = sum(x - K), s2 = sum((x - K)^2), in double. Then
 * mean = K + s1/n and m2 = s2 - s1^2/n. Because K is one of the data, |K - mean|
 * is of the order of the spread, so the subtraction in m2 loses at most a
 * few bits even when mean^2 is 1e12 times the variance; and (x - K) of two
 * floats is exact in double, so values near 1e18 cannot overflow.
 *
 * Memory. Channels-first (NCS, s > 1): one channel's n*s values are handled
 * by one thread from start to end, so the second pass of a fused call reads
 * them from cache. Channels-last (NSC, and NCS with s == 1, which is the same
 * memory): rows of c values, split across threads by rows; per-thread partial
 * sums share the shift, so combining them is a plain addition in thread order.
 */
#include <syncbn/kernels.h>

#include <math.h>
#include <stdlib.h>

#include <omp.h>

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

/* ---------- channels-first: one channel at a time ---------- */

/* Channel c of an NCS tensor is n blocks of s contiguous values, block i at (i*C + c)*s. */
static const float *ncs_block(const float *x, sbn_shape shape, int64_t sample, int64_t c)
{
    return x + (sample * shape.c + c) * shape.s;
}

static void ncs_channel_stats(double *mean, double *m2, sbn_shape shape, const float *x, int64_t c)
{
    const int64_t count = shape.n * shape.s;
    if (count == 0) {
        *mean = 0.0;
        *m2 = 0.0;
        return;
    }
    const double shift = ncs_block(x, shape, 0, c)[0];
    double s1 = 0.0, s2 = 0.0;
    for (int64_t i = 0; i < shape.n; i++) {
        const float *block = ncs_block(x, shape, i, c);
#pragma omp simd reduction(+ : s1, s2)
        for (int64_t j = 0; j < shape.s; j++) {
            const double d = (double)block[j] - shift;
            s1 += d;
            s2 += d * d;
        }
    }
    *mean = shift + s1 / (double)count;
    *m2 = nonnegative(s2 - s1 * (s1 / (double)count));
}

/* y = (x - mean) * scale + offset over channel c. */
static void ncs_channel_affine(float *y, sbn_shape shape, const float *x, int64_t c, double mean, double scale,
                               double offset)
{
    for (int64_t i = 0; i < shape.n; i++) {
        const float *in = ncs_block(x, shape, i, c);
        float *out = y + (in - x);
#pragma omp simd
        for (int64_t j = 0; j < shape.s; j++)
            out[j] = (float)(((double)in[j] - mean) * scale + offset);
    }
}

static void ncs_channel_backward_reduce(double *sum_dy, double *sum_dy_xmu, sbn_shape shape, const float *x,
                                        const float *dy, int64_t c, double mean)
{
    double a = 0.0, b = 0.0;
    for (int64_t i = 0; i < shape.n; i++) {
        const float *xb = ncs_block(x, shape, i, c);
        const float *gb = dy + (xb - x);
#pragma omp simd reduction(+ : a, b)
        for (int64_t j = 0; j < shape.s; j++) {
            a += (double)gb[j];
            b += (double)gb[j] * ((double)xb[j] - mean);
        }
    }
    *sum_dy = a;
    *sum_dy_xmu = b;
}

/* dx = k_dy * dy + k_xmu * (x - mean) + k_const over channel c. */
static void ncs_channel_backward_apply(float *dx, sbn_shape shape, const float *x, const float *dy, int64_t c,
                                       double mean, double k_dy, double k_xmu, double k_const)
{
    for (int64_t i = 0; i < shape.n; i++) {
        const float *xb = ncs_block(x, shape, i, c);
        const int64_t offset = xb - x;
        const float *gb = dy + offset;
        float *out = dx + offset;
#pragma omp simd
        for (int64_t j = 0; j < shape.s; j++)
            out[j] = (float)(k_dy * (double)gb[j] + k_xmu * ((double)xb[j] - mean) + k_const);
    }
}

/* ---------- channels-last: rows of c values ---------- */

/* Rows [first, last) of thread `thread` out of `threads`, in order. */
static void thread_rows(int64_t rows, int thread, int threads, int64_t *first, int64_t *last)
{
    *first = rows * thread / threads;
    *last = rows * (thread + 1) / threads;
}

static sbn_status nsc_stats(double *mean, double *m2, sbn_shape shape, const float *x)
{
    const int64_t rows = shape.n * shape.s, channels = shape.c;
    if (rows == 0) {
        for (int64_t c = 0; c < channels; c++) mean[c] = m2[c] = 0.0;
        return SBN_OK;
    }
    const int threads = (int)(rows < omp_get_max_threads() ? rows : omp_get_max_threads());
    double *partial = calloc((size_t)threads * 2 * (size_t)channels, sizeof *partial);
    if (!partial && channels > 0)
        return sbn_fail(SBN_ERR_NOMEM, "no memory for %d x %lld channel partial sums", threads, (long long)channels);
    const float *shift = x; /* row 0 */
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        double *s1 = partial + (size_t)t * 2 * (size_t)channels, *s2 = s1 + channels;
        int64_t first, last;
        thread_rows(rows, t, threads, &first, &last);
        for (int64_t r = first; r < last; r++) {
            const float *row = x + r * channels;
#pragma omp simd
            for (int64_t c = 0; c < channels; c++) {
                const double d = (double)row[c] - (double)shift[c];
                s1[c] += d;
                s2[c] += d * d;
            }
        }
    }
    for (int64_t c = 0; c < channels; c++) {
        double s1 = 0.0, s2 = 0.0;
        for (int t = 0; t < threads; t++) {
            s1 += partial[(size_t)t * 2 * (size_t)channels + (size_t)c];
            s2 += partial[(size_t)t * 2 * (size_t)channels + (size_t)channels + (size_t)c];
        }
        mean[c] = (double)shift[c] + s1 / (double)rows;
        m2[c] = nonnegative(s2 - s1 * (s1 / (double)rows));
    }
    free(partial);
    return SBN_OK;
}

static void nsc_affine(float *y, sbn_shape shape, const float *x, const double *mean, const double *scale,
                       const double *offset)
{
    const int64_t rows = shape.n * shape.s, channels = shape.c;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *in = x + r * channels;
        float *out = y + r * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; c++)
            out[c] = (float)(((double)in[c] - mean[c]) * scale[c] + offset[c]);
    }
}

static sbn_status nsc_backward_reduce(double *sum_dy, double *sum_dy_xmu, sbn_shape shape, const float *x,
                                      const float *dy, const double *mean)
{
    const int64_t rows = shape.n * shape.s, channels = shape.c;
    const int threads = (int)(rows < 1 ? 1 : rows < omp_get_max_threads() ? rows : omp_get_max_threads());
    double *partial = calloc((size_t)threads * 2 * (size_t)channels, sizeof *partial);
    if (!partial && channels > 0)
        return sbn_fail(SBN_ERR_NOMEM, "no memory for %d x %lld channel partial sums", threads, (long long)channels);
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        double *a = partial + (size_t)t * 2 * (size_t)channels, *b = a + channels;
        int64_t first, last;
        thread_rows(rows, t, threads, &first, &last);
        for (int64_t r = first; r < last; r++) {
            const float *xr = x + r * channels, *gr = dy + r * channels;
#pragma omp simd
            for (int64_t c = 0; c < channels; c++) {
                a[c] += (double)gr[c];
                b[c] += (double)gr[c] * ((double)xr[c] - mean[c]);
            }
        }
    }
    for (int64_t c = 0; c < channels; c++) {
        double a = 0.0, b = 0.0;
        for (int t = 0; t < threads; t++) {
            a += partial[(size_t)t * 2 * (size_t)channels + (size_t)c];
            b += partial[(size_t)t * 2 * (size_t)channels + (size_t)channels + (size_t)c];
        }
        sum_dy[c] = a;
        sum_dy_xmu[c] = b;
    }
    free(partial);
    return SBN_OK;
}

static void nsc_backward_apply(float *dx, sbn_shape shape, const float *x, const float *dy, const double *mean,
                               const double *k_dy, const double *k_xmu, const double *k_const)
{
    const int64_t rows = shape.n * shape.s, channels = shape.c;
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * channels, *gr = dy + r * channels;
        float *out = dx + r * channels;
#pragma omp simd
        for (int64_t c = 0; c < channels; c++)
            out[c] = (float)(k_dy[c] * (double)gr[c] + k_xmu[c] * ((double)xr[c] - mean[c]) + k_const[c]);
    }
}

/* ---------- per-channel coefficients ---------- */

/* Three per-channel coefficient arrays in one allocation. */
static sbn_status coefficients_alloc(double **out, int64_t channels)
{
    *out = malloc((size_t)(channels > 0 ? channels : 1) * 3 * sizeof **out);
    if (!*out)
        return sbn_fail(SBN_ERR_NOMEM, "no memory for %lld channel coefficients", (long long)channels);
    return SBN_OK;
}

static void backward_coefficients(double *k_dy, double *k_xmu, double *k_const, int64_t channels,
                                  const double *invstd, const float *weight, const double *mean_dy,
                                  const double *mean_dy_xmu)
{
    for (int64_t c = 0; c < channels; c++) {
        const double g = weight_or_one(weight, c) * invstd[c];
        k_dy[c] = g;
        k_xmu[c] = mean_dy_xmu ? -g * invstd[c] * invstd[c] * mean_dy_xmu[c] : 0.0;
        k_const[c] = mean_dy ? -g * mean_dy[c] : 0.0;
    }
}

/* ---------- public kernels ---------- */

sbn_status sbn_kernel_channel_stats(double *mean, double *m2, sbn_shape shape, const float *x)
{
    sbn_status st = sbn_shape_check(shape, NULL);
    if (st == SBN_OK) st = check_pointers(mean, "mean", m2, "m2", x, "x");
    if (st != SBN_OK) return st;
    if (is_rows_of_channels(shape)) return nsc_stats(mean, m2, shape, x);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < shape.c; c++)
        ncs_channel_stats(&mean[c], &m2[c], shape, x, c);
    return SBN_OK;
}

sbn_status sbn_kernel_normalize(float *y, sbn_shape shape, const float *x, const double *mean,
                                const double *invstd, const float *weight, const float *bias)
{
    sbn_status st = sbn_shape_check(shape, NULL);
    if (st == SBN_OK) st = check_pointers(y, "y", x, "x", mean, "mean");
    if (st == SBN_OK) st = check_pointers(invstd, "invstd", x, "x", x, "x");
    if (st != SBN_OK) return st;
    if (!is_rows_of_channels(shape)) {
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t c = 0; c < shape.c; c++)
            ncs_channel_affine(y, shape, x, c, mean[c], invstd[c] * weight_or_one(weight, c), bias_or_zero(bias, c));
        return SBN_OK;
    }
    double *coefficients;
    if ((st = coefficients_alloc(&coefficients, shape.c)) != SBN_OK) return st;
    double *scale = coefficients, *offset = coefficients + shape.c;
    for (int64_t c = 0; c < shape.c; c++) {
        scale[c] = invstd[c] * weight_or_one(weight, c);
        offset[c] = bias_or_zero(bias, c);
    }
    nsc_affine(y, shape, x, mean, scale, offset);
    free(coefficients);
    return SBN_OK;
}

static double invstd_of(double m2, int64_t count, double eps) { return 1.0 / sqrt(m2 / (double)count + eps); }

sbn_status sbn_kernel_forward_train(float *y, double *mean, double *m2, double *invstd, sbn_shape shape,
                                    const float *x, const float *weight, const float *bias, double eps)
{
    int64_t elements;
    sbn_status st = sbn_shape_check(shape, &elements);
    if (st == SBN_OK) st = check_pointers(y, "y", x, "x", mean, "mean");
    if (st == SBN_OK) st = check_pointers(m2, "m2", invstd, "invstd", x, "x");
    if (st == SBN_OK) st = check_eps(eps);
    if (st != SBN_OK) return st;
    const int64_t count = shape.n * shape.s;
    if (count < 1 && shape.c > 0)
        return sbn_fail(SBN_ERR_BATCH, "training forward needs at least 1 value per channel, got n*s = 0");
    if (is_rows_of_channels(shape)) {
        if ((st = nsc_stats(mean, m2, shape, x)) != SBN_OK) return st;
        for (int64_t c = 0; c < shape.c; c++) invstd[c] = invstd_of(m2[c], count, eps);
        return sbn_kernel_normalize(y, shape, x, mean, invstd, weight, bias);
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < shape.c; c++) {
        ncs_channel_stats(&mean[c], &m2[c], shape, x, c);
        invstd[c] = invstd_of(m2[c], count, eps);
        ncs_channel_affine(y, shape, x, c, mean[c], invstd[c] * weight_or_one(weight, c), bias_or_zero(bias, c));
    }
    return SBN_OK;
}

sbn_status sbn_kernel_backward_reduce(double *sum_dy, double *sum_dy_xmu, sbn_shape shape, const float *x,
                                      const float *dy, const double *mean)
{
    sbn_status st = sbn_shape_check(shape, NULL);
    if (st == SBN_OK) st = check_pointers(sum_dy, "sum_dy", sum_dy_xmu, "sum_dy_xmu", x, "x");
    if (st == SBN_OK) st = check_pointers(dy, "dy", mean, "mean", x, "x");
    if (st != SBN_OK) return st;
    if (is_rows_of_channels(shape)) return nsc_backward_reduce(sum_dy, sum_dy_xmu, shape, x, dy, mean);
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < shape.c; c++)
        ncs_channel_backward_reduce(&sum_dy[c], &sum_dy_xmu[c], shape, x, dy, c, mean[c]);
    return SBN_OK;
}

sbn_status sbn_kernel_backward_apply(float *dx, sbn_shape shape, const float *x, const float *dy,
                                     const double *mean, const double *invstd, const float *weight,
                                     const double *mean_dy, const double *mean_dy_xmu)
{
    sbn_status st = sbn_shape_check(shape, NULL);
    if (st == SBN_OK) st = check_pointers(dx, "dx", x, "x", dy, "dy");
    if (st == SBN_OK) st = check_pointers(mean, "mean", invstd, "invstd", x, "x");
    if (st == SBN_OK && (mean_dy == NULL) != (mean_dy_xmu == NULL))
        st = sbn_fail(SBN_ERR_ARG, "mean_dy and mean_dy_xmu must be both NULL or both set");
    if (st != SBN_OK) return st;
    double *coefficients;
    if ((st = coefficients_alloc(&coefficients, shape.c)) != SBN_OK) return st;
    double *k_dy = coefficients, *k_xmu = k_dy + shape.c, *k_const = k_xmu + shape.c;
    backward_coefficients(k_dy, k_xmu, k_const, shape.c, invstd, weight, mean_dy, mean_dy_xmu);
    if (is_rows_of_channels(shape)) {
        nsc_backward_apply(dx, shape, x, dy, mean, k_dy, k_xmu, k_const);
    } else {
#pragma omp parallel for schedule(dynamic, 1)
        for (int64_t c = 0; c < shape.c; c++)
            ncs_channel_backward_apply(dx, shape, x, dy, c, mean[c], k_dy[c], k_xmu[c], k_const[c]);
    }
    free(coefficients);
    return SBN_OK;
}

sbn_status sbn_kernel_backward_train(float *dx, double *sum_dy, double *sum_dy_xmu, sbn_shape shape,
                                     const float *x, const float *dy, const double *mean,
                                     const double *invstd, const float *weight)
{
    sbn_status st = sbn_shape_check(shape, NULL);
    if (st == SBN_OK) st = check_pointers(sum_dy, "sum_dy", sum_dy_xmu, "sum_dy_xmu", x, "x");
    if (st == SBN_OK) st = check_pointers(dy, "dy", mean, "mean", invstd, "invstd");
    if (st != SBN_OK) return st;
    const int64_t count = shape.n * shape.s;
    if (count < 1 && shape.c > 0)
        return sbn_fail(SBN_ERR_BATCH, "training backward needs at least 1 value per channel, got n*s = 0");
    if (is_rows_of_channels(shape) || !dx) {
        if ((st = sbn_kernel_backward_reduce(sum_dy, sum_dy_xmu, shape, x, dy, mean)) != SBN_OK || !dx) return st;
        double *means;
        if ((st = coefficients_alloc(&means, shape.c)) != SBN_OK) return st;
        for (int64_t c = 0; c < shape.c; c++) {
            means[c] = sum_dy[c] / (double)count;
            means[shape.c + c] = sum_dy_xmu[c] / (double)count;
        }
        st = sbn_kernel_backward_apply(dx, shape, x, dy, mean, invstd, weight, means, means + shape.c);
        free(means);
        return st;
    }
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t c = 0; c < shape.c; c++) {
        ncs_channel_backward_reduce(&sum_dy[c], &sum_dy_xmu[c], shape, x, dy, c, mean[c]);
        const double g = weight_or_one(weight, c) * invstd[c];
        ncs_channel_backward_apply(dx, shape, x, dy, c, mean[c], g,
                                   -g * invstd[c] * invstd[c] * (sum_dy_xmu[c] / (double)count),
                                   -g * (sum_dy[c] / (double)count));
    }
    return SBN_OK;
}
