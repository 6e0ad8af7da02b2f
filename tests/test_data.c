/* The IDX reader on good files and on every kind of bad one (headers that lie
 * about their size among them), the real Fashion-MNIST files, and the
 * sampler's slicing. */
#include <fcntl.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <syncbn/data.h>
#include <zlib.h>

#include "data/idx.h"

static char folder[256];

/* Every malloc, calloc and realloc of this program, the library's included,
 * passes through these wrappers (tests/CMakeLists.txt links test_data with
 * -Wl,--wrap=malloc,...). While `watch.on`, they record the largest request and
 * refuse any above WATCH_LIMIT, as a machine without that memory would: a
 * reader that allocates what a lying header claims fails these tests instead
 * of mapping gigabytes. */
enum { WATCH_LIMIT = 256 << 20 };
static struct { /* volatile: the compiler assumes malloc touches no global state */
    volatile int on;
    volatile size_t largest;
} watch;
void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *pointer, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *pointer, size_t size);

static int watch_refuses(size_t size)
{
    if (!watch.on) return 0;
    watch.largest = size > watch.largest ? size : watch.largest;
    return size > WATCH_LIMIT;
}
void *__wrap_malloc(size_t size) { return watch_refuses(size) ? NULL : __real_malloc(size); }
void *__wrap_calloc(size_t count, size_t size)
{
    return watch_refuses(count > SIZE_MAX / (size ? size : 1) ? SIZE_MAX : count * size) ? NULL
                                                                                          : __real_calloc(count, size);
}
void *__wrap_realloc(void *pointer, size_t size) { return watch_refuses(size) ? NULL : __real_realloc(pointer, size); }

static void watch_start(void)
{
    watch.on = 1, watch.largest = 0;
    void *volatile probe = malloc(12345); /* the wrappers are linked in: else the watch would see nothing */
    free(probe);
    assert_int_equal(watch.largest, 12345);
    watch.largest = 0;
}

/* Stops watching; returns the largest request seen. */
static size_t watch_stop(void)
{
    watch.on = 0;
    return watch.largest;
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

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

/* Loads the two files (written gzipped or plain) and checks the status, that
 * the message names the file and contains each part (NULL ends the parts
 * early), and that nothing is returned. */
static void expect_error_in(const unsigned char *images, size_t images_size, const unsigned char *labels,
                            size_t labels_size, int compressed, sbn_status want, const char *message_part,
                            const char *message_part2)
{
    const char *image_path = write_file(compressed ? "bad-images.gz" : "bad-images", images, images_size, compressed);
    const char *label_path = write_file(compressed ? "bad-labels.gz" : "bad-labels", labels, labels_size, compressed);
    sbn_dataset d;
    memset(&d, 0xab, sizeof d); /* the loader must empty it */
    const sbn_status got = sbn_dataset_load(&d, image_path, label_path, 0, 1);
    const char *parts[2] = {message_part, message_part2};
    int found = 1;
    for (int k = 0; k < 2; k++) found &= !parts[k] || strstr(sbn_errmsg(), parts[k]) != NULL;
    if (got != want || !found)
        fprintf(stderr, "got %s \"%s\", want %s with \"%s\" and \"%s\"\n", sbn_status_str(got), sbn_errmsg(),
                sbn_status_str(want), message_part, message_part2 ? message_part2 : "");
    assert_int_equal(got, want);
    assert_true(found);
    assert_non_null(strstr(sbn_errmsg(), folder)); /* names the file */
    assert_null(d.images);
    assert_null(d.labels);
    assert_int_equal(d.count, 0);
}

static void expect_error(const unsigned char *images, size_t images_size, const unsigned char *labels,
                         size_t labels_size, sbn_status want, const char *message_part)
{
    expect_error_in(images, images_size, labels, labels_size, 1, want, message_part, NULL);
}

/* Bad images with the good labels, gzipped and plain. */
static void expect_images_error(const unsigned char *images, size_t size, sbn_status want, const char *message_part,
                                const char *message_part2)
{
    for (int compressed = 0; compressed <= 1; compressed++)
        expect_error_in(images, size, labels_idx, sizeof labels_idx, compressed, want, message_part, message_part2);
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
    expect_error(images_idx, sizeof images_idx - 3, labels_idx, sizeof labels_idx, SBN_ERR_FORMAT, "truncated");
    expect_error(images_idx, 6, labels_idx, sizeof labels_idx, SBN_ERR_FORMAT, "truncated");
    expect_error(images_idx, sizeof images_idx, labels_idx, sizeof labels_idx - 1, SBN_ERR_FORMAT, "truncated");
    const unsigned char two_labels[] = {0, 0, 8, 1, 0, 0, 0, 2, 1, 1};
    expect_error(images_idx, sizeof images_idx, two_labels, sizeof two_labels, SBN_ERR_FORMAT, "2 labels but");
    const unsigned char bad_label[] = {0, 0, 8, 1, 0, 0, 0, 3, 1, 200, 1};
    expect_error(images_idx, sizeof images_idx, bad_label, sizeof bad_label, SBN_ERR_FORMAT, "out of range");
    unsigned char longer[sizeof images_idx + 2];
    memcpy(longer, images_idx, sizeof images_idx), longer[sizeof images_idx] = longer[sizeof images_idx + 1] = 7;
    expect_images_error(longer, sizeof longer, SBN_ERR_FORMAT, "continues after the 12 values", NULL);

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

/* A 3-D IDX header of unsigned bytes with these sizes, then `values` bytes 1, 2, 3, ... */
static size_t make_images(unsigned char *out, uint32_t d0, uint32_t d1, uint32_t d2, size_t values)
{
    const uint32_t dims[3] = {d0, d1, d2};
    out[0] = 0, out[1] = 0, out[2] = 8, out[3] = 3;
    for (int d = 0; d < 3; d++)
        for (int b = 0; b < 4; b++) out[4 + 4 * d + b] = (unsigned char)(dims[d] >> (24 - 8 * b));
    for (size_t i = 0; i < values; i++) out[16 + i] = (unsigned char)(i + 1);
    return 16 + values;
}

/* 19 bytes whose header claims 2^28 x 8 x 8 = 16 GiB of values (a fuzzer's
 * find), and 19 bytes claiming 2^26 x 8 x 8 = 4 GiB, the most the reader
 * accepts: both rejected at once, without allocating anything near what they
 * claim (the watch would refuse it), plain and gzipped. */
static void test_lying_header(void **state)
{
    (void)state;
    const struct {
        uint32_t first;
        const char *part, *part2;
    } cases[] = {
        {1u << 28, "claims 268435456 x 8 x 8 = 17179869184 values", "more than the reader's limit of 4294967296"},
        {1u << 26, "truncated: the header claims 67108864 x 8 x 8 = 4294967296 bytes of values", "holds only 3"},
    };
    for (int c = 0; c < 2; c++)
        for (int compressed = 0; compressed <= 1; compressed++) {
            unsigned char lying[19];
            assert_int_equal(make_images(lying, cases[c].first, 8, 8, 3), sizeof lying);
            const double start = seconds_now();
            watch_start();
            expect_error_in(lying, sizeof lying, labels_idx, sizeof labels_idx, compressed, SBN_ERR_FORMAT,
                            cases[c].part, cases[c].part2);
            const size_t largest = watch_stop();
            const double seconds = seconds_now() - start;
            fprintf(stderr, "lying header %u x 8 x 8, %s: largest allocation %zu bytes, %.3f s\n", cases[c].first,
                    compressed ? "gzip" : "plain", largest, seconds);
            assert_true(largest <= IDX_FIRST_CHUNK + 4096);
            assert_true(seconds < 2.0);
        }
}

/* Sizes whose product overflows, exceeds the reader's limit, or is zero;
 * dimension counts other than the one wanted. */
static void test_header_sizes(void **state)
{
    (void)state;
    unsigned char bytes[64];
    size_t size = make_images(bytes, 0xffffffffu, 0xffffffffu, 0xffffffffu, 3); /* 2^96: overflows int64 */
    watch_start();
    expect_images_error(bytes, size, SBN_ERR_FORMAT, "4294967295 x 4294967295 x 4294967295 overflow", NULL);
    size = make_images(bytes, 1u << 31, 1u << 31, 4, 3); /* exactly 2^64: overflows size_t as well */
    expect_images_error(bytes, size, SBN_ERR_FORMAT, "2147483648 x 2147483648 x 4 overflow", NULL);
    size = make_images(bytes, 1u << 16, 1u << 16, 2, 3); /* 2^33 values: above the 2^32 limit */
    expect_images_error(bytes, size, SBN_ERR_FORMAT, "claims 65536 x 65536 x 2 = 8589934592 values",
                        "limit of 4294967296");
    assert_true(watch_stop() <= IDX_FIRST_CHUNK + 4096);

    size = make_images(bytes, 3, 0, 2, 3);
    expect_images_error(bytes, size, SBN_ERR_FORMAT, "bad size 0 of dimension 1", NULL);
    unsigned char bad[sizeof images_idx];
    memcpy(bad, images_idx, sizeof bad), bad[3] = 0; /* zero dimensions */
    expect_images_error(bad, sizeof bad, SBN_ERR_FORMAT, "has 0 dimensions, expected 3", NULL);
    memcpy(bad, images_idx, sizeof bad), bad[3] = 5; /* too many */
    expect_images_error(bad, sizeof bad, SBN_ERR_FORMAT, "has 5 dimensions, expected 3", NULL);
    memcpy(bad, images_idx, sizeof bad), bad[3] = 255;
    expect_images_error(bad, sizeof bad, SBN_ERR_FORMAT, "has 255 dimensions, expected 3", NULL);
    memcpy(bad, images_idx, sizeof bad), bad[2] = 0x0c; /* int32 values */
    expect_images_error(bad, sizeof bad, SBN_ERR_FORMAT, "value type 0x0c", NULL);
}

/* Files that end early, at every part of the file, plain and gzipped. */
static void test_truncated(void **state)
{
    (void)state;
    expect_images_error(images_idx, sizeof images_idx - 1, SBN_ERR_FORMAT,
                        "truncated: the header claims 3 x 2 x 2 = 12 bytes of values", "holds only 11");
    expect_images_error(images_idx, 16, SBN_ERR_FORMAT, "12 bytes of values", "holds only 0");
    expect_images_error(images_idx, 10, SBN_ERR_FORMAT, "ends after 10 bytes, inside the 3 dimension sizes", NULL);
    expect_images_error(images_idx, 4, SBN_ERR_FORMAT, "ends after 4 bytes, inside the 3 dimension sizes", NULL);
    expect_images_error(images_idx, 2, SBN_ERR_FORMAT, "ends after 2 bytes, inside the 4-byte IDX magic number", NULL);
    expect_images_error(images_idx, 0, SBN_ERR_FORMAT, "ends after 0 bytes", NULL);

    /* A gzip stream cut in the middle: the first half of a compressed file. */
    enum { VALUES = 3 * 100 * 100 };
    unsigned char *big = malloc(16 + VALUES);
    const size_t big_size = make_images(big, 3, 100, 100, VALUES);
    uLongf packed_size = compressBound(big_size) + 64;
    unsigned char *packed = malloc(packed_size);
    const char *path = write_file("cut.gz", big, big_size, 1);
    FILE *f = fopen(path, "rb");
    packed_size = fread(packed, 1, packed_size, f);
    fclose(f);
    free(big);
    path = write_file("cut.gz", packed, packed_size / 2, 0);
    const char *labels = write_file("labels-of-3.gz", labels_idx, sizeof labels_idx, 1);
    sbn_dataset d;
    assert_int_equal(sbn_dataset_load(&d, path, labels, 0, 1), SBN_ERR_FORMAT);
    assert_non_null(strstr(sbn_errmsg(), "cut.gz: truncated: the header claims 3 x 100 x 100 = 30000 bytes"));
    assert_non_null(strstr(sbn_errmsg(), "gzip stream (cut short) holds only"));
    assert_null(d.images);

    /* A damaged CRC in the gzip trailer: every value arrives, the check fails. */
    packed[packed_size - 8] ^= 0xff;
    path = write_file("bad-crc.gz", packed, packed_size, 0);
    free(packed);
    assert_int_equal(sbn_dataset_load(&d, path, labels, 0, 1), SBN_ERR_FORMAT);
    assert_non_null(strstr(sbn_errmsg(), "bad-crc.gz: corrupt gzip data"));
    assert_null(d.images);

    assert_int_equal(sbn_dataset_load(&d, folder, labels, 0, 1), SBN_ERR_IO);
    assert_non_null(strstr(sbn_errmsg(), "is a directory"));
}

/* A gzip file whose values outgrow the first chunk many times over: the
 * buffer doubles and every value arrives in place. */
static void test_gzip_growth(void **state)
{
    (void)state;
    enum { COUNT = 7, SIDE = 181 }; /* 229,327 values: 64 KiB, doubled once, then capped at the count */
    unsigned char *images = malloc(16 + COUNT * SIDE * SIDE);
    const size_t size = make_images(images, COUNT, SIDE, SIDE, COUNT * SIDE * SIDE);
    const unsigned char labels[] = {0, 0, 8, 1, 0, 0, 0, COUNT, 0, 1, 2, 3, 4, 5, 6};
    const char *image_path = write_file("big-images.gz", images, size, 1);
    const char *label_path = write_file("big-labels.gz", labels, sizeof labels, 1);
    sbn_dataset d;
    assert_int_equal(sbn_dataset_load(&d, image_path, label_path, 0, 1.0 / 255.0), SBN_OK);
    assert_int_equal(d.count, COUNT);
    assert_int_equal(d.height, SIDE);
    for (int64_t i = 0; i < COUNT * SIDE * SIDE; i++) assert_int_equal(lround(d.images[i]), images[16 + i]);
    sbn_dataset_free(&d);
    free(images);
}

/* The reader on a pipe: no file size to check, so a lying plain header goes
 * through the growing buffer too; the descriptor is closed either way. */
static void test_reader_on_pipe(void **state)
{
    (void)state;
    unsigned char lying[19];
    make_images(lying, 1u << 26, 8, 8, 3);
    int ends[2];
    assert_int_equal(pipe(ends), 0);
    assert_int_equal(write(ends[1], lying, sizeof lying), (ssize_t)sizeof lying);
    close(ends[1]);
    idx_file file;
    watch_start();
    assert_int_equal(idx_file_read_fd(&file, ends[0], "a pipe", 3), SBN_ERR_FORMAT);
    assert_true(watch_stop() <= IDX_FIRST_CHUNK + 4096);
    assert_non_null(strstr(sbn_errmsg(), "a pipe: truncated: the header claims 67108864 x 8 x 8 = 4294967296 bytes"));
    assert_non_null(strstr(sbn_errmsg(), "the file holds only 3"));
    assert_null(file.values);
    assert_int_equal(file.count, 0);
    assert_int_equal(fcntl(ends[0], F_GETFD), -1); /* closed */

    assert_int_equal(pipe(ends), 0);
    assert_int_equal(write(ends[1], images_idx, sizeof images_idx), (ssize_t)sizeof images_idx);
    close(ends[1]);
    assert_int_equal(idx_file_read_fd(&file, ends[0], "a pipe", 0), SBN_OK);
    assert_int_equal(file.dimensions, 3);
    assert_int_equal(file.count, 12);
    assert_memory_equal(file.values, images_idx + 16, 12);
    idx_file_free(&file);
    assert_int_equal(fcntl(ends[0], F_GETFD), -1);
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
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_files),   cmocka_unit_test(test_bad_files),      cmocka_unit_test(test_lying_header),
        cmocka_unit_test(test_header_sizes), cmocka_unit_test(test_truncated),      cmocka_unit_test(test_gzip_growth),
        cmocka_unit_test(test_reader_on_pipe), cmocka_unit_test(test_fashion_mnist), cmocka_unit_test(test_sampler)};
    const int failed = cmocka_run_group_tests(tests, NULL, NULL);
    char command[512];
    snprintf(command, sizeof command, "rm -rf '%s'", folder);
    if (system(command) != 0) fprintf(stderr, "could not remove %s\n", folder);
    return failed;
}
