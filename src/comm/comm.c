/* The communicator front end: argument checks, counters, the broken flag,
 * and the single-rank backend. Backends only move bytes. */
#include "comm/comm_internal.h"

#include <math.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"

sbn_comm *sbn_comm_wrap(const sbn_comm_backend *backend, void *backend_state, int rank, int size,
                        double timeout_seconds)
{
    sbn_comm *comm = calloc(1, sizeof *comm);
    if (!comm) return NULL;
    comm->backend = backend;
    comm->backend_state = backend_state;
    comm->rank = rank;
    comm->size = size;
    comm->timeout_seconds = timeout_seconds;
    return comm;
}

int64_t sbn_comm_next_layer_id(sbn_comm *comm) { return comm->layers_created++; }

void sbn_comm_inject_fault(sbn_comm *comm, sbn_comm_fault fault, int64_t at)
{
    comm->fault = fault;
    comm->fault_countdown = at;
}

bool sbn_comm_fault_strikes(sbn_comm *comm, sbn_comm_fault fault)
{
    if (comm->fault != fault || --comm->fault_countdown > 0) return false;
    comm->fault = SBN_FAULT_NONE;
    return true;
}

int sbn_comm_rank(const sbn_comm *comm) { return comm ? comm->rank : 0; }
int sbn_comm_size(const sbn_comm *comm) { return comm ? comm->size : 1; }

sbn_comm_counters sbn_comm_get_counters(const sbn_comm *comm)
{
    sbn_comm_counters none = {0, 0};
    return comm ? comm->counters : none;
}

sbn_status sbn_comm_set_timeout(sbn_comm *comm, double seconds)
{
    if (!comm) return sbn_fail(SBN_ERR_ARG, "comm is NULL");
    if (!(seconds > 0.0) || !isfinite(seconds))
        return sbn_fail(SBN_ERR_ARG, "timeout must be a finite number of seconds > 0, got %g", seconds);
    comm->timeout_seconds = seconds;
    return SBN_OK;
}

void sbn_comm_destroy(sbn_comm *comm)
{
    if (!comm) return;
    if (comm->backend->destroy_backend) comm->backend->destroy_backend(comm);
    free(comm);
}

static sbn_status check_collective(sbn_comm *comm, const void *data, int64_t count)
{
    if (!comm) return sbn_fail(SBN_ERR_ARG, "comm is NULL");
    if (comm->broken)
        return sbn_fail(SBN_ERR_COMM, "communicator is broken by an earlier failed collective (%s)",
                        comm->broken_reason);
    if (count < 0) return sbn_fail(SBN_ERR_ARG, "count must be >= 0, got %lld", (long long)count);
    if (!data && count > 0) return sbn_fail(SBN_ERR_ARG, "data is NULL");
    return SBN_OK;
}

/* A backend failure part-way through a collective may leave the ranks out
 * of step (some got the result, some did not; a message may be left
 * unreceived), so the communicator is unusable from then on. A mismatch is
 * different: every rank completed the collective and was told the same. */
static sbn_status after_collective(sbn_comm *comm, sbn_status st)
{
    if (st != SBN_OK && st != SBN_ERR_MISMATCH && !comm->broken) {
        comm->broken = true;
        snprintf(comm->broken_reason, sizeof comm->broken_reason, "%s", sbn_errmsg());
    }
    return st;
}

/* Counts a collective of count elements; a byte count that overflows is
 * refused like any size the backend cannot send (and breaks the
 * communicator: the peers may not have refused it). */
static sbn_status count_collective(sbn_comm *comm, int64_t count, int64_t element_bytes)
{
    int64_t bytes;
    if (__builtin_mul_overflow(count, element_bytes, &bytes))
        return after_collective(comm, sbn_fail(SBN_ERR_ARG, "%lld elements of %lld bytes overflow a message size",
                                               (long long)count, (long long)element_bytes));
    comm->counters.collectives++;
    comm->counters.bytes = comm->counters.bytes > INT64_MAX - bytes ? INT64_MAX : comm->counters.bytes + bytes;
    return SBN_OK;
}

static sbn_status run_allreduce(sbn_comm *comm, void *data, int64_t count, sbn_reduce_type type,
                                int element_doubles, sbn_merge_fn *merge, int64_t element_bytes)
{
    sbn_status st = check_collective(comm, data, count);
    if (st == SBN_OK) st = count_collective(comm, count, element_bytes);
    if (st != SBN_OK) return st;
    return after_collective(comm, comm->backend->allreduce(comm, data, count, type, element_doubles, merge));
}

sbn_status sbn_comm_allreduce_sum_float(sbn_comm *comm, float *data, int64_t count)
{
    return run_allreduce(comm, data, count, SBN_REDUCE_FLOAT, 0, NULL, sizeof *data);
}

sbn_status sbn_comm_allreduce_sum_double(sbn_comm *comm, double *data, int64_t count)
{
    return run_allreduce(comm, data, count, SBN_REDUCE_DOUBLE, 0, NULL, sizeof *data);
}

sbn_status sbn_comm_allreduce_sum_int64(sbn_comm *comm, int64_t *data, int64_t count)
{
    return run_allreduce(comm, data, count, SBN_REDUCE_INT64, 0, NULL, sizeof *data);
}

sbn_status sbn_comm_allreduce_merge(sbn_comm *comm, double *data, int64_t count, int element_doubles,
                                    sbn_merge_fn *merge)
{
    if (!merge) return sbn_fail(SBN_ERR_ARG, "merge function is NULL");
    if (element_doubles < 1 || element_doubles > 64)
        return sbn_fail(SBN_ERR_ARG, "element_doubles must be in [1, 64], got %d", element_doubles);
    return run_allreduce(comm, data, count, SBN_REDUCE_MERGE, element_doubles, merge,
                         (int64_t)element_doubles * (int64_t)sizeof(double));
}

sbn_status sbn_comm_broadcast_float(sbn_comm *comm, float *data, int64_t count, int root)
{
    sbn_status st = check_collective(comm, data, count);
    if (st != SBN_OK) return st;
    if (root < 0 || root >= comm->size)
        return sbn_fail(SBN_ERR_ARG, "root %d is not a rank of a communicator of size %d", root, comm->size);
    if ((st = count_collective(comm, count, (int64_t)sizeof *data)) != SBN_OK) return st;
    return after_collective(comm, comm->backend->broadcast(comm, data, count, root));
}

sbn_status sbn_comm_split_groups(sbn_comm *parent, int group_size, sbn_comm **out)
{
    if (!out) return sbn_fail(SBN_ERR_ARG, "out is NULL");
    *out = NULL;
    if (!parent) return sbn_fail(SBN_ERR_ARG, "parent is NULL");
    if (group_size < 1 || parent->size % group_size != 0)
        return sbn_fail(SBN_ERR_ARG, "group size %d does not divide the communicator size %d", group_size,
                        parent->size);
    if (parent->broken)
        return sbn_fail(SBN_ERR_COMM, "communicator is broken by an earlier failed collective (%s)",
                        parent->broken_reason);
    return parent->backend->split(parent, parent->rank / group_size, parent->rank, out);
}

/* ---------- the single-rank backend: every collective is the identity ---------- */

static sbn_status self_allreduce(sbn_comm *comm, void *data, int64_t count, sbn_reduce_type type,
                                 int element_doubles, sbn_merge_fn *merge)
{
    (void)comm, (void)data, (void)count, (void)type, (void)element_doubles, (void)merge;
    return SBN_OK;
}

static sbn_status self_broadcast(sbn_comm *comm, float *data, int64_t count, int root)
{
    (void)comm, (void)data, (void)count, (void)root;
    return SBN_OK;
}

static sbn_status self_split(sbn_comm *parent, int color, int key, sbn_comm **out)
{
    (void)color, (void)key;
    sbn_status st = sbn_comm_create_self(out);
    if (st == SBN_OK) (*out)->timeout_seconds = parent->timeout_seconds;
    return st;
}

static const sbn_comm_backend self_backend = {self_allreduce, self_broadcast, self_split, NULL};

sbn_status sbn_comm_create_self(sbn_comm **out)
{
    if (!out) return sbn_fail(SBN_ERR_ARG, "out is NULL");
    *out = sbn_comm_wrap(&self_backend, NULL, 0, 1, SBN_COMM_DEFAULT_TIMEOUT_SECONDS);
    return *out ? SBN_OK : sbn_fail(SBN_ERR_NOMEM, "no memory for a communicator");
}
