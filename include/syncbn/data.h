/* syncbn — data: IDX files (gzip or plain), a labelled image set, and the
 * sampler that shards each global batch across ranks.
 *
 * IDX (the MNIST format): a big-endian magic 0x000008TT (TT = 0x08 unsigned
 * bytes), then one big-endian uint32 per dimension, then the values.
 * Fashion-MNIST: /usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,
 * labels-idx1}-ubyte.gz (Debian package dataset-fashion-mnist).
 *
 * Every failure names the file and the problem: SBN_ERR_IO (missing,
 * unreadable), SBN_ERR_FORMAT (magic, type, dimensions, sizes, truncated or
 * corrupt data, labels out of range, images and labels of different counts).
 * Headers are not trusted: a file may hold at most 2^32 values, and memory
 * follows the data that actually arrives, never the size a header claims.
 */
#ifndef SYNCBN_DATA_H
#define SYNCBN_DATA_H

#include <stdint.h>
#include <syncbn/status.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SBN_FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"
#define SBN_FASHION_MNIST_MEAN 0.2860
#define SBN_FASHION_MNIST_STD 0.3530

typedef struct sbn_dataset {
    int64_t count, height, width, classes;
    float *images;   /* count x 1 x height x width, normalized: (pixel/255 - mean)/std */
    uint8_t *labels; /* count */
} sbn_dataset;

/* Reads images and labels (both IDX of unsigned bytes, 3-D and 1-D) and
 * normalizes with mean/std. On failure *out is left empty. */
SBN_API sbn_status sbn_dataset_load(sbn_dataset *out, const char *images_path, const char *labels_path, double mean,
                            double std);
/* "train" or "t10k" from a folder in the Fashion-MNIST naming. */
SBN_API sbn_status sbn_dataset_load_split(sbn_dataset *out, const char *folder, const char *split);
SBN_API void sbn_dataset_free(sbn_dataset *dataset); /* leaves it empty; accepts an empty one */

/* The sampler: each epoch one permutation of the dataset from (seed, epoch),
 * identical on every rank. Global batch k = permutation[k*B, (k+1)*B); rank r
 * of P takes [r*B/P, (r+1)*B/P) of it; an incomplete last batch is dropped. */
typedef struct sbn_sampler {
    int64_t count, global_batch, ranks, rank, batches_per_epoch;
    uint64_t seed;
    int64_t epoch; /* the permutation held */
    int64_t *permutation;
} sbn_sampler;

/* SBN_ERR_ARG unless 1 <= global_batch <= count, ranks divide global_batch, 0 <= rank < ranks. */
SBN_API sbn_status sbn_sampler_init(sbn_sampler *sampler, int64_t count, int64_t global_batch, int ranks, int rank,
                            uint64_t seed);
SBN_API void sbn_sampler_free(sbn_sampler *sampler);
/* The dataset indices of this rank's slice of global batch `batch` of `epoch`
 * (global_batch/ranks of them). */
SBN_API sbn_status sbn_sampler_slice(sbn_sampler *sampler, int64_t epoch, int64_t batch, const int64_t **indices);

/* Copies samples `indices` into contiguous images/labels. */
SBN_API void sbn_dataset_gather(float *images, uint8_t *labels, const sbn_dataset *dataset, const int64_t *indices,
                        int64_t count);

#ifdef __cplusplus
}
#endif
#endif
