/* `syncbn train`: one run, P ranks under mpiexec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <syncbn/checkpoint.h>
#include <syncbn/mpi.h>

#include "cli.h"

static void train_usage(FILE *out)
{
    fprintf(out,
            "usage: [mpiexec -n P] syncbn train [options]\n\n"
            "Trains a model on Fashion-MNIST, data-parallel over the MPI ranks: each rank takes\n"
            "B/P samples of every global batch of B; gradients are averaged in one allreduce per step.\n\n"
            "  --model seed|convnet   network (default convnet)\n"
            "  --norm bn|sync|none    plain BN per rank, SyncBN over the ranks, or no BN (default bn)\n"
            "  --group-size G         SyncBN over groups of G consecutive ranks, G >= 1 dividing P\n"
            "                         (default: all ranks)\n"
            "  --batch B              global batch, divisible by P (default 32)\n"
            "  --epochs E             epochs, 1 to 1000000 (default 1)\n"
            "  --steps N              stop after N steps (default: run the epochs)\n"
            "  --train-samples N      train on the first N training images only\n"
            "  --lr X                 learning rate (default 0.01)\n"
            "  --lr-schedule S        cosine (decay to 0 over the run, default) or constant\n"
            "  --momentum X           SGD momentum (default 0.9)\n"
            "  --weight-decay X       weight decay (default 5e-4)\n"
            "  --seed S               initialization and data order (default 1)\n"
            "  --data DIR             IDX folder (default %s)\n"
            "  --threads T            OpenMP threads per rank, 1 to 1024 (default 1)\n"
            "  --metrics FILE         per-step JSON lines, written by rank 0\n"
            "  --timeout SECONDS      how long a collective waits for its peers, > 0 (default 600)\n"
            "  --progress             progress bar on rank 0 (when stderr is a terminal)\n"
            "  --no-fuse-relu         run each ReLU as its own pass after BN instead of inside the BN\n"
            "                         layer (the same results bit for bit; fused is faster)\n"
            "  --eval-points K        also evaluate the test set at K evenly spaced steps during the run\n"
            "                         (after step floor(total x i / (K + 1)), i = 1..K), each an\n"
            "                         {\"eval\": true, ...} line in --metrics (default 0: at the end only)\n"
            "  --checkpoint-dir DIR   write checkpoints into DIR (see below)\n"
            "  --checkpoint-every N   a checkpoint every N steps (default 1000), and at the end of\n"
            "                         each epoch and of the run\n"
            "  --keep K               keep the newest K checkpoints (default 3)\n"
            "  --resume DIR           continue the run whose checkpoints are in DIR, from the newest\n"
            "                         good one; its configuration comes from the checkpoint (flags that\n"
            "                         would change it are refused)\n"
            "  --init FILE            start from the weights of a safetensors state dict (e.g. from\n"
            "                         PyTorch, see tools/state_dict_to_safetensors.py)\n"
            "  --help                 this text\n\n"
            "A checkpoint is DIR/step-<N>/ with model.safetensors (PyTorch's state-dict names),\n"
            "optimizer.safetensors and, for plain BN, each rank's BN buffers; DIR/latest names the\n"
            "newest complete one. `syncbn export` writes it for torch.load.\n\n"
            "The final train loss is the mean of the last %d steps' losses (one step's is too noisy).\n",
            SBN_FASHION_MNIST_DIR, SBN_FINAL_LOSS_STEPS);
}

/* The flags that fix a run: a resumed run takes them from its checkpoint. */
static const char *const run_flags[] = {"model", "norm", "group-size", "batch", "epochs", "steps", "train-samples",
                                        "lr", "lr-schedule", "momentum", "weight-decay", "seed"};

/* Whether two runs agree on what one flag sets. */
static bool same_setting(const char *flag, const sbn_train_options *a, const sbn_train_options *b)
{
    if (!strcmp(flag, "model")) return a->model == b->model;
    if (!strcmp(flag, "norm")) return a->norm == b->norm;
    if (!strcmp(flag, "group-size")) return a->group_size == b->group_size;
    if (!strcmp(flag, "batch")) return a->global_batch == b->global_batch;
    if (!strcmp(flag, "epochs")) return a->epochs == b->epochs;
    if (!strcmp(flag, "steps")) return a->max_steps == b->max_steps;
    if (!strcmp(flag, "train-samples")) return a->train_samples == b->train_samples;
    if (!strcmp(flag, "lr")) return a->lr == b->lr;
    if (!strcmp(flag, "lr-schedule")) return a->lr_schedule == b->lr_schedule;
    if (!strcmp(flag, "momentum")) return a->momentum == b->momentum;
    if (!strcmp(flag, "weight-decay")) return a->weight_decay == b->weight_decay;
    return a->seed == b->seed; /* "seed" */
}

/* --resume: the run's configuration from the checkpoint. Returns 0, or the
 * exit code: EXIT_USAGE for a flag that would change the run (named), 1 when
 * no checkpoint can be read. */
static int take_checkpoint_configuration(cli_settings *settings)
{
    if (settings->train.init_path) {
        fprintf(stderr, "syncbn train: --init conflicts with --resume (a resumed run continues from its checkpoint)\n");
        return EXIT_USAGE;
    }
    sbn_train_options saved = settings->train;
    int ranks = 0;
    if (sbn_checkpoint_read_options(settings->train.checkpoint_dir, &saved, &ranks) != SBN_OK) {
        fprintf(stderr, "syncbn train: --resume: %s\n", sbn_errmsg());
        return 1;
    }
    const sbn_train_options *mine = &settings->train;
    for (size_t k = 0; k < sizeof run_flags / sizeof run_flags[0]; k++) {
        if (!cli_given(settings, run_flags[k])) continue;
        const bool same = same_setting(run_flags[k], mine, &saved);
        if (!same) {
            fprintf(stderr,
                    "syncbn train: --%s conflicts with the run being resumed from %s (a resumed run keeps the "
                    "configuration of its checkpoint; leave --%s out)\n",
                    run_flags[k], settings->train.checkpoint_dir, run_flags[k]);
            return EXIT_USAGE;
        }
    }
    settings->train = saved;
    return 0;
}

int cli_train(int argc, char **argv)
{
    cli_settings settings;
    const cli_parse_result parsed = cli_parse(CLI_TRAIN, argc, argv, &settings, train_usage);
    if (parsed != CLI_RUN) return parsed == CLI_HELP ? 0 : EXIT_USAGE;
    const int refused = settings.train.resume ? take_checkpoint_configuration(&settings) : 0;
    if (refused) return refused;
    const sbn_train_options *o = &settings.train;
    MPI_Init(NULL, NULL);
    sbn_comm *world = NULL;
    sbn_train_result result;
    sbn_status st = sbn_comm_create_mpi(MPI_COMM_WORLD, &world);
    if (st == SBN_OK) st = sbn_comm_set_timeout(world, settings.timeout);
    if (st == SBN_OK) st = sbn_train_run(o, world, &result);
    const int rank = sbn_comm_rank(world), ranks = sbn_comm_size(world);
    if (st != SBN_OK) fprintf(stderr, "syncbn train (rank %d): %s: %s\n", rank, sbn_status_str(st), sbn_errmsg());
    else if (rank == 0)
        printf("steps %lld  final train loss (mean of the last %d steps) %.4f  test accuracy %.2f%%  test loss %.4f  %.2f ms/step  "
               "running_mean spread across ranks %.3g\n",
               (long long)result.steps, SBN_FINAL_LOSS_STEPS, result.final_train_loss, 100.0 * result.test_accuracy, result.test_loss,
               result.ms_per_step, result.running_mean_spread);
    sbn_comm_destroy(world);
    if (st != SBN_OK && ranks > 1) MPI_Abort(MPI_COMM_WORLD, 1); /* peers may be blocked in a collective */
    MPI_Finalize();
    return st == SBN_OK ? 0 : 1;
}
