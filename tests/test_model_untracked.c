/* A model whose BN layers lack buffers: no running statistics
 * (track_running_stats false) and/or no weight and bias (affine false). The
 * public API always builds tracked, affine layers, so the test swaps the
 * layers in through the model's internals. Converting to SyncBN, forward and
 * backward must never copy from or to the missing buffers (they are NULL):
 * this crashed in sbn_model_convert_sync_batchnorm's memcpy before. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>
#include <syncbn/syncbn.h>

#include "nn/model_internal.h"
#include "support/support.h"

enum { N = 4, SIZE = 8, CLASSES = 3 };

static void replace_bn_layers(sbn_model *m, bool affine, bool track)
{
    sbn_bn_options options = sbn_bn_defaults();
    options.affine = affine, options.track_running_stats = track;
    for (int k = 0; k < m->layer_count; k++) {
        layer *l = &m->layers[k];
        if (l->kind != LAYER_BN) continue;
        sbn_bn_destroy(l->bn);
        l->bn = NULL;
        assert_int_equal(sbn_bn_create(l->out_c, &options, NULL, &l->bn), SBN_OK);
    }
}

static void check_model(bool affine, bool track)
{
    printf("affine %d, track_running_stats %d\n", affine, track);
    sbn_comm *self;
    assert_int_equal(sbn_comm_create_self(&self), SBN_OK);
    sbn_model *m;
    assert_int_equal(sbn_model_create(SBN_MODEL_CONVNET, 1, SIZE, SIZE, CLASSES, SBN_NORM_BN, NULL, 7, &m), SBN_OK);
    replace_bn_layers(m, affine, track);
    assert_int_equal(sbn_model_convert_sync_batchnorm(m, self), SBN_OK);
    assert_int_equal(sbn_model_bn_count(m), 2);
    for (int b = 0; b < 2; b++) {
        sbn_bn *bn = sbn_model_bn(m, b);
        assert_true((sbn_bn_running_mean(bn) != NULL) == track);
        assert_true((sbn_bn_weight(bn) != NULL) == affine);
    }

    float images[N * SIZE * SIZE], dlogits[N * CLASSES], training_logits[N * CLASSES];
    const uint8_t labels[N] = {0, 1, 2, 1};
    test_rng rng = {11};
    test_fill_normal(&rng, images, N * SIZE * SIZE, 0.0, 1.0);
    const float *logits;
    assert_int_equal(sbn_model_forward(m, images, N, true, &logits), SBN_OK);
    for (int i = 0; i < N * CLASSES; i++) training_logits[i] = logits[i];
    double loss;
    int64_t correct;
    assert_int_equal(sbn_cross_entropy(dlogits, &loss, &correct, logits, labels, N, CLASSES), SBN_OK);
    assert_true(isfinite(loss));
    sbn_model_zero_grad(m);
    assert_int_equal(sbn_model_backward(m, dlogits), SBN_OK);

    /* Without affine parameters the model's BN slots get no gradient. */
    const float *grads = sbn_model_gradients(m);
    double bn_grad_norm = 0.0, all_grad_norm = 0.0;
    for (int k = 0; k < m->layer_count; k++) {
        const layer *l = &m->layers[k];
        for (int64_t i = 0; i < l->weight_size + l->bias_size; i++) {
            const double g = grads[l->weight_offset + i];
            all_grad_norm += g * g;
            if (l->kind == LAYER_BN) bn_grad_norm += g * g;
        }
    }
    assert_true(all_grad_norm > 0.0);
    assert_true(affine ? bn_grad_norm > 0.0 : bn_grad_norm == 0.0);

    /* Untracked layers normalize by the batch in eval mode too. */
    assert_int_equal(sbn_model_forward(m, images, N, false, &logits), SBN_OK);
    if (!track)
        assert_int_equal(test_count_mismatches_float("eval logits", logits, training_logits, N * CLASSES, 1e-5, 1e-5),
                         0);

    sbn_model_destroy(m);
    sbn_comm_destroy(self);
}

static void test_untracked(void **state)
{
    (void)state;
    check_model(true, false);
}

static void test_not_affine(void **state)
{
    (void)state;
    check_model(false, true);
}

static void test_neither(void **state)
{
    (void)state;
    check_model(false, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_untracked), cmocka_unit_test(test_not_affine),
                                       cmocka_unit_test(test_neither)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
