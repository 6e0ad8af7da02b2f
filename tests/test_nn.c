/* The CNN stack: whole models against PyTorch (float64) over two SGD steps,
 * and each layer kernel against a plain float64 reference or finite
 * differences (shapes the models do not use: strides, no padding). */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <syncbn/nn.h>

#include "support/support.h"

static const char *golden_path;

/* ---------- whole models against PyTorch ---------- */

static int64_t run_golden_case(const nn_golden_case *g)
{
    sbn_model *model;
    assert_int_equal(sbn_model_create(g->convnet ? SBN_MODEL_CONVNET : SBN_MODEL_SEED, g->in_channels, g->height,
                                      g->width, g->classes, g->norm ? SBN_NORM_BN : SBN_NORM_NONE, NULL, 1, &model),
                     SBN_OK);
    const int64_t count = sbn_model_parameter_count(model);
    assert_int_equal(count, g->param_count);
    float *params = sbn_model_parameters(model), *velocity = calloc((size_t)count, sizeof(float));
    for (int64_t i = 0; i < count; i++) params[i] = (float)g->initial_params[i];
    const int64_t inputs = g->n * g->in_channels * g->height * g->width;
    float *x = malloc((size_t)inputs * sizeof *x), *dlogits = malloc((size_t)(g->n * g->classes) * sizeof *dlogits);
    const sbn_sgd_options sgd = {g->lr, g->momentum, g->weight_decay};
    int64_t bad = 0;
    for (int k = 0; k < g->step_count; k++) {
        const nn_golden_step *s = &g->steps[k];
        for (int64_t i = 0; i < inputs; i++) x[i] = (float)s->x[i];
        const float *logits;
        double loss;
        int64_t correct;
        sbn_model_zero_grad(model);
        assert_int_equal(sbn_model_forward(model, x, g->n, true, &logits), SBN_OK);
        assert_int_equal(sbn_cross_entropy(dlogits, &loss, &correct, logits, s->labels, g->n, g->classes), SBN_OK);
        assert_int_equal(sbn_model_backward(model, dlogits), SBN_OK);
        bad += test_count_mismatches("logits", logits, s->logits, g->n * g->classes, 1e-5, 1e-4);
        bad += fabs(loss - s->loss) > 1e-5 * (1 + fabs(s->loss));
        bad += test_count_mismatches("grads", sbn_model_gradients(model), s->grads, count, 1e-5, 1e-3);
        sbn_sgd_step(params, velocity, sbn_model_gradients(model), count, sgd, k == 0);
        bad += test_count_mismatches("params_after", params, s->params_after, count, 1e-5, 1e-4);
        for (int b = 0; b < sbn_model_bn_count(model); b++) {
            sbn_bn *bn = sbn_model_bn(model, b);
            const int64_t offset = b == 0 ? 0 : 16;
            bad += test_count_mismatches("running_mean", sbn_bn_running_mean(bn), s->running_mean + offset,
                                         sbn_bn_channels(bn), 1e-5, 1e-4);
            bad += test_count_mismatches("running_var", sbn_bn_running_var(bn), s->running_var + offset,
                                         sbn_bn_channels(bn), 1e-5, 1e-4);
        }
        if (bad) fprintf(stderr, "%s step %d: %lld mismatches\n", g->name, k, (long long)bad);
    }
    free(x), free(dlogits), free(velocity);
    sbn_model_destroy(model);
    return bad;
}

static void test_models_match_pytorch(void **state)
{
    (void)state;
    nn_golden_case *cases;
    const int count = nn_golden_load(golden_path, &cases);
    assert_int_equal(count, 4);
    int64_t bad = 0;
    for (int i = 0; i < count; i++) bad += run_golden_case(&cases[i]);
    nn_golden_free(cases, count);
    assert_int_equal(bad, 0);
}

/* ---------- conv2d against direct convolution in double ---------- */

static void test_conv2d_against_direct(void **state)
{
    (void)state;
    const sbn_conv2d_dims cases[] = {{3, 2, 4, 7, 6, 3, 2, 0}, {2, 3, 2, 5, 5, 3, 1, 2}, {1, 1, 3, 4, 6, 2, 1, 0}};
    test_rng rng = {17};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const sbn_conv2d_dims d = cases[t];
        const int64_t ho = sbn_conv2d_out_size(d.height, d.kernel, d.stride, d.padding);
        const int64_t wo = sbn_conv2d_out_size(d.width, d.kernel, d.stride, d.padding);
        const int64_t nx = d.n * d.in_channels * d.height * d.width, ny = d.n * d.out_channels * ho * wo;
        const int64_t nw = d.out_channels * d.in_channels * d.kernel * d.kernel;
        float *x = malloc((size_t)nx * 4), *w = malloc((size_t)nw * 4), *b = malloc((size_t)d.out_channels * 4);
        float *y = malloc((size_t)ny * 4), *dy = malloc((size_t)ny * 4), *dx = malloc((size_t)nx * 4);
        float *dw = calloc((size_t)nw, 4), *db = calloc((size_t)d.out_channels, 4);
        float *cols = malloc((size_t)sbn_conv2d_cols_size(d) * 4), *scratch = malloc((size_t)sbn_conv2d_cols_size(d) * 4);
        double *ry = calloc((size_t)ny, 8), *rdx = calloc((size_t)nx, 8), *rdw = calloc((size_t)nw, 8);
        double *rdb = calloc((size_t)d.out_channels, 8);
        test_fill_normal(&rng, x, nx, 0, 1), test_fill_normal(&rng, w, nw, 0, 0.5);
        test_fill_normal(&rng, b, d.out_channels, 0, 1), test_fill_normal(&rng, dy, ny, 0, 1);
        for (int64_t s = 0; s < d.n; s++)
            for (int64_t o = 0; o < d.out_channels; o++)
                for (int64_t i = 0; i < ho; i++)
                    for (int64_t j = 0; j < wo; j++) {
                        const int64_t yi = ((s * d.out_channels + o) * ho + i) * wo + j;
                        double acc = b[o];
                        rdb[o] += dy[yi];
                        for (int64_t c = 0; c < d.in_channels; c++)
                            for (int64_t a = 0; a < d.kernel; a++)
                                for (int64_t e = 0; e < d.kernel; e++) {
                                    const int64_t r = i * d.stride - d.padding + a, q = j * d.stride - d.padding + e;
                                    if (r < 0 || r >= d.height || q < 0 || q >= d.width) continue;
                                    const int64_t xi = ((s * d.in_channels + c) * d.height + r) * d.width + q;
                                    const int64_t wi = ((o * d.in_channels + c) * d.kernel + a) * d.kernel + e;
                                    acc += (double)x[xi] * w[wi];
                                    rdx[xi] += (double)dy[yi] * w[wi];
                                    rdw[wi] += (double)dy[yi] * x[xi];
                                }
                        ry[yi] = acc;
                    }
        assert_int_equal(sbn_conv2d_forward(y, cols, x, w, b, d), SBN_OK);
        assert_int_equal(sbn_conv2d_backward(dx, dw, db, scratch, dy, cols, w, d), SBN_OK);
        assert_int_equal(test_count_mismatches("conv y", y, ry, ny, 1e-5, 1e-5), 0);
        assert_int_equal(test_count_mismatches("conv dx", dx, rdx, nx, 1e-5, 1e-5), 0);
        assert_int_equal(test_count_mismatches("conv dw", dw, rdw, nw, 1e-5, 1e-5), 0);
        assert_int_equal(test_count_mismatches("conv db", db, rdb, d.out_channels, 1e-5, 1e-5), 0);
        free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(cols), free(scratch);
        free(ry), free(rdx), free(rdw), free(rdb);
    }
    sbn_conv2d_dims bad = {1, 1, 1, 2, 2, 3, 1, 0};
    float buffer[16] = {0};
    assert_int_equal(sbn_conv2d_forward(buffer, buffer, buffer, buffer, NULL, bad), SBN_ERR_SHAPE);
}

/* ---------- maxpool, linear, cross-entropy ---------- */

static void test_maxpool(void **state)
{
    (void)state;
    /* 3x5 plane, kernel 2 stride 1 (overlapping windows) */
    const float x[15] = {1, 5, 2, 0, 3, 4, 4, 9, 1, 1, -1, 7, 2, 8, 0};
    float y[8], dx[15];
    int32_t argmax[8];
    assert_int_equal(sbn_maxpool2d_forward(y, argmax, x, 1, 1, 3, 5, 2, 1), SBN_OK);
    const float want[8] = {5, 9, 9, 3, 7, 9, 9, 8};
    for (int k = 0; k < 8; k++) assert_true(y[k] == want[k]);
    const float dy[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    sbn_maxpool2d_backward(dx, dy, argmax, 1, 1, 3, 5, 2, 1);
    assert_true(dx[7] == 4.0f && dx[1] == 1.0f && dx[4] == 1.0f && dx[11] == 1.0f && dx[13] == 1.0f && dx[0] == 0.0f);
    const float with_nan[4] = {1, NAN, 3, 2};
    assert_int_equal(sbn_maxpool2d_forward(y, argmax, with_nan, 1, 1, 2, 2, 2, 2), SBN_OK);
    assert_true(isnan(y[0]));
    assert_int_equal(sbn_maxpool2d_forward(y, argmax, x, 1, 1, 1, 5, 2, 2), SBN_ERR_SHAPE);
}

static void test_linear_against_direct(void **state)
{
    (void)state;
    enum { N = 5, IN = 7, OUT = 3 };
    test_rng rng = {23};
    float x[N * IN], w[OUT * IN], b[OUT], y[N * OUT], dy[N * OUT], dx[N * IN], dw[OUT * IN] = {0}, db[OUT] = {0};
    test_fill_normal(&rng, x, N * IN, 0, 1), test_fill_normal(&rng, w, OUT * IN, 0, 1);
    test_fill_normal(&rng, b, OUT, 0, 1), test_fill_normal(&rng, dy, N * OUT, 0, 1);
    double ry[N * OUT], rdx[N * IN] = {0}, rdw[OUT * IN] = {0}, rdb[OUT] = {0};
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OUT; o++) {
            ry[i * OUT + o] = b[o];
            rdb[o] += dy[i * OUT + o];
            for (int k = 0; k < IN; k++) {
                ry[i * OUT + o] += (double)x[i * IN + k] * w[o * IN + k];
                rdx[i * IN + k] += (double)dy[i * OUT + o] * w[o * IN + k];
                rdw[o * IN + k] += (double)dy[i * OUT + o] * x[i * IN + k];
            }
        }
    assert_int_equal(sbn_linear_forward(y, x, w, b, N, IN, OUT), SBN_OK);
    assert_int_equal(sbn_linear_backward(dx, dw, db, dy, x, w, N, IN, OUT), SBN_OK);
    assert_int_equal(test_count_mismatches("linear y", y, ry, N * OUT, 1e-5, 1e-5), 0);
    assert_int_equal(test_count_mismatches("linear dx", dx, rdx, N * IN, 1e-5, 1e-5), 0);
    assert_int_equal(test_count_mismatches("linear dw", dw, rdw, OUT * IN, 1e-5, 1e-5), 0);
    assert_int_equal(test_count_mismatches("linear db", db, rdb, OUT, 1e-5, 1e-5), 0);
}

/* Finite differences of the loss in double against dlogits; large logits must not overflow. */
static void test_cross_entropy(void **state)
{
    (void)state;
    enum { N = 4, K = 5 };
    float logits[N * K], dlogits[N * K], probe[N * K];
    const uint8_t labels[N] = {0, 4, 2, 2};
    test_rng rng = {29};
    test_fill_normal(&rng, logits, N * K, 0, 2);
    double loss, loss_plus, loss_minus;
    int64_t correct;
    assert_int_equal(sbn_cross_entropy(dlogits, &loss, &correct, logits, labels, N, K), SBN_OK);
    for (int i = 0; i < N * K; i++) {
        const float h = 1e-2f;
        memcpy(probe, logits, sizeof probe);
        probe[i] = logits[i] + h;
        float scratch[N * K];
        sbn_cross_entropy(scratch, &loss_plus, &correct, probe, labels, N, K);
        probe[i] = logits[i] - h;
        sbn_cross_entropy(scratch, &loss_minus, &correct, probe, labels, N, K);
        assert_float_equal(dlogits[i], (loss_plus - loss_minus) / (2.0 * h), 2e-4);
    }
    const float huge[2 * K] = {1e30f, 0, 0, 0, 0, -1e30f, 1e30f, 0, 0, 0};
    const uint8_t huge_labels[2] = {0, 0};
    assert_int_equal(sbn_cross_entropy(dlogits, &loss, &correct, huge, huge_labels, 2, K), SBN_OK);
    assert_true(isfinite(loss) && correct == 1);
    const uint8_t bad_labels[N] = {0, 9, 1, 1};
    assert_int_equal(sbn_cross_entropy(dlogits, &loss, &correct, logits, bad_labels, N, K), SBN_ERR_ARG);
}

static void test_sgd_matches_torch_rule(void **state)
{
    (void)state;
    float p[2] = {1.0f, -2.0f}, v[2] = {0, 0};
    const float g[2] = {0.5f, 0.25f};
    const sbn_sgd_options o = {0.1, 0.9, 0.01};
    sbn_sgd_step(p, v, g, 2, o, true); /* buf = g + wd*p */
    assert_float_equal(p[0], 1.0f - 0.1f * (0.5f + 0.01f), 1e-7);
    const float buf0 = 0.5f + 0.01f, p0 = p[0];
    sbn_sgd_step(p, v, g, 2, o, false);
    assert_float_equal(p[0], p0 - 0.1f * (0.9f * buf0 + 0.5f + 0.01f * p0), 1e-6);
}

/* ---------- the model object ---------- */

static void test_model_init_and_errors(void **state)
{
    (void)state;
    sbn_model *m;
    assert_int_equal(sbn_model_create(SBN_MODEL_CONVNET, 1, 28, 28, 10, SBN_NORM_BN, NULL, 42, &m), SBN_OK);
    /* conv1 16*9+16, bn 32, conv2 32*16*9+32, bn 64, linear 1568*10+10 */
    assert_int_equal(sbn_model_parameter_count(m), 160 + 32 + 4640 + 64 + 15690);
    assert_int_equal(sbn_model_bn_count(m), 2);
    const float *p = sbn_model_parameters(m);
    double sum = 0, sum_sq = 0; /* conv2 weights: uniform(+-1/sqrt(144)) */
    for (int i = 192; i < 192 + 4608; i++) {
        assert_true(fabsf(p[i]) <= 1.0f / 12.0f);
        sum += p[i], sum_sq += (double)p[i] * p[i];
    }
    assert_true(fabs(sum / 4608) < 0.003);
    assert_float_equal(sum_sq / 4608, (1.0 / 144) / 3.0, 2e-4);
    float dlogits[10] = {0};
    assert_int_equal(sbn_model_backward(m, dlogits), SBN_ERR_ARG);
    sbn_model *same;
    assert_int_equal(sbn_model_create(SBN_MODEL_CONVNET, 1, 28, 28, 10, SBN_NORM_BN, NULL, 42, &same), SBN_OK);
    assert_memory_equal(sbn_model_parameters(same), p, (size_t)sbn_model_parameter_count(m) * sizeof(float));
    sbn_model_destroy(same);
    /* convert_sync_batchnorm keeps the running statistics */
    sbn_bn_running_mean(sbn_model_bn(m, 1))[3] = 0.75f;
    sbn_comm *self;
    assert_int_equal(sbn_comm_create_self(&self), SBN_OK);
    assert_int_equal(sbn_model_convert_sync_batchnorm(m, self), SBN_OK);
    assert_true(sbn_bn_running_mean(sbn_model_bn(m, 1))[3] == 0.75f);
    float images[2 * 28 * 28];
    for (int i = 0; i < 2 * 28 * 28; i++) images[i] = (float)(i % 13) * 0.1f;
    const float *logits;
    const sbn_comm_counters before = sbn_comm_get_counters(self);
    assert_int_equal(sbn_model_forward(m, images, 2, true, &logits), SBN_OK);
    assert_int_equal(sbn_comm_get_counters(self).collectives - before.collectives, 2); /* one per BN layer */
    sbn_model_destroy(m);
    sbn_comm_destroy(self);
    assert_int_equal(sbn_model_create(SBN_MODEL_SEED, 1, 28, 28, 10, SBN_NORM_SYNC, NULL, 1, &m), SBN_ERR_ARG);
    assert_int_equal(sbn_model_create(SBN_MODEL_CONVNET, 1, 3, 3, 10, SBN_NORM_BN, NULL, 1, &m), SBN_ERR_SHAPE);
    assert_int_equal(sbn_model_create((sbn_model_kind)9, 1, 28, 28, 10, SBN_NORM_BN, NULL, 1, &m), SBN_ERR_ARG);
    assert_null(m);
}

/* A model with each BN -> ReLU fused gives the unfused model's logits,
 * gradients and running statistics bit for bit, over training steps (with
 * SGD between them) and an eval forward; switching back restores it. */
static void test_fused_relu_model_is_bit_identical(void **state)
{
    (void)state;
    for (int kind = SBN_MODEL_SEED; kind <= SBN_MODEL_CONVNET; kind++) {
        sbn_model *plain, *fused;
        assert_int_equal(sbn_model_create((sbn_model_kind)kind, 1, 12, 12, 4, SBN_NORM_BN, NULL, 7, &plain), SBN_OK);
        assert_int_equal(sbn_model_create((sbn_model_kind)kind, 1, 12, 12, 4, SBN_NORM_BN, NULL, 7, &fused), SBN_OK);
        assert_int_equal(sbn_model_set_fuse_relu(fused, true), SBN_OK);
        assert_true(sbn_bn_get_options(sbn_model_bn(fused, 0)).fuse_relu);
        const int64_t n = 6, params = sbn_model_parameter_count(plain);
        float images[6 * 144], dlogits[6 * 4];
        test_rng rng = {99};
        test_fill_normal(&rng, images, n * 144, 0.3, 1.0);
        test_fill_normal(&rng, dlogits, n * 4, 0.0, 1.0);
        float *velocity[2] = {calloc((size_t)params, sizeof(float)), calloc((size_t)params, sizeof(float))};
        assert_non_null(velocity[0]), assert_non_null(velocity[1]);
        const sbn_sgd_options sgd = {.lr = 0.1, .momentum = 0.9, .weight_decay = 5e-4};
        for (int step = 0; step < 3; step++) {
            const float *a, *b;
            sbn_model *models[2] = {plain, fused};
            for (int k = 0; k < 2; k++) sbn_model_zero_grad(models[k]);
            assert_int_equal(sbn_model_forward(plain, images, n, true, &a), SBN_OK);
            assert_int_equal(sbn_model_forward(fused, images, n, true, &b), SBN_OK);
            assert_memory_equal(a, b, (size_t)(n * 4) * sizeof(float));
            assert_int_equal(sbn_model_backward(plain, dlogits), SBN_OK);
            assert_int_equal(sbn_model_backward(fused, dlogits), SBN_OK);
            assert_memory_equal(sbn_model_gradients(plain), sbn_model_gradients(fused), (size_t)params * sizeof(float));
            for (int k = 0; k < 2; k++)
                sbn_sgd_step(sbn_model_parameters(models[k]), velocity[k], sbn_model_gradients(models[k]), params, sgd,
                             step == 0);
        }
        for (int layer = 0; layer < sbn_model_bn_count(plain); layer++) {
            const int64_t c = sbn_bn_channels(sbn_model_bn(plain, layer));
            assert_memory_equal(sbn_bn_running_mean(sbn_model_bn(plain, layer)),
                                sbn_bn_running_mean(sbn_model_bn(fused, layer)), (size_t)c * sizeof(float));
            assert_memory_equal(sbn_bn_running_var(sbn_model_bn(plain, layer)),
                                sbn_bn_running_var(sbn_model_bn(fused, layer)), (size_t)c * sizeof(float));
        }
        const float *a, *b;
        assert_int_equal(sbn_model_forward(plain, images, n, false, &a), SBN_OK);
        assert_int_equal(sbn_model_forward(fused, images, n, false, &b), SBN_OK);
        assert_memory_equal(a, b, (size_t)(n * 4) * sizeof(float));
        assert_int_equal(sbn_model_set_fuse_relu(fused, false), SBN_OK); /* and back: statistics kept */
        assert_false(sbn_bn_get_options(sbn_model_bn(fused, 0)).fuse_relu);
        assert_int_equal(sbn_model_forward(fused, images, n, false, &b), SBN_OK);
        assert_int_equal(sbn_model_forward(plain, images, n, false, &a), SBN_OK);
        assert_memory_equal(a, b, (size_t)(n * 4) * sizeof(float));
        assert_int_equal(sbn_model_set_fuse_relu(NULL, true), SBN_ERR_ARG);
        sbn_model_destroy(plain), sbn_model_destroy(fused);
        free(velocity[0]), free(velocity[1]);
    }
}

int main(int argc, char **argv)
{
    golden_path = argc > 1 ? argv[1] : "tests/golden/nn_golden.json";
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models_match_pytorch), cmocka_unit_test(test_conv2d_against_direct),
        cmocka_unit_test(test_maxpool),              cmocka_unit_test(test_linear_against_direct),
        cmocka_unit_test(test_cross_entropy),        cmocka_unit_test(test_sgd_matches_torch_rule),
        cmocka_unit_test(test_model_init_and_errors), cmocka_unit_test(test_fused_relu_model_is_bit_identical),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
