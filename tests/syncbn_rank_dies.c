/* Helper for mpi_rank_dies.sh: rank 1 exits abruptly (as a crash would)
 * while the others enter a SyncBN forward. The job must end, not hang. */
#include <stdio.h>
#include <unistd.h>

#include <syncbn/mpi.h>
#include <syncbn/syncbn.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    sbn_comm *comm;
    sbn_bn *bn;
    if (sbn_comm_create_mpi(MPI_COMM_WORLD, &comm) != SBN_OK || sbn_bn_create(4, NULL, comm, &bn) != SBN_OK) return 2;
    sbn_comm_set_timeout(comm, 300.0); /* longer than the script waits: the job must end by MPI's own doing */
    if (rank == 1) _exit(3);
    float x[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, y[16];
    sbn_status st = sbn_bn_forward(bn, (sbn_shape){4, 4, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, true);
    fprintf(stderr, "rank %d: forward returned %s: %s\n", rank, sbn_status_str(st), sbn_errmsg());
    sbn_bn_destroy(bn);
    sbn_comm_destroy(comm);
    MPI_Finalize();
    return st == SBN_OK ? 0 : 1;
}
