/* Training checkpoints: the files (include/syncbn/checkpoint.h), saving
 * them collectively, and finding the newest good one to resume from. */
#define _POSIX_C_SOURCE 200809L
#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "io/file.h"

static const char FORMAT[] = "syncbn-checkpoint-1";
enum { PATH_BYTES = 4096, MAX_CANDIDATES = 4096 };

static const char *model_name(sbn_model_kind kind) { return kind == SBN_MODEL_SEED ? "seed" : "convnet"; }
static const char *norm_name(sbn_norm norm)
{
    return norm == SBN_NORM_NONE ? "none" : norm == SBN_NORM_SYNC ? "sync" : "bn";
}
static const char *schedule_name(sbn_lr_schedule s) { return s == SBN_LR_CONSTANT ? "constant" : "cosine"; }

/* ---------- paths ---------- */

static sbn_status path_join(char *out, const char *folder, const char *name)
{
    if (snprintf(out, PATH_BYTES, "%s/%s", folder, name) >= PATH_BYTES)
        return sbn_fail(SBN_ERR_ARG, "checkpoint path too long: %s/%s", folder, name);
    return SBN_OK;
}

static sbn_status step_file(char *out, const char *dir, int64_t step, const char *file)
{
    char name[64];
    snprintf(name, sizeof name, "step-%08lld/%s", (long long)step, file);
    return path_join(out, dir, name);
}

static void rank_file_name(char *out, size_t size, int rank) { snprintf(out, size, "bn-rank-%05d.safetensors", rank); }

/* "step-00000120" -> 120; -1 for anything else. */
static int64_t parse_step_name(const char *name)
{
    if (strncmp(name, "step-", 5) != 0 || strlen(name) < 13 || strlen(name) > 23) return -1;
    int64_t step = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9') return -1;
        step = step * 10 + (*p - '0');
    }
    return step;
}

static sbn_status make_folder(const char *path)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return sbn_fail(SBN_ERR_IO, "%s: cannot create the checkpoint folder: %s", path, strerror(errno));
    return sbn_file_sync_folder(path);
}

/* Checkpoint steps in dir, best first: the one `latest` names, then the
 * others from the newest. */
static int list_candidates(const char *dir, int64_t *steps, int max)
{
    int count = 0;
    char path[PATH_BYTES], text[32] = "";
    if (path_join(path, dir, "latest") == SBN_OK) {
        FILE *latest = fopen(path, "r");
        if (latest) {
            if (fgets(text, sizeof text, latest)) text[strcspn(text, "\n")] = '\0';
            fclose(latest);
            const int64_t step = parse_step_name(text);
            if (step >= 0) steps[count++] = step;
        }
    }
    int64_t *found = malloc((size_t)max * sizeof *found);
    int found_count = 0;
    DIR *folder = found ? opendir(dir) : NULL;
    for (struct dirent *e; folder && (e = readdir(folder)) && found_count < max;) {
        const int64_t step = parse_step_name(e->d_name);
        if (step >= 0 && (count == 0 || step != steps[0])) found[found_count++] = step;
    }
    if (folder) closedir(folder);
    for (int i = 0; i < found_count; i++) /* newest first: a few hundred at most, insertion sort */
        for (int j = i; j > 0 && found[j] > found[j - 1]; j--) {
            const int64_t t = found[j];
            found[j] = found[j - 1], found[j - 1] = t;
        }
    for (int i = 0; i < found_count && count < max; i++) steps[count++] = found[i];
    free(found);
    return count;
}

/* Whether each rank's BN buffers are its own: plain BN, and SyncBN over
 * groups smaller than the world (each group has its own statistics). */
static bool buffers_per_rank(const sbn_train_options *o, int ranks)
{
    return o->norm == SBN_NORM_BN || (o->norm == SBN_NORM_SYNC && o->group_size > 0 && o->group_size < ranks);
}

/* ---------- metadata ---------- */

enum { METADATA_COUNT = 19, VALUE_BYTES = 40 };
typedef struct run_metadata {
    sbn_metadata_entry entries[METADATA_COUNT];
    char values[METADATA_COUNT][VALUE_BYTES];
    int count;
} run_metadata;

static void put_value(run_metadata *m, const char *key, const char *format, ...) __attribute__((format(printf, 3, 4)));
static void put_value(run_metadata *m, const char *key, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(m->values[m->count], VALUE_BYTES, format, args);
    va_end(args);
    m->entries[m->count].key = key;
    m->entries[m->count].value = m->values[m->count];
    m->count++;
}

static void describe_run(run_metadata *m, const sbn_train_options *o, int ranks, checkpoint_position p)
{
    m->count = 0;
    put_value(m, "format", "%s", FORMAT);
    put_value(m, "model", "%s", model_name(o->model));
    put_value(m, "norm", "%s", norm_name(o->norm));
    put_value(m, "group_size", "%d", o->group_size);
    put_value(m, "global_batch", "%lld", (long long)o->global_batch);
    put_value(m, "ranks", "%d", ranks);
    put_value(m, "epochs", "%lld", (long long)o->epochs);
    put_value(m, "max_steps", "%lld", (long long)o->max_steps);
    put_value(m, "train_samples", "%lld", (long long)o->train_samples);
    put_value(m, "lr", "%.17g", o->lr);
    put_value(m, "momentum", "%.17g", o->momentum);
    put_value(m, "weight_decay", "%.17g", o->weight_decay);
    put_value(m, "lr_schedule", "%s", schedule_name(o->lr_schedule));
    put_value(m, "seed", "%llu", (unsigned long long)o->seed);
    put_value(m, "step", "%lld", (long long)p.step);
    put_value(m, "epoch", "%lld", (long long)(p.step / p.steps_per_epoch));
    put_value(m, "batch_in_epoch", "%lld", (long long)(p.step % p.steps_per_epoch));
    put_value(m, "total_steps", "%lld", (long long)p.total_steps);
    put_value(m, "bn_buffers", "%s",
              buffers_per_rank(o, ranks)     ? "per rank (bn-rank-*.safetensors)"
              : o->norm == SBN_NORM_SYNC ? "identical on all ranks (SyncBN)"
                                         : "none");
}

/* A metadata value as a whole integer / finite number / one of names. */
static sbn_status read_integer(const sbn_safetensors *file, const char *key, int64_t *value)
{
    const char *text = sbn_safetensors_metadata(file, key);
    char *end = NULL;
    errno = 0;
    const long long v = text ? strtoll(text, &end, 10) : 0;
    if (!text || end == text || *end || errno)
        return sbn_fail(SBN_ERR_FORMAT, "%s: metadata %s is missing or not an integer", sbn_safetensors_path(file), key);
    *value = v;
    return SBN_OK;
}

static sbn_status read_unsigned(const sbn_safetensors *file, const char *key, uint64_t *value)
{
    const char *text = sbn_safetensors_metadata(file, key);
    char *end = NULL;
    errno = 0;
    const unsigned long long v = text && text[0] != '-' ? strtoull(text, &end, 10) : 0;
    if (!text || text[0] == '-' || end == text || *end || errno)
        return sbn_fail(SBN_ERR_FORMAT, "%s: metadata %s is missing or not an unsigned integer",
                        sbn_safetensors_path(file), key);
    *value = v;
    return SBN_OK;
}

static sbn_status read_number(const sbn_safetensors *file, const char *key, double *value)
{
    const char *text = sbn_safetensors_metadata(file, key);
    char *end = NULL;
    const double v = text ? strtod(text, &end) : 0.0;
    if (!text || end == text || *end || v != v)
        return sbn_fail(SBN_ERR_FORMAT, "%s: metadata %s is missing or not a number", sbn_safetensors_path(file), key);
    *value = v;
    return SBN_OK;
}

static sbn_status read_choice(const sbn_safetensors *file, const char *key, const char *const *names, int count,
                              int *index)
{
    const char *text = sbn_safetensors_metadata(file, key);
    for (int k = 0; text && k < count; k++)
        if (strcmp(text, names[k]) == 0) {
            *index = k;
            return SBN_OK;
        }
    return sbn_fail(SBN_ERR_FORMAT, "%s: metadata %s is missing or unknown", sbn_safetensors_path(file), key);
}

/* The run a checkpoint file describes. */
static sbn_status read_run(const sbn_safetensors *file, sbn_train_options *o, int *ranks, checkpoint_position *p)
{
    static const char *const models[] = {"seed", "convnet"}, *const norms[] = {"none", "bn", "sync"},
                              *const schedules[] = {"constant", "cosine"};
    static const sbn_model_kind model_kinds[] = {SBN_MODEL_SEED, SBN_MODEL_CONVNET};
    static const sbn_norm norm_kinds[] = {SBN_NORM_NONE, SBN_NORM_BN, SBN_NORM_SYNC};
    static const sbn_lr_schedule schedule_kinds[] = {SBN_LR_CONSTANT, SBN_LR_COSINE};
    const char *format = sbn_safetensors_metadata(file, "format");
    if (!format || strcmp(format, FORMAT) != 0)
        return sbn_fail(SBN_ERR_FORMAT, "%s: not a syncbn checkpoint (format %s)", sbn_safetensors_path(file),
                        format ? format : "missing");
    if (!sbn_safetensors_has_checksum(file))
        return sbn_fail(SBN_ERR_FORMAT, "%s: a checkpoint file without its checksum", sbn_safetensors_path(file));
    int model = 0, norm = 0, schedule = 0;
    int64_t group_size = 0, rank_count = 0, epoch = 0, batch_in_epoch = 0;
    uint64_t seed = 0;
    sbn_status st = read_choice(file, "model", models, 2, &model);
    if (st == SBN_OK) st = read_choice(file, "norm", norms, 3, &norm);
    if (st == SBN_OK) st = read_choice(file, "lr_schedule", schedules, 2, &schedule);
    if (st == SBN_OK) st = read_integer(file, "group_size", &group_size);
    if (st == SBN_OK) st = read_integer(file, "global_batch", &o->global_batch);
    if (st == SBN_OK) st = read_integer(file, "ranks", &rank_count);
    if (st == SBN_OK) st = read_integer(file, "epochs", &o->epochs);
    if (st == SBN_OK) st = read_integer(file, "max_steps", &o->max_steps);
    if (st == SBN_OK) st = read_integer(file, "train_samples", &o->train_samples);
    if (st == SBN_OK) st = read_number(file, "lr", &o->lr);
    if (st == SBN_OK) st = read_number(file, "momentum", &o->momentum);
    if (st == SBN_OK) st = read_number(file, "weight_decay", &o->weight_decay);
    if (st == SBN_OK) st = read_unsigned(file, "seed", &seed);
    if (st == SBN_OK) st = read_integer(file, "step", &p->step);
    if (st == SBN_OK) st = read_integer(file, "epoch", &epoch);
    if (st == SBN_OK) st = read_integer(file, "batch_in_epoch", &batch_in_epoch);
    if (st == SBN_OK) st = read_integer(file, "total_steps", &p->total_steps);
    if (st != SBN_OK) return st;
    if (p->step < 1 || rank_count < 1 || rank_count > 1 << 24 || group_size < 0 || group_size > rank_count ||
        epoch < 0 || batch_in_epoch < 0 || p->total_steps < p->step)
        return sbn_fail(SBN_ERR_FORMAT, "%s: inconsistent run metadata", sbn_safetensors_path(file));
    o->model = model_kinds[model], o->norm = norm_kinds[norm], o->lr_schedule = schedule_kinds[schedule];
    o->group_size = (int)group_size, o->seed = seed;
    *ranks = (int)rank_count;
    return SBN_OK;
}

/* The fields that make two runs the same run. */
static sbn_status check_same_run(const sbn_train_options *want, const sbn_train_options *saved, const char *path)
{
    const char *differs = want->model != saved->model ? "model"
                          : want->norm != saved->norm ? "norm"
                          : want->group_size != saved->group_size ? "group size"
                          : want->global_batch != saved->global_batch ? "batch"
                          : want->epochs != saved->epochs ? "epochs"
                          : want->max_steps != saved->max_steps ? "steps"
                          : want->train_samples != saved->train_samples ? "train samples"
                          : want->lr != saved->lr ? "lr"
                          : want->momentum != saved->momentum ? "momentum"
                          : want->weight_decay != saved->weight_decay ? "weight decay"
                          : want->lr_schedule != saved->lr_schedule ? "lr schedule"
                          : want->seed != saved->seed ? "seed" : NULL;
    if (differs) return sbn_fail(SBN_ERR_ARG, "%s: the checkpoint's %s differs from this run's", path, differs);
    return SBN_OK;
}

/* ---------- agreeing across ranks ---------- */

/* Every rank learns whether all succeeded, and whether any failed with
 * SBN_ERR_ARG (a different run, not a damaged file); a rank that did not
 * fail itself is told that another did, with that status. */
static sbn_status agree(sbn_comm *world, sbn_status mine, const char *what)
{
    int64_t failed[2] = {mine != SBN_OK, mine == SBN_ERR_ARG};
    sbn_status st = sbn_comm_allreduce_sum_int64(world, failed, 2);
    if (st != SBN_OK) return st;
    if (mine != SBN_OK) return mine;
    if (failed[0])
        return sbn_fail(failed[1] ? SBN_ERR_ARG : SBN_ERR_IO, "%s: %lld other rank(s) failed (see their messages)",
                        what, (long long)failed[0]);
    return SBN_OK;
}

/* ---------- saving ---------- */

static sbn_status write_state(const char *path, sbn_model *model, const float *parameters, int parts,
                              const run_metadata *metadata)
{
    sbn_model_state *state = malloc(sizeof *state);
    if (!state) return sbn_fail(SBN_ERR_NOMEM, "no memory for a state dict");
    sbn_status st = sbn_model_state_dict(model, parameters, parts, state);
    if (st == SBN_OK) st = sbn_safetensors_write(path, state->tensors, state->count, metadata->entries, metadata->count);
    free(state);
    return st;
}

static sbn_status remove_checkpoint(const char *dir, int64_t step)
{
    char folder[PATH_BYTES], name[32], path[PATH_BYTES];
    snprintf(name, sizeof name, "step-%08lld", (long long)step);
    sbn_status st = path_join(folder, dir, name);
    if (st != SBN_OK) return st;
    DIR *d = opendir(folder);
    for (struct dirent *e; d && (e = readdir(d));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && path_join(path, folder, e->d_name) == SBN_OK)
            unlink(path);
    if (d) closedir(d);
    if (rmdir(folder) != 0) return sbn_fail(SBN_ERR_IO, "%s: cannot remove an old checkpoint: %s", folder, strerror(errno));
    return SBN_OK;
}

/* Keeps the newest `keep` checkpoints (the one just written among them). */
static sbn_status prune(const char *dir, int keep)
{
    int64_t *steps = malloc(MAX_CANDIDATES * sizeof *steps);
    if (!steps) return sbn_fail(SBN_ERR_NOMEM, "no memory");
    const int count = list_candidates(dir, steps, MAX_CANDIDATES);
    sbn_status st = SBN_OK;
    for (int i = keep; i < count && st == SBN_OK; i++) st = remove_checkpoint(dir, steps[i]);
    free(steps);
    char inside[PATH_BYTES]; /* sbn_file_sync_folder syncs the folder that holds its path: DIR itself here */
    if (st == SBN_OK) st = path_join(inside, dir, "latest");
    if (st == SBN_OK) st = sbn_file_sync_folder(inside);
    return st;
}

sbn_status checkpoint_save(const sbn_train_options *o, sbn_comm *world, sbn_model *model, const float *velocity,
                           checkpoint_position position)
{
    const int rank = sbn_comm_rank(world), ranks = sbn_comm_size(world);
    char what[96], name[32], path[PATH_BYTES];
    snprintf(what, sizeof what, "checkpoint of step %lld", (long long)position.step);
    snprintf(name, sizeof name, "step-%08lld", (long long)position.step);
    sbn_status st = SBN_OK;
    if (rank == 0) {
        st = make_folder(o->checkpoint_dir);
        if (st == SBN_OK) st = path_join(path, o->checkpoint_dir, name);
        if (st == SBN_OK) st = make_folder(path);
    }
    if ((st = agree(world, st, what)) != SBN_OK) return st;
    run_metadata *metadata = malloc(sizeof *metadata);
    if (!metadata) st = sbn_fail(SBN_ERR_NOMEM, "no memory");
    else describe_run(metadata, o, ranks, position);
    if (st == SBN_OK && rank == 0) {
        st = step_file(path, o->checkpoint_dir, position.step, "model.safetensors");
        if (st == SBN_OK) st = write_state(path, model, NULL, SBN_STATE_ALL, metadata);
        if (st == SBN_OK) st = step_file(path, o->checkpoint_dir, position.step, "optimizer.safetensors");
        if (st == SBN_OK) st = write_state(path, model, velocity, SBN_STATE_PARAMETERS, metadata);
    }
    if (st == SBN_OK && buffers_per_rank(o, ranks)) {
        char file[40];
        rank_file_name(file, sizeof file, rank);
        st = step_file(path, o->checkpoint_dir, position.step, file);
        if (st == SBN_OK) st = write_state(path, model, NULL, SBN_STATE_BUFFERS, metadata);
    }
    free(metadata);
    if ((st = agree(world, st, what)) != SBN_OK) return st;
    if (rank == 0) { /* every rank's files are complete: point latest at them */
        char text[48];
        snprintf(text, sizeof text, "%s\n", name);
        st = path_join(path, o->checkpoint_dir, "latest");
        if (st == SBN_OK) st = sbn_file_write_atomic(path, text, strlen(text));
        /* The new checkpoint is complete and named: an old one that cannot
         * be removed is worth a warning, not the run. */
        if (st == SBN_OK && prune(o->checkpoint_dir, o->keep > 0 ? o->keep : SBN_CHECKPOINT_DEFAULT_KEEP) != SBN_OK)
            fprintf(stderr, "syncbn: warning: %s\n", sbn_errmsg());
    }
    return agree(world, st, what);
}

/* ---------- loading ---------- */

static sbn_status open_checkpoint_file(const char *dir, int64_t step, const char *file, sbn_safetensors **out)
{
    char path[PATH_BYTES];
    sbn_status st = step_file(path, dir, step, file);
    return st == SBN_OK ? sbn_safetensors_open(path, out) : st;
}

/* A checkpoint's other files must carry its model file's metadata (the
 * same run and step) and a checksum: two complete files of different
 * attempts at the same step are never mixed. */
static sbn_status check_same_checkpoint(const sbn_safetensors *model_file, const sbn_safetensors *other)
{
    if (!sbn_safetensors_has_checksum(other))
        return sbn_fail(SBN_ERR_FORMAT, "%s: a checkpoint file without its checksum", sbn_safetensors_path(other));
    static const char *const keys[] = {"format", "model", "norm", "group_size", "global_batch", "ranks", "epochs",
                                       "max_steps", "train_samples", "lr", "momentum", "weight_decay", "lr_schedule",
                                       "seed", "step", "total_steps"};
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        const char *a = sbn_safetensors_metadata(model_file, keys[k]), *b = sbn_safetensors_metadata(other, keys[k]);
        if (!a || !b || strcmp(a, b) != 0)
            return sbn_fail(SBN_ERR_FORMAT, "%s: its %s (%s) differs from %s's (%s): files of different checkpoints",
                            sbn_safetensors_path(other), keys[k], b ? b : "missing", sbn_safetensors_path(model_file),
                            a ? a : "missing");
    }
    return SBN_OK;
}

/* Everything this rank needs from checkpoint `step`, checked, then loaded. */
static sbn_status load_candidate(const sbn_train_options *o, sbn_comm *world, sbn_model *model, float *velocity,
                                 int64_t step, checkpoint_position *position)
{
    const int rank = sbn_comm_rank(world), ranks = sbn_comm_size(world);
    sbn_safetensors *model_file = NULL, *optimizer_file = NULL, *rank_file = NULL;
    sbn_train_options saved = *o;
    int saved_ranks = 0;
    checkpoint_position p = {0, 0, 0};
    sbn_status st = open_checkpoint_file(o->checkpoint_dir, step, "model.safetensors", &model_file);
    if (st == SBN_OK) st = read_run(model_file, &saved, &saved_ranks, &p);
    if (st == SBN_OK && p.step != step)
        st = sbn_fail(SBN_ERR_FORMAT, "%s: holds step %lld, not %lld", sbn_safetensors_path(model_file),
                      (long long)p.step, (long long)step);
    if (st == SBN_OK) st = check_same_run(o, &saved, sbn_safetensors_path(model_file));
    if (st == SBN_OK && (buffers_per_rank(o, saved_ranks) || buffers_per_rank(o, ranks)) && saved_ranks != ranks)
        st = sbn_fail(SBN_ERR_ARG,
                      "%s: a %s run of %d ranks cannot resume on %d: each rank's BN statistics are its own "
                      "(SyncBN over all ranks and no-BN runs can change the number of ranks)",
                      sbn_safetensors_path(model_file), o->norm == SBN_NORM_BN ? "plain-BN" : "grouped-SyncBN",
                      saved_ranks, ranks);
    if (st == SBN_OK) st = open_checkpoint_file(o->checkpoint_dir, step, "optimizer.safetensors", &optimizer_file);
    if (st == SBN_OK) st = check_same_checkpoint(model_file, optimizer_file);
    if (st == SBN_OK && buffers_per_rank(o, ranks)) {
        char file[40];
        rank_file_name(file, sizeof file, rank);
        st = open_checkpoint_file(o->checkpoint_dir, step, file, &rank_file);
        if (st == SBN_OK) st = check_same_checkpoint(model_file, rank_file);
    }
    /* Each load checks its whole file before it changes anything. */
    if (st == SBN_OK) st = sbn_model_load_state_dict(model, NULL, SBN_STATE_ALL, model_file);
    if (st == SBN_OK) st = sbn_model_load_state_dict(model, velocity, SBN_STATE_PARAMETERS, optimizer_file);
    if (st == SBN_OK && rank_file) st = sbn_model_load_state_dict(model, NULL, SBN_STATE_BUFFERS, rank_file);
    if (st == SBN_OK) *position = p;
    sbn_safetensors_close(model_file);
    sbn_safetensors_close(optimizer_file);
    sbn_safetensors_close(rank_file);
    return st;
}

sbn_status checkpoint_load(const sbn_train_options *o, sbn_comm *world, sbn_model *model, float *velocity,
                           checkpoint_position *position)
{
    const int rank = sbn_comm_rank(world);
    int64_t *steps = malloc(MAX_CANDIDATES * sizeof *steps);
    if (!steps) return sbn_fail(SBN_ERR_NOMEM, "no memory");
    const int count = rank == 0 ? list_candidates(o->checkpoint_dir, steps, MAX_CANDIDATES) : 0;
    sbn_status st = SBN_OK;
    for (int i = 0;; i++) {
        int64_t shared = rank == 0 && i < count ? steps[i] + 1 : 0; /* rank 0 names the candidate, 0 = none */
        if ((st = sbn_comm_allreduce_sum_int64(world, &shared, 1)) != SBN_OK) break;
        if (shared == 0) {
            st = sbn_fail(SBN_ERR_IO, "%s: no loadable checkpoint to resume from", o->checkpoint_dir);
            break;
        }
        char what[64];
        snprintf(what, sizeof what, "resuming from step %lld", (long long)(shared - 1));
        const sbn_status mine = load_candidate(o, world, model, velocity, shared - 1, position);
        /* Every rank leaves the loop at the same candidate: on success, on a
         * different run (SBN_ERR_ARG on any rank: not a damaged file, stop),
         * or when the communicator failed. */
        st = agree(world, mine, what);
        if (st == SBN_OK || st == SBN_ERR_ARG || st == SBN_ERR_COMM) break;
        if (rank == 0) fprintf(stderr, "syncbn: skipping checkpoint step %lld: %s\n", (long long)(shared - 1), sbn_errmsg());
    }
    free(steps);
    return st;
}

sbn_status checkpoint_check_folder(const sbn_train_options *o)
{
    if (o->resume) return SBN_OK;
    int64_t step;
    if (list_candidates(o->checkpoint_dir, &step, 1) > 0)
        return sbn_fail(SBN_ERR_ARG,
                        "%s already holds the checkpoints of a run: resume it (--resume) or choose another folder "
                        "(a new run would overwrite and prune them)",
                        o->checkpoint_dir);
    return SBN_OK;
}

/* ---------- for the command-line tool ---------- */

sbn_status sbn_checkpoint_read_options(const char *dir, sbn_train_options *options, int *ranks)
{
    if (!dir || !options || !ranks) return sbn_fail(SBN_ERR_ARG, "read options: NULL argument");
    int64_t *steps = malloc(MAX_CANDIDATES * sizeof *steps);
    if (!steps) return sbn_fail(SBN_ERR_NOMEM, "no memory");
    const int count = list_candidates(dir, steps, MAX_CANDIDATES);
    sbn_status st = sbn_fail(SBN_ERR_IO, "%s: no checkpoint found (no latest and no step-* folder)", dir);
    for (int i = 0; i < count; i++) {
        sbn_safetensors *file = NULL;
        sbn_train_options saved = *options;
        checkpoint_position p;
        st = open_checkpoint_file(dir, steps[i], "model.safetensors", &file);
        if (st == SBN_OK) st = read_run(file, &saved, ranks, &p);
        sbn_safetensors_close(file);
        if (st == SBN_OK) {
            *options = saved;
            break;
        }
        if (i + 1 == count)
            st = sbn_fail_with_cause(SBN_ERR_IO, "%s: no loadable checkpoint (the oldest tried)", dir);
    }
    free(steps);
    return st;
}

sbn_status sbn_checkpoint_model_file(const char *path, char *out, size_t size)
{
    if (!path || !out) return sbn_fail(SBN_ERR_ARG, "model file: NULL argument");
    struct stat info;
    if (stat(path, &info) != 0) return sbn_fail(SBN_ERR_IO, "%s: %s", path, strerror(errno));
    if (!S_ISDIR(info.st_mode)) {
        if (snprintf(out, size, "%s", path) >= (int)size) return sbn_fail(SBN_ERR_ARG, "%s: path too long", path);
        return SBN_OK;
    }
    sbn_train_options options = sbn_train_defaults();
    int ranks = 0;
    int64_t *steps = malloc(MAX_CANDIDATES * sizeof *steps);
    if (!steps) return sbn_fail(SBN_ERR_NOMEM, "no memory");
    const int count = list_candidates(path, steps, MAX_CANDIDATES);
    sbn_status st = sbn_fail(SBN_ERR_IO, "%s: no checkpoint found (no latest and no step-* folder)", path);
    for (int i = 0; i < count; i++) {
        char candidate[PATH_BYTES];
        sbn_safetensors *file = NULL;
        checkpoint_position p;
        st = step_file(candidate, path, steps[i], "model.safetensors");
        if (st == SBN_OK) st = sbn_safetensors_open(candidate, &file);
        if (st == SBN_OK) st = read_run(file, &options, &ranks, &p);
        sbn_safetensors_close(file);
        if (st == SBN_OK) {
            if (snprintf(out, size, "%s", candidate) >= (int)size) st = sbn_fail(SBN_ERR_ARG, "%s: path too long", candidate);
            break;
        }
    }
    free(steps);
    return st;
}
