/* Internal: training checkpoints (the trainer's use; the files are
 * documented in include/syncbn/checkpoint.h). */
#ifndef SBN_TRAIN_CHECKPOINT_H
#define SBN_TRAIN_CHECKPOINT_H

#include <syncbn/checkpoint.h>
#include <syncbn/train.h>

/* Where a run stands when a checkpoint is taken. */
typedef struct checkpoint_position {
    int64_t step;            /* steps completed */
    int64_t total_steps;     /* of the whole run (fixes the lr schedule) */
    int64_t steps_per_epoch;
} checkpoint_position;

/* Collective over world: every rank writes its files into
 * DIR/step-<step>/, then rank 0 points DIR/latest at it and removes all but
 * the newest `keep` checkpoints. All ranks return the same status. */
sbn_status checkpoint_save(const sbn_train_options *options, sbn_comm *world, sbn_model *model,
                           const float *velocity, checkpoint_position position);

/* Collective over world: loads the newest checkpoint in DIR that every rank
 * can load completely (the one `latest` names first, then older ones; each
 * skipped one is reported on stderr by rank 0) into model and velocity, and
 * its position. SBN_ERR_IO when there is none; SBN_ERR_ARG when the
 * checkpoint's run differs from `options` in what must match. */
sbn_status checkpoint_load(const sbn_train_options *options, sbn_comm *world, sbn_model *model, float *velocity,
                           checkpoint_position *position);

/* Local. A new run (not resume) refuses a checkpoint folder that already
 * holds a run's checkpoints. */
sbn_status checkpoint_check_folder(const sbn_train_options *options);

#endif
