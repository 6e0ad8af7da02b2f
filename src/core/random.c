#include "core/random.h"

uint64_t sbn_random_next(sbn_random *random)
{
    uint64_t z = (random->state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double sbn_random_uniform(sbn_random *random) { return (double)(sbn_random_next(random) >> 11) * 0x1.0p-53; }

void sbn_random_permutation(sbn_random *random, int64_t *out, int64_t count)
{
    for (int64_t i = 0; i < count; i++) out[i] = i;
    for (int64_t i = count - 1; i > 0; i--) {
        /* Multiply-shift maps 64 random bits onto [0, i]; the bias (< 2^-40 here) is irrelevant. */
        const int64_t j = (int64_t)(((unsigned __int128)sbn_random_next(random) * (unsigned __int128)(i + 1)) >> 64);
        const int64_t t = out[i];
        out[i] = out[j];
        out[j] = t;
    }
}
