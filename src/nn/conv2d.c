/* Conv2d as im2col + sgemm.
 *
 * cols is (cin*k*k) x (n*ho*wo): column (sample, output pixel), row
 * (input channel, kernel row, kernel column). Sample s owns the column block
 * [s*pixels, (s+1)*pixels), so with a leading dimension of n*pixels
 *   forward:  y_s (cout x pixels)   = W (cout x rows) . cols_s         -> NCHW directly
 *   backward: dW (cout x rows)     += dy_s . cols_s^T
 *             dcols_s (rows x pixels) = W^T . dy_s,  dx = col2im(dcols)
 * Samples run in parallel over OpenMP threads, each calling a single-threaded
 * sgemm (the trainer sets OpenBLAS to 1 thread): small per-image GEMMs gain
 * nothing from BLAS threads, and two thread pools on the same cores only fight.
 */
#include <syncbn/nn.h>

#include <cblas.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"

int64_t sbn_conv2d_out_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding)
{
    if (stride < 1 || kernel < 1 || size + 2 * padding < kernel) return 0;
    return (size + 2 * padding - kernel) / stride + 1;
}

static int64_t out_pixels(sbn_conv2d_dims d)
{
    return sbn_conv2d_out_size(d.height, d.kernel, d.stride, d.padding) *
           sbn_conv2d_out_size(d.width, d.kernel, d.stride, d.padding);
}

static int64_t cols_rows(sbn_conv2d_dims d) { return d.in_channels * d.kernel * d.kernel; }

int64_t sbn_conv2d_cols_size(sbn_conv2d_dims d) { return cols_rows(d) * d.n * out_pixels(d); }

static sbn_status check_dims(sbn_conv2d_dims d)
{
    if (d.n < 0 || d.in_channels < 1 || d.out_channels < 1 || d.kernel < 1 || d.stride < 1 || d.padding < 0 ||
        out_pixels(d) < 1)
        return sbn_fail(SBN_ERR_SHAPE,
                        "bad conv2d sizes (n=%lld, cin=%lld, cout=%lld, %lldx%lld, kernel %lld, stride %lld, "
                        "padding %lld)",
                        (long long)d.n, (long long)d.in_channels, (long long)d.out_channels, (long long)d.height,
                        (long long)d.width, (long long)d.kernel, (long long)d.stride, (long long)d.padding);
    return SBN_OK;
}

/* Output columns [*first, *last) of a cols row whose input column
 * j = oj*stride - padding + kj falls inside [0, width). */
static void inside_columns(int64_t kj, int64_t width, int64_t wo, int64_t stride, int64_t padding, int64_t *first,
                           int64_t *last)
{
    int64_t lo = 0, hi = wo;
    while (lo < wo && lo * stride - padding + kj < 0) lo++;
    while (hi > lo && (hi - 1) * stride - padding + kj >= width) hi--;
    *first = lo, *last = hi;
}

/* For each sample (in parallel: samples touch disjoint x planes), each cols
 * row and output row: gather x into cols (padding as 0), or scatter-add cols
 * into dx. Only the columns inside the image are touched per row. */
static void im2col_walk(float *cols, float *dx, const float *x, sbn_conv2d_dims d)
{
    const int64_t ho = sbn_conv2d_out_size(d.height, d.kernel, d.stride, d.padding);
    const int64_t wo = sbn_conv2d_out_size(d.width, d.kernel, d.stride, d.padding);
    const int64_t columns = d.n * ho * wo, rows = cols_rows(d);
#pragma omp parallel for schedule(static)
    for (int64_t sample = 0; sample < d.n; sample++)
        for (int64_t r = 0; r < rows; r++) {
            const int64_t c = r / (d.kernel * d.kernel), ki = (r / d.kernel) % d.kernel, kj = r % d.kernel;
            const int64_t plane = (sample * d.in_channels + c) * d.height * d.width;
            int64_t first, last;
            inside_columns(kj, d.width, wo, d.stride, d.padding, &first, &last);
            for (int64_t oi = 0; oi < ho; oi++) {
                const int64_t i = oi * d.stride - d.padding + ki;
                float *col = cols + r * columns + (sample * ho + oi) * wo;
                const int row_inside = i >= 0 && i < d.height;
                const int64_t base = plane + i * d.width - d.padding + kj; /* input index of oj = 0 */
                if (x) {
                    const int64_t lo = row_inside ? first : wo, hi = row_inside ? last : wo; /* else all padding */
                    for (int64_t oj = 0; oj < lo; oj++) col[oj] = 0.0f;
                    if (d.stride == 1) /* contiguous: a copy the compiler vectorizes (the gather did not) */
                        for (int64_t oj = lo; oj < hi; oj++) col[oj] = x[base + oj];
                    else
                        for (int64_t oj = lo; oj < hi; oj++) col[oj] = x[base + oj * d.stride];
                    for (int64_t oj = hi > lo ? hi : lo; oj < wo; oj++) col[oj] = 0.0f;
                } else if (row_inside) {
                    if (d.stride == 1)
                        for (int64_t oj = first; oj < last; oj++) dx[base + oj] += col[oj];
                    else
                        for (int64_t oj = first; oj < last; oj++) dx[base + oj * d.stride] += col[oj];
                }
            }
        }
}

sbn_status sbn_conv2d_forward(float *y, float *cols, const float *x, const float *weight, const float *bias,
                              sbn_conv2d_dims d)
{
    sbn_status st = check_dims(d);
    if (st != SBN_OK) return st;
    if (!y || !cols || !x || !weight) return sbn_fail(SBN_ERR_ARG, "conv2d forward: a buffer is NULL");
    const int64_t pixels = out_pixels(d), columns = d.n * pixels, rows = cols_rows(d);
    im2col_walk(cols, NULL, x, d);
#pragma omp parallel for schedule(static)
    for (int64_t sample = 0; sample < d.n; sample++) {
        float *out = y + sample * d.out_channels * pixels;
        for (int64_t c = 0; c < d.out_channels; c++)
            for (int64_t p = 0; p < pixels; p++) out[c * pixels + p] = bias ? bias[c] : 0.0f;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d.out_channels, (int)pixels, (int)rows, 1.0f,
                    weight, (int)rows, cols + sample * pixels, (int)columns, 1.0f, out, (int)pixels);
    }
    return SBN_OK;
}

sbn_status sbn_conv2d_backward(float *dx, float *dweight, float *dbias, float *scratch, const float *dy,
                               const float *cols, const float *weight, sbn_conv2d_dims d)
{
    sbn_status st = check_dims(d);
    if (st != SBN_OK) return st;
    if (!dweight || !dy || !cols || !weight || (dx && !scratch))
        return sbn_fail(SBN_ERR_ARG, "conv2d backward: a buffer is NULL");
    const int64_t pixels = out_pixels(d), columns = d.n * pixels, rows = cols_rows(d), weights = d.out_channels * rows;
    /* dW and db: per-thread partial sums, added in thread order (deterministic for a thread count). */
    const int threads = omp_get_max_threads() < d.n ? omp_get_max_threads() : (int)(d.n > 0 ? d.n : 1);
    float *partial = calloc((size_t)threads * (size_t)(weights + d.out_channels), sizeof *partial);
    if (!partial) return sbn_fail(SBN_ERR_NOMEM, "conv2d backward: no memory for %d gradient partials", threads);
#pragma omp parallel num_threads(threads)
    {
        const int t = omp_get_thread_num();
        float *my_dweight = partial + (size_t)t * (size_t)(weights + d.out_channels), *my_dbias = my_dweight + weights;
#pragma omp for schedule(static)
        for (int64_t sample = 0; sample < d.n; sample++) {
            const float *g = dy + sample * d.out_channels * pixels;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d.out_channels, (int)rows, (int)pixels, 1.0f,
                        g, (int)pixels, cols + sample * pixels, (int)columns, 1.0f, my_dweight, (int)rows);
            for (int64_t c = 0; c < d.out_channels; c++) {
                double sum = 0.0;
                for (int64_t p = 0; p < pixels; p++) sum += g[c * pixels + p];
                my_dbias[c] += (float)sum;
            }
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)rows, (int)pixels, (int)d.out_channels, 1.0f,
                            weight, (int)rows, g, (int)pixels, 0.0f, scratch + sample * pixels, (int)columns);
        }
    }
    for (int t = 0; t < threads; t++) {
        const float *my_dweight = partial + (size_t)t * (size_t)(weights + d.out_channels);
        for (int64_t i = 0; i < weights; i++) dweight[i] += my_dweight[i];
        if (dbias)
            for (int64_t c = 0; c < d.out_channels; c++) dbias[c] += my_dweight[weights + c];
    }
    free(partial);
    if (dx) {
        memset(dx, 0, (size_t)(d.n * d.in_channels * d.height * d.width) * sizeof *dx);
        im2col_walk(scratch, dx, NULL, d);
    }
    return SBN_OK;
}
