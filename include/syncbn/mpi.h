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
SBN_API sbn_status sbn_comm_create_mpi(MPI_Comm mpi, sbn_comm **out);

/* The same from a Fortran handle (MPI_Comm_c2f; mpi4py's comm.py2f()), for
 * bindings that cannot name the C type MPI_Comm (an int in MPICH, a pointer
 * in OpenMPI). */
SBN_API sbn_status sbn_comm_create_mpi_fortran(MPI_Fint handle, sbn_comm **out);

#ifdef __cplusplus
}
#endif
#endif
