/* Random numbers, comparisons and layout copies for the tests. */
#include <math.h>
#include <stdio.h>

#include "support.h"

static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

double test_rng_uniform(test_rng *rng) { return (double)(splitmix64(&rng->state) >> 11) * 0x1.0p-53; }

double test_rng_normal(test_rng *rng)
{
    const double u = 1.0 - test_rng_uniform(rng), v = test_rng_uniform(rng);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

void test_fill_normal(test_rng *rng, float *x, int64_t count, double mean, double stddev)
{
    for (int64_t i = 0; i < count; i++) x[i] = (float)(mean + stddev * test_rng_normal(rng));
}

static int64_t report(const char *label, int64_t index, double got, double want, int64_t mismatches)
{
    if (mismatches < 5) fprintf(stderr, "  %s[%lld]: got %.9g, want %.9g\n", label, (long long)index, got, want);
    return mismatches + 1;
}

static bool close_enough(double got, double want, double atol, double rtol)
{
    return fabs(got - want) <= atol + rtol * fabs(want);
}

int64_t test_count_mismatches(const char *label, const float *got, const double *want, int64_t count, double atol,
                              double rtol)
{
    int64_t mismatches = 0;
    for (int64_t i = 0; i < count; i++)
        if (!close_enough(got[i], want[i], atol, rtol)) mismatches = report(label, i, got[i], want[i], mismatches);
    if (mismatches) fprintf(stderr, "  %s: %lld of %lld elements differ\n", label, (long long)mismatches, (long long)count);
    return mismatches;
}

int64_t test_count_mismatches_float(const char *label, const float *got, const float *want, int64_t count,
                                    double atol, double rtol)
{
    int64_t mismatches = 0;
    for (int64_t i = 0; i < count; i++)
        if (!close_enough(got[i], want[i], atol, rtol)) mismatches = report(label, i, got[i], want[i], mismatches);
    if (mismatches) fprintf(stderr, "  %s: %lld of %lld elements differ\n", label, (long long)mismatches, (long long)count);
    return mismatches;
}

void test_ncs_to_nsc(float *out, const float *in, int64_t n, int64_t c, int64_t s)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < c; k++)
            for (int64_t j = 0; j < s; j++) out[(i * s + j) * c + k] = in[(i * c + k) * s + j];
}

void test_nsc_to_ncs(float *out, const float *in, int64_t n, int64_t c, int64_t s)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t k = 0; k < c; k++)
            for (int64_t j = 0; j < s; j++) out[(i * c + k) * s + j] = in[(i * s + j) * c + k];
}
