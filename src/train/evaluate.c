/* Evaluation of a model on a labelled set, sharded across ranks. */
#include <syncbn/train.h>

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

enum { EVAL_CHUNK = 500 };

sbn_status sbn_evaluate(sbn_model *model, const sbn_dataset *d, sbn_comm *world, float *all_logits,
                        double *accuracy, double *loss)
{
    if (!model || !d || !world || !accuracy || !loss) return sbn_fail(SBN_ERR_ARG, "evaluate: NULL argument");
    const int rank = sbn_comm_rank(world), ranks = sbn_comm_size(world);
    const int64_t first = d->count * rank / ranks, last = d->count * (rank + 1) / ranks;
    const int64_t pixels = d->height * d->width, classes = sbn_model_classes(model);
    double totals[3] = {0, 0, 0}; /* correct, loss sum, samples */
    float *dlogits = malloc((size_t)(EVAL_CHUNK * classes) * sizeof *dlogits);
    sbn_status st = dlogits ? SBN_OK : sbn_fail(SBN_ERR_NOMEM, "evaluate: no memory");
    if (st == SBN_OK && all_logits) memset(all_logits, 0, (size_t)(d->count * classes) * sizeof *all_logits);
    for (int64_t start = first; st == SBN_OK && start < last; start += EVAL_CHUNK) {
        const int64_t n = last - start < EVAL_CHUNK ? last - start : EVAL_CHUNK;
        const float *logits = NULL;
        double mean_loss = 0.0;
        int64_t correct = 0;
        st = sbn_model_forward(model, d->images + start * pixels, n, false, &logits);
        if (st == SBN_OK) st = sbn_cross_entropy(dlogits, &mean_loss, &correct, logits, d->labels + start, n, classes);
        if (st != SBN_OK) break; /* its message stays in sbn_errmsg() */
        totals[0] += (double)correct, totals[1] += mean_loss * (double)n, totals[2] += (double)n;
        if (all_logits) memcpy(all_logits + start * classes, logits, (size_t)(n * classes) * sizeof *logits);
    }
    free(dlogits);
    if (st != SBN_OK) return st;
    if ((st = sbn_comm_allreduce_sum_double(world, totals, 3)) != SBN_OK) return st;
    /* Each sample's logits come from one rank, zeros from the others: a sum gathers them. */
    if (all_logits && ranks > 1 && (st = sbn_comm_allreduce_sum_float(world, all_logits, d->count * classes)) != SBN_OK)
        return st;
    *accuracy = totals[2] > 0 ? totals[0] / totals[2] : 0.0;
    *loss = totals[2] > 0 ? totals[1] / totals[2] : 0.0;
    return SBN_OK;
}
