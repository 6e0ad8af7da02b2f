/* syncbn — stateless BN kernels.
 *
 * The arithmetic of Batch Normalization on caller-owned buffers, for both
 * layouts (see shape.h), parallel over OpenMP threads. The BN layer (bn.h)
 * is built from these; other frameworks can call them directly.
 *
 * Conventions
 *   - Outputs first, then inputs, then options; sizes and the element type
 *     come from `shape`.
 *   - Per-channel arrays hold shape.c values. Statistics are double: every
 *     per-channel sum is accumulated in double about a shift taken from the
 *     channel's own data, and x - mean is formed against the double mean
 *     split into two floats, so offset inputs (mean 1e4, spread 1e-2),
 *     constant channels (y == bias exactly) and values near 1e18 come out
 *     right.
 *   - "count" below is n*s, the number of values of one channel.
 *   - weight == NULL means 1 and bias == NULL means 0 (affine = false).
 *   - Outputs are overwritten, never accumulated into.
 *   - y may alias x, dx may alias dy (in place). No other aliasing.
 *   - Non-finite inputs never crash: a NaN or Inf in a channel makes that
 *     channel's mean/m2 and outputs NaN (or Inf), other channels unaffected.
 *   - Results do not depend on the thread count beyond rounding.
 * Errors: SBN_ERR_ARG (NULL pointer, unknown layout or dtype, eps < 0 or NaN),
 *         SBN_ERR_SHAPE (bad sizes), SBN_ERR_NOMEM (per-channel scratch and
 *         per-thread partial sums, O(threads x C)). After an error the outputs
 *         are unspecified; a _relu training backward with dx == dy may have
 *         replaced dy by its masked values when the error came after its
 *         first pass (only SBN_ERR_NOMEM can).
 */
#ifndef SYNCBN_KERNELS_H
#define SYNCBN_KERNELS_H

#include <stdint.h>
#include <syncbn/shape.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Activation tensors (x, y, dy, dx) hold shape.dtype elements (shape.h):
 * float32, or bfloat16/float16 bits. For the 16-bit types every value is
 * widened exactly, the sums are taken as for float32, and each output is
 * within 1 ulp of the float64 result in the type (a float result rounded to
 * the type; see README, "bfloat16 and float16 activations"); float16 outputs
 * of 65520 and beyond become +-inf, as a conversion from float does. */

/* mean[c] = sum(x)/count and m2[c] = sum((x - mean[c])^2) over channel c.
 * An empty channel (count 0) gives mean 0, m2 0. */
SBN_API sbn_status sbn_kernel_channel_stats(double *mean, double *m2, sbn_shape shape, const void *x);

/* y = (x - mean[c]) * invstd[c] * weight[c] + bias[c]. */
SBN_API sbn_status sbn_kernel_normalize(void *y, sbn_shape shape, const void *x, const double *mean,
                                        const double *invstd, const float *weight, const float *bias);

/* Training forward in one call: channel statistics, invstd[c] = 1/sqrt(m2[c]/count + eps),
 * then normalize. Needs count >= 1. mean, m2, invstd are outputs. */
SBN_API sbn_status sbn_kernel_forward_train(void *y, double *mean, double *m2, double *invstd, sbn_shape shape,
                                            const void *x, const float *weight, const float *bias, double eps);

/* sum_dy[c] = sum(dy) and sum_dy_xmu[c] = sum(dy * (x - mean[c])) over channel c.
 * (grad_bias = sum_dy, grad_weight = invstd * sum_dy_xmu.) */
SBN_API sbn_status sbn_kernel_backward_reduce(double *sum_dy, double *sum_dy_xmu, sbn_shape shape, const void *x,
                                              const void *dy, const double *mean);

/* dx = weight*invstd * (dy - mean_dy[c] - (x - mean[c]) * invstd^2 * mean_dy_xmu[c]),
 * the gradient through batch statistics, where mean_dy and mean_dy_xmu are
 * sum_dy/count and sum_dy_xmu/count (over the global batch for SyncBN).
 * mean_dy == mean_dy_xmu == NULL gives dx = dy * weight * invstd, the gradient
 * through fixed (running) statistics. */
SBN_API sbn_status sbn_kernel_backward_apply(void *dx, sbn_shape shape, const void *x, const void *dy,
                                             const double *mean, const double *invstd, const float *weight,
                                             const double *mean_dy, const double *mean_dy_xmu);

/* Training backward in one call: backward_reduce, then (if dx != NULL)
 * backward_apply with mean_dy = sum_dy/count (a channel at a time, its data
 * still in cache, where the planes are long). */
SBN_API sbn_status sbn_kernel_backward_train(void *dx, double *sum_dy, double *sum_dy_xmu, sbn_shape shape,
                                             const void *x, const void *dy, const double *mean,
                                             const double *invstd, const float *weight);

/* BN followed by ReLU in the same passes (oneDNN's fuse_norm_relu).
 * Forward: y = relu(normalize(x)), relu(v) = v <= 0 ? +0 : v (NaN stays NaN),
 * bit for bit what normalize then a separate ReLU give.
 * Backward: dy counts as 0 wherever the forward's output was <= 0 (PyTorch's
 * ReLU rule, NaN passes); the output is recomputed from x with the forward's
 * mean, invstd, weight and bias (the same bits), so nothing extra is stored.
 * Pass the same statistics and parameters as the forward used. */
SBN_API sbn_status sbn_kernel_normalize_relu(void *y, sbn_shape shape, const void *x, const double *mean,
                                             const double *invstd, const float *weight, const float *bias);
SBN_API sbn_status sbn_kernel_forward_train_relu(void *y, double *mean, double *m2, double *invstd,
                                                 sbn_shape shape, const void *x, const float *weight,
                                                 const float *bias, double eps);
SBN_API sbn_status sbn_kernel_backward_reduce_relu(double *sum_dy, double *sum_dy_xmu, sbn_shape shape,
                                                   const void *x, const void *dy, const double *mean,
                                                   const double *invstd, const float *weight, const float *bias);
SBN_API sbn_status sbn_kernel_backward_apply_relu(void *dx, sbn_shape shape, const void *x, const void *dy,
                                                  const double *mean, const double *invstd, const float *weight,
                                                  const float *bias, const double *mean_dy,
                                                  const double *mean_dy_xmu);
SBN_API sbn_status sbn_kernel_backward_train_relu(void *dx, double *sum_dy, double *sum_dy_xmu, sbn_shape shape,
                                                  const void *x, const void *dy, const double *mean,
                                                  const double *invstd, const float *weight, const float *bias);

#ifdef __cplusplus
}
#endif
#endif
