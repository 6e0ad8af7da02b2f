/* syncbn — command-line tool.
 *   syncbn train     one training run (under mpiexec for several ranks)
 *   syncbn compare   1 process vs P ranks with BN vs P ranks with SyncBN
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errno.h>
#include <limits.h>
#include <unistd.h>

#include "cli.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: syncbn <command> [options]\n\n"
            "commands:\n"
            "  train     train a model on Fashion-MNIST (run under mpiexec for several ranks)\n"
            "  compare   train the same model as 1 process, as P ranks with BN and as P ranks\n"
            "            with SyncBN, and compare them (what `make demo` runs)\n\n"
            "`syncbn <command> --help` describes each command's options.\n");
}

static double parse_number(const char *text, const char *name, bool *ok)
{
    char *end;
    errno = 0;
    const double value = strtod(text, &end);
    if (errno || end == text || *end) {
        fprintf(stderr, "syncbn: --%s needs a number, got '%s'\n", name, text);
        *ok = false;
    }
    return value;
}

static long long parse_integer(const char *text, const char *name, bool *ok)
{
    char *end;
    errno = 0;
    const long long value = strtoll(text, &end, 10);
    if (errno || end == text || *end || value < 0) {
        fprintf(stderr, "syncbn: --%s needs a non-negative integer, got '%s'\n", name, text);
        *ok = false;
    }
    return value;
}

static const struct option common_options[] = {
    {"model", required_argument, NULL, 'm'},      {"batch", required_argument, NULL, 'b'},
    {"epochs", required_argument, NULL, 'e'},     {"steps", required_argument, NULL, 's'},
    {"train-samples", required_argument, NULL, 'N'}, {"lr", required_argument, NULL, 'l'},
    {"lr-schedule", required_argument, NULL, 'L'}, {"momentum", required_argument, NULL, 'M'},
    {"weight-decay", required_argument, NULL, 'w'}, {"seed", required_argument, NULL, 'S'},
    {"data", required_argument, NULL, 'd'},       {"threads", required_argument, NULL, 't'},
    {"help", no_argument, NULL, 'h'}};

void cli_options(struct option *out, const struct option *specific)
{
    const int common = (int)(sizeof common_options / sizeof common_options[0]);
    int k = 0;
    for (; k < common; k++) out[k] = common_options[k];
    for (int j = 0; specific[j].name && k < CLI_MAX_OPTIONS - 1; j++) out[k++] = specific[j];
    out[k] = (struct option){NULL, 0, NULL, 0};
}

int cli_parse_common(int option, const char *value, sbn_train_options *o)
{
    bool ok = true;
    switch (option) {
    case 'm':
        if (strcmp(value, "seed") == 0) o->model = SBN_MODEL_SEED;
        else if (strcmp(value, "convnet") == 0) o->model = SBN_MODEL_CONVNET;
        else {
            fprintf(stderr, "syncbn: --model must be seed or convnet, got '%s'\n", value);
            ok = false;
        }
        break;
    case 'b': o->global_batch = parse_integer(value, "batch", &ok); break;
    case 'e': o->epochs = parse_integer(value, "epochs", &ok); break;
    case 's': o->max_steps = parse_integer(value, "steps", &ok); break;
    case 'N': o->train_samples = parse_integer(value, "train-samples", &ok); break;
    case 'l': o->lr = parse_number(value, "lr", &ok); break;
    case 'M': o->momentum = parse_number(value, "momentum", &ok); break;
    case 'w': o->weight_decay = parse_number(value, "weight-decay", &ok); break;
    case 'S': o->seed = (uint64_t)parse_integer(value, "seed", &ok); break;
    case 'd': o->data_dir = value; break;
    case 'L':
        if (strcmp(value, "cosine") == 0) o->lr_schedule = SBN_LR_COSINE;
        else if (strcmp(value, "constant") == 0) o->lr_schedule = SBN_LR_CONSTANT;
        else {
            fprintf(stderr, "syncbn: --lr-schedule must be cosine or constant, got '%s'\n", value);
            ok = false;
        }
        break;
    case 't': o->threads = (int)parse_integer(value, "threads", &ok); break;
    default: return 0;
    }
    return ok ? 1 : -1;
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
    if (strcmp(argv[1], "compare") == 0) {
        char self[PATH_MAX];
        const ssize_t length = readlink("/proc/self/exe", self, sizeof self - 1);
        if (length <= 0) {
            fprintf(stderr, "syncbn: cannot find my own executable\n");
            return 1;
        }
        self[length] = '\0';
        return cli_compare(argc - 1, argv + 1, self);
    }
    fprintf(stderr, "syncbn: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return EXIT_USAGE;
}
