/* The statistics of `syncbn compare` and `syncbn study`: pure functions on
 * arrays of doubles, no I/O, no allocation (callers pass scratch space).
 * Checked against hand-computed examples and numpy in tests/test_study_stats.c. */
#ifndef SBN_TOOLS_STATISTICS_H
#define SBN_TOOLS_STATISTICS_H

#include <stdbool.h>
#include <stdint.h>

/* Mean of x[0..n); NaN when n == 0. */
double stat_mean(const double *x, int64_t n);

/* Sample standard deviation (divisor n - 1, numpy's std(ddof=1)); NaN when n < 2. */
double stat_sd(const double *x, int64_t n);

/* Median of x[0..n) (the mean of the two middle values when n is even);
 * scratch holds n doubles (it may be x itself, which is then sorted). NaN when n == 0. */
double stat_median(const double *x, int64_t n, double *scratch);

/* Mean of the last min(window, n) values: the final training loss with
 * window SBN_FINAL_LOSS_STEPS. NaN when n == 0. */
double stat_tail_mean(const double *x, int64_t n, int64_t window);

/* The smoothed curve: out[k] = mean of x[max(0, k - window + 1) .. k], the
 * mean of the last `window` values up to k (fewer at the start). */
void stat_trailing_mean(const double *x, int64_t n, int64_t window, double *out);

/* The first k with x[k] < threshold, or -1 (NaN never counts as below). */
int64_t stat_first_below(const double *x, int64_t n, double threshold);

/* The sample standard deviation of the second half, x[n/2 .. n): how much
 * the training loss still moves once it has mostly converged. NaN when
 * that half has fewer than 2 values. */
double stat_sd_last_half(const double *x, int64_t n);

/* The largest loss spike: max over k >= min_history of x[k] / median of the
 * previous min(window, k) values x[k - window .. k). Only finite values
 * count (a non-finite loss is a divergence, counted apart). scratch holds
 * `window` doubles. NaN when no k qualifies. */
double stat_largest_spike(const double *x, int64_t n, int64_t window, int64_t min_history, double *scratch);

/* The regularized incomplete beta function I_x(a, b), a, b > 0, 0 <= x <= 1
 * (continued fraction, modified Lentz). */
double stat_incomplete_beta(double a, double b, double x);

/* P(|T| >= |t|) for Student's t with df > 0 degrees of freedom:
 * I_{df / (df + t^2)}(df / 2, 1 / 2). 1 at t = 0, 0 at |t| = inf. */
double stat_t_two_sided_p(double t, double df);

/* Welch's unequal-variances t-test of mean(a) == mean(b), two-sided. */
typedef struct stat_welch {
    bool valid;     /* both samples have n >= 2 and finite values */
    double mean_a, mean_b, difference; /* difference = mean_a - mean_b */
    double t, df;   /* t = difference / sqrt(s_a^2/n_a + s_b^2/n_b); Welch-Satterthwaite df */
    double p;       /* two-sided p-value */
} stat_welch;

/* When both variances are 0: t = 0 and p = 1 for equal means, t = +-inf and
 * p = 0 otherwise, df = n_a + n_b - 2. */
stat_welch stat_welch_test(const double *a, int64_t n_a, const double *b, int64_t n_b);

#endif
