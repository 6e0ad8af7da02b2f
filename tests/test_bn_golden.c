/* BN layer against PyTorch (float64) goldens: every mode, both layouts, in
 * place and out of place. Tolerances: outputs are float32 roundings of
 * double computations, so |got - want| <= 2e-6 + 2e-6*|want| is tight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "support/support.h"

static const double ATOL = 2e-6, RTOL = 2e-6;

static golden_case *cases;
static int case_count;

static void copy_layout(float *out, const float *in, const golden_case *g, sbn_layout layout)
{
    if (layout == SBN_NCS) memcpy(out, in, (size_t)(g->n * g->c * g->s) * sizeof *out);
    else test_ncs_to_nsc(out, in, g->n, g->c, g->s);
}

static void back_to_ncs(float *out, const float *in, const golden_case *g, sbn_layout layout)
{
    if (layout == SBN_NCS) memcpy(out, in, (size_t)(g->n * g->c * g->s) * sizeof *out);
    else test_nsc_to_ncs(out, in, g->n, g->c, g->s);
}

/* Runs every step of one case; returns the number of mismatching values. */
static int64_t run_case(const golden_case *g, sbn_layout layout, bool in_place)
{
    const int64_t count = g->n * g->c * g->s;
    sbn_bn *bn = NULL;
    assert_int_equal(sbn_bn_create(g->c, &g->options, NULL, &bn), SBN_OK);
    if (g->options.affine) {
        memcpy(sbn_bn_weight(bn), g->weight, (size_t)g->c * sizeof(float));
        memcpy(sbn_bn_bias(bn), g->bias, (size_t)g->c * sizeof(float));
    }
    float *x = malloc((size_t)count * sizeof *x), *dy = malloc((size_t)count * sizeof *dy);
    float *y = malloc((size_t)count * sizeof *y), *dx = malloc((size_t)count * sizeof *dx);
    float *ncs = malloc((size_t)count * sizeof *ncs);
    const sbn_shape shape = {g->n, g->c, g->s, layout, SBN_DTYPE_F32};
    int64_t bad = 0;
    for (int k = 0; k < g->step_count; k++) {
        const golden_step *s = &g->steps[k];
        char label[160];
        copy_layout(x, s->x, g, layout);
        copy_layout(dy, s->dy, g, layout);
        sbn_bn_zero_grad(bn);
        float *out = y, *grad = in_place ? dy : dx;
        if (in_place) memcpy(y, x, (size_t)count * sizeof *y); /* y aliases its input */
        assert_int_equal(sbn_bn_forward(bn, shape, in_place ? y : x, out, s->training), SBN_OK);
        assert_int_equal(sbn_bn_backward(bn, shape, x, dy, grad), SBN_OK);
        snprintf(label, sizeof label, "%s step %d layout %d%s y", g->name, k, layout, in_place ? " in-place" : "");
        back_to_ncs(ncs, out, g, layout);
        bad += test_count_mismatches(label, ncs, s->y, count, ATOL, RTOL);
        snprintf(label, sizeof label, "%s step %d layout %d%s dx", g->name, k, layout, in_place ? " in-place" : "");
        back_to_ncs(ncs, grad, g, layout);
        bad += test_count_mismatches(label, ncs, s->dx, count, ATOL, RTOL);
        if (g->options.affine) {
            bad += test_count_mismatches("grad_weight", sbn_bn_grad_weight(bn), s->grad_weight, g->c, ATOL, RTOL);
            bad += test_count_mismatches("grad_bias", sbn_bn_grad_bias(bn), s->grad_bias, g->c, ATOL, RTOL);
        } else {
            assert_null(sbn_bn_grad_weight(bn));
            assert_null(sbn_bn_weight(bn));
        }
        if (g->options.track_running_stats) {
            bad += test_count_mismatches("running_mean", sbn_bn_running_mean(bn), s->running_mean, g->c, ATOL, RTOL);
            bad += test_count_mismatches("running_var", sbn_bn_running_var(bn), s->running_var, g->c, ATOL, RTOL);
            assert_int_equal(sbn_bn_num_batches_tracked(bn), s->num_batches_tracked);
        } else {
            assert_null(sbn_bn_running_mean(bn));
            assert_int_equal(sbn_bn_num_batches_tracked(bn), 0);
        }
    }
    free(x), free(dy), free(y), free(dx), free(ncs);
    sbn_bn_destroy(bn);
    return bad;
}

static void test_golden_all_cases(sbn_layout layout, bool in_place)
{
    assert_true(case_count >= 24);
    int64_t bad = 0;
    for (int i = 0; i < case_count; i++) bad += run_case(&cases[i], layout, in_place);
    assert_int_equal(bad, 0);
}

static void test_golden_ncs(void **state) { (void)state, test_golden_all_cases(SBN_NCS, false); }
static void test_golden_nsc(void **state) { (void)state, test_golden_all_cases(SBN_NSC, false); }
static void test_golden_ncs_in_place(void **state) { (void)state, test_golden_all_cases(SBN_NCS, true); }
static void test_golden_nsc_in_place(void **state) { (void)state, test_golden_all_cases(SBN_NSC, true); }

/* The golden file covers the modes it claims to. */
static void test_golden_covers_modes(void **state)
{
    (void)state;
    int dims_seen[6] = {0}, cumulative = 0, untracked = 0, no_affine = 0, eval_steps = 0;
    for (int i = 0; i < case_count; i++) {
        dims_seen[cases[i].dims]++;
        cumulative += cases[i].options.cumulative;
        untracked += !cases[i].options.track_running_stats;
        no_affine += !cases[i].options.affine;
        for (int k = 0; k < cases[i].step_count; k++) eval_steps += !cases[i].steps[k].training;
    }
    assert_true(dims_seen[2] && dims_seen[3] && dims_seen[4] && dims_seen[5]);
    assert_true(cumulative && untracked && no_affine && eval_steps);
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "tests/golden/bn_golden.json";
    case_count = golden_load(path, &cases);
    if (case_count <= 0) {
        fprintf(stderr, "cannot load golden data from %s\n", path);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_covers_modes), cmocka_unit_test(test_golden_ncs),
        cmocka_unit_test(test_golden_nsc),          cmocka_unit_test(test_golden_ncs_in_place),
        cmocka_unit_test(test_golden_nsc_in_place),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    golden_free(cases, case_count);
    return failed;
}
