/* The grid of `syncbn study`: which runs a study makes, in which order, and
 * the key that identifies a finished run when a study resumes. Pure logic
 * (no I/O), tested in tests/test_study_grid.c.
 *
 * A study has groups of three cells, one per norm:
 *   one    1 process with the global batch P x b, BN
 *   plain  P ranks x b, plain BN (each rank normalizes by its own b samples)
 *   sync   P ranks x b, SyncBN (statistics over all P x b samples)
 * one group per per-rank batch b (at the base learning rate), then one per
 * learning-rate stress factor f (lr x f, at the smallest per-rank batch).
 * Every cell runs with each seed S, S + 1, ..., S + seeds - 1; the three
 * runs of a group with one seed share initial weights and data order.
 * Runs are ordered group by group, seed by seed, norm by norm, so that a
 * study stopped part way has whole comparisons for its first groups. */
#ifndef SBN_TOOLS_STUDY_GRID_H
#define SBN_TOOLS_STUDY_GRID_H

#include <stddef.h>
#include <stdint.h>
#include <syncbn/syncbn.h>

enum { STUDY_MAX_BATCHES = 16, STUDY_MAX_STRESS = 8, STUDY_NORMS = 3, STUDY_MAX_SEEDS = 1000 };

typedef enum study_norm { STUDY_ONE, STUDY_PLAIN, STUDY_SYNC } study_norm;

typedef struct study_grid {
    int64_t batches[STUDY_MAX_BATCHES]; /* per-rank batches, ascending, distinct */
    int batch_count;
    double stress[STUDY_MAX_STRESS];    /* lr factors of the stress groups, ascending, distinct, != 1 */
    int stress_count;
    int ranks;                          /* P of the plain and sync cells, >= 2 */
    int seeds;                          /* seeds per cell */
    uint64_t first_seed;
} study_grid;

typedef struct study_cell {
    int group;              /* index of its group */
    int64_t per_rank_batch; /* b */
    double lr_factor;       /* 1 in the main groups */
    study_norm norm;
} study_cell;

typedef struct study_run {
    int cell;      /* index into the cells */
    uint64_t seed;
} study_run;

/* "one", "plain", "sync" (in keys, file names, JSON) and "one process", "plain BN", "SyncBN" (in the report). */
const char *study_norm_name(study_norm norm);
const char *study_norm_title(study_norm norm);
/* The trainer's --norm of a cell: "bn" (one, plain) or "sync". */
const char *study_norm_flag(study_norm norm);

/* Parses a comma-separated list: per-rank batches ("1,2,4,8,16": integers
 * >= 1, P x b within the trainer's batch limit 2^31 - 1) or stress factors
 * ("2,5": finite reals > 0 and != 1; "none": no stress groups). Sorted
 * ascending; duplicates are refused. 0, or -1 with the reason in `error`. */
int study_parse_batches(const char *text, int ranks, study_grid *grid, char *error, size_t error_size);
int study_parse_stress(const char *text, study_grid *grid, char *error, size_t error_size);

int study_group_count(const study_grid *grid);
int study_cell_count(const study_grid *grid);  /* 3 per group */
int64_t study_run_count(const study_grid *grid); /* cells x seeds */

/* Fills cells[0 .. study_cell_count) and runs[0 .. study_run_count) in the order above. */
void study_cells(const study_grid *grid, study_cell *cells);
void study_runs(const study_grid *grid, study_run *runs);

/* Ranks of a cell's runs (1 for one process, else P) and their global batch P x b. */
int study_cell_ranks(const study_grid *grid, const study_cell *cell);
int64_t study_cell_global_batch(const study_grid *grid, const study_cell *cell);

/* The trainer options of one run: `base` (the study's model, epochs,
 * hyperparameters...) with the cell's global batch, lr x factor and the seed. */
sbn_train_options study_run_options(const sbn_train_options *base, const study_grid *grid, const study_cell *cell,
                                    uint64_t seed);

/* The key of a run: every setting that changes its result (model, norm,
 * ranks, global batch, epochs, steps, training samples, lr, schedule,
 * momentum, weight decay, seed, evaluation points, data folder), reals with
 * 17 digits. Two runs with the same key are the same run: a resumed study
 * skips a planned run whose key it finds recorded. Not the thread count
 * (speed only). Returns the length (as snprintf). */
int study_run_key(const sbn_train_options *options, int ranks, study_norm norm, int eval_points, char *key,
                  size_t size);

/* 64-bit FNV-1a of the key: the name of the run's files, runs/<16 hex digits>.jsonl. */
uint64_t study_key_hash(const char *key);

#endif
