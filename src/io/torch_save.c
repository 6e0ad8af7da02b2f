/* torch.save's file format for a state dict, written from C.
 *
 * The file is an uncompressed zip whose records are
 *     archive/data.pkl      a pickle (protocol 2) of the OrderedDict
 *     archive/byteorder     "little"
 *     archive/data/<k>      the raw little-endian bytes of tensor k's storage
 *     archive/version       "3\n"
 * each record's data starting at a multiple of 64 bytes (as PyTorch writes
 * them, so that they can be memory-mapped). The pickle builds each tensor
 * with torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
 * requires_grad, backward_hooks), the storage coming from a persistent id
 * ('storage', torch.FloatStorage, '<k>', 'cpu', numel): only globals, opcodes
 * and persistent ids that torch.load(weights_only=True) accepts. */
#include <syncbn/tensor_file.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "io/file.h"

/* ---------- a growing byte buffer ---------- */

typedef struct bytes_out {
    unsigned char *bytes;
    size_t size, capacity;
    int failed; /* out of memory at some point: the contents are incomplete */
} bytes_out;

static void put(bytes_out *b, const void *data, size_t size)
{
    if (b->failed) return;
    if (b->size + size > b->capacity) {
        size_t capacity = b->capacity ? b->capacity : 4096;
        while (capacity < b->size + size) capacity *= 2;
        unsigned char *grown = realloc(b->bytes, capacity);
        if (!grown) {
            b->failed = 1;
            return;
        }
        b->bytes = grown;
        b->capacity = capacity;
    }
    if (size) memcpy(b->bytes + b->size, data, size);
    b->size += size;
}

static void put_byte(bytes_out *b, unsigned value)
{
    const unsigned char byte = (unsigned char)value;
    put(b, &byte, 1);
}

/* value as `bytes` little-endian bytes */
static void put_le(bytes_out *b, uint64_t value, int bytes)
{
    for (int k = 0; k < bytes; k++) put_byte(b, (unsigned)(value >> (8 * k)) & 0xff);
}

/* ---------- pickle, protocol 2 ---------- */

enum {
    PICKLE_PROTO = 0x80, PICKLE_GLOBAL = 'c', PICKLE_EMPTY_TUPLE = ')', PICKLE_REDUCE = 'R', PICKLE_MARK = '(',
    PICKLE_TUPLE = 't', PICKLE_BINPERSID = 'Q', PICKLE_NEWFALSE = 0x89, PICKLE_SETITEMS = 'u', PICKLE_STOP = '.',
    PICKLE_BININT1 = 'K', PICKLE_BININT2 = 'M', PICKLE_BININT = 'J', PICKLE_LONG1 = 0x8a, PICKLE_BINUNICODE = 'X',
};

static void pickle_global(bytes_out *b, const char *module, const char *name)
{
    put_byte(b, PICKLE_GLOBAL);
    put(b, module, strlen(module));
    put_byte(b, '\n');
    put(b, name, strlen(name));
    put_byte(b, '\n');
}

static void pickle_string(bytes_out *b, const char *text)
{
    put_byte(b, PICKLE_BINUNICODE);
    put_le(b, strlen(text), 4);
    put(b, text, strlen(text));
}

static void pickle_int(bytes_out *b, int64_t value)
{
    if (value >= 0 && value < 256) {
        put_byte(b, PICKLE_BININT1);
        put_le(b, (uint64_t)value, 1);
    } else if (value >= 0 && value < 65536) {
        put_byte(b, PICKLE_BININT2);
        put_le(b, (uint64_t)value, 2);
    } else if (value >= INT32_MIN && value <= INT32_MAX) {
        put_byte(b, PICKLE_BININT);
        put_le(b, (uint64_t)value, 4);
    } else { /* 8 bytes two's complement */
        put_byte(b, PICKLE_LONG1);
        put_byte(b, 8);
        put_le(b, (uint64_t)value, 8);
    }
}

static void pickle_int_tuple(bytes_out *b, const int64_t *values, int count)
{
    if (count == 0) {
        put_byte(b, PICKLE_EMPTY_TUPLE);
        return;
    }
    put_byte(b, PICKLE_MARK);
    for (int k = 0; k < count; k++) pickle_int(b, values[k]);
    put_byte(b, PICKLE_TUPLE);
}

/* collections.OrderedDict() */
static void pickle_empty_ordered_dict(bytes_out *b)
{
    pickle_global(b, "collections", "OrderedDict");
    put_byte(b, PICKLE_EMPTY_TUPLE);
    put_byte(b, PICKLE_REDUCE);
}

static const char *storage_class(sbn_dtype dtype)
{
    switch (dtype) {
    case SBN_DTYPE_F32: return "FloatStorage";
    case SBN_DTYPE_F64: return "DoubleStorage";
    case SBN_DTYPE_I64: return "LongStorage";
    case SBN_DTYPE_I32: return "IntStorage";
    case SBN_DTYPE_U8: return "ByteStorage";
    case SBN_DTYPE_BF16: return "BFloat16Storage";
    case SBN_DTYPE_F16: return "HalfStorage";
    }
    return NULL;
}

/* _rebuild_tensor_v2(storage k, 0, shape, contiguous strides, False, OrderedDict()) */
static void pickle_tensor(bytes_out *b, const sbn_tensor *t, int64_t key)
{
    char key_text[24];
    snprintf(key_text, sizeof key_text, "%lld", (long long)key);
    int64_t stride[SBN_TENSOR_MAX_DIMS], running = 1;
    for (int d = t->ndim - 1; d >= 0; d--) { /* as torch: a zero-size dimension counts as 1 */
        stride[d] = running;
        running *= t->shape[d] > 1 ? t->shape[d] : 1;
    }
    pickle_global(b, "torch._utils", "_rebuild_tensor_v2");
    put_byte(b, PICKLE_MARK);
    put_byte(b, PICKLE_MARK); /* the persistent id */
    pickle_string(b, "storage");
    pickle_global(b, "torch", storage_class(t->dtype));
    pickle_string(b, key_text);
    pickle_string(b, "cpu");
    pickle_int(b, sbn_tensor_numel(t));
    put_byte(b, PICKLE_TUPLE);
    put_byte(b, PICKLE_BINPERSID);
    pickle_int(b, 0); /* storage offset */
    pickle_int_tuple(b, t->shape, t->ndim);
    pickle_int_tuple(b, stride, t->ndim);
    put_byte(b, PICKLE_NEWFALSE); /* requires_grad */
    pickle_empty_ordered_dict(b); /* backward hooks */
    put_byte(b, PICKLE_TUPLE);
    put_byte(b, PICKLE_REDUCE);
}

static void pickle_state_dict(bytes_out *b, const sbn_tensor *tensors, int64_t count)
{
    put_byte(b, PICKLE_PROTO);
    put_byte(b, 2);
    pickle_empty_ordered_dict(b);
    put_byte(b, PICKLE_MARK);
    for (int64_t i = 0; i < count; i++) {
        pickle_string(b, tensors[i].name);
        pickle_tensor(b, &tensors[i], i);
    }
    put_byte(b, PICKLE_SETITEMS);
    put_byte(b, PICKLE_STOP);
}

/* ---------- zip, stored (no compression) ---------- */

enum { RECORD_ALIGNMENT = 64, DOS_DATE_1980_01_01 = (1 << 5) | 1 };

typedef struct zip_record { char name[64]; uint32_t crc, size; uint32_t header_offset; } zip_record;

/* A local header whose extra field pads the data to RECORD_ALIGNMENT, then the data. */
static void zip_add(bytes_out *zip, zip_record *record, const char *name, const void *data, size_t size)
{
    snprintf(record->name, sizeof record->name, "%s", name);
    record->crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), data, (uInt)size);
    record->size = (uint32_t)size;
    record->header_offset = (uint32_t)zip->size;
    const size_t name_bytes = strlen(record->name), unpadded = zip->size + 30 + name_bytes + 4;
    const size_t padding = (RECORD_ALIGNMENT - unpadded % RECORD_ALIGNMENT) % RECORD_ALIGNMENT;
    put_le(zip, 0x04034b50, 4);
    put_le(zip, 20, 2);                  /* version needed */
    put_le(zip, 0, 2);                   /* flags */
    put_le(zip, 0, 2);                   /* stored */
    put_le(zip, 0, 2);                   /* time */
    put_le(zip, DOS_DATE_1980_01_01, 2); /* date */
    put_le(zip, record->crc, 4);
    put_le(zip, record->size, 4);
    put_le(zip, record->size, 4);
    put_le(zip, name_bytes, 2);
    put_le(zip, 4 + padding, 2);
    put(zip, record->name, name_bytes);
    put_le(zip, 0x4246, 2); /* "FB", PyTorch's padding field */
    put_le(zip, padding, 2);
    for (size_t k = 0; k < padding; k++) put_byte(zip, 'Z');
    put(zip, data, size);
}

static void zip_finish(bytes_out *zip, const zip_record *records, int count)
{
    const size_t directory_offset = zip->size;
    for (int k = 0; k < count; k++) {
        const size_t name_bytes = strlen(records[k].name);
        put_le(zip, 0x02014b50, 4);
        put_le(zip, 20, 2); /* made by */
        put_le(zip, 20, 2); /* needed */
        put_le(zip, 0, 2);
        put_le(zip, 0, 2);
        put_le(zip, 0, 2);
        put_le(zip, DOS_DATE_1980_01_01, 2);
        put_le(zip, records[k].crc, 4);
        put_le(zip, records[k].size, 4);
        put_le(zip, records[k].size, 4);
        put_le(zip, name_bytes, 2);
        put_le(zip, 0, 2); /* extra */
        put_le(zip, 0, 2); /* comment */
        put_le(zip, 0, 2); /* disk */
        put_le(zip, 0, 2); /* internal attributes */
        put_le(zip, 0, 4); /* external attributes */
        put_le(zip, records[k].header_offset, 4);
        put(zip, records[k].name, name_bytes);
    }
    const size_t directory_bytes = zip->size - directory_offset;
    put_le(zip, 0x06054b50, 4);
    put_le(zip, 0, 2);
    put_le(zip, 0, 2);
    put_le(zip, (uint64_t)count, 2);
    put_le(zip, (uint64_t)count, 2);
    put_le(zip, directory_bytes, 4);
    put_le(zip, directory_offset, 4);
    put_le(zip, 0, 2);
}

/* ---------- the file ---------- */

/* A zip without the zip64 extension holds records and offsets below 4 GiB. */
static const uint64_t ZIP_LIMIT = 0xffff0000u;

sbn_status sbn_torch_save(const char *path, const sbn_tensor *tensors, int64_t count)
{
    if (!path || (count > 0 && !tensors) || count < 0) return sbn_fail(SBN_ERR_ARG, "torch save: NULL or negative argument");
    if (count > 60000) return sbn_fail(SBN_ERR_ARG, "torch save: %lld tensors, at most 60000", (long long)count);
    uint64_t total = 0;
    for (int64_t i = 0; i < count; i++) {
        const sbn_tensor *t = &tensors[i];
        const int64_t numel = t->ndim >= 0 && t->ndim <= SBN_TENSOR_MAX_DIMS ? sbn_tensor_numel(t) : -1;
        if (!t->name || !storage_class(t->dtype) || numel < 0 || (!t->data && numel > 0))
            return sbn_fail(SBN_ERR_ARG, "torch save: tensor %lld has no name, an unknown dtype, a bad shape or no data",
                            (long long)i);
        for (int64_t j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0) return sbn_fail(SBN_ERR_ARG, "torch save: two tensors named %s", t->name);
        /* the record, its alignment and headers, and its share of the pickle */
        total += (uint64_t)numel * (uint64_t)sbn_dtype_size(t->dtype) + RECORD_ALIGNMENT + 512 + 2 * strlen(t->name);
        if (total > ZIP_LIMIT) return sbn_fail(SBN_ERR_ARG, "torch save: the tensors exceed the 4 GiB of a zip without zip64");
    }
    bytes_out pickle = {0}, zip = {0};
    pickle_state_dict(&pickle, tensors, count);
    zip_record *records = calloc((size_t)count + 3, sizeof *records);
    sbn_status st = SBN_OK;
    if (pickle.failed || !records) st = sbn_fail(SBN_ERR_NOMEM, "torch save: no memory for the pickle");
    if (st == SBN_OK) {
        int k = 0;
        zip_add(&zip, &records[k++], "archive/data.pkl", pickle.bytes, pickle.size);
        zip_add(&zip, &records[k++], "archive/byteorder", "little", 6);
        for (int64_t i = 0; i < count; i++) {
            char name[48];
            snprintf(name, sizeof name, "archive/data/%lld", (long long)i);
            zip_add(&zip, &records[k++], name, tensors[i].data,
                    (size_t)(sbn_tensor_numel(&tensors[i]) * sbn_dtype_size(tensors[i].dtype)));
        }
        zip_add(&zip, &records[k++], "archive/version", "3\n", 2);
        zip_finish(&zip, records, k);
        st = zip.failed ? sbn_fail(SBN_ERR_NOMEM, "torch save: no memory for a %zu-byte file", zip.size)
                        : sbn_file_write_atomic(path, zip.bytes, zip.size);
    }
    free(records);
    free(pickle.bytes);
    free(zip.bytes);
    return st;
}
