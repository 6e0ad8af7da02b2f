/* The run machinery of `syncbn compare` and `syncbn study`: one training run
 * is `syncbn train` started under the MPI launcher with an argument list
 * (no shell), its per-step metrics read back from its JSON lines. Also the
 * output folder's helpers and gnuplot, run the same safe way. */
#ifndef SBN_TOOLS_RUNS_H
#define SBN_TOOLS_RUNS_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <syncbn/syncbn.h>

/* Longest --out: every path below is the folder, a slash and a name of at most 40 bytes. */
enum { MAX_OUT_LENGTH = PATH_MAX - 48 };

/* One run to launch: the options (global batch, seed, lr...) of every rank, how many ranks, which norm. */
typedef struct run_spec {
    const char *label; /* in messages: "a", "b=4 plain s2" */
    const sbn_train_options *options;
    int ranks;
    const char *norm; /* "bn", "sync" or "none" */
    int eval_points;  /* test evaluations during the run (train --eval-points); 0: only at the end */
    bool quiet;       /* no "run (...)" line and no progress bar */
} run_spec;

/* One run's metrics file, read back. */
typedef struct run_metrics {
    double *losses;  /* per step (NaN where the trainer wrote a non-finite loss) */
    double *seconds; /* per step: training seconds since the start (evaluations left out) */
    int64_t steps, capacity;
    /* the evaluations during the run, then the final one (evals = during + 1 once the run finished) */
    int evals;
    int64_t eval_step[64];
    double eval_accuracy[64], eval_loss[64], eval_seconds[64];
    /* the final line */
    bool finished;
    double final_train_loss, test_accuracy, test_loss, ms_per_step, running_mean_spread;
} run_metrics;

/* Sets OpenMPI's run-as-root switches when root, and asks the launcher
 * whether it is Open MPI (which needs --oversubscribe). Call once. */
bool runs_prepare_launcher(void);

/* Runs `LAUNCHER -n RANKS [--oversubscribe] SELF train ...` for spec, writing
 * the per-step metrics to `metrics_path`; stdout and stderr of the run go to
 * `log_fd` when >= 0 (else to ours). Returns the exit status (0: success). */
int runs_launch(const char *self, const run_spec *spec, const char *metrics_path, bool open_mpi, int log_fd);

/* Reads a run's JSON lines into *m (zeroed first; free with runs_metrics_free).
 * Lines holding nan or inf (which the trainer prints for a non-finite value)
 * are read with that value as NaN. Returns 0, or -1 with a message naming
 * `label` (unreadable, no memory, or no final line: the run did not finish). */
int runs_read_metrics(run_metrics *m, const char *path, const char *label);
void runs_metrics_free(run_metrics *m);

/* OUT/NAME into path (PATH_MAX bytes); fits since --out is at most MAX_OUT_LENGTH. */
void runs_out_path(char path[PATH_MAX], const char *out, const char *name);

/* mkdir -p: creates the folder and its missing parents; 0 when it exists after. */
int runs_make_folders(const char *path);

/* Runs `gnuplot SCRIPT` in the folder `dir`: the script names its files
 * relatively with fixed names, so no user string (the folder's name
 * included) enters it. Returns gnuplot's exit status (-1: not run). */
int runs_gnuplot(const char *dir, const char *script);

#endif
