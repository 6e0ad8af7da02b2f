/* SyncBN vs plain BN on the same local shape, training forward + backward,
 * under mpiexec. Rank 0 prints one table row: times (best and median of R,
 * interleaved), the ratio, and the collectives and bytes per layer call.
 * Usage: mpiexec -n P bench_syncbn [--rounds R] [--shape N,C,H,W] [--header] */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include <syncbn/mpi.h>
#include <syncbn/syncbn.h>

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double step(sbn_bn *bn, sbn_shape shape, const float *x, float *y, const float *dy, float *dx)
{
    MPI_Barrier(MPI_COMM_WORLD);
    const double start = MPI_Wtime();
    if (sbn_bn_forward(bn, shape, x, y, true) != SBN_OK || sbn_bn_backward(bn, shape, x, dy, dx) != SBN_OK) {
        fprintf(stderr, "bench_syncbn: %s\n", sbn_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    double elapsed = MPI_Wtime() - start;
    MPI_Allreduce(MPI_IN_PLACE, &elapsed, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD); /* the slowest rank */
    return elapsed;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, ranks, rounds = 30, header = 0;
    long long n = 16, c = 64, h = 28, w = 28;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    static const struct option options[] = {{"rounds", required_argument, NULL, 'r'},
                                            {"shape", required_argument, NULL, 's'},
                                            {"header", no_argument, NULL, 'H'},
                                            {NULL, 0, NULL, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "r:s:H", options, NULL)) != -1;) {
        if (opt == 'r') rounds = atoi(optarg) > 0 ? atoi(optarg) : 1;
        else if (opt == 's' && sscanf(optarg, "%lld,%lld,%lld,%lld", &n, &c, &h, &w) == 4) continue;
        else if (opt == 'H') header = 1;
        else {
            if (rank == 0) fprintf(stderr, "usage: bench_syncbn [--rounds R] [--shape N,C,H,W] [--header]\n");
            MPI_Finalize();
            return 2;
        }
    }
    const sbn_shape shape = {n, c, h * w, SBN_NCS, SBN_DTYPE_F32};
    const long long count = n * c * h * w;
    float *x = malloc((size_t)count * sizeof *x), *y = malloc((size_t)count * sizeof *y);
    float *dy = malloc((size_t)count * sizeof *dy), *dx = malloc((size_t)count * sizeof *dx);
    for (long long i = 0; i < count; i++) x[i] = (float)((i * 7919 + rank) % 1000) * 1e-3f, dy[i] = x[i] - 0.5f;
    sbn_comm *comm;
    sbn_bn *plain, *synced;
    if (sbn_comm_create_mpi(MPI_COMM_WORLD, &comm) != SBN_OK || sbn_bn_create(c, NULL, NULL, &plain) != SBN_OK ||
        sbn_bn_create(c, NULL, comm, &synced) != SBN_OK) {
        fprintf(stderr, "bench_syncbn: %s\n", sbn_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    double *plain_times = malloc((size_t)rounds * sizeof *plain_times);
    double *synced_times = malloc((size_t)rounds * sizeof *synced_times);
    step(plain, shape, x, y, dy, dx), step(synced, shape, x, y, dy, dx); /* warm up */
    const sbn_comm_counters before = sbn_comm_get_counters(comm);
    for (int k = 0; k < rounds; k++) {
        plain_times[k] = step(plain, shape, x, y, dy, dx);
        synced_times[k] = step(synced, shape, x, y, dy, dx);
    }
    const sbn_comm_counters after = sbn_comm_get_counters(comm);
    qsort(plain_times, (size_t)rounds, sizeof(double), compare_doubles);
    qsort(synced_times, (size_t)rounds, sizeof(double), compare_doubles);
    if (rank == 0) {
        if (header) {
            printf("| ranks | local shape | plain BN ms (best/median) | SyncBN ms (best/median) | SyncBN/plain (best) "
                   "| collectives per fwd+bwd | bytes per collective |\n|---|---|---|---|---|---|---|\n");
        }
        const double collectives = (double)(after.collectives - before.collectives) / rounds;
        printf("| %d | (%lld,%lld,%lld,%lld) NCHW | %.3f / %.3f | %.3f / %.3f | %.3f | %.0f | %.0f |\n", ranks, n, c, h,
               w, plain_times[0] * 1e3, plain_times[rounds / 2] * 1e3, synced_times[0] * 1e3,
               synced_times[rounds / 2] * 1e3, synced_times[0] / plain_times[0], collectives,
               (double)(after.bytes - before.bytes) / (double)(after.collectives - before.collectives));
    }
    sbn_bn_destroy(plain), sbn_bn_destroy(synced);
    sbn_comm_destroy(comm);
    free(x), free(y), free(dy), free(dx), free(plain_times), free(synced_times);
    MPI_Finalize();
    return 0;
}
