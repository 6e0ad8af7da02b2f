/* Internal: a small seeded generator (splitmix64), the same bits on every
 * machine and rank, for initialization and data order. */
#ifndef SBN_CORE_RANDOM_H
#define SBN_CORE_RANDOM_H

#include <stdint.h>

typedef struct sbn_random { uint64_t state; } sbn_random;

uint64_t sbn_random_next(sbn_random *random);
double sbn_random_uniform(sbn_random *random); /* [0, 1) with 53 random bits */
/* A uniformly random permutation of 0..count-1 (Fisher-Yates). */
void sbn_random_permutation(sbn_random *random, int64_t *out, int64_t count);

#endif
