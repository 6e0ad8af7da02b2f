/* The SyncBN message: check words and the two merge rules. */
#include "bn/sync_message.h"

#include <string.h>

#include "core/error.h"

enum { CHECK_WORD_LIMIT = 1 << 20 }; /* w < 2^20 keeps P*sum(w*w) exact in double for P < 2^12 */

int64_t sync_message_doubles(int64_t channels)
{
    return (SYNC_HEADER_ELEMENTS + channels) * SYNC_ELEMENT_DOUBLES;
}

/* Header elements: [0] = 1 per rank, then (w, w*w) for each checked value. */
static void header_values(int64_t values[SYNC_CHECKED_VALUES], sync_identity identity)
{
    values[0] = identity.pass;
    values[1] = identity.layer_id % CHECK_WORD_LIMIT;
    values[2] = identity.options_code % CHECK_WORD_LIMIT;
    values[3] = identity.local_backwards % CHECK_WORD_LIMIT;
}

void sync_message_write_header(double *message, sync_identity identity)
{
    int64_t values[SYNC_CHECKED_VALUES];
    header_values(values, identity);
    memset(message, 0, SYNC_HEADER_ELEMENTS * SYNC_ELEMENT_DOUBLES * sizeof *message);
    message[0] = 1.0;
    for (int k = 0; k < SYNC_CHECKED_VALUES; k++) {
        message[(1 + 2 * k) * SYNC_ELEMENT_DOUBLES] = (double)values[k];
        message[(2 + 2 * k) * SYNC_ELEMENT_DOUBLES] = (double)(values[k] * values[k]);
    }
}

static int all_equal(double sum, double sum_sq, int64_t ranks)
{
    const __int128 s = (__int128)(int64_t)sum, q = (__int128)(int64_t)sum_sq;
    return q * ranks == s * s;
}

sbn_status sync_message_check_header(const double *message, int ranks, sync_identity identity, int64_t channels)
{
    static const char *const what[SYNC_CHECKED_VALUES] = {
        "pass (one rank in forward, another in backward)",
        "layer (layers called in a different order on different ranks)",
        "options (eps, momentum, affine or track_running_stats differ)",
        "mode (a rank ran a training step in eval mode while others trained)"};
    const char *pass_name = identity.pass == SYNC_PASS_FORWARD ? "forward" : "backward";
    if ((int64_t)message[0] != ranks)
        return sbn_fail(SBN_ERR_MISMATCH, "SyncBN layer %lld %s: %lld of %d ranks joined the collective",
                        (long long)identity.layer_id, pass_name, (long long)message[0], ranks);
    for (int k = 0; k < SYNC_CHECKED_VALUES; k++) {
        const double sum = message[(1 + 2 * k) * SYNC_ELEMENT_DOUBLES];
        const double sum_sq = message[(2 + 2 * k) * SYNC_ELEMENT_DOUBLES];
        if (!all_equal(sum, sum_sq, ranks))
            return sbn_fail(SBN_ERR_MISMATCH, "SyncBN layer %lld (%lld channels) %s: ranks disagree on the %s",
                            (long long)identity.layer_id, (long long)channels, pass_name, what[k]);
    }
    return SBN_OK;
}

int64_t sync_options_code(int affine, int track, int cumulative, double momentum, double eps)
{
    uint64_t bits[2];
    memcpy(&bits[0], &momentum, sizeof momentum);
    memcpy(&bits[1], &eps, sizeof eps);
    if (cumulative) bits[0] = 0;
    uint64_t h = (uint64_t)(affine != 0) | (uint64_t)(track != 0) << 1 | (uint64_t)(cumulative != 0) << 2;
    for (int k = 0; k < 2; k++) h = (h ^ bits[k]) * 0x100000001b3ull; /* FNV-style mixing */
    return (int64_t)((h ^ (h >> 29) ^ (h >> 47)) % CHECK_WORD_LIMIT);
}

/* Chan et al.'s pairwise update of (count, mean, m2); exact for empty sides
 * and for check elements (mean = m2 = 0). */
void sync_merge_moments(const double *lower, double *higher, int64_t elements)
{
    for (int64_t i = 0; i < elements; i++) {
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
    for (int64_t i = 0; i < elements * SYNC_ELEMENT_DOUBLES; i++) higher[i] = lower[i] + higher[i];
}
