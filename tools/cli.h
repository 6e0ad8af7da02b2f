/* The syncbn command-line tool: the subcommands and their one option parser. */
#ifndef SBN_TOOLS_CLI_H
#define SBN_TOOLS_CLI_H

#include <stdbool.h>
#include <stdio.h>
#include <syncbn/syncbn.h>

enum { EXIT_USAGE = 2 };

/* Which subcommand a flag belongs to (a bit set: a flag may belong to both). */
typedef enum cli_command { CLI_TRAIN = 1, CLI_COMPARE = 2, CLI_EVAL = 4, CLI_STUDY = 8 } cli_command;

/* Everything `train`, `compare`, `eval` and `study` read from their command line. */
typedef struct cli_settings {
    sbn_train_options train; /* the run (train) or each of the runs (compare, study) */
    double timeout;          /* train: seconds a collective waits for its peers */
    int ranks;               /* compare: ranks of runs b and c; study: P */
    const char *out;         /* compare, study: output folder */
    bool plot;               /* compare, study: write the PNG plots */
    const char *batches;     /* study: per-rank batches, "1,2,4,8,16" */
    const char *lr_stress;   /* study: lr factors at the smallest per-rank batch, "2,5" or "none" */
    int seeds;               /* study: seeds per cell */
    bool quick;              /* study: the quick preset */
    double loss_threshold;   /* study: smoothed training loss to reach */
    double accuracy_level;   /* study: test accuracy to reach, 0..1 */
    double alpha;            /* study: significance level of the Welch t-tests */
    const char *weights;     /* eval: the weights to evaluate */
    const char *logits;      /* eval: where to write every test sample's logits (float32) */
    unsigned long long given; /* which flags the command line set (see cli_given) */
} cli_settings;

typedef enum cli_parse_result {
    CLI_RUN,        /* settings filled: run the command */
    CLI_HELP,       /* --help: usage printed to stdout, exit 0 */
    CLI_USAGE_ERROR /* message and usage printed to stderr, exit EXIT_USAGE */
} cli_parse_result;

/* Parses `syncbn COMMAND ARGS...` (argv[0] is the command) into *settings,
 * which it fills with the defaults first. Every flag comes from one table in
 * syncbn.c; numbers are parsed whole, checked for overflow and against the
 * flag's range. `print_usage` prints the command's help. */
cli_parse_result cli_parse(cli_command command, int argc, char **argv, cli_settings *settings,
                           void (*print_usage)(FILE *out));

/* Whether the command line set --flag (name without the dashes). */
bool cli_given(const cli_settings *settings, const char *flag);

int cli_train(int argc, char **argv);
int cli_eval(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_compare(int argc, char **argv, const char *self_path);
int cli_study(int argc, char **argv, const char *self_path);

#endif
