/* `syncbn train`: one run, P ranks under mpiexec. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
            "  --help                 this text\n",
            SBN_FASHION_MNIST_DIR);
}

int cli_train(int argc, char **argv)
{
    cli_settings settings;
    const cli_parse_result parsed = cli_parse(CLI_TRAIN, argc, argv, &settings, train_usage);
    if (parsed != CLI_RUN) return parsed == CLI_HELP ? 0 : EXIT_USAGE;
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
        printf("steps %lld  final train loss %.4f  test accuracy %.2f%%  test loss %.4f  %.2f ms/step  "
               "running_mean spread across ranks %.3g\n",
               (long long)result.steps, result.final_train_loss, 100.0 * result.test_accuracy, result.test_loss,
               result.ms_per_step, result.running_mean_spread);
    sbn_comm_destroy(world);
    if (st != SBN_OK && ranks > 1) MPI_Abort(MPI_COMM_WORLD, 1); /* peers may be blocked in a collective */
    MPI_Finalize();
    return st == SBN_OK ? 0 : 1;
}
