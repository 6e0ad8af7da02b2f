/* Every error path of the BN layer: the right status, a message naming the
 * problem, and the layer exactly as before (running statistics,
 * num_batches_tracked, parameters, gradients and the saved forward). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/support.h"

enum { C = 4, N = 3, S = 5, COUNT = N * C * S };

typedef struct snapshot {
    float weight[C], bias[C], running_mean[C], running_var[C], grad_weight[C], grad_bias[C];
    int64_t num_batches_tracked;
} snapshot;

static snapshot take_snapshot(sbn_bn *bn)
{
    snapshot s;
    memcpy(s.weight, sbn_bn_weight(bn), sizeof s.weight);
    memcpy(s.bias, sbn_bn_bias(bn), sizeof s.bias);
    memcpy(s.running_mean, sbn_bn_running_mean(bn), sizeof s.running_mean);
    memcpy(s.running_var, sbn_bn_running_var(bn), sizeof s.running_var);
    memcpy(s.grad_weight, sbn_bn_grad_weight(bn), sizeof s.grad_weight);
    memcpy(s.grad_bias, sbn_bn_grad_bias(bn), sizeof s.grad_bias);
    s.num_batches_tracked = sbn_bn_num_batches_tracked(bn);
    return s;
}

typedef struct fixture {
    sbn_bn *bn;
    float x[COUNT], dy[COUNT], y[COUNT], dx[COUNT];
    float dx_before[COUNT]; /* backward of the good forward, before the bad calls */
    snapshot before;
} fixture;

/* A layer with history: two training steps, so that every piece of state is
 * non-trivial, then a reference backward result taken without touching grads. */
static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    test_rng rng = {5};
    test_fill_normal(&rng, f->x, COUNT, 1, 2);
    test_fill_normal(&rng, f->dy, COUNT, 0, 1);
    if (sbn_bn_create(C, NULL, NULL, &f->bn) != SBN_OK) return -1;
    const sbn_shape shape = {N, C, S, SBN_NCS, SBN_DTYPE_F32};
    for (int k = 0; k < 2; k++) {
        if (sbn_bn_forward(f->bn, shape, f->x, f->y, true) != SBN_OK) return -1;
        if (sbn_bn_backward(f->bn, shape, f->x, f->dy, f->dx) != SBN_OK) return -1;
    }
    memcpy(f->dx_before, f->dx, sizeof f->dx);
    f->before = take_snapshot(f->bn);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sbn_bn_destroy(f->bn);
    free(f);
    return 0;
}

/* The state is as before, and backward still differentiates the last good forward. */
static void assert_unchanged(fixture *f)
{
    snapshot now = take_snapshot(f->bn);
    assert_memory_equal(&now, &f->before, sizeof now);
    float dx[COUNT];
    assert_int_equal(sbn_bn_backward(f->bn, (sbn_shape){N, C, S, SBN_NCS, SBN_DTYPE_F32}, f->x, f->dy, dx), SBN_OK);
    assert_memory_equal(dx, f->dx_before, sizeof dx);
    /* that backward added grads: put them back for the next check */
    memcpy(sbn_bn_grad_weight(f->bn), f->before.grad_weight, sizeof f->before.grad_weight);
    memcpy(sbn_bn_grad_bias(f->bn), f->before.grad_bias, sizeof f->before.grad_bias);
}

static void assert_error(sbn_status got, sbn_status want, const char *message_part)
{
    if (got != want) fprintf(stderr, "got %s, want %s (%s)\n", sbn_status_str(got), sbn_status_str(want), sbn_errmsg());
    assert_int_equal(got, want);
    if (!strstr(sbn_errmsg(), message_part)) fprintf(stderr, "message \"%s\" lacks \"%s\"\n", sbn_errmsg(), message_part);
    assert_non_null(strstr(sbn_errmsg(), message_part));
}

static void test_forward_errors(void **state)
{
    fixture *f = *state;
    const sbn_shape good = {N, C, S, SBN_NCS, SBN_DTYPE_F32};
    struct { sbn_shape shape; bool training; sbn_status status; const char *message; } cases[] = {
        {{-1, C, S, SBN_NCS, SBN_DTYPE_F32}, true, SBN_ERR_SHAPE, "negative"},
        {{N, -4, S, SBN_NCS, SBN_DTYPE_F32}, true, SBN_ERR_SHAPE, "negative"},
        {{N, C, -5, SBN_NCS, SBN_DTYPE_F32}, false, SBN_ERR_SHAPE, "negative"},
        {{(int64_t)1 << 40, C, (int64_t)1 << 30, SBN_NCS, SBN_DTYPE_F32}, true, SBN_ERR_SHAPE, "more elements"},
        {{INT64_MAX, C, 2, SBN_NSC, SBN_DTYPE_F32}, true, SBN_ERR_SHAPE, "more elements"},
        {{N, C + 1, S, SBN_NCS, SBN_DTYPE_F32}, true, SBN_ERR_SHAPE, "channels"},
        {{N, C, S, (sbn_layout)7, SBN_DTYPE_F32}, true, SBN_ERR_ARG, "layout"},
        {{1, C, 1, SBN_NCS, SBN_DTYPE_F32}, true, SBN_ERR_BATCH, "more than 1 value per channel"},
        {{0, C, S, SBN_NSC, SBN_DTYPE_F32}, true, SBN_ERR_BATCH, "more than 1 value per channel"},
        {{5, C, 0, SBN_NCS, SBN_DTYPE_F32}, true, SBN_ERR_BATCH, "more than 1 value per channel"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        assert_error(sbn_bn_forward(f->bn, cases[i].shape, f->x, f->y, cases[i].training), cases[i].status,
                     cases[i].message);
        assert_unchanged(f);
    }
    assert_error(sbn_bn_forward(NULL, good, f->x, f->y, true), SBN_ERR_ARG, "bn is NULL");
    assert_error(sbn_bn_forward(f->bn, good, NULL, f->y, true), SBN_ERR_ARG, "x is NULL");
    assert_error(sbn_bn_forward(f->bn, good, f->x, NULL, false), SBN_ERR_ARG, "y is NULL");
    assert_unchanged(f);
}

static void test_backward_errors(void **state)
{
    fixture *f = *state;
    const sbn_shape good = {N, C, S, SBN_NCS, SBN_DTYPE_F32};
    assert_error(sbn_bn_backward(f->bn, (sbn_shape){N - 1, C, S, SBN_NCS, SBN_DTYPE_F32}, f->x, f->dy, f->dx), SBN_ERR_SHAPE,
                 "differs from the last forward");
    assert_error(sbn_bn_backward(f->bn, (sbn_shape){N, C, S, SBN_NSC, SBN_DTYPE_F32}, f->x, f->dy, f->dx), SBN_ERR_SHAPE,
                 "differs from the last forward");
    assert_error(sbn_bn_backward(f->bn, (sbn_shape){N, C + 2, S, SBN_NCS, SBN_DTYPE_F32}, f->x, f->dy, f->dx), SBN_ERR_SHAPE,
                 "channels");
    assert_error(sbn_bn_backward(f->bn, good, f->x, NULL, f->dx), SBN_ERR_ARG, "dy is NULL");
    assert_error(sbn_bn_backward(f->bn, good, NULL, f->dy, f->dx), SBN_ERR_ARG, "x is NULL");
    assert_error(sbn_bn_backward(NULL, good, f->x, f->dy, f->dx), SBN_ERR_ARG, "bn is NULL");
    assert_unchanged(f);
}

/* A failed forward does not replace the saved one: backward still refers to
 * the last good forward (assert_unchanged checks dx). */
static void test_failed_forward_keeps_saved_forward(void **state)
{
    fixture *f = *state;
    assert_int_equal(sbn_bn_forward(f->bn, (sbn_shape){1, C, 1, SBN_NCS, SBN_DTYPE_F32}, f->x, f->y, true), SBN_ERR_BATCH);
    assert_unchanged(f);
}

static void test_backward_before_forward(void **state)
{
    (void)state;
    sbn_bn *bn;
    float x[COUNT] = {0}, dy[COUNT] = {0}, dx[COUNT];
    assert_int_equal(sbn_bn_create(C, NULL, NULL, &bn), SBN_OK);
    assert_error(sbn_bn_backward(bn, (sbn_shape){N, C, S, SBN_NCS, SBN_DTYPE_F32}, x, dy, dx), SBN_ERR_ARG, "before any successful forward");
    assert_int_equal(sbn_bn_grad_weight(bn)[0], 0.0f);
    /* A failed forward does not count as one. */
    assert_int_equal(sbn_bn_forward(bn, (sbn_shape){1, C, 1, SBN_NCS, SBN_DTYPE_F32}, x, dx, true), SBN_ERR_BATCH);
    assert_int_equal(sbn_bn_backward(bn, (sbn_shape){1, C, 1, SBN_NCS, SBN_DTYPE_F32}, x, dy, dx), SBN_ERR_ARG);
    assert_int_equal(sbn_bn_num_batches_tracked(bn), 0);
    sbn_bn_destroy(bn);
}

/* Eval without running statistics uses batch statistics and needs 2 values too. */
static void test_untracked_eval_needs_two_values(void **state)
{
    (void)state;
    sbn_bn_options options = sbn_bn_defaults();
    options.track_running_stats = false;
    sbn_bn *bn;
    float x[C] = {1, 2, 3, 4}, y[C];
    assert_int_equal(sbn_bn_create(C, &options, NULL, &bn), SBN_OK);
    assert_error(sbn_bn_forward(bn, (sbn_shape){1, C, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, false), SBN_ERR_BATCH, "more than 1 value");
    /* Tracked eval of one sample is fine. */
    sbn_bn *tracked;
    assert_int_equal(sbn_bn_create(C, NULL, NULL, &tracked), SBN_OK);
    assert_int_equal(sbn_bn_forward(tracked, (sbn_shape){1, C, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, false), SBN_OK);
    assert_float_equal(y[3], 4.0f / sqrtf(1.0f + 1e-5f), 1e-6);
    sbn_bn_destroy(bn);
    sbn_bn_destroy(tracked);
}

static void test_create_errors(void **state)
{
    (void)state;
    sbn_bn *bn = (sbn_bn *)0x1;
    sbn_bn_options options = sbn_bn_defaults();
    assert_error(sbn_bn_create(0, NULL, NULL, &bn), SBN_ERR_SHAPE, "channels");
    assert_null(bn);
    assert_error(sbn_bn_create(-3, NULL, NULL, &bn), SBN_ERR_SHAPE, "channels");
    assert_error(sbn_bn_create(4, NULL, NULL, NULL), SBN_ERR_ARG, "out is NULL");
    options.eps = -1e-5;
    assert_error(sbn_bn_create(4, &options, NULL, &bn), SBN_ERR_ARG, "eps");
    options.eps = NAN;
    assert_error(sbn_bn_create(4, &options, NULL, &bn), SBN_ERR_ARG, "eps");
    options = sbn_bn_defaults();
    options.momentum = 1.5;
    assert_error(sbn_bn_create(4, &options, NULL, &bn), SBN_ERR_ARG, "momentum");
    options.momentum = NAN;
    assert_error(sbn_bn_create(4, &options, NULL, &bn), SBN_ERR_ARG, "momentum");
    options.cumulative = true; /* momentum is ignored then */
    assert_int_equal(sbn_bn_create(4, &options, NULL, &bn), SBN_OK);
    sbn_bn_destroy(bn);
    sbn_bn_destroy(NULL);
}

static void test_initial_state_and_accessors(void **state)
{
    (void)state;
    sbn_bn *bn;
    assert_int_equal(sbn_bn_create(3, NULL, NULL, &bn), SBN_OK);
    for (int c = 0; c < 3; c++) {
        assert_true(sbn_bn_weight(bn)[c] == 1.0f && sbn_bn_bias(bn)[c] == 0.0f);
        assert_true(sbn_bn_running_mean(bn)[c] == 0.0f && sbn_bn_running_var(bn)[c] == 1.0f);
        assert_true(sbn_bn_grad_weight(bn)[c] == 0.0f && sbn_bn_grad_bias(bn)[c] == 0.0f);
    }
    assert_int_equal(sbn_bn_num_batches_tracked(bn), 0);
    sbn_bn_set_num_batches_tracked(bn, 41);
    assert_int_equal(sbn_bn_num_batches_tracked(bn), 41);
    sbn_bn_set_num_batches_tracked(bn, -2);
    assert_int_equal(sbn_bn_num_batches_tracked(bn), 0);
    assert_int_equal(sbn_bn_channels(bn), 3);
    sbn_bn_destroy(bn);
    sbn_bn_options options = sbn_bn_defaults();
    assert_true(options.eps == 1e-5 && options.momentum == 0.1 && !options.cumulative && options.affine &&
                options.track_running_stats);
}

static void test_status_names(void **state)
{
    (void)state;
    const char *names[] = {"SBN_OK", "SBN_ERR_ARG", "SBN_ERR_SHAPE", "SBN_ERR_BATCH", "SBN_ERR_NOMEM",
                           "SBN_ERR_COMM", "SBN_ERR_MISMATCH", "SBN_ERR_IO", "SBN_ERR_FORMAT"};
    for (int s = 0; s < 9; s++) assert_string_equal(sbn_status_str((sbn_status)s), names[s]);
    assert_string_equal(sbn_status_str((sbn_status)99), "SBN_UNKNOWN_STATUS");
    assert_non_null(sbn_errmsg());
}

static void test_kernel_argument_errors(void **state)
{
    (void)state;
    double mean[2], m2[2], invstd[2] = {1, 1};
    float x[4] = {1, 2, 3, 4}, y[4];
    const sbn_shape shape = {2, 2, 1, SBN_NCS, SBN_DTYPE_F32};
    assert_error(sbn_kernel_channel_stats(NULL, m2, shape, x), SBN_ERR_ARG, "mean is NULL");
    assert_error(sbn_kernel_channel_stats(mean, m2, shape, NULL), SBN_ERR_ARG, "x is NULL");
    assert_error(sbn_kernel_forward_train(y, mean, m2, invstd, shape, x, NULL, NULL, -1.0), SBN_ERR_ARG, "eps");
    assert_error(sbn_kernel_normalize(y, (sbn_shape){2, 2, 1, (sbn_layout)-1, SBN_DTYPE_F32}, x, mean, invstd, NULL, NULL),
                 SBN_ERR_ARG, "layout");
    assert_error(sbn_kernel_normalize(y, shape, x, mean, NULL, NULL, NULL), SBN_ERR_ARG, "invstd is NULL");
    assert_error(sbn_kernel_backward_reduce(mean, m2, shape, x, NULL, mean), SBN_ERR_ARG, "dy is NULL");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_forward_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backward_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_forward_keeps_saved_forward, setup, teardown),
        cmocka_unit_test(test_backward_before_forward),
        cmocka_unit_test(test_untracked_eval_needs_two_values),
        cmocka_unit_test(test_create_errors),
        cmocka_unit_test(test_initial_state_and_accessors),
        cmocka_unit_test(test_status_names),
        cmocka_unit_test(test_kernel_argument_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
