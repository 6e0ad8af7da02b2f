/* A complete SyncBN program: P ranks share a global batch of 8 samples x
 * 3 channels x 4x4 pixels (uneven shares are fine), and SyncBN normalizes it as one batch.
 *
 *   mpicc syncbn_example.c $(pkg-config --cflags --libs syncbn) -o syncbn_example
 *   mpiexec -n 4 ./syncbn_example
 */
#include <stdio.h>
#include <stdlib.h>

#include <syncbn/mpi.h>
#include <syncbn/syncbn.h>

#define CHECK(call)                                                                              \
    do {                                                                                         \
        sbn_status status_ = (call);                                                             \
        if (status_ != SBN_OK) {                                                                 \
            fprintf(stderr, "%s failed: %s: %s\n", #call, sbn_status_str(status_), sbn_errmsg()); \
            MPI_Abort(MPI_COMM_WORLD, 1);                                                        \
        }                                                                                        \
    } while (0)

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, ranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);

    enum { GLOBAL_BATCH = 8, CHANNELS = 3, PIXELS = 16 };
    /* Uneven split is fine: rank r takes samples [first, last). */
    const int first = GLOBAL_BATCH * rank / ranks, last = GLOBAL_BATCH * (rank + 1) / ranks;
    const sbn_shape shape = {.n = last - first, .c = CHANNELS, .s = PIXELS, .layout = SBN_NCS};
    float x[GLOBAL_BATCH * CHANNELS * PIXELS], y[GLOBAL_BATCH * CHANNELS * PIXELS];
    float dy[GLOBAL_BATCH * CHANNELS * PIXELS], dx[GLOBAL_BATCH * CHANNELS * PIXELS];
    for (int i = 0; i < (last - first) * CHANNELS * PIXELS; i++) {
        const int global_index = first * CHANNELS * PIXELS + i;
        x[i] = (float)(global_index % 37) * 0.25f;
        dy[i] = (float)(global_index % 11) - 5.0f;
    }

    sbn_comm *comm;
    sbn_bn *bn;
    CHECK(sbn_comm_create_mpi(MPI_COMM_WORLD, &comm));
    CHECK(sbn_comm_set_timeout(comm, 60.0));        /* never wait forever for a peer */
    CHECK(sbn_bn_create(CHANNELS, NULL, comm, &bn)); /* comm != NULL: SyncBN */

    CHECK(sbn_bn_forward(bn, shape, x, y, true)); /* collective: statistics of all 8 samples */
    sbn_bn_zero_grad(bn);
    CHECK(sbn_bn_backward(bn, shape, x, dy, dx)); /* collective */

    /* Identical on every rank, and equal to one process with all 8 samples. */
    const float *running_mean = sbn_bn_running_mean(bn), *running_var = sbn_bn_running_var(bn);
    printf("rank %d of %d: %d samples, running_mean = [%.6f %.6f %.6f], running_var = [%.6f %.6f %.6f]\n", rank,
           ranks, last - first, running_mean[0], running_mean[1], running_mean[2], running_var[0], running_var[1],
           running_var[2]);

    sbn_bn_destroy(bn);
    sbn_comm_destroy(comm);
    MPI_Finalize();
    return 0;
}
