/* The grid logic of `syncbn study` (tools/study_grid.c): the lists it
 * accepts and refuses, the cells and runs it plans and their order, each
 * run's options, and the keys by which a resumed study recognizes its
 * finished runs. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "study_grid.h"

static void expect_batches(const char *text, int ranks, int count, const int64_t *want)
{
    study_grid g = {0};
    char error[256] = "";
    if (study_parse_batches(text, ranks, &g, error, sizeof error) != 0) fail_msg("'%s' refused: %s", text, error);
    assert_int_equal(g.batch_count, count);
    for (int k = 0; k < count; k++) assert_int_equal(g.batches[k], want[k]);
}

static void expect_refused(int (*parse)(const char *, study_grid *, char *, size_t), const char *text,
                           const char *reason)
{
    study_grid g = {0};
    char error[256] = "";
    if (parse(text, &g, error, sizeof error) == 0) fail_msg("'%s' accepted", text);
    if (!strstr(error, reason)) fail_msg("'%s': the error '%s' lacks '%s'", text, error, reason);
}

static int parse_batches_8(const char *text, study_grid *g, char *error, size_t size)
{
    return study_parse_batches(text, 8, g, error, size);
}

static void test_lists(void **state)
{
    (void)state;
    expect_batches("1,2,4,8,16", 8, 5, (const int64_t[]){1, 2, 4, 8, 16});
    expect_batches("16,1,4", 8, 3, (const int64_t[]){1, 4, 16});
    expect_batches("3", 2, 1, (const int64_t[]){3});
    expect_refused(parse_batches_8, "", "empty");
    expect_refused(parse_batches_8, "0", "out of range");
    expect_refused(parse_batches_8, "-1", "out of range");
    expect_refused(parse_batches_8, "1,,2", "an empty item");
    expect_refused(parse_batches_8, "1,2,", "an empty item");
    expect_refused(parse_batches_8, "1,1", "listed twice");
    expect_refused(parse_batches_8, "a", "not an integer");
    expect_refused(parse_batches_8, "2x", "not an integer");
    expect_refused(parse_batches_8, " 1", "not an integer");
    expect_refused(parse_batches_8, "+1", "not an integer");
    expect_refused(parse_batches_8, "99999999999999999999", "out of range");
    expect_refused(parse_batches_8, "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17", "more than 16");
    expect_refused(parse_batches_8, "268435456", "above the largest global batch"); /* 8 x 2^28 = 2^31 */
    expect_batches("268435455", 8, 1, (const int64_t[]){268435455});

    study_grid g = {0};
    char error[256];
    assert_int_equal(study_parse_stress("5,2", &g, error, sizeof error), 0);
    assert_int_equal(g.stress_count, 2);
    assert_true(g.stress[0] == 2 && g.stress[1] == 5);
    assert_int_equal(study_parse_stress("0.5", &g, error, sizeof error), 0);
    assert_true(g.stress_count == 1 && g.stress[0] == 0.5);
    assert_int_equal(study_parse_stress("none", &g, error, sizeof error), 0);
    assert_int_equal(g.stress_count, 0);
    expect_refused(study_parse_stress, "1", "main grid");
    expect_refused(study_parse_stress, "0", "out of range");
    expect_refused(study_parse_stress, "-2", "out of range");
    expect_refused(study_parse_stress, "inf", "out of range");
    expect_refused(study_parse_stress, "nan", "out of range");
    expect_refused(study_parse_stress, "1e999", "out of range");
    expect_refused(study_parse_stress, "2,2", "listed twice");
    expect_refused(study_parse_stress, "2,", "an empty item");
    expect_refused(study_parse_stress, "x2", "not a number");
}

static study_grid example_grid(void)
{
    study_grid g = {.ranks = 8, .seeds = 2, .first_seed = 7};
    char error[256];
    assert_int_equal(study_parse_batches("4,1,16", 8, &g, error, sizeof error), 0);
    assert_int_equal(study_parse_stress("5,2", &g, error, sizeof error), 0);
    return g;
}

static void test_plan(void **state)
{
    (void)state;
    const study_grid g = example_grid();
    assert_int_equal(study_group_count(&g), 5); /* batches 1, 4, 16; stress x2, x5 at batch 1 */
    assert_int_equal(study_cell_count(&g), 15);
    assert_int_equal(study_run_count(&g), 30);
    study_cell cells[15];
    study_run runs[30];
    study_cells(&g, cells);
    study_runs(&g, runs);
    const int64_t batch_of_group[5] = {1, 4, 16, 1, 1};
    const double factor_of_group[5] = {1, 1, 1, 2, 5};
    for (int c = 0; c < 15; c++) {
        assert_int_equal(cells[c].group, c / 3);
        assert_int_equal(cells[c].per_rank_batch, batch_of_group[c / 3]);
        assert_true(cells[c].lr_factor == factor_of_group[c / 3]);
        assert_int_equal(cells[c].norm, (study_norm)(c % 3));
        assert_int_equal(study_cell_ranks(&g, &cells[c]), cells[c].norm == STUDY_ONE ? 1 : 8);
        assert_int_equal(study_cell_global_batch(&g, &cells[c]), 8 * batch_of_group[c / 3]); /* all three alike */
    }
    /* group by group, seed by seed, norm by norm: each cell once per seed */
    int seen[15][2] = {{0}};
    for (int k = 0; k < 30; k++) {
        assert_int_equal(runs[k].cell, 3 * (k / 6) + k % 3);
        assert_int_equal(runs[k].seed, 7 + (k / 3) % 2);
        seen[runs[k].cell][runs[k].seed - 7]++;
    }
    for (int c = 0; c < 15; c++) assert_true(seen[c][0] == 1 && seen[c][1] == 1);
    /* no stress groups without batches */
    study_grid empty = g;
    empty.batch_count = 0;
    assert_int_equal(study_group_count(&empty), 0);
    assert_int_equal(study_run_count(&empty), 0);
}

static void test_run_options(void **state)
{
    (void)state;
    const study_grid g = example_grid();
    study_cell cells[15];
    study_cells(&g, cells);
    sbn_train_options base = sbn_train_defaults();
    base.epochs = 2, base.train_samples = 1000, base.momentum = 0.8, base.lr = 0.02;
    const sbn_train_options one = study_run_options(&base, &g, &cells[3], 9);  /* batch 4, one process */
    const sbn_train_options sync = study_run_options(&base, &g, &cells[14], 8); /* x5 stress, SyncBN */
    assert_int_equal(one.global_batch, 32);
    assert_true(one.lr == 0.02 && one.seed == 9 && one.norm == SBN_NORM_BN);
    assert_true(one.epochs == 2 && one.train_samples == 1000 && one.momentum == 0.8);
    assert_int_equal(sync.global_batch, 8);
    assert_true(fabs(sync.lr - 0.1) < 1e-15 && sync.seed == 8 && sync.norm == SBN_NORM_SYNC);
    assert_string_equal(study_norm_flag(STUDY_ONE), "bn");
    assert_string_equal(study_norm_flag(STUDY_PLAIN), "bn");
    assert_string_equal(study_norm_flag(STUDY_SYNC), "sync");
    assert_string_equal(study_norm_name(STUDY_PLAIN), "plain");
    assert_string_equal(study_norm_title(STUDY_SYNC), "SyncBN");
}

static void key_of(const sbn_train_options *o, int ranks, study_norm norm, int evals, char key[1024])
{
    const int length = study_run_key(o, ranks, norm, evals, key, 1024);
    assert_true(length > 0 && length < 1024);
}

static void test_keys(void **state)
{
    (void)state;
    const study_grid g = example_grid();
    study_cell cells[15];
    study_run runs[30];
    study_cells(&g, cells);
    study_runs(&g, runs);
    const sbn_train_options base = sbn_train_defaults();
    char keys[30][1024];
    for (int k = 0; k < 30; k++) {
        const study_cell *c = &cells[runs[k].cell];
        const sbn_train_options o = study_run_options(&base, &g, c, runs[k].seed);
        key_of(&o, study_cell_ranks(&g, c), c->norm, 4, keys[k]);
        for (int j = 0; j < k; j++)
            if (!strcmp(keys[j], keys[k])) fail_msg("runs %d and %d share the key %s", j, k, keys[k]);
    }
    /* the same run, planned again (a restarted study): the same key and hash */
    const sbn_train_options o = study_run_options(&base, &g, &cells[runs[4].cell], runs[4].seed);
    char again[1024];
    key_of(&o, 8, STUDY_PLAIN, 4, again);
    assert_string_equal(again, keys[4]);
    assert_true(study_key_hash(again) == study_key_hash(keys[4]));
    /* every setting that changes the run changes the key; the thread count does not */
    char changed[1024];
    sbn_train_options t = o;
    t.threads = 2;
    key_of(&t, 8, STUDY_PLAIN, 4, changed);
    assert_string_equal(changed, keys[4]);
    for (int field = 0; field < 11; field++) {
        t = o;
        int ranks = 8, evals = 4;
        switch (field) {
        case 0: t.epochs = 3; break;
        case 1: t.max_steps = 10; break;
        case 2: t.train_samples = 100; break;
        case 3: t.lr = nextafter(t.lr, 1); break; /* 17 digits: the smallest change counts */
        case 4: t.momentum = 0.5; break;
        case 5: t.weight_decay = 0; break;
        case 6: t.lr_schedule = SBN_LR_CONSTANT; break;
        case 7: t.model = SBN_MODEL_SEED; break;
        case 8: t.data_dir = "/elsewhere"; break;
        case 9: evals = 5; break;
        case 10: ranks = 4; break;
        }
        key_of(&t, ranks, STUDY_PLAIN, evals, changed);
        if (!strcmp(changed, keys[4])) fail_msg("changing setting %d leaves the key %s", field, changed);
    }
    /* FNV-1a 64 */
    assert_true(study_key_hash("") == 14695981039346656037ull);
    assert_true(study_key_hash("a") == 0xaf63dc4c8601ec8cull);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lists),
        cmocka_unit_test(test_plan),
        cmocka_unit_test(test_run_options),
        cmocka_unit_test(test_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
