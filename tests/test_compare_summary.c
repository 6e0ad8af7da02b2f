/* Checks a `syncbn compare` summary.json (see compare_check.sh):
 *   (c) SyncBN reproduces (a) one process: loss within 1e-4 relative over the
 *       first 10 steps, running statistics identical on all ranks;
 *   (b) plain BN does not: its loss departs from (a) and its running
 *       statistics differ across ranks. */
#include <cjson/cJSON.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

static const char *summary_path;

static double field(const cJSON *run, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(run, key);
    assert_true(cJSON_IsNumber(item));
    return item->valuedouble;
}

static void test_summary(void **state)
{
    (void)state;
    FILE *f = fopen(summary_path, "r");
    assert_non_null(f);
    char text[16384];
    const size_t size = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[size] = '\0';
    cJSON *runs = cJSON_Parse(text);
    assert_non_null(runs);
    assert_int_equal(cJSON_GetArraySize(runs), 3);
    const cJSON *a = cJSON_GetArrayItem(runs, 0), *b = cJSON_GetArrayItem(runs, 1), *c = cJSON_GetArrayItem(runs, 2);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(c, "run")->valuestring, "c");
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(c, "norm")->valuestring, "sync");
    assert_true(field(a, "ranks") == 1 && field(b, "ranks") == field(c, "ranks") && field(c, "ranks") >= 2);
    assert_true(field(a, "per_rank_batch") == field(c, "per_rank_batch") * field(c, "ranks"));
    printf("(c) vs (a): max rel. loss deviation over 10 steps %.3g; (b) vs (a): %.3g\n",
           field(c, "max_rel_loss_dev_10"), field(b, "max_rel_loss_dev_10"));
    printf("running_mean spread across ranks: (b) %.3g, (c) %.3g\n", field(b, "running_mean_spread"),
           field(c, "running_mean_spread"));
    assert_true(field(c, "max_rel_loss_dev_10") < 1e-4);
    assert_true(field(c, "running_mean_spread") == 0.0);
    assert_true(field(b, "max_rel_loss_dev_10") > 1e-3);
    assert_true(field(b, "running_mean_spread") > 1e-4);
    for (int k = 0; k < 3; k++) {
        const cJSON *r = cJSON_GetArrayItem(runs, k);
        assert_true(field(r, "test_accuracy") > 0.3 && field(r, "test_accuracy") <= 1.0);
        assert_true(field(r, "ms_per_step") > 0.0);
    }
    cJSON_Delete(runs);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_compare_summary SUMMARY.json\n");
        return 2;
    }
    summary_path = argv[1];
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_summary)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
