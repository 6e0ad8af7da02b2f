/* SyncBN under mpiexec: P ranks with slices of one global batch must match
 * plain BN on the whole batch; ranks that disagree must all get an error.
 * bfloat16/float16 activations: each rank's outputs within 1 ulp of the
 * float64 result on the global batch; fuse_relu: bit for bit a separate
 * ReLU; a rank with another element type than its peers (no hang).
 * Run as: mpiexec -n P test_syncbn_mpi GOLDEN.json   (P = 1, 2, 3, 4, 8) */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <syncbn/mpi.h>
#include <unistd.h>

#include "comm/comm_internal.h"

#include "support/support.h"

static sbn_comm *world;
static int rank, ranks;
static const char *golden_path;
static const double TOL = 1e-5;

/* ---------- splitting a global batch ---------- */

/* Samples per rank for a global batch of n, the same on every rank.
 * pattern 0: as even as possible; 1: rank 0 empty, rank 1 one sample (P >= 3);
 * 2: random, some ranks empty. */
static void split_batch(int64_t *counts, int64_t *offsets, int64_t n, int pattern, uint64_t seed)
{
    test_rng rng = {seed};
    int64_t left = n;
    for (int r = 0; r < ranks; r++) {
        int64_t take;
        if (r == ranks - 1) take = left;
        else if (pattern == 0) take = n / ranks + (r < n % ranks);
        else if (pattern == 1 && r == 0 && ranks >= 3) take = 0;
        else if (pattern == 1 && r == 1 && ranks >= 3) take = 1;
        else take = (int64_t)(test_rng_uniform(&rng) * (double)(left + 1) * 0.6);
        if (take > left) take = left;
        counts[r] = take;
        left -= take;
    }
    offsets[0] = 0;
    for (int r = 1; r < ranks; r++) offsets[r] = offsets[r - 1] + counts[r - 1];
}

/* All ranks hold bitwise identical copies of data. */
static bool identical_on_all_ranks(const float *data, int64_t count)
{
    float *root = malloc((size_t)count * sizeof *root + 1);
    memcpy(root, data, (size_t)count * sizeof *root);
    assert_int_equal(sbn_comm_broadcast_float(world, root, count, 0), SBN_OK);
    int64_t same = memcmp(root, data, (size_t)count * sizeof *root) == 0;
    free(root);
    assert_int_equal(sbn_comm_allreduce_sum_int64(world, &same, 1), SBN_OK);
    return same == ranks;
}

typedef struct scenario {
    int64_t n, c, s;
    sbn_layout layout;
    sbn_bn_options options;
    int pattern;
    uint64_t seed;
} scenario;

static float *floats(int64_t count) { return calloc((size_t)(count > 0 ? count : 1), sizeof(float)); }

/* Three steps (train, train, eval), each forward + backward, on fresh data.
 * Returns this rank's number of mismatches. */
static int64_t run_scenario(const scenario *sc)
{
    const int64_t sample = sc->c * sc->s, total = sc->n * sample;
    int64_t counts[64], offsets[64];
    split_batch(counts, offsets, sc->n, sc->pattern, sc->seed);
    const int64_t local_n = counts[rank], offset = offsets[rank] * sample, local = local_n * sample;
    sbn_bn *plain, *synced;
    assert_int_equal(sbn_bn_create(sc->c, &sc->options, NULL, &plain), SBN_OK);
    assert_int_equal(sbn_bn_create(sc->c, &sc->options, world, &synced), SBN_OK);
    if (sc->options.affine)
        for (int64_t k = 0; k < sc->c; k++) {
            sbn_bn_weight(plain)[k] = sbn_bn_weight(synced)[k] = 0.5f + 0.1f * (float)k;
            sbn_bn_bias(plain)[k] = sbn_bn_bias(synced)[k] = 0.3f - 0.05f * (float)k;
        }
    float *x_ncs = floats(total), *dy_ncs = floats(total), *x = floats(total), *dy = floats(total);
    float *y = floats(total), *dx = floats(total), *local_y = floats(local), *local_dx = floats(local);
    test_rng rng = {sc->seed * 7 + 1};
    const sbn_shape global = {sc->n, sc->c, sc->s, sc->layout, SBN_DTYPE_F32}, mine = {local_n, sc->c, sc->s, sc->layout, SBN_DTYPE_F32};
    int64_t bad = 0;
    for (int step = 0; step < 3; step++) {
        const bool training = step < 2;
        test_fill_normal(&rng, x_ncs, total, 2.0 * step + 1.0, 1.5);
        test_fill_normal(&rng, dy_ncs, total, 0.1, 1.0);
        if (sc->layout == SBN_NSC) {
            test_ncs_to_nsc(x, x_ncs, sc->n, sc->c, sc->s);
            test_ncs_to_nsc(dy, dy_ncs, sc->n, sc->c, sc->s);
        } else {
            memcpy(x, x_ncs, (size_t)total * sizeof *x);
            memcpy(dy, dy_ncs, (size_t)total * sizeof *dy);
        }
        sbn_bn_zero_grad(plain);
        sbn_bn_zero_grad(synced);
        /* Eval without running statistics normalizes each rank by its own batch. */
        const bool local_batch_stats = !training && !sc->options.track_running_stats;
        const sbn_shape reference_shape = local_batch_stats ? mine : global;
        const float *reference_x = local_batch_stats ? x + offset : x;
        const float *reference_dy = local_batch_stats ? dy + offset : dy;
        const sbn_status expected = local_batch_stats && local_n * sc->s < 2 ? SBN_ERR_BATCH : SBN_OK;
        sbn_status st = sbn_bn_forward(synced, mine, x + offset, local_y, training);
        assert_int_equal(st, expected);
        if (st != SBN_OK) continue;
        assert_int_equal(sbn_bn_backward(synced, mine, x + offset, dy + offset, local_dx), SBN_OK);
        assert_int_equal(sbn_bn_forward(plain, reference_shape, reference_x, y, training), SBN_OK);
        assert_int_equal(sbn_bn_backward(plain, reference_shape, reference_x, reference_dy, dx), SBN_OK);
        const int64_t at = local_batch_stats ? 0 : offset;
        bad += test_count_mismatches_float("y", local_y, y + at, local, TOL, TOL);
        bad += test_count_mismatches_float("dx", local_dx, dx + at, local, TOL, TOL);
        if (sc->options.track_running_stats) {
            bad += test_count_mismatches_float("running_mean", sbn_bn_running_mean(synced), sbn_bn_running_mean(plain),
                                               sc->c, TOL, TOL);
            bad += test_count_mismatches_float("running_var", sbn_bn_running_var(synced), sbn_bn_running_var(plain),
                                               sc->c, TOL, TOL);
            bad += !identical_on_all_ranks(sbn_bn_running_mean(synced), sc->c);
            bad += !identical_on_all_ranks(sbn_bn_running_var(synced), sc->c);
            assert_int_equal(sbn_bn_num_batches_tracked(synced), sbn_bn_num_batches_tracked(plain));
        }
        if (sc->options.affine && !local_batch_stats) {
            /* Local grads: their sum over ranks is plain BN's grad on the whole batch. */
            double sums[2 * 64];
            for (int64_t k = 0; k < sc->c; k++)
                sums[k] = sbn_bn_grad_weight(synced)[k], sums[sc->c + k] = sbn_bn_grad_bias(synced)[k];
            assert_int_equal(sbn_comm_allreduce_sum_double(world, sums, 2 * sc->c), SBN_OK);
            for (int64_t k = 0; k < sc->c; k++) {
                const double scale = 1.0 + (double)sc->n * (double)sc->s;
                bad += fabs(sums[k] - sbn_bn_grad_weight(plain)[k]) > TOL * scale;
                bad += fabs(sums[sc->c + k] - sbn_bn_grad_bias(plain)[k]) > TOL * scale;
            }
        }
    }
    free(x_ncs), free(dy_ncs), free(x), free(dy), free(y), free(dx), free(local_y), free(local_dx);
    sbn_bn_destroy(plain);
    sbn_bn_destroy(synced);
    return bad;
}

static void test_equivalence_sweep(void **state)
{
    (void)state;
    static const int64_t shapes[][3] = {{12, 5, 1}, {9, 3, 7}, {10, 4, 6 * 5}, {6, 3, 2 * 3 * 4}, {2 * 8, 2, 9}};
    sbn_bn_options modes[3] = {sbn_bn_defaults(), sbn_bn_defaults(), sbn_bn_defaults()};
    modes[1].affine = false, modes[1].cumulative = true;
    modes[2].track_running_stats = false, modes[2].momentum = 0.25;
    int64_t bad = 0, runs = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        for (int layout = SBN_NCS; layout <= SBN_NSC; layout++)
            for (int mode = 0; mode < 3; mode++)
                for (int pattern = 0; pattern < 3; pattern++) {
                    scenario sc = {shapes[i][0], shapes[i][1], shapes[i][2], layout, modes[mode], pattern,
                                   1000 + 17 * i + 5 * (uint64_t)mode + (uint64_t)pattern};
                    const int64_t scenario_bad = run_scenario(&sc);
                    if (scenario_bad)
                        fprintf(stderr, "rank %d: shape %zu layout %d mode %d pattern %d: %lld mismatches\n", rank, i,
                                layout, mode, pattern, (long long)scenario_bad);
                    bad += scenario_bad;
                    runs++;
                }
    assert_int_equal(runs, 90);
    assert_int_equal(bad, 0);
}

/* PyTorch's goldens for the whole batch, each rank holding a slice. */
static void test_golden_split_across_ranks(void **state)
{
    (void)state;
    golden_case *cases;
    const int count = golden_load(golden_path, &cases);
    assert_true(count > 0);
    int64_t bad = 0;
    for (int i = 0; i < count; i++) {
        const golden_case *g = &cases[i];
        if (!g->options.track_running_stats) continue; /* untracked eval is local: not the global batch */
        int64_t counts[64], offsets[64];
        split_batch(counts, offsets, g->n, i % 3, (uint64_t)i);
        const int64_t sample = g->c * g->s, offset = offsets[rank] * sample, local = counts[rank] * sample;
        const sbn_shape mine = {counts[rank], g->c, g->s, SBN_NCS, SBN_DTYPE_F32};
        sbn_bn *bn;
        assert_int_equal(sbn_bn_create(g->c, &g->options, world, &bn), SBN_OK);
        if (g->options.affine) {
            memcpy(sbn_bn_weight(bn), g->weight, (size_t)g->c * sizeof(float));
            memcpy(sbn_bn_bias(bn), g->bias, (size_t)g->c * sizeof(float));
        }
        float *y = floats(local), *dx = floats(local);
        for (int k = 0; k < g->step_count; k++) {
            const golden_step *s = &g->steps[k];
            sbn_bn_zero_grad(bn);
            assert_int_equal(sbn_bn_forward(bn, mine, s->x + offset, y, s->training), SBN_OK);
            assert_int_equal(sbn_bn_backward(bn, mine, s->x + offset, s->dy + offset, dx), SBN_OK);
            bad += test_count_mismatches(g->name, y, s->y + offset, local, 2e-6, 2e-6);
            bad += test_count_mismatches(g->name, dx, s->dx + offset, local, 2e-6, 2e-6);
            bad += test_count_mismatches("running_mean", sbn_bn_running_mean(bn), s->running_mean, g->c, 2e-6, 2e-6);
            bad += test_count_mismatches("running_var", sbn_bn_running_var(bn), s->running_var, g->c, 2e-6, 2e-6);
        }
        free(y), free(dx);
        sbn_bn_destroy(bn);
    }
    golden_free(cases, count);
    assert_int_equal(bad, 0);
}

/* Exactly one collective per training forward and one per backward; none in eval. */
static void test_one_collective_per_pass(void **state)
{
    (void)state;
    sbn_bn *bn;
    assert_int_equal(sbn_bn_create(6, NULL, world, &bn), SBN_OK);
    float x[4 * 6 * 3], y[4 * 6 * 3];
    test_rng rng = {99};
    test_fill_normal(&rng, x, 4 * 6 * 3, 0, 1);
    const sbn_shape shape = {4, 6, 3, SBN_NCS, SBN_DTYPE_F32};
    sbn_comm_counters before = sbn_comm_get_counters(world);
    assert_int_equal(sbn_bn_forward(bn, shape, x, y, true), SBN_OK);
    sbn_comm_counters after_forward = sbn_comm_get_counters(world);
    assert_int_equal(sbn_bn_backward(bn, shape, x, x, y), SBN_OK);
    sbn_comm_counters after_backward = sbn_comm_get_counters(world);
    assert_int_equal(sbn_bn_forward(bn, shape, x, y, false), SBN_OK);
    assert_int_equal(sbn_bn_backward(bn, shape, x, x, y), SBN_OK);
    sbn_comm_counters after_eval = sbn_comm_get_counters(world);
    assert_int_equal(after_forward.collectives - before.collectives, 1);
    assert_int_equal(after_backward.collectives - after_forward.collectives, 1);
    assert_int_equal(after_eval.collectives, after_backward.collectives);
    /* O(C) payload: (header + C) elements of 3 doubles. */
    assert_true(after_forward.bytes - before.bytes <= (16 + 6) * 3 * 8);
    sbn_bn_destroy(bn);
}

/* Groups of 2: each group normalizes over its own ranks only. */
static void test_groups(void **state)
{
    (void)state;
    if (ranks % 2) skip();
    sbn_comm *group;
    assert_int_equal(sbn_comm_split_groups(world, 2, &group), SBN_OK);
    assert_int_equal(sbn_comm_size(group), 2);
    assert_int_equal(sbn_comm_rank(group), rank % 2);
    const int64_t n_per_rank = 3, c = 4, s = 5, local = n_per_rank * c * s;
    /* The group's batch: both halves generated from the group's seed. */
    float *batch = floats(2 * local), *y_plain = floats(2 * local), y[3 * 4 * 5];
    test_rng rng = {500 + (uint64_t)(rank / 2)};
    test_fill_normal(&rng, batch, 2 * local, rank / 2, 1.0 + rank / 2);
    sbn_bn *synced, *plain;
    assert_int_equal(sbn_bn_create(c, NULL, group, &synced), SBN_OK);
    assert_int_equal(sbn_bn_create(c, NULL, NULL, &plain), SBN_OK);
    assert_int_equal(sbn_bn_forward(synced, (sbn_shape){n_per_rank, c, s, SBN_NCS, SBN_DTYPE_F32}, batch + (rank % 2) * local, y, true),
                     SBN_OK);
    assert_int_equal(sbn_bn_forward(plain, (sbn_shape){2 * n_per_rank, c, s, SBN_NCS, SBN_DTYPE_F32}, batch, y_plain, true), SBN_OK);
    assert_int_equal(test_count_mismatches_float("group y", y, y_plain + (rank % 2) * local, local, TOL, TOL), 0);
    assert_int_equal(test_count_mismatches_float("group running_mean", sbn_bn_running_mean(synced),
                                                 sbn_bn_running_mean(plain), c, TOL, TOL), 0);
    sbn_comm *bad = (sbn_comm *)&rng;
    assert_int_equal(sbn_comm_split_groups(world, ranks + 1, &bad), SBN_ERR_ARG);
    assert_null(bad);
    assert_int_equal(sbn_comm_split_groups(world, 0, &bad), SBN_ERR_ARG);
    sbn_bn_destroy(synced);
    sbn_bn_destroy(plain);
    sbn_comm_destroy(group);
    free(batch), free(y_plain);
}

typedef struct layer_state { float running_mean[8], running_var[8]; int64_t tracked; } layer_state;

static layer_state state_of(sbn_bn *bn)
{
    layer_state s;
    memcpy(s.running_mean, sbn_bn_running_mean(bn), (size_t)sbn_bn_channels(bn) * sizeof(float));
    memcpy(s.running_var, sbn_bn_running_var(bn), (size_t)sbn_bn_channels(bn) * sizeof(float));
    s.tracked = sbn_bn_num_batches_tracked(bn);
    return s;
}

static void assert_state_equal(sbn_bn *bn, const layer_state *before)
{
    layer_state now = state_of(bn);
    const size_t bytes = (size_t)sbn_bn_channels(bn) * sizeof(float);
    assert_memory_equal(now.running_mean, before->running_mean, bytes);
    assert_memory_equal(now.running_var, before->running_var, bytes);
    assert_int_equal(now.tracked, before->tracked);
}

static void assert_status_with(sbn_status got, sbn_status want, const char *message_part)
{
    if (got != want || !strstr(sbn_errmsg(), message_part))
        fprintf(stderr, "rank %d: got %s (%s), want %s with \"%s\"\n", rank, sbn_status_str(got), sbn_errmsg(),
                sbn_status_str(want), message_part);
    assert_int_equal(got, want);
    assert_non_null(strstr(sbn_errmsg(), message_part));
}

/* Global count < 2: SBN_ERR_BATCH everywhere, nothing changed. */
static void test_global_count_below_two(void **state)
{
    (void)state;
    sbn_bn *bn;
    assert_int_equal(sbn_bn_create(3, NULL, world, &bn), SBN_OK);
    float x[3] = {1, 2, 3}, y[3];
    layer_state before = state_of(bn);
    const sbn_shape shape = {rank == ranks - 1 ? 1 : 0, 3, 1, SBN_NCS, SBN_DTYPE_F32};
    assert_status_with(sbn_bn_forward(bn, shape, x, y, true), SBN_ERR_BATCH, "over all ranks");
    assert_state_equal(bn, &before);
    /* and a rank with 1 sample is fine when the global count is >= 2 */
    if (ranks >= 2) {
        const sbn_shape one = {1, 3, 1, SBN_NCS, SBN_DTYPE_F32};
        assert_int_equal(sbn_bn_forward(bn, one, x, y, true), SBN_OK);
        assert_int_equal(sbn_bn_num_batches_tracked(bn), 1);
    }
    sbn_bn_destroy(bn);
}

/* The disagreement tests check every rank's whole message, not a part of
 * it. Each runs on a fresh communicator, so its layers have ids 0, 1, ... */
static void assert_status_message(sbn_status got, sbn_status want, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
static void assert_status_message(sbn_status got, sbn_status want, const char *format, ...)
{
    char expected[1024];
    va_list args;
    va_start(args, format);
    vsnprintf(expected, sizeof expected, format, args);
    va_end(args);
    if (got != want || strcmp(sbn_errmsg(), expected) != 0)
        fprintf(stderr, "rank %d: got %s \"%s\"\n        want %s \"%s\"\n", rank, sbn_status_str(got), sbn_errmsg(),
                sbn_status_str(want), expected);
    assert_int_equal(got, want);
    assert_string_equal(sbn_errmsg(), expected);
}

static sbn_comm *fresh_comm(void)
{
    sbn_comm *comm;
    assert_int_equal(sbn_comm_create_mpi(MPI_COMM_WORLD, &comm), SBN_OK);
    assert_int_equal(sbn_comm_set_timeout(comm, 60.0), SBN_OK);
    return comm;
}

/* A layer with a forward and backward done, for the disagreement tests. */
static void make_layer(sbn_bn **bn, sbn_comm *comm, int64_t channels, float *x, float *y)
{
    assert_int_equal(sbn_bn_create(channels, NULL, comm, bn), SBN_OK);
    for (int64_t i = 0; i < 4 * channels; i++) x[i] = (float)(i % 7) - 2.0f * (float)rank;
    assert_int_equal(sbn_bn_forward(*bn, (sbn_shape){4, channels, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, true), SBN_OK);
    assert_int_equal(sbn_bn_backward(*bn, (sbn_shape){4, channels, 1, SBN_NCS, SBN_DTYPE_F32}, x, x, y), SBN_OK);
}

static void test_mismatch_channels(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    sbn_comm *comm = fresh_comm();
    const int64_t channels = rank == 1 ? 5 : 4;
    sbn_bn *bn;
    float x[4 * 5], y[4 * 5];
    assert_int_equal(sbn_bn_create(channels, NULL, comm, &bn), SBN_OK);
    layer_state before = state_of(bn);
    for (int i = 0; i < 20; i++) x[i] = (float)i;
    /* Rank 0 receives rank 1's message first: 11 header + 5 channel
     * elements where it expected 11 + 4. */
    assert_status_message(sbn_bn_forward(bn, (sbn_shape){4, channels, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, true), SBN_ERR_MISMATCH,
                          "SyncBN layer 0 (%d channels) forward: ranks disagree on the channel count or the layer "
                          "order (a message of 11 + channels elements was expected): ranks passed different counts "
                          "to the same collective: rank 0 expected 15 elements from a peer and received 16",
                          (int)channels);
    assert_state_equal(bn, &before);
    sbn_bn_destroy(bn);
    sbn_comm_destroy(comm);
}

static void test_mismatch_forward_vs_backward(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    sbn_comm *comm = fresh_comm();
    sbn_bn *bn;
    float x[16], y[16];
    make_layer(&bn, comm, 4, x, y);
    layer_state before = state_of(bn);
    const sbn_shape shape = {4, 4, 1, SBN_NCS, SBN_DTYPE_F32};
    sbn_status st = rank == 0 ? sbn_bn_backward(bn, shape, x, x, y) : sbn_bn_forward(bn, shape, x, y, true);
    const char *pass = rank == 0 ? "backward" : "forward";
    assert_status_message(st, SBN_ERR_MISMATCH,
                          "SyncBN layer 0 (4 channels) %s: ranks disagree on the pass (one rank in forward, another "
                          "in backward; this rank in %s)",
                          pass, pass);
    assert_state_equal(bn, &before);
    sbn_bn_destroy(bn);
    sbn_comm_destroy(comm);
}

static void test_mismatch_layer_order(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    sbn_comm *comm = fresh_comm();
    sbn_bn *first, *second;
    float x[16], y[16];
    make_layer(&first, comm, 4, x, y);
    make_layer(&second, comm, 4, x, y);
    layer_state before = state_of(first);
    sbn_bn *mine = rank == 0 ? second : first;
    const int id = rank == 0 ? 1 : 0;
    assert_status_message(sbn_bn_forward(mine, (sbn_shape){4, 4, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, true), SBN_ERR_MISMATCH,
                          "SyncBN layer %d (4 channels) forward: ranks disagree on the layer (layers called in a "
                          "different order on different ranks; this rank is in layer %d)",
                          id, id);
    assert_state_equal(first, &before);
    sbn_bn_destroy(first);
    sbn_bn_destroy(second);
    sbn_comm_destroy(comm);
}

/* Rank 1's options differ from the others' in one field; every rank is told
 * which, with its own value. */
static void expect_options_mismatch(sbn_bn_options mine, const char *field_message)
{
    sbn_comm *comm = fresh_comm();
    sbn_bn *bn;
    float x[16], y[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i;
    assert_int_equal(sbn_bn_create(4, &mine, comm, &bn), SBN_OK);
    assert_status_message(sbn_bn_forward(bn, (sbn_shape){4, 4, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, true), SBN_ERR_MISMATCH,
                          "SyncBN layer 0 (4 channels) forward: ranks disagree on %s", field_message);
    assert_int_equal(sbn_bn_num_batches_tracked(bn), 0);
    sbn_bn_destroy(bn);
    sbn_comm_destroy(comm);
}

static void test_mismatch_options(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    char text[256];
    sbn_bn_options options = sbn_bn_defaults();
    if (rank == 1) options.momentum = 0.2;
    snprintf(text, sizeof text, "the option momentum (this rank: %.17g)", options.momentum);
    expect_options_mismatch(options, text);
    /* Values whose 20-bit hashes collided in the first release: compared
     * exactly now. */
    options = sbn_bn_defaults();
    if (rank == 1) options.eps = 1.0688051000000001e-05;
    snprintf(text, sizeof text, "the option eps (this rank: %.17g)", options.eps);
    expect_options_mismatch(options, text);
    options = sbn_bn_defaults();
    options.momentum = rank == 1 ? 0.10151955 : 0.100971418;
    snprintf(text, sizeof text, "the option momentum (this rank: %.17g)", options.momentum);
    expect_options_mismatch(options, text);
    /* The next representable eps. */
    options = sbn_bn_defaults();
    if (rank == 1) options.eps = nextafter(options.eps, 1.0);
    snprintf(text, sizeof text, "the option eps (this rank: %.17g)", options.eps);
    expect_options_mismatch(options, text);
    options = sbn_bn_defaults();
    options.affine = rank != 1;
    snprintf(text, sizeof text,
             "the options affine, track_running_stats, cumulative or fuse_relu (this rank: affine=%d, "
             "track_running_stats=1, cumulative=0, fuse_relu=0)",
             rank != 1);
    expect_options_mismatch(options, text);
    /* A rank that masks dy by a fused ReLU and one that does not would merge
     * sums of different things: refused. */
    options = sbn_bn_defaults();
    options.fuse_relu = rank == 1;
    snprintf(text, sizeof text,
             "the options affine, track_running_stats, cumulative or fuse_relu (this rank: affine=1, "
             "track_running_stats=1, cumulative=0, fuse_relu=%d)",
             rank == 1);
    expect_options_mismatch(options, text);
    /* With the cumulative average momentum is unused: ranks may differ. */
    sbn_comm *comm = fresh_comm();
    options = sbn_bn_defaults();
    options.cumulative = true;
    options.momentum = rank == 1 ? 0.5 : 0.1;
    sbn_bn *bn;
    float x[16], y[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i;
    assert_int_equal(sbn_bn_create(4, &options, comm, &bn), SBN_OK);
    assert_int_equal(sbn_bn_forward(bn, (sbn_shape){4, 4, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, true), SBN_OK);
    sbn_bn_destroy(bn);
    sbn_comm_destroy(comm);
}

/* Rank 1 runs a training step in eval mode, then trains on: its next
 * training forward meets the others' and everyone is told. */
static void test_mismatch_eval_step(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    sbn_comm *comm = fresh_comm();
    sbn_bn *bn;
    float x[16], y[16];
    make_layer(&bn, comm, 4, x, y);
    const sbn_shape shape = {4, 4, 1, SBN_NCS, SBN_DTYPE_F32};
    if (rank == 1) {
        assert_int_equal(sbn_bn_forward(bn, shape, x, y, false), SBN_OK);
        assert_int_equal(sbn_bn_backward(bn, shape, x, x, y), SBN_OK);
    }
    layer_state before = state_of(bn);
    assert_status_message(sbn_bn_forward(bn, shape, x, y, true), SBN_ERR_MISMATCH,
                          "SyncBN layer 0 (4 channels) forward: ranks disagree on the mode (a rank ran a training "
                          "step in eval mode while others trained; this rank made %d such backward calls)",
                          rank == 1 ? 1 : 0);
    assert_state_equal(bn, &before);
    /* Evaluating different numbers of batches is fine. */
    for (int k = 0; k < rank; k++) assert_int_equal(sbn_bn_forward(bn, shape, x, y, false), SBN_OK);
    assert_int_equal(sbn_bn_forward(bn, shape, x, y, true), SBN_OK);
    sbn_bn_destroy(bn);
    sbn_comm_destroy(comm);
}

/* A rank that never arrives: the others give SBN_ERR_COMM after the
 * timeout, with a message naming the layer, the pass and the collective,
 * and the communicator is broken from then on, with the reason. */
static void test_timeout_when_a_peer_skips(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    sbn_comm *comm;
    assert_int_equal(sbn_comm_create_mpi(MPI_COMM_WORLD, &comm), SBN_OK);
    assert_int_equal(sbn_comm_set_timeout(comm, 2.0), SBN_OK);
    sbn_bn *bn;
    float x[16], y[16];
    for (int i = 0; i < 16; i++) x[i] = (float)i;
    assert_int_equal(sbn_bn_create(4, NULL, comm, &bn), SBN_OK);
    if (rank != ranks - 1) {
        const double start = MPI_Wtime();
        assert_status_with(sbn_bn_forward(bn, (sbn_shape){4, 4, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, true), SBN_ERR_COMM,
                           "SyncBN layer 0 (4 channels) forward: rank ");
        assert_true(MPI_Wtime() - start < 30.0);
        assert_non_null(strstr(sbn_errmsg(), "did not complete within the 2 s timeout"));
        assert_non_null(strstr(sbn_errmsg(), "some rank did not reach this collective or stopped responding"));
        assert_int_equal(sbn_bn_num_batches_tracked(bn), 0);
        char reason[1024];
        snprintf(reason, sizeof reason, "%s", strstr(sbn_errmsg(), "rank "));
        /* broken from now on, at once, with the reason */
        assert_status_with(sbn_bn_forward(bn, (sbn_shape){4, 4, 1, SBN_NCS, SBN_DTYPE_F32}, x, y, true), SBN_ERR_COMM,
                           "communicator is broken by an earlier failed collective (");
        assert_non_null(strstr(sbn_errmsg(), reason));
    }
    sbn_bn_destroy(bn);
    MPI_Barrier(MPI_COMM_WORLD);
    sbn_comm_destroy(comm);
}

/* The timeout is one deadline for the whole collective, not one per
 * message: rank 1 arrives late (0.6 T) and rank 2 never; rank 0, which
 * waits for both in turn, gives up at T, not at 1.6 T. */
static void test_timeout_is_a_deadline_for_the_collective(void **state)
{
    (void)state;
    if (ranks < 3) skip();
    const double timeout = 2.0;
    sbn_comm *comm = fresh_comm();
    assert_int_equal(sbn_comm_set_timeout(comm, timeout), SBN_OK);
    double data[4] = {1, 2, 3, 4};
    if (rank == 1) usleep((useconds_t)(0.6 * timeout * 1e6));
    if (rank != 2) {
        const double start = MPI_Wtime();
        assert_status_with(sbn_comm_allreduce_sum_double(comm, data, 4), SBN_ERR_COMM, "timeout");
        const double waited = MPI_Wtime() - start;
        if (rank == 0) {
            if (waited > 1.3 * timeout) fprintf(stderr, "rank 0 waited %.2f s with a %.1f s timeout\n", waited, timeout);
            assert_true(waited <= 1.3 * timeout);
        }
    }
    MPI_Barrier(MPI_COMM_WORLD);
    sbn_comm_destroy(comm);
}

/* A broadcast whose counts differ: the rank that sees the wrong size is
 * somewhere down the tree, yet every rank is told, and the communicator
 * stays usable (every rank completed the collective). */
static void test_broadcast_mismatch_tells_every_rank(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    sbn_comm *comm = fresh_comm();
    float data[5] = {1, 2, 3, 4, 5};
    const int64_t count = rank == ranks - 1 ? 5 : 4;
    assert_status_with(sbn_comm_broadcast_float(comm, data, count, 0), SBN_ERR_MISMATCH,
                       "ranks passed different counts to the same collective");
    assert_int_equal(sbn_comm_broadcast_float(comm, data, 4, 0), SBN_OK);
    /* A byte count that overflows is refused before any traffic. */
    assert_status_with(sbn_comm_broadcast_float(comm, data, (int64_t)1 << 62, 0), SBN_ERR_ARG, "overflow");
    MPI_Barrier(MPI_COMM_WORLD);
    sbn_comm_destroy(comm);
}

/* A payload over INT_MAX bytes cannot be one MPI message: refused before
 * any traffic, and the communicator is broken (peers may not have refused). */
static void test_payload_over_int_max(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    sbn_comm *comm = fresh_comm();
    double dummy[1] = {0};
    const int64_t count = (int64_t)INT32_MAX / 8 + 1; /* never read: refused first */
    assert_status_with(sbn_comm_allreduce_sum_double(comm, dummy, count), SBN_ERR_ARG, "exceeds MPI's limit");
    assert_status_with(sbn_comm_allreduce_sum_double(comm, dummy, 1), SBN_ERR_COMM, "exceeds MPI's limit");
    MPI_Barrier(MPI_COMM_WORLD);
    sbn_comm_destroy(comm);
}

/* Fault injection, on every rank in turn: the faulty rank fails with its
 * own error; every other rank either completes with the right result or
 * times out; every rank that failed has a broken communicator that refuses
 * the next collective at once, naming the first failure. */
static void test_failures_inside_a_collective(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    static const struct {
        sbn_comm_fault fault;
        sbn_status status;
        const char *message;
    } faults[] = {
        {SBN_FAULT_NOMEM_AFTER_MATCH, SBN_ERR_NOMEM, "no memory for a "},
        {SBN_FAULT_MPI_ERROR, SBN_ERR_COMM, "injected MPI error"},
        {SBN_FAULT_SEND_TIMEOUT, SBN_ERR_COMM, "did not complete within"},
    };
    for (size_t k = 0; k < sizeof faults / sizeof faults[0]; k++)
        for (int faulty = 0; faulty < ranks; faulty++) {
            sbn_comm *comm = fresh_comm();
            assert_int_equal(sbn_comm_set_timeout(comm, 1.0), SBN_OK);
            if (rank == faulty) sbn_comm_inject_fault(comm, faults[k].fault, 1);
            double data[4];
            for (int i = 0; i < 4; i++) data[i] = rank + i;
            const sbn_status st = sbn_comm_allreduce_sum_double(comm, data, 4);
            if (rank == faulty) {
                assert_status_with(st, faults[k].status, faults[k].message);
            } else if (st == SBN_OK) {
                for (int i = 0; i < 4; i++) assert_true(data[i] == ranks * (ranks - 1) / 2.0 + ranks * i);
            } else {
                assert_status_with(st, SBN_ERR_COMM, "did not complete within the 1 s timeout");
            }
            if (st != SBN_OK) {
                char reason[256];
                snprintf(reason, sizeof reason, "%.200s", sbn_errmsg());
                assert_status_with(sbn_comm_allreduce_sum_double(comm, data, 4), SBN_ERR_COMM,
                                   "communicator is broken by an earlier failed collective (");
                assert_non_null(strstr(sbn_errmsg(), reason));
            }
            MPI_Barrier(MPI_COMM_WORLD);
            sbn_comm_destroy(comm);
        }
}

/* ---------- 16-bit activations (shape.dtype) and the fused ReLU ---------- */

static size_t element_bytes(sbn_dtype type) { return type == SBN_DTYPE_F32 ? sizeof(float) : sizeof(uint16_t); }

static void *activations(int64_t count, sbn_dtype type)
{
    return calloc((size_t)(count > 0 ? count : 1), element_bytes(type));
}

static const char *layout_name(sbn_layout layout) { return layout == SBN_NCS ? "NCS" : "NSC"; }

/* The exact value of element i, decoded here rather than by the library. */
static double widen(sbn_dtype type, const void *base, int64_t i)
{
    if (type == SBN_DTYPE_F32) return ((const float *)base)[i];
    const uint16_t bits = ((const uint16_t *)base)[i];
    if (type == SBN_DTYPE_BF16) {
        const uint32_t wide = (uint32_t)bits << 16;
        float f;
        memcpy(&f, &wide, sizeof f);
        return f;
    }
    const int exponent = bits >> 10 & 0x1f, mantissa = bits & 0x3ff;
    double v;
    if (exponent == 0x1f) v = mantissa ? NAN : INFINITY;
    else if (exponent == 0) v = ldexp(mantissa, -24);
    else v = ldexp(0x400 + mantissa, exponent - 25);
    return bits & 0x8000 ? -v : v;
}

/* The spacing of the 16-bit type at |v| (subnormals included). */
static double ulp16(sbn_dtype type, double v)
{
    int e = -100000;
    if (v != 0.0) {
        (void)frexp(fabs(v), &e);
        e -= 1;
    }
    if (type == SBN_DTYPE_F16) return ldexp(1.0, (e < -14 ? -14 : e) - 10);
    return ldexp(1.0, (e < -126 ? -126 : e) - 7);
}

/* Offset of element (i, c, j) of an (n, C, S) tensor in `layout`. */
static int64_t element_at(sbn_layout layout, int64_t C, int64_t S, int64_t i, int64_t c, int64_t j)
{
    return layout == SBN_NCS ? (i * C + c) * S + j : (i * S + j) * C + c;
}

/* NCS floats -> `type` elements in `layout` (16-bit: rounded by sbn_convert_from_float). */
static void to_activations(void *out, sbn_dtype type, sbn_layout layout, const float *ncs, int64_t n, int64_t C,
                           int64_t S)
{
    const int64_t count = n * C * S;
    float *ordered = floats(count);
    if (layout == SBN_NSC) test_ncs_to_nsc(ordered, ncs, n, C, S);
    else memcpy(ordered, ncs, (size_t)count * sizeof *ordered);
    if (type == SBN_DTYPE_F32) memcpy(out, ordered, (size_t)count * sizeof *ordered);
    else assert_int_equal(sbn_convert_from_float(out, type, ordered, count), SBN_OK);
    free(ordered);
}

/* `type` elements in `layout` -> their exact values as NCS floats. */
static void widened_ncs(float *ncs, const void *in, sbn_dtype type, sbn_layout layout, int64_t n, int64_t C, int64_t S)
{
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < S; j++) ncs[(i * C + c) * S + j] = (float)widen(type, in, element_at(layout, C, S, i, c, j));
}

/* For each reference output (NCS) the magnitude of the terms it combines
 * (the float64 value's own uncertainty scales with it), and per channel
 * sum|dy*xhat| and sum|dy| over the batch (the scale of grad_weight and
 * grad_bias). Call after reference_bn_forward/backward on the same data. */
static void reference_terms(const reference_bn *ref, int64_t n, int64_t S, const float *x, const float *dy,
                            double *terms_y, double *terms_dx, double *abs_dy_xhat, double *abs_dy)
{
    const int64_t C = ref->channels;
    const double count = (double)(n * S);
    for (int64_t c = 0; c < C; c++) {
        const double mean = ref->mean[c], invstd = ref->invstd[c], gain = fabs(ref->weight[c] * invstd);
        double sum_dy = 0, sum_dy_xhat = 0, adx = 0, ad = 0;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < S; j++) {
                const int64_t at = (i * C + c) * S + j;
                const double xhat = (x[at] - mean) * invstd;
                sum_dy += dy[at], sum_dy_xhat += dy[at] * xhat;
                ad += fabs(dy[at]), adx += fabs(dy[at] * xhat);
            }
        abs_dy_xhat[c] = adx, abs_dy[c] = ad;
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < S; j++) {
                const int64_t at = (i * C + c) * S + j;
                terms_y[at] = (fabs(x[at]) + fabs(mean)) * gain + fabs(ref->bias[c]);
                terms_dx[at] = ref->used_batch_stats
                                   ? gain * (fabs(dy[at]) + (fabs(sum_dy) + ad) / count +
                                             (fabs(x[at]) + fabs(mean)) * invstd * (fabs(sum_dy_xhat) + adx) / count)
                                   : gain * fabs(dy[at]);
            }
    }
}

/* This rank's outputs (local_n samples in `layout`, sample first_sample of
 * the global batch onwards) against the float64 reference of the global
 * batch (NCS): 16-bit within 1 ulp of the type at the reference value (plus
 * 1e-12 of the terms, the reference's own uncertainty); float32 within TOL. */
static int64_t count_output_mismatches(const char *label, sbn_dtype type, sbn_layout layout, const void *got,
                                       int64_t local_n, int64_t first_sample, int64_t C, int64_t S, const double *want,
                                       const double *terms)
{
    int64_t bad = 0;
    for (int64_t i = 0; i < local_n; i++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t j = 0; j < S; j++) {
                const double g = widen(type, got, element_at(layout, C, S, i, c, j));
                const int64_t at = ((first_sample + i) * C + c) * S + j;
                const double w = want[at];
                const double allowed =
                    type == SBN_DTYPE_F32 ? TOL * (1.0 + fabs(w)) : ulp16(type, w) + 1e-12 * terms[at];
                const bool ok = isnan(w) ? isnan(g) : isfinite(g) && fabs(g - w) <= allowed;
                if (!ok && bad++ < 4)
                    fprintf(stderr,
                            "rank %d: %s %s %s (sample %lld, channel %lld, s %lld): got %.10g, want %.10g, "
                            "allowed %.3g\n",
                            rank, label, sbn_dtype_name(type), layout_name(layout), (long long)(first_sample + i),
                            (long long)c, (long long)j, g, w, allowed);
            }
    return bad;
}

/* The sum over ranks of the layer's (local) grads against the reference's
 * full-batch grads, within 1e-5 of the magnitude of the terms summed. */
static int64_t count_grad_mismatches(sbn_bn *bn, const reference_bn *ref, const double *abs_dy_xhat,
                                     const double *abs_dy)
{
    const int64_t C = ref->channels;
    double *sums = calloc(2 * (size_t)C, sizeof *sums);
    for (int64_t c = 0; c < C; c++) sums[c] = sbn_bn_grad_weight(bn)[c], sums[C + c] = sbn_bn_grad_bias(bn)[c];
    assert_int_equal(sbn_comm_allreduce_sum_double(world, sums, 2 * C), SBN_OK);
    int64_t bad = 0;
    for (int64_t c = 0; c < C; c++) {
        const double allowed_weight = 1e-5 * (abs_dy_xhat[c] + 1e-3), allowed_bias = 1e-5 * (abs_dy[c] + 1e-3);
        if (fabs(sums[c] - ref->grad_weight[c]) > allowed_weight) {
            fprintf(stderr, "rank %d: grad_weight[%lld] summed over ranks %.10g, want %.10g (allowed %.3g)\n", rank,
                    (long long)c, sums[c], ref->grad_weight[c], allowed_weight);
            bad++;
        }
        if (fabs(sums[C + c] - ref->grad_bias[c]) > allowed_bias) {
            fprintf(stderr, "rank %d: grad_bias[%lld] summed over ranks %.10g, want %.10g (allowed %.3g)\n", rank,
                    (long long)c, sums[C + c], ref->grad_bias[c], allowed_bias);
            bad++;
        }
    }
    free(sums);
    return bad;
}

/* Running statistics: bitwise the same on every rank (one broadcast and one
 * sum for both), and within ~1e-6 of the float64 reference's. */
static int64_t count_running_mismatches(sbn_bn *bn, const reference_bn *ref)
{
    const int64_t C = ref->channels;
    float *both = floats(2 * C);
    memcpy(both, sbn_bn_running_mean(bn), (size_t)C * sizeof *both);
    memcpy(both + C, sbn_bn_running_var(bn), (size_t)C * sizeof *both);
    int64_t bad = !identical_on_all_ranks(both, 2 * C);
    if (bad) fprintf(stderr, "rank %d: running statistics differ between ranks\n", rank);
    free(both);
    bad += test_count_mismatches("running_mean", sbn_bn_running_mean(bn), ref->running_mean, C, 1e-7, 1e-6);
    bad += test_count_mismatches("running_var", sbn_bn_running_var(bn), ref->running_var, C, 1e-7, 1e-6);
    if (sbn_bn_num_batches_tracked(bn) != ref->num_batches_tracked) bad++;
    return bad;
}

/* Random weight +-U(0.5, 1.5) and bias N(0, 0.5^2), the same on every rank,
 * in the layers and the reference (NULL when there is none). */
static void random_parameters(test_rng *rng, int64_t C, sbn_bn *a, sbn_bn *b, reference_bn *ref)
{
    for (int64_t c = 0; c < C; c++) {
        const double sign = test_rng_uniform(rng) < 0.3 ? -1.0 : 1.0;
        const float weight = (float)(sign * (0.5 + test_rng_uniform(rng))), bias = (float)(0.5 * test_rng_normal(rng));
        sbn_bn *layers[2] = {a, b};
        for (int k = 0; k < 2; k++)
            if (layers[k]) sbn_bn_weight(layers[k])[c] = weight, sbn_bn_bias(layers[k])[c] = bias;
        if (ref) ref->weight[c] = weight, ref->bias[c] = bias;
    }
}

typedef struct typed_case {
    int64_t n, c, s;
    sbn_layout layout;
    sbn_dtype type;
    int pattern;
    uint64_t seed;
} typed_case;

/* Two training steps and an eval step, each forward + backward, of a SyncBN
 * layer fed 16-bit slices of one global batch, against the float64
 * reference on the whole (widened) batch. Returns this rank's mismatches. */
static int64_t run_half_scenario(const typed_case *tc)
{
    const int64_t N = tc->n, C = tc->c, S = tc->s, sample = C * S, total = N * sample;
    int64_t counts[64], offsets[64];
    split_batch(counts, offsets, N, tc->pattern, tc->seed);
    const int64_t local_n = counts[rank], local = local_n * sample;
    const size_t skip = (size_t)(offsets[rank] * sample) * element_bytes(tc->type);
    const sbn_shape mine = {local_n, C, S, tc->layout, tc->type};
    const sbn_bn_options options = sbn_bn_defaults();
    sbn_bn *bn;
    assert_int_equal(sbn_bn_create(C, &options, world, &bn), SBN_OK);
    reference_bn ref;
    reference_bn_init(&ref, C, options);
    test_rng rng = {tc->seed * 31 + 7};
    random_parameters(&rng, C, bn, NULL, &ref);
    float *x_ncs = floats(total), *dy_ncs = floats(total), *xw = floats(total), *dyw = floats(total);
    void *x = activations(total, tc->type), *dy = activations(total, tc->type);
    void *y = activations(local, tc->type), *dx = activations(local, tc->type);
    double *want_y = calloc((size_t)total, sizeof(double)), *want_dx = calloc((size_t)total, sizeof(double));
    double *terms_y = calloc((size_t)total, sizeof(double)), *terms_dx = calloc((size_t)total, sizeof(double));
    double *abs_dy_xhat = calloc((size_t)C, sizeof(double)), *abs_dy = calloc((size_t)C, sizeof(double));
    int64_t bad = 0;
    for (int step = 0; step < 3; step++) {
        const bool training = step < 2;
        test_fill_normal(&rng, x_ncs, total, 1.0 + step, 2.0);
        test_fill_normal(&rng, dy_ncs, total, 0.1, 1.0);
        to_activations(x, tc->type, tc->layout, x_ncs, N, C, S);
        to_activations(dy, tc->type, tc->layout, dy_ncs, N, C, S);
        widened_ncs(xw, x, tc->type, tc->layout, N, C, S);
        widened_ncs(dyw, dy, tc->type, tc->layout, N, C, S);
        /* Eval: the reference takes the layer's float32 running statistics
         * (checked above against its own, and the same on every rank). */
        if (!training)
            for (int64_t c = 0; c < C; c++)
                ref.running_mean[c] = sbn_bn_running_mean(bn)[c], ref.running_var[c] = sbn_bn_running_var(bn)[c];
        sbn_bn_zero_grad(bn);
        memset(ref.grad_weight, 0, (size_t)C * sizeof(double));
        memset(ref.grad_bias, 0, (size_t)C * sizeof(double));
        assert_int_equal(sbn_bn_forward(bn, mine, (char *)x + skip, y, training), SBN_OK);
        assert_int_equal(sbn_bn_backward(bn, mine, (char *)x + skip, (char *)dy + skip, dx), SBN_OK);
        reference_bn_forward(&ref, N, S, xw, want_y, training);
        reference_bn_backward(&ref, N, S, xw, dyw, want_dx);
        reference_terms(&ref, N, S, xw, dyw, terms_y, terms_dx, abs_dy_xhat, abs_dy);
        bad += count_output_mismatches(training ? "y" : "eval y", tc->type, tc->layout, y, local_n, offsets[rank], C,
                                       S, want_y, terms_y);
        bad += count_output_mismatches(training ? "dx" : "eval dx", tc->type, tc->layout, dx, local_n, offsets[rank],
                                       C, S, want_dx, terms_dx);
        bad += count_running_mismatches(bn, &ref);
        bad += count_grad_mismatches(bn, &ref, abs_dy_xhat, abs_dy);
    }
    free(x_ncs), free(dy_ncs), free(xw), free(dyw), free(x), free(dy), free(y), free(dx);
    free(want_y), free(want_dx), free(terms_y), free(terms_dx), free(abs_dy_xhat), free(abs_dy);
    reference_bn_free(&ref);
    sbn_bn_destroy(bn);
    return bad;
}

static const int64_t typed_shapes[][3] = {{12, 5, 1}, {9, 3, 7}, {7, 4, 13}};
enum { TYPED_SHAPES = sizeof typed_shapes / sizeof typed_shapes[0] };

/* bfloat16 and float16, both layouts, odd sizes, every split pattern
 * (ranks with 0 and 1 samples): each rank's y and dx within 1 ulp of the
 * float64 result on the global batch. */
static void test_half_precision_sweep(void **state)
{
    (void)state;
    static const sbn_dtype types[] = {SBN_DTYPE_BF16, SBN_DTYPE_F16};
    int64_t bad = 0, runs = 0;
    for (int i = 0; i < TYPED_SHAPES; i++)
        for (int layout = SBN_NCS; layout <= SBN_NSC; layout++)
            for (int t = 0; t < 2; t++)
                for (int pattern = 0; pattern < 3; pattern++) {
                    const typed_case tc = {typed_shapes[i][0], typed_shapes[i][1], typed_shapes[i][2],
                                           (sbn_layout)layout, types[t], pattern,
                                           3000 + 41 * (uint64_t)i + 7 * (uint64_t)t + (uint64_t)pattern};
                    const int64_t case_bad = run_half_scenario(&tc);
                    if (case_bad)
                        fprintf(stderr, "rank %d: %s %s shape (%lld,%lld,%lld) pattern %d: %lld mismatches\n", rank,
                                sbn_dtype_name(tc.type), layout_name(tc.layout), (long long)tc.n, (long long)tc.c,
                                (long long)tc.s, pattern, (long long)case_bad);
                    bad += case_bad;
                    runs++;
                }
    assert_int_equal(runs, 36);
    assert_int_equal(bad, 0);
}

/* A separate ReLU on a BN output, in place: float32 through nn.h's
 * sbn_relu_forward, 16-bit on the bits (v <= 0 -> 0x0000, NaN kept). */
static void separate_relu(sbn_dtype type, void *y, int64_t count)
{
    if (type == SBN_DTYPE_F32) {
        sbn_relu_forward(y, y, count);
        return;
    }
    for (int64_t e = 0; e < count; e++)
        if (widen(type, y, e) <= 0.0) ((uint16_t *)y)[e] = 0;
}

/* The separate ReLU's backward: dy where the BN output y_bn > 0 (or NaN),
 * +0 where it is <= 0. Counts the -0 outputs seen. */
static void separate_relu_mask(sbn_dtype type, void *masked, const void *dy, const void *y_bn, int64_t count,
                               int64_t *negative_zeros)
{
    for (int64_t e = 0; e < count; e++) {
        const double v = widen(type, y_bn, e);
        *negative_zeros += v == 0.0 && signbit(v);
    }
    if (type == SBN_DTYPE_F32) {
        sbn_relu_backward(masked, dy, y_bn, count);
        return;
    }
    memcpy(masked, dy, (size_t)count * sizeof(uint16_t));
    for (int64_t e = 0; e < count; e++)
        if (widen(type, y_bn, e) <= 0.0) ((uint16_t *)masked)[e] = 0;
}

/* memcmp, naming the first differing element. */
static int64_t bits_differ(const char *label, const typed_case *tc, sbn_dtype type, const void *fused,
                           const void *separate, int64_t count)
{
    const size_t size = element_bytes(type);
    if (memcmp(fused, separate, (size_t)count * size) == 0) return 0;
    for (int64_t e = 0; e < count; e++)
        if (memcmp((const char *)fused + (size_t)e * size, (const char *)separate + (size_t)e * size, size) != 0) {
            fprintf(stderr, "rank %d: fuse_relu %s %s shape (%lld,%lld,%lld) pattern %d: %s[%lld]: fused %.10g, "
                            "separate ReLU %.10g\n",
                    rank, sbn_dtype_name(tc->type), layout_name(tc->layout), (long long)tc->n, (long long)tc->c,
                    (long long)tc->s, tc->pattern, label, (long long)e, widen(type, fused, e),
                    widen(type, separate, e));
            break;
        }
    return 1;
}

/* A SyncBN layer with fuse_relu against an identical one without it
 * followed by a separate ReLU: y, dx, grads and running statistics bit for
 * bit, over a training step, a training step with dx NULL and an eval step
 * with NaN inputs. Channel 0 is constant in training with a negative weight
 * and bias -0, so its BN output is exactly -0 (ReLU must give +0). */
static int64_t run_relu_scenario(const typed_case *tc, int64_t *negative_zeros)
{
    const int64_t N = tc->n, C = tc->c, S = tc->s, sample = C * S, total = N * sample;
    int64_t counts[64], offsets[64];
    split_batch(counts, offsets, N, tc->pattern, tc->seed);
    const int64_t local_n = counts[rank], local = local_n * sample;
    const size_t skip = (size_t)(offsets[rank] * sample) * element_bytes(tc->type);
    const sbn_shape mine = {local_n, C, S, tc->layout, tc->type};
    sbn_bn_options plain_options = sbn_bn_defaults(), fused_options = sbn_bn_defaults();
    fused_options.fuse_relu = true;
    sbn_bn *plain, *fused; /* created in the same order on every rank */
    assert_int_equal(sbn_bn_create(C, &plain_options, world, &plain), SBN_OK);
    assert_int_equal(sbn_bn_create(C, &fused_options, world, &fused), SBN_OK);
    test_rng rng = {tc->seed * 13 + 5};
    random_parameters(&rng, C, plain, fused, NULL);
    sbn_bn_weight(plain)[0] = sbn_bn_weight(fused)[0] = -fabsf(sbn_bn_weight(plain)[0]);
    sbn_bn_bias(plain)[0] = sbn_bn_bias(fused)[0] = -0.0f;
    float *x_ncs = floats(total), *dy_ncs = floats(total);
    void *x = activations(total, tc->type), *dy = activations(total, tc->type);
    void *y_plain = activations(local, tc->type), *y_fused = activations(local, tc->type);
    void *masked = activations(local, tc->type), *dx_plain = activations(local, tc->type);
    void *dx_fused = activations(local, tc->type);
    int64_t bad = 0;
    for (int step = 0; step < 3; step++) {
        const bool training = step < 2, with_dx = step != 1;
        test_fill_normal(&rng, x_ncs, total, 0.5 + step, 2.0);
        test_fill_normal(&rng, dy_ncs, total, 0.1, 1.0);
        for (int64_t i = 0; i < N; i++) {
            if (training)
                for (int64_t j = 0; j < S; j++) x_ncs[(i * C + 0) * S + j] = 1.25f;
            else if (i % 3 == 0)
                x_ncs[(i * C + C - 1) * S] = NAN; /* eval is elementwise: only these outputs are NaN */
        }
        to_activations(x, tc->type, tc->layout, x_ncs, N, C, S);
        to_activations(dy, tc->type, tc->layout, dy_ncs, N, C, S);
        const void *my_x = (const char *)x + skip, *my_dy = (const char *)dy + skip;
        sbn_bn_zero_grad(plain), sbn_bn_zero_grad(fused);
        assert_int_equal(sbn_bn_forward(plain, mine, my_x, y_plain, training), SBN_OK);
        assert_int_equal(sbn_bn_forward(fused, mine, my_x, y_fused, training), SBN_OK);
        separate_relu_mask(tc->type, masked, my_dy, y_plain, local, negative_zeros);
        separate_relu(tc->type, y_plain, local);
        bad += bits_differ(training ? "y" : "eval y", tc, tc->type, y_fused, y_plain, local);
        bad += bits_differ("running_mean", tc, SBN_DTYPE_F32, sbn_bn_running_mean(fused), sbn_bn_running_mean(plain), C);
        bad += bits_differ("running_var", tc, SBN_DTYPE_F32, sbn_bn_running_var(fused), sbn_bn_running_var(plain), C);
        assert_int_equal(sbn_bn_backward(plain, mine, my_x, masked, with_dx ? dx_plain : NULL), SBN_OK);
        assert_int_equal(sbn_bn_backward(fused, mine, my_x, my_dy, with_dx ? dx_fused : NULL), SBN_OK);
        if (with_dx) bad += bits_differ(training ? "dx" : "eval dx", tc, tc->type, dx_fused, dx_plain, local);
        bad += bits_differ("grad_weight", tc, SBN_DTYPE_F32, sbn_bn_grad_weight(fused), sbn_bn_grad_weight(plain), C);
        bad += bits_differ("grad_bias", tc, SBN_DTYPE_F32, sbn_bn_grad_bias(fused), sbn_bn_grad_bias(plain), C);
    }
    free(x_ncs), free(dy_ncs), free(x), free(dy), free(y_plain), free(y_fused), free(masked), free(dx_plain),
        free(dx_fused);
    sbn_bn_destroy(plain);
    sbn_bn_destroy(fused);
    return bad;
}

static void test_fused_relu_bit_identical(void **state)
{
    (void)state;
    static const sbn_dtype types[] = {SBN_DTYPE_F32, SBN_DTYPE_BF16, SBN_DTYPE_F16};
    int64_t bad = 0, runs = 0, negative_zeros = 0;
    for (int i = 0; i < TYPED_SHAPES; i++)
        for (int layout = SBN_NCS; layout <= SBN_NSC; layout++)
            for (int t = 0; t < 3; t++) {
                const typed_case tc = {typed_shapes[i][0], typed_shapes[i][1], typed_shapes[i][2], (sbn_layout)layout,
                                       types[t], (i + layout + t) % 3, 4000 + 23 * (uint64_t)i + 3 * (uint64_t)t};
                bad += run_relu_scenario(&tc, &negative_zeros);
                runs++;
            }
    assert_int_equal(runs, 18);
    /* The -0 BN outputs (constant channel) occurred somewhere. */
    assert_int_equal(sbn_comm_allreduce_sum_int64(world, &negative_zeros, 1), SBN_OK);
    assert_true(negative_zeros > 0);
    assert_int_equal(bad, 0);
}

/* Rank 0 passes bfloat16, the others float32, to the same SyncBN calls.
 * The message carries float64 statistics and no element type, so the calls
 * succeed: the layer normalizes the global batch made of rank 0's widened
 * bfloat16 values and the others' float32 values, each rank writing its own
 * type. If a later release refuses the mix, every rank must get the same
 * error and keep its state. Either way no rank hangs (10 s timeout). */
static void test_dtype_disagreement(void **state)
{
    (void)state;
    if (ranks < 2) skip();
    sbn_comm *comm = fresh_comm();
    assert_int_equal(sbn_comm_set_timeout(comm, 10.0), SBN_OK);
    const int64_t N = 2 * ranks + 1, C = 3, S = 5, sample = C * S, total = N * sample;
    int64_t counts[64], offsets[64];
    for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
        split_batch(counts, offsets, N, 0, 0);
        const sbn_dtype type = rank == 0 ? SBN_DTYPE_BF16 : SBN_DTYPE_F32;
        const int64_t local_n = counts[rank], local = local_n * sample;
        const sbn_shape mine = {local_n, C, S, (sbn_layout)layout, type};
        const sbn_bn_options options = sbn_bn_defaults();
        sbn_bn *bn;
        assert_int_equal(sbn_bn_create(C, &options, comm, &bn), SBN_OK);
        reference_bn ref;
        reference_bn_init(&ref, C, options);
        test_rng rng = {77 + (uint64_t)layout};
        random_parameters(&rng, C, bn, NULL, &ref);
        float *x_ncs = floats(total), *dy_ncs = floats(total), *xw = floats(total), *dyw = floats(total);
        test_fill_normal(&rng, x_ncs, total, 1.0, 2.0);
        test_fill_normal(&rng, dy_ncs, total, 0.1, 1.0);
        /* This rank's slice in its own type, and the global batch of what
         * every rank holds, widened (rank 0's part rounded to bfloat16). */
        void *x = activations(local, type), *dy = activations(local, type), *y = activations(local, type);
        void *dx = activations(local, type);
        to_activations(x, type, (sbn_layout)layout, x_ncs + offsets[rank] * sample, local_n, C, S);
        to_activations(dy, type, (sbn_layout)layout, dy_ncs + offsets[rank] * sample, local_n, C, S);
        memcpy(xw, x_ncs, (size_t)total * sizeof *xw);
        memcpy(dyw, dy_ncs, (size_t)total * sizeof *dyw);
        const int64_t first = counts[0] * sample;
        uint16_t *rounded = activations(first, SBN_DTYPE_BF16);
        assert_int_equal(sbn_convert_from_float(rounded, SBN_DTYPE_BF16, x_ncs, first), SBN_OK);
        for (int64_t e = 0; e < first; e++) xw[e] = (float)widen(SBN_DTYPE_BF16, rounded, e);
        assert_int_equal(sbn_convert_from_float(rounded, SBN_DTYPE_BF16, dy_ncs, first), SBN_OK);
        for (int64_t e = 0; e < first; e++) dyw[e] = (float)widen(SBN_DTYPE_BF16, rounded, e);
        free(rounded);

        int statuses[2], lowest[2], highest[2];
        statuses[0] = (int)sbn_bn_forward(bn, mine, x, y, true);
        char forward_message[512];
        snprintf(forward_message, sizeof forward_message, "%s", sbn_errmsg());
        statuses[1] = statuses[0] == SBN_OK ? (int)sbn_bn_backward(bn, mine, x, dy, dx) : (int)SBN_OK;
        assert_int_equal(MPI_Allreduce(statuses, lowest, 2, MPI_INT, MPI_MIN, MPI_COMM_WORLD), MPI_SUCCESS);
        assert_int_equal(MPI_Allreduce(statuses, highest, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD), MPI_SUCCESS);
        if (lowest[0] != highest[0] || lowest[1] != highest[1])
            fprintf(stderr, "rank %d: forward %s, backward %s (\"%s\"): ranks disagree\n", rank,
                    sbn_status_str((sbn_status)statuses[0]), sbn_status_str((sbn_status)statuses[1]), sbn_errmsg());
        assert_int_equal(lowest[0], highest[0]);
        assert_int_equal(lowest[1], highest[1]);
        if (statuses[0] != SBN_OK) {
            /* Refused: the same error everywhere, naming the types, nothing changed. */
            assert_int_equal(statuses[0], SBN_ERR_MISMATCH);
            if (!strstr(forward_message, "BF16") && !strstr(forward_message, "F32") && !strstr(forward_message, "type"))
                fprintf(stderr, "rank %d: mixed dtypes refused without naming them: %s\n", rank, forward_message);
            assert_int_equal(sbn_bn_num_batches_tracked(bn), 0);
        } else {
            assert_int_equal(statuses[1], SBN_OK);
            double *want_y = calloc((size_t)total, sizeof(double)), *want_dx = calloc((size_t)total, sizeof(double));
            double *terms_y = calloc((size_t)total, sizeof(double)), *terms_dx = calloc((size_t)total, sizeof(double));
            double abs_dy_xhat[3], abs_dy[3];
            reference_bn_forward(&ref, N, S, xw, want_y, true);
            reference_bn_backward(&ref, N, S, xw, dyw, want_dx);
            reference_terms(&ref, N, S, xw, dyw, terms_y, terms_dx, abs_dy_xhat, abs_dy);
            int64_t bad = count_output_mismatches("mixed-dtype y", type, (sbn_layout)layout, y, local_n, offsets[rank],
                                                  C, S, want_y, terms_y);
            bad += count_output_mismatches("mixed-dtype dx", type, (sbn_layout)layout, dx, local_n, offsets[rank], C, S,
                                           want_dx, terms_dx);
            bad += count_running_mismatches(bn, &ref);
            bad += count_grad_mismatches(bn, &ref, abs_dy_xhat, abs_dy);
            free(want_y), free(want_dx), free(terms_y), free(terms_dx);
            assert_int_equal(bad, 0);
        }
        free(x_ncs), free(dy_ncs), free(xw), free(dyw), free(x), free(dy), free(y), free(dx);
        reference_bn_free(&ref);
        sbn_bn_destroy(bn);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    sbn_comm_destroy(comm);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    golden_path = argc > 1 ? argv[1] : "tests/golden/bn_golden.json";
    if (rank != 0 && !freopen("/dev/null", "w", stdout)) return 1; /* failures still reach stderr */
    if (sbn_comm_create_mpi(MPI_COMM_WORLD, &world) != SBN_OK) {
        fprintf(stderr, "rank %d: %s\n", rank, sbn_errmsg());
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    sbn_comm_set_timeout(world, 60.0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equivalence_sweep),       cmocka_unit_test(test_golden_split_across_ranks),
        cmocka_unit_test(test_one_collective_per_pass), cmocka_unit_test(test_groups),
        cmocka_unit_test(test_global_count_below_two),  cmocka_unit_test(test_mismatch_channels),
        cmocka_unit_test(test_mismatch_forward_vs_backward), cmocka_unit_test(test_mismatch_layer_order),
        cmocka_unit_test(test_mismatch_options),        cmocka_unit_test(test_mismatch_eval_step),
        cmocka_unit_test(test_timeout_when_a_peer_skips),
        cmocka_unit_test(test_timeout_is_a_deadline_for_the_collective),
        cmocka_unit_test(test_payload_over_int_max),
        cmocka_unit_test(test_broadcast_mismatch_tells_every_rank),
        cmocka_unit_test(test_failures_inside_a_collective),
        cmocka_unit_test(test_half_precision_sweep),    cmocka_unit_test(test_fused_relu_bit_identical),
        cmocka_unit_test(test_dtype_disagreement),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    sbn_comm_destroy(world);
    MPI_Finalize();
    return failed;
}
