/* A float64 BN written straight from the formulas, two passes, no tricks:
 * the independent reference the fast kernels are checked against. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

void reference_bn_init(reference_bn *bn, int64_t channels, sbn_bn_options options)
{
    memset(bn, 0, sizeof *bn);
    bn->channels = channels;
    bn->eps = options.eps;
    bn->momentum = options.momentum;
    bn->cumulative = options.cumulative;
    bn->affine = options.affine;
    bn->track = options.track_running_stats;
    double **arrays[] = {&bn->weight, &bn->bias, &bn->running_mean, &bn->running_var,
                         &bn->grad_weight, &bn->grad_bias, &bn->mean, &bn->invstd};
    for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++) *arrays[k] = calloc((size_t)channels, sizeof(double));
    for (int64_t c = 0; c < channels; c++) bn->weight[c] = bn->running_var[c] = 1.0;
}

void reference_bn_free(reference_bn *bn)
{
    double *arrays[] = {bn->weight, bn->bias, bn->running_mean, bn->running_var,
                        bn->grad_weight, bn->grad_bias, bn->mean, bn->invstd};
    for (size_t k = 0; k < sizeof arrays / sizeof arrays[0]; k++) free(arrays[k]);
}

static double at(const float *x, int64_t i, int64_t c, int64_t j, int64_t channels, int64_t s)
{
    return x[(i * channels + c) * s + j];
}

void reference_bn_forward(reference_bn *bn, int64_t n, int64_t s, const float *x, double *y, bool training)
{
    const int64_t C = bn->channels, count = n * s;
    bn->used_batch_stats = training || !bn->track;
    if (training && bn->track) bn->num_batches_tracked++;
    for (int64_t c = 0; c < C; c++) {
        double mean, var;
        if (bn->used_batch_stats) {
            double sum = 0.0, sq = 0.0;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < s; j++) sum += at(x, i, c, j, C, s);
            mean = sum / (double)count;
            for (int64_t i = 0; i < n; i++)
                for (int64_t j = 0; j < s; j++) sq += (at(x, i, c, j, C, s) - mean) * (at(x, i, c, j, C, s) - mean);
            var = sq / (double)count;
            if (training && bn->track) {
                const double f = bn->cumulative ? 1.0 / (double)bn->num_batches_tracked : bn->momentum;
                bn->running_mean[c] = (1.0 - f) * bn->running_mean[c] + f * mean;
                bn->running_var[c] = (1.0 - f) * bn->running_var[c] + f * sq / (double)(count - 1);
            }
        } else {
            mean = bn->running_mean[c];
            var = bn->running_var[c];
        }
        bn->mean[c] = mean;
        bn->invstd[c] = 1.0 / sqrt(var + bn->eps);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++)
                y[(i * C + c) * s + j] = (at(x, i, c, j, C, s) - mean) * bn->invstd[c] * bn->weight[c] + bn->bias[c];
    }
}

void reference_bn_backward(reference_bn *bn, int64_t n, int64_t s, const float *x, const float *dy, double *dx)
{
    const int64_t C = bn->channels, count = n * s;
    for (int64_t c = 0; c < C; c++) {
        double sum_dy = 0.0, sum_dy_xhat = 0.0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) {
                const double xhat = (at(x, i, c, j, C, s) - bn->mean[c]) * bn->invstd[c];
                sum_dy += at(dy, i, c, j, C, s);
                sum_dy_xhat += at(dy, i, c, j, C, s) * xhat;
            }
        bn->grad_weight[c] += sum_dy_xhat;
        bn->grad_bias[c] += sum_dy;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) {
                const double g = at(dy, i, c, j, C, s), xhat = (at(x, i, c, j, C, s) - bn->mean[c]) * bn->invstd[c];
                dx[(i * C + c) * s + j] =
                    bn->used_batch_stats
                        ? bn->weight[c] * bn->invstd[c] * (g - sum_dy / count - xhat * sum_dy_xhat / count)
                        : g * bn->weight[c] * bn->invstd[c];
            }
    }
}
