/* BN kernel benchmark: syncbn vs the one-pass memory bound vs oneDNN, in one
 * run with contenders interleaved round by round (best and median of R).
 *
 * Effective GB/s use the minimum bytes a pass must move:
 *   training forward, eval forward: read x + write y     = 2 * X
 *   training backward:              read x, dy + write dx = 3 * X
 * The one-pass bound is a plain loop that moves exactly those bytes (a copy
 * for forward, dx = x + dy for backward): the physical limit on this machine.
 * oneDNN runs in four layouts: its blocked nChw8c (AVX2's block) and
 * nChw16c (AVX-512's), nhwc and nchw. "oneDNN same" is the layout of the row,
 * "oneDNN best" the fastest of the four, i.e. the best this CPU runs natively
 * (a block wider than the ISA runs oneDNN's reference code: the output names
 * the implementation each primitive took). PyTorch's times come from
 * bench/bn_torch.py run just before (--torch FILE). The output starts with the
 * CPU, its vector-ISA flags and oneDNN's view of them.
 *
 * Usage: bench_bn [--quick] [--rounds R] [--threads T,...] [--shape N,C,H,W] [--torch FILE]
 */
#include <cjson/cJSON.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <omp.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
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
/* The four layouts oneDNN's batch normalization is measured in: its blocked
 * layouts for AVX2 (8 channels per block) and AVX-512 (16), and the two plain
 * ones. "oneDNN best" is the fastest of them per row, so it is the best that
 * this CPU runs natively whatever its ISA (a blocked layout wider than the ISA
 * falls back to oneDNN's reference code, which the implementation names show). */
enum { DNNL_LAYOUTS = 4 };
static const dnnl_format_tag_t dnnl_tags[DNNL_LAYOUTS] = {dnnl_nChw8c, dnnl_nChw16c, dnnl_nhwc, dnnl_nchw};
static const char *const dnnl_tag_names[DNNL_LAYOUTS] = {"nChw8c", "nChw16c", "nhwc", "nchw"};
enum { DNNL_NCHW8C, DNNL_NCHW16C, DNNL_NHWC, DNNL_NCHW };

typedef struct onednn_bn {
    dnnl_primitive_t forward, backward, inference;
    dnnl_memory_t src, dst, diff_dst, diff_src, mean, variance, scale, shift, diff_scale, diff_shift;
    void *buffers[4];
    char impl[3][64]; /* the implementation each pass took (impl_info_str), by pass */
    bool ok;
} onednn_bn;

#define DNNL_CHECK(call)                                                                                       \
    do {                                                                                                       \
        if ((call) != dnnl_success) {                                                                          \
            fprintf(stderr, "oneDNN call failed: %s\n", #call);                                                \
            return false;                                                                                      \
        }                                                                                                      \
    } while (0)

static void copy_impl_name(char *out, size_t size, const_dnnl_primitive_desc_t pd)
{
    const char *name = NULL;
    if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) != dnnl_success || !name) name = "?";
    snprintf(out, size, "%s", name);
}

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
    copy_impl_name(b->impl[0], sizeof b->impl[0], fwd_pd);
    copy_impl_name(b->impl[1], sizeof b->impl[1], bwd_pd);
    copy_impl_name(b->impl[2], sizeof b->impl[2], inf_pd);
    DNNL_CHECK(dnnl_primitive_create(&b->forward, fwd_pd));
    DNNL_CHECK(dnnl_primitive_create(&b->inference, inf_pd));
    DNNL_CHECK(dnnl_primitive_create(&b->backward, bwd_pd));
    dnnl_primitive_desc_destroy(fwd_pd), dnnl_primitive_desc_destroy(inf_pd), dnnl_primitive_desc_destroy(bwd_pd);
    /* A blocked layout pads channels to a whole block: allocate what oneDNN says. */
    const int64_t count = (int64_t)(dnnl_memory_desc_get_size(&data_md) / sizeof(float));
    for (int k = 0; k < 4; k++)
        if (!(b->buffers[k] = aligned_floats(count))) return false;
    DNNL_CHECK(dnnl_memory_create(&b->src, &data_md, engine, b->buffers[0]));
    DNNL_CHECK(dnnl_memory_create(&b->dst, &data_md, engine, b->buffers[1]));
    DNNL_CHECK(dnnl_memory_create(&b->diff_dst, &data_md, engine, b->buffers[2]));
    DNNL_CHECK(dnnl_memory_create(&b->diff_src, &data_md, engine, b->buffers[3]));
    dnnl_memory_t *channel_memories[] = {&b->mean, &b->variance, &b->scale, &b->shift, &b->diff_scale, &b->diff_shift};
    for (int k = 0; k < 6; k++) {
        DNNL_CHECK(dnnl_memory_create(channel_memories[k], &channel_md, engine, DNNL_MEMORY_ALLOCATE));
        float *values = NULL;
        DNNL_CHECK(dnnl_memory_get_data_handle(*channel_memories[k], (void **)&values));
        for (int64_t i = 0; i < s.c; i++) values[i] = k == 1 || k == 2 ? 1.0f : 0.0f; /* variance, scale 1 */
    }
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
    dnnl_primitive_t primitives[] = {b->forward, b->backward, b->inference};
    for (int k = 0; k < 3; k++)
        if (primitives[k]) dnnl_primitive_destroy(primitives[k]);
    dnnl_memory_t memories[] = {b->src, b->dst, b->diff_dst, b->diff_src, b->mean, b->variance, b->scale, b->shift,
                                b->diff_scale, b->diff_shift};
    for (int k = 0; k < 10; k++)
        if (memories[k]) dnnl_memory_destroy(memories[k]);
    for (int k = 0; k < 4; k++) free(b->buffers[k]);
    memset(b, 0, sizeof *b);
}

/* ---------- PyTorch's times, read from bench/bn_torch.py's JSON lines ---------- */
/* bench/run.sh times PyTorch once with glibc malloc and once with jemalloc
 * preloaded (when installed); a row takes the faster, and says which. */
typedef struct torch_time { int64_t n, c, h, w; int nhwc, threads, pass, jemalloc; double seconds; } torch_time;
static torch_time torch_times[1024];
static int torch_time_count;
static int torch_rows_won[2]; /* rows where glibc / jemalloc gave PyTorch's time */

static void load_torch_times(const char *path)
{
    static const char *const passes[3] = {"fwd-train", "bwd-train", "fwd-eval"};
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "bench_bn: cannot read %s; no PyTorch column\n", path);
        return;
    }
    char line[1024];
    while (fgets(line, sizeof line, f) && torch_time_count < 1024) {
        if (line[0] == '#') continue; /* bn_torch.py's notes on the build it ran */
        cJSON *json = cJSON_Parse(line);
        if (!json) continue;
        const cJSON *shape = cJSON_GetObjectItemCaseSensitive(json, "shape");
        const cJSON *layout = cJSON_GetObjectItemCaseSensitive(json, "layout");
        const cJSON *threads = cJSON_GetObjectItemCaseSensitive(json, "threads");
        const cJSON *pass = cJSON_GetObjectItemCaseSensitive(json, "pass");
        const cJSON *seconds = cJSON_GetObjectItemCaseSensitive(json, "seconds");
        const cJSON *allocator = cJSON_GetObjectItemCaseSensitive(json, "allocator");
        if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) != 4 || !cJSON_IsString(layout) ||
            !cJSON_IsNumber(threads) || !cJSON_IsString(pass) || !cJSON_IsNumber(seconds)) {
            cJSON_Delete(json);
            continue;
        }
        torch_time *t = &torch_times[torch_time_count];
        t->n = cJSON_GetArrayItem(shape, 0)->valueint, t->c = cJSON_GetArrayItem(shape, 1)->valueint;
        t->h = cJSON_GetArrayItem(shape, 2)->valueint, t->w = cJSON_GetArrayItem(shape, 3)->valueint;
        t->nhwc = strcmp(layout->valuestring, "NHWC") == 0;
        t->threads = threads->valueint;
        t->pass = -1;
        for (int k = 0; k < 3; k++)
            if (strcmp(pass->valuestring, passes[k]) == 0) t->pass = k;
        t->jemalloc = cJSON_IsString(allocator) && strcmp(allocator->valuestring, "jemalloc") == 0;
        t->seconds = seconds->valuedouble;
        torch_time_count++;
        cJSON_Delete(json);
    }
    fclose(f);
}

/* The fastest of PyTorch's runs for this row (one per allocator), or NaN. */
static double torch_seconds(bench_shape s, sbn_layout layout, int threads, int pass)
{
    double best = NAN;
    int best_jemalloc = 0;
    for (int k = 0; k < torch_time_count; k++) {
        const torch_time *t = &torch_times[k];
        if (t->n == s.n && t->c == s.c && t->h == s.h && t->w == s.w && t->nhwc == (layout == SBN_NSC) &&
            t->threads == threads && t->pass == pass && !(t->seconds >= best))
            best = t->seconds, best_jemalloc = t->jemalloc;
    }
    if (!isnan(best)) torch_rows_won[best_jemalloc]++;
    return best;
}

/* ---------- the machine, as each contender sees it ---------- */
static void print_machine(void)
{
    char model[256] = "unknown", flags_line[8192] = "";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[8192];
        bool have_model = false, have_flags = false;
        while (fgets(line, sizeof line, f) && !(have_model && have_flags)) {
            char *colon = strchr(line, ':');
            if (!colon) continue;
            char *value = colon + 1 + (colon[1] == ' ');
            value[strcspn(value, "\n")] = '\0';
            if (!have_model && strncmp(line, "model name", 10) == 0) snprintf(model, sizeof model, "%s", value), have_model = true;
            if (!have_flags && strncmp(line, "flags", 5) == 0) snprintf(flags_line, sizeof flags_line, "%s", value), have_flags = true;
        }
        fclose(f);
    }
    /* The vector-ISA flags only (avx*, fma, amx*), as the kernel reports them. */
    char isa_flags[2048] = "";
    bool avx2 = false, avx512 = false;
    for (char *flag = strtok(flags_line, " "); flag; flag = strtok(NULL, " ")) {
        if (strncmp(flag, "avx", 3) != 0 && strcmp(flag, "fma") != 0 && strncmp(flag, "amx", 3) != 0) continue;
        avx2 |= strcmp(flag, "avx2") == 0, avx512 |= strcmp(flag, "avx512f") == 0;
        const size_t used = strlen(isa_flags);
        snprintf(isa_flags + used, sizeof isa_flags - used, "%s%s", used ? " " : "", flag);
    }
    const dnnl_version_t *v = dnnl_version();
    printf("CPU: %s, %d logical CPUs available to OpenMP\n", model, omp_get_num_procs());
    printf("CPU vector-ISA flags: %s\n", isa_flags[0] ? isa_flags : "(none)");
    printf("Widest vectors: %s\n", avx512 ? "AVX-512 (oneDNN's native blocked layout: nChw16c)"
                                   : avx2 ? "AVX2 (oneDNN's native blocked layout: nChw8c; nChw16c runs its reference code)"
                                          : "narrower than AVX2");
    printf("oneDNN %d.%d.%d (%s threading): effective ISA %s\n", v->major, v->minor, v->patch,
           v->cpu_runtime == DNNL_RUNTIME_OMP ? "OpenMP" : v->cpu_runtime == DNNL_RUNTIME_SEQ ? "sequential" : "other",
           dnnl_cpu_isa2str(dnnl_get_effective_cpu_isa()));
    printf("syncbn: built with -march=native (SYNCBN_NATIVE) for the CPU it was built on%s\n",
#if defined(__AVX512F__)
           ", here AVX-512 (__AVX512F__)"
#elif defined(__AVX2__)
           ", here AVX2 (__AVX2__)"
#else
           ""
#endif
    );
}

/* ---------- one shape at one thread count: every contender interleaved ---------- */
/* Our kernels in both layouts, the bound, and oneDNN in its four layouts run in
 * the same rounds; oneDNN's times are layout-independent of our rows, so the
 * NCHW and NHWC rows of a shape and thread count quote the same oneDNN runs. */
enum { OURS_NCS, OURS_NSC, BOUND, DNNL_FIRST, CONTENDERS = DNNL_FIRST + DNNL_LAYOUTS };
static const char *const pass_names[3] = {"fwd-train", "bwd-train", "fwd-eval"};

typedef struct ours {
    sbn_bn *bn;
    sbn_shape shape;
    float *x, *y, *dy, *dx;
} ours;

typedef struct row_context {
    ours ours[2]; /* by sbn_layout */
    onednn_bn dnnl[DNNL_LAYOUTS];
    dnnl_stream_t stream;
    int64_t count;
} row_context;

typedef struct row_result {
    double best[3][CONTENDERS], median[3][CONTENDERS]; /* seconds, by pass */
    long preempted; /* involuntary context switches while the block ran */
} row_result;

static void run_contender(row_context *r, int contender, int pass)
{
    if (contender == OURS_NCS || contender == OURS_NSC) {
        ours *o = &r->ours[contender - OURS_NCS];
        if (pass == 0) sbn_bn_forward(o->bn, o->shape, o->x, o->y, true);
        else if (pass == 1) sbn_bn_backward(o->bn, o->shape, o->x, o->dy, o->dx);
        else sbn_bn_forward(o->bn, o->shape, o->x, o->y, false);
    } else if (contender == BOUND) {
        ours *o = &r->ours[0];
        if (pass == 1) add_pass(o->dx, o->x, o->dy, r->count);
        else copy_pass(o->y, o->x, r->count);
    } else if (r->dnnl[contender - DNNL_FIRST].ok) {
        onednn_run(&r->dnnl[contender - DNNL_FIRST], r->stream, pass);
    }
}

static void bench_shape_threads(dnnl_engine_t engine, dnnl_stream_t stream, bench_shape s, int threads, int rounds,
                                row_result *result, onednn_bn *dnnl_out)
{
    omp_set_num_threads(threads);
    row_context r = {.stream = stream, .count = s.n * s.c * s.h * s.w};
    for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
        ours *o = &r.ours[layout];
        o->shape = (sbn_shape){s.n, s.c, s.h * s.w, (sbn_layout)layout};
        o->x = aligned_floats(r.count), o->y = aligned_floats(r.count);
        o->dy = aligned_floats(r.count), o->dx = aligned_floats(r.count);
        sbn_bn_create(s.c, NULL, NULL, &o->bn);
        sbn_bn_forward(o->bn, o->shape, o->x, o->y, true); /* backward needs a forward */
    }
    for (int k = 0; k < DNNL_LAYOUTS; k++)
        if (!onednn_create(&r.dnnl[k], engine, s, dnnl_tags[k])) onednn_destroy(&r.dnnl[k]);
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    result->preempted = -usage.ru_nivcsw;
    for (int pass = 0; pass < 3; pass++) {
        double *times = calloc((size_t)(CONTENDERS * rounds), sizeof *times);
        for (int k = 0; k < rounds + 1; k++)
            for (int contender = 0; contender < CONTENDERS; contender++) {
                if (pass == 1 && contender <= OURS_NSC) {
                    ours *o = &r.ours[contender - OURS_NCS];
                    sbn_bn_forward(o->bn, o->shape, o->x, o->y, true);
                }
                run_contender(&r, contender, pass); /* warm, as bn_torch.py's back-to-back calls are */
                const double start = now_seconds();
                run_contender(&r, contender, pass);
                if (k > 0) times[contender * rounds + k - 1] = now_seconds() - start; /* round 0 warms up */
            }
        for (int contender = 0; contender < CONTENDERS; contender++) {
            const bool ran = contender < DNNL_FIRST || r.dnnl[contender - DNNL_FIRST].ok;
            qsort(times + contender * rounds, (size_t)rounds, sizeof *times, compare_doubles);
            result->best[pass][contender] = ran ? times[contender * rounds] : NAN;
            result->median[pass][contender] = ran ? times[contender * rounds + rounds / 2] : NAN;
        }
        free(times);
    }
    getrusage(RUSAGE_SELF, &usage);
    result->preempted += usage.ru_nivcsw;
    for (int k = 0; k < DNNL_LAYOUTS; k++) {
        memcpy(dnnl_out[k].impl, r.dnnl[k].impl, sizeof r.dnnl[k].impl);
        dnnl_out[k].ok = r.dnnl[k].ok;
        onednn_destroy(&r.dnnl[k]);
    }
    for (int layout = SBN_NCS; layout <= SBN_NSC; layout++) {
        ours *o = &r.ours[layout];
        sbn_bn_destroy(o->bn);
        free(o->x), free(o->y), free(o->dy), free(o->dx);
    }
}

static double gbps(double bytes, double seconds) { return bytes / seconds * 1e-9; }

static void print_row(bench_shape s, sbn_layout layout, int threads, int pass, const row_result *res)
{
    const double count = (double)(s.n * s.c * s.h * s.w);
    const double bytes = (pass == 1 ? 3.0 : 2.0) * count * sizeof(float);
    const double *best = res->best[pass], *median = res->median[pass];
    const int ours = layout == SBN_NCS ? OURS_NCS : OURS_NSC;
    /* (N,C) is described to oneDNN as (N,C,1,1) nhwc: its 2-D nc path is slow. */
    const bool flat = s.h * s.w == 1;
    const int same = DNNL_FIRST + (flat || layout == SBN_NSC ? DNNL_NHWC : DNNL_NCHW);
    int fastest = -1;
    for (int k = DNNL_FIRST; k < CONTENDERS; k++)
        if (!isnan(best[k]) && (fastest < 0 || best[k] < best[fastest])) fastest = k;
    const double best_dnnl = fastest < 0 ? NAN : best[fastest];
    const double torch = torch_seconds(s, layout, threads, pass);
    printf("| (%lld,%lld,%lld,%lld) | %s | %d | %s | %.3f | %.3f | %.1f | %.1f | %.2f | %.1f | %.1f | %s | %.2f | %.1f | %.2f |\n",
           (long long)s.n, (long long)s.c, (long long)s.h, (long long)s.w, layout == SBN_NCS ? "NCHW" : "NHWC", threads,
           pass_names[pass], best[ours] * 1e3, median[ours] * 1e3, gbps(bytes, best[ours]), gbps(bytes, best[BOUND]),
           best[BOUND] / best[ours], gbps(bytes, best[same]), gbps(bytes, best_dnnl),
           fastest < 0 ? "-" : dnnl_tag_names[fastest - DNNL_FIRST], best_dnnl / best[ours], gbps(bytes, torch),
           torch / best[ours]);
}

/* Per shape, thread count and pass: oneDNN's GB/s in each layout with the
 * implementation it took (impl_info_str), so a reader sees each code path. */
static void print_dnnl_row(bench_shape s, int threads, int pass, const row_result *res, const onednn_bn *dnnl)
{
    const double bytes = (pass == 1 ? 3.0 : 2.0) * (double)(s.n * s.c * s.h * s.w) * sizeof(float);
    printf("| (%lld,%lld,%lld,%lld) | %d | %s |", (long long)s.n, (long long)s.c, (long long)s.h, (long long)s.w,
           threads, pass_names[pass]);
    for (int k = 0; k < DNNL_LAYOUTS; k++) {
        if (dnnl[k].ok) printf(" %.1f `%s` |", gbps(bytes, res->best[pass][DNNL_FIRST + k]), dnnl[k].impl[pass]);
        else printf(" failed |");
    }
    printf("\n");
}

/* Which implementations each layout took over all rows, with how many rows. */
typedef struct impl_tally { char name[64]; int rows; } impl_tally;

static void tally_impl(impl_tally *tally, int *size, const char *name)
{
    for (int k = 0; k < *size; k++)
        if (strcmp(tally[k].name, name) == 0) {
            tally[k].rows++;
            return;
        }
    if (*size < 16) {
        snprintf(tally[*size].name, sizeof tally[*size].name, "%s", name);
        tally[(*size)++].rows = 1;
    }
}

/* ---------- 16-bit activations and fused ReLU: our layer against itself ---------- */
/* Per shape, layout and thread count, interleaved in the same rounds:
 * float32, bfloat16 and float16 activations through the same layer, and the
 * copy bound of the 16-bit bytes; then BN + a separate ReLU pass against the
 * fused layer. */
enum { MIXED_F32, MIXED_BF16, MIXED_F16, MIXED_BOUND16, MIXED_SEPARATE, MIXED_FUSED, MIXED_CONTENDERS };

typedef struct mixed_context {
    sbn_bn *bn[MIXED_CONTENDERS];
    sbn_shape shape[MIXED_CONTENDERS];
    void *x[3], *dy[3]; /* inputs by type: float32, bfloat16, float16 */
    void *y, *dx;       /* float32-sized: big enough for every type */
    float *relu_y, *relu_dy;
    int64_t count;
} mixed_context;

static int type_slot(sbn_dtype type) { return type == SBN_DTYPE_BF16 ? 1 : type == SBN_DTYPE_F16 ? 2 : 0; }

static void mixed_run(mixed_context *m, int contender, int pass)
{
    if (contender == MIXED_BOUND16) {
        /* the 16-bit bytes: half as many floats */
        if (pass == 1) add_pass(m->dx, m->x[0], m->dy[0], m->count / 2);
        else copy_pass(m->y, m->x[0], m->count / 2);
        return;
    }
    sbn_bn *bn = m->bn[contender];
    const sbn_shape shape = m->shape[contender];
    const void *x = m->x[type_slot(shape.dtype)], *dy = m->dy[type_slot(shape.dtype)];
    const bool separate = contender == MIXED_SEPARATE;
    if (pass == 1) {
        if (separate) sbn_relu_backward(m->relu_dy, dy, m->relu_y, m->count);
        sbn_bn_backward(bn, shape, x, separate ? m->relu_dy : dy, m->dx);
    } else {
        sbn_bn_forward(bn, shape, x, m->y, pass == 0);
        if (separate) sbn_relu_forward(m->relu_y, m->y, m->count);
    }
}

/* Inputs in [-1, 1), pseudo-random; dy from another stream than x (dy == x,
 * or two correlated patterns, make dx cancel almost everywhere, which sends
 * the 16-bit passes' values to their exact recomputation). */
static void *activations(sbn_dtype type, int64_t count, int64_t multiplier)
{
    float *values = aligned_floats(count);
    void *out = aligned_floats(count);
    uint64_t state = (uint64_t)multiplier;
    for (int64_t i = 0; i < count; i++) { /* xorshift: no pattern shared with the other tensor */
        state ^= state << 13, state ^= state >> 7, state ^= state << 17;
        values[i] = (float)(state >> 40) * 0x1p-23f - 1.0f;
    }
    sbn_convert_from_float(out, type, values, count);
    free(values);
    return out;
}

static void bench_mixed(bench_shape s, sbn_layout layout, int threads, int rounds)
{
    omp_set_num_threads(threads);
    mixed_context m = {.count = s.n * s.c * s.h * s.w};
    static const sbn_dtype slots[3] = {SBN_DTYPE_F32, SBN_DTYPE_BF16, SBN_DTYPE_F16};
    for (int t = 0; t < 3; t++) m.x[t] = activations(slots[t], m.count, 7919), m.dy[t] = activations(slots[t], m.count, 104729);
    m.y = aligned_floats(m.count), m.dx = aligned_floats(m.count);
    m.relu_y = aligned_floats(m.count), m.relu_dy = aligned_floats(m.count);
    static const sbn_dtype types[MIXED_CONTENDERS] = {SBN_DTYPE_F32, SBN_DTYPE_BF16, SBN_DTYPE_F16,
                                                      SBN_DTYPE_F32, SBN_DTYPE_F32, SBN_DTYPE_F32};
    for (int k = 0; k < MIXED_CONTENDERS; k++) {
        sbn_bn_options options = sbn_bn_defaults();
        options.fuse_relu = k == MIXED_FUSED;
        m.shape[k] = (sbn_shape){s.n, s.c, s.h * s.w, layout, types[k]};
        m.bn[k] = NULL;
        if (k != MIXED_BOUND16) {
            sbn_bn_create(s.c, &options, NULL, &m.bn[k]);
            for (int64_t c = 0; c < s.c; c++) sbn_bn_bias(m.bn[k])[c] = 0.25f * (float)(c % 3); /* y crosses 0 */
        }
    }
    double best[3][MIXED_CONTENDERS];
    double *times = calloc((size_t)(MIXED_CONTENDERS * rounds), sizeof *times);
    for (int pass = 0; pass < 3; pass++) {
        for (int k = 0; k < rounds + 1; k++)
            for (int contender = 0; contender < MIXED_CONTENDERS; contender++) {
                if (pass == 1 && contender != MIXED_BOUND16) mixed_run(&m, contender, 0); /* backward needs a forward */
                mixed_run(&m, contender, pass); /* warm */
                const double start = now_seconds();
                mixed_run(&m, contender, pass);
                if (k > 0) times[contender * rounds + k - 1] = now_seconds() - start;
            }
        for (int contender = 0; contender < MIXED_CONTENDERS; contender++) {
            qsort(times + contender * rounds, (size_t)rounds, sizeof *times, compare_doubles);
            best[pass][contender] = times[contender * rounds];
        }
    }
    for (int pass = 0; pass < 3; pass++) {
        const double *b = best[pass];
        const double bytes16 = (pass == 1 ? 3.0 : 2.0) * (double)m.count * 2.0;
        printf("| (%lld,%lld,%lld,%lld) | %s | %d | %s | %.3f | %.3f | %.3f | %.1f | %.1f | %.1f | %.2f | %.2f | "
               "%.3f | %.3f | %.2f |\n",
               (long long)s.n, (long long)s.c, (long long)s.h, (long long)s.w, layout == SBN_NCS ? "NCHW" : "NHWC",
               threads, pass_names[pass], b[MIXED_F32] * 1e3, b[MIXED_BF16] * 1e3, b[MIXED_F16] * 1e3,
               gbps(bytes16, b[MIXED_BF16]), gbps(bytes16, b[MIXED_F16]), gbps(bytes16, b[MIXED_BOUND16]),
               b[MIXED_F32] / b[MIXED_BF16], b[MIXED_F32] / b[MIXED_F16], b[MIXED_SEPARATE] * 1e3,
               b[MIXED_FUSED] * 1e3, b[MIXED_SEPARATE] / b[MIXED_FUSED]);
    }
    free(times);
    for (int k = 0; k < MIXED_CONTENDERS; k++) sbn_bn_destroy(m.bn[k]);
    for (int t = 0; t < 3; t++) free(m.x[t]), free(m.dy[t]);
    free(m.y), free(m.dx), free(m.relu_y), free(m.relu_dy);
}

static void print_mixed_tables(const bench_shape *list, size_t list_size, const int *thread_list, int thread_count,
                               int rounds)
{
    printf("\n16-bit activations (float32 weight and statistics) and fused BN+ReLU, our layer only: best of %d "
           "rounds, interleaved. GB/s on the 16-bit bytes; bound = a copy of those bytes. separate = BN then a "
           "ReLU pass (float32), fused = the layer with fuse_relu\n\n", rounds);
    printf("| shape | layout | threads | pass | f32 ms | bf16 ms | f16 ms | bf16 GB/s | f16 GB/s | bound GB/s (16-bit "
           "bytes) | f32/bf16 | f32/f16 | BN+ReLU separate ms | fused ms | separate/fused |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < list_size; i++)
        for (int layout = SBN_NCS; layout <= SBN_NSC; layout++)
            for (int t = 0; t < thread_count; t++) {
                bench_mixed(list[i], (sbn_layout)layout, thread_list[t], rounds);
                fflush(stdout);
            }
}

/* ---------- ablation: where a training forward's time goes ---------- */
/* Per shape, layout and thread count, interleaved: the statistics pass alone
 * (sbn_kernel_channel_stats), the normalize pass alone, the fused training
 * forward, a copy (read x, write y) and a read-only sum of x in float (the
 * least a statistics pass must do). Shows which rows the double-precision
 * statistics bound. */
enum { ABL_STATS, ABL_NORMALIZE, ABL_FORWARD, ABL_COPY, ABL_READ, ABLATIONS };

static float read_pass(const float *restrict x, int64_t count)
{
    float total = 0.0f;
#pragma omp parallel for simd reduction(+ : total) schedule(static)
    for (int64_t i = 0; i < count; i++) total += x[i];
    return total;
}

static void bench_ablation(bench_shape s, sbn_layout layout, int threads, int rounds)
{
    omp_set_num_threads(threads);
    const int64_t count = s.n * s.c * s.h * s.w;
    const sbn_shape shape = {s.n, s.c, s.h * s.w, layout, SBN_DTYPE_F32};
    float *x = activations(SBN_DTYPE_F32, count, 7919), *y = aligned_floats(count);
    double *mean = calloc((size_t)s.c, sizeof *mean), *m2 = calloc((size_t)s.c, sizeof *m2);
    double *invstd = calloc((size_t)s.c, sizeof *invstd);
    sbn_kernel_forward_train(y, mean, m2, invstd, shape, x, NULL, NULL, 1e-5);
    double best[ABLATIONS];
    volatile float sink = 0.0f;
    for (int k = 0; k < ABLATIONS; k++) best[k] = INFINITY;
    for (int round = 0; round < rounds; round++)
        for (int k = 0; k < ABLATIONS; k++)
            for (int warm = 0; warm < 2; warm++) {
                const double start = now_seconds();
                if (k == ABL_STATS) sbn_kernel_channel_stats(mean, m2, shape, x);
                else if (k == ABL_NORMALIZE) sbn_kernel_normalize(y, shape, x, mean, invstd, NULL, NULL);
                else if (k == ABL_FORWARD) sbn_kernel_forward_train(y, mean, m2, invstd, shape, x, NULL, NULL, 1e-5);
                else if (k == ABL_COPY) copy_pass(y, x, count);
                else sink += read_pass(x, count);
                const double seconds = now_seconds() - start;
                if (warm && seconds < best[k]) best[k] = seconds;
            }
    (void)sink;
    printf("| (%lld,%lld,%lld,%lld) | %s | %d | %.3f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f |\n", (long long)s.n,
           (long long)s.c, (long long)s.h, (long long)s.w, layout == SBN_NCS ? "NCHW" : "NHWC", threads,
           best[ABL_STATS] * 1e3, best[ABL_NORMALIZE] * 1e3, best[ABL_FORWARD] * 1e3, best[ABL_COPY] * 1e3,
           best[ABL_READ] * 1e3, best[ABL_STATS] / best[ABL_READ], best[ABL_FORWARD] / best[ABL_COPY]);
    free(x), free(y), free(mean), free(m2), free(invstd);
}

static void print_ablation_table(const bench_shape *list, size_t list_size, const int *thread_list, int thread_count,
                                 int rounds)
{
    printf("\nAblation, float32 training forward (best of %d, warm): the statistics pass alone, the normalize pass "
           "alone, both fused, a copy of x and a float sum of x (the least a statistics pass reads)\n\n", rounds);
    printf("| shape | layout | threads | stats ms | normalize ms | fwd-train ms | copy ms | read ms | stats/read | "
           "fwd-train/copy |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < list_size; i++)
        for (int layout = SBN_NCS; layout <= SBN_NSC; layout++)
            for (int t = 0; t < thread_count; t++) {
                bench_ablation(list[i], (sbn_layout)layout, thread_list[t], rounds);
                fflush(stdout);
            }
}

int main(int argc, char **argv)
{
    int rounds = 15, quick = 0, mixed = 1, peers = 1, ablation = 0;
    int thread_list[4] = {1, 2}, thread_count = 2;
    const char *shape_filter = NULL;
    static const struct option long_options[] = {
        {"quick", no_argument, NULL, 'q'},        {"rounds", required_argument, NULL, 'r'},
        {"threads", required_argument, NULL, 't'}, {"torch", required_argument, NULL, 'T'},
        {"shape", required_argument, NULL, 's'},   {"help", no_argument, NULL, 'h'},
        {"only-mixed", no_argument, NULL, 'm'},   {"no-mixed", no_argument, NULL, 'M'},
        {"ablation", no_argument, NULL, 'a'},
        {NULL, 0, NULL, 0}};
    for (int opt; (opt = getopt_long(argc, argv, "qr:t:T:s:hmMa", long_options, NULL)) != -1;) {
        if (opt == 'q') quick = 1, rounds = 3;
        else if (opt == 'a') ablation = 1, peers = 0, mixed = 0;
        else if (opt == 'm') peers = 0, mixed = 1;
        else if (opt == 'M') mixed = 0;
        else if (opt == 'T') load_torch_times(optarg);
        else if (opt == 'r') rounds = atoi(optarg) > 0 ? atoi(optarg) : 1;
        else if (opt == 's') shape_filter = optarg;
        else if (opt == 't') {
            thread_count = 0;
            for (char *t = strtok(optarg, ","); t && thread_count < 4; t = strtok(NULL, ","))
                if (atoi(t) > 0) thread_list[thread_count++] = atoi(t);
            if (thread_count == 0) thread_list[thread_count++] = 1;
        } else {
            fprintf(stderr, "usage: %s [--quick] [--rounds R] [--threads 1,2] [--shape N,C,H,W] [--torch FILE] "
                            "[--only-mixed | --no-mixed | --ablation]\n",
                    argv[0]);
            return opt == 'h' ? 0 : 2;
        }
    }
    static const bench_shape shapes[] = {{32, 64, 56, 56}, {32, 256, 14, 14}, {8, 16, 32, 32},
                                         {256, 64, 8, 8},  {128, 512, 7, 7},  {4096, 1024, 1, 1}};
    static const bench_shape quick_shapes[] = {{8, 16, 32, 32}, {64, 32, 1, 1}};
    bench_shape one_shape;
    const bench_shape *list = quick ? quick_shapes : shapes;
    size_t list_size = quick ? 2 : sizeof shapes / sizeof shapes[0];
    if (shape_filter) {
        long long n, c, h, w;
        if (sscanf(shape_filter, "%lld,%lld,%lld,%lld", &n, &c, &h, &w) != 4 || n < 1 || c < 1 || h < 1 || w < 1) {
            fprintf(stderr, "bench_bn: --shape wants N,C,H,W (positive), got '%s'\n", shape_filter);
            return 2;
        }
        one_shape = (bench_shape){n, c, h, w}, list = &one_shape, list_size = 1;
    }
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_engine_create(&engine, dnnl_cpu, 0);
    dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
    print_machine();
    if (!peers) {
        if (mixed) print_mixed_tables(list, list_size, thread_list, thread_count, rounds);
        if (ablation) print_ablation_table(list, list_size, thread_list, thread_count, rounds);
        return 0;
    }
    printf("\nsyncbn BN benchmark: best of %d rounds, contenders interleaved, each call timed right after an "
           "untimed one on the same data (warm caches, as bn_torch.py times PyTorch's back-to-back calls); GB/s on "
           "minimum bytes. oneDNN best = fastest of nChw8c, nChw16c, nhwc, nchw per row (layout named)\n\n", rounds);
    printf("| shape | layout | threads | pass | syncbn ms (best) | ms (median) | syncbn GB/s | bound GB/s | "
           "syncbn/bound | oneDNN same GB/s | oneDNN best GB/s | oneDNN best layout | syncbn/best oneDNN | "
           "PyTorch GB/s | syncbn/PyTorch |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    row_result *results = calloc(list_size * (size_t)thread_count, sizeof *results);
    onednn_bn *impls = calloc(list_size * DNNL_LAYOUTS, sizeof *impls); /* names only; by shape, layout */
    for (size_t i = 0; i < list_size; i++) {
        for (int t = 0; t < thread_count; t++)
            bench_shape_threads(engine, stream, list[i], thread_list[t], rounds, &results[i * thread_count + t],
                                &impls[i * DNNL_LAYOUTS]);
        for (int layout = SBN_NCS; layout <= SBN_NSC; layout++)
            for (int t = 0; t < thread_count; t++)
                for (int pass = 0; pass < 3; pass++)
                    print_row(list[i], (sbn_layout)layout, thread_list[t], pass, &results[i * thread_count + t]);
        fflush(stdout);
    }
    if (torch_time_count)
        printf("\nPyTorch column: per row the faster of its runs with glibc malloc and with jemalloc "
               "(bench/run.sh, when jemalloc is installed): glibc in %d rows, jemalloc in %d\n",
               torch_rows_won[0], torch_rows_won[1]);
    printf("\noneDNN by layout (GB/s of the same runs, and the implementation each primitive took)\n\n");
    printf("| shape | threads | pass |");
    for (int k = 0; k < DNNL_LAYOUTS; k++) printf(" %s |", dnnl_tag_names[k]);
    printf("\n|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < list_size; i++)
        for (int t = 0; t < thread_count; t++)
            for (int pass = 0; pass < 3; pass++)
                print_dnnl_row(list[i], thread_list[t], pass, &results[i * thread_count + t], &impls[i * DNNL_LAYOUTS]);
    printf("\noneDNN implementations per layout (shapes x passes):\n");
    for (int k = 0; k < DNNL_LAYOUTS; k++) {
        impl_tally tally[16];
        int size = 0;
        for (size_t i = 0; i < list_size; i++)
            for (int pass = 0; pass < 3; pass++)
                tally_impl(tally, &size, impls[i * DNNL_LAYOUTS + k].ok ? impls[i * DNNL_LAYOUTS + k].impl[pass] : "failed");
        printf("  %-8s", dnnl_tag_names[k]);
        for (int j = 0; j < size; j++) printf("%s %s (%d)", j ? "," : "", tally[j].name, tally[j].rows);
        printf("\n");
    }
    /* The machine may be shared: other processes taking a core show up as
     * involuntary context switches, and a 2-thread pass whose thread lost its
     * core waits at every barrier. Said here so a reader can discount rows. */
    printf("\nInvoluntary context switches (other processes taking a core) while each shape ran, "
           "by thread count; a quiet machine shows a few:\n");
    for (size_t i = 0; i < list_size; i++) {
        printf("  (%lld,%lld,%lld,%lld)", (long long)list[i].n, (long long)list[i].c, (long long)list[i].h,
               (long long)list[i].w);
        for (int t = 0; t < thread_count; t++)
            printf("%s %d thread%s: %ld", t ? "," : "", thread_list[t], thread_list[t] == 1 ? "" : "s",
                   results[i * thread_count + t].preempted);
        printf("\n");
    }
    double load[3] = {0};
    FILE *loadavg = fopen("/proc/loadavg", "r");
    if (loadavg) {
        if (fscanf(loadavg, "%lf %lf %lf", &load[0], &load[1], &load[2]) == 3)
            printf("Load average at the end (1, 5, 15 min): %.2f %.2f %.2f on %d CPUs\n", load[0], load[1], load[2],
                   omp_get_num_procs());
        fclose(loadavg);
    }
    if (mixed) print_mixed_tables(list, list_size, thread_list, thread_count, rounds);
    free(results), free(impls);
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
    return 0;
}
