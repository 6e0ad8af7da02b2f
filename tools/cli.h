/* The syncbn command-line tool: shared option parsing and the subcommands. */
#ifndef SBN_TOOLS_CLI_H
#define SBN_TOOLS_CLI_H

#include <stdbool.h>
#include <syncbn/syncbn.h>

enum { EXIT_USAGE = 2 };

/* Parses the options `train` and `compare` share; returns 1 if `option` was
 * one of them, 0 if not, -1 on a bad value (message printed). */
int cli_parse_common(int option, const char *value, sbn_train_options *options);
int cli_train(int argc, char **argv);
int cli_compare(int argc, char **argv, const char *self_path);

#endif
