/* syncbn — the MPI communicator. The only public header that includes mpi.h. */
#ifndef SYNCBN_MPI_H
#define SYNCBN_MPI_H

#include <mpi.h>
#include <syncbn/comm.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A communicator over the ranks of `mpi`, working on a duplicate of it (so
 * its traffic never mixes with the caller's). Collective over `mpi`; MPI must
 * be initialized, and MPI_THREAD_FUNNELED is enough. */
sbn_status sbn_comm_create_mpi(MPI_Comm mpi, sbn_comm **out);

#ifdef __cplusplus
}
#endif
#endif
