/* The SyncBN message: the agreement header and the two merge rules. */
#include "bn/sync_message.h"

#include <stdio.h>
#include <string.h>

#include "core/error.h"

/* The checked words, each a 32-bit piece of a value. */
typedef enum check_word {
    WORD_PASS,
    WORD_LAYER_LOW, WORD_LAYER_HIGH,
    WORD_MODE_LOW, WORD_MODE_HIGH,
    WORD_FLAGS,
    WORD_MOMENTUM_LOW, WORD_MOMENTUM_HIGH,
    WORD_EPS_LOW, WORD_EPS_HIGH,
    CHECK_WORDS
} check_word;

_Static_assert((int)CHECK_WORDS == (int)SYNC_CHECK_WORDS, "header size");

int64_t sync_message_doubles(int64_t channels)
{
    return (SYNC_HEADER_ELEMENTS + channels) * SYNC_ELEMENT_DOUBLES;
}

static uint64_t bits_of(double value)
{
    uint64_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static void split_words(uint32_t *low, uint32_t *high, uint64_t value)
{
    *low = (uint32_t)value;
    *high = (uint32_t)(value >> 32);
}

static void identity_words(uint32_t words[CHECK_WORDS], sync_identity identity)
{
    const sbn_bn_options o = identity.options;
    words[WORD_PASS] = (uint32_t)identity.pass;
    split_words(&words[WORD_LAYER_LOW], &words[WORD_LAYER_HIGH], (uint64_t)identity.layer_id);
    split_words(&words[WORD_MODE_LOW], &words[WORD_MODE_HIGH], (uint64_t)identity.local_backwards);
    /* fuse_relu too: a rank that masks dy by the ReLU and one that does not
     * would add sums of different things into one backward. */
    words[WORD_FLAGS] = (uint32_t)o.affine | (uint32_t)o.track_running_stats << 1 | (uint32_t)o.cumulative << 2 |
                        (uint32_t)o.fuse_relu << 3;
    /* momentum is not used by the cumulative average: any value agrees. */
    split_words(&words[WORD_MOMENTUM_LOW], &words[WORD_MOMENTUM_HIGH], o.cumulative ? 0 : bits_of(o.momentum));
    split_words(&words[WORD_EPS_LOW], &words[WORD_EPS_HIGH], bits_of(o.eps));
}

static double *header_element(double *message, int element) { return message + element * SYNC_ELEMENT_DOUBLES; }

void sync_message_write_header(double *message, sync_identity identity)
{
    uint32_t words[CHECK_WORDS];
    identity_words(words, identity);
    memset(message, 0, SYNC_HEADER_ELEMENTS * SYNC_ELEMENT_DOUBLES * sizeof *message);
    header_element(message, 0)[0] = 1.0;
    for (int k = 0; k < CHECK_WORDS; k++) {
        double *element = header_element(message, 1 + k);
        element[0] = element[1] = (double)words[k];
    }
}

static int words_disagree(const double *message, check_word first, check_word last)
{
    for (int k = (int)first; k <= (int)last; k++) {
        const double *element = message + (1 + k) * SYNC_ELEMENT_DOUBLES;
        if (element[0] != element[1]) return 1;
    }
    return 0;
}

sbn_status sync_message_check_header(const double *message, int ranks, sync_identity identity, int64_t channels)
{
    const char *pass_name = identity.pass == SYNC_PASS_FORWARD ? "forward" : "backward";
    const sbn_bn_options o = identity.options;
    if (message[0] != (double)ranks)
        return sbn_fail(SBN_ERR_MISMATCH, "SyncBN layer %lld (%lld channels) %s: %.0f of %d ranks joined the collective",
                        (long long)identity.layer_id, (long long)channels, pass_name, message[0], ranks);
    char what[256] = "";
    if (words_disagree(message, WORD_PASS, WORD_PASS))
        snprintf(what, sizeof what, "the pass (one rank in forward, another in backward; this rank in %s)", pass_name);
    else if (words_disagree(message, WORD_LAYER_LOW, WORD_LAYER_HIGH))
        snprintf(what, sizeof what,
                 "the layer (layers called in a different order on different ranks; this rank is in layer %lld)",
                 (long long)identity.layer_id);
    else if (words_disagree(message, WORD_MODE_LOW, WORD_MODE_HIGH))
        snprintf(what, sizeof what,
                 "the mode (a rank ran a training step in eval mode while others trained; this rank made %lld "
                 "such backward calls)",
                 (long long)identity.local_backwards);
    else if (words_disagree(message, WORD_FLAGS, WORD_FLAGS))
        snprintf(what, sizeof what,
                 "the options affine, track_running_stats, cumulative or fuse_relu (this rank: affine=%d, "
                 "track_running_stats=%d, cumulative=%d, fuse_relu=%d)",
                 (int)o.affine, (int)o.track_running_stats, (int)o.cumulative, (int)o.fuse_relu);
    else if (words_disagree(message, WORD_MOMENTUM_LOW, WORD_MOMENTUM_HIGH))
        snprintf(what, sizeof what, "the option momentum (this rank: %.17g)", o.momentum);
    else if (words_disagree(message, WORD_EPS_LOW, WORD_EPS_HIGH))
        snprintf(what, sizeof what, "the option eps (this rank: %.17g)", o.eps);
    else
        return SBN_OK;
    return sbn_fail(SBN_ERR_MISMATCH, "SyncBN layer %lld (%lld channels) %s: ranks disagree on %s",
                    (long long)identity.layer_id, (long long)channels, pass_name, what);
}

static double min_of(double a, double b) { return a < b ? a : b; }
static double max_of(double a, double b) { return a > b ? a : b; }

static void merge_header(const double *lower, double *higher)
{
    higher[0] += lower[0];
    for (int k = 0; k < CHECK_WORDS; k++) {
        const double *a = lower + (1 + k) * SYNC_ELEMENT_DOUBLES;
        double *b = header_element(higher, 1 + k);
        b[0] = min_of(a[0], b[0]);
        b[1] = max_of(a[1], b[1]);
    }
}

/* Chan et al.'s pairwise update of (count, mean, m2); exact for empty sides. */
void sync_merge_moments(const double *lower, double *higher, int64_t elements)
{
    merge_header(lower, higher);
    for (int64_t i = SYNC_HEADER_ELEMENTS; i < elements; i++) {
        const double *a = lower + i * SYNC_ELEMENT_DOUBLES;
        double *b = higher + i * SYNC_ELEMENT_DOUBLES;
        const double count = a[0] + b[0];
        if (a[0] == 0.0) continue;
        if (b[0] == 0.0) {
            memcpy(b, a, SYNC_ELEMENT_DOUBLES * sizeof *b);
            continue;
        }
        const double delta = b[1] - a[1];
        const double mean = a[1] + delta * (b[0] / count);
        const double m2 = a[2] + b[2] + delta * delta * (a[0] * (b[0] / count));
        b[0] = count;
        b[1] = mean;
        b[2] = m2;
    }
}

void sync_merge_sums(const double *lower, double *higher, int64_t elements)
{
    merge_header(lower, higher);
    for (int64_t i = SYNC_HEADER_ELEMENTS * SYNC_ELEMENT_DOUBLES; i < elements * SYNC_ELEMENT_DOUBLES; i++)
        higher[i] = lower[i] + higher[i];
}
