/* Internal: the one message a SyncBN pass sends, and how ranks merge it.
 *
 * A message is HEADER_ELEMENTS check elements followed by one element per
 * channel; an element is 3 doubles. Both passes have the same size for the
 * same channel count, so a rank in forward and a rank in backward still make
 * a well-formed collective and the check words tell them apart.
 *   check element: (word, 0, 0)           merged by adding the word
 *   forward  channel element: (count, mean, m2)        merged by Chan's formula
 *   backward channel element: (count, sum_dy, sum_dy_xmu) merged by adding
 * Each checked value w travels as w and w*w; after the sum over P ranks,
 * all ranks agreed iff P*sum(w*w) == sum(w)^2.
 */
#ifndef SBN_BN_SYNC_MESSAGE_H
#define SBN_BN_SYNC_MESSAGE_H

#include <stdint.h>
#include <syncbn/status.h>

enum { SYNC_CHECKED_VALUES = 4, SYNC_ELEMENT_DOUBLES = 3, SYNC_HEADER_ELEMENTS = 1 + 2 * SYNC_CHECKED_VALUES };

typedef enum sync_pass { SYNC_PASS_FORWARD = 1, SYNC_PASS_BACKWARD = 2 } sync_pass;

/* What every rank of a collective must agree on. */
typedef struct sync_identity {
    int64_t layer_id;     /* order of creation on the communicator */
    int64_t options_code; /* affine, tracking, momentum, eps folded into 20 bits */
    sync_pass pass;
    /* Backward calls this rank made without communicating (through eval
     * statistics) since the layer's last collective: non-zero on one rank
     * only when that rank ran a training step in eval mode while its peers
     * trained. Eval forwards alone are not counted, so ranks may evaluate
     * different numbers of batches. */
    int64_t local_backwards;
} sync_identity;

/* Doubles in a message for `channels` channels. */
int64_t sync_message_doubles(int64_t channels);

void sync_message_write_header(double *message, sync_identity identity);

/* After the collective: SBN_ERR_MISMATCH naming what differed, else SBN_OK. */
sbn_status sync_message_check_header(const double *message, int ranks, sync_identity identity, int64_t channels);

/* A 20-bit code of the options that must match across ranks. */
int64_t sync_options_code(int affine, int track, int cumulative, double momentum, double eps);

void sync_merge_moments(const double *lower, double *higher, int64_t elements);
void sync_merge_sums(const double *lower, double *higher, int64_t elements);

#endif
