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

struct sbn_comm {
    const sbn_comm_backend *backend;
    void *backend_state;
    int rank, size;
    double timeout_seconds;
    bool broken;                   /* a collective failed or timed out */
    int64_t layers_created;        /* the next SyncBN layer's id on this communicator */
    sbn_comm_counters counters;
};

/* A new communicator object around a backend; NULL when out of memory. */
sbn_comm *sbn_comm_wrap(const sbn_comm_backend *backend, void *backend_state, int rank, int size,
                        double timeout_seconds);

/* The id that a new SyncBN layer takes on this communicator (0, 1, 2, ...):
 * layers created in the same order on every rank get the same ids. */
int64_t sbn_comm_next_layer_id(sbn_comm *comm);

#endif
