/* One BN layer against the float64 reference over every pass: a training
 * step (forward + backward through batch statistics) then an eval step
 * (forward + backward through the running statistics just updated), on
 * NCS data given to the layer in the requested layout. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static float *layer_floats(int64_t count) { return calloc((size_t)(count > 0 ? count : 1), sizeof(float)); }

void test_layer_result_free(test_layer_result *r)
{
    free(r->y), free(r->dx), free(r->eval_y), free(r->eval_dx);
    free(r->running_mean), free(r->running_var), free(r->grad_weight), free(r->grad_bias);
    memset(r, 0, sizeof *r);
}

/* Copies NCS data into `layout` order (in), or back (out). */
static void to_layout(float *out, const float *ncs, int64_t n, int64_t c, int64_t s, sbn_layout layout)
{
    if (layout == SBN_NSC) test_ncs_to_nsc(out, ncs, n, c, s);
    else memcpy(out, ncs, (size_t)(n * c * s) * sizeof *out);
}
static void from_layout(float *ncs, const float *in, int64_t n, int64_t c, int64_t s, sbn_layout layout)
{
    if (layout == SBN_NSC) test_nsc_to_ncs(ncs, in, n, c, s);
    else memcpy(ncs, in, (size_t)(n * c * s) * sizeof *ncs);
}

test_layer_result test_layer_steps(int64_t n, int64_t c, int64_t s, sbn_layout layout, const float *x_ncs,
                                   const float *dy_ncs, const float *weight, const float *bias)
{
    const int64_t count = n * c * s;
    test_layer_result r = {layer_floats(count), layer_floats(count), layer_floats(count), layer_floats(count),
                           layer_floats(c),     layer_floats(c),     layer_floats(c),     layer_floats(c),
                           SBN_OK};
    float *x = layer_floats(count), *dy = layer_floats(count), *y = layer_floats(count), *dx = layer_floats(count);
    to_layout(x, x_ncs, n, c, s, layout);
    to_layout(dy, dy_ncs, n, c, s, layout);
    sbn_bn *bn = NULL;
    const sbn_shape shape = {n, c, s, layout, SBN_DTYPE_F32};
    sbn_status st = sbn_bn_create(c, NULL, NULL, &bn);
    if (st == SBN_OK) {
        memcpy(sbn_bn_weight(bn), weight, (size_t)c * sizeof *weight);
        memcpy(sbn_bn_bias(bn), bias, (size_t)c * sizeof *bias);
        st = sbn_bn_forward(bn, shape, x, y, true);
    }
    if (st == SBN_OK) st = sbn_bn_backward(bn, shape, x, dy, dx);
    if (st == SBN_OK) {
        from_layout(r.y, y, n, c, s, layout);
        from_layout(r.dx, dx, n, c, s, layout);
        memcpy(r.running_mean, sbn_bn_running_mean(bn), (size_t)c * sizeof(float));
        memcpy(r.running_var, sbn_bn_running_var(bn), (size_t)c * sizeof(float));
        memcpy(r.grad_weight, sbn_bn_grad_weight(bn), (size_t)c * sizeof(float));
        memcpy(r.grad_bias, sbn_bn_grad_bias(bn), (size_t)c * sizeof(float));
        st = sbn_bn_forward(bn, shape, x, y, false);
    }
    if (st == SBN_OK) st = sbn_bn_backward(bn, shape, x, dy, dx);
    if (st == SBN_OK) {
        from_layout(r.eval_y, y, n, c, s, layout);
        from_layout(r.eval_dx, dx, n, c, s, layout);
    }
    r.status = st;
    sbn_bn_destroy(bn);
    free(x), free(dy), free(y), free(dx);
    return r;
}

int64_t test_layer_against_reference(int64_t n, int64_t c, int64_t s, sbn_layout layout, const float *x,
                                     const float *dy, const float *weight, const float *bias, double tolerance)
{
    const int64_t count = n * c * s;
    test_layer_result r = test_layer_steps(n, c, s, layout, x, dy, weight, bias);
    if (r.status != SBN_OK) {
        fprintf(stderr, "layer step failed: %s: %s\n", sbn_status_str(r.status), sbn_errmsg());
        test_layer_result_free(&r);
        return count > 0 ? count : 1;
    }
    reference_bn ref;
    reference_bn_init(&ref, c, sbn_bn_defaults());
    for (int64_t k = 0; k < c; k++) ref.weight[k] = weight[k], ref.bias[k] = bias[k];
    double *y = calloc((size_t)count + 1, sizeof *y), *dx = calloc((size_t)count + 1, sizeof *dx);
    /* Gradient sums grow like sqrt(n*s) in magnitude: scale their atol. */
    const double sum_tolerance = tolerance * sqrt((double)(n * s));
    reference_bn_forward(&ref, n, s, x, y, true);
    reference_bn_backward(&ref, n, s, x, dy, dx);
    int64_t bad = test_count_mismatches("y", r.y, y, count, tolerance, tolerance);
    bad += test_count_mismatches("dx", r.dx, dx, count, tolerance, tolerance);
    bad += test_count_mismatches("running_mean", r.running_mean, ref.running_mean, c, tolerance, tolerance);
    bad += test_count_mismatches("running_var", r.running_var, ref.running_var, c, tolerance, tolerance);
    bad += test_count_mismatches("grad_weight", r.grad_weight, ref.grad_weight, c, sum_tolerance, tolerance);
    bad += test_count_mismatches("grad_bias", r.grad_bias, ref.grad_bias, c, sum_tolerance, tolerance);
    /* Eval uses the float32 running statistics the layer stored. */
    for (int64_t k = 0; k < c; k++)
        ref.running_mean[k] = r.running_mean[k], ref.running_var[k] = r.running_var[k];
    reference_bn_forward(&ref, n, s, x, y, false);
    reference_bn_backward(&ref, n, s, x, dy, dx);
    bad += test_count_mismatches("eval y", r.eval_y, y, count, tolerance, tolerance);
    bad += test_count_mismatches("eval dx", r.eval_dx, dx, count, tolerance, tolerance);
    test_layer_result_free(&r);
    free(y), free(dx);
    reference_bn_free(&ref);
    return bad;
}
