/* The study's grid (study_grid.h). */
#include "study_grid.h"

#include <errno.h>
#include <stdbool.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *study_norm_name(study_norm norm)
{
    return norm == STUDY_ONE ? "one" : norm == STUDY_PLAIN ? "plain" : "sync";
}

const char *study_norm_title(study_norm norm)
{
    return norm == STUDY_ONE ? "one process" : norm == STUDY_PLAIN ? "plain BN" : "SyncBN";
}

const char *study_norm_flag(study_norm norm)
{
    return norm == STUDY_SYNC ? "sync" : "bn";
}

/* Splits `text` at commas into at most `max` items, each handed to `parse`
 * (which returns 0 or writes the error). Empty items are refused. */
static int parse_list(const char *text, int max, const char *what, int (*parse)(const char *item, int index, void *out,
                      char *error, size_t error_size), void *out, int *count, char *error, size_t error_size)
{
    *count = 0;
    if (!*text) {
        snprintf(error, error_size, "the list of %s is empty", what);
        return -1;
    }
    for (const char *p = text;;) {
        const char *comma = strchr(p, ',');
        const size_t length = comma ? (size_t)(comma - p) : strlen(p);
        char item[64];
        if (length == 0 || length >= sizeof item) {
            snprintf(error, error_size, "'%s': %s", text, length ? "an item is too long" : "an empty item");
            return -1;
        }
        if (*count == max) {
            snprintf(error, error_size, "'%s': more than %d %s", text, max, what);
            return -1;
        }
        memcpy(item, p, length), item[length] = '\0';
        if (parse(item, *count, out, error, error_size) != 0) return -1;
        (*count)++;
        if (!comma) return 0;
        p = comma + 1;
    }
}

static int parse_batch(const char *item, int index, void *out, char *error, size_t error_size)
{
    char *end;
    errno = 0;
    const long long value = strtoll(item, &end, 10);
    if (end == item || *end || item[0] == ' ' || item[0] == '+') {
        snprintf(error, error_size, "'%s' is not an integer", item);
        return -1;
    }
    if (errno == ERANGE || value < 1 || value > INT32_MAX) {
        snprintf(error, error_size, "'%s' is out of range (valid: 1 to %d)", item, INT32_MAX);
        return -1;
    }
    ((int64_t *)out)[index] = value;
    return 0;
}

static int parse_factor(const char *item, int index, void *out, char *error, size_t error_size)
{
    char *end;
    errno = 0;
    const double value = strtod(item, &end);
    if (end == item || *end || item[0] == ' ') {
        snprintf(error, error_size, "'%s' is not a number", item);
        return -1;
    }
    if (errno == ERANGE || !isfinite(value) || !(value > 0)) {
        snprintf(error, error_size, "'%s' is out of range (valid: a finite number > 0)", item);
        return -1;
    }
    if (value == 1.0) {
        snprintf(error, error_size, "'%s': a factor of 1 is the main grid", item);
        return -1;
    }
    ((double *)out)[index] = value;
    return 0;
}

static int compare_int64(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int compare_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int study_parse_batches(const char *text, int ranks, study_grid *grid, char *error, size_t error_size)
{
    int count;
    int64_t batches[STUDY_MAX_BATCHES];
    if (parse_list(text, STUDY_MAX_BATCHES, "per-rank batches", parse_batch, batches, &count, error, error_size))
        return -1;
    qsort(batches, (size_t)count, sizeof *batches, compare_int64);
    for (int k = 0; k < count; k++) {
        if (k > 0 && batches[k] == batches[k - 1]) {
            snprintf(error, error_size, "'%s': %lld is listed twice", text, (long long)batches[k]);
            return -1;
        }
        if (ranks > 0 && batches[k] > INT32_MAX / ranks) {
            snprintf(error, error_size, "'%s': %d ranks x %lld is above the largest global batch %d", text, ranks,
                     (long long)batches[k], INT32_MAX);
            return -1;
        }
    }
    memcpy(grid->batches, batches, sizeof batches);
    grid->batch_count = count;
    return 0;
}

int study_parse_stress(const char *text, study_grid *grid, char *error, size_t error_size)
{
    if (strcmp(text, "none") == 0) {
        grid->stress_count = 0;
        return 0;
    }
    int count;
    double factors[STUDY_MAX_STRESS];
    if (parse_list(text, STUDY_MAX_STRESS, "stress factors", parse_factor, factors, &count, error, error_size))
        return -1;
    qsort(factors, (size_t)count, sizeof *factors, compare_double);
    for (int k = 1; k < count; k++)
        if (factors[k] == factors[k - 1]) {
            snprintf(error, error_size, "'%s': %g is listed twice", text, factors[k]);
            return -1;
        }
    memcpy(grid->stress, factors, sizeof factors);
    grid->stress_count = count;
    return 0;
}

int study_group_count(const study_grid *grid)
{
    return grid->batch_count + (grid->batch_count > 0 ? grid->stress_count : 0);
}

int study_cell_count(const study_grid *grid)
{
    return STUDY_NORMS * study_group_count(grid);
}

int64_t study_run_count(const study_grid *grid)
{
    return (int64_t)study_cell_count(grid) * grid->seeds;
}

void study_cells(const study_grid *grid, study_cell *cells)
{
    for (int g = 0; g < study_group_count(grid); g++) {
        const bool stress = g >= grid->batch_count;
        for (int n = 0; n < STUDY_NORMS; n++)
            cells[STUDY_NORMS * g + n] = (study_cell){
                .group = g,
                .per_rank_batch = stress ? grid->batches[0] : grid->batches[g],
                .lr_factor = stress ? grid->stress[g - grid->batch_count] : 1.0,
                .norm = (study_norm)n,
            };
    }
}

void study_runs(const study_grid *grid, study_run *runs)
{
    int64_t k = 0;
    for (int g = 0; g < study_group_count(grid); g++)
        for (int s = 0; s < grid->seeds; s++)
            for (int n = 0; n < STUDY_NORMS; n++)
                runs[k++] = (study_run){.cell = STUDY_NORMS * g + n, .seed = grid->first_seed + (uint64_t)s};
}

int study_cell_ranks(const study_grid *grid, const study_cell *cell)
{
    return cell->norm == STUDY_ONE ? 1 : grid->ranks;
}

int64_t study_cell_global_batch(const study_grid *grid, const study_cell *cell)
{
    return (int64_t)grid->ranks * cell->per_rank_batch;
}

sbn_train_options study_run_options(const sbn_train_options *base, const study_grid *grid, const study_cell *cell,
                                    uint64_t seed)
{
    sbn_train_options o = *base;
    o.global_batch = study_cell_global_batch(grid, cell);
    o.lr = base->lr * cell->lr_factor;
    o.seed = seed;
    o.norm = cell->norm == STUDY_SYNC ? SBN_NORM_SYNC : SBN_NORM_BN;
    return o;
}

int study_run_key(const sbn_train_options *o, int ranks, study_norm norm, int eval_points, char *key, size_t size)
{
    return snprintf(key, size,
                    "model=%s norm=%s ranks=%d batch=%lld epochs=%lld steps=%lld samples=%lld lr=%.17g schedule=%s "
                    "momentum=%.17g weight_decay=%.17g seed=%llu eval_points=%d data=%s",
                    o->model == SBN_MODEL_SEED ? "seed" : "convnet", study_norm_flag(norm), ranks,
                    (long long)o->global_batch, (long long)o->epochs, (long long)o->max_steps,
                    (long long)o->train_samples, o->lr, o->lr_schedule == SBN_LR_COSINE ? "cosine" : "constant",
                    o->momentum, o->weight_decay, (unsigned long long)o->seed, eval_points, o->data_dir);
}

uint64_t study_key_hash(const char *key)
{
    uint64_t hash = 14695981039346656037ull;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) hash = (hash ^ *p) * 1099511628211ull;
    return hash;
}
