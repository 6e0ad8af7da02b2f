/* syncbn — the data-parallel trainer.
 *
 * sbn_train_run is collective over `world` (P ranks, P = 1 without MPI):
 *   rank 0's initial weights are broadcast to all; each step every rank takes
 *   its contiguous slice (B/P samples) of the same global batch, computes the
 *   mean loss over its slice and the gradients, and ONE allreduce of a single
 *   bucket (all gradients + loss + correct count) sums them; gradients are
 *   divided by P and SGD steps on every rank identically. With norm SYNC the
 *   BN layers synchronize over world (or groups of group_size ranks), and P
 *   ranks compute the same steps as one process with the whole batch, up to
 *   rounding. The test set is evaluated in eval mode, sharded across ranks.
 */
#ifndef SYNCBN_TRAIN_H
#define SYNCBN_TRAIN_H

#include <stdbool.h>
#include <stdint.h>
#include <syncbn/comm.h>
#include <syncbn/data.h>
#include <syncbn/nn.h>
#include <syncbn/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sbn_lr_schedule {
    SBN_LR_CONSTANT,
    SBN_LR_COSINE /* lr * (1 + cos(pi * step / total_steps)) / 2, step counted from 0 */
} sbn_lr_schedule;

typedef struct sbn_train_options {
    sbn_model_kind model;
    sbn_norm norm;
    int group_size;            /* SyncBN group size; 0 = all ranks */
    int64_t global_batch;      /* B, divisible by the number of ranks */
    int64_t epochs;
    int64_t max_steps;         /* stop after this many steps; 0 = run all epochs */
    int64_t train_samples;     /* use the first N training samples; 0 = all */
    double lr, momentum, weight_decay;
    sbn_lr_schedule lr_schedule;
    uint64_t seed;
    int threads;               /* OpenMP threads per rank (OpenBLAS runs single-threaded inside them) */
    const char *data_dir;
    const char *metrics_path;  /* JSON lines written by rank 0; NULL = none */
    bool progress;             /* a progress bar on rank 0 (only on a terminal) */
    bool separate_relu;        /* ReLU as its own pass after BN (default: fused into the BN layer;
                                * the same bits either way: sbn_model_set_fuse_relu) */
    /* Checkpoints (checkpoint.h): into checkpoint_dir every checkpoint_every
     * steps (0: 1000), at the end of each epoch and of the run, keeping the
     * newest `keep` (0: 3). resume: start from the newest good checkpoint in
     * checkpoint_dir, which must be of the same run. init_path: start from
     * the weights (and BN buffers) of a safetensors state dict instead of a
     * fresh initialization. */
    const char *checkpoint_dir;
    int64_t checkpoint_every;
    int keep;
    bool resume;
    const char *init_path;
    /* Test-set evaluations during the run, besides the one at the end: after
     * step floor(total * i / (eval_points + 1)) for i = 1..eval_points (each
     * step once, step 0 never), each written to the metrics file as
     * {"eval": true, "step", "test_accuracy", "test_loss", "seconds",
     * "eval_seconds"}. 0 (the default): only at the end. They do not change
     * the training (same steps, same losses), and their time is left out of
     * every step line's "seconds" and of ms_per_step. */
    int eval_points;
} sbn_train_options;

/* The final training loss of a run is the mean of the global batch's loss
 * over its last SBN_FINAL_LOSS_STEPS steps (all of them when it ran fewer;
 * after a resume, those run since the resume): one step's loss is too noisy
 * to report. `syncbn compare` and `syncbn study` use the same definition. */
#define SBN_FINAL_LOSS_STEPS 50

/* convnet, BN, B = 32, 1 epoch, lr 0.01 with cosine decay, momentum 0.9,
 * weight decay 5e-4, seed 1, 1 thread, the Fashion-MNIST folder, no metrics file. */
SBN_API sbn_train_options sbn_train_defaults(void);

typedef struct sbn_train_result {
    int64_t steps;              /* completed, counting those before a resume */
    double final_train_loss;    /* mean of the last SBN_FINAL_LOSS_STEPS steps' losses (see above) */
    double test_accuracy;       /* 0..1 */
    double test_loss;
    double ms_per_step;
    double running_mean_spread; /* max over BN layers, channels and ranks of |running_mean - rank 0's| */
    int64_t checkpoints;        /* written by this run */
    double ms_per_checkpoint;   /* mean time to write one (all ranks' files, fsyncs included) */
} sbn_train_result;

SBN_API sbn_status sbn_train_run(const sbn_train_options *options, sbn_comm *world, sbn_train_result *result);

/* Accuracy (0..1) and mean cross-entropy of `model` on `dataset` in eval
 * mode; rank r of world takes samples [r*N/P, (r+1)*N/P). Collective (one
 * allreduce). logits: NULL, or dataset->count x classes floats that receive
 * every sample's logits, on every rank. */
SBN_API sbn_status sbn_evaluate(sbn_model *model, const sbn_dataset *dataset, sbn_comm *world, float *logits,
                        double *accuracy, double *loss);

#ifdef __cplusplus
}
#endif
#endif
