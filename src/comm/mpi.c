/* The MPI backend. The only library file that includes mpi.h.
 *
 * Every collective is built here from non-blocking point-to-point messages
 * along binomial trees, rather than MPI_Allreduce, for three guarantees MPI
 * does not give:
 *   - Identical bits on every rank: the reduction runs up one tree to rank 0
 *     in rank order, and rank 0's result is sent down; no rank computes its
 *     own copy.
 *   - Disagreement is reported, not undefined: each message carries a header,
 *     and every receive learns the incoming size before taking it, so ranks
 *     passing different counts all get SBN_ERR_MISMATCH instead of a
 *     truncation, garbage or a hang.
 *   - No wait forever: the communicator's timeout is one deadline for the
 *     whole collective; every wait polls against it, then gives SBN_ERR_COMM.
 * Any failure part-way (a timeout, an MPI error, no memory for a message
 * already matched) leaves the communicator broken (comm.c). A send that
 * times out is left with MPI, and its buffer with it: the buffer is freed
 * only once MPI has let go of it, never while MPI may still read it.
 */
#include <syncbn/mpi.h>

#include <limits.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "comm/comm_internal.h"
#include "core/error.h"

enum { TREE_TAG = 7401 };

/* Prepended to every tree message. error != 0 means "abandon this collective". */
typedef struct message_header {
    int64_t error;          /* 0, or the sbn_status every rank must return */
    int64_t detecting_rank; /* where a size mismatch was seen */
    int64_t expected_bytes; /* ... the payload that rank expected */
    int64_t received_bytes; /* ... and the payload that arrived */
} message_header;

/* A send that timed out: MPI may still read its buffer. */
typedef struct abandoned_send {
    MPI_Request request;
    unsigned char *buffer;
} abandoned_send;

enum { MAX_ABANDONED_SENDS = 64 };

typedef struct mpi_state {
    MPI_Comm mpi;
    unsigned char *buffer; /* header + payload, grown on demand */
    size_t buffer_bytes;
    abandoned_send abandoned[MAX_ABANDONED_SENDS];
    int abandoned_count;
} mpi_state;

static mpi_state *state_of(sbn_comm *comm) { return comm->backend_state; }

static sbn_status mpi_failure(int code, const char *what)
{
    char text[MPI_MAX_ERROR_STRING];
    int length = 0;
    MPI_Error_string(code, text, &length);
    return sbn_fail(SBN_ERR_COMM, "%s failed: %s", what, text);
}

/* The peer named is only this rank's neighbour in the tree: the rank that
 * failed to arrive may be any rank beyond it. */
static sbn_status timed_out(sbn_comm *comm, const char *what, int peer)
{
    return sbn_fail(SBN_ERR_COMM,
                    "rank %d: the collective did not complete within the %g s timeout (%s rank %d): some rank did "
                    "not reach this collective or stopped responding",
                    comm->rank, comm->timeout_seconds, what, peer);
}

static sbn_status injected_mpi_error(const char *what)
{
    return sbn_fail(SBN_ERR_COMM, "%s failed: injected MPI error (test)", what);
}

static sbn_status reserve_buffer(mpi_state *state, size_t bytes)
{
    if (bytes <= state->buffer_bytes) return SBN_OK;
    unsigned char *grown = realloc(state->buffer, bytes);
    if (!grown) return sbn_fail(SBN_ERR_NOMEM, "no memory for a %zu-byte message", bytes);
    state->buffer = grown;
    state->buffer_bytes = bytes;
    return SBN_OK;
}

/* MPI may read the buffer until the request completes: hand both to the
 * abandoned list (freed by release_abandoned), and start a fresh buffer. */
static void abandon_send(mpi_state *state, MPI_Request request)
{
    if (state->abandoned_count < MAX_ABANDONED_SENDS) {
        state->abandoned[state->abandoned_count].request = request;
        state->abandoned[state->abandoned_count].buffer = state->buffer;
        state->abandoned_count++;
    } else {
        MPI_Request_free(&request); /* the buffer is leaked rather than freed under MPI */
    }
    state->buffer = NULL;
    state->buffer_bytes = 0;
}

/* Frees the buffers of abandoned sends that MPI has finished with; true
 * when none is left. */
static bool release_abandoned(mpi_state *state)
{
    int kept = 0;
    for (int k = 0; k < state->abandoned_count; k++) {
        int done = 0;
        if (MPI_Test(&state->abandoned[k].request, &done, MPI_STATUS_IGNORE) == MPI_SUCCESS && done)
            free(state->abandoned[k].buffer);
        else
            state->abandoned[kept++] = state->abandoned[k];
    }
    state->abandoned_count = kept;
    return kept == 0;
}

/* MPI counts are int: a message over INT_MAX bytes cannot be sent as one. */
static sbn_status check_message_size(size_t payload_bytes)
{
    if (payload_bytes > (size_t)INT_MAX - sizeof(message_header))
        return sbn_fail(SBN_ERR_ARG, "a %zu-byte payload exceeds MPI's limit of %d bytes per message", payload_bytes,
                        INT_MAX - (int)sizeof(message_header));
    return SBN_OK;
}

/* Sends header (+ payload unless the header carries an error) to peer and
 * waits for completion, at most until the collective's deadline. */
static sbn_status send_message(sbn_comm *comm, int peer, const message_header *header, const void *payload,
                               size_t payload_bytes, double deadline)
{
    mpi_state *state = state_of(comm);
    const size_t bytes = sizeof *header + (header->error ? 0 : payload_bytes);
    sbn_status st = reserve_buffer(state, bytes);
    if (st != SBN_OK) return st;
    memcpy(state->buffer, header, sizeof *header);
    if (!header->error && payload_bytes) memcpy(state->buffer + sizeof *header, payload, payload_bytes);
    if (sbn_comm_fault_strikes(comm, SBN_FAULT_MPI_ERROR)) return injected_mpi_error("MPI_Isend");
    MPI_Request request;
    int rc = MPI_Isend(state->buffer, (int)bytes, MPI_BYTE, peer, TREE_TAG, state->mpi, &request);
    if (rc != MPI_SUCCESS) return mpi_failure(rc, "MPI_Isend");
    const bool forced_timeout = sbn_comm_fault_strikes(comm, SBN_FAULT_SEND_TIMEOUT);
    for (;;) {
        int done = 0;
        if (!forced_timeout && (rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE)) != MPI_SUCCESS) {
            abandon_send(state, request);
            return mpi_failure(rc, "MPI_Test");
        }
        if (done) return SBN_OK;
        if (forced_timeout || MPI_Wtime() > deadline) {
            abandon_send(state, request);
            return timed_out(comm, "sending to", peer);
        }
        sched_yield();
    }
}

/* Receives one message from peer into the state buffer, which the
 * collective reserved for header + payload_bytes. On a size other than that
 * (and not an error header), sets header->error to SBN_ERR_MISMATCH with the
 * sizes. */
static sbn_status receive_message(sbn_comm *comm, int peer, size_t payload_bytes, message_header *header,
                                  double deadline)
{
    mpi_state *state = state_of(comm);
    MPI_Message message;
    MPI_Status status;
    for (;;) {
        int found = 0;
        if (sbn_comm_fault_strikes(comm, SBN_FAULT_MPI_ERROR)) return injected_mpi_error("MPI_Improbe");
        int rc = MPI_Improbe(peer, TREE_TAG, state->mpi, &found, &message, &status);
        if (rc != MPI_SUCCESS) return mpi_failure(rc, "MPI_Improbe");
        if (found) break;
        if (MPI_Wtime() > deadline) return timed_out(comm, "waiting for", peer);
        sched_yield();
    }
    /* A matched message must be received: failing from here on leaves it in
     * MPI, and the communicator broken. */
    int bytes = 0;
    int rc = MPI_Get_count(&status, MPI_BYTE, &bytes);
    if (rc != MPI_SUCCESS) return mpi_failure(rc, "MPI_Get_count");
    if (bytes == MPI_UNDEFINED || bytes < 0)
        return sbn_fail(SBN_ERR_COMM, "rank %d: a message from rank %d has no byte count", comm->rank, peer);
    if (sbn_comm_fault_strikes(comm, SBN_FAULT_NOMEM_AFTER_MATCH))
        return sbn_fail(SBN_ERR_NOMEM, "no memory for a %d-byte message from rank %d (injected, test)", bytes, peer);
    sbn_status st = reserve_buffer(state, (size_t)bytes > sizeof *header ? (size_t)bytes : sizeof *header);
    if (st != SBN_OK) return st;
    rc = MPI_Mrecv(state->buffer, bytes, MPI_BYTE, &message, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) return mpi_failure(rc, "MPI_Mrecv");
    const size_t expected = sizeof *header + payload_bytes;
    if ((size_t)bytes >= sizeof *header) memcpy(header, state->buffer, sizeof *header);
    if ((size_t)bytes < sizeof *header || (!header->error && (size_t)bytes != expected)) {
        header->error = SBN_ERR_MISMATCH;
        header->detecting_rank = comm->rank;
        header->expected_bytes = (int64_t)payload_bytes;
        header->received_bytes = (int64_t)bytes - (int64_t)sizeof *header;
    }
    return SBN_OK;
}

/* The combine step of a reduction: higher = lower (+) higher. */
typedef void combine_fn(const void *lower, void *higher, int64_t count, int element_doubles, sbn_merge_fn *merge);

static void combine_float(const void *lower, void *higher, int64_t count, int element_doubles, sbn_merge_fn *merge)
{
    (void)element_doubles, (void)merge;
    const float *a = lower;
    float *b = higher;
    for (int64_t i = 0; i < count; i++) b[i] = a[i] + b[i];
}

static void combine_double(const void *lower, void *higher, int64_t count, int element_doubles, sbn_merge_fn *merge)
{
    (void)element_doubles, (void)merge;
    const double *a = lower;
    double *b = higher;
    for (int64_t i = 0; i < count; i++) b[i] = a[i] + b[i];
}

static void combine_int64(const void *lower, void *higher, int64_t count, int element_doubles, sbn_merge_fn *merge)
{
    (void)element_doubles, (void)merge;
    const int64_t *a = lower;
    int64_t *b = higher;
    for (int64_t i = 0; i < count; i++) b[i] = (int64_t)((uint64_t)a[i] + (uint64_t)b[i]);
}

static void combine_merge(const void *lower, void *higher, int64_t count, int element_doubles, sbn_merge_fn *merge)
{
    (void)element_doubles;
    merge(lower, higher, count);
}

/* Up the binomial tree to rank 0: rank r receives from r+1, r+2, r+4, ...
 * (each covering the ranks just above it) and sends once to r - lowbit(r). */
static sbn_status reduce_to_root(sbn_comm *comm, void *data, int64_t count, size_t payload_bytes, int element_doubles,
                                 combine_fn *combine, sbn_merge_fn *merge, message_header *header, double deadline)
{
    mpi_state *state = state_of(comm);
    sbn_status st;
    for (int mask = 1; mask < comm->size; mask <<= 1) {
        if (comm->rank & mask) return send_message(comm, comm->rank - mask, header, data, payload_bytes, deadline);
        const int child = comm->rank + mask;
        if (child >= comm->size) continue;
        message_header received = {0, 0, 0, 0};
        if ((st = receive_message(comm, child, payload_bytes, &received, deadline)) != SBN_OK) return st;
        if (header->error) continue; /* keep the first error seen */
        if (received.error) {
            *header = received;
            continue;
        }
        unsigned char *payload = state->buffer + sizeof *header;
        combine(data, payload, count, element_doubles, merge);
        memcpy(data, payload, payload_bytes);
    }
    return SBN_OK;
}

/* Down the binomial tree from `root`: ranks are renumbered so that root is
 * virtual rank 0; v receives from v - lowbit(v) and sends to v + 2^k below it. */
static sbn_status broadcast_from_root(sbn_comm *comm, void *data, size_t payload_bytes, int root,
                                      message_header *header, double deadline)
{
    const int size = comm->size, virtual_rank = (comm->rank - root + size) % size;
    int mask = 1;
    while (mask < size && !(virtual_rank & mask)) mask <<= 1;
    sbn_status st;
    if (virtual_rank != 0) {
        message_header received = {0, 0, 0, 0};
        if ((st = receive_message(comm, (virtual_rank - mask + root) % size, payload_bytes, &received, deadline)) !=
            SBN_OK)
            return st;
        *header = received;
        if (!header->error) memcpy(data, state_of(comm)->buffer + sizeof *header, payload_bytes);
    }
    for (mask >>= 1; mask > 0; mask >>= 1) {
        if (virtual_rank + mask >= size) continue;
        if ((st = send_message(comm, (virtual_rank + mask + root) % size, header, data, payload_bytes, deadline)) !=
            SBN_OK)
            return st;
    }
    return SBN_OK;
}

static sbn_status header_status(const message_header *header, size_t element_bytes)
{
    if (!header->error) return SBN_OK;
    if (header->error == SBN_ERR_MISMATCH)
        return sbn_fail(SBN_ERR_MISMATCH,
                        "ranks passed different counts to the same collective: rank %lld expected %lld elements "
                        "from a peer and received %lld",
                        (long long)header->detecting_rank, (long long)header->expected_bytes / (long long)element_bytes,
                        (long long)header->received_bytes / (long long)element_bytes);
    return sbn_fail((sbn_status)header->error, "a peer rank failed in this collective");
}

/* Everything a collective needs before its first message: its payload
 * (count elements of element_bytes, a size MPI can send), the buffer for
 * the largest well-formed message, and its deadline. */
static sbn_status begin_collective(sbn_comm *comm, int64_t count, size_t element_bytes, size_t *payload_bytes,
                                   double *deadline)
{
    mpi_state *state = state_of(comm);
    release_abandoned(state);
    *deadline = MPI_Wtime() + comm->timeout_seconds;
    if (__builtin_mul_overflow((size_t)count, element_bytes, payload_bytes))
        return sbn_fail(SBN_ERR_ARG, "%lld elements of %zu bytes overflow a message size", (long long)count,
                        element_bytes);
    sbn_status st = check_message_size(*payload_bytes);
    if (st == SBN_OK) st = reserve_buffer(state, sizeof(message_header) + *payload_bytes);
    return st;
}

static sbn_status mpi_broadcast(sbn_comm *comm, float *data, int64_t count, int root)
{
    if (comm->size == 1) return SBN_OK;
    size_t payload_bytes;
    double deadline;
    sbn_status st = begin_collective(comm, count, sizeof *data, &payload_bytes, &deadline);
    if (st != SBN_OK) return st;
    message_header header = {0, 0, 0, 0};
    st = broadcast_from_root(comm, data, payload_bytes, root, &header, deadline);
    /* A size mismatch is seen only below the rank that detected it: one
     * more pass of bare headers, up to rank 0 and down, tells every rank. */
    unsigned char none = 0;
    if (st == SBN_OK) st = reduce_to_root(comm, &none, 0, 0, 0, combine_float, NULL, &header, deadline);
    if (st == SBN_OK) st = broadcast_from_root(comm, &none, 0, 0, &header, deadline);
    return st != SBN_OK ? st : header_status(&header, sizeof *data);
}

static sbn_status mpi_allreduce(sbn_comm *comm, void *data, int64_t count, sbn_reduce_type type,
                                int element_doubles, sbn_merge_fn *merge)
{
    static combine_fn *const combiners[] = {
        [SBN_REDUCE_FLOAT] = combine_float, [SBN_REDUCE_DOUBLE] = combine_double,
        [SBN_REDUCE_INT64] = combine_int64, [SBN_REDUCE_MERGE] = combine_merge};
    static const size_t element_bytes[] = {
        [SBN_REDUCE_FLOAT] = sizeof(float), [SBN_REDUCE_DOUBLE] = sizeof(double),
        [SBN_REDUCE_INT64] = sizeof(int64_t), [SBN_REDUCE_MERGE] = sizeof(double)};
    const size_t bytes_per_element = element_bytes[type] * (size_t)(type == SBN_REDUCE_MERGE ? element_doubles : 1);
    if (comm->size == 1) return SBN_OK;
    size_t payload_bytes;
    double deadline;
    sbn_status st = begin_collective(comm, count, bytes_per_element, &payload_bytes, &deadline);
    if (st != SBN_OK) return st;
    message_header header = {0, 0, 0, 0};
    st = reduce_to_root(comm, data, count, payload_bytes, element_doubles, combiners[type], merge, &header, deadline);
    if (st == SBN_OK) st = broadcast_from_root(comm, data, payload_bytes, 0, &header, deadline);
    return st != SBN_OK ? st : header_status(&header, bytes_per_element);
}

/* ---------- creation ---------- */

static sbn_status wrap_mpi(MPI_Comm mpi, double timeout_seconds, sbn_comm **out);

static sbn_status mpi_split(sbn_comm *parent, int color, int key, sbn_comm **out)
{
    MPI_Comm child;
    int rc = MPI_Comm_split(state_of(parent)->mpi, color, key, &child);
    if (rc != MPI_SUCCESS) return mpi_failure(rc, "MPI_Comm_split");
    return wrap_mpi(child, parent->timeout_seconds, out);
}

static void mpi_destroy_backend(sbn_comm *comm)
{
    mpi_state *state = state_of(comm);
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (!finalized) {
        /* Sends that timed out may have completed since; what MPI still
         * holds stays allocated (freeing it under MPI would be worse). */
        release_abandoned(state);
        /* A broken communicator may still have messages in flight to or
         * from this rank. MPICH reuses a freed context id at once, so the
         * next duplicate would receive them as its own (wrong sums, then a
         * hang). A broken one is kept, never freed: a handle is the price. */
        if (!comm->broken) MPI_Comm_free(&state->mpi); /* pending operations complete before it goes */
    }
    free(state->buffer);
    free(state);
}

static const sbn_comm_backend mpi_backend = {mpi_allreduce, mpi_broadcast, mpi_split, mpi_destroy_backend};

/* Takes ownership of mpi (a communicator this library created). */
static sbn_status wrap_mpi(MPI_Comm mpi, double timeout_seconds, sbn_comm **out)
{
    int rank = 0, size = 1;
    int rc = MPI_Comm_set_errhandler(mpi, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(mpi, &rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(mpi, &size);
    if (rc != MPI_SUCCESS) {
        MPI_Comm_free(&mpi);
        return mpi_failure(rc, "setting up the duplicate communicator");
    }
    mpi_state *state = calloc(1, sizeof *state);
    if (state) state->mpi = mpi;
    *out = state ? sbn_comm_wrap(&mpi_backend, state, rank, size, timeout_seconds) : NULL;
    if (!*out) {
        free(state);
        MPI_Comm_free(&mpi);
        return sbn_fail(SBN_ERR_NOMEM, "no memory for a communicator");
    }
    return SBN_OK;
}

/* MPI_Comm_dup under the caller's error handler would abort the job (the
 * default, MPI_ERRORS_ARE_FATAL) instead of returning: run it under
 * MPI_ERRORS_RETURN and give the caller's handler back. */
static int duplicate_returning_errors(MPI_Comm mpi, MPI_Comm *duplicate)
{
    MPI_Errhandler callers;
    int rc = MPI_Comm_get_errhandler(mpi, &callers);
    if (rc != MPI_SUCCESS) return rc;
    rc = MPI_Comm_set_errhandler(mpi, MPI_ERRORS_RETURN);
    if (rc == MPI_SUCCESS) {
        rc = MPI_Comm_dup(mpi, duplicate);
        const int restored = MPI_Comm_set_errhandler(mpi, callers);
        if (rc == MPI_SUCCESS) rc = restored;
    }
    MPI_Errhandler_free(&callers);
    return rc;
}

static sbn_status check_mpi_ready(void)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    MPI_Finalized(&finalized);
    if (!initialized || finalized) return sbn_fail(SBN_ERR_COMM, "MPI is not initialized (call MPI_Init first)");
    return SBN_OK;
}

sbn_status sbn_comm_create_mpi(MPI_Comm mpi, sbn_comm **out)
{
    if (!out) return sbn_fail(SBN_ERR_ARG, "out is NULL");
    *out = NULL;
    sbn_status st = check_mpi_ready();
    if (st != SBN_OK) return st;
    if (mpi == MPI_COMM_NULL) return sbn_fail(SBN_ERR_ARG, "mpi is MPI_COMM_NULL");
    MPI_Comm duplicate = MPI_COMM_NULL;
    int rc = duplicate_returning_errors(mpi, &duplicate);
    if (rc != MPI_SUCCESS) return mpi_failure(rc, "MPI_Comm_dup");
    return wrap_mpi(duplicate, SBN_COMM_DEFAULT_TIMEOUT_SECONDS, out);
}

sbn_status sbn_comm_create_mpi_fortran(MPI_Fint handle, sbn_comm **out)
{
    if (!out) return sbn_fail(SBN_ERR_ARG, "out is NULL");
    *out = NULL;
    sbn_status st = check_mpi_ready(); /* MPI_Comm_f2c before MPI_Init is undefined */
    return st == SBN_OK ? sbn_comm_create_mpi(MPI_Comm_f2c(handle), out) : st;
}
