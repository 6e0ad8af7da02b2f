/* Test support: golden data, a float64 reference BN, comparisons, layouts. */
#ifndef SBN_TEST_SUPPORT_H
#define SBN_TEST_SUPPORT_H

#include <stdbool.h>
#include <stdint.h>
#include <syncbn/syncbn.h>

/* ---------- deterministic random numbers ---------- */
typedef struct test_rng { uint64_t state; } test_rng;
double test_rng_uniform(test_rng *rng);               /* [0, 1) */
double test_rng_normal(test_rng *rng);                /* N(0, 1) */
void test_fill_normal(test_rng *rng, float *x, int64_t count, double mean, double stddev);

/* ---------- comparison ---------- */
/* Counts elements with |got - want| > atol + rtol*|want| (NaN never matches);
 * prints the first few with their index, labelled. */
int64_t test_count_mismatches(const char *label, const float *got, const double *want, int64_t count, double atol,
                              double rtol);
int64_t test_count_mismatches_float(const char *label, const float *got, const float *want, int64_t count,
                                    double atol, double rtol);

/* ---------- layouts ---------- */
/* Copies an NCS tensor into NSC order (and back). */
void test_ncs_to_nsc(float *out, const float *in, int64_t n, int64_t c, int64_t s);
void test_nsc_to_ncs(float *out, const float *in, int64_t n, int64_t c, int64_t s);

/* ---------- float64 reference BN (NCS), straight from the formulas ---------- */
typedef struct reference_bn {
    int64_t channels;
    double eps, momentum;
    bool cumulative, affine, track;
    double *weight, *bias, *running_mean, *running_var, *grad_weight, *grad_bias;
    int64_t num_batches_tracked;
    /* saved by forward */
    double *mean, *invstd;
    bool used_batch_stats;
} reference_bn;
void reference_bn_init(reference_bn *bn, int64_t channels, sbn_bn_options options);
void reference_bn_free(reference_bn *bn);
/* x, y are NCS of n*channels*s; counts for the batch statistics are n*s. */
void reference_bn_forward(reference_bn *bn, int64_t n, int64_t s, const float *x, double *y, bool training);
void reference_bn_backward(reference_bn *bn, int64_t n, int64_t s, const float *x, const float *dy, double *dx);

/* ---------- one layer against the reference (layer_check.c) ---------- */
/* A training step then an eval step of a fresh plain BN layer (default
 * options, the given weight and bias) on NCS data fed in `layout`; every
 * output is returned in NCS order. status is the first failure, if any. */
typedef struct test_layer_result {
    float *y, *dx, *eval_y, *eval_dx, *running_mean, *running_var, *grad_weight, *grad_bias;
    sbn_status status;
} test_layer_result;
test_layer_result test_layer_steps(int64_t n, int64_t c, int64_t s, sbn_layout layout, const float *x_ncs,
                                   const float *dy_ncs, const float *weight, const float *bias);
void test_layer_result_free(test_layer_result *r);
/* Mismatches of every output of test_layer_steps against reference_bn
 * (atol = rtol = tolerance; gradient sums scaled by sqrt(n*s)). */
int64_t test_layer_against_reference(int64_t n, int64_t c, int64_t s, sbn_layout layout, const float *x,
                                     const float *dy, const float *weight, const float *bias, double tolerance);

/* The whole file as a NUL-terminated string (free it), or NULL. */
char *test_read_file(const char *path);

/* ---------- golden data from tests/golden/make_bn_golden.py ---------- */
typedef struct golden_step {
    bool training;
    float *x, *dy;
    double *y, *dx, *grad_weight, *grad_bias, *running_mean, *running_var;
    int64_t num_batches_tracked;
} golden_step;
typedef struct golden_case {
    char name[96];
    int64_t n, c, s, dims;
    sbn_bn_options options;
    float *weight, *bias;
    int step_count;
    golden_step steps[8];
} golden_case;
/* Loads every case of a golden JSON file; returns the count, -1 on error. */
int golden_load(const char *path, golden_case **cases);
void golden_free(golden_case *cases, int count);


/* ---------- model goldens from tests/golden/make_nn_golden.py ---------- */
typedef struct nn_golden_step {
    double *x, *logits, *grads, *params_after, *running_mean, *running_var;
    uint8_t *labels;
    double loss;
    int64_t running_count;
} nn_golden_step;
typedef struct nn_golden_case {
    char name[64];
    bool convnet, norm;
    int64_t n, in_channels, height, width, classes, param_count;
    double lr, momentum, weight_decay;
    double *initial_params;
    int step_count;
    nn_golden_step steps[4];
} nn_golden_case;
int nn_golden_load(const char *path, nn_golden_case **cases);
void nn_golden_free(nn_golden_case *cases, int count);

#endif
