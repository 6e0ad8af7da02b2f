/* `syncbn study`: when does SyncBN matter? compare's three runs (one
 * process, plain BN on P ranks, SyncBN on P ranks) over a grid of per-rank
 * batches, learning-rate stress factors and seeds (study_grid.h), each run
 * measured (accuracy, convergence, stability), the cells summarized over
 * seeds with Welch t-tests against one process, and a report written to
 * --out: study.json, study.csv, study.md (also printed) and two plots.
 *
 * Resumable: every finished run is appended to OUT/runs.jsonl as one JSON
 * line (one write, then fsync) holding its key (study_run_key) and its
 * measures; a restarted study skips the runs it finds there. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "runs.h"
#include "statistics.h"
#include "study_grid.h"

/* The definitions the report states (and study.json's "definitions"). */
enum {
    SPIKE_WINDOW = SBN_FINAL_LOSS_STEPS, /* a spike: step loss / median of the previous 50 steps' losses... */
    SPIKE_HISTORY = 10,                  /* ...counted from the 11th step on */
    MAX_STUDY_EVAL_POINTS = 62           /* run_metrics keeps 63 evaluations with the final one */
};
#define DIVERGED_ACCURACY 0.15 /* a run diverged: a non-finite loss, or test accuracy below this (chance: 0.10) */

/* The two presets: the full default grid and --quick. Flags given on the command line override either. */
typedef struct preset {
    const char *batches, *lr_stress;
    int ranks, seeds, eval_points;
    int64_t train_samples; /* 0: all */
    double loss_threshold, accuracy_level;
} preset;
static const preset full_grid = {"1,2,4,8,16", "2,5", 8, 3, 4, 0, 0.5, 0.85};
static const preset quick_grid = {"1,2,8", "5", 8, 3, 4, 12000, 0.6, 0.80};

static void study_usage(FILE *out)
{
    fprintf(out,
            "usage: syncbn study [options]\n\n"
            "When does SyncBN matter? Trains the same model as\n"
            "  one process   1 process with the global batch P x b, BN\n"
            "  plain BN      P ranks x b, each rank normalizing by its own b samples\n"
            "  SyncBN        P ranks x b, statistics over all P x b samples\n"
            "for each per-rank batch b and seed (the three runs of a seed share initial weights and data\n"
            "order), plus a learning-rate stress at the smallest b (lr x each factor), and reports per\n"
            "cell (b, lr factor, norm) over the seeds:\n"
            "  - test accuracy, mean +- sample sd; final and best (over the evaluations) test loss;\n"
            "  - the final train loss: the mean of the last %d steps' losses (as compare and train);\n"
            "  - convergence: steps and training seconds until the smoothed training loss (the mean of\n"
            "    the last %d steps) first falls below --loss-threshold, and until the test accuracy,\n"
            "    evaluated at --eval-points evenly spaced steps and at the end, first reaches\n"
            "    --accuracy-level (evaluation time left out);\n"
            "  - stability: the sd of the training loss over the last half of the run, the largest\n"
            "    spike (a step's loss / the median of the previous %d steps' losses, from step %d on),\n"
            "    the runs that diverged (a non-finite loss, or test accuracy below %.0f%%), and the\n"
            "    spread of running_mean across ranks (largest |rank r - rank 0|);\n"
            "  - plain BN vs one process and SyncBN vs one process: Welch's two-sided t-test\n"
            "    (unequal variances) over seeds on the accuracy and on the last-half loss sd; a\n"
            "    difference is reported where p < --alpha, else 'within noise'.\n"
            "Writes to --out: runs.jsonl (one line per finished run), runs/ (each run's metrics and\n"
            "log), study.json (every run and cell), study.csv (one row per cell), study.md (the table,\n"
            "also printed) and the plots study_accuracy.png and study_stability.png.\n"
            "Resumable: a study restarted with the same --out skips the runs runs.jsonl records.\n\n"
            "  --batches LIST         per-rank batches (default %s)\n"
            "  --ranks P              ranks of the plain BN and SyncBN runs, 2 to 1024 (default %d)\n"
            "  --seeds N              seeds per cell, S to S + N - 1 (default %d)\n"
            "  --seed S               the first seed (default 1)\n"
            "  --lr-stress LIST       lr factors at the smallest per-rank batch, or none (default %s)\n"
            "  --eval-points K        test evaluations during each run, 0 to %d (default %d)\n"
            "  --loss-threshold X     smoothed training loss to reach (default %g)\n"
            "  --accuracy-level X     test accuracy to reach, 0 to 1 (default %g)\n"
            "  --alpha X              significance level of the t-tests (default 0.05)\n"
            "  --quick                the quick preset: --batches %s --lr-stress %s --train-samples %lld\n"
            "                         --loss-threshold %g --accuracy-level %g (other defaults as above)\n"
            "  --out DIR              output folder (default out/study)\n"
            "  --epochs E, --steps N, --train-samples N, --model M, --lr X, --lr-schedule S,\n"
            "  --momentum X, --weight-decay X, --data DIR, --threads T\n"
            "                         as for `syncbn compare` (each run's)\n"
            "  --no-fuse-relu         ReLU as its own pass after BN (the same bits; fused is faster)\n"
            "  --no-plot              skip the PNGs\n"
            "  --help                 this text\n\n"
            "Run time on 2 cores, 8 ranks oversubscribed: the full default grid (%s, 8 ranks,\n"
            "3 seeds, lr stress x2 and x5: 63 runs of one epoch) took 13 min 53 s (measured on a\n"
            "2-core AMD EPYC VM); --quick (36 runs on 12000 images: 15-20 s per group and seed,\n"
            "measured) takes about 4 minutes. Each run's progress line says how long the rest will take.\n",
            SBN_FINAL_LOSS_STEPS, SBN_FINAL_LOSS_STEPS, SPIKE_WINDOW, SPIKE_HISTORY + 1, 100 * DIVERGED_ACCURACY,
            full_grid.batches, full_grid.ranks, full_grid.seeds, full_grid.lr_stress, MAX_STUDY_EVAL_POINTS,
            full_grid.eval_points, full_grid.loss_threshold, full_grid.accuracy_level, quick_grid.batches,
            quick_grid.lr_stress, (long long)quick_grid.train_samples, quick_grid.loss_threshold,
            quick_grid.accuracy_level, full_grid.batches);
}

/* What one run measured (NaN: not measured, or a level not reached). */
typedef struct measures {
    int64_t steps, nonfinite_steps;
    double test_accuracy, test_loss, best_test_loss, best_test_accuracy, final_train_loss;
    double steps_to_loss, seconds_to_loss, steps_to_accuracy, seconds_to_accuracy;
    double loss_sd_last_half, largest_spike, running_mean_spread, ms_per_step, wall_seconds;
    bool diverged;
} measures;

typedef struct study {
    const char *self, *out;
    sbn_train_options base; /* every run's options but batch, lr and seed */
    study_grid grid;
    int eval_points;
    double loss_threshold, accuracy_level, alpha;
    bool plot, open_mpi;
    study_cell *cells;
    int cell_count;
    study_run *runs;
    int64_t run_count;
    char **keys;          /* per planned run */
    uint64_t *hashes;     /* per planned run: its files are runs/<hash>.* */
    measures *measured;   /* per planned run */
    bool *done;           /* per planned run: recorded in runs.jsonl */
    struct by_hash {      /* the runs sorted by hash, to find a record's run */
        uint64_t hash;
        int64_t run;
    } *by_hash;
} study;

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* "1:02:03", "4:05" */
static const char *clock_text(double seconds, char text[32])
{
    const long long s = isfinite(seconds) && seconds > 0 ? (long long)(seconds + 0.5) : 0;
    if (s >= 3600) snprintf(text, 32, "%lld:%02lld:%02lld", s / 3600, s / 60 % 60, s % 60);
    else snprintf(text, 32, "%lld:%02lld", s / 60, s % 60);
    return text;
}

/* ---------- one run: launch, read, measure, record ---------- */

/* The run's measures from its metrics file, with the study's levels. 0, or -1 (no memory). */
static int measure(const run_metrics *m, double loss_threshold, double accuracy_level, measures *r)
{
    const int64_t n = m->steps;
    double *smooth = malloc((size_t)(n > 0 ? n : 1) * sizeof *smooth);
    double *scratch = malloc((size_t)SPIKE_WINDOW * sizeof *scratch);
    if (!smooth || !scratch) {
        free(smooth), free(scratch);
        return -1;
    }
    *r = (measures){.steps = n, .test_accuracy = m->test_accuracy, .test_loss = m->test_loss,
                    .best_test_loss = NAN, .best_test_accuracy = NAN, .final_train_loss = m->final_train_loss,
                    .steps_to_loss = NAN, .seconds_to_loss = NAN, .steps_to_accuracy = NAN,
                    .seconds_to_accuracy = NAN, .running_mean_spread = m->running_mean_spread,
                    .ms_per_step = m->ms_per_step, .wall_seconds = NAN};
    for (int64_t k = 0; k < n; k++) r->nonfinite_steps += !isfinite(m->losses[k]);
    for (int e = 0; e < m->evals; e++) {
        if (isfinite(m->eval_loss[e]) && !(m->eval_loss[e] >= r->best_test_loss)) r->best_test_loss = m->eval_loss[e];
        if (isfinite(m->eval_accuracy[e]) && !(m->eval_accuracy[e] <= r->best_test_accuracy))
            r->best_test_accuracy = m->eval_accuracy[e];
        if (isnan(r->steps_to_accuracy) && m->eval_accuracy[e] >= accuracy_level) {
            r->steps_to_accuracy = (double)m->eval_step[e];
            r->seconds_to_accuracy = m->eval_seconds[e];
        }
    }
    stat_trailing_mean(m->losses, n, SBN_FINAL_LOSS_STEPS, smooth);
    const int64_t below = stat_first_below(smooth, n, loss_threshold);
    if (below >= 0) r->steps_to_loss = (double)(below + 1), r->seconds_to_loss = m->seconds[below];
    r->loss_sd_last_half = stat_sd_last_half(m->losses, n);
    r->largest_spike = stat_largest_spike(m->losses, n, SPIKE_WINDOW, SPIKE_HISTORY, scratch);
    r->diverged = r->nonfinite_steps > 0 || !(m->test_accuracy >= DIVERGED_ACCURACY);
    free(smooth), free(scratch);
    return 0;
}

static void run_path(const study *s, int64_t k, const char *suffix, char path[PATH_MAX])
{
    char name[48];
    snprintf(name, sizeof name, "runs/%016llx.%s", (unsigned long long)s->hashes[k], suffix);
    runs_out_path(path, s->out, name);
}

/* "b=4 lr x1 plain BN (8 x 4), seed 2" */
static void run_title(const study *s, int64_t k, char *text, size_t size)
{
    const study_cell *c = &s->cells[s->runs[k].cell];
    const int ranks = study_cell_ranks(&s->grid, c);
    snprintf(text, size, "b=%lld lr x%g %s (%d x %lld), seed %llu", (long long)c->per_rank_batch, c->lr_factor,
             study_norm_title(c->norm), ranks, (long long)(study_cell_global_batch(&s->grid, c) / ranks),
             (unsigned long long)s->runs[k].seed);
}

static void add_number(cJSON *object, const char *key, double value)
{
    cJSON_AddNumberToObject(object, key, value); /* cJSON writes NaN and inf as null */
}

/* The record of a finished run: what runs.jsonl holds and study.json lists. */
static cJSON *run_record(const study *s, int64_t k)
{
    const study_cell *c = &s->cells[s->runs[k].cell];
    const measures *r = &s->measured[k];
    const sbn_train_options o = study_run_options(&s->base, &s->grid, c, s->runs[k].seed);
    char hash[20];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)s->hashes[k]);
    cJSON *j = cJSON_CreateObject();
    if (!j) return NULL;
    cJSON_AddStringToObject(j, "key", s->keys[k]);
    cJSON_AddStringToObject(j, "files", hash);
    add_number(j, "per_rank_batch", (double)c->per_rank_batch);
    add_number(j, "lr_factor", c->lr_factor);
    cJSON_AddStringToObject(j, "norm", study_norm_name(c->norm));
    add_number(j, "seed", (double)s->runs[k].seed);
    add_number(j, "ranks", study_cell_ranks(&s->grid, c));
    add_number(j, "global_batch", (double)o.global_batch);
    add_number(j, "lr", o.lr);
    add_number(j, "loss_threshold", s->loss_threshold);
    add_number(j, "accuracy_level", s->accuracy_level);
    add_number(j, "steps", (double)r->steps);
    add_number(j, "test_accuracy", r->test_accuracy);
    add_number(j, "test_loss", r->test_loss);
    add_number(j, "best_test_loss", r->best_test_loss);
    add_number(j, "best_test_accuracy", r->best_test_accuracy);
    add_number(j, "final_train_loss", r->final_train_loss);
    add_number(j, "steps_to_loss", r->steps_to_loss);
    add_number(j, "seconds_to_loss", r->seconds_to_loss);
    add_number(j, "steps_to_accuracy", r->steps_to_accuracy);
    add_number(j, "seconds_to_accuracy", r->seconds_to_accuracy);
    add_number(j, "loss_sd_last_half", r->loss_sd_last_half);
    add_number(j, "largest_spike", r->largest_spike);
    add_number(j, "nonfinite_steps", (double)r->nonfinite_steps);
    cJSON_AddBoolToObject(j, "diverged", r->diverged);
    add_number(j, "running_mean_spread", r->running_mean_spread);
    add_number(j, "ms_per_step", r->ms_per_step);
    add_number(j, "wall_seconds", r->wall_seconds);
    return j;
}

static double field(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

/* A count from a record: 0 when missing or not a count (no float-to-integer overflow). */
static int64_t count_field(const cJSON *object, const char *key)
{
    const double value = field(object, key);
    return value >= 0 && value < 9e15 ? (int64_t)value : 0;
}

static measures measures_from_record(const cJSON *j)
{
    return (measures){
        .steps = count_field(j, "steps"), .nonfinite_steps = count_field(j, "nonfinite_steps"),
        .test_accuracy = field(j, "test_accuracy"), .test_loss = field(j, "test_loss"),
        .best_test_loss = field(j, "best_test_loss"), .best_test_accuracy = field(j, "best_test_accuracy"),
        .final_train_loss = field(j, "final_train_loss"), .steps_to_loss = field(j, "steps_to_loss"),
        .seconds_to_loss = field(j, "seconds_to_loss"), .steps_to_accuracy = field(j, "steps_to_accuracy"),
        .seconds_to_accuracy = field(j, "seconds_to_accuracy"), .loss_sd_last_half = field(j, "loss_sd_last_half"),
        .largest_spike = field(j, "largest_spike"), .running_mean_spread = field(j, "running_mean_spread"),
        .ms_per_step = field(j, "ms_per_step"), .wall_seconds = field(j, "wall_seconds"),
        .diverged = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "diverged")),
    };
}

static int compare_by_hash(const void *a, const void *b)
{
    const uint64_t x = ((const struct by_hash *)a)->hash, y = ((const struct by_hash *)b)->hash;
    return (x > y) - (x < y);
}

/* The planned run with this key, or -1. */
static int64_t find_run(const study *s, const char *key)
{
    const uint64_t hash = study_key_hash(key);
    int64_t low = 0, high = s->run_count;
    while (low < high) { /* the first index whose hash >= hash */
        const int64_t middle = low + (high - low) / 2;
        if (s->by_hash[middle].hash < hash) low = middle + 1;
        else high = middle;
    }
    for (; low < s->run_count && s->by_hash[low].hash == hash; low++)
        if (strcmp(s->keys[s->by_hash[low].run], key) == 0) return s->by_hash[low].run;
    return -1;
}

/* Reads OUT/runs.jsonl: each record of a planned run marks it done, with its
 * measures (re-measured from its metrics file when the study's levels
 * changed; rerun when that file is gone). Lines that do not parse (a torn
 * last line) and records of other configurations are left alone. Returns
 * how many planned runs are done, or -1 (no memory). */
static int64_t read_records(study *s, int64_t *others, int64_t *duplicates)
{
    *others = *duplicates = 0;
    char path[PATH_MAX];
    runs_out_path(path, s->out, "runs.jsonl");
    FILE *f = fopen(path, "r");
    if (!f) return 0; /* a new study */
    char *line = NULL;
    size_t capacity = 0;
    int64_t done = 0;
    while (getline(&line, &capacity, f) >= 0) {
        cJSON *j = cJSON_Parse(line);
        const cJSON *key = j ? cJSON_GetObjectItemCaseSensitive(j, "key") : NULL;
        const int64_t k = key && cJSON_IsString(key) ? find_run(s, key->valuestring) : -1;
        if (j && k < 0) ++*others;
        else if (k >= 0 && s->done[k]) ++*duplicates;
        else if (k >= 0) {
            s->measured[k] = measures_from_record(j);
            bool usable = field(j, "loss_threshold") == s->loss_threshold &&
                          field(j, "accuracy_level") == s->accuracy_level;
            if (!usable) { /* other levels: measure again from the run's metrics */
                char metrics[PATH_MAX];
                run_path(s, k, "jsonl", metrics);
                run_metrics m;
                const double wall = s->measured[k].wall_seconds;
                if (runs_read_metrics(&m, metrics, s->keys[k]) == 0 &&
                    measure(&m, s->loss_threshold, s->accuracy_level, &s->measured[k]) == 0) {
                    s->measured[k].wall_seconds = wall;
                    usable = true;
                }
                runs_metrics_free(&m);
            }
            s->done[k] = usable;
            done += usable;
        }
        cJSON_Delete(j);
    }
    free(line);
    fclose(f);
    return done;
}

/* Appends the record of run k to OUT/runs.jsonl in one write and fsyncs it:
 * a study killed at any moment has recorded every run that had ended. A torn
 * last line (a kill inside the write) is ended first so that it cannot glue
 * onto this record. */
static int append_record(const study *s, int64_t k)
{
    char path[PATH_MAX];
    runs_out_path(path, s->out, "runs.jsonl");
    cJSON *record = run_record(s, k);
    char *text = record ? cJSON_PrintUnformatted(record) : NULL;
    cJSON_Delete(record);
    const int fd = text ? open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0644) : -1;
    bool ok = fd >= 0;
    if (ok) {
        const off_t end = lseek(fd, 0, SEEK_END);
        char last = '\n';
        if (end > 0 && pread(fd, &last, 1, end - 1) != 1) ok = false;
        if (ok && last != '\n') ok = write(fd, "\n", 1) == 1;
        const size_t length = strlen(text);
        text[length] = '\n'; /* cJSON's buffer: the terminating NUL becomes the newline */
        ok = ok && write(fd, text, length + 1) == (ssize_t)(length + 1) && fsync(fd) == 0;
    }
    if (fd >= 0 && close(fd) != 0) ok = false;
    free(text);
    if (!ok) fprintf(stderr, "syncbn study: %s: cannot record the run: %s\n", path, strerror(errno));
    return ok ? 0 : -1;
}

/* The folder's entry of a new file is durable only once the folder is fsynced. */
static void sync_folder(const char *folder)
{
    const int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) fsync(fd), close(fd);
}

/* Seconds the runs not done yet will likely take: each, the mean time of
 * the finished runs of its cell, else of its norm, else of all runs (one
 * pass over the runs, then one over the cells). NaN before any run finished. */
static double time_left(const study *s)
{
    double *sums = calloc((size_t)s->cell_count * 2, sizeof *sums);
    if (!sums) return NAN;
    double *counts = sums + s->cell_count, norm_sums[STUDY_NORMS] = {0}, norm_counts[STUDY_NORMS] = {0};
    double all_sum = 0, all_count = 0;
    for (int64_t k = 0; k < s->run_count; k++) {
        if (!s->done[k] || !isfinite(s->measured[k].wall_seconds)) continue;
        const int cell = s->runs[k].cell, norm = (int)s->cells[cell].norm;
        const double seconds = s->measured[k].wall_seconds;
        sums[cell] += seconds, counts[cell]++;
        norm_sums[norm] += seconds, norm_counts[norm]++;
        all_sum += seconds, all_count++;
    }
    double left = all_count > 0 ? 0.0 : NAN;
    for (int64_t k = 0; k < s->run_count && all_count > 0; k++) {
        if (s->done[k]) continue;
        const int cell = s->runs[k].cell, norm = (int)s->cells[cell].norm;
        left += counts[cell] > 0        ? sums[cell] / counts[cell]
                : norm_counts[norm] > 0 ? norm_sums[norm] / norm_counts[norm]
                                        : all_sum / all_count;
    }
    free(sums);
    return left;
}

/* Launches, reads and measures run k, records it. 0, or -1 (message printed). */
static int run_one(study *s, int64_t k)
{
    const study_cell *c = &s->cells[s->runs[k].cell];
    const sbn_train_options o = study_run_options(&s->base, &s->grid, c, s->runs[k].seed);
    char metrics[PATH_MAX], log[PATH_MAX], title[160];
    run_path(s, k, "jsonl", metrics);
    run_path(s, k, "log", log);
    run_title(s, k, title, sizeof title);
    const int log_fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "syncbn study: %s: cannot write the run's log: %s\n", log, strerror(errno));
        return -1;
    }
    const run_spec spec = {.label = title, .options = &o, .ranks = study_cell_ranks(&s->grid, c),
                           .norm = study_norm_flag(c->norm), .eval_points = s->eval_points, .quiet = true};
    const double start = seconds_now();
    const int status = runs_launch(s->self, &spec, metrics, s->open_mpi, log_fd);
    close(log_fd);
    const double wall = seconds_now() - start;
    if (status != 0) {
        fprintf(stderr, "syncbn study: run %s failed (exit %d); its output is in %s\n", title, status, log);
        return -1;
    }
    run_metrics m;
    int result = runs_read_metrics(&m, metrics, title);
    if (result == 0 && measure(&m, s->loss_threshold, s->accuracy_level, &s->measured[k]) != 0) {
        fprintf(stderr, "syncbn study: no memory to measure run %s\n", title);
        result = -1;
    }
    runs_metrics_free(&m);
    if (result != 0) return -1;
    s->measured[k].wall_seconds = wall;
    if (append_record(s, k) != 0) return -1;
    s->done[k] = true;
    return 0;
}

/* ---------- the cells: summaries over seeds, comparisons ---------- */

typedef struct summary {
    int n;                                          /* finished runs (seeds) */
    double accuracy_mean, accuracy_sd, test_loss_mean, best_test_loss_mean, final_train_loss_mean;
    int reached_loss, reached_accuracy, diverged, loss_sd_n;
    double steps_to_loss_mean, seconds_to_loss_mean, steps_to_accuracy_mean, seconds_to_accuracy_mean;
    double loss_sd_mean, loss_sd_sd, largest_spike_max, running_mean_spread_mean, ms_per_step_mean, wall_mean;
} summary;

/* The values of one measure over the cell's finished runs (finite ones only when `finite`). */
static int gather(const study *s, int cell, size_t offset, bool finite, double *values)
{
    int n = 0;
    for (int64_t k = 0; k < s->run_count; k++) {
        if (s->runs[k].cell != cell || !s->done[k]) continue;
        const double v = *(const double *)((const char *)&s->measured[k] + offset);
        if (!finite || isfinite(v)) values[n++] = v;
    }
    return n;
}

#define GATHER(field_, finite) gather(s, cell, offsetof(measures, field_), finite, values)

static summary summarize(const study *s, int cell, double *values)
{
    summary u = {0};
    for (int64_t k = 0; k < s->run_count; k++) u.n += s->runs[k].cell == cell && s->done[k];
    int n = GATHER(test_accuracy, true);
    u.accuracy_mean = stat_mean(values, n), u.accuracy_sd = stat_sd(values, n);
    n = GATHER(test_loss, true), u.test_loss_mean = stat_mean(values, n);
    n = GATHER(best_test_loss, true), u.best_test_loss_mean = stat_mean(values, n);
    n = GATHER(final_train_loss, true), u.final_train_loss_mean = stat_mean(values, n);
    u.reached_loss = GATHER(steps_to_loss, true), u.steps_to_loss_mean = stat_mean(values, u.reached_loss);
    n = GATHER(seconds_to_loss, true), u.seconds_to_loss_mean = stat_mean(values, n);
    u.reached_accuracy = GATHER(steps_to_accuracy, true);
    u.steps_to_accuracy_mean = stat_mean(values, u.reached_accuracy);
    n = GATHER(seconds_to_accuracy, true), u.seconds_to_accuracy_mean = stat_mean(values, n);
    u.loss_sd_n = GATHER(loss_sd_last_half, true);
    u.loss_sd_mean = stat_mean(values, u.loss_sd_n), u.loss_sd_sd = stat_sd(values, u.loss_sd_n);
    n = GATHER(largest_spike, true);
    u.largest_spike_max = NAN;
    for (int k = 0; k < n; k++)
        if (k == 0 || values[k] > u.largest_spike_max) u.largest_spike_max = values[k];
    n = GATHER(running_mean_spread, true), u.running_mean_spread_mean = stat_mean(values, n);
    n = GATHER(ms_per_step, true), u.ms_per_step_mean = stat_mean(values, n);
    n = GATHER(wall_seconds, true), u.wall_mean = stat_mean(values, n);
    for (int64_t k = 0; k < s->run_count; k++)
        u.diverged += s->runs[k].cell == cell && s->done[k] && s->measured[k].diverged;
    return u;
}

/* A norm's cell against one process in the same group: Welch on accuracy and on the last-half loss sd. */
typedef struct comparison {
    int group, cell, reference;
    stat_welch accuracy, loss_sd;
} comparison;

static comparison compare_cells(const study *s, int cell, int reference, double *a, double *b)
{
    comparison c = {.group = s->cells[cell].group, .cell = cell, .reference = reference};
    int n_a = gather(s, cell, offsetof(measures, test_accuracy), true, a);
    int n_b = gather(s, reference, offsetof(measures, test_accuracy), true, b);
    c.accuracy = stat_welch_test(a, n_a, b, n_b);
    n_a = gather(s, cell, offsetof(measures, loss_sd_last_half), true, a);
    n_b = gather(s, reference, offsetof(measures, loss_sd_last_half), true, b);
    c.loss_sd = stat_welch_test(a, n_a, b, n_b);
    return c;
}

/* "within noise", "lower", "higher", or "n/a" (fewer than 2 finite values on a side: too few
 * seeds, or diverged runs). */
static const char *verdict(const stat_welch *w, double alpha)
{
    if (!w->valid) return "n/a";
    if (!(w->p < alpha)) return "within noise";
    return w->difference < 0 ? "lower" : "higher";
}

/* ---------- the report ---------- */

static cJSON *welch_json(const stat_welch *w, double alpha)
{
    cJSON *j = cJSON_CreateObject();
    add_number(j, "mean", w->mean_a);
    add_number(j, "reference_mean", w->mean_b);
    add_number(j, "difference", w->difference);
    add_number(j, "t", w->t);
    add_number(j, "df", w->df);
    add_number(j, "p", w->p);
    cJSON_AddStringToObject(j, "verdict", verdict(w, alpha));
    return j;
}

static cJSON *summary_json(const study *s, int cell, const summary *u)
{
    const study_cell *c = &s->cells[cell];
    cJSON *j = cJSON_CreateObject();
    add_number(j, "group", c->group);
    add_number(j, "per_rank_batch", (double)c->per_rank_batch);
    add_number(j, "lr_factor", c->lr_factor);
    cJSON_AddStringToObject(j, "norm", study_norm_name(c->norm));
    add_number(j, "ranks", study_cell_ranks(&s->grid, c));
    add_number(j, "global_batch", (double)study_cell_global_batch(&s->grid, c));
    add_number(j, "runs", u->n);
    add_number(j, "test_accuracy_mean", u->accuracy_mean);
    add_number(j, "test_accuracy_sd", u->accuracy_sd);
    add_number(j, "test_loss_mean", u->test_loss_mean);
    add_number(j, "best_test_loss_mean", u->best_test_loss_mean);
    add_number(j, "final_train_loss_mean", u->final_train_loss_mean);
    add_number(j, "reached_loss", u->reached_loss);
    add_number(j, "steps_to_loss_mean", u->steps_to_loss_mean);
    add_number(j, "seconds_to_loss_mean", u->seconds_to_loss_mean);
    add_number(j, "reached_accuracy", u->reached_accuracy);
    add_number(j, "steps_to_accuracy_mean", u->steps_to_accuracy_mean);
    add_number(j, "seconds_to_accuracy_mean", u->seconds_to_accuracy_mean);
    add_number(j, "loss_sd_last_half_mean", u->loss_sd_mean);
    add_number(j, "loss_sd_last_half_sd", u->loss_sd_sd);
    add_number(j, "largest_spike_max", u->largest_spike_max);
    add_number(j, "diverged", u->diverged);
    add_number(j, "running_mean_spread_mean", u->running_mean_spread_mean);
    add_number(j, "ms_per_step_mean", u->ms_per_step_mean);
    add_number(j, "wall_seconds_mean", u->wall_mean);
    return j;
}

static cJSON *config_json(const study *s)
{
    const sbn_train_options *o = &s->base;
    cJSON *j = cJSON_CreateObject(), *batches = cJSON_CreateArray(), *stress = cJSON_CreateArray();
    for (int k = 0; k < s->grid.batch_count; k++)
        cJSON_AddItemToArray(batches, cJSON_CreateNumber((double)s->grid.batches[k]));
    for (int k = 0; k < s->grid.stress_count; k++) cJSON_AddItemToArray(stress, cJSON_CreateNumber(s->grid.stress[k]));
    cJSON_AddItemToObject(j, "per_rank_batches", batches);
    cJSON_AddItemToObject(j, "lr_stress", stress);
    add_number(j, "ranks", s->grid.ranks);
    add_number(j, "seeds", s->grid.seeds);
    add_number(j, "first_seed", (double)s->grid.first_seed);
    cJSON_AddStringToObject(j, "model", o->model == SBN_MODEL_SEED ? "seed" : "convnet");
    add_number(j, "epochs", (double)o->epochs);
    add_number(j, "steps", (double)o->max_steps);
    add_number(j, "train_samples", (double)o->train_samples);
    add_number(j, "lr", o->lr);
    cJSON_AddStringToObject(j, "lr_schedule", o->lr_schedule == SBN_LR_COSINE ? "cosine" : "constant");
    add_number(j, "momentum", o->momentum);
    add_number(j, "weight_decay", o->weight_decay);
    add_number(j, "eval_points", s->eval_points);
    add_number(j, "loss_threshold", s->loss_threshold);
    add_number(j, "accuracy_level", s->accuracy_level);
    add_number(j, "alpha", s->alpha);
    return j;
}

static cJSON *definitions_json(void)
{
    char text[512];
    cJSON *j = cJSON_CreateObject();
    snprintf(text, sizeof text, "mean of the last %d steps' training losses (all steps when fewer)",
             SBN_FINAL_LOSS_STEPS);
    cJSON_AddStringToObject(j, "final_train_loss", text);
    snprintf(text, sizeof text, "at each step, the mean of the last %d steps' training losses", SBN_FINAL_LOSS_STEPS);
    cJSON_AddStringToObject(j, "smoothed_train_loss", text);
    cJSON_AddStringToObject(j, "steps_to_loss", "first step at which the smoothed training loss is below "
                            "loss_threshold; seconds_to_loss: training seconds until then (evaluations left out)");
    cJSON_AddStringToObject(j, "steps_to_accuracy", "first evaluation step (eval_points evenly spaced, and the end) at "
                            "which test accuracy >= accuracy_level; seconds: training seconds until then");
    cJSON_AddStringToObject(j, "loss_sd_last_half", "sample sd of the per-step training loss over the second half "
                            "of the run");
    snprintf(text, sizeof text, "max over steps k > %d of loss_k / median of the previous min(%d, k) losses",
             SPIKE_HISTORY, SPIKE_WINDOW);
    cJSON_AddStringToObject(j, "largest_spike", text);
    snprintf(text, sizeof text, "a non-finite training loss at any step, or final test accuracy below %g",
             DIVERGED_ACCURACY);
    cJSON_AddStringToObject(j, "diverged", text);
    cJSON_AddStringToObject(j, "running_mean_spread", "largest |running_mean on rank r - on rank 0| over BN layers, "
                            "channels and ranks, at the end");
    cJSON_AddStringToObject(j, "test", "Welch's two-sided t-test (unequal variances, Welch-Satterthwaite df) over "
                            "seeds, each norm's cell against one process in its group; 'within noise' when p >= alpha");
    cJSON_AddStringToObject(j, "sd", "sample standard deviation (n - 1) over seeds");
    return j;
}

/* Writes `text` to OUT/name through a temporary and a rename: a reader never sees half a file. */
static int write_file(const study *s, const char *name, const char *text)
{
    char path[PATH_MAX], temporary[PATH_MAX], temporary_name[64];
    runs_out_path(path, s->out, name);
    snprintf(temporary_name, sizeof temporary_name, "%s.tmp", name);
    runs_out_path(temporary, s->out, temporary_name);
    FILE *f = fopen(temporary, "w");
    const bool written = f && fputs(text, f) >= 0;
    const bool closed = f && fclose(f) == 0;
    if (written && closed && rename(temporary, path) == 0) return 0;
    fprintf(stderr, "syncbn study: %s: cannot write: %s\n", path, strerror(errno));
    return -1;
}

/* A growing text buffer for the CSV and the Markdown. */
typedef struct strbuf {
    char *data;
    size_t length, capacity;
    bool failed;
} strbuf;

__attribute__((format(printf, 2, 3))) static void put(strbuf *t, const char *format, ...)
{
    if (t->failed) return;
    for (;;) {
        va_list args;
        va_start(args, format);
        const int n = vsnprintf(t->data ? t->data + t->length : NULL, t->data ? t->capacity - t->length : 0, format,
                                args);
        va_end(args);
        if (n < 0) {
            t->failed = true;
            return;
        }
        if (t->data && t->length + (size_t)n < t->capacity) {
            t->length += (size_t)n;
            return;
        }
        const size_t capacity = 2 * (t->capacity + (size_t)n + 256);
        char *grown = realloc(t->data, capacity);
        if (!grown) {
            t->failed = true;
            return;
        }
        t->data = grown, t->capacity = capacity;
    }
}

/* A number for the table: "-" when not finite. */
static const char *cell_number(double value, const char *format, char buffer[48])
{
    if (!isfinite(value)) return "-";
    snprintf(buffer, 48, format, value);
    return buffer;
}

static void put_csv(const study *s, const summary *sums, const comparison *vs, strbuf *t)
{
    put(t, "group,per_rank_batch,lr_factor,norm,ranks,global_batch,runs,test_accuracy_mean,test_accuracy_sd,"
           "accuracy_diff_vs_one,accuracy_p_vs_one,accuracy_verdict,test_loss_mean,best_test_loss_mean,"
           "final_train_loss_mean,reached_loss,steps_to_loss_mean,seconds_to_loss_mean,reached_accuracy,"
           "steps_to_accuracy_mean,seconds_to_accuracy_mean,loss_sd_last_half_mean,loss_sd_last_half_sd,"
           "loss_sd_diff_vs_one,loss_sd_p_vs_one,loss_sd_verdict,largest_spike_max,diverged,"
           "running_mean_spread_mean,ms_per_step_mean,wall_seconds_mean\n");
    for (int k = 0; k < s->cell_count; k++) {
        const study_cell *c = &s->cells[k];
        const summary *u = &sums[k];
        const comparison *v = c->norm == STUDY_ONE ? NULL : &vs[k];
        put(t, "%d,%lld,%.17g,%s,%d,%lld,%d,%.9g,%.9g,%.9g,%.9g,%s,%.9g,%.9g,%.9g,%d,%.9g,%.9g,%d,%.9g,%.9g,%.9g,%.9g,"
               "%.9g,%.9g,%s,%.9g,%d,%.9g,%.9g,%.9g\n",
            c->group, (long long)c->per_rank_batch, c->lr_factor, study_norm_name(c->norm),
            study_cell_ranks(&s->grid, c), (long long)study_cell_global_batch(&s->grid, c), u->n, u->accuracy_mean,
            u->accuracy_sd, v ? v->accuracy.difference : NAN, v ? v->accuracy.p : NAN,
            v ? verdict(&v->accuracy, s->alpha) : "", u->test_loss_mean, u->best_test_loss_mean,
            u->final_train_loss_mean, u->reached_loss, u->steps_to_loss_mean, u->seconds_to_loss_mean,
            u->reached_accuracy, u->steps_to_accuracy_mean, u->seconds_to_accuracy_mean, u->loss_sd_mean,
            u->loss_sd_sd, v ? v->loss_sd.difference : NAN, v ? v->loss_sd.p : NAN,
            v ? verdict(&v->loss_sd, s->alpha) : "", u->largest_spike_max, u->diverged, u->running_mean_spread_mean,
            u->ms_per_step_mean, u->wall_mean);
    }
}

/* "−3.30 pts (p 0.012): lower" */
static void put_difference(strbuf *t, const stat_welch *w, double scale, const char *unit, const char *format,
                           double alpha)
{
    char number[48];
    if (!w->valid) {
        put(t, "n/a (< 2 finite values a side)");
        return;
    }
    snprintf(number, sizeof number, format, scale * w->difference);
    put(t, "%s%s%s (p %.2g): %s", w->difference >= 0 ? "+" : "", number, unit, w->p, verdict(w, alpha));
}

static void put_markdown(const study *s, const summary *sums, const comparison *vs, strbuf *t)
{
    char a[48], b[48], c_[48], d[48];
    put(t, "| per-rank batch | lr | norm | ranks x batch | test accuracy (mean ± sd, n) | vs one process (Welch) "
           "| final / best test loss | final train loss | steps (s) to smoothed loss < %g | steps (s) to test acc "
           ">= %.0f%% | loss sd, last half | vs one process (Welch) | largest spike | diverged | running_mean "
           "spread |\n",
        s->loss_threshold, 100 * s->accuracy_level);
    put(t, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < s->cell_count; k++) {
        const study_cell *c = &s->cells[k];
        const summary *u = &sums[k];
        const int ranks = study_cell_ranks(&s->grid, c);
        put(t, "| %lld | x%g | %s | %d x %lld | %s%s%s (%d) | ", (long long)c->per_rank_batch, c->lr_factor,
            study_norm_title(c->norm), ranks, (long long)(study_cell_global_batch(&s->grid, c) / ranks),
            cell_number(100 * u->accuracy_mean, "%.2f%%", a), isfinite(u->accuracy_sd) ? " ± " : "",
            isfinite(u->accuracy_sd) ? cell_number(100 * u->accuracy_sd, "%.2f", b) : "", u->n);
        if (c->norm == STUDY_ONE) put(t, "- | ");
        else put_difference(t, &vs[k].accuracy, 100, " pts", "%.2f", s->alpha), put(t, " | ");
        put(t, "%s / %s | %s | ", cell_number(u->test_loss_mean, "%.4f", a),
            cell_number(u->best_test_loss_mean, "%.4f", b), cell_number(u->final_train_loss_mean, "%.4f", c_));
        put(t, "%s (%s) %d/%d | ", cell_number(u->steps_to_loss_mean, "%.0f", a),
            cell_number(u->seconds_to_loss_mean, "%.1f", b), u->reached_loss, u->n);
        put(t, "%s (%s) %d/%d | ", cell_number(u->steps_to_accuracy_mean, "%.0f", a),
            cell_number(u->seconds_to_accuracy_mean, "%.1f", b), u->reached_accuracy, u->n);
        put(t, "%s | ", cell_number(u->loss_sd_mean, "%.4f", a));
        if (c->norm == STUDY_ONE) put(t, "- | ");
        else put_difference(t, &vs[k].loss_sd, 1, "", "%.4f", s->alpha), put(t, " | ");
        put(t, "%s | %d/%d | %s |\n", cell_number(u->largest_spike_max, "%.2f", a), u->diverged, u->n,
            cell_number(u->running_mean_spread_mean, "%.2e", d));
    }
}

/* The answer in words: at which per-rank batches each norm differs from one process. */
static void put_findings(const study *s, const summary *sums, const comparison *vs, strbuf *t)
{
    put(t, "\nTest: Welch's two-sided t-test (unequal variances) over %d seed%s per cell, each norm against one "
           "process with the same per-rank batch and lr; significance level alpha = %g (a difference is claimed "
           "where p < alpha, else 'within noise'). The three runs of a seed share initial weights and data order; "
           "the test ignores that pairing (conservative).\n",
        s->grid.seeds, s->grid.seeds == 1 ? "" : "s", s->alpha);
    for (int norm = STUDY_PLAIN; norm <= STUDY_SYNC; norm++) {
        for (int measure_kind = 0; measure_kind < 2; measure_kind++) {
            strbuf lower = {0}, higher = {0}, noise = {0}, missing = {0};
            for (int k = 0; k < s->cell_count; k++) {
                const study_cell *c = &s->cells[k];
                if ((int)c->norm != norm || c->lr_factor != 1.0) continue;
                const stat_welch *w = measure_kind == 0 ? &vs[k].accuracy : &vs[k].loss_sd;
                const char *v = verdict(w, s->alpha);
                strbuf *into = strcmp(v, "lower") == 0 ? &lower : strcmp(v, "higher") == 0 ? &higher
                           : strcmp(v, "within noise") == 0 ? &noise : &missing;
                put(into, "%s%lld (p %.2g)", into->length ? ", " : "", (long long)c->per_rank_batch, w->p);
            }
            const char *what = measure_kind == 0 ? "test accuracy" : "loss sd over the last half (instability)";
            put(t, "- %s vs one process, %s: ", study_norm_title((study_norm)norm), what);
            if (lower.length) put(t, "lower at per-rank batch %s; ", lower.data);
            if (higher.length) put(t, "higher at per-rank batch %s; ", higher.data);
            if (noise.length) put(t, "within noise at %s; ", noise.data);
            if (missing.length) put(t, "not testable (fewer than 2 finite values a side) at %s; ", missing.data);
            t->length -= t->length >= 2 && t->data[t->length - 2] == ';' ? 2 : 0;
            put(t, ".\n");
            free(lower.data), free(higher.data), free(noise.data), free(missing.data);
        }
    }
    for (int k = 0; k < s->cell_count; k++) {
        const study_cell *c = &s->cells[k];
        if (c->lr_factor == 1.0 || c->norm != STUDY_ONE) continue;
        put(t, "- lr stress x%g at per-rank batch %lld: diverged runs: one process %d/%d, plain BN %d/%d, SyncBN "
               "%d/%d; test accuracy %.2f%%, %.2f%%, %.2f%%.\n",
            c->lr_factor, (long long)c->per_rank_batch, sums[k].diverged, sums[k].n, sums[k + 1].diverged,
            sums[k + 1].n, sums[k + 2].diverged, sums[k + 2].n, 100 * sums[k].accuracy_mean,
            100 * sums[k + 1].accuracy_mean, 100 * sums[k + 2].accuracy_mean);
    }
}

/* The plots: per norm, one data file of the main groups (fixed names), and a script with fixed names only. */
static void plot(const study *s, const summary *sums)
{
    static const char *const files[STUDY_NORMS] = {"plot_one.dat", "plot_plain.dat", "plot_sync.dat"};
    /* apart on the log axis, so that the error bars do not overlap */
    static const double shift[STUDY_NORMS] = {0.94, 1.0, 1.06};
    for (int norm = 0; norm < STUDY_NORMS; norm++) {
        strbuf t = {0};
        put(&t, "# per_rank_batch(shifted) accuracy_mean_pct accuracy_sd_pct loss_sd_mean loss_sd_sd\n");
        for (int k = 0; k < s->cell_count; k++) {
            const study_cell *c = &s->cells[k];
            const summary *u = &sums[k];
            if ((int)c->norm != norm || c->lr_factor != 1.0 || u->n == 0) continue;
            put(&t, "%.6g %.6g %.6g %.6g %.6g\n", (double)c->per_rank_batch * shift[norm], 100 * u->accuracy_mean,
                isfinite(u->accuracy_sd) ? 100 * u->accuracy_sd : 0.0,
                isfinite(u->loss_sd_mean) ? u->loss_sd_mean : 0.0, isfinite(u->loss_sd_sd) ? u->loss_sd_sd : 0.0);
        }
        const int written = t.failed ? -1 : write_file(s, files[norm], t.data);
        free(t.data);
        if (written != 0) return;
    }
    char script[1024];
    snprintf(script, sizeof script,
             "set terminal pngcairo size 900,560 font 'sans,11'\n"
             "set logscale x 2\nset grid\nset key bottom right\nset xlabel 'per-rank batch (%d ranks; one process: "
             "the same global batch)'\n"
             "set output 'study_accuracy.png'\nset title 'Test accuracy, mean and sd over %d seeds'\n"
             "set ylabel 'test accuracy (%%)'\n"
             "plot 'plot_one.dat' using 1:2:3 with yerrorlines lw 2 title 'one process', \\\n"
             "     'plot_plain.dat' using 1:2:3 with yerrorlines lw 2 title 'plain BN', \\\n"
             "     'plot_sync.dat' using 1:2:3 with yerrorlines lw 2 dt 2 title 'SyncBN'\n"
             "set output 'study_stability.png'\nset key top right\n"
             "set title 'Stability: sd of the training loss over the last half of each run'\n"
             "set ylabel 'sd of the training loss, last half'\n"
             "plot 'plot_one.dat' using 1:4:5 with yerrorlines lw 2 title 'one process', \\\n"
             "     'plot_plain.dat' using 1:4:5 with yerrorlines lw 2 title 'plain BN', \\\n"
             "     'plot_sync.dat' using 1:4:5 with yerrorlines lw 2 dt 2 title 'SyncBN'\n",
             s->grid.ranks, s->grid.seeds);
    if (write_file(s, "study.gp", script) != 0) return;
    if (runs_gnuplot(s->out, "study.gp") == 0)
        printf("plots: %s/study_accuracy.png, %s/study_stability.png\n", s->out, s->out);
    else fprintf(stderr, "syncbn study: gnuplot failed; the plot script is %s/study.gp\n", s->out);
}

static int report(const study *s, double study_seconds)
{
    summary *sums = calloc((size_t)s->cell_count, sizeof *sums);
    comparison *vs = calloc((size_t)s->cell_count, sizeof *vs);
    double *a = malloc((size_t)s->grid.seeds * sizeof *a), *b = malloc((size_t)s->grid.seeds * sizeof *b);
    if (!sums || !vs || !a || !b) {
        free(sums), free(vs), free(a), free(b);
        fprintf(stderr, "syncbn study: no memory for the report\n");
        return -1;
    }
    for (int k = 0; k < s->cell_count; k++) {
        sums[k] = summarize(s, k, a);
        if (s->cells[k].norm != STUDY_ONE) vs[k] = compare_cells(s, k, k - (int)s->cells[k].norm, a, b);
    }
    free(a), free(b);
    /* study.json */
    cJSON *root = cJSON_CreateObject(), *runs = cJSON_CreateArray(), *cells = cJSON_CreateArray(),
          *comparisons = cJSON_CreateArray();
    cJSON_AddItemToObject(root, "config", config_json(s));
    cJSON_AddItemToObject(root, "definitions", definitions_json());
    for (int64_t k = 0; k < s->run_count; k++)
        if (s->done[k]) cJSON_AddItemToArray(runs, run_record(s, k));
    for (int k = 0; k < s->cell_count; k++) {
        cJSON_AddItemToArray(cells, summary_json(s, k, &sums[k]));
        if (s->cells[k].norm == STUDY_ONE) continue;
        cJSON *c = cJSON_CreateObject();
        add_number(c, "group", s->cells[k].group);
        add_number(c, "per_rank_batch", (double)s->cells[k].per_rank_batch);
        add_number(c, "lr_factor", s->cells[k].lr_factor);
        cJSON_AddStringToObject(c, "norm", study_norm_name(s->cells[k].norm));
        cJSON_AddStringToObject(c, "against", "one");
        cJSON_AddItemToObject(c, "test_accuracy", welch_json(&vs[k].accuracy, s->alpha));
        cJSON_AddItemToObject(c, "loss_sd_last_half", welch_json(&vs[k].loss_sd, s->alpha));
        cJSON_AddItemToArray(comparisons, c);
    }
    cJSON_AddItemToObject(root, "runs", runs);
    cJSON_AddItemToObject(root, "cells", cells);
    cJSON_AddItemToObject(root, "comparisons", comparisons);
    add_number(root, "seconds_this_session", study_seconds);
    char *json = cJSON_Print(root);
    cJSON_Delete(root);
    strbuf csv = {0}, md = {0};
    put_csv(s, sums, vs, &csv);
    put_markdown(s, sums, vs, &md);
    put_findings(s, sums, vs, &md);
    int status = json && !csv.failed && !md.failed ? 0 : -1;
    if (status != 0) fprintf(stderr, "syncbn study: no memory for the report\n");
    if (status == 0) {
        strbuf with_newline = {0};
        put(&with_newline, "%s\n", json);
        status = with_newline.failed ? -1 : write_file(s, "study.json", with_newline.data);
        free(with_newline.data);
    }
    if (status == 0) status = write_file(s, "study.csv", csv.data);
    if (status == 0) status = write_file(s, "study.md", md.data);
    if (status == 0) {
        printf("\n%s\n", md.data);
        if (s->plot) plot(s, sums);
        printf("report: %s/study.json, %s/study.csv, %s/study.md\n", s->out, s->out, s->out);
    }
    free(json), free(csv.data), free(md.data), free(sums), free(vs);
    return status;
}

/* ---------- the command ---------- */

static void study_free(study *s)
{
    for (int64_t k = 0; s->keys && k < s->run_count; k++) free(s->keys[k]);
    free(s->keys), free(s->hashes), free(s->measured), free(s->done), free(s->by_hash), free(s->cells), free(s->runs);
}

/* The plan: cells, runs, keys. 0, or -1 (no memory). */
static int plan(study *s)
{
    s->cell_count = study_cell_count(&s->grid);
    s->run_count = study_run_count(&s->grid);
    const size_t runs = (size_t)s->run_count;
    s->cells = malloc((size_t)s->cell_count * sizeof *s->cells);
    s->runs = malloc(runs * sizeof *s->runs);
    s->keys = calloc(runs, sizeof *s->keys);
    s->hashes = malloc(runs * sizeof *s->hashes);
    s->measured = calloc(runs, sizeof *s->measured);
    s->done = calloc(runs, sizeof *s->done);
    s->by_hash = malloc(runs * sizeof *s->by_hash);
    if (!s->cells || !s->runs || !s->keys || !s->hashes || !s->measured || !s->done || !s->by_hash) return -1;
    study_cells(&s->grid, s->cells);
    study_runs(&s->grid, s->runs);
    for (int64_t k = 0; k < s->run_count; k++) {
        const study_cell *c = &s->cells[s->runs[k].cell];
        const sbn_train_options o = study_run_options(&s->base, &s->grid, c, s->runs[k].seed);
        const int ranks = study_cell_ranks(&s->grid, c);
        const int length = study_run_key(&o, ranks, c->norm, s->eval_points, NULL, 0);
        if (length < 0 || !(s->keys[k] = malloc((size_t)length + 1))) return -1;
        study_run_key(&o, ranks, c->norm, s->eval_points, s->keys[k], (size_t)length + 1);
        s->hashes[k] = study_key_hash(s->keys[k]);
        s->by_hash[k] = (struct by_hash){s->hashes[k], k};
    }
    qsort(s->by_hash, runs, sizeof *s->by_hash, compare_by_hash);
    return 0;
}

/* The settings: the preset's value where the command line gave none. EXIT_USAGE or 0. */
static int configure(study *s, const cli_settings *settings)
{
    if (cli_given(settings, "batch")) {
        fprintf(stderr, "syncbn study: --batch: a study's global batch is P x each per-rank batch; give the "
                "per-rank batches with --batches LIST\n");
        return EXIT_USAGE;
    }
    const preset *p = settings->quick ? &quick_grid : &full_grid;
    s->base = settings->train;
    s->base.metrics_path = NULL, s->base.progress = false, s->base.eval_points = 0;
    if (!cli_given(settings, "train-samples")) s->base.train_samples = p->train_samples;
    s->out = cli_given(settings, "out") ? settings->out : "out/study";
    s->plot = settings->plot;
    s->grid.ranks = cli_given(settings, "ranks") ? settings->ranks : p->ranks;
    s->grid.seeds = cli_given(settings, "seeds") ? settings->seeds : p->seeds;
    s->grid.first_seed = settings->train.seed;
    s->eval_points = cli_given(settings, "eval-points") ? settings->train.eval_points : p->eval_points;
    s->loss_threshold = cli_given(settings, "loss-threshold") ? settings->loss_threshold : p->loss_threshold;
    s->accuracy_level = cli_given(settings, "accuracy-level") ? settings->accuracy_level : p->accuracy_level;
    s->alpha = cli_given(settings, "alpha") ? settings->alpha : 0.05;
    if (s->grid.first_seed > (uint64_t)INT64_MAX - (uint64_t)(s->grid.seeds - 1)) { /* train's --seed range */
        fprintf(stderr, "syncbn study: --seed %llu with %d seeds passes the largest seed\n",
                (unsigned long long)s->grid.first_seed, s->grid.seeds);
        return EXIT_USAGE;
    }
    if (s->eval_points > MAX_STUDY_EVAL_POINTS) {
        fprintf(stderr, "syncbn study: --eval-points: at most %d in a study, got %d\n", MAX_STUDY_EVAL_POINTS,
                s->eval_points);
        return EXIT_USAGE;
    }
    char error[256];
    const char *batches = cli_given(settings, "batches") ? settings->batches : p->batches;
    if (study_parse_batches(batches, s->grid.ranks, &s->grid, error, sizeof error) != 0) {
        fprintf(stderr, "syncbn study: --batches: %s\n", error);
        return EXIT_USAGE;
    }
    const char *stress = cli_given(settings, "lr-stress") ? settings->lr_stress : p->lr_stress;
    if (study_parse_stress(stress, &s->grid, error, sizeof error) != 0) {
        fprintf(stderr, "syncbn study: --lr-stress: %s\n", error);
        return EXIT_USAGE;
    }
    if (strlen(s->out) > MAX_OUT_LENGTH) {
        fprintf(stderr, "syncbn study: --out: the folder name is longer than %d bytes\n", (int)MAX_OUT_LENGTH);
        return EXIT_USAGE;
    }
    return 0;
}

/* One study at a time in a folder: an advisory lock on OUT/study.lock, released when the process ends. */
static int lock_folder(const study *s)
{
    char path[PATH_MAX];
    runs_out_path(path, s->out, "study.lock");
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "syncbn study: %s: %s\n", path, strerror(errno));
        return -1;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "syncbn study: another study is running in %s\n", s->out);
        close(fd);
        return -1;
    }
    return fd; /* kept open (and locked) until exit */
}

int cli_study(int argc, char **argv, const char *self)
{
    cli_settings settings;
    const cli_parse_result parsed = cli_parse(CLI_STUDY, argc, argv, &settings, study_usage);
    if (parsed != CLI_RUN) return parsed == CLI_HELP ? 0 : EXIT_USAGE;
    study s = {.self = self};
    const int refused = configure(&s, &settings);
    if (refused) return refused;
    char runs_folder[PATH_MAX];
    runs_out_path(runs_folder, s.out, "runs");
    if (runs_make_folders(runs_folder) != 0) {
        fprintf(stderr, "syncbn study: cannot create the output folder %s\n", runs_folder);
        return 1;
    }
    const int lock = lock_folder(&s);
    if (lock < 0) return 1;
    if (plan(&s) != 0) {
        fprintf(stderr, "syncbn study: no memory for the plan\n");
        study_free(&s), close(lock);
        return 1;
    }
    int64_t others, duplicates;
    const int64_t recorded = read_records(&s, &others, &duplicates);
    printf("study: %d per-rank batch%s", s.grid.batch_count, s.grid.batch_count == 1 ? "" : "es");
    if (s.grid.stress_count)
        printf(" + %d lr stress factor%s", s.grid.stress_count, s.grid.stress_count == 1 ? "" : "s");
    printf(", 3 norms, %d seed%s: %lld runs; %lld recorded in %s/runs.jsonl (skipped), %lld to run\n", s.grid.seeds,
           s.grid.seeds == 1 ? "" : "s", (long long)s.run_count, (long long)recorded, s.out,
           (long long)(s.run_count - recorded));
    if (others) printf("study: %lld records of runs outside this grid left as they are\n", (long long)others);
    if (duplicates) printf("study: %lld duplicate records ignored\n", (long long)duplicates);
    fflush(stdout);
    sync_folder(runs_folder);
    s.open_mpi = runs_prepare_launcher();
    const double start = seconds_now();
    int status = 0;
    int64_t finished = recorded;
    for (int64_t k = 0; k < s.run_count && status == 0; k++) {
        if (s.done[k]) continue;
        if (run_one(&s, k) != 0) {
            status = 1;
            break;
        }
        if (++finished == recorded + 1) { /* the first record: make runs.jsonl's folder entry durable */
            sync_folder(s.out);
        }
        const double left = time_left(&s);
        char title[160], elapsed[32], remaining[32];
        run_title(&s, k, title, sizeof title);
        const measures *r = &s.measured[k];
        printf("[%lld/%lld] %s: test acc %.2f%%, final train loss %.4f%s, %.1f s | elapsed %s, about %s left\n",
               (long long)finished, (long long)s.run_count, title, 100 * r->test_accuracy, r->final_train_loss,
               r->diverged ? " (diverged)" : "", r->wall_seconds, clock_text(seconds_now() - start, elapsed),
               clock_text(left, remaining));
        fflush(stdout);
    }
    if (status == 0) status = report(&s, seconds_now() - start) == 0 ? 0 : 1;
    else fprintf(stderr, "syncbn study: stopped; run the same command again to resume\n");
    study_free(&s);
    close(lock);
    return status;
}
