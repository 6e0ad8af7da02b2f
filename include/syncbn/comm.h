/* syncbn — communicators.
 *
 * A communicator is a group of ranks that make collectives together. SyncBN
 * layers and the data-parallel trainer use one; plain BN uses none (NULL).
 *   sbn_comm_create_self      a world of one rank, no MPI needed
 *   sbn_comm_create_mpi       in <syncbn/mpi.h>: P MPI ranks
 *   sbn_comm_split_groups     consecutive ranks in groups (Apex's group_size)
 *
 * Collectives (every rank of the communicator must call them, in the same
 * order, with the same count) wait at most the communicator's timeout
 * (default 600 s; sbn_comm_set_timeout) for their peers, then return
 * SBN_ERR_COMM. A communicator that failed or timed out is broken: every
 * later collective on it returns SBN_ERR_COMM at once; end the job
 * (MPI_Abort) rather than carry on.
 *
 * Results of the sum collectives are identical on every rank for integers.
 * For floating point, MPI does not promise identical bits on every rank; the
 * SyncBN layer therefore does not rely on them for its running statistics.
 */
#ifndef SYNCBN_COMM_H
#define SYNCBN_COMM_H

#include <stdint.h>
#include <syncbn/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sbn_comm sbn_comm;

SBN_API sbn_status sbn_comm_create_self(sbn_comm **out);
SBN_API int sbn_comm_rank(const sbn_comm *comm);
SBN_API int sbn_comm_size(const sbn_comm *comm);

/* Collective. Splits parent into size/group_size groups of consecutive ranks:
 * rank r joins group r / group_size. SBN_ERR_ARG unless group_size >= 1 and
 * divides the size. The new communicator inherits the timeout. */
SBN_API sbn_status sbn_comm_split_groups(sbn_comm *parent, int group_size, sbn_comm **out);

/* Seconds a collective waits for its peers before SBN_ERR_COMM (> 0). Local. */
SBN_API sbn_status sbn_comm_set_timeout(sbn_comm *comm, double seconds);

/* Accepts NULL. Destroys only what create made (an MPI communicator's
 * duplicate, not the MPI_Comm passed in). */
SBN_API void sbn_comm_destroy(sbn_comm *comm);

/* Typed collectives; counts are in elements. Collective. */
SBN_API sbn_status sbn_comm_allreduce_sum_float(sbn_comm *comm, float *data, int64_t count);
SBN_API sbn_status sbn_comm_allreduce_sum_double(sbn_comm *comm, double *data, int64_t count);
SBN_API sbn_status sbn_comm_allreduce_sum_int64(sbn_comm *comm, int64_t *data, int64_t count);
SBN_API sbn_status sbn_comm_broadcast_float(sbn_comm *comm, float *data, int64_t count, int root);

/* An allreduce with a caller's merge rule, for data that a sum cannot carry
 * (e.g. per-channel count, mean and M2 merged by Chan's formula). data holds
 * count elements of element_doubles doubles each. merge(lower, higher, count)
 * must set higher[i] = lower[i] (+) higher[i] elementwise for count elements,
 * where lower comes from lower ranks; (+) must be associative but need not
 * commute: ranks are always combined in rank order. Collective. */
typedef void sbn_merge_fn(const double *lower, double *higher, int64_t count);
SBN_API sbn_status sbn_comm_allreduce_merge(sbn_comm *comm, double *data, int64_t count, int element_doubles,
                                    sbn_merge_fn *merge);

/* Traffic counters since creation: collectives started and payload bytes
 * each rank contributed to them. Local. */
typedef struct sbn_comm_counters { int64_t collectives, bytes; } sbn_comm_counters;
SBN_API sbn_comm_counters sbn_comm_get_counters(const sbn_comm *comm);

#ifdef __cplusplus
}
#endif
#endif
