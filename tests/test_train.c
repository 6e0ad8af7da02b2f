/* A short real-data training in one process must learn; bad options fail
 * cleanly. (The multi-rank equivalence is checked by compare_check.sh.) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <syncbn/syncbn.h>

static void test_short_training_learns(void **state)
{
    (void)state;
    sbn_comm *self;
    assert_int_equal(sbn_comm_create_self(&self), SBN_OK);
    sbn_train_options o = sbn_train_defaults();
    o.max_steps = 300; /* 9600 images, a sixth of an epoch */
    o.threads = 2;
    o.metrics_path = "/tmp/syncbn-test-train.jsonl";
    sbn_train_result r;
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_OK);
    printf("300 steps: test accuracy %.4f, final loss %.4f, %.2f ms/step\n", r.test_accuracy, r.final_train_loss,
           r.ms_per_step);
    assert_int_equal(r.steps, 300);
    assert_true(r.test_accuracy >= 0.80); /* chance is 0.10; about 0.84 is typical */
    assert_true(r.final_train_loss < 0.9);
    assert_true(r.running_mean_spread == 0.0);
    FILE *f = fopen(o.metrics_path, "r");
    assert_non_null(f);
    char line[512];
    int lines = 0, finals = 0;
    while (fgets(line, sizeof line, f)) lines++, finals += strstr(line, "\"final\": true") != NULL;
    fclose(f);
    assert_int_equal(lines, 301);
    assert_int_equal(finals, 1);
    sbn_comm_destroy(self);
}

static void test_bad_options(void **state)
{
    (void)state;
    sbn_comm *self;
    assert_int_equal(sbn_comm_create_self(&self), SBN_OK);
    sbn_train_result r;
    sbn_train_options o = sbn_train_defaults();
    o.global_batch = 0;
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_ARG);
    o = sbn_train_defaults(), o.lr = -1;
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_ARG);
    o = sbn_train_defaults(), o.data_dir = "/nonexistent-folder";
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_IO);
    assert_non_null(strstr(sbn_errmsg(), "/nonexistent-folder/train-images-idx3-ubyte.gz"));
    o = sbn_train_defaults(), o.max_steps = 1, o.metrics_path = "/nonexistent-folder/m.jsonl";
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_IO);
    sbn_comm_destroy(self);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_short_training_learns), cmocka_unit_test(test_bad_options)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
