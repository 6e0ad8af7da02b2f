/* syncbn — the small CNN stack around BN: layer kernels, a model, SGD.
 *
 * Layer kernels follow llm.c's shape: outputs first, then what is saved for
 * backward, then inputs and weights, then sizes. Activations are NCHW
 * float32. Backward functions ADD into parameter gradients (dweight +=) and
 * OVERWRITE input gradients (dx =); dx may be NULL when not needed.
 *
 *   Conv2d   x (n, cin, h, w), weight (cout, cin, k, k), bias (cout) -> y (n, cout, ho, wo),
 *            ho = (h + 2*padding - k)/stride + 1; im2col + OpenBLAS sgemm over the whole batch.
 *   ReLU, MaxPool2d (kernel k, stride s, no padding), Linear y = x W^T + b,
 *   softmax cross-entropy (mean over the batch, log-sum-exp stabilized),
 *   SGD with momentum and weight decay exactly as torch.optim.SGD:
 *       g = grad + weight_decay * p;  buf = momentum * buf + g  (buf = g on the first step);  p -= lr * buf
 */
#ifndef SYNCBN_NN_H
#define SYNCBN_NN_H

#include <stdbool.h>
#include <stdint.h>
#include <syncbn/bn.h>
#include <syncbn/comm.h>
#include <syncbn/status.h>
#include <syncbn/tensor_file.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---------- layer kernels ---------- */

typedef struct sbn_conv2d_dims {
    int64_t n, in_channels, out_channels, height, width, kernel, stride, padding;
} sbn_conv2d_dims;

/* Output height/width; < 1 when the kernel does not fit. */
SBN_API int64_t sbn_conv2d_out_size(int64_t size, int64_t kernel, int64_t stride, int64_t padding);
/* Floats of the im2col buffer: cin*k*k * n*ho*wo. */
SBN_API int64_t sbn_conv2d_cols_size(sbn_conv2d_dims d);

/* cols: caller's buffer of sbn_conv2d_cols_size floats, written here and read by backward. */
SBN_API sbn_status sbn_conv2d_forward(float *y, float *cols, const float *x, const float *weight, const float *bias,
                              sbn_conv2d_dims d);
/* scratch: sbn_conv2d_cols_size floats (only when dx != NULL). */
SBN_API sbn_status sbn_conv2d_backward(float *dx, float *dweight, float *dbias, float *scratch, const float *dy,
                               const float *cols, const float *weight, sbn_conv2d_dims d);

SBN_API void sbn_relu_forward(float *y, const float *x, int64_t count);              /* y may alias x */
SBN_API void sbn_relu_backward(float *dx, const float *dy, const float *y, int64_t count); /* dx may alias dy */

/* argmax: n*c*ho*wo indices into each (h, w) plane, saved for backward. */
SBN_API sbn_status sbn_maxpool2d_forward(float *y, int32_t *argmax, const float *x, int64_t n, int64_t c, int64_t h,
                                 int64_t w, int64_t kernel, int64_t stride);
SBN_API void sbn_maxpool2d_backward(float *dx, const float *dy, const int32_t *argmax, int64_t n, int64_t c, int64_t h,
                            int64_t w, int64_t kernel, int64_t stride);

/* x (n, in), weight (out, in), bias (out) -> y (n, out). */
SBN_API sbn_status sbn_linear_forward(float *y, const float *x, const float *weight, const float *bias, int64_t n,
                              int64_t in, int64_t out);
SBN_API sbn_status sbn_linear_backward(float *dx, float *dweight, float *dbias, const float *dy, const float *x,
                               const float *weight, int64_t n, int64_t in, int64_t out);

/* Mean softmax cross-entropy of logits (n, classes) against labels; writes
 * dlogits = (softmax - onehot)/n, *loss (mean) and *correct (argmax hits).
 * SBN_ERR_ARG for a label >= classes. */
SBN_API sbn_status sbn_cross_entropy(float *dlogits, double *loss, int64_t *correct, const float *logits,
                             const uint8_t *labels, int64_t n, int64_t classes);

typedef struct sbn_sgd_options { double lr, momentum, weight_decay; } sbn_sgd_options;
/* One step over `count` parameters; velocity holds the momentum buffers. */
SBN_API void sbn_sgd_step(float *params, float *velocity, const float *grads, int64_t count, sbn_sgd_options options,
                  bool first_step);

/* ---------- models ---------- */

typedef enum sbn_model_kind {
    SBN_MODEL_SEED,    /* Conv2d(in,16,3,p1) -> BN2d(16) -> ReLU -> MaxPool2d(2) -> Linear(16*h/2*w/2, classes) */
    SBN_MODEL_CONVNET  /* two such blocks (16 and 32 channels) -> Linear(32*h/4*w/4, classes) */
} sbn_model_kind;

typedef enum sbn_norm { SBN_NORM_NONE, SBN_NORM_BN, SBN_NORM_SYNC } sbn_norm;

typedef struct sbn_model sbn_model;

/* A model initialized as PyTorch does (kaiming-uniform with a = sqrt(5) for
 * conv and linear weights, uniform(+-1/sqrt(fan_in)) biases; BN weight 1,
 * bias 0) from `seed`. norm NONE leaves BN out; SYNC needs bn_comm. */
SBN_API sbn_status sbn_model_create(sbn_model_kind kind, int64_t in_channels, int64_t height, int64_t width,
                            int64_t classes, sbn_norm norm, sbn_comm *bn_comm, uint64_t seed, sbn_model **out);
SBN_API void sbn_model_destroy(sbn_model *model);

/* PyTorch's convert_sync_batchnorm: every BN layer becomes SyncBN over comm
 * (comm NULL: back to plain BN), keeping parameters and running statistics. */
SBN_API sbn_status sbn_model_convert_sync_batchnorm(sbn_model *model, sbn_comm *comm);

/* Runs each BN -> ReLU pair as one BN layer with fuse_relu (bn.h): the same
 * bits in every output, gradient and running statistic, one pass less over
 * the activations each way. Off for a new model. Keeps parameters, running
 * statistics and the communicator. On a SyncBN model the layers are created
 * anew on the communicator: call it on every rank, as the conversion. On
 * error (SBN_ERR_NOMEM) the model is unchanged. */
SBN_API sbn_status sbn_model_set_fuse_relu(sbn_model *model, bool fuse);

/* All trainable parameters in one flat block, gradients in another of the
 * same layout, so that the gradient allreduce, SGD and broadcasts each walk
 * one buffer. */
SBN_API int64_t sbn_model_parameter_count(const sbn_model *model);
SBN_API float *sbn_model_parameters(sbn_model *model);
SBN_API float *sbn_model_gradients(sbn_model *model);
SBN_API void sbn_model_zero_grad(sbn_model *model);
SBN_API int sbn_model_bn_count(const sbn_model *model);
SBN_API sbn_bn *sbn_model_bn(sbn_model *model, int index);
SBN_API int64_t sbn_model_classes(const sbn_model *model);

/* ---------- state dicts, in PyTorch's names ----------
 * The model's tensors as the twin (bench/pytorch_twin.py) names them in its
 * state_dict(), in that order:
 *   conv1.weight (16, in, 3, 3), conv1.bias, bn1.weight, bn1.bias,
 *   bn1.running_mean, bn1.running_var, bn1.num_batches_tracked (I64 scalar),
 *   conv2.*, bn2.* (convnet), fc.weight (classes, features), fc.bias.
 * `parts` selects parameters (weights and biases), buffers (BN running
 * statistics and counts), or both. */
enum { SBN_STATE_PARAMETERS = 1, SBN_STATE_BUFFERS = 2, SBN_STATE_ALL = 3 };
enum { SBN_MODEL_MAX_STATE = 40 };
typedef struct sbn_model_state {
    int64_t count;
    sbn_tensor tensors[SBN_MODEL_MAX_STATE];
    char names[SBN_MODEL_MAX_STATE][48];
    int64_t num_batches_tracked[SBN_MODEL_MAX_STATE];
} sbn_model_state;

/* Views of the model's state (valid while the model lives and is not
 * converted). Parameters point into `parameters`: the model's own block when
 * NULL, or another block of the same layout (SGD's momentum buffers); counts
 * are copied into state. */
SBN_API sbn_status sbn_model_state_dict(sbn_model *model, const float *parameters, int parts, sbn_model_state *state);

/* Loads the `parts` of the state from file, strictly as PyTorch's
 * load_state_dict(strict=True): every tensor present with its dtype and
 * shape, no other tensor. Checks everything before changing anything: on
 * error (SBN_ERR_FORMAT naming the file and the tensor) the model and
 * `parameters` (NULL: the model's own) are unchanged. */
SBN_API sbn_status sbn_model_load_state_dict(sbn_model *model, float *parameters, int parts, const sbn_safetensors *file);

/* images (n, in_channels, height, width) -> *logits (n, classes), owned by
 * the model until the next forward. training selects BN's mode. Collective
 * when the model holds SyncBN and training is true. */
SBN_API sbn_status sbn_model_forward(sbn_model *model, const float *images, int64_t n, bool training, const float **logits);
/* Adds the gradients of the last forward, given dlogits, into the gradient block. */
SBN_API sbn_status sbn_model_backward(sbn_model *model, const float *dlogits);

#ifdef __cplusplus
}
#endif
#endif
