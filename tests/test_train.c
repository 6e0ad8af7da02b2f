/* A short real-data training in one process must learn; bad options fail
 * cleanly. (The multi-rank equivalence is checked by compare_check.sh.) */
#include <math.h>
#include <omp.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <syncbn/syncbn.h>

/* From OpenBLAS's cblas.h (not on the tests' include path). */
int openblas_get_num_threads(void);
void openblas_set_num_threads(int threads);

/* A run of a few steps: the seed model on 64 training images. */
static sbn_train_options tiny_run(void)
{
    sbn_train_options o = sbn_train_defaults();
    o.model = SBN_MODEL_SEED, o.global_batch = 8, o.train_samples = 64, o.max_steps = 3;
    return o;
}

static void test_short_training_learns(void **state)
{
    (void)state;
    sbn_comm *self;
    assert_int_equal(sbn_comm_create_self(&self), SBN_OK);
    sbn_train_options o = sbn_train_defaults();
    o.max_steps = 300; /* 9600 images, a sixth of an epoch */
    o.threads = 2;
    char metrics[] = "/tmp/syncbn-test-train-XXXXXX"; /* unique: builds may run this test at the same time */
    const int fd = mkstemp(metrics);
    assert_true(fd >= 0);
    close(fd);
    o.metrics_path = metrics;
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
    unlink(metrics);
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
    /* Non-finite hyperparameters (the old check let +inf through). */
    o = tiny_run(), o.lr = INFINITY;
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_ARG);
    o = tiny_run(), o.weight_decay = INFINITY;
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_ARG);
    o = tiny_run(), o.lr = NAN;
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_ARG);
    sbn_comm_destroy(self);
}

/* epochs x batches per epoch past INT64_MAX is an argument error, not a
 * signed overflow (which ran 0 steps and reported success). */
static void test_step_count_overflow(void **state)
{
    (void)state;
    sbn_comm *self;
    assert_int_equal(sbn_comm_create_self(&self), SBN_OK);
    sbn_train_result r;
    sbn_train_options o = tiny_run();
    o.epochs = INT64_MAX, o.max_steps = 2;
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_ARG);
    assert_non_null(strstr(sbn_errmsg(), "overflow"));
    o.epochs = INT64_MAX / 8, o.max_steps = 2; /* 8 batches per epoch: the largest that fits */
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_OK);
    assert_int_equal(r.steps, 2);
    o.epochs = INT64_MAX / 8 + 1;
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_ARG);
    o.epochs = 0, o.max_steps = 5; /* steps only */
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_OK);
    assert_int_equal(r.steps, 5);
    sbn_comm_destroy(self);
}

/* Writes an IDX file of unsigned bytes (plain: the reader takes plain or
 * gzip) with dims[0..ndim) to folder/name. */
static void write_idx(const char *folder, const char *name, int ndim, const int *dims, const uint8_t *values)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    const uint8_t magic[4] = {0, 0, 8, (uint8_t)ndim};
    fwrite(magic, 1, 4, f);
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        const uint8_t big_endian[4] = {0, 0, (uint8_t)(dims[d] >> 8), (uint8_t)dims[d]};
        fwrite(big_endian, 1, 4, f);
        count *= (size_t)dims[d];
    }
    assert_int_equal(fwrite(values, 1, count, f), count);
    assert_int_equal(fclose(f), 0);
}

/* A data folder of 16 training images (8x8, labels 0/1) and 2 test images
 * of test_size x test_size with the given labels. */
static void write_dataset(const char *folder, int test_size, const uint8_t test_labels[2])
{
    uint8_t pixels[16 * 8 * 8], labels[16];
    for (int i = 0; i < 16 * 8 * 8; i++) pixels[i] = (uint8_t)(i * 37);
    for (int i = 0; i < 16; i++) labels[i] = (uint8_t)(i % 2);
    write_idx(folder, "train-images-idx3-ubyte.gz", 3, (const int[]){16, 8, 8}, pixels);
    write_idx(folder, "train-labels-idx1-ubyte.gz", 1, (const int[]){16}, labels);
    write_idx(folder, "t10k-images-idx3-ubyte.gz", 3, (const int[]){2, test_size, test_size}, pixels);
    write_idx(folder, "t10k-labels-idx1-ubyte.gz", 1, (const int[]){2}, test_labels);
}

/* Test images must have the training images' size (the model reads that
 * many pixels per image: smaller ones were read past their end) and labels
 * the model can score. */
static void test_test_split_must_match(void **state)
{
    (void)state;
    char folder[] = "/tmp/syncbn-test-split-XXXXXX";
    assert_non_null(mkdtemp(folder));
    sbn_comm *self;
    assert_int_equal(sbn_comm_create_self(&self), SBN_OK);
    sbn_train_result r;
    sbn_train_options o = sbn_train_defaults();
    o.model = SBN_MODEL_SEED, o.global_batch = 8, o.max_steps = 2, o.data_dir = folder;
    write_dataset(folder, 8, (const uint8_t[]){0, 1});
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_OK); /* the folder itself is good */
    assert_int_equal(r.steps, 2);
    write_dataset(folder, 4, (const uint8_t[]){0, 1});
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_FORMAT);
    assert_non_null(strstr(sbn_errmsg(), "test images (4x4, 2 classes) do not match the training images (8x8"));
    write_dataset(folder, 8, (const uint8_t[]){0, 5});
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_FORMAT);
    assert_non_null(strstr(sbn_errmsg(), "6 classes"));
    sbn_comm_destroy(self);
    const char *names[] = {"train-images", "train-labels", "t10k-images", "t10k-labels"};
    for (int k = 0; k < 4; k++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s-idx%d-ubyte.gz", folder, names[k], k % 2 ? 1 : 3);
        unlink(path);
    }
    rmdir(folder);
}

/* The trainer changes OpenMP's and OpenBLAS's thread counts while it runs
 * and gives the caller's back on every return, success or error. */
static void test_thread_settings_restored(void **state)
{
    (void)state;
    const int omp_before = omp_get_max_threads(), blas_before = openblas_get_num_threads();
    omp_set_num_threads(3);
    openblas_set_num_threads(2);
    assert_int_equal(omp_get_max_threads(), 3);
    assert_int_equal(openblas_get_num_threads(), 2);
    sbn_comm *self;
    assert_int_equal(sbn_comm_create_self(&self), SBN_OK);
    sbn_train_result r;
    sbn_train_options o = tiny_run();
    o.threads = 2; /* the trainer sets 2 OpenMP threads and 1 OpenBLAS thread */
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_OK);
    assert_int_equal(r.steps, 3);
    assert_int_equal(omp_get_max_threads(), 3);
    assert_int_equal(openblas_get_num_threads(), 2);
    o.data_dir = "/nonexistent-folder"; /* fails after the settings changed */
    assert_int_equal(sbn_train_run(&o, self, &r), SBN_ERR_IO);
    assert_int_equal(omp_get_max_threads(), 3);
    assert_int_equal(openblas_get_num_threads(), 2);
    sbn_comm_destroy(self);
    omp_set_num_threads(omp_before);
    openblas_set_num_threads(blas_before);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_short_training_learns), cmocka_unit_test(test_bad_options),
                                       cmocka_unit_test(test_step_count_overflow),
                                       cmocka_unit_test(test_test_split_must_match),
                                       cmocka_unit_test(test_thread_settings_restored)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
