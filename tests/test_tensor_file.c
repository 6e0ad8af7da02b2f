/* safetensors files: a round trip of every dtype, scalars and empty
 * tensors; every kind of malformed file rejected with SBN_ERR_FORMAT and a
 * message naming the file and the problem (a file cut at every byte, a
 * flipped byte anywhere, lying offsets and lengths, duplicates); writes
 * that are refused leave nothing behind. (torch.save files are checked by
 * PyTorch itself in the interop test.) */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <unistd.h>

#include "support/support.h"

static char folder[256];

static const char *path_in_folder(const char *name)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    return path;
}

static int setup(void **state)
{
    (void)state;
    snprintf(folder, sizeof folder, "/tmp/sbn-tensor-file-XXXXXX");
    return mkdtemp(folder) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    DIR *dir = opendir(folder);
    for (struct dirent *e; dir && (e = readdir(dir));)
        if (e->d_name[0] != '.') unlink(path_in_folder(e->d_name));
    if (dir) closedir(dir);
    return rmdir(folder);
}

static int files_in_folder(void)
{
    int count = 0;
    DIR *dir = opendir(folder);
    for (struct dirent *e; dir && (e = readdir(dir));) count += e->d_name[0] != '.';
    if (dir) closedir(dir);
    return count;
}

/* The example file: every dtype, a scalar, an empty tensor, metadata. */
static float f32[6] = {1.5f, -2.0f, 3.25f, 0.0f, -0.0f, 1e30f};
static double f64[3] = {0.1, -1e300, 5e-324};
static int64_t i64 = -9007199254740993LL;
static int32_t i32[2] = {-7, 2147483647};
static uint8_t u8[4] = {0, 1, 254, 255};
static const sbn_tensor example[] = {
    {"conv1.weight", SBN_DTYPE_F32, 3, {1, 2, 3}, f32},
    {"buffers.f64", SBN_DTYPE_F64, 1, {3}, f64},
    {"bn1.num_batches_tracked", SBN_DTYPE_I64, 0, {0}, &i64},
    {"ints", SBN_DTYPE_I32, 2, {2, 1}, i32},
    {"empty", SBN_DTYPE_F32, 2, {0, 5}, NULL},
    {"bytes", SBN_DTYPE_U8, 1, {4}, u8},
};
enum { EXAMPLE_COUNT = sizeof example / sizeof example[0] };
static const sbn_metadata_entry example_metadata[] = {{"model", "convnet"}, {"step", "1200"}, {"quote", "a\"b'c\n"}};

static unsigned char *example_bytes(size_t *size)
{
    const char *path = path_in_folder("example.safetensors");
    assert_int_equal(sbn_safetensors_write(path, example, EXAMPLE_COUNT, example_metadata, 3), SBN_OK);
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    fseek(file, 0, SEEK_END);
    *size = (size_t)ftell(file);
    rewind(file);
    unsigned char *bytes = malloc(*size);
    assert_int_equal(fread(bytes, 1, *size, file), *size);
    fclose(file);
    return bytes;
}

static void test_round_trip(void **state)
{
    (void)state;
    size_t size;
    unsigned char *file_bytes = example_bytes(&size);
    assert_int_equal(file_bytes[0] % 8, 0); /* the header is padded: the data starts 8-byte aligned */
    free(file_bytes);
    sbn_safetensors *file;
    assert_int_equal(sbn_safetensors_open(path_in_folder("example.safetensors"), &file), SBN_OK);
    assert_int_equal(sbn_safetensors_count(file), EXAMPLE_COUNT);
    assert_true(sbn_safetensors_has_checksum(file));
    for (int i = 0; i < EXAMPLE_COUNT; i++) {
        const sbn_tensor *t;
        assert_int_equal(sbn_safetensors_find(file, example[i].name, &t), SBN_OK);
        assert_int_equal(t->dtype, example[i].dtype);
        assert_int_equal(t->ndim, example[i].ndim);
        for (int d = 0; d < t->ndim; d++) assert_int_equal(t->shape[d], example[i].shape[d]);
        const int64_t bytes = sbn_tensor_numel(t) * sbn_dtype_size(t->dtype);
        if (bytes) assert_memory_equal(t->data, example[i].data, (size_t)bytes);
        assert_int_equal((uintptr_t)t->data % (uintptr_t)sbn_dtype_size(t->dtype), 0);
    }
    assert_string_equal(sbn_safetensors_metadata(file, "model"), "convnet");
    assert_string_equal(sbn_safetensors_metadata(file, "quote"), "a\"b'c\n");
    assert_null(sbn_safetensors_metadata(file, "absent"));
    const sbn_tensor *missing;
    assert_int_equal(sbn_safetensors_find(file, "fc.bias", &missing), SBN_ERR_FORMAT);
    assert_non_null(strstr(sbn_errmsg(), "example.safetensors: no tensor named fc.bias"));
    sbn_safetensors_close(file);
    sbn_safetensors_close(NULL);
    assert_int_equal(files_in_folder(), 1); /* no temporary left behind */
}

static void expect_rejected(const unsigned char *bytes, size_t size, const char *message_part)
{
    sbn_safetensors *file = (sbn_safetensors *)&file;
    const sbn_status st = sbn_safetensors_parse(bytes, size, "bad.safetensors", &file);
    if (st != SBN_ERR_FORMAT || !strstr(sbn_errmsg(), message_part) || !strstr(sbn_errmsg(), "bad.safetensors"))
        fprintf(stderr, "size %zu: got %s (%s), want SBN_ERR_FORMAT with \"%s\"\n", size, sbn_status_str(st),
                sbn_errmsg(), message_part);
    assert_int_equal(st, SBN_ERR_FORMAT);
    assert_non_null(strstr(sbn_errmsg(), message_part));
    assert_null(file);
}

/* Cut after every byte: never loaded. */
static void test_every_truncation_is_rejected(void **state)
{
    (void)state;
    size_t size;
    unsigned char *bytes = example_bytes(&size);
    for (size_t cut = 0; cut < size; cut++) expect_rejected(bytes, cut, "");
    free(bytes);
}

/* Flip bits of each byte of the file in turn: whatever is flipped, header
 * or data, the file is rejected, or (when the flip hits the checksum's own
 * key, so that the file no longer claims one) opens as a file without a
 * checksum, which a reader that requires one (checkpoints do) refuses.
 * Never is it loaded as checked with other values. */
static void test_every_flipped_byte_is_caught(void **state)
{
    (void)state;
    size_t size;
    unsigned char *bytes = example_bytes(&size);
    for (size_t at = 0; at < size; at++)
        for (unsigned bit = 0; bit < 8; bit += 3) {
            const unsigned char saved = bytes[at];
            bytes[at] ^= (unsigned char)(1u << bit);
            sbn_safetensors *file = NULL;
            const sbn_status st = sbn_safetensors_parse(bytes, size, "bad.safetensors", &file);
            if (st == SBN_OK && sbn_safetensors_has_checksum(file))
                fprintf(stderr, "flipping bit %u of byte %zu (of %zu) was accepted\n", bit, at, size);
            assert_true(st == SBN_ERR_FORMAT || (st == SBN_OK && !sbn_safetensors_has_checksum(file)));
            sbn_safetensors_close(file);
            bytes[at] = saved;
        }
    free(bytes);
}

/* A file from a header text and data bytes. */
static unsigned char *make_file(const char *header, const void *data, size_t data_size, size_t *size)
{
    const size_t header_size = strlen(header);
    *size = 8 + header_size + data_size;
    unsigned char *bytes = malloc(*size);
    for (int k = 0; k < 8; k++) bytes[k] = (unsigned char)((uint64_t)header_size >> (8 * k));
    memcpy(bytes + 8, header, header_size);
    if (data_size) memcpy(bytes + 8 + header_size, data, data_size);
    return bytes;
}

static void expect_header_rejected(const char *header, size_t data_size, const char *message_part)
{
    static const unsigned char zeros[64] = {0};
    size_t size;
    unsigned char *bytes = make_file(header, zeros, data_size, &size);
    expect_rejected(bytes, size, message_part);
    free(bytes);
}

static void test_malformed_headers(void **state)
{
    (void)state;
    /* A well-formed file without a checksum (as other tools write) loads. */
    size_t size;
    unsigned char *good = make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}  ", f32, 8, &size);
    sbn_safetensors *file;
    assert_int_equal(sbn_safetensors_parse(good, size, "good", &file), SBN_OK);
    assert_false(sbn_safetensors_has_checksum(file));
    sbn_safetensors_close(file);
    /* The header length: larger than the file, and absurd. */
    good[0] = 0xff, good[1] = 0xff;
    expect_rejected(good, size, "header length");
    memset(good, 0xff, 8);
    expect_rejected(good, size, "header length");
    free(good);
    const char *entry = "\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]";
    char header[512];
    expect_header_rejected("[1,2]", 0, "does not start with '{'");
    expect_header_rejected("{\"a\":", 0, "not valid JSON");
    expect_header_rejected("{}x", 0, "text after its JSON object");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "needs exactly dtype, shape and data_offsets");
    snprintf(header, sizeof header, "{\"a\":{%s,\"extra\":1}}", entry);
    expect_header_rejected(header, 8, "needs exactly dtype, shape and data_offsets");
    expect_header_rejected("{\"a\":{\"dtype\":\"BF17\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unsupported dtype");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, "whole number");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2.5],\"data_offsets\":[0,8]}}", 8, "whole number");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8,
                           "more than 8 dimensions");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8,
                           "differs from dtype size x shape");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,8]}}", 8,
                           "differs from dtype size x shape");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "data_offsets");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "a gap");
    expect_header_rejected("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
                           12, "overlap");
    snprintf(header, sizeof header, "{\"a\":{%s}}", entry);
    expect_header_rejected(header, 12, "the tensors cover 8 bytes but the file holds 12");
    expect_header_rejected(header, 4, "");
    snprintf(header, sizeof header, "{\"a\":{%s},\"a\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,8]}}", entry);
    expect_header_rejected(header, 8, "two tensors have the same name");
    snprintf(header, sizeof header, "{\"__metadata__\":{\"k\":1},\"a\":{%s}}", entry);
    expect_header_rejected(header, 8, "value is not a string");
    snprintf(header, sizeof header, "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"},\"a\":{%s}}", entry);
    expect_header_rejected(header, 8, "key appears twice");
    snprintf(header, sizeof header, "{\"__metadata__\":{},\"__metadata__\":{},\"a\":{%s}}", entry);
    expect_header_rejected(header, 8, "two __metadata__");
    snprintf(header, sizeof header, "{\"__metadata__\":{\"syncbn.checksum\":\"00000000\"},\"a\":{%s}}", entry);
    expect_header_rejected(header, 8, "checksum mismatch");
}

/* Another writer may place an F64 tensor at an offset that is not a
 * multiple of 8 (after three floats): the reader still hands it out aligned
 * (found by the fuzzer). */
static void test_foreign_unaligned_tensors_are_aligned(void **state)
{
    (void)state;
    unsigned char data[12 + 16];
    memcpy(data, f32, 12);
    memcpy(data + 12, f64, 16);
    size_t size;
    unsigned char *bytes = make_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,12]},"
                                     "\"b\":{\"dtype\":\"F64\",\"shape\":[2],\"data_offsets\":[12,28]}}",
                                     data, sizeof data, &size);
    sbn_safetensors *file;
    assert_int_equal(sbn_safetensors_parse(bytes, size, "foreign", &file), SBN_OK);
    const sbn_tensor *b;
    assert_int_equal(sbn_safetensors_find(file, "b", &b), SBN_OK);
    assert_int_equal((uintptr_t)b->data % 8, 0);
    assert_true(((const double *)b->data)[0] == f64[0] && ((const double *)b->data)[1] == f64[1]);
    sbn_safetensors_close(file);
    free(bytes);
}

static void test_write_errors_leave_nothing(void **state)
{
    (void)state;
    const int before = files_in_folder();
    const sbn_tensor twice[] = {example[0], example[0]};
    assert_int_equal(sbn_safetensors_write(path_in_folder("x.safetensors"), twice, 2, NULL, 0), SBN_ERR_ARG);
    assert_non_null(strstr(sbn_errmsg(), "two tensors named conv1.weight"));
    const sbn_metadata_entry reserved[] = {{"syncbn.checksum", "1"}};
    assert_int_equal(sbn_safetensors_write(path_in_folder("x.safetensors"), example, 1, reserved, 1), SBN_ERR_ARG);
    const sbn_metadata_entry duplicate[] = {{"k", "1"}, {"k", "2"}};
    assert_int_equal(sbn_safetensors_write(path_in_folder("x.safetensors"), example, 1, duplicate, 2), SBN_ERR_ARG);
    assert_non_null(strstr(sbn_errmsg(), "metadata key k appears twice"));
    sbn_tensor unnamed = example[0];
    unnamed.name = "__metadata__";
    assert_int_equal(sbn_safetensors_write(path_in_folder("x.safetensors"), &unnamed, 1, NULL, 0), SBN_ERR_ARG);
    assert_int_equal(sbn_safetensors_write(path_in_folder("no/such/folder/x.safetensors"), example, 1, NULL, 0),
                     SBN_ERR_IO);
    assert_non_null(strstr(sbn_errmsg(), "no/such/folder/x.safetensors"));
    assert_int_equal(files_in_folder(), before);
    /* A quote, a space and a newline in the path are just characters. */
    assert_int_equal(sbn_safetensors_write(path_in_folder("it's a \"file\"\n.safetensors"), example, 1, NULL, 0),
                     SBN_OK);
    sbn_safetensors *file;
    assert_int_equal(sbn_safetensors_open(path_in_folder("it's a \"file\"\n.safetensors"), &file), SBN_OK);
    sbn_safetensors_close(file);
    assert_int_equal(sbn_safetensors_open(path_in_folder("missing.safetensors"), &file), SBN_ERR_IO);
    assert_non_null(strstr(sbn_errmsg(), "missing.safetensors"));
    assert_int_equal(sbn_safetensors_open(folder, &file), SBN_ERR_IO);
}

/* Rewriting a file replaces it whole: the old contents until the rename,
 * the new after; a reader never sees a mix. */
static void test_rewrite_replaces(void **state)
{
    (void)state;
    const char *path = path_in_folder("rewrite.safetensors");
    assert_int_equal(sbn_safetensors_write(path, example, 2, example_metadata, 1), SBN_OK);
    assert_int_equal(sbn_safetensors_write(path, example + 2, 1, NULL, 0), SBN_OK);
    sbn_safetensors *file;
    assert_int_equal(sbn_safetensors_open(path, &file), SBN_OK);
    assert_int_equal(sbn_safetensors_count(file), 1);
    assert_null(sbn_safetensors_metadata(file, "model"));
    sbn_safetensors_close(file);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),           cmocka_unit_test(test_every_truncation_is_rejected),
        cmocka_unit_test(test_every_flipped_byte_is_caught), cmocka_unit_test(test_malformed_headers),
        cmocka_unit_test(test_foreign_unaligned_tensors_are_aligned), cmocka_unit_test(test_write_errors_leave_nothing), cmocka_unit_test(test_rewrite_replaces),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
