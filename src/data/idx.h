/* Internal: the IDX reader on an open file descriptor, the one code path
 * behind sbn_dataset_load and the fuzz harness (tests/fuzz/fuzz_idx.c).
 *
 * The header is not trusted. Before anything is allocated, the reader rejects
 * (SBN_ERR_FORMAT, naming the file): a dimension count outside
 * 1..IDX_MAX_DIMENSIONS or other than the one wanted, a dimension of size 0,
 * sizes whose product overflows 64 bits, a product above IDX_MAX_VALUES and,
 * for a plain regular file, a claimed size other than the file's. A gzip
 * stream's size is only known by decompressing it: its buffer starts at
 * IDX_FIRST_CHUNK bytes and doubles as data arrives, capped at the claimed
 * size, so memory stays below twice what the stream really holds; a stream
 * that ends early is rejected with the bytes claimed and the bytes that
 * arrived. On failure nothing is left allocated and *out is zeroed.
 */
#ifndef SBN_DATA_IDX_H
#define SBN_DATA_IDX_H

#include <stdint.h>
#include <syncbn/status.h>

enum { IDX_MAX_DIMENSIONS = 4, IDX_FIRST_CHUNK = 1 << 16 };
/* At most 2^32 values (4 GiB of bytes; 16 GiB once sbn_dataset_load makes them
 * floats); Fashion-MNIST's training images are 47,040,000. */
#define IDX_MAX_VALUES ((int64_t)1 << 32)

typedef struct idx_file {
    int64_t dims[IDX_MAX_DIMENSIONS];
    int dimensions;
    uint8_t *values; /* dims[0] x ... x dims[dimensions-1], row-major */
    int64_t count;
} idx_file;

/* Reads an IDX file of unsigned bytes, gzip or plain, from fd's current
 * offset to its end, and closes fd (on success and on failure). `name` is
 * what messages call the file. want_dimensions: the dimension count required,
 * or 0 for any count in 1..IDX_MAX_DIMENSIONS. */
sbn_status idx_file_read_fd(idx_file *out, int fd, const char *name, int want_dimensions);
void idx_file_free(idx_file *file); /* leaves it zeroed; accepts a zeroed one */

#endif
