/* Internal: the communicator object and what a backend provides. */
#ifndef SBN_COMM_INTERNAL_H
#define SBN_COMM_INTERNAL_H

#include <stdbool.h>
#include <syncbn/comm.h>

/* How long a collective waits for its peers unless sbn_comm_set_timeout says otherwise. */
enum { SBN_COMM_DEFAULT_TIMEOUT_SECONDS = 600 };

typedef enum sbn_reduce_type { SBN_REDUCE_FLOAT, SBN_REDUCE_DOUBLE, SBN_REDUCE_INT64, SBN_REDUCE_MERGE } sbn_reduce_type;

typedef struct sbn_comm_backend {
    /* In-place allreduce of count elements; merge only for SBN_REDUCE_MERGE. */
    sbn_status (*allreduce)(sbn_comm *comm, void *data, int64_t count, sbn_reduce_type type, int element_doubles,
                            sbn_merge_fn *merge);
    sbn_status (*broadcast)(sbn_comm *comm, float *data, int64_t count, int root);
    sbn_status (*split)(sbn_comm *parent, int color, int key, sbn_comm **out);
    void (*destroy_backend)(sbn_comm *comm);
} sbn_comm_backend;

/* Fault injection for tests: on this rank, the n-th message operation
 * (counted from 1 after the fault is armed) that can fail this way fails:
 * receives for NOMEM_AFTER_MATCH, sends for SEND_TIMEOUT, either for
 * MPI_ERROR. Per communicator; honoured by the MPI backend. */
typedef enum sbn_comm_fault {
    SBN_FAULT_NONE,
    SBN_FAULT_NOMEM_AFTER_MATCH, /* a receive matched a message, then allocation failed */
    SBN_FAULT_MPI_ERROR,         /* an MPI call returned an error */
    SBN_FAULT_SEND_TIMEOUT,      /* a send's deadline passed while MPI still held its buffer */
} sbn_comm_fault;

struct sbn_comm {
    const sbn_comm_backend *backend;
    void *backend_state;
    int rank, size;
    double timeout_seconds;
    bool broken;                   /* a collective failed part-way: ranks may be out of step */
    char broken_reason[256];       /* the message of that failure */
    sbn_comm_fault fault;          /* test hook, see above */
    int64_t fault_countdown;       /* message operations until the fault */
    int64_t layers_created;        /* the next SyncBN layer's id on this communicator */
    sbn_comm_counters counters;
};

/* A new communicator object around a backend; NULL when out of memory. */
sbn_comm *sbn_comm_wrap(const sbn_comm_backend *backend, void *backend_state, int rank, int size,
                        double timeout_seconds);

/* The id that a new SyncBN layer takes on this communicator (0, 1, 2, ...):
 * layers created in the same order on every rank get the same ids. */
int64_t sbn_comm_next_layer_id(sbn_comm *comm);

/* Arms a fault on this rank of comm (see sbn_comm_fault); SBN_FAULT_NONE disarms. */
void sbn_comm_inject_fault(sbn_comm *comm, sbn_comm_fault fault, int64_t at);

/* For backends, at each operation that can fail as `fault`: true when the
 * armed fault strikes here (it then disarms). */
bool sbn_comm_fault_strikes(sbn_comm *comm, sbn_comm_fault fault);

#endif
