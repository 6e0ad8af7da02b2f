/* BN layer and kernels against the float64 reference: a sweep of shapes in
 * both layouts and thread counts, and the numerically hard inputs that
 * float32 kernels get wrong (offset, constant, 1e18), NaN, empty batches. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <omp.h>

#include "support/support.h"

static float *alloc_floats(int64_t count) { return calloc((size_t)(count > 0 ? count : 1), sizeof(float)); }

typedef struct test_shape { int64_t n, c, s; } test_shape;

static const test_shape sweep[] = {
    {2, 1, 1},   {7, 5, 1},  {64, 33, 1}, {3, 4, 7},   {5, 3, 30},  {2, 16, 28 * 28},
    {8, 6, 9},   {1, 3, 2},  {17, 2, 13}, {4, 64, 16}, {2, 3, 60},  {32, 7, 3},
};

static void random_inputs(test_rng *rng, float *x, float *dy, float *weight, float *bias, test_shape t, double mean,
                          double spread)
{
    test_fill_normal(rng, x, t.n * t.c * t.s, mean, spread);
    test_fill_normal(rng, dy, t.n * t.c * t.s, 0.0, 1.0);
    for (int64_t k = 0; k < t.c; k++) weight[k] = (float)(0.5 + test_rng_uniform(rng)), bias[k] = (float)test_rng_normal(rng);
}

static int64_t sweep_all(double mean, double spread, double tolerance)
{
    test_rng rng = {42};
    int64_t bad = 0;
    for (size_t i = 0; i < sizeof sweep / sizeof sweep[0]; i++) {
        const test_shape t = sweep[i];
        const int64_t count = t.n * t.c * t.s;
        float *x = alloc_floats(count), *dy = alloc_floats(count), *w = alloc_floats(t.c), *b = alloc_floats(t.c);
        random_inputs(&rng, x, dy, w, b, t, mean, spread);
        for (int threads = 1; threads <= 2; threads++) {
            omp_set_num_threads(threads);
            for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
                const int64_t shape_bad = test_layer_against_reference(t.n, t.c, t.s, layout, x, dy, w, b, tolerance);
                if (shape_bad)
                    fprintf(stderr, "shape (%lld,%lld,%lld) layout %d threads %d: %lld mismatches\n", (long long)t.n,
                            (long long)t.c, (long long)t.s, layout, threads, (long long)shape_bad);
                bad += shape_bad;
            }
        }
        free(x), free(dy), free(w), free(b);
    }
    return bad;
}

static void test_sweep_matches_reference(void **state)
{
    (void)state;
    assert_int_equal(sweep_all(0.5, 2.0, 2e-6), 0);
}

/* mean 1e4, spread 1e-2: mean^2 is 1e12 times the variance. */
static void test_offset_inputs(void **state)
{
    (void)state;
    assert_int_equal(sweep_all(1e4, 1e-2, 2e-5), 0);
}

/* |x| near 1e18: a float32 sum of squared deviations (~1e32 each) overflows
 * for large batches; the double path must not. */
static void test_huge_values(void **state)
{
    (void)state;
    assert_int_equal(sweep_all(1e18, 3e16, 2e-6), 0);
}

/* A constant channel has variance 0: y must be exactly the bias. */
static void test_constant_channel_gives_bias(void **state)
{
    (void)state;
    const int64_t n = 6, c = 3, s = 5, count = n * c * s;
    float *x = alloc_floats(count), *dy = alloc_floats(count);
    test_rng rng = {7};
    test_fill_normal(&rng, x, count, 0, 1);
    test_fill_normal(&rng, dy, count, 0, 1);
    for (int64_t i = 0; i < n; i++)
        for (int64_t j = 0; j < s; j++) x[(i * c + 1) * s + j] = 1234.567f;
    const float weight[3] = {1.5f, 2.0f, 0.5f}, bias[3] = {0.25f, -3.0f, 1.0f};
    for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
        test_layer_result r = test_layer_steps(n, c, s, layout, x, dy, weight, bias);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) assert_true(r.y[(i * c + 1) * s + j] == bias[1]);
        assert_true(r.running_mean[1] == 0.9f * 0.0f + 0.1f * 1234.567f);
        test_layer_result_free(&r);
    }
    assert_int_equal(test_layer_against_reference(n, c, s, SBN_NCS, x, dy, weight, bias, 2e-6), 0);
    free(x), free(dy);
}

/* NaN in one channel: that channel NaN, the others exact; no crash. */
static void test_nan_stays_in_its_channel(void **state)
{
    (void)state;
    const int64_t n = 4, c = 3, s = 6, count = n * c * s;
    float *x = alloc_floats(count), *dy = alloc_floats(count);
    test_rng rng = {9};
    test_fill_normal(&rng, x, count, 0, 1);
    test_fill_normal(&rng, dy, count, 0, 1);
    x[(2 * c + 2) * s + 3] = NAN;
    const float weight[3] = {1, 1, 1}, bias[3] = {0, 0, 0};
    for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
        test_layer_result r = test_layer_steps(n, c, s, layout, x, dy, weight, bias);
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < s; j++) {
                assert_true(isnan(r.y[(i * c + 2) * s + j]));
                assert_true(isfinite(r.y[(i * c + 0) * s + j]) && isfinite(r.y[(i * c + 1) * s + j]));
            }
        assert_true(isnan(r.running_mean[2]) && isnan(r.running_var[2]));
        assert_true(isfinite(r.running_mean[0]) && isfinite(r.running_var[1]));
        test_layer_result_free(&r);
    }
    free(x), free(dy);
}

/* Thread count changes results by rounding only; NCS and NSC agree. */
static void test_threads_and_layouts_agree(void **state)
{
    (void)state;
    const int64_t n = 16, c = 12, s = 49, count = n * c * s;
    float *x = alloc_floats(count), *dy = alloc_floats(count);
    test_rng rng = {11};
    test_fill_normal(&rng, x, count, 3, 2);
    test_fill_normal(&rng, dy, count, 0, 1);
    float w[12], b[12];
    for (int k = 0; k < 12; k++) w[k] = 1.0f + 0.1f * (float)k, b[k] = 0.5f * (float)k;
    omp_set_num_threads(1);
    test_layer_result base = test_layer_steps(n, c, s, SBN_NCS, x, dy, w, b);
    for (int threads = 1; threads <= 3; threads++) {
        omp_set_num_threads(threads);
        for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
            test_layer_result r = test_layer_steps(n, c, s, layout, x, dy, w, b);
            assert_int_equal(test_count_mismatches_float("y", r.y, base.y, count, 1e-6, 1e-6), 0);
            assert_int_equal(test_count_mismatches_float("dx", r.dx, base.dx, count, 1e-6, 1e-6), 0);
            assert_int_equal(test_count_mismatches_float("rv", r.running_var, base.running_var, c, 1e-6, 1e-6), 0);
            test_layer_result_free(&r);
        }
    }
    omp_set_num_threads(2);
    test_layer_result_free(&base);
    free(x), free(dy);
}

/* The stateless kernels on their own: stats of an empty batch, an eval
 * backward (fixed statistics), and the split vs fused training calls. */
static void test_kernels_directly(void **state)
{
    (void)state;
    double mean[3] = {9, 9, 9}, m2[3] = {9, 9, 9}, invstd[3];
    float y[1] = {0};
    assert_int_equal(sbn_kernel_channel_stats(mean, m2, (sbn_shape){0, 3, 4, SBN_NCS, SBN_DTYPE_F32}, y), SBN_OK);
    assert_true(mean[0] == 0 && m2[2] == 0);
    assert_int_equal(sbn_kernel_forward_train(y, mean, m2, invstd, (sbn_shape){0, 3, 4, SBN_NCS, SBN_DTYPE_F32}, y, NULL, NULL, 1e-5),
                     SBN_ERR_BATCH);

    const int64_t n = 5, c = 3, s = 4, count = n * c * s;
    float *x = alloc_floats(count), *dy = alloc_floats(count), *split = alloc_floats(count), *fused = alloc_floats(count);
    test_rng rng = {3};
    test_fill_normal(&rng, x, count, 1, 2);
    test_fill_normal(&rng, dy, count, 0, 1);
    for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
        const sbn_shape shape = {n, c, s, layout, SBN_DTYPE_F32};
        double sum_dy[3], sum_dy_xmu[3], fused_sum_dy[3], fused_sum_dy_xmu[3], mean_dy[3], mean_dy_xmu[3];
        assert_int_equal(sbn_kernel_forward_train(fused, mean, m2, invstd, shape, x, NULL, NULL, 1e-5), SBN_OK);
        assert_int_equal(sbn_kernel_normalize(split, shape, x, mean, invstd, NULL, NULL), SBN_OK);
        assert_int_equal(test_count_mismatches_float("normalize", split, fused, count, 0, 0), 0);
        assert_int_equal(sbn_kernel_backward_reduce(sum_dy, sum_dy_xmu, shape, x, dy, mean), SBN_OK);
        for (int k = 0; k < 3; k++) mean_dy[k] = sum_dy[k] / (n * s), mean_dy_xmu[k] = sum_dy_xmu[k] / (n * s);
        assert_int_equal(sbn_kernel_backward_apply(split, shape, x, dy, mean, invstd, NULL, mean_dy, mean_dy_xmu), SBN_OK);
        assert_int_equal(sbn_kernel_backward_train(fused, fused_sum_dy, fused_sum_dy_xmu, shape, x, dy, mean, invstd, NULL),
                         SBN_OK);
        assert_int_equal(test_count_mismatches_float("backward", split, fused, count, 1e-6, 1e-6), 0);
        /* Fixed statistics: dx = dy * invstd. */
        assert_int_equal(sbn_kernel_backward_apply(split, shape, x, dy, mean, invstd, NULL, NULL, NULL), SBN_OK);
        for (int64_t i = 0; i < count; i++) {
            const int64_t channel = layout == SBN_NCS ? (i / s) % c : i % c;
            assert_float_equal(split[i], dy[i] * invstd[channel], 1e-5);
        }
        assert_int_equal(sbn_kernel_backward_apply(split, shape, x, dy, mean, invstd, NULL, mean_dy, NULL), SBN_ERR_ARG);
    }
    free(x), free(dy), free(split), free(fused);
}

/* Empty tensors (s == 0 or c == 0) with a huge n: nothing to read, so every
 * kernel and the layer return at once (they used to loop over n or n*s
 * empty blocks: minutes for n = 2^30, forever for 2^50). */
static void test_empty_tensors_return_at_once(void **state)
{
    (void)state;
    const int64_t huge = (int64_t)1 << 50;
    float x[1] = {0}, y[1] = {0};
    double mean[3] = {9, 9, 9}, m2[3] = {9, 9, 9}, invstd[3] = {1, 1, 1};
    for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
        const sbn_shape no_values = {huge, 3, 0, layout, SBN_DTYPE_F32}, no_channels = {huge, 0, 1, layout, SBN_DTYPE_F32};
        assert_int_equal(sbn_kernel_channel_stats(mean, m2, no_values, x), SBN_OK);
        assert_true(mean[0] == 0.0 && m2[2] == 0.0);
        assert_int_equal(sbn_kernel_channel_stats(mean, m2, no_channels, x), SBN_OK);
        assert_int_equal(sbn_kernel_normalize(y, no_values, x, mean, invstd, NULL, NULL), SBN_OK);
        assert_int_equal(sbn_kernel_normalize(y, no_channels, x, mean, invstd, NULL, NULL), SBN_OK);
        assert_int_equal(sbn_kernel_forward_train(y, mean, m2, invstd, no_channels, x, NULL, NULL, 1e-5), SBN_OK);
        mean[1] = m2[1] = 9;
        assert_int_equal(sbn_kernel_backward_reduce(mean, m2, no_values, x, x, invstd), SBN_OK);
        assert_true(mean[1] == 0.0 && m2[1] == 0.0);
        assert_int_equal(sbn_kernel_backward_apply(y, no_values, x, x, mean, invstd, NULL, NULL, NULL), SBN_OK);
        assert_int_equal(sbn_kernel_backward_apply(y, no_channels, x, x, mean, invstd, NULL, mean, m2), SBN_OK);
        assert_int_equal(sbn_kernel_backward_train(y, mean, m2, no_channels, x, x, mean, invstd, NULL), SBN_OK);
        /* The layer in eval mode (running statistics) does the same. */
        sbn_bn *bn;
        assert_int_equal(sbn_bn_create(3, NULL, NULL, &bn), SBN_OK);
        assert_int_equal(sbn_bn_forward(bn, no_values, x, y, false), SBN_OK);
        assert_int_equal(sbn_bn_backward(bn, no_values, x, x, y), SBN_OK);
        assert_int_equal(sbn_bn_forward(bn, no_values, x, y, true), SBN_ERR_BATCH);
        sbn_bn_destroy(bn);
    }
    /* n*s must fit even when c == 0. */
    assert_int_equal(sbn_kernel_normalize(y, (sbn_shape){huge, 0, huge, SBN_NCS, SBN_DTYPE_F32}, x, mean, invstd, NULL, NULL),
                     SBN_ERR_SHAPE);
}

/* The same values at other addresses give the same bits: a resumed run
 * (checkpoints) must repeat every sum, and its buffers lie elsewhere. Both
 * layouts, short and long planes, 1 thread and the default. */
static void test_results_do_not_depend_on_addresses(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {{256, 6, 64}, {16, 5, 49}, {7, 3, 300}, {4, 3, 1000}, {9, 11, 17}};
    for (int threads = 1; threads <= 2; threads++)
        for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++)
            for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
                omp_set_num_threads(threads);
                const int64_t n = shapes[q][0], c = shapes[q][1], s = shapes[q][2], count = n * c * s;
                const sbn_shape shape = {n, c, s, (sbn_layout)layout, SBN_DTYPE_F32};
                float *x_base = malloc((size_t)(count + 16) * sizeof(float));
                float *dy_base = malloc((size_t)(count + 16) * sizeof(float));
                float *y = malloc((size_t)count * sizeof(float)), *y_first = malloc((size_t)count * sizeof(float));
                test_rng rng = {42 + (uint64_t)q};
                test_fill_normal(&rng, x_base, count, 0.5, 2.0);
                test_fill_normal(&rng, dy_base, count, 0.0, 1.0);
                double first[4][16], got[4][16], invstd[16];
                for (int offset = 0; offset < 16; offset++) {
                    float *x = x_base + offset, *dy = dy_base + (15 - offset);
                    if (offset > 0) { /* the same values, moved by one float */
                        memmove(x, x - 1, (size_t)count * sizeof(float));
                        memmove(dy, dy + 1, (size_t)count * sizeof(float));
                    }
                    assert_int_equal(sbn_kernel_forward_train(y, got[0], got[1], invstd, shape, x, NULL, NULL, 1e-5),
                                     SBN_OK);
                    assert_int_equal(sbn_kernel_backward_reduce(got[2], got[3], shape, x, dy, got[0]), SBN_OK);
                    if (offset == 0) {
                        memcpy(first, got, sizeof first);
                        memcpy(y_first, y, (size_t)count * sizeof(float));
                    } else {
                        assert_memory_equal(first, got, sizeof first);
                        assert_memory_equal(y_first, y, (size_t)count * sizeof(float));
                    }
                }
                free(x_base), free(dy_base), free(y), free(y_first);
            }
    omp_set_num_threads(omp_get_num_procs());
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sweep_matches_reference), cmocka_unit_test(test_offset_inputs),
        cmocka_unit_test(test_huge_values),             cmocka_unit_test(test_constant_channel_gives_bias),
        cmocka_unit_test(test_nan_stays_in_its_channel), cmocka_unit_test(test_threads_and_layouts_agree),
        cmocka_unit_test(test_kernels_directly),        cmocka_unit_test(test_empty_tensors_return_at_once),
        cmocka_unit_test(test_results_do_not_depend_on_addresses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
