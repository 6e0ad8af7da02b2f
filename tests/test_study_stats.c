/* The statistics of `syncbn study` (tools/statistics.c):
 *   - against small examples computed by hand (closed forms of Student's t
 *     at 1, 2 and 4 degrees of freedom, table values of critical t);
 *   - against an independent implementation: numpy's mean, std and median
 *     and a numerically integrated t density, written by
 *     tests/study_stats_expected.py to study_stats_expected.json.
 * Usage: test_study_stats study_stats_expected.json */
#include <cjson/cJSON.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "statistics.h"

static const char *expected_path;

/* |got - want| <= absolute + relative * |want|; NaN matches NaN only. */
static void check_close(const char *what, double got, double want, double relative, double absolute)
{
    if (isnan(want) && isnan(got)) return;
    const bool ok = fabs(got - want) <= absolute + relative * fabs(want) || got == want;
    if (!ok) fail_msg("%s: got %.17g, want %.17g (difference %.3g)", what, got, want, got - want);
}

/* ---------- by hand ---------- */

static void test_moments_by_hand(void **state)
{
    (void)state;
    const double x[] = {1, 2, 3, 4};
    double scratch[8];
    check_close("mean 1..4", stat_mean(x, 4), 2.5, 0, 0);
    check_close("sd 1..4", stat_sd(x, 4), sqrt(5.0 / 3.0), 1e-15, 0); /* squares 2.25+0.25+0.25+2.25 = 5, / 3 */
    check_close("median odd", stat_median((const double[]){3, 1, 2}, 3, scratch), 2, 0, 0);
    check_close("median even", stat_median((const double[]){4, 1, 3, 2}, 4, scratch), 2.5, 0, 0);
    check_close("median in place", stat_median(scratch, 4, scratch), 2.5, 0, 0);
    assert_true(isnan(stat_mean(x, 0)) && isnan(stat_sd(x, 1)) && isnan(stat_median(x, 0, scratch)));
    check_close("sd of a constant", stat_sd((const double[]){7, 7, 7}, 3), 0, 0, 0);
    const double five[] = {1, 2, 3, 4, 5};
    check_close("tail mean 2", stat_tail_mean(five, 5, 2), 4.5, 0, 0);
    check_close("tail mean, window > n", stat_tail_mean(five, 5, 50), 3, 0, 0);
    assert_true(isnan(stat_tail_mean(five, 0, 50)));
}

static void test_curve_measures_by_hand(void **state)
{
    (void)state;
    double out[4];
    stat_trailing_mean((const double[]){2, 4, 6, 8}, 4, 2, out);
    check_close("smooth 0", out[0], 2, 0, 0), check_close("smooth 1", out[1], 3, 0, 0);
    check_close("smooth 2", out[2], 5, 0, 0), check_close("smooth 3", out[3], 7, 0, 0);
    /* one NaN spoils only the windows that hold it */
    stat_trailing_mean((const double[]){NAN, 4, 6, 8}, 4, 2, out);
    assert_true(isnan(out[0]) && isnan(out[1]));
    check_close("smooth after NaN", out[2], 5, 0, 0);
    const double falling[] = {3, 2, NAN, 1, 0.5};
    assert_int_equal(stat_first_below(falling, 5, 1.5), 3); /* NaN is never below */
    assert_int_equal(stat_first_below(falling, 5, 0.1), -1);
    assert_int_equal(stat_first_below(falling, 5, 10), 0);
    /* the last half of 5 values is x[2..5) = {1, 2, 3}: sd 1 */
    check_close("sd last half", stat_sd_last_half((const double[]){9, 9, 1, 2, 3}, 5), 1, 1e-15, 0);
    assert_true(isnan(stat_sd_last_half((const double[]){1, 2, 3}, 3)));
    /* ten 1s, then 3: the median of the previous steps is 1, the spike 3 */
    double scratch[50];
    const double spiky[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 2};
    check_close("spike", stat_largest_spike(spiky, 13, 50, 10, scratch), 3, 0, 0);
    /* with a window of 2, step 12's previous two are {3, 1}: median 2, ratio 1; step 10: 3/1 */
    check_close("spike, window 2", stat_largest_spike(spiky, 13, 2, 10, scratch), 3, 0, 0);
    /* from step 11 on: 1 / median{1, 3} = 0.5, then 2 / median{3, 1} = 1 */
    check_close("spike, from step 11", stat_largest_spike(spiky, 13, 2, 11, scratch), 1, 0, 0);
    /* a non-finite loss is not a spike (divergence is counted apart) and leaves the medians */
    const double broken[] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, INFINITY, 2};
    check_close("spike with inf", stat_largest_spike(broken, 12, 50, 10, scratch), 2, 0, 0);
    assert_true(isnan(stat_largest_spike(spiky, 5, 50, 10, scratch))); /* no step qualifies */
}

static void test_t_distribution_by_hand(void **state)
{
    (void)state;
    /* I_x(1, 1) = x, I_x(2, 1) = x^2, I_1/2(a, a) = 1/2 */
    check_close("I(1,1)", stat_incomplete_beta(1, 1, 0.3), 0.3, 1e-14, 0);
    check_close("I(2,1)", stat_incomplete_beta(2, 1, 0.3), 0.09, 1e-14, 0);
    check_close("I(a,a) at 1/2", stat_incomplete_beta(3.7, 3.7, 0.5), 0.5, 1e-14, 0);
    /* Closed forms: df 1 (Cauchy) p = 1 - 2 atan|t| / pi; df 2: p = 1 - |t| / sqrt(t^2 + 2);
     * df 4: F(t) = 1/2 + 3/8 u (1 - t^2 / (12 (1 + t^2/4))), u = t / sqrt(1 + t^2/4), p = 2 (1 - F). */
    for (double t = 0.25; t < 40; t *= 1.7) {
        char what[64];
        snprintf(what, sizeof what, "p(t = %g, df 1)", t);
        check_close(what, stat_t_two_sided_p(t, 1), 1 - 2 * atan(t) / M_PI, 1e-12, 1e-15);
        snprintf(what, sizeof what, "p(t = %g, df 2)", t);
        check_close(what, stat_t_two_sided_p(-t, 2), 1 - t / sqrt(t * t + 2), 1e-10, 1e-15);
        const double u = t / sqrt(1 + t * t / 4), f = 0.5 + 3.0 / 8.0 * u * (1 - t * t / (12 * (1 + t * t / 4)));
        snprintf(what, sizeof what, "p(t = %g, df 4)", t);
        check_close(what, stat_t_two_sided_p(t, 4), 2 * (1 - f), 1e-9, 1e-13);
    }
    /* Table values of two-sided critical t */
    check_close("t 12.7062 df 1", stat_t_two_sided_p(12.7062047, 1), 0.05, 1e-6, 0);
    check_close("t 2.7764 df 4", stat_t_two_sided_p(2.776445105, 4), 0.05, 1e-6, 0);
    check_close("t 2.2281 df 10", stat_t_two_sided_p(2.228138852, 10), 0.05, 1e-6, 0);
    check_close("t 3.1693 df 10", stat_t_two_sided_p(3.169272673, 10), 0.01, 1e-6, 0);
    check_close("t 0", stat_t_two_sided_p(0, 3), 1, 0, 0);
    check_close("t inf", stat_t_two_sided_p(INFINITY, 3), 0, 0, 0);
}

static void test_welch_by_hand(void **state)
{
    (void)state;
    /* {1,2,3} vs {5,5,5}: means 2 and 5, variances 1 and 0: t = -3 / sqrt(1/3), df = (1/3)^2 / ((1/3)^2 / 2) = 2 */
    stat_welch w = stat_welch_test((const double[]){1, 2, 3}, 3, (const double[]){5, 5, 5}, 3);
    assert_true(w.valid);
    check_close("difference", w.difference, -3, 0, 0);
    check_close("t", w.t, -3 / sqrt(1.0 / 3), 1e-15, 0);
    check_close("df", w.df, 2, 1e-15, 0);
    check_close("p", w.p, 1 - sqrt(27.0 / 29.0), 1e-12, 0);
    /* {0,2} vs {5,5}: t = -4, df = 1 */
    w = stat_welch_test((const double[]){0, 2}, 2, (const double[]){5, 5}, 2);
    check_close("t, df 1", w.t, -4, 1e-15, 0);
    check_close("df 1", w.df, 1, 1e-15, 0);
    check_close("p, df 1", w.p, 1 - 2 * atan(4.0) / M_PI, 1e-12, 0);
    /* {1,2,3} vs {4,5,6}: equal variances 1, t = -3 / sqrt(2/3), df = 4 */
    w = stat_welch_test((const double[]){1, 2, 3}, 3, (const double[]){4, 5, 6}, 3);
    check_close("t, df 4", w.t, -3 / sqrt(2.0 / 3), 1e-15, 0);
    check_close("df 4", w.df, 4, 1e-14, 0);
    /* constant samples: equal means, p = 1; different, p = 0 */
    w = stat_welch_test((const double[]){0.9, 0.9}, 2, (const double[]){0.9, 0.9}, 2);
    assert_true(w.valid && w.t == 0 && w.p == 1);
    w = stat_welch_test((const double[]){1, 1}, 2, (const double[]){2, 2}, 2);
    assert_true(w.valid && isinf(w.t) && w.t < 0 && w.p == 0);
    /* fewer than 2 on a side, or a NaN: no test */
    w = stat_welch_test((const double[]){1}, 1, (const double[]){2, 3}, 2);
    assert_false(w.valid);
    assert_true(isnan(w.p));
    w = stat_welch_test((const double[]){1, NAN}, 2, (const double[]){2, 3}, 2);
    assert_false(w.valid);
}

/* ---------- against numpy ---------- */

static cJSON *expected;

static double number(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    if (cJSON_IsNull(item)) return NAN; /* the generator's None: not defined */
    if (!cJSON_IsNumber(item)) fail_msg("%s: not a number in %s", key, expected_path);
    return item->valuedouble;
}

/* The array under key, as doubles (freed by the caller); *n its length. */
static double *numbers(const cJSON *object, const char *key, int *n)
{
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(object, key);
    assert_true(cJSON_IsArray(array));
    *n = cJSON_GetArraySize(array);
    double *x = malloc((size_t)(*n > 0 ? *n : 1) * sizeof *x);
    assert_non_null(x);
    int k = 0;
    const cJSON *item;
    cJSON_ArrayForEach(item, array) x[k++] = item->valuedouble;
    return x;
}

static int load_expected(void **state)
{
    (void)state;
    FILE *f = fopen(expected_path, "rb");
    if (!f) return -1;
    fseek(f, 0, SEEK_END);
    const long size = ftell(f);
    rewind(f);
    char *text = malloc((size_t)size + 1);
    const bool read = text && fread(text, 1, (size_t)size, f) == (size_t)size;
    fclose(f);
    if (!read) {
        free(text);
        return -1;
    }
    text[size] = '\0';
    expected = cJSON_Parse(text);
    free(text);
    return expected ? 0 : -1;
}

static int free_expected(void **state)
{
    (void)state;
    cJSON_Delete(expected);
    return 0;
}

static void test_samples_against_numpy(void **state)
{
    (void)state;
    const int window = (int)number(expected, "window"), history = (int)number(expected, "spike_history");
    assert_int_equal(window, 50); /* SBN_FINAL_LOSS_STEPS */
    const cJSON *sample;
    int cases = 0;
    cJSON_ArrayForEach(sample, cJSON_GetObjectItemCaseSensitive(expected, "samples"))
    {
        const char *name = cJSON_GetObjectItemCaseSensitive(sample, "name")->valuestring;
        int n, smooth_n;
        double *x = numbers(sample, "x", &n), *want_smooth = numbers(sample, "trailing_mean_50", &smooth_n);
        double *scratch = malloc((size_t)n * sizeof *scratch), *smooth = malloc((size_t)n * sizeof *smooth);
        assert_true(scratch && smooth && smooth_n == n);
        char what[128];
#define CHECK(label, got, key, relative)                                                                             \
    snprintf(what, sizeof what, "%s: %s", name, label), check_close(what, got, number(sample, key), relative, 1e-300)
        CHECK("mean", stat_mean(x, n), "mean", 1e-13);
        CHECK("sd", stat_sd(x, n), "sd", 1e-9); /* the offset sample: numpy sums pairwise */
        CHECK("median", stat_median(x, n, scratch), "median", 0);
        CHECK("tail mean 50", stat_tail_mean(x, n, window), "tail_mean_50", 1e-13);
        CHECK("tail mean 7", stat_tail_mean(x, n, 7), "tail_mean_7", 1e-13);
        CHECK("sd last half", stat_sd_last_half(x, n), "sd_last_half", 1e-9);
        CHECK("largest spike", stat_largest_spike(x, n, window, history, scratch), "largest_spike", 1e-13);
#undef CHECK
        stat_trailing_mean(x, n, window, smooth);
        for (int k = 0; k < n; k++) {
            snprintf(what, sizeof what, "%s: smoothed[%d]", name, k);
            check_close(what, smooth[k], want_smooth[k], 1e-13, 1e-300);
        }
        const cJSON *below;
        cJSON_ArrayForEach(below, cJSON_GetObjectItemCaseSensitive(sample, "first_below_smoothed"))
        {
            snprintf(what, sizeof what, "%s: first smoothed < %s", name, below->string);
            const int64_t got = stat_first_below(smooth, n, strtod(below->string, NULL));
            if (got != (int64_t)below->valuedouble)
                fail_msg("%s: got %lld, want %g", what, (long long)got, below->valuedouble);
        }
        free(x), free(want_smooth), free(scratch), free(smooth);
        cases++;
    }
    assert_true(cases >= 5);
}

static void test_welch_against_numpy(void **state)
{
    (void)state;
    const cJSON *item;
    int cases = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(expected, "welch"))
    {
        int n_a, n_b;
        double *a = numbers(item, "a", &n_a), *b = numbers(item, "b", &n_b);
        const stat_welch w = stat_welch_test(a, n_a, b, n_b);
        char what[64];
        assert_true(w.valid);
        snprintf(what, sizeof what, "welch %d: difference", cases);
        check_close(what, w.difference, number(item, "difference"), 1e-12, 1e-15);
        snprintf(what, sizeof what, "welch %d: t", cases);
        check_close(what, w.t, number(item, "t"), 1e-10, 0);
        snprintf(what, sizeof what, "welch %d: df", cases);
        check_close(what, w.df, number(item, "df"), 1e-10, 0);
        snprintf(what, sizeof what, "welch %d: p", cases);
        check_close(what, w.p, number(item, "p"), 1e-8, 1e-14);
        free(a), free(b);
        cases++;
    }
    assert_true(cases >= 5);
    cases = 0;
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(expected, "t_p"))
    {
        const double t = number(item, "t"), df = number(item, "df");
        char what[64];
        snprintf(what, sizeof what, "p(t = %g, df %g)", t, df);
        check_close(what, stat_t_two_sided_p(t, df), number(item, "p"), 1e-8, 1e-14);
        cases++;
    }
    assert_true(cases >= 60);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_study_stats study_stats_expected.json\n");
        return 2;
    }
    expected_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_moments_by_hand),
        cmocka_unit_test(test_curve_measures_by_hand),
        cmocka_unit_test(test_t_distribution_by_hand),
        cmocka_unit_test(test_welch_by_hand),
        cmocka_unit_test_setup_teardown(test_samples_against_numpy, load_expected, free_expected),
        cmocka_unit_test_setup_teardown(test_welch_against_numpy, load_expected, free_expected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
