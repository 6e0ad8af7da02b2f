/* `syncbn compare`: the experiment. Three trainings with the same seed,
 * initial weights and data order:
 *   (a) 1 process, global batch B, BN
 *   (b) P ranks x B/P, plain BN (statistics of B/P samples each)
 *   (c) P ranks x B/P, SyncBN (statistics of all B samples)
 * then a table, summary.json, steps.csv and a PNG plot in --out. The runs
 * go through runs.c, the machinery `syncbn study` shares. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "runs.h"
#include "statistics.h"

typedef struct run {
    const char *name, *norm;
    int ranks;
    run_metrics m; /* the per-step losses and the final line (m.final_train_loss: mean of the last steps) */
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
            "Writes summary.json, steps.csv, run_{a,b,c}.jsonl and compare.png to --out.\n"
            "The final train loss is the mean of the last %d steps' losses; the plotted loss is the\n"
            "mean of the last %d steps at each step (steps.csv's smooth_* columns).\n"
            "`syncbn study` runs these three over a grid of per-rank batches and seeds.\n\n"
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
            "  --no-fuse-relu         ReLU as its own pass after BN (the same bits; fused is faster)\n"
            "  --no-plot              skip the PNG\n"
            "  --help                 this text\n",
            SBN_FINAL_LOSS_STEPS, SBN_FINAL_LOSS_STEPS);
}

static double max_relative_deviation(const run *r, const run *reference, int64_t steps)
{
    double worst = 0.0;
    for (int64_t k = 0; k < steps && k < r->m.steps && k < reference->m.steps; k++)
        worst = fmax(worst, fabs(r->m.losses[k] - reference->m.losses[k]) / fabs(reference->m.losses[k]));
    return worst;
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
        cJSON_AddNumberToObject(item, "test_accuracy", r->m.test_accuracy);
        cJSON_AddNumberToObject(item, "final_train_loss", r->m.final_train_loss);
        cJSON_AddNumberToObject(item, "max_rel_loss_dev_10", r->max_rel_loss_dev_10);
        cJSON_AddNumberToObject(item, "max_rel_loss_dev_100", r->max_rel_loss_dev_100);
        cJSON_AddNumberToObject(item, "running_mean_spread", r->m.running_mean_spread);
        cJSON_AddNumberToObject(item, "ms_per_step", r->m.ms_per_step);
        cJSON_AddNumberToObject(item, "steps", (double)r->m.steps);
        cJSON_AddItemToArray(list, item);
    }
    char path[PATH_MAX];
    runs_out_path(path, out, "summary.json");
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

/* steps.csv: per step, each run's loss, (b)'s and (c)'s relative deviation
 * from (a), and each run's smoothed loss: the mean of its last
 * SBN_FINAL_LOSS_STEPS losses up to that step (fewer at the start), the
 * curve the plot draws; its last value is the run's final train loss. */
static int write_steps_csv(const run runs[3], const char *out)
{
    char path[PATH_MAX];
    runs_out_path(path, out, "steps.csv");
    int64_t steps = runs[0].m.steps;
    for (int k = 1; k < 3; k++) steps = runs[k].m.steps < steps ? runs[k].m.steps : steps;
    double *smooth[3] = {NULL, NULL, NULL};
    for (int k = 0; k < 3; k++) {
        smooth[k] = malloc((size_t)(steps > 0 ? steps : 1) * sizeof *smooth[k]);
        if (smooth[k]) stat_trailing_mean(runs[k].m.losses, steps, SBN_FINAL_LOSS_STEPS, smooth[k]);
    }
    FILE *f = smooth[0] && smooth[1] && smooth[2] ? fopen(path, "w") : NULL;
    if (f) {
        fprintf(f, "step,loss_a,loss_b,loss_c,rel_dev_b,rel_dev_c,smooth_a,smooth_b,smooth_c\n");
        for (int64_t k = 0; k < steps; k++) {
            const double a = runs[0].m.losses[k], b = runs[1].m.losses[k], c = runs[2].m.losses[k];
            fprintf(f, "%lld,%.9g,%.9g,%.9g,%.6g,%.6g,%.9g,%.9g,%.9g\n", (long long)k + 1, a, b, c,
                    fabs(b - a) / fabs(a), fabs(c - a) / fabs(a), smooth[0][k], smooth[1][k], smooth[2][k]);
        }
    }
    const bool written = f && fclose(f) == 0;
    for (int k = 0; k < 3; k++) free(smooth[k]);
    if (written) return 0;
    fprintf(stderr, "syncbn compare: %s: cannot write the per-step losses\n", path);
    return -1;
}

/* compare.png from steps.csv. gnuplot runs in the output folder and the
 * script names its files relatively, with fixed names: no user string (the
 * folder's name included) enters the script, so none can be read as gnuplot
 * code. A failed plot is reported but not an error (gnuplot is optional). */
static void plot(const run runs[3], const sbn_train_options *o, const char *out)
{
    char script[PATH_MAX];
    runs_out_path(script, out, "compare.gp");
    FILE *f = fopen(script, "w");
    if (!f) {
        fprintf(stderr, "syncbn compare: %s: cannot write the plot script\n", script);
        return;
    }
    fprintf(f,
            "set terminal pngcairo size 1400,560 font 'sans,11'\nset output 'compare.png'\nset datafile separator ','\n"
            "set multiplot layout 1,2 title 'BN vs SyncBN, global batch %lld, %d ranks (%s)'\n"
            "set key top right\nset grid\nset xlabel 'step'\nset ylabel 'training loss, mean of the last %d steps'\n",
            (long long)o->global_batch, runs[1].ranks, o->model == SBN_MODEL_SEED ? "seed" : "convnet",
            SBN_FINAL_LOSS_STEPS);
    /* The smoothed columns (7 to 9) are computed in C: gnuplot's own smoothing (bezier) passed through
     * the last single-step loss and drew a spike at the end of every run. */
    fprintf(f,
            "plot 'steps.csv' every ::1 using 1:7 with lines lw 2 title '(a) 1 x %lld, BN: test acc %.2f%%', \\\n"
            "     '' every ::1 using 1:8 with lines lw 2 title '(b) %d x %lld, BN: test acc %.2f%%', \\\n"
            "     '' every ::1 using 1:9 with lines lw 2 dt 2 title '(c) %d x %lld, SyncBN: test acc %.2f%%'\n",
            (long long)o->global_batch, 100 * runs[0].m.test_accuracy, runs[1].ranks,
            (long long)(o->global_batch / runs[1].ranks), 100 * runs[1].m.test_accuracy, runs[2].ranks,
            (long long)(o->global_batch / runs[2].ranks), 100 * runs[2].m.test_accuracy);
    fprintf(f,
            "set key bottom right\nset logscale xy\nset format y '10^{%%L}'\nset ylabel '|loss - loss of (a)| / loss of (a), per step'\n"
            "plot 'steps.csv' every ::1 using 1:($5 > 0 ? $5 : 1e-12) with lines lw 1 title '(b) plain BN', \\\n"
            "     '' every ::1 using 1:($6 > 0 ? $6 : 1e-12) with lines lw 1 title '(c) SyncBN'\n"
            "unset multiplot\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "syncbn compare: %s: cannot write the plot script\n", script);
        return;
    }
    if (runs_gnuplot(out, "compare.gp") == 0) printf("plot: %s/compare.png\n", out);
    else fprintf(stderr, "syncbn compare: gnuplot failed; the plot script is %s\n", script);
}

static void print_table(const run runs[3], const sbn_train_options *o)
{
    printf("\n| run | ranks | per-rank batch | norm | test accuracy | final train loss (last %d steps) | max rel. "
           "loss dev. (10 steps) | (100 steps) | running_mean spread | ms/step |\n",
           SBN_FINAL_LOSS_STEPS);
    printf("|---|---|---|---|---|---|---|---|---|---|\n");
    for (int k = 0; k < 3; k++) {
        const run *r = &runs[k];
        printf("| %s | %d | %lld | %s | %.2f%% | %.4f | %.2e | %.2e | %.2e | %.2f |\n", r->name, r->ranks,
               (long long)(o->global_batch / r->ranks), r->norm, 100 * r->m.test_accuracy, r->m.final_train_loss,
               r->max_rel_loss_dev_10, r->max_rel_loss_dev_100, r->m.running_mean_spread, r->m.ms_per_step);
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
    if (runs_make_folders(out) != 0) {
        fprintf(stderr, "syncbn compare: cannot create the output folder %s\n", out);
        return 1;
    }
    const bool open_mpi = runs_prepare_launcher();
    run runs[3] = {{.name = "a", .norm = "bn", .ranks = 1},
                   {.name = "b", .norm = "bn", .ranks = ranks},
                   {.name = "c", .norm = "sync", .ranks = ranks}};
    int status = 0;
    for (int k = 0; k < 3 && status == 0; k++) {
        char metrics[PATH_MAX], name[16];
        snprintf(name, sizeof name, "run_%s.jsonl", runs[k].name);
        runs_out_path(metrics, out, name);
        const run_spec spec = {.label = runs[k].name, .options = o, .ranks = runs[k].ranks, .norm = runs[k].norm};
        if (runs_launch(self, &spec, metrics, open_mpi, -1) != 0) {
            fprintf(stderr, "syncbn compare: run %s failed\n", runs[k].name);
            status = 1;
        } else if (runs_read_metrics(&runs[k].m, metrics, runs[k].name) != 0) {
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
    for (int k = 0; k < 3; k++) runs_metrics_free(&runs[k].m);
    return status;
}
