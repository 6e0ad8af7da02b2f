/* The data-parallel sampler: one permutation per epoch from (seed, epoch),
 * the same on every rank; rank r takes a contiguous slice of each global batch. */
#include <syncbn/data.h>

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/random.h"

sbn_status sbn_sampler_init(sbn_sampler *sampler, int64_t count, int64_t global_batch, int ranks, int rank,
                            uint64_t seed)
{
    if (!sampler) return sbn_fail(SBN_ERR_ARG, "sampler is NULL");
    memset(sampler, 0, sizeof *sampler);
    if (global_batch < 1 || global_batch > count)
        return sbn_fail(SBN_ERR_ARG, "global batch %lld must be in [1, %lld samples]", (long long)global_batch,
                        (long long)count);
    if (ranks < 1 || rank < 0 || rank >= ranks) return sbn_fail(SBN_ERR_ARG, "rank %d of %d is invalid", rank, ranks);
    if (global_batch % ranks != 0)
        return sbn_fail(SBN_ERR_ARG, "global batch %lld is not divisible by the %d ranks", (long long)global_batch,
                        ranks);
    if (!(sampler->permutation = malloc((size_t)count * sizeof *sampler->permutation)))
        return sbn_fail(SBN_ERR_NOMEM, "no memory for a permutation of %lld", (long long)count);
    sampler->count = count, sampler->global_batch = global_batch, sampler->ranks = ranks, sampler->rank = rank;
    sampler->seed = seed, sampler->epoch = -1, sampler->batches_per_epoch = count / global_batch;
    return SBN_OK;
}

void sbn_sampler_free(sbn_sampler *sampler)
{
    if (!sampler) return;
    free(sampler->permutation);
    memset(sampler, 0, sizeof *sampler);
}

sbn_status sbn_sampler_slice(sbn_sampler *sampler, int64_t epoch, int64_t batch, const int64_t **indices)
{
    if (!sampler || !sampler->permutation || !indices) return sbn_fail(SBN_ERR_ARG, "sampler slice: NULL argument");
    if (epoch < 0 || batch < 0 || batch >= sampler->batches_per_epoch)
        return sbn_fail(SBN_ERR_ARG, "batch %lld of epoch %lld does not exist (%lld batches per epoch)",
                        (long long)batch, (long long)epoch, (long long)sampler->batches_per_epoch);
    if (epoch != sampler->epoch) {
        sbn_random random = {sampler->seed ^ (0x5851f42d4c957f2dull * (uint64_t)(epoch + 1))};
        sbn_random_permutation(&random, sampler->permutation, sampler->count);
        sampler->epoch = epoch;
    }
    const int64_t per_rank = sampler->global_batch / sampler->ranks;
    *indices = sampler->permutation + batch * sampler->global_batch + sampler->rank * per_rank;
    return SBN_OK;
}
