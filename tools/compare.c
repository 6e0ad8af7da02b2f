/* `syncbn compare`: the experiment. Three trainings with the same seed,
 * initial weights and data order:
 *   (a) 1 process, global batch B, BN
 *   (b) P ranks x B/P, plain BN (statistics of B/P samples each)
 *   (c) P ranks x B/P, SyncBN (statistics of all B samples)
 * then a table, summary.json, steps.csv and a PNG plot in --out. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

/* Longest --out: every path below is the folder, a slash and a name of at most 20 bytes. */
enum { MAX_OUT_LENGTH = PATH_MAX - 32 };

typedef struct run {
    const char *name, *norm;
    int ranks;
    double *losses; /* per step */
    int64_t steps;
    double final_train_loss, test_accuracy, ms_per_step, running_mean_spread;
    double max_rel_loss_dev_10, max_rel_loss_dev_100;
} run;

static void compare_usage(FILE *out)
{
    fprintf(out,
            "usage: syncbn compare [options]\n\n"
            "Trains the same model three times with the same seed, initial weights and data order:\n"
            "  (a) 1 process with the global batch B, BN\n"
            "  (b) P ranks with B/P each, plain BN (each rank normalizes by its own B/P samples)\n"
            "  (c) P ranks with B/P each, SyncBN (statistics over all B samples)\n"
            "and prints how (b) and (c) compare with (a). Runs go through $SYNCBN_MPIEXEC, or else\n"
            "the mpiexec of the MPI this syncbn was built with (" SYNCBN_BUILT_MPIEXEC ").\n"
            "Writes summary.json, steps.csv, run_{a,b,c}.jsonl and compare.png to --out.\n\n"
            "  --ranks P              ranks of runs b and c, 2 to 1024 (default 4)\n"
            "  --batch B              global batch (default 32)\n"
            "  --epochs E             epochs (default 1)\n"
            "  --steps N              stop each run after N steps (quick looks)\n"
            "  --model seed|convnet   (default convnet)\n"
            "  --seed S               (default 1)\n"
            "  --out DIR              output folder (default out/compare)\n"
            "  --lr X, --lr-schedule S, --momentum X, --weight-decay X, --data DIR, --threads T,\n"
            "  --train-samples N\n"
            "                         as for `syncbn train`\n"
            "  --no-plot              skip the PNG\n"
            "  --help                 this text\n");
}

/* The launcher of the MPI this binary links: another MPI's mpiexec would
 * start P singletons, each training alone, and (b) and (c) would silently
 * be runs of one rank. */
static const char *launcher(void)
{
    const char *named = getenv("SYNCBN_MPIEXEC");
    return named && *named ? named : SYNCBN_BUILT_MPIEXEC;
}

/* Starts argv[0] (searched on PATH) with argv: no shell, so no argument is
 * ever interpreted as code. In `dir` when not NULL; stdout and stderr into
 * `output` when >= 0. Returns the child's pid, or -1 (message printed). */
static pid_t start(char *const argv[], const char *dir, int output)
{
    const pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "syncbn compare: cannot start %s: %s\n", argv[0], strerror(errno));
        return -1;
    }
    if (pid == 0) {
        if (dir && chdir(dir) != 0) {
            fprintf(stderr, "syncbn compare: cannot enter %s: %s\n", dir, strerror(errno));
            _exit(127);
        }
        if (output >= 0 && (dup2(output, STDOUT_FILENO) < 0 || dup2(output, STDERR_FILENO) < 0)) _exit(127);
        execvp(argv[0], argv);
        fprintf(stderr, "syncbn compare: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127); /* what a shell returns for a command it cannot run */
    }
    return pid;
}

/* The child's exit status; -1 when it did not exit normally. */
static int wait_for(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int run_program(char *const argv[], const char *dir)
{
    const pid_t pid = start(argv, dir, -1);
    return pid < 0 ? -1 : wait_for(pid);
}

/* Whether `launcher --version` says Open MPI (which needs --oversubscribe). */
static bool launcher_is_open_mpi(void)
{
    int pipe_ends[2];
    if (pipe(pipe_ends) != 0) return false;
    char *argv[] = {(char *)launcher(), "--version", NULL};
    const pid_t pid = start(argv, NULL, pipe_ends[1]);
    close(pipe_ends[1]);
    FILE *version = pid < 0 ? NULL : fdopen(pipe_ends[0], "r");
    if (!version) {
        close(pipe_ends[0]);
        if (pid >= 0) wait_for(pid);
        return false;
    }
    char line[256];
    bool open_mpi = false;
    while (fgets(line, sizeof line, version))
        open_mpi = open_mpi || strstr(line, "Open MPI") || strstr(line, "OpenRTE");
    fclose(version);
    wait_for(pid);
    return open_mpi;
}

static int launch(const char *self, const sbn_train_options *o, const run *r, const char *metrics, bool open_mpi)
{
    char ranks[16], batch[32], epochs[32], steps[32], lr[32], momentum[32], decay[32], seed[32], threads[16], samples[32];
    /* Numbers as `train` parses them back: integers whole, reals with all 17 digits. */
    snprintf(ranks, sizeof ranks, "%d", r->ranks);
    snprintf(batch, sizeof batch, "%lld", (long long)o->global_batch);
    snprintf(epochs, sizeof epochs, "%lld", (long long)o->epochs);
    snprintf(steps, sizeof steps, "%lld", (long long)o->max_steps);
    snprintf(lr, sizeof lr, "%.17g", o->lr);
    snprintf(momentum, sizeof momentum, "%.17g", o->momentum);
    snprintf(decay, sizeof decay, "%.17g", o->weight_decay);
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    snprintf(threads, sizeof threads, "%d", o->threads);
    snprintf(samples, sizeof samples, "%lld", (long long)o->train_samples);
    char *argv[64];
    int k = 0;
    argv[k++] = (char *)launcher();
    argv[k++] = "-n", argv[k++] = ranks;
    if (open_mpi) argv[k++] = "--oversubscribe";
    argv[k++] = (char *)self, argv[k++] = "train";
    argv[k++] = "--model", argv[k++] = o->model == SBN_MODEL_SEED ? "seed" : "convnet";
    argv[k++] = "--norm", argv[k++] = (char *)r->norm;
    argv[k++] = "--batch", argv[k++] = batch, argv[k++] = "--epochs", argv[k++] = epochs;
    if (o->max_steps > 0) argv[k++] = "--steps", argv[k++] = steps; /* 0: run the epochs */
    argv[k++] = "--lr", argv[k++] = lr;
    argv[k++] = "--momentum", argv[k++] = momentum, argv[k++] = "--weight-decay", argv[k++] = decay;
    argv[k++] = "--seed", argv[k++] = seed, argv[k++] = "--threads", argv[k++] = threads;
    argv[k++] = "--lr-schedule", argv[k++] = o->lr_schedule == SBN_LR_COSINE ? "cosine" : "constant";
    if (o->train_samples > 0) argv[k++] = "--train-samples", argv[k++] = samples; /* 0: all */
    argv[k++] = "--data", argv[k++] = (char *)o->data_dir, argv[k++] = "--metrics", argv[k++] = (char *)metrics;
    argv[k++] = "--progress";
    argv[k] = NULL;
    printf("run (%s): %d rank%s x %lld samples, %s\n", r->name, r->ranks, r->ranks > 1 ? "s" : "",
           (long long)(o->global_batch / r->ranks), r->norm);
    fflush(stdout); /* before the child writes to it too */
    const int status = run_program(argv, NULL);
    if (status == 127) fprintf(stderr, "syncbn compare: is MPI installed? (or set SYNCBN_MPIEXEC)\n");
    return status;
}

static double number(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsNumber(item) ? item->valuedouble : NAN;
}

/* Reads a run's JSON lines: the per-step losses and the final line. */
static int read_metrics(run *r, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "syncbn compare: %s: cannot read the metrics of run %s\n", path, r->name);
        return -1;
    }
    char line[4096];
    int64_t capacity = 1024;
    r->losses = malloc((size_t)capacity * sizeof *r->losses);
    r->steps = 0;
    if (!r->losses) {
        fclose(f);
        fprintf(stderr, "syncbn compare: no memory for the losses of run %s\n", r->name);
        return -1;
    }
    bool final_seen = false;
    while (fgets(line, sizeof line, f)) {
        cJSON *json = cJSON_Parse(line);
        if (!json) continue;
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "final"))) {
            r->final_train_loss = number(json, "final_train_loss");
            r->test_accuracy = number(json, "test_accuracy");
            r->ms_per_step = number(json, "ms_per_step");
            r->running_mean_spread = number(json, "running_mean_spread");
            final_seen = true;
        } else {
            if (r->steps == capacity) { /* on failure r->losses stays valid: the caller frees it */
                double *grown = realloc(r->losses, (size_t)(2 * capacity) * sizeof *r->losses);
                if (!grown) {
                    cJSON_Delete(json);
                    fclose(f);
                    fprintf(stderr, "syncbn compare: no memory for the losses of run %s (%lld steps)\n", r->name,
                            (long long)r->steps);
                    return -1;
                }
                r->losses = grown, capacity *= 2;
            }
            r->losses[r->steps++] = number(json, "loss");
        }
        cJSON_Delete(json);
    }
    fclose(f);
    if (!final_seen) fprintf(stderr, "syncbn compare: %s: run %s did not finish\n", path, r->name);
    return final_seen ? 0 : -1;
}

static double max_relative_deviation(const run *r, const run *reference, int64_t steps)
{
    double worst = 0.0;
    for (int64_t k = 0; k < steps && k < r->steps && k < reference->steps; k++)
        worst = fmax(worst, fabs(r->losses[k] - reference->losses[k]) / fabs(reference->losses[k]));
    return worst;
}

/* OUT/NAME into path (PATH_MAX bytes); fits since --out is at most MAX_OUT_LENGTH. */
static void out_path(char path[PATH_MAX], const char *out, const char *name)
{
    snprintf(path, PATH_MAX, "%s/%s", out, name);
}

static int write_summary(const run runs[3], const sbn_train_options *o, const char *out)
{
    cJSON *list = cJSON_CreateArray();
    for (int k = 0; list && k < 3; k++) {
        const run *r = &runs[k];
        cJSON *item = cJSON_CreateObject();
        cJSON_AddStringToObject(item, "run", r->name);
        cJSON_AddNumberToObject(item, "ranks", r->ranks);
        cJSON_AddNumberToObject(item, "per_rank_batch", (double)(o->global_batch / r->ranks));
        cJSON_AddStringToObject(item, "norm", r->norm);
        cJSON_AddNumberToObject(item, "test_accuracy", r->test_accuracy);
        cJSON_AddNumberToObject(item, "final_train_loss", r->final_train_loss);
        cJSON_AddNumberToObject(item, "max_rel_loss_dev_10", r->max_rel_loss_dev_10);
        cJSON_AddNumberToObject(item, "max_rel_loss_dev_100", r->max_rel_loss_dev_100);
        cJSON_AddNumberToObject(item, "running_mean_spread", r->running_mean_spread);
        cJSON_AddNumberToObject(item, "ms_per_step", r->ms_per_step);
        cJSON_AddNumberToObject(item, "steps", (double)r->steps);
        cJSON_AddItemToArray(list, item);
    }
    char path[PATH_MAX];
    out_path(path, out, "summary.json");
    char *text = list ? cJSON_Print(list) : NULL;
    FILE *f = text ? fopen(path, "w") : NULL;
    const bool written = f && fprintf(f, "%s\n", text) > 0;
    const bool closed = f && fclose(f) == 0;
    free(text);
    cJSON_Delete(list);
    if (written && closed) return 0;
    fprintf(stderr, "syncbn compare: %s: cannot write the summary\n", path);
    return -1;
}

static int write_steps_csv(const run runs[3], const char *out)
{
    char path[PATH_MAX];
    out_path(path, out, "steps.csv");
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "syncbn compare: %s: cannot write the per-step losses\n", path);
        return -1;
    }
    fprintf(f, "step,loss_a,loss_b,loss_c,rel_dev_b,rel_dev_c\n");
    for (int64_t k = 0; k < runs[0].steps && k < runs[1].steps && k < runs[2].steps; k++) {
        const double a = runs[0].losses[k];
        fprintf(f, "%lld,%.9g,%.9g,%.9g,%.6g,%.6g\n", (long long)k + 1, a, runs[1].losses[k], runs[2].losses[k],
                fabs(runs[1].losses[k] - a) / fabs(a), fabs(runs[2].losses[k] - a) / fabs(a));
    }
    if (fclose(f) != 0) {
        fprintf(stderr, "syncbn compare: %s: cannot write the per-step losses\n", path);
        return -1;
    }
    return 0;
}

/* compare.png from steps.csv. gnuplot runs in the output folder and the
 * script names its files relatively, with fixed names: no user string (the
 * folder's name included) enters the script, so none can be read as gnuplot
 * code. A failed plot is reported but not an error (gnuplot is optional). */
static void plot(const run runs[3], const sbn_train_options *o, const char *out)
{
    char script[PATH_MAX];
    out_path(script, out, "compare.gp");
    FILE *f = fopen(script, "w");
    if (!f) {
        fprintf(stderr, "syncbn compare: %s: cannot write the plot script\n", script);
        return;
    }
    fprintf(f,
            "set terminal pngcairo size 1400,560 font 'sans,11'\nset output 'compare.png'\nset datafile separator ','\n"
            "set multiplot layout 1,2 title 'BN vs SyncBN, global batch %lld, %d ranks (%s)'\n"
            "set key top right\nset grid\nset xlabel 'step'\nset ylabel 'training loss (smoothed)'\n",
            (long long)o->global_batch, runs[1].ranks, o->model == SBN_MODEL_SEED ? "seed" : "convnet");
    /* gnuplot has no rolling window on columns; smoothing via 'smooth bezier' keeps it simple. */
    fprintf(f,
            "plot 'steps.csv' every ::1 using 1:2 smooth bezier lw 2 title '(a) 1 x %lld, BN: test acc %.2f%%', \\\n"
            "     '' every ::1 using 1:3 smooth bezier lw 2 title '(b) %d x %lld, BN: test acc %.2f%%', \\\n"
            "     '' every ::1 using 1:4 smooth bezier lw 2 dt 2 title '(c) %d x %lld, SyncBN: test acc %.2f%%'\n",
            (long long)o->global_batch, 100 * runs[0].test_accuracy, runs[1].ranks,
            (long long)(o->global_batch / runs[1].ranks), 100 * runs[1].test_accuracy, runs[2].ranks,
            (long long)(o->global_batch / runs[2].ranks), 100 * runs[2].test_accuracy);
    fprintf(f,
            "set key bottom right\nset logscale xy\nset format y '10^{%%L}'\nset ylabel '|loss - loss of (a)| / loss of (a), per step'\n"
            "plot 'steps.csv' every ::1 using 1:($5 > 0 ? $5 : 1e-12) with lines lw 1 title '(b) plain BN', \\\n"
            "     '' every ::1 using 1:($6 > 0 ? $6 : 1e-12) with lines lw 1 title '(c) SyncBN'\n"
            "unset multiplot\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "syncbn compare: %s: cannot write the plot script\n", script);
        return;
    }
    char *argv[] = {"gnuplot", "compare.gp", NULL};
    fflush(stdout);
    if (run_program(argv, out) == 0) printf("plot: %s/compare.png\n", out);
    else fprintf(stderr, "syncbn compare: gnuplot failed; the plot script is %s\n", script);
}

/* mkdir -p: creates the folder and its missing parents; 0 when it exists after. */
static int make_folders(const char *path)
{
    char partial[PATH_MAX];
    snprintf(partial, sizeof partial, "%s", path);
    for (char *slash = strchr(partial + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        mkdir(partial, 0755);
        *slash = '/';
    }
    mkdir(partial, 0755);
    struct stat info;
    return stat(partial, &info) == 0 && S_ISDIR(info.st_mode) ? 0 : -1;
}

static void print_table(const run runs[3], const sbn_train_options *o)
{
    printf("\n| run | ranks | per-rank batch | norm | test accuracy | final train loss | max rel. loss dev. "
           "(10 steps) | (100 steps) | running_mean spread | ms/step |\n");
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 3; k++) {
        const run *r = &runs[k];
        printf("| %s | %d | %lld | %s | %.2f%% | %.4f | %.2e | %.2e | %.2e | %.2f |\n", r->name, r->ranks,
               (long long)(o->global_batch / r->ranks), r->norm, 100 * r->test_accuracy, r->final_train_loss,
               r->max_rel_loss_dev_10, r->max_rel_loss_dev_100, r->running_mean_spread, r->ms_per_step);
    }
}

int cli_compare(int argc, char **argv, const char *self)
{
    cli_settings settings;
    const cli_parse_result parsed = cli_parse(CLI_COMPARE, argc, argv, &settings, compare_usage);
    if (parsed != CLI_RUN) return parsed == CLI_HELP ? 0 : EXIT_USAGE;
    const sbn_train_options *o = &settings.train;
    const int ranks = settings.ranks;
    const char *out = settings.out;
    if (o->global_batch < ranks || o->global_batch % ranks) {
        fprintf(stderr, "syncbn compare: need --ranks >= 2 dividing --batch (got %d and %lld)\n", ranks,
                (long long)o->global_batch);
        compare_usage(stderr);
        return EXIT_USAGE;
    }
    if (strlen(out) > MAX_OUT_LENGTH) {
        fprintf(stderr, "syncbn compare: --out: the folder name is longer than %d bytes\n", (int)MAX_OUT_LENGTH);
        return EXIT_USAGE;
    }
    if (make_folders(out) != 0) {
        fprintf(stderr, "syncbn compare: cannot create the output folder %s\n", out);
        return 1;
    }
    if (geteuid() == 0) { /* OpenMPI refuses root without these */
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 0);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 0);
    }
    const bool open_mpi = launcher_is_open_mpi();
    run runs[3] = {{.name = "a", .norm = "bn", .ranks = 1},
                   {.name = "b", .norm = "bn", .ranks = ranks},
                   {.name = "c", .norm = "sync", .ranks = ranks}};
    int status = 0;
    for (int k = 0; k < 3 && status == 0; k++) {
        char metrics[PATH_MAX], name[16];
        snprintf(name, sizeof name, "run_%s.jsonl", runs[k].name);
        out_path(metrics, out, name);
        if (launch(self, o, &runs[k], metrics, open_mpi) != 0) {
            fprintf(stderr, "syncbn compare: run %s failed\n", runs[k].name);
            status = 1;
        } else if (read_metrics(&runs[k], metrics) != 0) {
            status = 1;
        }
    }
    if (status == 0) {
        for (int k = 0; k < 3; k++) {
            runs[k].max_rel_loss_dev_10 = max_relative_deviation(&runs[k], &runs[0], 10);
            runs[k].max_rel_loss_dev_100 = max_relative_deviation(&runs[k], &runs[0], 100);
        }
        print_table(runs, o);
        if (write_summary(runs, o, out) != 0 || write_steps_csv(runs, out) != 0) status = 1;
    }
    if (status == 0) {
        if (settings.plot) plot(runs, o, out);
        printf("summary: %s/summary.json\n", out);
    }
    for (int k = 0; k < 3; k++) free(runs[k].losses);
    return status;
}
