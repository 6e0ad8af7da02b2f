/* libFuzzer harness for the safetensors reader (checkpoints, --init and
 * --weights files come from outside). Each input is one file's bytes, parsed
 * from memory by the same code that opens files. Beyond the sanitizers it
 * checks the reader's promises: a success has tensors whose byte lengths
 * match dtype x shape, data aligned for its type and readable to the end,
 * and names that find_ finds; a failure returns NULL with a message naming
 * the input. `make fuzz` runs it; replay.c replays corpus/safetensors/. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <syncbn/tensor_file.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sbn_safetensors *file = (sbn_safetensors *)&size;
    const sbn_status status = sbn_safetensors_parse(data, size, "fuzz-input", &file);
    if (status != SBN_OK) {
        if (file || !strstr(sbn_errmsg(), "fuzz-input")) abort();
        return 0;
    }
    unsigned sum = 0;
    for (int64_t i = 0; i < sbn_safetensors_count(file); i++) {
        const sbn_tensor *t = sbn_safetensors_at(file, i), *found;
        const int64_t numel = sbn_tensor_numel(t), bytes = numel * sbn_dtype_size(t->dtype);
        if (numel < 0 || t->ndim < 0 || t->ndim > SBN_TENSOR_MAX_DIMS || bytes > (int64_t)size) abort();
        if (bytes > 0 && (uintptr_t)t->data % (uintptr_t)sbn_dtype_size(t->dtype) != 0) abort();
        for (int64_t k = 0; k < bytes; k++) sum += ((const unsigned char *)t->data)[k];
        if (sbn_safetensors_find(file, t->name, &found) != SBN_OK || found != t) abort();
    }
    if (sum == 0xdeadbeefu) abort(); /* keeps the reads */
    sbn_safetensors_metadata(file, "syncbn.checksum");
    sbn_safetensors_close(file);
    return 0;
}
