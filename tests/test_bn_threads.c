/* BN is right whatever OpenMP grants. Every pass (training forward and
 * backward, eval forward and backward, the standalone statistics kernel)
 * in both layouts and for (N,C) inputs is checked against the float64
 * reference under each condition in which OpenMP may run fewer threads than
 * a region asks for:
 *   - any omp_set_num_threads (1, 2, 3, 8 on a 2-core machine),
 *   - called from inside an outer parallel region, nested levels off (the
 *     inner region gets one thread) and on,
 *   - omp_set_dynamic(1),
 * and, as separate ctest runs of this program, OMP_THREAD_LIMIT=1,
 * OMP_NUM_THREADS=8 with OMP_THREAD_LIMIT=2, and OMP_DYNAMIC=true. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <omp.h>

#include "support/support.h"

typedef struct case_shape { int64_t n, c, s; sbn_layout layout; } case_shape;

/* (N,C) inputs (s == 1) and channels-last take the row-split reductions;
 * channels-first with s > 1 the per-channel ones. */
static const case_shape shapes[] = {
    {64, 16, 1, SBN_NCS}, {64, 16, 1, SBN_NSC}, {8, 16, 49, SBN_NSC}, {8, 16, 49, SBN_NCS},
    {5, 3, 30, SBN_NSC},  {3, 7, 5, SBN_NCS},   {1000, 3, 1, SBN_NCS}, {2, 1, 1, SBN_NSC},
};

static const double TOL = 2e-6;

/* sbn_kernel_channel_stats against the plain two-pass double formula. */
static int64_t stats_mismatches(case_shape t, const float *x_ncs)
{
    const int64_t count = t.n * t.c * t.s;
    float *x = calloc((size_t)count, sizeof *x);
    if (t.layout == SBN_NSC) test_ncs_to_nsc(x, x_ncs, t.n, t.c, t.s);
    else for (int64_t i = 0; i < count; i++) x[i] = x_ncs[i];
    double mean[16], m2[16];
    int64_t bad = 0;
    if (sbn_kernel_channel_stats(mean, m2, (sbn_shape){t.n, t.c, t.s, t.layout, SBN_DTYPE_F32}, x) != SBN_OK) bad++;
    for (int64_t c = 0; c < t.c && !bad; c++) {
        double sum = 0.0, sq = 0.0;
        for (int64_t i = 0; i < t.n; i++)
            for (int64_t j = 0; j < t.s; j++) sum += x_ncs[(i * t.c + c) * t.s + j];
        const double want_mean = sum / (double)(t.n * t.s);
        for (int64_t i = 0; i < t.n; i++)
            for (int64_t j = 0; j < t.s; j++) {
                const double d = x_ncs[(i * t.c + c) * t.s + j] - want_mean;
                sq += d * d;
            }
        if (fabs(mean[c] - want_mean) > 1e-9 * (1 + fabs(want_mean)) || fabs(m2[c] - sq) > 1e-9 * (1 + sq)) {
            fprintf(stderr, "channel_stats channel %lld: mean %.17g (want %.17g), m2 %.17g (want %.17g)\n",
                    (long long)c, mean[c], want_mean, m2[c], sq);
            bad++;
        }
    }
    free(x);
    return bad;
}

/* Every shape, every pass; returns the mismatches (no cmocka calls, so it
 * may run on any OpenMP thread). */
static int64_t check_all_shapes(uint64_t seed)
{
    int64_t bad = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        const case_shape t = shapes[i];
        const int64_t count = t.n * t.c * t.s;
        float *x = calloc((size_t)count, sizeof *x), *dy = calloc((size_t)count, sizeof *dy);
        float weight[16], bias[16];
        test_rng rng = {seed + i};
        test_fill_normal(&rng, x, count, 2.0, 3.0);
        test_fill_normal(&rng, dy, count, 0.0, 1.0);
        for (int64_t c = 0; c < t.c; c++)
            weight[c] = (float)(0.5 + test_rng_uniform(&rng)), bias[c] = (float)test_rng_normal(&rng);
        const int64_t shape_bad = test_layer_against_reference(t.n, t.c, t.s, t.layout, x, dy, weight, bias, TOL) +
                                  stats_mismatches(t, x);
        if (shape_bad)
            fprintf(stderr, "shape (%lld,%lld,%lld) layout %s, %d threads granted of %d: %lld mismatches\n",
                    (long long)t.n, (long long)t.c, (long long)t.s, t.layout == SBN_NSC ? "NSC" : "NCS",
                    omp_get_num_threads(), omp_get_max_threads(), (long long)shape_bad);
        bad += shape_bad;
        free(x), free(dy);
    }
    return bad;
}

static void test_any_requested_thread_count(void **state)
{
    (void)state;
    const int saved = omp_get_max_threads();
    const int counts[] = {1, 2, 3, 8};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        omp_set_num_threads(counts[k]);
        assert_int_equal(check_all_shapes(100 + k), 0);
    }
    omp_set_num_threads(saved);
}

/* Two outer threads each run every check on their own data. */
static void run_inside_outer_region(int max_active_levels)
{
    const int saved_levels = omp_get_max_active_levels(), saved_threads = omp_get_max_threads();
    omp_set_max_active_levels(max_active_levels);
    omp_set_num_threads(3);
    int64_t bad[2] = {0, 0};
#pragma omp parallel num_threads(2)
    bad[omp_get_thread_num()] = check_all_shapes(200 + (uint64_t)omp_get_thread_num());
    omp_set_max_active_levels(saved_levels);
    omp_set_num_threads(saved_threads);
    assert_int_equal(bad[0], 0);
    assert_int_equal(bad[1], 0);
}

static void test_inside_parallel_region_nesting_off(void **state)
{
    (void)state;
    run_inside_outer_region(1);
}

static void test_inside_parallel_region_nesting_on(void **state)
{
    (void)state;
    run_inside_outer_region(2);
}

static void test_dynamic_threads(void **state)
{
    (void)state;
    const int saved_dynamic = omp_get_dynamic(), saved_threads = omp_get_max_threads();
    omp_set_dynamic(1);
    omp_set_num_threads(8);
    const int64_t bad = check_all_shapes(300);
    omp_set_dynamic(saved_dynamic);
    omp_set_num_threads(saved_threads);
    assert_int_equal(bad, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_any_requested_thread_count),
        cmocka_unit_test(test_inside_parallel_region_nesting_off),
        cmocka_unit_test(test_inside_parallel_region_nesting_on),
        cmocka_unit_test(test_dynamic_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
