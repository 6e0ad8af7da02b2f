/* The IDX reader on good files and on every kind of bad one, the real
 * Fashion-MNIST files, and the sampler's slicing. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <syncbn/data.h>
#include <zlib.h>

static char folder[256];

/* Writes bytes to folder/name, gzip-compressed or plain. */
static const char *write_file(const char *name, const unsigned char *bytes, size_t size, int compressed)
{
    static char path[2][512];
    static int which;
    char *p = path[which ^= 1];
    snprintf(p, 512, "%s/%s", folder, name);
    if (compressed) {
        gzFile f = gzopen(p, "wb");
        gzwrite(f, bytes, (unsigned)size);
        gzclose(f);
    } else {
        FILE *f = fopen(p, "wb");
        fwrite(bytes, 1, size, f);
        fclose(f);
    }
    return p;
}

/* 3 images of 2x2 and their labels. */
static const unsigned char images_idx[] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 2,
                                           0, 255, 51, 102, 1, 2, 3, 4, 255, 255, 0, 0};
static const unsigned char labels_idx[] = {0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 9};

static void test_good_files(void **state)
{
    (void)state;
    for (int compressed = 0; compressed <= 1; compressed++) {
        const char *images = write_file("good-images", images_idx, sizeof images_idx, compressed);
        const char *labels = write_file("good-labels", labels_idx, sizeof labels_idx, compressed);
        sbn_dataset d;
        assert_int_equal(sbn_dataset_load(&d, images, labels, 0.5, 0.25), SBN_OK);
        assert_int_equal(d.count, 3);
        assert_int_equal(d.height, 2);
        assert_int_equal(d.width, 2);
        assert_int_equal(d.classes, 10);
        assert_float_equal(d.images[0], (0.0 - 0.5) / 0.25, 1e-6);
        assert_float_equal(d.images[1], (1.0 - 0.5) / 0.25, 1e-6);
        assert_float_equal(d.images[2], (0.2 - 0.5) / 0.25, 1e-6);
        assert_int_equal(d.labels[2], 9);
        sbn_dataset_free(&d);
        assert_null(d.images);
    }
}

static void expect_error(const unsigned char *images, size_t images_size, const unsigned char *labels,
                         size_t labels_size, sbn_status want, const char *message_part)
{
    const char *image_path = write_file("bad-images.gz", images, images_size, 1);
    const char *label_path = write_file("bad-labels.gz", labels, labels_size, 1);
    sbn_dataset d;
    const sbn_status got = sbn_dataset_load(&d, image_path, label_path, 0, 1);
    if (got != want || !strstr(sbn_errmsg(), message_part))
        fprintf(stderr, "got %s \"%s\", want %s with \"%s\"\n", sbn_status_str(got), sbn_errmsg(), sbn_status_str(want),
                message_part);
    assert_int_equal(got, want);
    assert_non_null(strstr(sbn_errmsg(), message_part));
    assert_non_null(strstr(sbn_errmsg(), folder)); /* names the file */
    assert_null(d.images);
    assert_null(d.labels);
}

static void test_bad_files(void **state)
{
    (void)state;
    unsigned char bad[sizeof images_idx];
    memcpy(bad, images_idx, sizeof bad), bad[0] = 0x1f;
    expect_error(bad, sizeof bad, labels_idx, sizeof labels_idx, SBN_ERR_FORMAT, "not an IDX file");
    memcpy(bad, images_idx, sizeof bad), bad[2] = 0x0d; /* float values */
    expect_error(bad, sizeof bad, labels_idx, sizeof labels_idx, SBN_ERR_FORMAT, "value type");
    memcpy(bad, images_idx, sizeof bad), bad[3] = 2;
    expect_error(bad, sizeof bad, labels_idx, sizeof labels_idx, SBN_ERR_FORMAT, "dimensions");
    memcpy(bad, images_idx, sizeof bad), bad[7] = 0; /* zero images */
    expect_error(bad, sizeof bad, labels_idx, sizeof labels_idx, SBN_ERR_FORMAT, "bad size");
    expect_error(images_idx, sizeof images_idx - 3, labels_idx, sizeof labels_idx, SBN_ERR_IO, "truncated");
    expect_error(images_idx, 6, labels_idx, sizeof labels_idx, SBN_ERR_IO, "truncated");
    expect_error(images_idx, sizeof images_idx, labels_idx, sizeof labels_idx - 1, SBN_ERR_IO, "truncated");
    const unsigned char two_labels[] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 1};
    expect_error(images_idx, sizeof images_idx, two_labels, sizeof two_labels, SBN_ERR_FORMAT, "2 labels but");
    const unsigned char bad_label[] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 200, 1};
    expect_error(images_idx, sizeof images_idx, bad_label, sizeof bad_label, SBN_ERR_FORMAT, "out of range");
    unsigned char longer[sizeof images_idx + 2];
    memcpy(longer, images_idx, sizeof images_idx), longer[sizeof images_idx] = longer[sizeof images_idx + 1] = 7;
    expect_error(longer, sizeof longer, labels_idx, sizeof labels_idx, SBN_ERR_FORMAT, "continues after");

    /* A corrupt gzip stream: a valid header, then garbage. */
    const char *good = write_file("corrupt.gz", images_idx, sizeof images_idx, 1);
    FILE *f = fopen(good, "r+b");
    fseek(f, 12, SEEK_SET);
    fwrite("garbage-garbage", 1, 15, f);
    fclose(f);
    sbn_dataset d;
    const char *labels = write_file("corrupt-labels.gz", labels_idx, sizeof labels_idx, 1);
    const sbn_status st = sbn_dataset_load(&d, good, labels, 0, 1);
    assert_true(st == SBN_ERR_IO || st == SBN_ERR_FORMAT);
    assert_non_null(strstr(sbn_errmsg(), "corrupt.gz"));

    assert_int_equal(sbn_dataset_load(&d, "/nonexistent/images.gz", labels, 0, 1), SBN_ERR_IO);
    assert_non_null(strstr(sbn_errmsg(), "/nonexistent/images.gz"));
    assert_int_equal(sbn_dataset_load_split(&d, "/nonexistent", "train"), SBN_ERR_IO);
    assert_int_equal(sbn_dataset_load(&d, good, labels, 0, 0), SBN_ERR_ARG);
}

static void test_fashion_mnist(void **state)
{
    (void)state;
    sbn_dataset train, test;
    assert_int_equal(sbn_dataset_load_split(&train, SBN_FASHION_MNIST_DIR, "train"), SBN_OK);
    assert_int_equal(sbn_dataset_load_split(&test, SBN_FASHION_MNIST_DIR, "t10k"), SBN_OK);
    assert_int_equal(train.count, 60000);
    assert_int_equal(test.count, 10000);
    assert_int_equal(train.height, 28);
    assert_int_equal(train.width, 28);
    assert_int_equal(train.classes, 10);
    int64_t histogram[10] = {0};
    for (int64_t i = 0; i < train.count; i++) histogram[train.labels[i]]++;
    for (int k = 0; k < 10; k++) assert_int_equal(histogram[k], 6000);
    double sum = 0, sum_sq = 0; /* normalized with the dataset's own mean/std: about N(0, 1) overall */
    const int64_t pixels = train.count * 28 * 28;
    for (int64_t i = 0; i < pixels; i++) sum += train.images[i], sum_sq += (double)train.images[i] * train.images[i];
    assert_float_equal(sum / (double)pixels, 0.0, 0.01);
    assert_float_equal(sqrt(sum_sq / (double)pixels - (sum / pixels) * (sum / pixels)), 1.0, 0.01);
    sbn_dataset_free(&train);
    sbn_dataset_free(&test);
}

static void test_sampler(void **state)
{
    (void)state;
    enum { COUNT = 103, BATCH = 12, RANKS = 4 };
    sbn_sampler samplers[RANKS];
    for (int r = 0; r < RANKS; r++) assert_int_equal(sbn_sampler_init(&samplers[r], COUNT, BATCH, RANKS, r, 9), SBN_OK);
    assert_int_equal(samplers[0].batches_per_epoch, COUNT / BATCH); /* the incomplete last batch is dropped */
    for (int epoch = 0; epoch < 2; epoch++) {
        int seen[COUNT] = {0};
        for (int64_t b = 0; b < COUNT / BATCH; b++)
            for (int r = 0; r < RANKS; r++) {
                const int64_t *slice;
                assert_int_equal(sbn_sampler_slice(&samplers[r], epoch, b, &slice), SBN_OK);
                /* rank r's slice is [r*B/P, (r+1)*B/P) of rank 0's view of the global batch */
                const int64_t *global;
                assert_int_equal(sbn_sampler_slice(&samplers[0], epoch, b, &global), SBN_OK);
                for (int k = 0; k < BATCH / RANKS; k++) {
                    assert_int_equal(slice[k], global[r * (BATCH / RANKS) + k]);
                    seen[slice[k]]++;
                }
            }
        int covered = 0;
        for (int i = 0; i < COUNT; i++) {
            assert_true(seen[i] <= 1);
            covered += seen[i];
        }
        assert_int_equal(covered, (COUNT / BATCH) * BATCH);
    }
    const int64_t *first, *second;
    assert_int_equal(sbn_sampler_slice(&samplers[1], 0, 0, &first), SBN_OK);
    const int64_t epoch0 = first[0];
    assert_int_equal(sbn_sampler_slice(&samplers[1], 1, 0, &second), SBN_OK);
    assert_int_equal(sbn_sampler_slice(&samplers[1], 0, 0, &first), SBN_OK);
    assert_int_equal(first[0], epoch0); /* an epoch's order is reproducible */
    for (int r = 0; r < RANKS; r++) sbn_sampler_free(&samplers[r]);
    sbn_sampler s;
    assert_int_equal(sbn_sampler_init(&s, COUNT, 10, 4, 0, 1), SBN_ERR_ARG);
    assert_non_null(strstr(sbn_errmsg(), "not divisible"));
    assert_int_equal(sbn_sampler_init(&s, COUNT, 0, 1, 0, 1), SBN_ERR_ARG);
    assert_int_equal(sbn_sampler_init(&s, COUNT, 8, 2, 2, 1), SBN_ERR_ARG);
    assert_int_equal(sbn_sampler_init(&s, 10, 8, 2, 1, 1), SBN_OK);
    assert_int_equal(sbn_sampler_slice(&s, 0, 1, &first), SBN_ERR_ARG);
    sbn_sampler_free(&s);
}

int main(void)
{
    snprintf(folder, sizeof folder, "/tmp/syncbn-test-data-XXXXXX");
    if (!mkdtemp(folder)) return 1;
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_good_files), cmocka_unit_test(test_bad_files),
                                       cmocka_unit_test(test_fashion_mnist), cmocka_unit_test(test_sampler)};
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", folder);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", folder);
    return failed;
}
