/* BN kernel benchmark: syncbn vs the one-pass memory bound vs oneDNN, in one
 * run with contenders interleaved round by round (best and median of R).
 *
 * Effective GB/s use the minimum bytes a pass must move:
 *   training forward, eval forward: read x + write y     = 2 * X
 *   training backward:              read x, dy + write dx = 3 * X
 * The one-pass bound is a plain loop that moves exactly those bytes (a copy
 * for forward, dx = x + dy for backward): the physical limit on this machine.
 * oneDNN runs in the same layout and in its blocked nChw16c layout. PyTorch's
 * times come from bench/bn_torch.py run just before (--torch FILE).
 *
 * Usage: bench_bn [--quick] [--rounds R] [--threads T,...] [--torch FILE]
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <syncbn/syncbn.h>

typedef struct bench_shape { int64_t n, c, h, w; } bench_shape;

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static float *aligned_floats(int64_t count)
{
    float *p = NULL;
    if (posix_memalign((void **)&p, 64, (size_t)count * sizeof(float) + 64)) return NULL;
    for (int64_t i = 0; i < count; i++) p[i] = (float)((i * 7919) % 1000) * 1e-3f - 0.5f;
    return p;
}

static int compare_doubles(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---------- the one-pass bound ---------- */
static void copy_pass(float *restrict y, const float *restrict x, int64_t count)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) y[i] = x[i];
}

static void add_pass(float *restrict dx, const float *restrict x, const float *restrict dy, int64_t count)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < count; i++) dx[i] = x[i] + dy[i];
}

/* ---------- oneDNN ---------- */
typedef struct onednn_bn {
    dnnl_primitive_t forward, backward, inference;
    dnnl_memory_t src, dst, diff_dst, diff_src, mean, variance, scale, shift, diff_scale, diff_shift;
    void *buffers[4];
    bool ok;
} onednn_bn;

#define DNNL_CHECK(call)                                                                                       \
    do {                                                                                                       \
        if ((call) != dnnl_success) {                                                                          \
            fprintf(stderr, "oneDNN call failed: %s\n", #call);                                                \
            return false;                                                                                      \
        }                                                                                                      \
    } while (0)

static bool onednn_create(onednn_bn *b, dnnl_engine_t engine, bench_shape s, dnnl_format_tag_t tag)
{
    memset(b, 0, sizeof *b);
    dnnl_dims_t dims = {s.n, s.c, s.h, s.w}, channel_dims = {s.c};
    dnnl_memory_desc_t data_md, channel_md;
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&data_md, 4, dims, dnnl_f32, tag));
    DNNL_CHECK(dnnl_memory_desc_init_by_tag(&channel_md, 1, channel_dims, dnnl_f32, dnnl_a));
    const unsigned flags = dnnl_use_scale | dnnl_use_shift;
    dnnl_batch_normalization_desc_t fwd_d, bwd_d, inf_d;
    DNNL_CHECK(dnnl_batch_normalization_forward_desc_init(&fwd_d, dnnl_forward_training, &data_md, 1e-5f, flags));
    DNNL_CHECK(dnnl_batch_normalization_forward_desc_init(&inf_d, dnnl_forward_inference, &data_md, 1e-5f,
                                                          flags | dnnl_use_global_stats));
    DNNL_CHECK(dnnl_batch_normalization_backward_desc_init(&bwd_d, dnnl_backward, &data_md, &data_md, 1e-5f, flags));
    dnnl_primitive_desc_t fwd_pd, bwd_pd, inf_pd;
    DNNL_CHECK(dnnl_primitive_desc_create(&fwd_pd, &fwd_d, NULL, engine, NULL));
    DNNL_CHECK(dnnl_primitive_desc_create(&inf_pd, &inf_d, NULL, engine, NULL));
    DNNL_CHECK(dnnl_primitive_desc_create(&bwd_pd, &bwd_d, NULL, engine, fwd_pd));
    DNNL_CHECK(dnnl_primitive_create(&b->forward, fwd_pd));
    DNNL_CHECK(dnnl_primitive_create(&b->inference, inf_pd));
    DNNL_CHECK(dnnl_primitive_create(&b->backward, bwd_pd));
    dnnl_primitive_desc_destroy(fwd_pd), dnnl_primitive_desc_destroy(inf_pd), dnnl_primitive_desc_destroy(bwd_pd);
    const int64_t count = s.n * s.c * s.h * s.w;
    for (int k = 0; k < 4; k++) b->buffers[k] = aligned_floats(count);
    DNNL_CHECK(dnnl_memory_create(&b->src, &data_md, engine, b->buffers[0]));
    DNNL_CHECK(dnnl_memory_create(&b->dst, &data_md, engine, b->buffers[1]));
    DNNL_CHECK(dnnl_memory_create(&b->diff_dst, &data_md, engine, b->buffers[2]));
    DNNL_CHECK(dnnl_memory_create(&b->diff_src, &data_md, engine, b->buffers[3]));
    dnnl_memory_t *channel_memories[] = {&b->mean, &b->variance, &b->scale, &b->shift, &b->diff_scale, &b->diff_shift};
    for (int k = 0; k < 6; k++) DNNL_CHECK(dnnl_memory_create(channel_memories[k], &channel_md, engine, DNNL_MEMORY_ALLOCATE));
    b->ok = true;
    return true;
}

static void onednn_run(onednn_bn *b, dnnl_stream_t stream, int pass)
{
    if (pass == 0) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, b->src},     {DNNL_ARG_DST, b->dst},     {DNNL_ARG_MEAN, b->mean},
                                  {DNNL_ARG_VARIANCE, b->variance}, {DNNL_ARG_SCALE, b->scale}, {DNNL_ARG_SHIFT, b->shift}};
        dnnl_primitive_execute(b->forward, stream, 6, args);
    } else if (pass == 1) {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, b->src},           {DNNL_ARG_MEAN, b->mean},
                                  {DNNL_ARG_VARIANCE, b->variance}, {DNNL_ARG_DIFF_DST, b->diff_dst},
                                  {DNNL_ARG_SCALE, b->scale},       {DNNL_ARG_DIFF_SRC, b->diff_src},
                                  {DNNL_ARG_DIFF_SCALE, b->diff_scale}, {DNNL_ARG_DIFF_SHIFT, b->diff_shift},
                                  {DNNL_ARG_SHIFT, b->shift}};
        const dnnl_status_t st = dnnl_primitive_execute(b->backward, stream, 9, args);
        if (st != dnnl_success) fprintf(stderr, "oneDNN backward failed: %d\n", (int)st);
    } else {
        dnnl_exec_arg_t args[] = {{DNNL_ARG_SRC, b->src},     {DNNL_ARG_DST, b->dst},     {DNNL_ARG_MEAN, b->mean},
                                  {DNNL_ARG_VARIANCE, b->variance}, {DNNL_ARG_SCALE, b->scale}, {DNNL_ARG_SHIFT, b->shift}};
        dnnl_primitive_execute(b->inference, stream, 6, args);
    }
    dnnl_stream_wait(stream);
}

static void onednn_destroy(onednn_bn *b)
{
    if (!b->ok) return;
    dnnl_primitive_destroy(b->forward), dnnl_primitive_destroy(b->backward), dnnl_primitive_destroy(b->inference);
    dnnl_memory_t memories[] = {b->src, b->dst, b->diff_dst, b->diff_src, b->mean, b->variance, b->scale, b->shift,
                                b->diff_scale, b->diff_shift};
    for (int k = 0; k < 10; k++) dnnl_memory_destroy(memories[k]);
    for (int k = 0; k < 4; k++) free(b->buffers[k]);
}

/* ---------- PyTorch's times, read from bench/bn_torch.py's JSON lines ---------- */
typedef struct torch_time { int64_t n, c, h, w; int nhwc, threads, pass; double seconds; } torch_time;
static torch_time torch_times[512];
static int torch_time_count;

static void load_torch_times(const char *path)
{
    static const char *const passes[3] = {"fwd-train", "bwd-train", "fwd-eval"};
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_bn: cannot read %s; no PyTorch column\n", path);
        return;
    }
    char line[1024];
    while (fgets(line, sizeof line, f) && torch_time_count < 512) {
        cJSON *json = cJSON_Parse(line);
        if (!json) continue;
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(json, "shape");
        torch_time *t = &torch_times[torch_time_count];
        t->n = cJSON_GetArrayItem(shape, 0)->valueint, t->c = cJSON_GetArrayItem(shape, 1)->valueint;
        t->h = cJSON_GetArrayItem(shape, 2)->valueint, t->w = cJSON_GetArrayItem(shape, 3)->valueint;
        t->nhwc = strcmp(cJSON_GetObjectItemCaseSensitive(json, "layout")->valuestring, "NHWC") == 0;
        t->threads = cJSON_GetObjectItemCaseSensitive(json, "threads")->valueint;
        t->pass = -1;
        for (int k = 0; k < 3; k++)
            if (strcmp(cJSON_GetObjectItemCaseSensitive(json, "pass")->valuestring, passes[k]) == 0) t->pass = k;
        t->seconds = cJSON_GetObjectItemCaseSensitive(json, "seconds")->valuedouble;
        torch_time_count++;
        cJSON_Delete(json);
    }
    fclose(f);
}

static double torch_seconds(bench_shape s, sbn_layout layout, int threads, int pass)
{
    for (int k = 0; k < torch_time_count; k++) {
        const torch_time *t = &torch_times[k];
        if (t->n == s.n && t->c == s.c && t->h == s.h && t->w == s.w && t->nhwc == (layout == SBN_NSC) &&
            t->threads == threads && t->pass == pass)
            return t->seconds;
    }
    return NAN;
}

/* ---------- one row of the table ---------- */
enum { OURS, BOUND, DNNL_SAME, DNNL_BLOCKED, CONTENDERS };
static const char *const pass_names[3] = {"fwd-train", "bwd-train", "fwd-eval"};

typedef struct row_context {
    sbn_bn *bn;
    sbn_shape shape;
    float *x, *y, *dy, *dx;
    onednn_bn dnnl[2];
    dnnl_stream_t stream;
    int64_t count;
} row_context;

static void run_contender(row_context *r, int contender, int pass)
{
    switch (contender) {
    case OURS:
        if (pass == 0) sbn_bn_forward(r->bn, r->shape, r->x, r->y, true);
        else if (pass == 1) sbn_bn_backward(r->bn, r->shape, r->x, r->dy, r->dx);
        else sbn_bn_forward(r->bn, r->shape, r->x, r->y, false);
        break;
    case BOUND:
        if (pass == 1) add_pass(r->dx, r->x, r->dy, r->count);
        else copy_pass(r->y, r->x, r->count);
        break;
    default:
        if (r->dnnl[contender - DNNL_SAME].ok) onednn_run(&r->dnnl[contender - DNNL_SAME], r->stream, pass);
    }
}

static void bench_row(dnnl_engine_t engine, dnnl_stream_t stream, bench_shape s, sbn_layout layout, int threads,
                      int rounds)
{
    omp_set_num_threads(threads);
    row_context r = {.stream = stream, .count = s.n * s.c * s.h * s.w};
    r.shape = (sbn_shape){s.n, s.c, s.h * s.w, layout};
    r.x = aligned_floats(r.count), r.y = aligned_floats(r.count), r.dy = aligned_floats(r.count), r.dx = aligned_floats(r.count);
    sbn_bn_create(s.c, NULL, NULL, &r.bn);
    /* (N,C) is described to oneDNN as (N,C,1,1) nhwc: its 2-D nc path is slow. */
    const bool flat = s.h * s.w == 1;
    onednn_create(&r.dnnl[0], engine, s, flat || layout == SBN_NSC ? dnnl_nhwc : dnnl_nchw);
    onednn_create(&r.dnnl[1], engine, s, dnnl_nChw16c);
    sbn_bn_forward(r.bn, r.shape, r.x, r.y, true); /* backward needs a forward */
    for (int pass = 0; pass < 3; pass++) {
        double *times = calloc((size_t)(CONTENDERS * rounds), sizeof *times);
        for (int k = 0; k < rounds + 1; k++)
            for (int contender = 0; contender < CONTENDERS; contender++) {
                if (pass == 1 && contender == OURS) sbn_bn_forward(r.bn, r.shape, r.x, r.y, true);
                const double start = now_seconds();
                run_contender(&r, contender, pass);
                if (k > 0) times[contender * rounds + k - 1] = now_seconds() - start; /* round 0 warms up */
            }
        const double bytes = (pass == 1 ? 3.0 : 2.0) * (double)r.count * sizeof(float);
        double best[CONTENDERS], median[CONTENDERS];
        for (int contender = 0; contender < CONTENDERS; contender++) {
            qsort(times + contender * rounds, (size_t)rounds, sizeof *times, compare_doubles);
            best[contender] = times[contender * rounds];
            median[contender] = times[contender * rounds + rounds / 2];
        }
        const double best_dnnl = fmin(r.dnnl[0].ok ? best[DNNL_SAME] : INFINITY, r.dnnl[1].ok ? best[DNNL_BLOCKED] : INFINITY);
        const double torch = torch_seconds(s, layout, threads, pass);
        printf("| (%lld,%lld,%lld,%lld) | %s | %d | %s | %.3f | %.3f | %.1f | %.1f | %.2f | %.1f | %.1f | %.2f | %.1f | %.2f |\n",
               (long long)s.n, (long long)s.c, (long long)s.h, (long long)s.w, layout == SBN_NCS ? "NCHW" : "NHWC",
               threads, pass_names[pass], best[OURS] * 1e3, median[OURS] * 1e3, bytes / best[OURS] * 1e-9,
               bytes / best[BOUND] * 1e-9, best[BOUND] / best[OURS], bytes / best[DNNL_SAME] * 1e-9,
               bytes / best[DNNL_BLOCKED] * 1e-9, best_dnnl / best[OURS], bytes / torch * 1e-9, torch / best[OURS]);
        fflush(stdout);
        free(times);
    }
    onednn_destroy(&r.dnnl[0]), onednn_destroy(&r.dnnl[1]);
    sbn_bn_destroy(r.bn);
    free(r.x), free(r.y), free(r.dy), free(r.dx);
}

int main(int argc, char **argv)
{
    int rounds = 15, quick = 0;
    int thread_list[4] = {1, 2}, thread_count = 2;
    static const struct option long_options[] = {
        {"quick", no_argument, NULL, 'q'}, {"rounds", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 't'}, {"torch", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "qr:t:T:h", long_options, NULL)) != -1;) {
        if (opt == 'q') quick = 1, rounds = 3;
        else if (opt == 'T') load_torch_times(optarg);
        else if (opt == 'r') rounds = atoi(optarg) > 0 ? atoi(optarg) : 1;
        else if (opt == 't') {
            thread_count = 0;
            for (char *t = strtok(optarg, ","); t && thread_count < 4; t = strtok(NULL, ",")) thread_list[thread_count++] = atoi(t);
        } else {
            fprintf(stderr, "usage: %s [--quick] [--rounds R] [--threads 1,2] [--torch FILE]\n", argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    static const bench_shape shapes[] = {{32, 64, 56, 56}, {32, 256, 14, 14}, {8, 16, 32, 32},
                                         {256, 64, 8, 8},  {128, 512, 7, 7},  {4096, 1024, 1, 1}};
    static const bench_shape quick_shapes[] = {{8, 16, 32, 32}, {64, 32, 1, 1}};
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_engine_create(&engine, dnnl_cpu, 0);
    dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    printf("syncbn BN benchmark: best of %d rounds, contenders interleaved; GB/s on minimum bytes\n", rounds);
    printf("| shape | layout | threads | pass | syncbn ms (best) | ms (median) | syncbn GB/s | bound GB/s | "
           "syncbn/bound | oneDNN same GB/s | oneDNN nChw16c GB/s | syncbn/best oneDNN | PyTorch GB/s | "
           "syncbn/PyTorch |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    const bench_shape *list = quick ? quick_shapes : shapes;
    const size_t list_size = quick ? 2 : sizeof shapes / sizeof shapes[0];
    for (size_t i = 0; i < list_size; i++)
        for (int layout = SBN_NCS; layout <= SBN_NSC; layout++)
            for (int t = 0; t < thread_count; t++) bench_row(engine, stream, list[i], (sbn_layout)layout, thread_list[t], rounds);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
    return 0;
}
