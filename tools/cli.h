/* The syncbn command-line tool: shared option parsing and the subcommands. */
#ifndef SBN_TOOLS_CLI_H
#define SBN_TOOLS_CLI_H

#include <stdbool.h>
#include <syncbn/syncbn.h>

enum { EXIT_USAGE = 2 };

#include <getopt.h>

enum { CLI_MAX_OPTIONS = 40 };

/* Fills `out` (CLI_MAX_OPTIONS entries) with the long options `train` and
 * `compare` share, then `specific` up to its {NULL} terminator. */
void cli_options(struct option *out, const struct option *specific);

/* Parses the options `train` and `compare` share; returns 1 if `option` was
 * one of them, 0 if not, -1 on a bad value (message printed). */
int cli_parse_common(int option, const char *value, sbn_train_options *options);
int cli_train(int argc, char **argv);
int cli_compare(int argc, char **argv, const char *self_path);

#endif
