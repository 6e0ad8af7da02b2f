/* safetensors: read, check and write (format in tensor_file.h).
 *
 * Reading trusts nothing: the header length against the file, the JSON
 * against the schema, every tensor's byte length against dtype and shape,
 * offsets contiguous from 0 to the end of the data with no gap or overlap,
 * names unique, and the checksum when there is one. */
#include <syncbn/tensor_file.h>

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/error.h"
#include "io/file.h"

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "safetensors data is little-endian: add byte swapping");

enum { HEADER_LIMIT = 100 << 20 };            /* the reference implementation's cap on the JSON header */
static const char CHECKSUM_KEY[] = "syncbn.checksum";
static const char METADATA_KEY[] = "__metadata__";

static int dtype_from_name(const char *name, sbn_dtype *dtype)
{
    for (int k = 0; sbn_dtype_size((sbn_dtype)k) > 0; k++)
        if (strcmp(sbn_dtype_name((sbn_dtype)k), name) == 0) {
            *dtype = (sbn_dtype)k;
            return 1;
        }
    return 0;
}

/* Elements of a shape, or -1 when the product overflows. */
static int64_t shape_numel(const int64_t *shape, int ndim)
{
    int64_t numel = 1;
    for (int d = 0; d < ndim; d++)
        if (shape[d] < 0 || __builtin_mul_overflow(numel, shape[d], &numel)) return -1;
    return numel;
}

int64_t sbn_tensor_numel(const sbn_tensor *tensor) { return shape_numel(tensor->shape, tensor->ndim); }

/* ---------- the checksum ---------- */

/* CRC-32 over each tensor's name, dtype, shape and bytes (in data order),
 * then each metadata entry but the checksum (in key order): any change to
 * what a reader would load changes it. */
static uLong checksum_add(uLong crc, const void *bytes, size_t size)
{
    while (size > 0) { /* zlib takes uInt lengths */
        const uInt piece = size > (1u << 30) ? (1u << 30) : (uInt)size;
        crc = crc32(crc, bytes, piece);
        bytes = (const unsigned char *)bytes + piece;
        size -= piece;
    }
    return crc;
}

static uLong checksum_add_string(uLong crc, const char *text) { return checksum_add(crc, text, strlen(text) + 1); }

static uLong checksum_add_tensor(uLong crc, const sbn_tensor *t)
{
    char dims[32 * SBN_TENSOR_MAX_DIMS + 8];
    int used = snprintf(dims, sizeof dims, "%s:", sbn_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) used += snprintf(dims + used, sizeof dims - (size_t)used, "%lld,", (long long)t->shape[d]);
    crc = checksum_add_string(checksum_add_string(crc, t->name), dims);
    return checksum_add(crc, t->data, (size_t)(sbn_tensor_numel(t) * sbn_dtype_size(t->dtype)));
}

static int compare_entries_by_key(const void *a, const void *b)
{
    return strcmp(((const sbn_metadata_entry *)a)->key, ((const sbn_metadata_entry *)b)->key);
}

/* metadata is sorted by key here (a scratch copy the caller owns). */
static void checksum_text(char text[9], const sbn_tensor *tensors, int64_t count, sbn_metadata_entry *metadata,
                          int64_t metadata_count)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    for (int64_t i = 0; i < count; i++) crc = checksum_add_tensor(crc, &tensors[i]);
    qsort(metadata, (size_t)metadata_count, sizeof *metadata, compare_entries_by_key);
    for (int64_t i = 0; i < metadata_count; i++)
        if (strcmp(metadata[i].key, CHECKSUM_KEY) != 0)
            crc = checksum_add_string(checksum_add_string(crc, metadata[i].key), metadata[i].value);
    snprintf(text, 9, "%08lx", (unsigned long)crc);
}

/* ---------- writing ---------- */

static sbn_status check_tensors_to_write(const sbn_tensor *tensors, int64_t count)
{
    for (int64_t i = 0; i < count; i++) {
        const sbn_tensor *t = &tensors[i];
        if (!t->name || !t->name[0] || strcmp(t->name, METADATA_KEY) == 0)
            return sbn_fail(SBN_ERR_ARG, "tensor %lld has no name or the reserved name __metadata__", (long long)i);
        if (sbn_dtype_size(t->dtype) == 0) return sbn_fail(SBN_ERR_ARG, "tensor %s: unknown dtype %d", t->name, (int)t->dtype);
        if (t->ndim < 0 || t->ndim > SBN_TENSOR_MAX_DIMS)
            return sbn_fail(SBN_ERR_ARG, "tensor %s: %d dimensions (0 to %d allowed)", t->name, t->ndim,
                            SBN_TENSOR_MAX_DIMS);
        const int64_t numel = sbn_tensor_numel(t);
        if (numel < 0 || numel > INT64_MAX / 8) return sbn_fail(SBN_ERR_ARG, "tensor %s: bad shape", t->name);
        if (!t->data && numel > 0) return sbn_fail(SBN_ERR_ARG, "tensor %s: data is NULL", t->name);
        for (int64_t j = 0; j < i; j++)
            if (strcmp(tensors[j].name, t->name) == 0) return sbn_fail(SBN_ERR_ARG, "two tensors named %s", t->name);
    }
    return SBN_OK;
}

/* The JSON header for tensors laid out in order, with the given metadata. */
static char *header_json(const sbn_tensor *tensors, int64_t count, const sbn_metadata_entry *metadata,
                         int64_t metadata_count, const char *checksum)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    int ok = root && meta;
    for (int64_t i = 0; ok && i < metadata_count; i++)
        ok = cJSON_AddStringToObject(meta, metadata[i].key, metadata[i].value) != NULL;
    ok = ok && cJSON_AddStringToObject(meta, CHECKSUM_KEY, checksum) != NULL;
    if (ok && (ok = cJSON_AddItemToObject(root, METADATA_KEY, meta))) meta = NULL;
    int64_t offset = 0;
    for (int64_t i = 0; ok && i < count; i++) {
        const sbn_tensor *t = &tensors[i];
        const int64_t bytes = sbn_tensor_numel(t) * sbn_dtype_size(t->dtype);
        cJSON *entry = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offsets = cJSON_CreateArray();
        ok = entry && shape && offsets && cJSON_AddStringToObject(entry, "dtype", sbn_dtype_name(t->dtype));
        for (int d = 0; ok && d < t->ndim; d++) ok = cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)t->shape[d]));
        ok = ok && cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)offset)) &&
             cJSON_AddItemToArray(offsets, cJSON_CreateNumber((double)(offset + bytes)));
        /* Each add that succeeds hands its item to its parent; on a failure
         * the items not yet handed over are freed here. */
        if (ok && (ok = cJSON_AddItemToObject(entry, "shape", shape))) shape = NULL;
        if (ok && (ok = cJSON_AddItemToObject(entry, "data_offsets", offsets))) offsets = NULL;
        if (ok && (ok = cJSON_AddItemToObject(root, t->name, entry))) entry = NULL;
        cJSON_Delete(entry), cJSON_Delete(shape), cJSON_Delete(offsets);
        offset += bytes;
    }
    char *text = ok ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    cJSON_Delete(meta);
    return text;
}

sbn_status sbn_safetensors_write(const char *path, const sbn_tensor *tensors, int64_t count,
                                 const sbn_metadata_entry *metadata, int64_t metadata_count)
{
    if (!path || (count > 0 && !tensors) || (metadata_count > 0 && !metadata) || count < 0 || metadata_count < 0)
        return sbn_fail(SBN_ERR_ARG, "safetensors write: NULL or negative argument");
    sbn_status st = check_tensors_to_write(tensors, count);
    if (st != SBN_OK) return st;
    for (int64_t i = 0; i < metadata_count; i++)
        if (!metadata[i].key || !metadata[i].value || strcmp(metadata[i].key, CHECKSUM_KEY) == 0)
            return sbn_fail(SBN_ERR_ARG, "metadata entry %lld: NULL, or the reserved key %s", (long long)i, CHECKSUM_KEY);
    sbn_metadata_entry *sorted = malloc(((size_t)metadata_count + 1) * sizeof *sorted);
    if (!sorted) return sbn_fail(SBN_ERR_NOMEM, "no memory for the metadata");
    if (metadata_count) memcpy(sorted, metadata, (size_t)metadata_count * sizeof *sorted);
    qsort(sorted, (size_t)metadata_count, sizeof *sorted, compare_entries_by_key);
    for (int64_t i = 1; i < metadata_count; i++)
        if (strcmp(sorted[i - 1].key, sorted[i].key) == 0) {
            st = sbn_fail(SBN_ERR_ARG, "metadata key %s appears twice", sorted[i].key);
            free(sorted);
            return st;
        }
    char checksum[9];
    checksum_text(checksum, tensors, count, sorted, metadata_count);
    free(sorted);
    char *json = header_json(tensors, count, metadata, metadata_count, checksum);
    if (!json) return sbn_fail(SBN_ERR_NOMEM, "no memory for the safetensors header");
    const size_t json_bytes = strlen(json), header_bytes = (json_bytes + 7) / 8 * 8; /* data 8-byte aligned */
    size_t total = 8 + header_bytes;
    for (int64_t i = 0; i < count; i++)
        total += (size_t)(sbn_tensor_numel(&tensors[i]) * sbn_dtype_size(tensors[i].dtype));
    unsigned char *file = malloc(total);
    if (!file) {
        free(json);
        return sbn_fail(SBN_ERR_NOMEM, "no memory for a %zu-byte safetensors file", total);
    }
    for (int k = 0; k < 8; k++) file[k] = (unsigned char)((uint64_t)header_bytes >> (8 * k));
    memcpy(file + 8, json, json_bytes);
    memset(file + 8 + json_bytes, ' ', header_bytes - json_bytes);
    free(json);
    size_t at = 8 + header_bytes;
    for (int64_t i = 0; i < count; i++) {
        const size_t bytes = (size_t)(sbn_tensor_numel(&tensors[i]) * sbn_dtype_size(tensors[i].dtype));
        if (bytes) memcpy(file + at, tensors[i].data, bytes);
        at += bytes;
    }
    st = sbn_file_write_atomic(path, file, total);
    free(file);
    return st;
}

/* ---------- reading ---------- */

struct sbn_safetensors {
    char *label;              /* the path, for messages */
    int64_t count, metadata_count;
    sbn_tensor *tensors;      /* sorted by data offset */
    char **names;             /* owned names, one per tensor */
    sbn_metadata_entry *metadata; /* owned keys and values */
    unsigned char *data;      /* the tensors' data, each at a multiple of 8 bytes */
    int has_checksum;
};

void sbn_safetensors_close(sbn_safetensors *file)
{
    if (!file) return;
    for (int64_t i = 0; i < file->count; i++) free(file->names[i]);
    for (int64_t i = 0; i < file->metadata_count; i++) {
        free((char *)file->metadata[i].key);
        free((char *)file->metadata[i].value);
    }
    free(file->names);
    free(file->tensors);
    free(file->metadata);
    free(file->data);
    free(file->label);
    free(file);
}

int64_t sbn_safetensors_count(const sbn_safetensors *file) { return file ? file->count : 0; }
int sbn_safetensors_has_checksum(const sbn_safetensors *file) { return file ? file->has_checksum : 0; }
const char *sbn_safetensors_path(const sbn_safetensors *file) { return file ? file->label : ""; }

const sbn_tensor *sbn_safetensors_at(const sbn_safetensors *file, int64_t index)
{
    return file && index >= 0 && index < file->count ? &file->tensors[index] : NULL;
}

const char *sbn_safetensors_metadata(const sbn_safetensors *file, const char *key)
{
    for (int64_t i = 0; file && key && i < file->metadata_count; i++)
        if (strcmp(file->metadata[i].key, key) == 0) return file->metadata[i].value;
    return NULL;
}

/* A parse in progress: where messages say the problem is. */
typedef struct parse_context { const char *label; } parse_context;

static sbn_status bad(const parse_context *context, const char *what)
{
    return sbn_fail(SBN_ERR_FORMAT, "%s: not a valid safetensors file: %s", context->label, what);
}

static sbn_status bad_tensor(const parse_context *context, const char *name, const char *what)
{
    return sbn_fail(SBN_ERR_FORMAT, "%s: not a valid safetensors file: tensor \"%.100s\": %s", context->label, name,
                    what);
}

/* A JSON number that is a whole number in [0, 2^53]. */
static int whole_number(const cJSON *item, int64_t *value)
{
    if (!cJSON_IsNumber(item)) return 0;
    const double v = item->valuedouble;
    if (!(v >= 0.0 && v <= 9007199254740992.0) || v != floor(v)) return 0;
    *value = (int64_t)v;
    return 1;
}

static char *copy_string(const char *text)
{
    const size_t length = strlen(text);
    char *copy = malloc(length + 1);
    if (copy) memcpy(copy, text, length + 1);
    return copy;
}

/* A tensor entry of the header, with its offsets. */
typedef struct entry { sbn_tensor tensor; int64_t begin, end, position; } entry; /* position: in the header */

static sbn_status parse_entry(const parse_context *context, const cJSON *item, entry *e, char **name)
{
    const char *n = item->string;
    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsObject(item) || cJSON_GetArraySize(item) != 3 || !cJSON_IsString(dtype) || !cJSON_IsArray(shape) ||
        !cJSON_IsArray(offsets))
        return bad_tensor(context, n, "needs exactly dtype, shape and data_offsets");
    if (!dtype_from_name(dtype->valuestring, &e->tensor.dtype))
        return bad_tensor(context, n, "unsupported dtype (F32, F64, I64, I32, U8 are read)");
    const int ndim = cJSON_GetArraySize(shape);
    if (ndim > SBN_TENSOR_MAX_DIMS) return bad_tensor(context, n, "more than 8 dimensions");
    e->tensor.ndim = ndim;
    int d = 0;
    for (const cJSON *dim = shape->child; dim; dim = dim->next, d++)
        if (!whole_number(dim, &e->tensor.shape[d])) return bad_tensor(context, n, "a dimension is not a whole number >= 0");
    if (cJSON_GetArraySize(offsets) != 2 || !whole_number(offsets->child, &e->begin) ||
        !whole_number(offsets->child->next, &e->end) || e->end < e->begin)
        return bad_tensor(context, n, "data_offsets must be [begin, end] with 0 <= begin <= end");
    const int64_t numel = sbn_tensor_numel(&e->tensor);
    int64_t bytes;
    if (numel < 0 || __builtin_mul_overflow(numel, sbn_dtype_size(e->tensor.dtype), &bytes) ||
        bytes != e->end - e->begin)
        return bad_tensor(context, n, "its byte length differs from dtype size x shape");
    if (!(*name = copy_string(n))) return sbn_fail(SBN_ERR_NOMEM, "%s: no memory", context->label);
    e->tensor.name = *name;
    return SBN_OK;
}

static int compare_entries_by_offset(const void *a, const void *b)
{
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return (x->position > y->position) - (x->position < y->position); /* empty tensors: header order, always */
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static sbn_status parse_metadata(const parse_context *context, const cJSON *item, sbn_safetensors *file)
{
    if (!cJSON_IsObject(item)) return bad(context, "__metadata__ is not an object");
    const int count = cJSON_GetArraySize(item);
    file->metadata = calloc((size_t)count + 1, sizeof *file->metadata);
    if (!file->metadata) return sbn_fail(SBN_ERR_NOMEM, "%s: no memory", context->label);
    for (const cJSON *value = item->child; value; value = value->next) {
        if (!cJSON_IsString(value)) return bad(context, "a __metadata__ value is not a string");
        if (sbn_safetensors_metadata(file, value->string)) return bad(context, "a __metadata__ key appears twice");
        sbn_metadata_entry *m = &file->metadata[file->metadata_count];
        m->key = copy_string(value->string);
        m->value = m->key ? copy_string(value->valuestring) : NULL;
        if (m->key) file->metadata_count++;
        if (!m->value) return sbn_fail(SBN_ERR_NOMEM, "%s: no memory", context->label);
    }
    return SBN_OK;
}

/* Tensors sorted by offset must tile [0, data_bytes) exactly. */
static sbn_status check_layout(const parse_context *context, entry *entries, int64_t count, int64_t data_bytes)
{
    qsort(entries, (size_t)count, sizeof *entries, compare_entries_by_offset);
    int64_t expected = 0;
    for (int64_t i = 0; i < count; i++) {
        if (entries[i].begin != expected)
            return bad(context, entries[i].begin < expected ? "two tensors' data overlap"
                                                            : "a gap between two tensors' data");
        expected = entries[i].end;
    }
    if (expected != data_bytes) {
        char what[128];
        snprintf(what, sizeof what, "the tensors cover %lld bytes but the file holds %lld after the header",
                 (long long)expected, (long long)data_bytes);
        return bad(context, what);
    }
    return SBN_OK;
}

static sbn_status verify_checksum(const parse_context *context, sbn_safetensors *file)
{
    const char *stored = sbn_safetensors_metadata(file, CHECKSUM_KEY);
    if (!stored) return SBN_OK;
    file->has_checksum = 1;
    sbn_metadata_entry *scratch = malloc(((size_t)file->metadata_count + 1) * sizeof *scratch);
    if (!scratch) return sbn_fail(SBN_ERR_NOMEM, "%s: no memory", context->label);
    if (file->metadata_count) memcpy(scratch, file->metadata, (size_t)file->metadata_count * sizeof *scratch);
    char computed[9];
    checksum_text(computed, file->tensors, file->count, scratch, file->metadata_count);
    free(scratch);
    if (strcmp(computed, stored) != 0)
        return sbn_fail(SBN_ERR_FORMAT, "%s: checksum mismatch (stored %.16s, computed %s): the file is corrupt",
                        context->label, stored, computed);
    return SBN_OK;
}

static sbn_status parse_header(const parse_context *context, const cJSON *root, const unsigned char *data,
                               int64_t data_bytes, sbn_safetensors *file)
{
    if (!cJSON_IsObject(root)) return bad(context, "the header is not a JSON object");
    const int items = cJSON_GetArraySize(root);
    entry *entries = calloc((size_t)items + 1, sizeof *entries);
    file->names = calloc((size_t)items + 1, sizeof *file->names);
    if (!entries || !file->names) {
        free(entries);
        return sbn_fail(SBN_ERR_NOMEM, "%s: no memory for %d tensors", context->label, items);
    }
    sbn_status st = SBN_OK;
    int metadata_seen = 0;
    for (const cJSON *item = root->child; item && st == SBN_OK; item = item->next) {
        if (strcmp(item->string, METADATA_KEY) == 0) {
            st = metadata_seen++ ? bad(context, "two __metadata__ entries") : parse_metadata(context, item, file);
            continue;
        }
        st = parse_entry(context, item, &entries[file->count], &file->names[file->count]);
        entries[file->count].position = file->count;
        if (st == SBN_OK) file->count++;
    }
    if (st == SBN_OK) {
        char **sorted = malloc(((size_t)file->count + 1) * sizeof *sorted);
        if (!sorted) st = sbn_fail(SBN_ERR_NOMEM, "%s: no memory", context->label);
        if (sorted) {
            memcpy(sorted, file->names, (size_t)file->count * sizeof *sorted);
            qsort(sorted, (size_t)file->count, sizeof *sorted, compare_names);
            for (int64_t i = 1; i < file->count && st == SBN_OK; i++)
                if (strcmp(sorted[i - 1], sorted[i]) == 0) st = bad(context, "two tensors have the same name");
            free(sorted);
        }
    }
    if (st == SBN_OK) st = check_layout(context, entries, file->count, data_bytes);
    /* Other writers need not align each tensor: copy each to an offset that
     * is a multiple of 8, so that every tensor's data is aligned for its type. */
    size_t aligned_bytes = 0;
    for (int64_t i = 0; st == SBN_OK && i < file->count; i++)
        aligned_bytes += ((size_t)(entries[i].end - entries[i].begin) + 7) / 8 * 8;
    if (st == SBN_OK) {
        file->data = malloc(aligned_bytes + 1);
        file->tensors = calloc((size_t)file->count + 1, sizeof *file->tensors);
        if (!file->data || !file->tensors) st = sbn_fail(SBN_ERR_NOMEM, "%s: no memory for the data", context->label);
    }
    if (st == SBN_OK) {
        size_t at = 0;
        for (int64_t i = 0; i < file->count; i++) {
            const size_t bytes = (size_t)(entries[i].end - entries[i].begin);
            if (bytes) memcpy(file->data + at, data + entries[i].begin, bytes);
            file->tensors[i] = entries[i].tensor;
            file->tensors[i].data = file->data + at;
            at += (bytes + 7) / 8 * 8;
        }
        st = verify_checksum(context, file);
    }
    free(entries);
    return st;
}

sbn_status sbn_safetensors_parse(const void *bytes, size_t size, const char *label, sbn_safetensors **out)
{
    if (!out) return sbn_fail(SBN_ERR_ARG, "out is NULL");
    *out = NULL;
    if (!bytes && size) return sbn_fail(SBN_ERR_ARG, "bytes is NULL");
    const parse_context context = {label ? label : "(memory)"};
    const unsigned char *file_bytes = bytes;
    if (size < 8) return bad(&context, "shorter than the 8-byte header length");
    uint64_t header_bytes = 0;
    for (int k = 0; k < 8; k++) header_bytes |= (uint64_t)file_bytes[k] << (8 * k);
    if (header_bytes > size - 8 || header_bytes > HEADER_LIMIT || header_bytes < 2) {
        char what[160];
        snprintf(what, sizeof what, "the header length %llu does not fit the file's %zu bytes (or exceeds %d)",
                 (unsigned long long)header_bytes, size, HEADER_LIMIT);
        return bad(&context, what);
    }
    const char *json = (const char *)file_bytes + 8, *end = NULL;
    if (json[0] != '{') return bad(&context, "the header does not start with '{'");
    cJSON *root = cJSON_ParseWithLengthOpts(json, (size_t)header_bytes, &end, 0);
    if (!root) return bad(&context, "the header is not valid JSON");
    for (const char *p = end; p < json + header_bytes; p++)
        if (*p != ' ') {
            cJSON_Delete(root);
            return bad(&context, "the header has text after its JSON object");
        }
    sbn_safetensors *file = calloc(1, sizeof *file);
    if (file && !(file->label = copy_string(context.label))) {
        free(file);
        file = NULL;
    }
    if (!file) {
        cJSON_Delete(root);
        return sbn_fail(SBN_ERR_NOMEM, "%s: no memory", context.label);
    }
    sbn_status st = parse_header(&context, root, file_bytes + 8 + header_bytes, (int64_t)(size - 8 - header_bytes), file);
    cJSON_Delete(root);
    if (st != SBN_OK) {
        sbn_safetensors_close(file);
        return st;
    }
    *out = file;
    return SBN_OK;
}

sbn_status sbn_safetensors_open(const char *path, sbn_safetensors **out)
{
    if (!out) return sbn_fail(SBN_ERR_ARG, "out is NULL");
    *out = NULL;
    if (!path) return sbn_fail(SBN_ERR_ARG, "path is NULL");
    unsigned char *bytes;
    size_t size;
    sbn_status st = sbn_file_read_all(path, (size_t)1 << 40, &bytes, &size);
    if (st != SBN_OK) return st;
    st = sbn_safetensors_parse(bytes, size, path, out);
    free(bytes);
    return st;
}

sbn_status sbn_safetensors_find(const sbn_safetensors *file, const char *name, const sbn_tensor **out)
{
    if (!file || !name || !out) return sbn_fail(SBN_ERR_ARG, "NULL argument");
    for (int64_t i = 0; i < file->count; i++)
        if (strcmp(file->tensors[i].name, name) == 0) {
            *out = &file->tensors[i];
            return SBN_OK;
        }
    *out = NULL;
    return sbn_fail(SBN_ERR_FORMAT, "%s: no tensor named %s", file->label, name);
}
