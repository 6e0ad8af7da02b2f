/* syncbn — files of named tensors.
 *
 * safetensors (read and write): the standard weights format. An 8-byte
 * little-endian header length N, N bytes of JSON
 *     {"name": {"dtype": "F32", "shape": [16, 1, 3, 3], "data_offsets": [begin, end]}, ...,
 *      "__metadata__": {"key": "value", ...}}
 * padded with spaces, then the tensors' raw little-endian C-order bytes,
 * offsets relative to the end of the header. Files written here carry a
 * checksum in the metadata ("syncbn.checksum", CRC-32 over every tensor's
 * name, dtype, shape and bytes and every other metadata entry); a file that
 * has one is checked on open, a file without one (e.g. written by PyTorch
 * tools) is accepted as it is.
 *
 * torch.save (write): PyTorch's own zip format for a state dict, loadable
 * with torch.load(path, weights_only=True).
 *
 *   sbn_tensor t[] = {{"fc.weight", SBN_DTYPE_F32, 2, {10, 1568}, weights},
 *                     {"bn1.num_batches_tracked", SBN_DTYPE_I64, 0, {0}, &count}};
 *   sbn_metadata_entry m[] = {{"model", "convnet"}};
 *   sbn_safetensors_write("model.safetensors", t, 2, m, 1);
 *
 *   sbn_safetensors *file;
 *   const sbn_tensor *w;
 *   if (sbn_safetensors_open("model.safetensors", &file) == SBN_OK &&
 *       sbn_safetensors_find(file, "fc.weight", &w) == SBN_OK) ... w->data ...
 *   sbn_safetensors_close(file);
 *
 * Errors: SBN_ERR_IO (the file system, with the path and errno's text),
 * SBN_ERR_FORMAT (anything malformed, with the file and what is wrong),
 * SBN_ERR_ARG, SBN_ERR_NOMEM.
 */
#ifndef SYNCBN_TENSOR_FILE_H
#define SYNCBN_TENSOR_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <syncbn/dtype.h>
#include <syncbn/status.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { SBN_TENSOR_MAX_DIMS = 8 };

/* A tensor: C-order data of shape[0] x ... x shape[ndim-1] elements (one
 * element when ndim == 0, a scalar). Borrowed: the data and name belong to
 * whoever made it. */
typedef struct sbn_tensor {
    const char *name;
    sbn_dtype dtype;
    int ndim;
    int64_t shape[SBN_TENSOR_MAX_DIMS];
    const void *data;
} sbn_tensor;

typedef struct sbn_metadata_entry { const char *key, *value; } sbn_metadata_entry;

SBN_API int64_t sbn_tensor_numel(const sbn_tensor *tensor);

/* Writes tensors and metadata (keys unique, not "__metadata__"-reserved
 * "syncbn.checksum") to path, atomically: a temporary file in the same
 * folder, fsync, rename over path, fsync of the folder. A crash at any
 * moment leaves either the old file or the new one, never a mix. */
SBN_API sbn_status sbn_safetensors_write(const char *path, const sbn_tensor *tensors, int64_t count,
                                 const sbn_metadata_entry *metadata, int64_t metadata_count);

typedef struct sbn_safetensors sbn_safetensors;

/* Reads and checks a whole file; the tensors' data is aligned for its type. */
SBN_API sbn_status sbn_safetensors_open(const char *path, sbn_safetensors **out);
/* The same from memory (bytes are copied); label names the source in messages. */
SBN_API sbn_status sbn_safetensors_parse(const void *bytes, size_t size, const char *label, sbn_safetensors **out);
SBN_API void sbn_safetensors_close(sbn_safetensors *file); /* accepts NULL */

SBN_API int64_t sbn_safetensors_count(const sbn_safetensors *file);
/* Tensors in the order of their data in the file; valid until close. */
SBN_API const sbn_tensor *sbn_safetensors_at(const sbn_safetensors *file, int64_t index);
/* SBN_ERR_FORMAT naming the file when there is no tensor of that name. */
SBN_API sbn_status sbn_safetensors_find(const sbn_safetensors *file, const char *name, const sbn_tensor **out);
/* The metadata value of key, or NULL; valid until close. */
SBN_API const char *sbn_safetensors_metadata(const sbn_safetensors *file, const char *key);
/* The path it was opened from (the label, for parse). */
SBN_API const char *sbn_safetensors_path(const sbn_safetensors *file);
/* Whether the file carried a checksum (which then matched). */
SBN_API int sbn_safetensors_has_checksum(const sbn_safetensors *file);

/* Writes a state dict in torch.save's zip format (uncompressed, records
 * 64-byte aligned), atomically as above: an OrderedDict of name -> tensor
 * in the given order. torch.load(path, weights_only=True) returns it. */
SBN_API sbn_status sbn_torch_save(const char *path, const sbn_tensor *tensors, int64_t count);

#ifdef __cplusplus
}
#endif
#endif
