/* ReLU and MaxPool2d. */
#include <syncbn/nn.h>

#include <math.h>

#include "core/error.h"

void sbn_relu_forward(float *y, const float *x, int64_t count)
{
#pragma omp parallel for simd schedule(static) if (count > 65536)
    for (int64_t i = 0; i < count; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i]; /* NaN stays NaN, as torch.relu */
}

/* The gradient passes where the output is positive (PyTorch: at 0 it is 0). */
void sbn_relu_backward(float *dx, const float *dy, const float *y, int64_t count)
{
#pragma omp parallel for simd schedule(static) if (count > 65536)
    for (int64_t i = 0; i < count; i++) dx[i] = y[i] <= 0.0f ? 0.0f : dy[i]; /* threshold_backward's rule */
}

/* PyTorch's rule: a value replaces the running maximum if it is greater or
 * NaN, so the first maximum wins and NaN propagates. */
static void take_if_greater(float value, int64_t at, float *best, int64_t *best_at)
{
    if (value > *best || isnan(value)) *best = value, *best_at = at;
}

/* The common case, kernel 2 stride 2: the same rule as take_if_greater, as
 * selects (no branch on the data), so the loop over a row vectorizes
 * (measured: the branching loop took 11% of a convnet training step). */
static void maxpool_2x2_plane(float *y, int32_t *argmax, const float *in, int64_t h, int64_t w)
{
    const int64_t ho = h / 2, wo = w / 2;
    for (int64_t i = 0; i < ho; i++) {
        const float *top = in + 2 * i * w, *bottom = top + w;
        float *out = y + i * wo;
        int32_t *index = argmax + i * wo;
        const int32_t row_at = (int32_t)(2 * i * w), below = (int32_t)w;
#pragma omp simd
        for (int64_t j = 0; j < wo; j++) {
            const float candidates[3] = {top[2 * j + 1], bottom[2 * j], bottom[2 * j + 1]};
            const int32_t offsets[3] = {1, below, below + 1};
            float best = top[2 * j];
            int32_t best_offset = 0;
            for (int k = 0; k < 3; k++) {
                const int greater = (candidates[k] > best) | (candidates[k] != candidates[k]); /* no short circuit: no branch */
                best = greater ? candidates[k] : best;
                best_offset = greater ? offsets[k] : best_offset;
            }
            out[j] = best;
            index[j] = row_at + (int32_t)(2 * j) + best_offset;
        }
    }
}

static void maxpool_plane(float *y, int32_t *argmax, const float *in, int64_t h, int64_t w, int64_t kernel,
                          int64_t stride)
{
    const int64_t ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1;
    for (int64_t i = 0; i < ho; i++)
        for (int64_t j = 0; j < wo; j++) {
            int64_t best_at = i * stride * w + j * stride;
            float best = in[best_at];
            for (int64_t a = 0; a < kernel; a++)
                for (int64_t b = 0; b < kernel; b++) {
                    const int64_t at = (i * stride + a) * w + j * stride + b;
                    if (at != best_at) take_if_greater(in[at], at, &best, &best_at);
                }
            y[i * wo + j] = best;
            argmax[i * wo + j] = (int32_t)best_at;
        }
}

sbn_status sbn_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int64_t n, int64_t c, int64_t h,
                                 int64_t w, int64_t kernel, int64_t stride)
{
    if (kernel < 1 || stride < 1 || h < kernel || w < kernel || n < 0 || c < 1 || h * w > INT32_MAX)
        return sbn_fail(SBN_ERR_SHAPE, "bad maxpool2d sizes (%lldx%lld, kernel %lld, stride %lld)", (long long)h,
                        (long long)w, (long long)kernel, (long long)stride);
    const int64_t ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1;
#pragma omp parallel for schedule(static)
    for (int64_t plane = 0; plane < n * c; plane++) {
        float *out = y + plane * ho * wo;
        int32_t *index = argmax + plane * ho * wo;
        if (kernel == 2 && stride == 2) maxpool_2x2_plane(out, index, x + plane * h * w, h, w);
        else maxpool_plane(out, index, x + plane * h * w, h, w, kernel, stride);
    }
    return SBN_OK;
}

void sbn_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int64_t n, int64_t c, int64_t h,
                            int64_t w, int64_t kernel, int64_t stride)
{
    const int64_t ho = (h - kernel) / stride + 1, wo = (w - kernel) / stride + 1;
#pragma omp parallel for schedule(static)
    for (int64_t plane = 0; plane < n * c; plane++) {
        float *out = dx + plane * h * w;
        for (int64_t k = 0; k < h * w; k++) out[k] = 0.0f;
        for (int64_t k = 0; k < ho * wo; k++) out[argmax[plane * ho * wo + k]] += dy[plane * ho * wo + k];
    }
}
