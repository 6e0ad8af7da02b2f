/* syncbn — training checkpoints.
 *
 * `syncbn train --checkpoint-dir DIR` (sbn_train_options.checkpoint_dir)
 * writes, every checkpoint_every steps, at the end of each epoch and of the
 * run:
 *   DIR/step-<8 digits>/model.safetensors      the model's state dict under PyTorch's names
 *                                              (conv1.weight, bn1.running_mean, ...; see nn.h),
 *                                              with rank 0's BN buffers, and the run in __metadata__
 *   DIR/step-<8 digits>/optimizer.safetensors  SGD's momentum buffers, under the parameters' names
 *   DIR/step-<8 digits>/bn-rank-<5 digits>.safetensors
 *                                              plain BN, and SyncBN over groups smaller than the
 *                                              world: each rank's own BN buffers (ranks, or groups,
 *                                              normalize by their own batches, so they differ; with
 *                                              SyncBN over all ranks they are identical and the
 *                                              metadata says so)
 *   DIR/latest                                 "step-<8 digits>\n", written last
 * Every file is written atomically (a temporary, fsync, rename, fsync of the
 * folder) and carries a checksum; `latest` is written by rank 0 only after
 * every rank's files are complete. So a crash at any moment leaves the
 * previous checkpoint loadable, and resuming skips (with a message) any
 * checkpoint that is incomplete or corrupt for the previous good one.
 *
 * The metadata of model.safetensors (all strings):
 *   format "syncbn-checkpoint-1", model, norm, group_size, global_batch,
 *   ranks, epochs, max_steps, train_samples, lr, momentum, weight_decay,
 *   lr_schedule, seed (the data order and initialization), step (completed),
 *   epoch, batch_in_epoch, total_steps, bn_buffers.
 * The sampler's order is a function of (seed, epoch) and the learning rate of
 * (step, total_steps): with the weights, momentum buffers and BN buffers,
 * that is everything a bit-exact resume needs.
 */
#ifndef SYNCBN_CHECKPOINT_H
#define SYNCBN_CHECKPOINT_H

#include <syncbn/status.h>
#include <syncbn/train.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Checkpoints kept when sbn_train_options.keep is 0. */
enum { SBN_CHECKPOINT_DEFAULT_KEEP = 3 };

/* Local (no communication). Reads the run's configuration from the newest
 * loadable checkpoint in dir into *options (the fields a checkpoint fixes:
 * model, norm, group size, batch, epochs, steps, train samples,
 * hyperparameters, schedule, seed; the others are left as they are) and
 * the number of ranks it ran on into *ranks. */
SBN_API sbn_status sbn_checkpoint_read_options(const char *dir, sbn_train_options *options, int *ranks);

/* The model file of a checkpoint: `path` itself when it is a file, else
 * the model.safetensors of the newest loadable checkpoint in the folder
 * `path`. Writes the path into out (size bytes). */
SBN_API sbn_status sbn_checkpoint_model_file(const char *path, char *out, size_t size);

#ifdef __cplusplus
}
#endif
#endif
