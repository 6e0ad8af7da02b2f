/* The data-parallel training loop:
 *   next batch -> forward -> loss -> zero grad -> backward -> allreduce -> SGD step
 */
#include <syncbn/data.h>
#include <syncbn/train.h>

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"
#include "train/checkpoint.h"

sbn_train_options sbn_train_defaults(void)
{
    sbn_train_options o = {.model = SBN_MODEL_CONVNET, .norm = SBN_NORM_BN, .group_size = 0, .global_batch = 32,
                           .epochs = 1, .max_steps = 0, .train_samples = 0, .lr = 0.01, .momentum = 0.9,
                           .weight_decay = 5e-4, .lr_schedule = SBN_LR_COSINE, .seed = 1, .threads = 1, .data_dir = SBN_FASHION_MNIST_DIR,
                           .metrics_path = NULL, .progress = false};
    return o;
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static sbn_status check_options(const sbn_train_options *o, int ranks)
{
    if (o->global_batch < 1) return sbn_fail(SBN_ERR_ARG, "batch must be >= 1, got %lld", (long long)o->global_batch);
    if (o->global_batch % ranks)
        return sbn_fail(SBN_ERR_ARG, "batch %lld is not divisible by the %d ranks", (long long)o->global_batch, ranks);
    if (o->epochs < 1 && o->max_steps < 1) return sbn_fail(SBN_ERR_ARG, "nothing to run: epochs and steps are 0");
    if (o->epochs < 0 || o->max_steps < 0 || o->train_samples < 0)
        return sbn_fail(SBN_ERR_ARG, "epochs, steps and train samples must be >= 0");
    if (!(o->lr > 0 && isfinite(o->lr)) || !(o->momentum >= 0 && o->momentum < 1) ||
        !(o->weight_decay >= 0 && isfinite(o->weight_decay)))
        return sbn_fail(SBN_ERR_ARG, "need a finite lr > 0, 0 <= momentum < 1 and a finite weight decay >= 0 "
                        "(got %g, %g, %g)", o->lr, o->momentum, o->weight_decay);
    if (o->lr_schedule != SBN_LR_CONSTANT && o->lr_schedule != SBN_LR_COSINE)
        return sbn_fail(SBN_ERR_ARG, "unknown learning-rate schedule %d", (int)o->lr_schedule);
    if (o->threads < 1 || o->threads > 1024) return sbn_fail(SBN_ERR_ARG, "threads must be in [1, 1024]");
    if (o->group_size < 0 || (o->group_size > 0 && ranks % o->group_size))
        return sbn_fail(SBN_ERR_ARG, "group size %d does not divide the %d ranks", o->group_size, ranks);
    if (!o->data_dir) return sbn_fail(SBN_ERR_ARG, "data folder is NULL");
    if (o->checkpoint_every < 0 || o->keep < 0)
        return sbn_fail(SBN_ERR_ARG, "checkpoint interval and checkpoints kept must be >= 0");
    if (o->resume && !o->checkpoint_dir) return sbn_fail(SBN_ERR_ARG, "resume needs the checkpoint folder");
    if (o->eval_points < 0 || o->eval_points > 1000000)
        return sbn_fail(SBN_ERR_ARG, "eval points must be in [0, 1000000], got %d", o->eval_points);
    return SBN_OK;
}

/* Everything a run holds, so that one cleanup frees it on any path. */
typedef struct run_state {
    sbn_dataset train, test;
    sbn_model *model;
    sbn_comm *bn_comm; /* owned when split into groups */
    sbn_sampler sampler;
    float *velocity, *bucket, *images, *dlogits;
    uint8_t *labels;
    FILE *metrics;
    int64_t first_step; /* 0, or the step a resumed run continues from */
    int64_t resumed_total_steps;
} run_state;

static void run_state_free(run_state *s)
{
    sbn_dataset_free(&s->train), sbn_dataset_free(&s->test);
    sbn_model_destroy(s->model);
    sbn_comm_destroy(s->bn_comm);
    sbn_sampler_free(&s->sampler);
    free(s->velocity), free(s->bucket), free(s->images), free(s->dlogits), free(s->labels);
    if (s->metrics) fclose(s->metrics);
}

/* Largest |running_mean[c] on rank r - on rank 0| over BN layers, channels, ranks. */
static sbn_status running_mean_spread(run_state *s, sbn_comm *world, double *spread)
{
    *spread = 0.0;
    for (int b = 0; b < sbn_model_bn_count(s->model); b++) {
        sbn_bn *bn = sbn_model_bn(s->model, b);
        const int64_t channels = sbn_bn_channels(bn);
        float *mine = sbn_bn_running_mean(bn), *theirs = malloc((size_t)channels * sizeof *theirs);
        if (!theirs) return sbn_fail(SBN_ERR_NOMEM, "no memory");
        for (int r = 0; r < sbn_comm_size(world); r++) {
            memcpy(theirs, mine, (size_t)channels * sizeof *theirs);
            sbn_status st = sbn_comm_broadcast_float(world, theirs, channels, r);
            if (st != SBN_OK) {
                free(theirs);
                return st;
            }
            if (sbn_comm_rank(world) == 0)
                for (int64_t c = 0; c < channels; c++) *spread = fmax(*spread, fabs((double)theirs[c] - mine[c]));
        }
        free(theirs);
    }
    double shared = *spread;
    sbn_status st = sbn_comm_allreduce_sum_double(world, &shared, 1); /* only rank 0 holds it: share it */
    *spread = shared;
    return st;
}

static void show_progress(int64_t step, int64_t total, double loss)
{
    const int width = 30, filled = total > 0 ? (int)(width * step / total) : 0;
    fprintf(stderr, "\r[%.*s%*s] step %lld/%lld loss %.4f", filled, "##############################", width - filled,
            "", (long long)step, (long long)total, loss);
    if (step == total) fputc('\n', stderr);
}

/* Weights (and BN buffers) from a safetensors state dict, e.g. PyTorch's. */
static sbn_status load_initial_weights(sbn_model *model, const char *path)
{
    sbn_safetensors *file;
    sbn_status st = sbn_safetensors_open(path, &file);
    if (st == SBN_OK) st = sbn_model_load_state_dict(model, NULL, SBN_STATE_ALL, file);
    sbn_safetensors_close(file);
    return st;
}

static sbn_status setup(run_state *s, const sbn_train_options *o, sbn_comm *world)
{
    const int rank = sbn_comm_rank(world), ranks = sbn_comm_size(world);
    sbn_status st = o->checkpoint_dir ? checkpoint_check_folder(o) : SBN_OK;
    if (st == SBN_OK) st = sbn_dataset_load_split(&s->train, o->data_dir, "train");
    if (st == SBN_OK) st = sbn_dataset_load_split(&s->test, o->data_dir, "t10k");
    if (st != SBN_OK) return st;
    if (s->test.height != s->train.height || s->test.width != s->train.width || s->test.classes > s->train.classes)
        return sbn_fail(SBN_ERR_FORMAT, "%s: the test images (%lldx%lld, %lld classes) do not match the training "
                        "images (%lldx%lld, %lld classes)", o->data_dir, (long long)s->test.height,
                        (long long)s->test.width, (long long)s->test.classes, (long long)s->train.height,
                        (long long)s->train.width, (long long)s->train.classes);
    if (o->train_samples > 0 && o->train_samples < s->train.count) s->train.count = o->train_samples;
    const sbn_norm created_norm = o->norm == SBN_NORM_SYNC ? SBN_NORM_BN : o->norm;
    st = sbn_model_create(o->model, 1, s->train.height, s->train.width, s->train.classes, created_norm, NULL, o->seed,
                          &s->model);
    if (st == SBN_OK && o->norm == SBN_NORM_SYNC) {
        sbn_comm *bn_comm = world;
        if (o->group_size > 0 && o->group_size < ranks) {
            st = sbn_comm_split_groups(world, o->group_size, &s->bn_comm);
            bn_comm = s->bn_comm;
        }
        if (st == SBN_OK) st = sbn_model_convert_sync_batchnorm(s->model, bn_comm);
    }
    if (st == SBN_OK && !o->separate_relu) st = sbn_model_set_fuse_relu(s->model, true);
    if (st == SBN_OK && o->init_path) st = load_initial_weights(s->model, o->init_path);
    if (st != SBN_OK) return st;
    const int64_t count = sbn_model_parameter_count(s->model), local = o->global_batch / ranks;
    if ((st = sbn_comm_broadcast_float(world, sbn_model_parameters(s->model), count, 0)) != SBN_OK) return st;
    if ((st = sbn_sampler_init(&s->sampler, s->train.count, o->global_batch, ranks, rank, o->seed)) != SBN_OK) return st;
    const int64_t eval_chunk = 500 > local ? 500 : local;
    s->velocity = calloc((size_t)count, sizeof *s->velocity);
    s->bucket = malloc((size_t)(count + 2) * sizeof *s->bucket);
    s->images = malloc((size_t)(local * s->train.height * s->train.width) * sizeof *s->images);
    s->labels = malloc((size_t)local);
    s->dlogits = malloc((size_t)(eval_chunk * s->train.classes) * sizeof *s->dlogits);
    if (!s->velocity || !s->bucket || !s->images || !s->labels || !s->dlogits)
        return sbn_fail(SBN_ERR_NOMEM, "no memory for the training buffers");
    if (o->resume) {
        checkpoint_position position;
        const double load_start = seconds_now();
        if ((st = checkpoint_load(o, world, s->model, s->velocity, &position)) != SBN_OK) return st;
        s->first_step = position.step;
        s->resumed_total_steps = position.total_steps;
        if (rank == 0)
            fprintf(stderr, "syncbn: resuming from step %lld (checkpoint loaded in %.1f ms)\n", (long long)position.step,
                    1e3 * (seconds_now() - load_start));
    }
    /* A resumed run appends: the lines of the steps before the crash stay. */
    if (rank == 0 && o->metrics_path && !(s->metrics = fopen(o->metrics_path, o->resume ? "a" : "w")))
        return sbn_fail(SBN_ERR_IO, "%s: cannot open the metrics file for writing", o->metrics_path);
    /* One write per line: a run killed at any moment leaves whole lines. */
    if (s->metrics) setvbuf(s->metrics, NULL, _IOLBF, 0);
    return SBN_OK;
}

static double learning_rate(const sbn_train_options *o, int64_t step, int64_t total)
{
    if (o->lr_schedule == SBN_LR_CONSTANT) return o->lr;
    return o->lr * 0.5 * (1.0 + cos(M_PI * (double)step / (double)total));
}

/* One step on this rank's slice; returns the global mean loss and accuracy. */
static sbn_status train_step(run_state *s, const sbn_train_options *o, sbn_comm *world, const int64_t *indices,
                             double lr, bool first_step, double *loss, double *accuracy)
{
    const int ranks = sbn_comm_size(world);
    const int64_t local = o->global_batch / ranks, count = sbn_model_parameter_count(s->model);
    sbn_dataset_gather(s->images, s->labels, &s->train, indices, local);
    const float *logits = NULL;
    double local_loss = 0.0;
    int64_t correct = 0;
    sbn_status st = sbn_model_forward(s->model, s->images, local, true, &logits);
    if (st == SBN_OK)
        st = sbn_cross_entropy(s->dlogits, &local_loss, &correct, logits, s->labels, local, s->train.classes);
    if (st != SBN_OK) return st;
    sbn_model_zero_grad(s->model);
    if ((st = sbn_model_backward(s->model, s->dlogits)) != SBN_OK) return st;
    float *grads = sbn_model_gradients(s->model);
    memcpy(s->bucket, grads, (size_t)count * sizeof *grads);
    s->bucket[count] = (float)local_loss;
    s->bucket[count + 1] = (float)correct;
    if ((st = sbn_comm_allreduce_sum_float(world, s->bucket, count + 2)) != SBN_OK)
        return sbn_fail_with_cause(st, "gradient allreduce");
    for (int64_t i = 0; i < count; i++) grads[i] = s->bucket[i] / (float)ranks;
    const sbn_sgd_options sgd = {lr, o->momentum, o->weight_decay};
    sbn_sgd_step(sbn_model_parameters(s->model), s->velocity, grads, count, sgd, first_step);
    *loss = s->bucket[count] / ranks;
    *accuracy = s->bucket[count + 1] / (double)o->global_batch;
    return SBN_OK;
}

/* The step after which the i-th evaluation during the run comes (i >= 1):
 * floor(total * i / (points + 1)), in 128 bits (total * i may not fit 64). */
static int64_t eval_step(int64_t total, int points, int i)
{
    return (int64_t)((__int128)total * i / (points + 1));
}

/* The steps of the run: epochs x batches per epoch, or max_steps when it is
 * smaller or epochs is 0. SBN_ERR_ARG when the product overflows. */
static sbn_status total_steps(const sbn_train_options *o, int64_t per_epoch, int64_t *total)
{
    if (per_epoch < 1) return sbn_fail(SBN_ERR_ARG, "no batch in an epoch");
    if (o->epochs == 0) { /* run max_steps (check_options made sure it is >= 1) */
        *total = o->max_steps;
        return SBN_OK;
    }
    if (__builtin_mul_overflow(o->epochs, per_epoch, total))
        return sbn_fail(SBN_ERR_ARG, "%lld epochs of %lld steps overflow the step count", (long long)o->epochs,
                        (long long)per_epoch);
    if (o->max_steps > 0 && o->max_steps < *total) *total = o->max_steps;
    return SBN_OK;
}

static sbn_status train(const sbn_train_options *options, sbn_comm *world, sbn_train_result *result)
{
    run_state s;
    memset(&s, 0, sizeof s);
    int64_t total = 0;
    sbn_status st = setup(&s, options, world);
    const int64_t per_epoch = s.sampler.batches_per_epoch;
    if (st == SBN_OK) st = total_steps(options, per_epoch, &total);
    if (st == SBN_OK && options->resume && s.resumed_total_steps != total)
        st = sbn_fail(SBN_ERR_ARG, "the checkpoint's run has %lld steps, this one %lld", (long long)s.resumed_total_steps,
                      (long long)total);
    if (st != SBN_OK) {
        run_state_free(&s);
        return st;
    }
    const bool progress = options->progress && sbn_comm_rank(world) == 0 && isatty(STDERR_FILENO);
    const double start = seconds_now();
    double train_seconds = 0.0, checkpoint_seconds = 0.0, eval_seconds = 0.0, loss = 0.0, accuracy = 0.0;
    const int64_t every = options->checkpoint_every > 0 ? options->checkpoint_every : 1000;
    int64_t step = s.first_step, checkpoints = 0;
    double recent[SBN_FINAL_LOSS_STEPS] = {0}; /* the last losses, a ring: their mean is the final training loss */
    int next_eval = 1; /* the next evaluation during the run, skipping those at or before a resume's start */
    while (next_eval <= options->eval_points && eval_step(total, options->eval_points, next_eval) <= s.first_step)
        next_eval++;
    for (; st == SBN_OK && step < total; step++) {
        const int64_t epoch = step / per_epoch;
        const int64_t *indices;
        const double step_start = seconds_now();
        st = sbn_sampler_slice(&s.sampler, epoch, step % per_epoch, &indices);
        const double lr = learning_rate(options, step, total);
        if (st == SBN_OK) st = train_step(&s, options, world, indices, lr, step == 0, &loss, &accuracy);
        train_seconds += seconds_now() - step_start;
        if (st != SBN_OK) {
            st = sbn_fail_with_cause(st, "step %lld", (long long)step + 1);
            break;
        }
        recent[(step - s.first_step) % SBN_FINAL_LOSS_STEPS] = loss;
        if (s.metrics)
            fprintf(s.metrics,
                    "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.9g, \"accuracy\": %.6g, \"lr\": %g, \"seconds\": %.6f}\n",
                    (long long)step + 1, (long long)epoch, loss, accuracy, lr, seconds_now() - start - eval_seconds);
        if (progress && ((step + 1) % 20 == 0 || step + 1 == total)) show_progress(step + 1, total, loss);
        const int64_t done = step + 1;
        if (next_eval <= options->eval_points && done == eval_step(total, options->eval_points, next_eval)) {
            const double eval_start = seconds_now(), trained = eval_start - start - eval_seconds;
            double test_accuracy = 0.0, test_loss = 0.0;
            st = sbn_evaluate(s.model, &s.test, world, NULL, &test_accuracy, &test_loss);
            if (st != SBN_OK) {
                st = sbn_fail_with_cause(st, "test evaluation after step %lld", (long long)done);
                break;
            }
            const double took = seconds_now() - eval_start;
            eval_seconds += took;
            if (s.metrics)
                fprintf(s.metrics,
                        "{\"eval\": true, \"step\": %lld, \"test_accuracy\": %.6f, \"test_loss\": %.6f, "
                        "\"seconds\": %.6f, \"eval_seconds\": %.6f}\n",
                        (long long)done, test_accuracy, test_loss, trained, took);
            while (next_eval <= options->eval_points && eval_step(total, options->eval_points, next_eval) <= done)
                next_eval++;
        }
        if (options->checkpoint_dir && (done % every == 0 || done % per_epoch == 0 || done == total)) {
            const double checkpoint_start = seconds_now();
            const checkpoint_position position = {done, total, per_epoch};
            st = checkpoint_save(options, world, s.model, s.velocity, position);
            checkpoint_seconds += seconds_now() - checkpoint_start;
            checkpoints++;
        }
    }
    if (st == SBN_OK) {
        const int64_t steps_run = step - s.first_step;
        result->steps = step;
        const int64_t kept = steps_run < SBN_FINAL_LOSS_STEPS ? steps_run : SBN_FINAL_LOSS_STEPS;
        double sum = 0.0;
        for (int64_t k = 0; k < kept; k++) sum += recent[k];
        result->final_train_loss = kept > 0 ? sum / (double)kept : loss;
        result->ms_per_step = steps_run > 0 ? 1e3 * train_seconds / (double)steps_run : 0.0;
        result->checkpoints = checkpoints;
        result->ms_per_checkpoint = checkpoints > 0 ? 1e3 * checkpoint_seconds / (double)checkpoints : 0.0;
        st = sbn_evaluate(s.model, &s.test, world, NULL, &result->test_accuracy, &result->test_loss);
    }
    if (st == SBN_OK) st = running_mean_spread(&s, world, &result->running_mean_spread);
    if (st == SBN_OK && s.metrics)
        fprintf(s.metrics,
                "{\"final\": true, \"steps\": %lld, \"final_train_loss\": %.9g, \"test_accuracy\": %.6f, "
                "\"test_loss\": %.6f, \"ms_per_step\": %.4f, \"running_mean_spread\": %.9g, \"checkpoints\": %lld, "
                "\"ms_per_checkpoint\": %.3f}\n",
                (long long)result->steps, result->final_train_loss, result->test_accuracy, result->test_loss,
                result->ms_per_step, result->running_mean_spread, (long long)result->checkpoints,
                result->ms_per_checkpoint);
    run_state_free(&s);
    return st;
}

sbn_status sbn_train_run(const sbn_train_options *options, sbn_comm *world, sbn_train_result *result)
{
    if (!options || !world || !result) return sbn_fail(SBN_ERR_ARG, "train: NULL argument");
    memset(result, 0, sizeof *result);
    sbn_status st = check_options(options, sbn_comm_size(world));
    if (st != SBN_OK) return st;
    /* Parallelism is ours (OpenMP over samples and channels); BLAS stays
     * single-threaded. Both settings are the caller's: restored on return. */
    const int caller_omp_threads = omp_get_max_threads(), caller_blas_threads = openblas_get_num_threads();
    omp_set_num_threads(options->threads);
    openblas_set_num_threads(1);
    st = train(options, world, result);
    openblas_set_num_threads(caller_blas_threads);
    omp_set_num_threads(caller_omp_threads);
    return st;
}
