/* `syncbn export`: a checkpoint's weights in PyTorch's torch.save format. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <syncbn/checkpoint.h>
#include <syncbn/syncbn.h>

#include "cli.h"

static void export_usage(FILE *out)
{
    fprintf(out,
            "usage: syncbn export CHECKPOINT OUT.pt\n\n"
            "Writes the weights of CHECKPOINT (a checkpoint folder: its newest good checkpoint; or a\n"
            "safetensors state dict) as a file of PyTorch's torch.save format, in the state dict's\n"
            "order. In PyTorch:\n"
            "    state = torch.load(\"OUT.pt\", weights_only=True)\n"
            "    model.load_state_dict(state)   # bench/pytorch_twin.py's Twin: strict=True works\n");
}

int cli_export(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        export_usage(stdout);
        return 0;
    }
    if (argc != 3) {
        fprintf(stderr, "syncbn export: expected CHECKPOINT and OUT.pt, got %d arguments\n", argc - 1);
        export_usage(stderr);
        return EXIT_USAGE;
    }
    char path[4096];
    sbn_safetensors *file = NULL;
    sbn_tensor *tensors = NULL;
    sbn_status st = sbn_checkpoint_model_file(argv[1], path, sizeof path);
    if (st == SBN_OK) st = sbn_safetensors_open(path, &file);
    const int64_t count = sbn_safetensors_count(file);
    if (st == SBN_OK && !(tensors = malloc((size_t)(count + 1) * sizeof *tensors))) {
        fprintf(stderr, "syncbn export: no memory\n");
        sbn_safetensors_close(file);
        return 1;
    }
    for (int64_t i = 0; st == SBN_OK && i < count; i++) tensors[i] = *sbn_safetensors_at(file, i);
    if (st == SBN_OK) st = sbn_torch_save(argv[2], tensors, count);
    if (st != SBN_OK) fprintf(stderr, "syncbn export: %s: %s\n", sbn_status_str(st), sbn_errmsg());
    else printf("wrote %lld tensors from %s to %s\n", (long long)count, path, argv[2]);
    free(tensors);
    sbn_safetensors_close(file);
    return st == SBN_OK ? 0 : 1;
}
