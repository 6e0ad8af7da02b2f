/* syncbn — the BN / SyncBN layer.
 *
 * A layer of C channels with PyTorch's semantics (nn.BatchNorm1d/2d/3d and
 * nn.SyncBatchNorm). Worked example (plain BN, (N,C,H,W) = (8,16,28,28)):
 *
 *     sbn_bn *bn;
 *     sbn_bn_options opt = sbn_bn_defaults();
 *     if (sbn_bn_create(16, &opt, NULL, &bn) != SBN_OK) { puts(sbn_errmsg()); ... }
 *     sbn_shape shape = {.n = 8, .c = 16, .s = 28 * 28, .layout = SBN_NCS};
 *     sbn_bn_forward(bn, shape, x, y, true);          // training: batch statistics
 *     sbn_bn_zero_grad(bn);
 *     sbn_bn_backward(bn, shape, x, dy, dx);           // dx, and grads added into the layer
 *     sbn_bn_destroy(bn);
 *
 * Training forward, per channel c over the count = n*s values of the batch
 * (the GLOBAL batch of all ranks for SyncBN):
 *     mean = sum(x)/count,   var = sum((x-mean)^2)/count        (biased)
 *     y    = (x - mean) / sqrt(var + eps) * weight + bias
 *     if track_running_stats:
 *         num_batches_tracked += 1
 *         f = cumulative ? 1/num_batches_tracked : momentum
 *         running_mean = (1-f)*running_mean + f*mean
 *         running_var  = (1-f)*running_var  + f*var*count/(count-1)   (unbiased)
 * Eval forward uses running_mean/running_var, or, when track_running_stats
 * is false, the batch statistics of this rank's batch (no communication,
 * as PyTorch). count < 2 whenever batch statistics are used is SBN_ERR_BATCH.
 *
 * Backward differentiates the last successful forward:
 *     through batch statistics:  xhat = (x-mean)*invstd,
 *         dx = weight*invstd*(dy - mean(dy) - xhat*mean(dy*xhat))   (means over the global batch)
 *     through running statistics: dx = dy*weight/sqrt(running_var+eps)
 * and ADDS the local sums grad_weight += sum(dy*xhat), grad_bias += sum(dy)
 * (local to this rank even for SyncBN: data-parallel training averages them
 * with the other parameter gradients).
 *
 * Aliasing: y may be x, dx may be dy. dx may be NULL (only parameter grads).
 *
 * Element types: x, y, dy, dx may be bfloat16 or float16 (shape.dtype) with
 * the float32 parameters and statistics above, as PyTorch's mixed-type
 * BatchNorm: values are widened exactly, statistics are the float64 ones,
 * and each output is within 1 ulp of its float64 value.
 *
 * fuse_relu: the layer is BN followed by ReLU (relu(v) = v <= 0 ? 0 : v), in
 * the same passes: y is bit for bit what a separate ReLU would give, and
 * backward takes dy as the gradient of that output (zero where it was <= 0).
 * The output is recomputed in backward from x and the saved statistics, so
 * weight and bias must not change between a forward and its backward (they
 * do not in a training step: the optimizer runs after backward).
 *
 * SyncBN (comm != NULL): training forward and training backward are
 * collective over comm: every rank must call them, in the same order, for
 * the same layers (layers created in the same order on every rank). Each
 * makes exactly one collective of O(C) bytes. Ranks may hold different batch
 * sizes, including 0; the global count must be >= 2. Running statistics come
 * out bitwise identical on every rank. Creation and eval forward are local.
 * Ranks that disagree (channels, forward vs backward, layer order, options,
 * fuse_relu included) all get SBN_ERR_MISMATCH; peers that never arrive give
 * SBN_ERR_COMM after the communicator's timeout. Ranks may hold activations
 * of different element types: the collective carries float64 statistics, so
 * the global batch is every rank's values, widened.
 *
 * Errors leave the layer exactly as it was (running statistics,
 * num_batches_tracked, gradients, the saved forward): SBN_ERR_ARG (NULL,
 * bad option, backward before any forward), SBN_ERR_SHAPE (bad sizes, a
 * channel count other than the layer's, backward with another shape than the
 * forward's), SBN_ERR_BATCH, SBN_ERR_NOMEM, SBN_ERR_COMM, SBN_ERR_MISMATCH.
 *
 * Non-finite inputs: a NaN/Inf in channel c of x makes channel c of y NaN in
 * training (its batch mean and variance are NaN) and, when tracked, turns
 * running_mean[c]/running_var[c] NaN; other channels are unaffected. In eval
 * only the affected elements are non-finite. Nothing crashes.
 */
#ifndef SYNCBN_BN_H
#define SYNCBN_BN_H

#include <stdbool.h>
#include <stdint.h>
#include <syncbn/comm.h>
#include <syncbn/shape.h>
#include <syncbn/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbn_bn_options {
    double eps;               /* > 0 usually; >= 0 and finite */
    double momentum;          /* in [0, 1]; ignored when cumulative */
    bool cumulative;          /* PyTorch's momentum=None: cumulative moving average */
    bool affine;              /* learnable weight and bias */
    bool track_running_stats;
    bool fuse_relu;           /* y = relu(bn(x)) in the same passes (see below) */
} sbn_bn_options;

/* eps 1e-5, momentum 0.1, cumulative false, affine true, track true,
 * fuse_relu false. */
SBN_API sbn_bn_options sbn_bn_defaults(void);

typedef struct sbn_bn sbn_bn;

/* A new layer: weight 1, bias 0, running mean 0, running var 1, grads 0,
 * num_batches_tracked 0. opt NULL means the defaults. comm NULL gives plain
 * BN; otherwise SyncBN over comm, which the layer borrows (keep it alive
 * until the layer is destroyed). Local. */
SBN_API sbn_status sbn_bn_create(int64_t channels, const sbn_bn_options *opt, sbn_comm *comm, sbn_bn **out);
SBN_API void sbn_bn_destroy(sbn_bn *bn); /* accepts NULL */

/* Arrays of `channels` floats owned by the layer; read and write them freely
 * between calls. NULL when the layer has none (not affine / not tracking). */
SBN_API float *sbn_bn_weight(sbn_bn *bn);
SBN_API float *sbn_bn_bias(sbn_bn *bn);
SBN_API float *sbn_bn_running_mean(sbn_bn *bn);
SBN_API float *sbn_bn_running_var(sbn_bn *bn);
SBN_API float *sbn_bn_grad_weight(sbn_bn *bn);
SBN_API float *sbn_bn_grad_bias(sbn_bn *bn);
SBN_API int64_t sbn_bn_channels(const sbn_bn *bn);
SBN_API sbn_bn_options sbn_bn_get_options(const sbn_bn *bn);
SBN_API int64_t sbn_bn_num_batches_tracked(const sbn_bn *bn);
SBN_API void sbn_bn_set_num_batches_tracked(sbn_bn *bn, int64_t value); /* a negative value is stored as 0 */
SBN_API void sbn_bn_zero_grad(sbn_bn *bn);

/* x, y, dy, dx hold shape.dtype elements (float32, bfloat16 or float16:
 * shape.h); backward needs the forward's dtype. */
SBN_API sbn_status sbn_bn_forward(sbn_bn *bn, sbn_shape shape, const void *x, void *y, bool training);
SBN_API sbn_status sbn_bn_backward(sbn_bn *bn, sbn_shape shape, const void *x, const void *dy, void *dx);

#ifdef __cplusplus
}
#endif
#endif
