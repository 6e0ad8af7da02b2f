/* ReLU and MaxPool2d. */
#include <syncbn/nn.h>

#include <math.h>

#include "core/error.h"

void sbn_relu_forward(float *y, const float *x, int64_t count)
{
#pragma omp parallel for simd schedule(static) if (count > 65536)
    for (int64_t i = 0; i < count; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

/* The gradient passes where the output is positive (PyTorch: at 0 it is 0). */
void sbn_relu_backward(float *dx, const float *dy, const float *y, int64_t count)
{
#pragma omp parallel for simd schedule(static) if (count > 65536)
    for (int64_t i = 0; i < count; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
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
        const float *in = x + plane * h * w;
        for (int64_t i = 0; i < ho; i++)
            for (int64_t j = 0; j < wo; j++) {
                /* First maximum wins, NaN propagates, as PyTorch. */
                int64_t best = i * stride * w + j * stride;
                for (int64_t a = 0; a < kernel; a++)
                    for (int64_t b = 0; b < kernel; b++) {
                        const int64_t at = (i * stride + a) * w + j * stride + b;
                        if (in[at] > in[best] || isnan(in[at])) best = isnan(in[best]) ? best : at;
                    }
                y[(plane * ho + i) * wo + j] = in[best];
                argmax[(plane * ho + i) * wo + j] = (int32_t)best;
            }
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
