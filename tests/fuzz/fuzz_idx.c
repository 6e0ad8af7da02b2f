/* libFuzzer harness for the IDX reader. Each input is one file's bytes, plain
 * or gzip (the reader tells them apart as for a real file), held in a memfd so
 * that the reader runs its one code path, idx_file_read_fd, without disk I/O.
 * Beyond the sanitizers it checks the reader's promises: a success has a
 * consistent shape and every value readable; a failure leaves the file zeroed
 * and a message naming it; the descriptor is closed either way (a leak would
 * exhaust descriptors and abort here). `make fuzz` runs it (CMakeLists.txt
 * here); replay.c replays corpus/idx/ in the normal builds. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "data/idx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int memory = -1;
    if (memory < 0 && (memory = memfd_create("fuzz-idx", MFD_CLOEXEC)) < 0) abort();
    if (ftruncate(memory, 0) != 0 || pwrite(memory, data, size, 0) != (ssize_t)size || lseek(memory, 0, SEEK_SET) != 0)
        abort();
    const int fd = dup(memory); /* the reader closes it */
    if (fd < 0) abort();
    idx_file file;
    const sbn_status status = idx_file_read_fd(&file, fd, "fuzz-input", 0);
    if (status == SBN_OK) {
        if (file.dimensions < 1 || file.dimensions > IDX_MAX_DIMENSIONS || file.count > IDX_MAX_VALUES) abort();
        int64_t count = 1;
        for (int d = 0; d < file.dimensions; d++) count *= file.dims[d];
        if (count != file.count || !file.values) abort();
        if (size >= 2 && data[0] == 0 && (size_t)(4 + 4 * file.dimensions + count) != size) abort(); /* plain */
        unsigned sum = 0;
        for (int64_t i = 0; i < count; i++) sum += file.values[i];
        if (sum == 0xdeadbeefu) abort(); /* keeps the reads */
    } else {
        if (file.values || file.count || file.dimensions) abort();
        if (!strstr(sbn_errmsg(), "fuzz-input")) abort();
    }
    idx_file_free(&file);
    return 0;
}
