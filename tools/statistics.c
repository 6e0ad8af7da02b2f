/* Statistics for the study and compare (statistics.h). */
#include "statistics.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

double stat_mean(const double *x, int64_t n)
{
    if (n <= 0) return NAN;
    double sum = 0.0;
    for (int64_t k = 0; k < n; k++) sum += x[k];
    return sum / (double)n;
}

double stat_sd(const double *x, int64_t n)
{
    if (n < 2) return NAN;
    const double mean = stat_mean(x, n);
    double squares = 0.0;
    for (int64_t k = 0; k < n; k++) squares += (x[k] - mean) * (x[k] - mean);
    return sqrt(squares / (double)(n - 1));
}

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double stat_median(const double *x, int64_t n, double *scratch)
{
    if (n <= 0) return NAN;
    if (scratch != x) memcpy(scratch, x, (size_t)n * sizeof *scratch);
    qsort(scratch, (size_t)n, sizeof *scratch, compare_doubles);
    return n % 2 ? scratch[n / 2] : 0.5 * (scratch[n / 2 - 1] + scratch[n / 2]);
}

double stat_tail_mean(const double *x, int64_t n, int64_t window)
{
    const int64_t kept = n < window ? n : window;
    return stat_mean(x + (n - kept), kept);
}

void stat_trailing_mean(const double *x, int64_t n, int64_t window, double *out)
{
    /* Each window summed afresh: no running sum whose rounding (or one NaN) would carry on forever. */
    for (int64_t k = 0; k < n; k++) {
        const int64_t first = k + 1 > window ? k + 1 - window : 0;
        out[k] = stat_mean(x + first, k + 1 - first);
    }
}

int64_t stat_first_below(const double *x, int64_t n, double threshold)
{
    for (int64_t k = 0; k < n; k++)
        if (x[k] < threshold) return k;
    return -1;
}

double stat_sd_last_half(const double *x, int64_t n)
{
    return n < 4 ? NAN : stat_sd(x + n / 2, n - n / 2);
}

double stat_largest_spike(const double *x, int64_t n, int64_t window, int64_t min_history, double *scratch)
{
    double largest = NAN;
    if (min_history < 1) min_history = 1;
    for (int64_t k = min_history; k < n; k++) {
        const int64_t first = k > window ? k - window : 0;
        int64_t count = 0;
        for (int64_t j = first; j < k; j++)
            if (isfinite(x[j])) scratch[count++] = x[j];
        if (!isfinite(x[k]) || count == 0) continue;
        const double median = stat_median(scratch, count, scratch);
        if (!(median > 0)) continue;
        const double ratio = x[k] / median;
        if (isnan(largest) || ratio > largest) largest = ratio;
    }
    return largest;
}

/* The continued fraction of I_x(a, b) (Numerical Recipes' betacf, modified Lentz). */
static double beta_fraction(double a, double b, double x)
{
    const double tiny = 1e-300;
    double c = 1.0, d = 1.0 - (a + b) * x / (a + 1.0);
    if (fabs(d) < tiny) d = tiny;
    d = 1.0 / d;
    double h = d;
    for (int m = 1; m <= 10000; m++) {
        const double m2 = 2.0 * m;
        double aa = m * (b - m) * x / ((a + m2 - 1.0) * (a + m2));
        d = 1.0 + aa * d, c = 1.0 + aa / c;
        if (fabs(d) < tiny) d = tiny;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d, h *= d * c;
        aa = -(a + m) * (a + b + m) * x / ((a + m2) * (a + m2 + 1.0));
        d = 1.0 + aa * d, c = 1.0 + aa / c;
        if (fabs(d) < tiny) d = tiny;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        const double delta = d * c;
        h *= delta;
        if (fabs(delta - 1.0) < 4 * DBL_EPSILON) break;
    }
    return h;
}

double stat_incomplete_beta(double a, double b, double x)
{
    if (!(a > 0) || !(b > 0) || !(x >= 0 && x <= 1)) return NAN;
    if (x == 0 || x == 1) return x;
    const double front = exp(lgamma(a + b) - lgamma(a) - lgamma(b) + a * log(x) + b * log1p(-x));
    /* The fraction converges fast for x < (a + 1) / (a + b + 2); beyond, use I_x(a, b) = 1 - I_{1-x}(b, a). */
    if (x < (a + 1.0) / (a + b + 2.0)) return front * beta_fraction(a, b, x) / a;
    return 1.0 - front * beta_fraction(b, a, 1.0 - x) / b;
}

double stat_t_two_sided_p(double t, double df)
{
    if (isnan(t) || !(df > 0)) return NAN;
    if (isinf(t)) return 0.0;
    return stat_incomplete_beta(0.5 * df, 0.5, df / (df + t * t));
}

stat_welch stat_welch_test(const double *a, int64_t n_a, const double *b, int64_t n_b)
{
    stat_welch w = {.valid = false, .mean_a = stat_mean(a, n_a), .mean_b = stat_mean(b, n_b), .t = NAN, .df = NAN,
                    .p = NAN};
    w.difference = w.mean_a - w.mean_b;
    if (n_a < 2 || n_b < 2) return w;
    const double var_a = stat_sd(a, n_a) * stat_sd(a, n_a) / (double)n_a;
    const double var_b = stat_sd(b, n_b) * stat_sd(b, n_b) / (double)n_b;
    if (!isfinite(w.difference) || !isfinite(var_a) || !isfinite(var_b)) return w;
    w.valid = true;
    const double se2 = var_a + var_b;
    if (se2 == 0) { /* both samples constant */
        w.df = (double)(n_a + n_b - 2);
        w.t = w.difference == 0 ? 0.0 : copysign(INFINITY, w.difference);
        w.p = w.difference == 0 ? 1.0 : 0.0;
        return w;
    }
    w.t = w.difference / sqrt(se2);
    w.df = se2 * se2 / (var_a * var_a / (double)(n_a - 1) + var_b * var_b / (double)(n_b - 1));
    w.p = stat_t_two_sided_p(w.t, w.df);
    return w;
}
