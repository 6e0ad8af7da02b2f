/* A model: a sequence of layers over one flat parameter block and one flat
 * gradient block (llm.c's layout), so the trainer's allreduce, SGD and
 * broadcast each walk one buffer. BN layers keep their own copies of weight
 * and bias (the sbn_bn API); the model copies them in before each forward
 * and copies their gradients out after each backward. */
#include <syncbn/nn.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/random.h"
#include "nn/model_internal.h"

static int64_t in_size(const layer *l) { return l->in_c * l->in_h * l->in_w; }
static int64_t out_size(const layer *l) { return l->out_c * l->out_h * l->out_w; }

/* ---------- building ---------- */

static layer *append(sbn_model *m, layer_kind kind, int64_t out_c, int64_t out_h, int64_t out_w)
{
    layer *l = &m->layers[m->layer_count];
    memset(l, 0, sizeof *l);
    l->kind = kind;
    if (m->layer_count > 0) {
        const layer *previous = &m->layers[m->layer_count - 1];
        l->in_c = previous->out_c, l->in_h = previous->out_h, l->in_w = previous->out_w;
    }
    l->out_c = out_c, l->out_h = out_h, l->out_w = out_w;
    m->layer_count++;
    return l;
}

static void reserve_parameters(sbn_model *m, layer *l, int64_t weight_size, int64_t bias_size)
{
    l->weight_offset = m->param_count, l->weight_size = weight_size;
    l->bias_offset = m->param_count + weight_size, l->bias_size = bias_size;
    m->param_count += weight_size + bias_size;
}

static void add_conv(sbn_model *m, int64_t in_c, int64_t h, int64_t w, int64_t out_c)
{
    layer *l = append(m, LAYER_CONV, out_c, h, w);
    if (m->layer_count == 1) l->in_c = in_c, l->in_h = h, l->in_w = w;
    l->kernel = 3, l->stride = 1, l->padding = 1;
    reserve_parameters(m, l, out_c * l->in_c * 9, out_c);
}

static void add_block(sbn_model *m, int64_t in_c, int64_t h, int64_t w, int64_t out_c, sbn_norm norm)
{
    add_conv(m, in_c, h, w, out_c);
    if (norm != SBN_NORM_NONE) reserve_parameters(m, append(m, LAYER_BN, out_c, h, w), out_c, out_c);
    append(m, LAYER_RELU, out_c, h, w);
    layer *pool = append(m, LAYER_MAXPOOL, out_c, h / 2, w / 2);
    pool->kernel = 2, pool->stride = 2;
}

/* kaiming_uniform_(a=sqrt(5)) is uniform(+-1/sqrt(fan_in)); so is the bias. */
static void init_uniform(float *values, int64_t count, double bound, sbn_random *random)
{
    for (int64_t i = 0; i < count; i++) values[i] = (float)((2.0 * sbn_random_uniform(random) - 1.0) * bound);
}

static void init_parameters(sbn_model *m, uint64_t seed)
{
    sbn_random random = {seed};
    for (int k = 0; k < m->layer_count; k++) {
        layer *l = &m->layers[k];
        float *weight = m->params + l->weight_offset, *bias = m->params + l->bias_offset;
        if (l->kind == LAYER_CONV || l->kind == LAYER_LINEAR) {
            const double fan_in = (double)(l->kind == LAYER_CONV ? l->in_c * l->kernel * l->kernel : in_size(l));
            init_uniform(weight, l->weight_size, 1.0 / sqrt(fan_in), &random);
            init_uniform(bias, l->bias_size, 1.0 / sqrt(fan_in), &random);
        } else if (l->kind == LAYER_BN) {
            for (int64_t c = 0; c < l->weight_size; c++) weight[c] = 1.0f, bias[c] = 0.0f;
        }
    }
}

sbn_status sbn_model_create(sbn_model_kind kind, int64_t in_channels, int64_t height, int64_t width,
                            int64_t classes, sbn_norm norm, sbn_comm *bn_comm, uint64_t seed, sbn_model **out)
{
    if (!out) return sbn_fail(SBN_ERR_ARG, "out is NULL");
    *out = NULL;
    if (kind != SBN_MODEL_SEED && kind != SBN_MODEL_CONVNET) return sbn_fail(SBN_ERR_ARG, "unknown model kind %d", kind);
    if (norm != SBN_NORM_NONE && norm != SBN_NORM_BN && norm != SBN_NORM_SYNC)
        return sbn_fail(SBN_ERR_ARG, "unknown norm %d", norm);
    if (norm == SBN_NORM_SYNC && !bn_comm) return sbn_fail(SBN_ERR_ARG, "SyncBN needs a communicator");
    const int64_t pools = kind == SBN_MODEL_SEED ? 1 : 2;
    if (in_channels < 1 || classes < 2 || height < 2 * pools || width < 2 * pools || height > 4096 || width > 4096)
        return sbn_fail(SBN_ERR_SHAPE, "bad model input (channels %lld, %lldx%lld, %lld classes)",
                        (long long)in_channels, (long long)height, (long long)width, (long long)classes);
    sbn_model *m = calloc(1, sizeof *m);
    if (!m) return sbn_fail(SBN_ERR_NOMEM, "no memory for a model");
    m->classes = classes;
    add_block(m, in_channels, height, width, 16, norm);
    if (kind == SBN_MODEL_CONVNET) add_block(m, 16, height / 2, width / 2, 32, norm);
    layer *last = &m->layers[m->layer_count - 1];
    const int64_t features = out_size(last);
    layer *linear = append(m, LAYER_LINEAR, classes, 1, 1);
    reserve_parameters(m, linear, classes * features, classes);
    m->params = calloc((size_t)m->param_count, sizeof *m->params);
    m->grads = calloc((size_t)m->param_count, sizeof *m->grads);
    if (!m->params || !m->grads) {
        sbn_model_destroy(m);
        return sbn_fail(SBN_ERR_NOMEM, "no memory for parameters");
    }
    sbn_status st = SBN_OK;
    for (int k = 0; st == SBN_OK && k < m->layer_count; k++)
        if (m->layers[k].kind == LAYER_BN) st = sbn_bn_create(m->layers[k].out_c, NULL, NULL, &m->layers[k].bn);
    if (st == SBN_OK) init_parameters(m, seed);
    if (st == SBN_OK && norm == SBN_NORM_SYNC) st = sbn_model_convert_sync_batchnorm(m, bn_comm);
    if (st != SBN_OK) {
        sbn_model_destroy(m);
        return st;
    }
    *out = m;
    return SBN_OK;
}

static void free_buffers(sbn_model *m)
{
    for (int k = 0; k < m->layer_count; k++) {
        free(m->layers[k].output), free(m->layers[k].cols), free(m->layers[k].argmax);
        m->layers[k].output = NULL, m->layers[k].cols = NULL, m->layers[k].argmax = NULL;
    }
    free(m->gradient_buffers[0]), free(m->gradient_buffers[1]), free(m->conv_scratch);
    m->gradient_buffers[0] = m->gradient_buffers[1] = m->conv_scratch = NULL;
    m->capacity = 0;
}

void sbn_model_destroy(sbn_model *m)
{
    if (!m) return;
    free_buffers(m);
    for (int k = 0; k < m->layer_count; k++) sbn_bn_destroy(m->layers[k].bn);
    free(m->params), free(m->grads);
    free(m);
}

/* Copies a BN layer's per-channel buffer; either may be NULL (a layer that
 * is not affine or does not track running statistics has none): no copy. */
static void copy_channels(float *to, const float *from, int64_t channels)
{
    if (to && from) memcpy(to, from, (size_t)channels * sizeof *to);
}

/* Recreates every BN layer over comm with fuse_relu as given, keeping its
 * options, running statistics and count (parameters live in the model's
 * block). All new layers are made before any old one goes: on failure
 * (SBN_ERR_NOMEM) the model is unchanged. */
static sbn_status rebuild_bn_layers(sbn_model *m, sbn_comm *comm, bool fuse_relu)
{
    sbn_bn *made[MAX_LAYERS] = {0};
    sbn_status st = SBN_OK;
    for (int k = 0; st == SBN_OK && k < m->layer_count; k++) {
        const layer *l = &m->layers[k];
        if (l->kind != LAYER_BN) continue;
        sbn_bn_options options = sbn_bn_get_options(l->bn);
        options.fuse_relu = fuse_relu && k + 1 < m->layer_count && m->layers[k + 1].kind == LAYER_RELU;
        st = sbn_bn_create(l->out_c, &options, comm, &made[k]);
    }
    for (int k = 0; k < m->layer_count; k++) {
        layer *l = &m->layers[k];
        if (!made[k]) continue;
        if (st != SBN_OK) {
            sbn_bn_destroy(made[k]);
            continue;
        }
        copy_channels(sbn_bn_running_mean(made[k]), sbn_bn_running_mean(l->bn), l->out_c); /* NULL: untracked */
        copy_channels(sbn_bn_running_var(made[k]), sbn_bn_running_var(l->bn), l->out_c);
        sbn_bn_set_num_batches_tracked(made[k], sbn_bn_num_batches_tracked(l->bn));
        sbn_bn_destroy(l->bn);
        l->bn = made[k];
    }
    if (st != SBN_OK) return st;
    m->bn_comm = comm;
    m->fuse_relu = fuse_relu;
    m->has_forward = false;
    return SBN_OK;
}

sbn_status sbn_model_convert_sync_batchnorm(sbn_model *m, sbn_comm *comm)
{
    if (!m) return sbn_fail(SBN_ERR_ARG, "model is NULL");
    return rebuild_bn_layers(m, comm, m->fuse_relu);
}

sbn_status sbn_model_set_fuse_relu(sbn_model *m, bool fuse)
{
    if (!m) return sbn_fail(SBN_ERR_ARG, "model is NULL");
    return rebuild_bn_layers(m, m->bn_comm, fuse);
}

/* ---------- accessors ---------- */

int64_t sbn_model_parameter_count(const sbn_model *m) { return m ? m->param_count : 0; }
float *sbn_model_parameters(sbn_model *m) { return m ? m->params : NULL; }
float *sbn_model_gradients(sbn_model *m) { return m ? m->grads : NULL; }
int64_t sbn_model_classes(const sbn_model *m) { return m ? m->classes : 0; }

void sbn_model_zero_grad(sbn_model *m)
{
    if (m) memset(m->grads, 0, (size_t)m->param_count * sizeof *m->grads);
}

int sbn_model_bn_count(const sbn_model *m)
{
    int count = 0;
    for (int k = 0; m && k < m->layer_count; k++) count += m->layers[k].kind == LAYER_BN;
    return count;
}

sbn_bn *sbn_model_bn(sbn_model *m, int index)
{
    for (int k = 0; m && k < m->layer_count; k++)
        if (m->layers[k].kind == LAYER_BN && index-- == 0) return m->layers[k].bn;
    return NULL;
}

/* ---------- forward and backward ---------- */

static sbn_conv2d_dims conv_dims(const layer *l, int64_t n)
{
    sbn_conv2d_dims d = {n, l->in_c, l->out_c, l->in_h, l->in_w, l->kernel, l->stride, l->padding};
    return d;
}

static sbn_status reserve_batch(sbn_model *m, int64_t n)
{
    if (n <= m->capacity) return SBN_OK;
    free_buffers(m);
    int64_t largest = in_size(&m->layers[0]), largest_cols = 0;
    bool ok = true;
    for (int k = 0; k < m->layer_count; k++) {
        layer *l = &m->layers[k];
        largest = out_size(l) > largest ? out_size(l) : largest;
        l->output = malloc((size_t)(n * out_size(l)) * sizeof(float));
        ok = ok && l->output;
        if (l->kind == LAYER_CONV) {
            const int64_t cols = sbn_conv2d_cols_size(conv_dims(l, n));
            largest_cols = cols > largest_cols ? cols : largest_cols;
            ok = ok && (l->cols = malloc((size_t)cols * sizeof(float)));
        }
        if (l->kind == LAYER_MAXPOOL) ok = ok && (l->argmax = malloc((size_t)(n * out_size(l)) * sizeof(int32_t)));
    }
    for (int b = 0; b < 2; b++) ok = ok && (m->gradient_buffers[b] = malloc((size_t)(n * largest) * sizeof(float)));
    ok = ok && (m->conv_scratch = malloc((size_t)largest_cols * sizeof(float) + 1));
    if (!ok) {
        free_buffers(m);
        return sbn_fail(SBN_ERR_NOMEM, "no memory for a batch of %lld samples", (long long)n);
    }
    m->capacity = n;
    return SBN_OK;
}

static sbn_status layer_forward(sbn_model *m, layer *l, const float *x, int64_t n, bool training)
{
    const float *weight = m->params + l->weight_offset, *bias = m->params + l->bias_offset;
    switch (l->kind) {
    case LAYER_CONV:
        return sbn_conv2d_forward(l->output, l->cols, x, weight, bias, conv_dims(l, n));
    case LAYER_BN: {
        copy_channels(sbn_bn_weight(l->bn), weight, l->out_c); /* the model's copy is unused when not affine */
        copy_channels(sbn_bn_bias(l->bn), bias, l->out_c);
        const sbn_shape shape = {n, l->out_c, l->out_h * l->out_w, SBN_NCS, SBN_DTYPE_F32};
        return sbn_bn_forward(l->bn, shape, x, l->output, training);
    }
    case LAYER_RELU:
        sbn_relu_forward(l->output, x, n * out_size(l));
        return SBN_OK;
    case LAYER_MAXPOOL:
        return sbn_maxpool2d_forward(l->output, l->argmax, x, n, l->in_c, l->in_h, l->in_w, l->kernel, l->stride);
    case LAYER_LINEAR:
        return sbn_linear_forward(l->output, x, weight, bias, n, in_size(l), l->out_c);
    }
    return sbn_fail(SBN_ERR_ARG, "unknown layer kind");
}

/* Whether layer k is a ReLU that runs inside the BN layer before it. */
static bool relu_in_bn(const sbn_model *m, int k)
{
    return m->layers[k].kind == LAYER_RELU && k > 0 && m->layers[k - 1].kind == LAYER_BN &&
           sbn_bn_get_options(m->layers[k - 1].bn).fuse_relu;
}

/* The output of layer k: a ReLU run inside its BN layer has the BN's. */
static const float *layer_output(const sbn_model *m, int k)
{
    return relu_in_bn(m, k) ? m->layers[k - 1].output : m->layers[k].output;
}

sbn_status sbn_model_forward(sbn_model *m, const float *images, int64_t n, bool training, const float **logits)
{
    if (!m || !images || !logits) return sbn_fail(SBN_ERR_ARG, "model forward: NULL argument");
    if (n < 0) return sbn_fail(SBN_ERR_SHAPE, "model forward: negative batch %lld", (long long)n);
    sbn_status st = reserve_batch(m, n > 0 ? n : 1);
    if (st != SBN_OK) return st;
    const float *x = images;
    for (int k = 0; k < m->layer_count; k++) {
        if (relu_in_bn(m, k)) continue; /* x stays the BN layer's output, already through the ReLU */
        if ((st = layer_forward(m, &m->layers[k], x, n, training)) != SBN_OK) {
            m->has_forward = false;
            return st;
        }
        x = m->layers[k].output;
    }
    m->batch = n;
    m->input = images;
    m->has_forward = true;
    *logits = x;
    return SBN_OK;
}

/* dy: gradient of l's output; dx: where l's input gradient goes (NULL: not needed). */
static sbn_status layer_backward(sbn_model *m, layer *l, const float *x, const float *dy, float *dx)
{
    const int64_t n = m->batch;
    const float *weight = m->params + l->weight_offset;
    float *dweight = m->grads + l->weight_offset, *dbias = m->grads + l->bias_offset;
    switch (l->kind) {
    case LAYER_CONV:
        return sbn_conv2d_backward(dx, dweight, dbias, m->conv_scratch, dy, l->cols, weight, conv_dims(l, n));
    case LAYER_BN: {
        sbn_bn_zero_grad(l->bn);
        const sbn_shape shape = {n, l->out_c, l->out_h * l->out_w, SBN_NCS, SBN_DTYPE_F32};
        sbn_status st = sbn_bn_backward(l->bn, shape, x, dy, dx);
        if (st != SBN_OK) return st;
        const float *grad_weight = sbn_bn_grad_weight(l->bn), *grad_bias = sbn_bn_grad_bias(l->bn);
        for (int64_t c = 0; grad_weight && grad_bias && c < l->out_c; c++) { /* NULL when not affine */
            dweight[c] += grad_weight[c];
            dbias[c] += grad_bias[c];
        }
        return SBN_OK;
    }
    case LAYER_RELU:
        if (dx) sbn_relu_backward(dx, dy, l->output, n * out_size(l));
        return SBN_OK;
    case LAYER_MAXPOOL:
        if (dx) sbn_maxpool2d_backward(dx, dy, l->argmax, n, l->in_c, l->in_h, l->in_w, l->kernel, l->stride);
        return SBN_OK;
    case LAYER_LINEAR:
        return sbn_linear_backward(dx, dweight, dbias, dy, x, weight, n, in_size(l), l->out_c);
    }
    return sbn_fail(SBN_ERR_ARG, "unknown layer kind");
}

sbn_status sbn_model_backward(sbn_model *m, const float *dlogits)
{
    if (!m || !dlogits) return sbn_fail(SBN_ERR_ARG, "model backward: NULL argument");
    if (!m->has_forward) return sbn_fail(SBN_ERR_ARG, "model backward called before a successful forward");
    const float *dy = dlogits;
    for (int k = m->layer_count - 1; k >= 0; k--) {
        layer *l = &m->layers[k];
        if (relu_in_bn(m, k)) continue; /* dy is the gradient of the BN layer's (fused) output */
        const float *x = k > 0 ? layer_output(m, k - 1) : m->input;
        float *dx = k > 0 ? m->gradient_buffers[k % 2] : NULL;
        sbn_status st = layer_backward(m, l, x, dy, dx);
        if (st != SBN_OK) return st;
        dy = dx;
    }
    return SBN_OK;
}
