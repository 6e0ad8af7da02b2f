/* The BN / SyncBN layer: parameters, running statistics, the saved forward,
 * and at most one collective per pass. The arithmetic lives in kernels.c,
 * the message format in sync_message.c. */
#include <syncbn/bn.h>
#include <syncbn/kernels.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bn/sync_message.h"
#include "comm/comm_internal.h"
#include "core/error.h"

/* Float parameter block, `channels` floats per slot. */
enum { SLOT_WEIGHT, SLOT_BIAS, SLOT_GRAD_WEIGHT, SLOT_GRAD_BIAS, SLOT_RUNNING_MEAN, SLOT_RUNNING_VAR, FLOAT_SLOTS };
/* Double scratch block, `channels` doubles per slot (plus the message). */
enum { SLOT_SAVED_MEAN, SLOT_SAVED_INVSTD, SLOT_MEAN, SLOT_M2, SLOT_INVSTD, SLOT_SUM_DY, SLOT_SUM_DY_XMU, DOUBLE_SLOTS };

struct sbn_bn {
    int64_t channels;
    sbn_bn_options options;
    sbn_comm *comm;        /* borrowed; NULL for plain BN */
    int64_t layer_id;      /* on comm */
    int64_t num_batches_tracked;
    int64_t local_backwards; /* see sync_identity */
    float *floats;         /* FLOAT_SLOTS x channels */
    double *doubles;       /* DOUBLE_SLOTS x channels, then the SyncBN message */
    /* The last successful forward, for backward. */
    bool has_forward;
    bool forward_used_batch_stats;
    bool forward_was_synced;
    sbn_shape forward_shape;
};

static float *float_slot(const sbn_bn *bn, int slot) { return bn->floats + (size_t)slot * (size_t)bn->channels; }
static double *double_slot(const sbn_bn *bn, int slot) { return bn->doubles + (size_t)slot * (size_t)bn->channels; }
static double *sync_message(const sbn_bn *bn) { return double_slot(bn, DOUBLE_SLOTS); }

sbn_bn_options sbn_bn_defaults(void)
{
    sbn_bn_options options = {.eps = 1e-5, .momentum = 0.1, .cumulative = false, .affine = true,
                              .track_running_stats = true};
    return options;
}

static sbn_status check_options(const sbn_bn_options *options)
{
    if (!(options->eps >= 0.0) || !isfinite(options->eps))
        return sbn_fail(SBN_ERR_ARG, "eps must be finite and >= 0, got %g", options->eps);
    if (!options->cumulative && !(options->momentum >= 0.0 && options->momentum <= 1.0))
        return sbn_fail(SBN_ERR_ARG, "momentum must be in [0, 1], got %g", options->momentum);
    return SBN_OK;
}

sbn_status sbn_bn_create(int64_t channels, const sbn_bn_options *opt, sbn_comm *comm, sbn_bn **out)
{
    if (!out) return sbn_fail(SBN_ERR_ARG, "out is NULL");
    *out = NULL;
    const sbn_bn_options options = opt ? *opt : sbn_bn_defaults();
    sbn_status st = check_options(&options);
    if (st != SBN_OK) return st;
    if (channels < 1 || channels > ((int64_t)1 << 40))
        return sbn_fail(SBN_ERR_SHAPE, "channels must be in [1, 2^40], got %lld", (long long)channels);
    sbn_bn *bn = calloc(1, sizeof *bn);
    if (bn) {
        bn->channels = channels;
        bn->floats = calloc((size_t)channels * FLOAT_SLOTS, sizeof *bn->floats);
        bn->doubles = calloc((size_t)(channels * DOUBLE_SLOTS + (comm ? sync_message_doubles(channels) : 0)),
                             sizeof *bn->doubles);
    }
    if (!bn || !bn->floats || !bn->doubles) {
        sbn_bn_destroy(bn);
        return sbn_fail(SBN_ERR_NOMEM, "no memory for a BN layer of %lld channels", (long long)channels);
    }
    bn->options = options;
    bn->comm = comm;
    bn->layer_id = comm ? sbn_comm_next_layer_id(comm) : 0;
    for (int64_t c = 0; c < channels; c++) {
        float_slot(bn, SLOT_WEIGHT)[c] = 1.0f;
        float_slot(bn, SLOT_RUNNING_VAR)[c] = 1.0f;
    }
    *out = bn;
    return SBN_OK;
}

void sbn_bn_destroy(sbn_bn *bn)
{
    if (!bn) return;
    free(bn->floats);
    free(bn->doubles);
    free(bn);
}

float *sbn_bn_weight(sbn_bn *bn) { return bn && bn->options.affine ? float_slot(bn, SLOT_WEIGHT) : NULL; }
float *sbn_bn_bias(sbn_bn *bn) { return bn && bn->options.affine ? float_slot(bn, SLOT_BIAS) : NULL; }
float *sbn_bn_grad_weight(sbn_bn *bn) { return bn && bn->options.affine ? float_slot(bn, SLOT_GRAD_WEIGHT) : NULL; }
float *sbn_bn_grad_bias(sbn_bn *bn) { return bn && bn->options.affine ? float_slot(bn, SLOT_GRAD_BIAS) : NULL; }
float *sbn_bn_running_mean(sbn_bn *bn)
{
    return bn && bn->options.track_running_stats ? float_slot(bn, SLOT_RUNNING_MEAN) : NULL;
}
float *sbn_bn_running_var(sbn_bn *bn)
{
    return bn && bn->options.track_running_stats ? float_slot(bn, SLOT_RUNNING_VAR) : NULL;
}
int64_t sbn_bn_channels(const sbn_bn *bn) { return bn ? bn->channels : 0; }
sbn_bn_options sbn_bn_get_options(const sbn_bn *bn) { return bn ? bn->options : sbn_bn_defaults(); }
int64_t sbn_bn_num_batches_tracked(const sbn_bn *bn) { return bn ? bn->num_batches_tracked : 0; }

void sbn_bn_set_num_batches_tracked(sbn_bn *bn, int64_t value)
{
    if (bn) bn->num_batches_tracked = value > 0 ? value : 0;
}

void sbn_bn_zero_grad(sbn_bn *bn)
{
    if (!bn) return;
    memset(float_slot(bn, SLOT_GRAD_WEIGHT), 0, 2 * (size_t)bn->channels * sizeof(float));
}

/* ---------- helpers shared by forward and backward ---------- */

static sbn_status check_call(const sbn_bn *bn, sbn_shape shape, const void *a, const char *a_name, const void *b,
                             const char *b_name)
{
    if (!bn) return sbn_fail(SBN_ERR_ARG, "bn is NULL");
    sbn_status st = sbn_shape_check(shape, NULL);
    if (st != SBN_OK) return st;
    if (shape.c != bn->channels)
        return sbn_fail(SBN_ERR_SHAPE, "input has %lld channels, the layer has %lld", (long long)shape.c,
                        (long long)bn->channels);
    if (!a) return sbn_fail(SBN_ERR_ARG, "%s is NULL", a_name);
    if (!b) return sbn_fail(SBN_ERR_ARG, "%s is NULL", b_name);
    return SBN_OK;
}

static sbn_status check_batch_count(int64_t count, bool global)
{
    if (count >= 2) return SBN_OK;
    return sbn_fail(SBN_ERR_BATCH,
                    "Expected more than 1 value per channel when training, got %lld values per channel%s",
                    (long long)count, global ? " over all ranks" : "");
}

static sync_identity identity_of(const sbn_bn *bn, sync_pass pass)
{
    sync_identity identity = {
        .layer_id = bn->layer_id, .options = bn->options, .pass = pass, .local_backwards = bn->local_backwards};
    return identity;
}

/* The one collective of a pass: writes the header and one element
 * (local_count, first[c], second[c]) per channel, merges across ranks, and
 * checks that the header shows every rank agreed. The merged elements are
 * then read with merged_element. Every failure names the layer and pass. */
static sbn_status exchange(sbn_bn *bn, sync_pass pass, sbn_merge_fn *merge, int64_t local_count,
                           const double *first, const double *second)
{
    double *message = sync_message(bn);
    const sync_identity identity = identity_of(bn, pass);
    sync_message_write_header(message, identity);
    double *element = message + SYNC_HEADER_ELEMENTS * SYNC_ELEMENT_DOUBLES;
    for (int64_t c = 0; c < bn->channels; c++, element += SYNC_ELEMENT_DOUBLES) {
        element[0] = (double)local_count;
        element[1] = first[c];
        element[2] = second[c];
    }
    sbn_status st = sbn_comm_allreduce_merge(bn->comm, message, SYNC_HEADER_ELEMENTS + bn->channels,
                                             SYNC_ELEMENT_DOUBLES, merge);
    bn->local_backwards = 0; /* every rank reached a collective: counting starts again */
    const char *pass_name = pass == SYNC_PASS_FORWARD ? "forward" : "backward";
    if (st == SBN_ERR_MISMATCH)
        return sbn_fail_with_cause(SBN_ERR_MISMATCH,
                                   "SyncBN layer %lld (%lld channels) %s: ranks disagree on the channel count or "
                                   "the layer order (a message of %d + channels elements was expected)",
                                   (long long)bn->layer_id, (long long)bn->channels, pass_name, SYNC_HEADER_ELEMENTS);
    if (st != SBN_OK)
        return sbn_fail_with_cause(st, "SyncBN layer %lld (%lld channels) %s", (long long)bn->layer_id,
                                   (long long)bn->channels, pass_name);
    return sync_message_check_header(message, sbn_comm_size(bn->comm), identity, bn->channels);
}

static const double *merged_element(const sbn_bn *bn, int64_t c)
{
    return sync_message(bn) + (SYNC_HEADER_ELEMENTS + c) * SYNC_ELEMENT_DOUBLES;
}

/* ---------- forward ---------- */

/* Merges this rank's (count, mean, m2) slots with every rank's; on return
 * the slots hold the global statistics and *global_count the global count. */
static sbn_status exchange_moments(sbn_bn *bn, int64_t local_count, int64_t *global_count)
{
    double *mean = double_slot(bn, SLOT_MEAN), *m2 = double_slot(bn, SLOT_M2);
    sbn_status st = exchange(bn, SYNC_PASS_FORWARD, sync_merge_moments, local_count, mean, m2);
    if (st != SBN_OK) return st;
    *global_count = (int64_t)merged_element(bn, 0)[0];
    for (int64_t c = 0; c < bn->channels; c++) {
        mean[c] = merged_element(bn, c)[1];
        m2[c] = merged_element(bn, c)[2];
    }
    return SBN_OK;
}

/* y = bn(x) with the given statistics, and the ReLU when the layer fuses one. */
static sbn_status normalize(const sbn_bn *bn, void *y, sbn_shape shape, const void *x, const double *mean,
                            const double *invstd)
{
    const float *weight = sbn_bn_weight((sbn_bn *)bn), *bias = sbn_bn_bias((sbn_bn *)bn);
    if (bn->options.fuse_relu) return sbn_kernel_normalize_relu(y, shape, x, mean, invstd, weight, bias);
    return sbn_kernel_normalize(y, shape, x, mean, invstd, weight, bias);
}

/* Training forward over several ranks: local statistics, one collective,
 * then normalize with the global ones (two passes over x). */
static sbn_status synced_forward(sbn_bn *bn, sbn_shape shape, const void *x, void *y, int64_t *global_count)
{
    double *mean = double_slot(bn, SLOT_MEAN), *m2 = double_slot(bn, SLOT_M2), *invstd = double_slot(bn, SLOT_INVSTD);
    sbn_status st = sbn_kernel_channel_stats(mean, m2, shape, x);
    if (st == SBN_OK) st = exchange_moments(bn, shape.n * shape.s, global_count);
    if (st == SBN_OK) st = check_batch_count(*global_count, true);
    if (st != SBN_OK) return st;
    for (int64_t c = 0; c < bn->channels; c++)
        invstd[c] = 1.0 / sqrt(m2[c] / (double)*global_count + bn->options.eps);
    return normalize(bn, y, shape, x, mean, invstd);
}

static void update_running_stats(sbn_bn *bn, const double *mean, const double *m2, int64_t count)
{
    bn->num_batches_tracked++;
    const double factor = bn->options.cumulative ? 1.0 / (double)bn->num_batches_tracked : bn->options.momentum;
    float *running_mean = float_slot(bn, SLOT_RUNNING_MEAN), *running_var = float_slot(bn, SLOT_RUNNING_VAR);
    for (int64_t c = 0; c < bn->channels; c++) {
        const double unbiased_var = m2[c] / (double)(count - 1);
        running_mean[c] = (float)((1.0 - factor) * running_mean[c] + factor * mean[c]);
        running_var[c] = (float)((1.0 - factor) * running_var[c] + factor * unbiased_var);
    }
}

static void save_forward(sbn_bn *bn, sbn_shape shape, bool used_batch_stats, bool synced, const double *mean,
                         const double *invstd)
{
    memcpy(double_slot(bn, SLOT_SAVED_MEAN), mean, (size_t)bn->channels * sizeof *mean);
    memcpy(double_slot(bn, SLOT_SAVED_INVSTD), invstd, (size_t)bn->channels * sizeof *invstd);
    bn->has_forward = true;
    bn->forward_used_batch_stats = used_batch_stats;
    bn->forward_was_synced = synced;
    bn->forward_shape = shape;
}

static sbn_status forward_running_stats(sbn_bn *bn, sbn_shape shape, const void *x, void *y)
{
    double *mean = double_slot(bn, SLOT_MEAN), *invstd = double_slot(bn, SLOT_INVSTD);
    const float *running_mean = float_slot(bn, SLOT_RUNNING_MEAN), *running_var = float_slot(bn, SLOT_RUNNING_VAR);
    for (int64_t c = 0; c < bn->channels; c++) {
        mean[c] = running_mean[c];
        invstd[c] = 1.0 / sqrt((double)running_var[c] + bn->options.eps);
    }
    sbn_status st = normalize(bn, y, shape, x, mean, invstd);
    if (st == SBN_OK) save_forward(bn, shape, false, false, mean, invstd);
    return st;
}

sbn_status sbn_bn_forward(sbn_bn *bn, sbn_shape shape, const void *x, void *y, bool training)
{
    sbn_status st = check_call(bn, shape, x, "x", y, "y");
    if (st != SBN_OK) return st;
    const bool track = bn->options.track_running_stats;
    if (!training && track) return forward_running_stats(bn, shape, x, y);

    /* Batch statistics: training, or eval without running statistics (local, as PyTorch). */
    const bool synced = training && bn->comm != NULL;
    double *mean = double_slot(bn, SLOT_MEAN), *m2 = double_slot(bn, SLOT_M2), *invstd = double_slot(bn, SLOT_INVSTD);
    int64_t count = shape.n * shape.s;
    if (synced && sbn_comm_size(bn->comm) > 1) {
        st = synced_forward(bn, shape, x, y, &count);
    } else {
        /* One rank: its statistics are the global ones, so take the fused
         * single-pass kernel; a SyncBN layer still makes its (identity)
         * collective, which checks the call like any other. */
        st = check_batch_count(count, synced);
        if (st == SBN_OK)
            st = (bn->options.fuse_relu ? sbn_kernel_forward_train_relu : sbn_kernel_forward_train)(
                y, mean, m2, invstd, shape, x, sbn_bn_weight(bn), sbn_bn_bias(bn), bn->options.eps);
        if (st == SBN_OK && synced) st = exchange_moments(bn, count, &count);
    }
    if (st != SBN_OK) return st;
    if (training && track) update_running_stats(bn, mean, m2, count);
    save_forward(bn, shape, true, synced, mean, invstd);
    return SBN_OK;
}

/* ---------- backward ---------- */

static int same_shape(sbn_shape a, sbn_shape b)
{
    return a.n == b.n && a.c == b.c && a.s == b.s && a.layout == b.layout && a.dtype == b.dtype;
}

/* grad_weight += invstd * sum(dy * (x - mean)), grad_bias += sum(dy). */
static void add_parameter_grads(sbn_bn *bn, const double *sum_dy, const double *sum_dy_xmu, const double *invstd)
{
    if (!bn->options.affine) return;
    float *grad_weight = float_slot(bn, SLOT_GRAD_WEIGHT), *grad_bias = float_slot(bn, SLOT_GRAD_BIAS);
    for (int64_t c = 0; c < bn->channels; c++) {
        grad_weight[c] = (float)((double)grad_weight[c] + invstd[c] * sum_dy_xmu[c]);
        grad_bias[c] = (float)((double)grad_bias[c] + sum_dy[c]);
    }
}

/* Merges this rank's (count, sum_dy, sum_dy_xmu) with every rank's; on
 * return global_means holds mean_dy and global_means_xmu mean_dy_xmu. */
static sbn_status exchange_sums(sbn_bn *bn, int64_t local_count, double *global_means, double *global_means_xmu)
{
    sbn_status st = exchange(bn, SYNC_PASS_BACKWARD, sync_merge_sums, local_count, double_slot(bn, SLOT_SUM_DY),
                             double_slot(bn, SLOT_SUM_DY_XMU));
    if (st != SBN_OK) return st;
    for (int64_t c = 0; c < bn->channels; c++) {
        const double *merged = merged_element(bn, c);
        global_means[c] = merged[1] / merged[0];
        global_means_xmu[c] = merged[2] / merged[0];
    }
    return SBN_OK;
}

/* The backward kernels, through the layer's ReLU when it fuses one (the
 * forward's output is recomputed from x with the saved statistics). */
static sbn_status backward_reduce(const sbn_bn *bn, sbn_shape shape, const void *x, const void *dy)
{
    const double *mean = double_slot(bn, SLOT_SAVED_MEAN), *invstd = double_slot(bn, SLOT_SAVED_INVSTD);
    double *sum_dy = double_slot(bn, SLOT_SUM_DY), *sum_dy_xmu = double_slot(bn, SLOT_SUM_DY_XMU);
    if (!bn->options.fuse_relu) return sbn_kernel_backward_reduce(sum_dy, sum_dy_xmu, shape, x, dy, mean);
    return sbn_kernel_backward_reduce_relu(sum_dy, sum_dy_xmu, shape, x, dy, mean, invstd,
                                           sbn_bn_weight((sbn_bn *)bn), sbn_bn_bias((sbn_bn *)bn));
}

/* mean_dy == mean_dy_xmu == NULL: through fixed statistics. */
static sbn_status backward_apply(const sbn_bn *bn, sbn_shape shape, const void *x, const void *dy, void *dx,
                                 const double *mean_dy, const double *mean_dy_xmu)
{
    const double *mean = double_slot(bn, SLOT_SAVED_MEAN), *invstd = double_slot(bn, SLOT_SAVED_INVSTD);
    const float *weight = sbn_bn_weight((sbn_bn *)bn), *bias = sbn_bn_bias((sbn_bn *)bn);
    if (!bn->options.fuse_relu)
        return sbn_kernel_backward_apply(dx, shape, x, dy, mean, invstd, weight, mean_dy, mean_dy_xmu);
    return sbn_kernel_backward_apply_relu(dx, shape, x, dy, mean, invstd, weight, bias, mean_dy, mean_dy_xmu);
}

static sbn_status backward_train(const sbn_bn *bn, sbn_shape shape, const void *x, const void *dy, void *dx)
{
    const double *mean = double_slot(bn, SLOT_SAVED_MEAN), *invstd = double_slot(bn, SLOT_SAVED_INVSTD);
    double *sum_dy = double_slot(bn, SLOT_SUM_DY), *sum_dy_xmu = double_slot(bn, SLOT_SUM_DY_XMU);
    const float *weight = sbn_bn_weight((sbn_bn *)bn), *bias = sbn_bn_bias((sbn_bn *)bn);
    if (!bn->options.fuse_relu)
        return sbn_kernel_backward_train(dx, sum_dy, sum_dy_xmu, shape, x, dy, mean, invstd, weight);
    return sbn_kernel_backward_train_relu(dx, sum_dy, sum_dy_xmu, shape, x, dy, mean, invstd, weight, bias);
}

/* Through batch statistics over all ranks: one collective of the two sums. */
static sbn_status synced_backward(sbn_bn *bn, sbn_shape shape, const void *x, const void *dy, void *dx)
{
    const double *invstd = double_slot(bn, SLOT_SAVED_INVSTD);
    double *sum_dy = double_slot(bn, SLOT_SUM_DY), *sum_dy_xmu = double_slot(bn, SLOT_SUM_DY_XMU);
    double *global_means = double_slot(bn, SLOT_MEAN), *global_means_xmu = double_slot(bn, SLOT_M2);
    sbn_status st;
    if (sbn_comm_size(bn->comm) == 1) {
        /* One rank: fused kernel, then the identity collective (see forward). */
        st = backward_train(bn, shape, x, dy, dx);
        if (st == SBN_OK) st = exchange_sums(bn, shape.n * shape.s, global_means, global_means_xmu);
    } else {
        st = backward_reduce(bn, shape, x, dy);
        if (st == SBN_OK) st = exchange_sums(bn, shape.n * shape.s, global_means, global_means_xmu);
        if (st == SBN_OK && dx) st = backward_apply(bn, shape, x, dy, dx, global_means, global_means_xmu);
    }
    if (st != SBN_OK) return st;
    add_parameter_grads(bn, sum_dy, sum_dy_xmu, invstd);
    return SBN_OK;
}

sbn_status sbn_bn_backward(sbn_bn *bn, sbn_shape shape, const void *x, const void *dy, void *dx)
{
    sbn_status st = check_call(bn, shape, x, "x", dy, "dy");
    if (st != SBN_OK) return st;
    if (!bn->has_forward) return sbn_fail(SBN_ERR_ARG, "backward called before any successful forward");
    if (!same_shape(shape, bn->forward_shape))
        return sbn_fail(SBN_ERR_SHAPE,
                        "backward shape (n=%lld, c=%lld, s=%lld, layout %d, %s) differs from the last forward's "
                        "(n=%lld, c=%lld, s=%lld, layout %d, %s)",
                        (long long)shape.n, (long long)shape.c, (long long)shape.s, (int)shape.layout,
                        sbn_dtype_name(shape.dtype), (long long)bn->forward_shape.n, (long long)bn->forward_shape.c,
                        (long long)bn->forward_shape.s, (int)bn->forward_shape.layout,
                        sbn_dtype_name(bn->forward_shape.dtype));
    if (bn->forward_was_synced) return synced_backward(bn, shape, x, dy, dx);

    if (bn->forward_used_batch_stats) {
        st = backward_train(bn, shape, x, dy, dx);
    } else {
        st = backward_reduce(bn, shape, x, dy);
        if (st == SBN_OK && dx) st = backward_apply(bn, shape, x, dy, dx, NULL, NULL);
    }
    if (st != SBN_OK) return st;
    add_parameter_grads(bn, double_slot(bn, SLOT_SUM_DY), double_slot(bn, SLOT_SUM_DY_XMU),
                        double_slot(bn, SLOT_SAVED_INVSTD));
    if (bn->comm) bn->local_backwards++;
    return SBN_OK;
}
