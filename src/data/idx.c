/* IDX files through zlib (gzopen reads plain files as well), and the dataset. */
#include <syncbn/data.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"

enum { IDX_UNSIGNED_BYTE = 0x08, MAX_DIMENSIONS = 4 };

typedef struct idx_file {
    int64_t dims[MAX_DIMENSIONS];
    int dimensions;
    uint8_t *values;
    int64_t count;
} idx_file;

/* Reads exactly `bytes` or fails naming what was being read. */
static sbn_status read_exactly(gzFile file, void *buffer, int64_t bytes, const char *path, const char *what)
{
    uint8_t *at = buffer;
    while (bytes > 0) {
        const unsigned chunk = bytes > (1 << 30) ? (1u << 30) : (unsigned)bytes;
        const int got = gzread(file, at, chunk);
        if (got < 0) {
            int code;
            const char *message = gzerror(file, &code);
            return sbn_fail(SBN_ERR_IO, "%s: cannot read %s: %s", path, what, message);
        }
        if (got == 0) return sbn_fail(SBN_ERR_IO, "%s: file is truncated (ends inside the %s)", path, what);
        at += got;
        bytes -= got;
    }
    return SBN_OK;
}

static uint32_t big_endian(const uint8_t b[4])
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

static sbn_status read_idx(idx_file *out, const char *path, int want_dimensions)
{
    memset(out, 0, sizeof *out);
    gzFile file = gzopen(path, "rb");
    if (!file) return sbn_fail(SBN_ERR_IO, "%s: cannot open: %s", path, strerror(errno ? errno : ENOENT));
    uint8_t header[4];
    sbn_status st = read_exactly(file, header, 4, path, "IDX magic number");
    if (st == SBN_OK && (header[0] != 0 || header[1] != 0))
        st = sbn_fail(SBN_ERR_FORMAT, "%s: not an IDX file (magic bytes %02x %02x, expected 00 00)", path, header[0],
                      header[1]);
    if (st == SBN_OK && header[2] != IDX_UNSIGNED_BYTE)
        st = sbn_fail(SBN_ERR_FORMAT, "%s: IDX value type 0x%02x, expected 0x08 (unsigned byte)", path, header[2]);
    if (st == SBN_OK && header[3] != want_dimensions)
        st = sbn_fail(SBN_ERR_FORMAT, "%s: IDX file has %d dimensions, expected %d", path, header[3], want_dimensions);
    int64_t count = 1;
    for (int d = 0; st == SBN_OK && d < want_dimensions; d++) {
        uint8_t size[4];
        st = read_exactly(file, size, 4, path, "IDX dimension sizes");
        if (st != SBN_OK) break;
        out->dims[d] = big_endian(size);
        if (out->dims[d] == 0 || out->dims[d] > (1 << 28) || count > ((int64_t)1 << 34) / out->dims[d])
            st = sbn_fail(SBN_ERR_FORMAT, "%s: bad size %lld of dimension %d", path, (long long)out->dims[d], d);
        else count *= out->dims[d];
    }
    if (st == SBN_OK && !(out->values = malloc((size_t)count)))
        st = sbn_fail(SBN_ERR_NOMEM, "%s: no memory for %lld values", path, (long long)count);
    if (st == SBN_OK) st = read_exactly(file, out->values, count, path, "IDX values");
    if (st == SBN_OK) {
        uint8_t extra;
        if (gzread(file, &extra, 1) != 0)
            st = sbn_fail(SBN_ERR_FORMAT, "%s: data continues after the %lld values its header announces", path,
                          (long long)count);
    }
    gzclose(file);
    if (st != SBN_OK) {
        free(out->values);
        memset(out, 0, sizeof *out);
        return st;
    }
    out->dimensions = want_dimensions;
    out->count = count;
    return SBN_OK;
}

sbn_status sbn_dataset_load(sbn_dataset *out, const char *images_path, const char *labels_path, double mean,
                            double std)
{
    if (!out || !images_path || !labels_path) return sbn_fail(SBN_ERR_ARG, "dataset load: NULL argument");
    memset(out, 0, sizeof *out);
    if (!(std > 0.0)) return sbn_fail(SBN_ERR_ARG, "std must be > 0, got %g", std);
    idx_file images, labels;
    sbn_status st = read_idx(&images, images_path, 3);
    if (st != SBN_OK) return st;
    if ((st = read_idx(&labels, labels_path, 1)) != SBN_OK) {
        free(images.values);
        return st;
    }
    if (labels.dims[0] != images.dims[0])
        st = sbn_fail(SBN_ERR_FORMAT, "%s has %lld labels but %s has %lld images", labels_path,
                      (long long)labels.dims[0], images_path, (long long)images.dims[0]);
    int classes = 0;
    for (int64_t i = 0; st == SBN_OK && i < labels.count; i++) {
        if (labels.values[i] > 99)
            st = sbn_fail(SBN_ERR_FORMAT, "%s: label %d of sample %lld is out of range", labels_path,
                          labels.values[i], (long long)i);
        classes = labels.values[i] + 1 > classes ? labels.values[i] + 1 : classes;
    }
    if (st == SBN_OK && !(out->images = malloc((size_t)images.count * sizeof *out->images)))
        st = sbn_fail(SBN_ERR_NOMEM, "no memory for %lld pixels", (long long)images.count);
    if (st == SBN_OK) {
        for (int64_t i = 0; i < images.count; i++)
            out->images[i] = (float)(((double)images.values[i] / 255.0 - mean) / std);
        out->labels = labels.values;
        labels.values = NULL;
        out->count = images.dims[0], out->height = images.dims[1], out->width = images.dims[2];
        out->classes = classes < 2 ? 2 : classes;
    }
    free(images.values);
    free(labels.values);
    return st;
}

sbn_status sbn_dataset_load_split(sbn_dataset *out, const char *folder, const char *split)
{
    if (!out || !folder || !split) return sbn_fail(SBN_ERR_ARG, "dataset load: NULL argument");
    char images[4096], labels[4096];
    snprintf(images, sizeof images, "%s/%s-images-idx3-ubyte.gz", folder, split);
    snprintf(labels, sizeof labels, "%s/%s-labels-idx1-ubyte.gz", folder, split);
    return sbn_dataset_load(out, images, labels, SBN_FASHION_MNIST_MEAN, SBN_FASHION_MNIST_STD);
}

void sbn_dataset_free(sbn_dataset *dataset)
{
    if (!dataset) return;
    free(dataset->images);
    free(dataset->labels);
    memset(dataset, 0, sizeof *dataset);
}

void sbn_dataset_gather(float *images, uint8_t *labels, const sbn_dataset *dataset, const int64_t *indices,
                        int64_t count)
{
    const int64_t pixels = dataset->height * dataset->width;
    for (int64_t i = 0; i < count; i++) {
        memcpy(images + i * pixels, dataset->images + indices[i] * pixels, (size_t)pixels * sizeof *images);
        labels[i] = dataset->labels[indices[i]];
    }
}
