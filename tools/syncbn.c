/* syncbn — command-line tool.
 *   syncbn train     one training run (under mpiexec for several ranks)
 *   syncbn compare   1 process vs P ranks with BN vs P ranks with SyncBN
 *   syncbn study     compare's three runs over a grid of per-rank batches and seeds
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: syncbn <command> [options]\n\n"
            "commands:\n"
            "  train     train a model on Fashion-MNIST (run under mpiexec for several ranks);\n"
            "            checkpoints, resume after a crash, start from saved weights\n"
            "  eval      test accuracy and loss of saved weights (a checkpoint or a safetensors file)\n"
            "  export    write a checkpoint's weights in PyTorch's torch.save format\n"
            "  compare   train the same model as 1 process, as P ranks with BN and as P ranks\n"
            "            with SyncBN, and compare them (what `make demo` runs)\n"
            "  study     when does SyncBN matter? compare's three runs over per-rank batches x seeds:\n"
            "            accuracy, convergence and stability with significance tests (resumable)\n\n"
            "`syncbn <command> --help` describes each command's options.\n");
}

/* ---------- the options of every command: one table, one parser ---------- */

typedef enum flag_kind {
    FLAG_SWITCH,  /* no value */
    FLAG_TEXT,    /* a non-empty string, kept as given */
    FLAG_CHOICE,  /* one of a list of words */
    FLAG_INTEGER, /* a base-10 integer in [min, max] */
    FLAG_REAL     /* a finite number between low and high */
} flag_kind;

typedef enum flag_id { /* getopt_long's return values */
    F_HELP = 'h',
    F_MODEL = 256, F_NORM, F_GROUP_SIZE, F_BATCH, F_EPOCHS, F_STEPS, F_TRAIN_SAMPLES, F_LR, F_LR_SCHEDULE,
    F_MOMENTUM, F_WEIGHT_DECAY, F_SEED, F_DATA, F_THREADS, F_METRICS, F_TIMEOUT, F_PROGRESS, F_NO_FUSE_RELU, F_RANKS, F_OUT,
    F_NO_PLOT, F_CHECKPOINT_DIR, F_CHECKPOINT_EVERY, F_KEEP, F_RESUME, F_INIT, F_WEIGHTS, F_LOGITS, F_EVAL_POINTS,
    F_BATCHES, F_SEEDS, F_LR_STRESS, F_QUICK, F_LOSS_THRESHOLD, F_ACCURACY_LEVEL, F_ALPHA
} flag_id; /* at most 64 past F_MODEL: cli_settings.given has a bit for each */

typedef struct choice {
    const char *text;
    int value;
} choice;

/* The values a flag accepts. */
typedef struct valid_values {
    long long min, max;       /* FLAG_INTEGER: inclusive */
    double low, high;         /* FLAG_REAL: the interval (INFINITY: unbounded)... */
    bool low_open, high_open; /* ...with these ends excluded */
    const choice *choices;    /* FLAG_CHOICE: {NULL}-terminated */
} valid_values;

typedef struct cli_flag {
    const char *name;
    flag_id id;
    unsigned commands; /* CLI_TRAIN | CLI_COMPARE | CLI_EVAL | CLI_STUDY */
    flag_kind kind;
    valid_values valid;
} cli_flag;

/* RUNS: the flags of a training run, which compare and study pass on to each of their runs. */
enum { RUNS = CLI_TRAIN | CLI_COMPARE | CLI_STUDY, ALL = CLI_TRAIN | CLI_COMPARE | CLI_EVAL | CLI_STUDY };

static const choice models[] = {{"seed", SBN_MODEL_SEED}, {"convnet", SBN_MODEL_CONVNET}, {NULL, 0}};
static const choice norms[] = {{"bn", SBN_NORM_BN}, {"sync", SBN_NORM_SYNC}, {"none", SBN_NORM_NONE}, {NULL, 0}};
static const choice schedules[] = {{"cosine", SBN_LR_COSINE}, {"constant", SBN_LR_CONSTANT}, {NULL, 0}};

/* Every flag of `train` and `compare`, with the values it accepts. Zero is
 * refused where it means nothing (a batch, an epoch count, a thread count);
 * "all" is the default, not 0. Limits below the type's: threads as the
 * trainer allows, ranks what mpiexec sensibly starts, epochs so that epochs
 * x batches per epoch stays far below INT64_MAX. */
static const cli_flag flags[] = {
    {"model", F_MODEL, RUNS, FLAG_CHOICE, {.choices = models}},
    {"norm", F_NORM, CLI_TRAIN, FLAG_CHOICE, {.choices = norms}},
    {"group-size", F_GROUP_SIZE, CLI_TRAIN, FLAG_INTEGER, {.min = 1, .max = INT_MAX}},
    /* study: recognized (not taken as an abbreviation of --batches) and refused with the reason */
    {"batch", F_BATCH, RUNS, FLAG_INTEGER, {.min = 1, .max = INT32_MAX}},
    {"epochs", F_EPOCHS, RUNS, FLAG_INTEGER, {.min = 1, .max = 1000000}},
    {"steps", F_STEPS, RUNS, FLAG_INTEGER, {.min = 1, .max = INT64_MAX}},
    {"train-samples", F_TRAIN_SAMPLES, RUNS, FLAG_INTEGER, {.min = 1, .max = INT64_MAX}},
    {"lr", F_LR, RUNS, FLAG_REAL, {.low = 0.0, .low_open = true, .high = INFINITY}},
    {"lr-schedule", F_LR_SCHEDULE, RUNS, FLAG_CHOICE, {.choices = schedules}},
    {"momentum", F_MOMENTUM, RUNS, FLAG_REAL, {.low = 0.0, .high = 1.0, .high_open = true}},
    {"weight-decay", F_WEIGHT_DECAY, RUNS, FLAG_REAL, {.low = 0.0, .high = INFINITY}},
    {"seed", F_SEED, RUNS, FLAG_INTEGER, {.min = 0, .max = INT64_MAX}},
    {"data", F_DATA, ALL, FLAG_TEXT, {0}},
    {"threads", F_THREADS, ALL, FLAG_INTEGER, {.min = 1, .max = 1024}},
    {"metrics", F_METRICS, CLI_TRAIN, FLAG_TEXT, {0}},
    {"timeout", F_TIMEOUT, CLI_TRAIN | CLI_EVAL, FLAG_REAL, {.low = 0.0, .low_open = true, .high = INFINITY}},
    {"checkpoint-dir", F_CHECKPOINT_DIR, CLI_TRAIN, FLAG_TEXT, {0}},
    {"checkpoint-every", F_CHECKPOINT_EVERY, CLI_TRAIN, FLAG_INTEGER, {.min = 1, .max = INT64_MAX}},
    {"keep", F_KEEP, CLI_TRAIN, FLAG_INTEGER, {.min = 1, .max = 1000000}},
    {"resume", F_RESUME, CLI_TRAIN, FLAG_TEXT, {0}},
    {"init", F_INIT, CLI_TRAIN, FLAG_TEXT, {0}},
    {"weights", F_WEIGHTS, CLI_EVAL, FLAG_TEXT, {0}},
    {"logits", F_LOGITS, CLI_EVAL, FLAG_TEXT, {0}},
    {"progress", F_PROGRESS, CLI_TRAIN, FLAG_SWITCH, {0}},
    {"no-fuse-relu", F_NO_FUSE_RELU, RUNS, FLAG_SWITCH, {0}},
    {"ranks", F_RANKS, CLI_COMPARE | CLI_STUDY, FLAG_INTEGER, {.min = 2, .max = 1024}},
    {"out", F_OUT, CLI_COMPARE | CLI_STUDY, FLAG_TEXT, {0}},
    {"no-plot", F_NO_PLOT, CLI_COMPARE | CLI_STUDY, FLAG_SWITCH, {0}},
    {"eval-points", F_EVAL_POINTS, CLI_TRAIN | CLI_STUDY, FLAG_INTEGER, {.min = 0, .max = 1000000}},
    {"batches", F_BATCHES, CLI_STUDY, FLAG_TEXT, {0}},
    {"seeds", F_SEEDS, CLI_STUDY, FLAG_INTEGER, {.min = 1, .max = 1000}},
    {"lr-stress", F_LR_STRESS, CLI_STUDY, FLAG_TEXT, {0}},
    {"quick", F_QUICK, CLI_STUDY, FLAG_SWITCH, {0}},
    {"loss-threshold", F_LOSS_THRESHOLD, CLI_STUDY, FLAG_REAL, {.low = 0.0, .low_open = true, .high = INFINITY}},
    {"accuracy-level", F_ACCURACY_LEVEL, CLI_STUDY, FLAG_REAL, {.low = 0.0, .low_open = true, .high = 1.0}},
    {"alpha", F_ALPHA, CLI_STUDY, FLAG_REAL, {.low = 0.0, .low_open = true, .high = 0.5}},
    {"help", F_HELP, ALL, FLAG_SWITCH, {0}},
};
enum { FLAG_COUNT = sizeof flags / sizeof flags[0] };

typedef union flag_value {
    long long integer;
    double real;
    const char *text;
    int choice;
} flag_value;

/* Parses all of `text` as an integer in [f->valid.min, f->valid.max]. */
static bool parse_integer(const char *command, const cli_flag *f, const char *text, long long *value)
{
    char *end;
    errno = 0;
    *value = strtoll(text, &end, 10);
    if (end == text || *end || isspace((unsigned char)text[0])) {
        fprintf(stderr, "syncbn %s: --%s: '%s' is not an integer\n", command, f->name, text);
        return false;
    }
    if (errno == ERANGE || *value < f->valid.min || *value > f->valid.max) {
        fprintf(stderr, "syncbn %s: --%s: '%s' is out of range (valid: %lld to %lld)\n", command, f->name, text,
                f->valid.min, f->valid.max);
        return false;
    }
    return true;
}

/* Parses all of `text` as a finite number between f->valid.low and f->valid.high. */
static bool parse_real(const char *command, const cli_flag *f, const char *text, double *value)
{
    char *end;
    errno = 0;
    *value = strtod(text, &end);
    if (end == text || *end || isspace((unsigned char)text[0])) {
        fprintf(stderr, "syncbn %s: --%s: '%s' is not a number\n", command, f->name, text);
        return false;
    }
    if (!isfinite(*value) && errno != ERANGE) { /* inf, nan */
        fprintf(stderr, "syncbn %s: --%s: '%s' is not a finite number\n", command, f->name, text);
        return false;
    }
    const bool above = f->valid.low_open ? *value > f->valid.low : *value >= f->valid.low;
    const bool below = f->valid.high_open ? *value < f->valid.high : *value <= f->valid.high;
    if (errno == ERANGE || !above || !below) { /* ERANGE: overflow (1e999) or underflow (1e-999) */
        fprintf(stderr, "syncbn %s: --%s: '%s' is out of range (valid: %s %g", command, f->name, text,
                f->valid.low_open ? ">" : ">=", f->valid.low);
        if (isfinite(f->valid.high)) fprintf(stderr, " and %s %g", f->valid.high_open ? "<" : "<=", f->valid.high);
        fprintf(stderr, ")\n");
        return false;
    }
    return true;
}

static bool parse_choice(const char *command, const cli_flag *f, const char *text, int *value)
{
    int count = 0;
    for (; f->valid.choices[count].text; count++)
        if (strcmp(text, f->valid.choices[count].text) == 0) {
            *value = f->valid.choices[count].value;
            return true;
        }
    fprintf(stderr, "syncbn %s: --%s must be ", command, f->name);
    for (int k = 0; k < count; k++)
        fprintf(stderr, "%s%s", k == 0 ? "" : k + 1 < count ? ", " : " or ", f->valid.choices[k].text);
    fprintf(stderr, ", got '%s'\n", text);
    return false;
}

static bool parse_value(const char *command, const cli_flag *f, const char *text, flag_value *value)
{
    switch (f->kind) {
    case FLAG_SWITCH: return true;
    case FLAG_TEXT:
        value->text = text;
        if (!*text) fprintf(stderr, "syncbn %s: --%s: the value is empty\n", command, f->name);
        return *text != '\0';
    case FLAG_CHOICE: return parse_choice(command, f, text, &value->choice);
    case FLAG_INTEGER: return parse_integer(command, f, text, &value->integer);
    case FLAG_REAL: return parse_real(command, f, text, &value->real);
    }
    return false;
}

/* Stores a parsed value; the casts to int are safe: those flags' ranges fit an int. */
static void assign(cli_settings *s, flag_id id, flag_value v)
{
    sbn_train_options *o = &s->train;
    switch (id) {
    case F_MODEL: o->model = (sbn_model_kind)v.choice; break;
    case F_NORM: o->norm = (sbn_norm)v.choice; break;
    case F_GROUP_SIZE: o->group_size = (int)v.integer; break;
    case F_BATCH: o->global_batch = v.integer; break;
    case F_EPOCHS: o->epochs = v.integer; break;
    case F_STEPS: o->max_steps = v.integer; break;
    case F_TRAIN_SAMPLES: o->train_samples = v.integer; break;
    case F_LR: o->lr = v.real; break;
    case F_LR_SCHEDULE: o->lr_schedule = (sbn_lr_schedule)v.choice; break;
    case F_MOMENTUM: o->momentum = v.real; break;
    case F_WEIGHT_DECAY: o->weight_decay = v.real; break;
    case F_SEED: o->seed = (uint64_t)v.integer; break;
    case F_DATA: o->data_dir = v.text; break;
    case F_THREADS: o->threads = (int)v.integer; break;
    case F_METRICS: o->metrics_path = v.text; break;
    case F_TIMEOUT: s->timeout = v.real; break;
    case F_PROGRESS: o->progress = true; break;
    case F_NO_FUSE_RELU: o->separate_relu = true; break;
    case F_RANKS: s->ranks = (int)v.integer; break;
    case F_OUT: s->out = v.text; break;
    case F_NO_PLOT: s->plot = false; break;
    case F_CHECKPOINT_DIR: o->checkpoint_dir = v.text; break;
    case F_CHECKPOINT_EVERY: o->checkpoint_every = v.integer; break;
    case F_KEEP: o->keep = (int)v.integer; break;
    case F_RESUME: o->checkpoint_dir = v.text, o->resume = true; break;
    case F_INIT: o->init_path = v.text; break;
    case F_WEIGHTS: s->weights = v.text; break;
    case F_LOGITS: s->logits = v.text; break;
    case F_EVAL_POINTS: o->eval_points = (int)v.integer; break;
    case F_BATCHES: s->batches = v.text; break;
    case F_SEEDS: s->seeds = (int)v.integer; break;
    case F_LR_STRESS: s->lr_stress = v.text; break;
    case F_QUICK: s->quick = true; break;
    case F_LOSS_THRESHOLD: s->loss_threshold = v.real; break;
    case F_ACCURACY_LEVEL: s->accuracy_level = v.real; break;
    case F_ALPHA: s->alpha = v.real; break;
    case F_HELP: break;
    }
}

bool cli_given(const cli_settings *s, const char *flag)
{
    for (int k = 0; k < FLAG_COUNT; k++)
        if (strcmp(flags[k].name, flag) == 0 && flags[k].id >= F_MODEL) return (s->given >> (flags[k].id - F_MODEL)) & 1u;
    return false;
}

cli_parse_result cli_parse(cli_command command, int argc, char **argv, cli_settings *s, void (*print_usage)(FILE *out))
{
    const char *name = command == CLI_TRAIN     ? "train"
                       : command == CLI_COMPARE ? "compare"
                       : command == CLI_STUDY   ? "study"
                                                : "eval";
    *s = (cli_settings){
        .train = sbn_train_defaults(), .timeout = 600.0, .ranks = 4, .out = "out/compare", .plot = true};
    struct option options[FLAG_COUNT + 1];
    int count = 0;
    for (int k = 0; k < FLAG_COUNT; k++) {
        if (!(flags[k].commands & (unsigned)command)) continue;
        const int takes = flags[k].kind == FLAG_SWITCH ? no_argument : required_argument;
        options[count++] = (struct option){flags[k].name, takes, NULL, (int)flags[k].id};
    }
    options[count] = (struct option){NULL, 0, NULL, 0};
    optind = 1;
    for (int id; (id = getopt_long(argc, argv, "", options, NULL)) != -1;) {
        const cli_flag *f = NULL;
        for (int k = 0; k < FLAG_COUNT && !f; k++)
            if ((int)flags[k].id == id) f = &flags[k];
        if (!f) { /* getopt said why */
            print_usage(stderr);
            return CLI_USAGE_ERROR;
        }
        if (f->id == F_HELP) {
            print_usage(stdout);
            return CLI_HELP;
        }
        flag_value value = {0};
        if (!parse_value(name, f, optarg, &value)) return CLI_USAGE_ERROR;
        if (f->id == F_CHECKPOINT_DIR && s->train.resume && strcmp(value.text, s->train.checkpoint_dir) != 0) {
            fprintf(stderr, "syncbn %s: --checkpoint-dir %s conflicts with --resume %s (a resumed run writes its "
                    "checkpoints where it resumed from)\n", name, value.text, s->train.checkpoint_dir);
            return CLI_USAGE_ERROR;
        }
        if (f->id == F_RESUME && s->train.checkpoint_dir && strcmp(value.text, s->train.checkpoint_dir) != 0) {
            fprintf(stderr, "syncbn %s: --resume %s conflicts with --checkpoint-dir %s\n", name, value.text,
                    s->train.checkpoint_dir);
            return CLI_USAGE_ERROR;
        }
        assign(s, f->id, value);
        s->given |= 1ull << (f->id - F_MODEL);
    }
    if (optind < argc) {
        fprintf(stderr, "syncbn %s: unexpected argument '%s'\n", name, argv[optind]);
        print_usage(stderr);
        return CLI_USAGE_ERROR;
    }
    return CLI_RUN;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "train") == 0) return cli_train(argc - 1, argv + 1);
    if (strcmp(argv[1], "eval") == 0) return cli_eval(argc - 1, argv + 1);
    if (strcmp(argv[1], "export") == 0) return cli_export(argc - 1, argv + 1);
    if (strcmp(argv[1], "compare") == 0 || strcmp(argv[1], "study") == 0) {
        char self[PATH_MAX];
        const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
        if (length <= 0) {
            fprintf(stderr, "syncbn: cannot find my own executable\n");
            return 1;
        }
        self[length] = '\0';
        return strcmp(argv[1], "study") == 0 ? cli_study(argc - 1, argv + 1, self)
                                             : cli_compare(argc - 1, argv + 1, self);
    }
    fprintf(stderr, "syncbn: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
