/* Linear: y = x W^T + b, one sgemm each way. */
#include <syncbn/nn.h>

#include <cblas.h>

#include "core/error.h"

sbn_status sbn_linear_forward(float *y, const float *x, const float *weight, const float *bias, int64_t n,
                              int64_t in, int64_t out)
{
    if (n < 0 || in < 1 || out < 1) return sbn_fail(SBN_ERR_SHAPE, "bad linear sizes (n=%lld, in=%lld, out=%lld)",
                                                    (long long)n, (long long)in, (long long)out);
    if (!y || !x || !weight) return sbn_fail(SBN_ERR_ARG, "linear forward: a buffer is NULL");
    for (int64_t i = 0; i < n; i++)
        for (int64_t o = 0; o < out; o++) y[i * out + o] = bias ? bias[o] : 0.0f;
    if (n > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)n, (int)out, (int)in, 1.0f, x, (int)in, weight,
                    (int)in, 1.0f, y, (int)out);
    return SBN_OK;
}

sbn_status sbn_linear_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                               const float *weight, int64_t n, int64_t in, int64_t out)
{
    if (n < 0 || in < 1 || out < 1) return sbn_fail(SBN_ERR_SHAPE, "bad linear sizes (n=%lld, in=%lld, out=%lld)",
                                                    (long long)n, (long long)in, (long long)out);
    if (!dweight || !dy || !x || !weight) return sbn_fail(SBN_ERR_ARG, "linear backward: a buffer is NULL");
    if (n == 0) return SBN_OK;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)out, (int)in, (int)n, 1.0f, dy, (int)out, x, (int)in,
                1.0f, dweight, (int)in);
    if (dbias)
        for (int64_t o = 0; o < out; o++) {
            double sum = 0.0;
            for (int64_t i = 0; i < n; i++) sum += dy[i * out + o];
            dbias[o] += (float)sum;
        }
    if (dx)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)in, (int)out, 1.0f, dy, (int)out, weight,
                    (int)in, 0.0f, dx, (int)in);
    return SBN_OK;
}
