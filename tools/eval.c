/* `syncbn eval`: test accuracy and loss of saved weights. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include <syncbn/checkpoint.h>
#include <syncbn/mpi.h>

#include "cli.h"

static void eval_usage(FILE *out)
{
    fprintf(out,
            "usage: [mpiexec -n P] syncbn eval --weights FILE|DIR [options]\n\n"
            "Evaluates saved weights on the Fashion-MNIST test set (BN in eval mode: running\n"
            "statistics), the test set split across the ranks. FILE is a safetensors state dict\n"
            "under PyTorch's names (a checkpoint's model.safetensors, or one written from PyTorch by\n"
            "tools/state_dict_to_safetensors.py); DIR a checkpoint folder (its newest good checkpoint).\n"
            "The model (seed or convnet, with or without BN) is read from the file.\n\n"
            "  --weights FILE|DIR   the weights\n"
            "  --data DIR           IDX folder (default %s)\n"
            "  --threads T          OpenMP threads per rank (default 1)\n"
            "  --logits FILE        also write every test image's logits: float32, little-endian,\n"
            "                       10000 x 10, in test-set order\n"
            "  --timeout SECONDS    how long a collective waits for its peers (default 600)\n"
            "  --help               this text\n",
            SBN_FASHION_MNIST_DIR);
}

/* seed or convnet, with BN or without, from the names in the file. */
static void model_of(const sbn_safetensors *file, sbn_model_kind *kind, sbn_norm *norm)
{
    const sbn_tensor *t;
    *kind = sbn_safetensors_find(file, "conv2.weight", &t) == SBN_OK ? SBN_MODEL_CONVNET : SBN_MODEL_SEED;
    *norm = sbn_safetensors_find(file, "bn1.weight", &t) == SBN_OK ? SBN_NORM_BN : SBN_NORM_NONE;
}

/* Everything after parsing. On failure the message is in sbn_errmsg(), or,
 * for the tool's own failures, printed here (*reported). */
static sbn_status evaluate_weights(const cli_settings *settings, sbn_comm *world, bool *reported)
{
    char path[4096];
    sbn_safetensors *file = NULL;
    sbn_model *model = NULL;
    sbn_dataset test = {0};
    float *logits = NULL;
    sbn_model_kind kind;
    sbn_norm norm;
    double accuracy = 0.0, loss = 0.0;
    sbn_status st = sbn_checkpoint_model_file(settings->weights, path, sizeof path);
    if (st == SBN_OK) st = sbn_safetensors_open(path, &file);
    if (st == SBN_OK) st = sbn_dataset_load_split(&test, settings->train.data_dir, "t10k");
    if (st == SBN_OK) {
        model_of(file, &kind, &norm);
        st = sbn_model_create(kind, 1, test.height, test.width, test.classes, norm, NULL, 0, &model);
    }
    if (st == SBN_OK) st = sbn_model_set_fuse_relu(model, true);
    if (st == SBN_OK) st = sbn_model_load_state_dict(model, NULL, SBN_STATE_ALL, file);
    if (st == SBN_OK && settings->logits &&
        !(logits = malloc((size_t)(test.count * test.classes) * sizeof *logits))) {
        fprintf(stderr, "syncbn eval: no memory for the logits\n");
        st = SBN_ERR_NOMEM, *reported = true;
    }
    if (st == SBN_OK) st = sbn_evaluate(model, &test, world, logits, &accuracy, &loss);
    if (st == SBN_OK && sbn_comm_rank(world) == 0) {
        printf("{\"model\": \"%s\", \"norm\": \"%s\", \"test_accuracy\": %.6f, \"test_loss\": %.9g, "
               "\"samples\": %lld}\n",
               kind == SBN_MODEL_SEED ? "seed" : "convnet", norm == SBN_NORM_BN ? "bn" : "none", accuracy, loss,
               (long long)test.count);
        if (logits) {
            FILE *out = fopen(settings->logits, "wb");
            const size_t count = (size_t)(test.count * test.classes);
            const bool written = out && fwrite(logits, sizeof *logits, count, out) == count;
            if ((out && fclose(out) != 0) || !written) {
                fprintf(stderr, "syncbn eval: cannot write the logits to %s\n", settings->logits);
                st = SBN_ERR_IO, *reported = true;
            }
        }
    }
    free(logits);
    sbn_dataset_free(&test);
    sbn_model_destroy(model);
    sbn_safetensors_close(file);
    return st;
}

int cli_eval(int argc, char **argv)
{
    cli_settings settings;
    const cli_parse_result parsed = cli_parse(CLI_EVAL, argc, argv, &settings, eval_usage);
    if (parsed != CLI_RUN) return parsed == CLI_HELP ? 0 : EXIT_USAGE;
    if (!settings.weights) {
        fprintf(stderr, "syncbn eval: --weights is required\n");
        eval_usage(stderr);
        return EXIT_USAGE;
    }
    MPI_Init(NULL, NULL);
    sbn_comm *world = NULL;
    bool reported = false;
    sbn_status st = sbn_comm_create_mpi(MPI_COMM_WORLD, &world);
    if (st == SBN_OK) st = sbn_comm_set_timeout(world, settings.timeout);
    if (st == SBN_OK) {
        omp_set_num_threads(settings.train.threads);
        st = evaluate_weights(&settings, world, &reported);
    }
    const int rank = sbn_comm_rank(world), ranks = sbn_comm_size(world);
    if (st != SBN_OK && !reported)
        fprintf(stderr, "syncbn eval (rank %d): %s: %s\n", rank, sbn_status_str(st), sbn_errmsg());
    sbn_comm_destroy(world);
    if (st != SBN_OK && ranks > 1) MPI_Abort(MPI_COMM_WORLD, 1);
    MPI_Finalize();
    return st == SBN_OK ? 0 : 1;
}
