/* IDX files through zlib (gzdopen reads plain files as well), and the dataset.
 * What the reader checks before it allocates: src/data/idx.h. */
#include <syncbn/data.h>

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "core/error.h"
#include "data/idx.h"

enum { IDX_UNSIGNED_BYTE = 0x08, MAGIC_BYTES = 4, SIZE_BYTES = 4, MAX_READ = 1 << 30 };

/* The status of a failed gzread: the system's errors are SBN_ERR_IO, a
 * corrupt gzip stream SBN_ERR_FORMAT. */
static sbn_status read_error(gzFile file, const char *name)
{
    int code;
    const char *message = gzerror(file, &code);
    const char *detail = strstr(message, ">: "); /* zlib prefixes "<fd:N>: " to its messages */
    detail = strncmp(message, "<fd:", 4) == 0 && detail ? detail + 3 : message;
    if (code == Z_ERRNO) return sbn_fail(SBN_ERR_IO, "%s: cannot read: %s", name, detail);
    if (code == Z_MEM_ERROR) return sbn_fail(SBN_ERR_NOMEM, "%s: no memory to decompress", name);
    return sbn_fail(SBN_ERR_FORMAT, "%s: corrupt gzip data: %s", name, detail);
}

/* Reads into buffer until `bytes` have arrived or the stream ends; *got says
 * how many arrived. Fails only when reading fails. */
static sbn_status read_up_to(gzFile file, uint8_t *buffer, int64_t bytes, int64_t *got, const char *name)
{
    *got = 0;
    while (*got < bytes) {
        const int64_t left = bytes - *got;
        const int n = gzread(file, buffer + *got, (unsigned)(left > MAX_READ ? MAX_READ : left));
        if (n < 0) return read_error(file, name);
        if (n == 0) break;
        *got += n;
    }
    return SBN_OK;
}

/* What the values come from, for messages about how much of them arrived. */
static const char *source(gzFile file)
{
    int code;
    if (gzdirect(file)) return "the file";
    gzerror(file, &code);
    return code == Z_BUF_ERROR ? "the gzip stream (cut short)" : "the gzip stream";
}

static uint32_t big_endian(const uint8_t b[4])
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | (uint32_t)b[3];
}

/* Reads `count` values into a buffer that starts at `first_chunk` bytes and
 * doubles as data arrives, capped at count: memory follows what the stream
 * holds, not what its header claims. */
static sbn_status read_values(uint8_t **values, gzFile file, int64_t count, int64_t first_chunk, const char *name,
                              const char *dims_text)
{
    int64_t capacity = count < first_chunk ? count : first_chunk, arrived = 0;
    uint8_t *buffer = malloc((size_t)capacity);
    if (!buffer) return sbn_fail(SBN_ERR_NOMEM, "%s: no memory for %lld values", name, (long long)capacity);
    sbn_status st = SBN_OK;
    while (st == SBN_OK && arrived < count) {
        if (arrived == capacity) {
            const int64_t grown = capacity > count / 2 ? count : 2 * capacity;
            uint8_t *bigger = realloc(buffer, (size_t)grown);
            if (!bigger) {
                st = sbn_fail(SBN_ERR_NOMEM, "%s: no memory for %lld values", name, (long long)grown);
                break;
            }
            buffer = bigger, capacity = grown;
        }
        int64_t got;
        st = read_up_to(file, buffer + arrived, capacity - arrived, &got, name);
        arrived += got;
        if (st == SBN_OK && arrived < capacity)
            st = sbn_fail(SBN_ERR_FORMAT,
                          "%s: truncated: the header claims %s = %lld bytes of values but %s holds only %lld", name,
                          dims_text, (long long)count, source(file), (long long)arrived);
    }
    if (st != SBN_OK) {
        free(buffer);
        return st;
    }
    *values = buffer;
    return SBN_OK;
}

/* The header: magic, dimension count and sizes, checked as described in idx.h.
 * *header_bytes and dims_text (at least 64 chars) are set on success. */
static sbn_status read_header(idx_file *out, gzFile file, const char *name, int want_dimensions,
                              int64_t *header_bytes, char *dims_text)
{
    uint8_t magic[MAGIC_BYTES];
    int64_t got;
    sbn_status st = read_up_to(file, magic, MAGIC_BYTES, &got, name);
    if (st != SBN_OK) return st;
    if (got < MAGIC_BYTES)
        return sbn_fail(SBN_ERR_FORMAT,
                        "%s: truncated: %s ends after %lld bytes, inside the 4-byte IDX magic number", name,
                        source(file), (long long)got);
    if (magic[0] != 0 || magic[1] != 0)
        return sbn_fail(SBN_ERR_FORMAT, "%s: not an IDX file (magic bytes %02x %02x, expected 00 00)", name, magic[0],
                        magic[1]);
    if (magic[2] != IDX_UNSIGNED_BYTE)
        return sbn_fail(SBN_ERR_FORMAT, "%s: IDX value type 0x%02x, expected 0x08 (unsigned byte)", name, magic[2]);
    const int dimensions = magic[3];
    if (want_dimensions > 0 && dimensions != want_dimensions)
        return sbn_fail(SBN_ERR_FORMAT, "%s: IDX file has %d dimensions, expected %d", name, dimensions,
                        want_dimensions);
    if (dimensions < 1 || dimensions > IDX_MAX_DIMENSIONS)
        return sbn_fail(SBN_ERR_FORMAT, "%s: IDX file has %d dimensions, expected 1 to %d", name, dimensions,
                        IDX_MAX_DIMENSIONS);
    uint8_t sizes[IDX_MAX_DIMENSIONS * SIZE_BYTES];
    if ((st = read_up_to(file, sizes, (int64_t)dimensions * SIZE_BYTES, &got, name)) != SBN_OK) return st;
    if (got < dimensions * SIZE_BYTES)
        return sbn_fail(SBN_ERR_FORMAT,
                        "%s: truncated: %s ends after %lld bytes, inside the %d dimension sizes of the IDX header",
                        name, source(file), (long long)(MAGIC_BYTES + got), dimensions);
    int64_t count = 1;
    int overflow = 0, length = 0;
    for (int d = 0; d < dimensions; d++) {
        out->dims[d] = big_endian(sizes + SIZE_BYTES * d);
        if (out->dims[d] == 0) return sbn_fail(SBN_ERR_FORMAT, "%s: bad size 0 of dimension %d", name, d);
        overflow |= __builtin_mul_overflow(count, out->dims[d], &count);
        length += snprintf(dims_text + length, 64 - (size_t)length, "%s%lld", d ? " x " : "", (long long)out->dims[d]);
    }
    if (overflow)
        return sbn_fail(SBN_ERR_FORMAT, "%s: the IDX dimension sizes %s overflow a 64-bit count of values", name,
                        dims_text);
    if (count > IDX_MAX_VALUES || (uint64_t)count > SIZE_MAX)
        return sbn_fail(SBN_ERR_FORMAT,
                        "%s: the IDX header claims %s = %lld values, more than the reader's limit of %lld", name,
                        dims_text, (long long)count, (long long)IDX_MAX_VALUES);
    out->dimensions = dimensions;
    out->count = count;
    *header_bytes = MAGIC_BYTES + (int64_t)dimensions * SIZE_BYTES;
    return SBN_OK;
}

sbn_status idx_file_read_fd(idx_file *out, int fd, const char *name, int want_dimensions)
{
    memset(out, 0, sizeof *out);
    if (fd < 0) return sbn_fail(SBN_ERR_ARG, "%s: invalid file descriptor %d", name, fd);
    struct stat info;
    int64_t plain_size = -1; /* bytes from the offset to the end, for a regular file */
    if (fstat(fd, &info) == 0) {
        if (S_ISDIR(info.st_mode)) {
            close(fd);
            return sbn_fail(SBN_ERR_IO, "%s: is a directory", name);
        }
        const off_t at = lseek(fd, 0, SEEK_CUR);
        if (S_ISREG(info.st_mode) && at >= 0 && info.st_size >= at) plain_size = (int64_t)(info.st_size - at);
    }
    gzFile file = gzdopen(fd, "rb");
    if (!file) {
        close(fd);
        return sbn_fail(SBN_ERR_NOMEM, "%s: no memory to start reading", name);
    }
    char dims_text[64] = "";
    int64_t header_bytes = 0;
    sbn_status st = read_header(out, file, name, want_dimensions, &header_bytes, dims_text);
    int64_t first_chunk = IDX_FIRST_CHUNK;
    if (st == SBN_OK && plain_size >= 0 && gzdirect(file)) { /* a plain file: its size is known */
        const int64_t held = plain_size - header_bytes;
        if (held < out->count)
            st = sbn_fail(SBN_ERR_FORMAT,
                          "%s: truncated: the header claims %s = %lld bytes of values but the file holds only %lld",
                          name, dims_text, (long long)out->count, (long long)held);
        else if (held > out->count)
            st = sbn_fail(SBN_ERR_FORMAT,
                          "%s: data continues after the %lld values its header announces (%lld bytes more)", name,
                          (long long)out->count, (long long)(held - out->count));
        first_chunk = out->count;
    }
    if (st == SBN_OK) st = read_values(&out->values, file, out->count, first_chunk, name, dims_text);
    if (st == SBN_OK) {
        uint8_t extra;
        const int n = gzread(file, &extra, 1);
        if (n < 0) st = read_error(file, name);
        else if (n > 0)
            st = sbn_fail(SBN_ERR_FORMAT, "%s: data continues after the %lld values its header announces", name,
                          (long long)out->count);
    }
    gzclose(file);
    if (st != SBN_OK) idx_file_free(out);
    return st;
}

void idx_file_free(idx_file *file)
{
    if (!file) return;
    free(file->values);
    memset(file, 0, sizeof *file);
}

static sbn_status read_idx(idx_file *out, const char *path, int want_dimensions)
{
    memset(out, 0, sizeof *out);
    const int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return sbn_fail(SBN_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    return idx_file_read_fd(out, fd, path, want_dimensions);
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
        idx_file_free(&images);
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
    idx_file_free(&images);
    idx_file_free(&labels);
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
