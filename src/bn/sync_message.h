/* Internal: the one message a SyncBN pass sends, and how ranks merge it.
 *
 * A message is SYNC_HEADER_ELEMENTS header elements followed by one element
 * per channel; an element is 3 doubles. Both passes have the same size for
 * the same channel count, so a rank in forward and a rank in backward still
 * make a well-formed collective and the header tells them apart.
 *   header element 0: (1, 0, 0) per rank              merged by adding: ranks that joined
 *   header element 1+k: (word_k, word_k, 0)            merged as (min, max): all ranks
 *                                                      agreed on word k iff min == max
 *   forward  channel element: (count, mean, m2)        merged by Chan's formula
 *   backward channel element: (count, sum_dy, sum_dy_xmu) merged by adding
 * The words are 32-bit pieces of everything the ranks must agree on (pass,
 * layer id, eval-step count, option flags, and the exact bits of momentum and
 * eps), each held exactly in a double: the comparison is exact, not a hash.
 */
#ifndef SBN_BN_SYNC_MESSAGE_H
#define SBN_BN_SYNC_MESSAGE_H

#include <stdint.h>
#include <syncbn/bn.h>

enum { SYNC_CHECK_WORDS = 10, SYNC_ELEMENT_DOUBLES = 3, SYNC_HEADER_ELEMENTS = 1 + SYNC_CHECK_WORDS };

typedef enum sync_pass { SYNC_PASS_FORWARD = 1, SYNC_PASS_BACKWARD = 2 } sync_pass;

/* What every rank of a collective must agree on. */
typedef struct sync_identity {
    int64_t layer_id; /* order of creation on the communicator */
    sbn_bn_options options;
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

/* After the collective: SBN_ERR_MISMATCH with a message naming what
 * differed (and this rank's value), else SBN_OK. */
sbn_status sync_message_check_header(const double *message, int ranks, sync_identity identity, int64_t channels);

/* Merge rules for whole messages (header, then channel elements). */
void sync_merge_moments(const double *lower, double *higher, int64_t elements);
void sync_merge_sums(const double *lower, double *higher, int64_t elements);

#endif
