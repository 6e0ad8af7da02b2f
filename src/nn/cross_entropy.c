/* Softmax cross-entropy, mean over the batch, in double for the sums. */
#include <syncbn/nn.h>

#include <math.h>

#include "core/error.h"

sbn_status sbn_cross_entropy(float *dlogits, double *loss, int64_t *correct, const float *logits,
                             const uint8_t *labels, int64_t n, int64_t classes)
{
    if (!dlogits || !loss || !correct || !logits || (!labels && n > 0))
        return sbn_fail(SBN_ERR_ARG, "cross_entropy: a buffer is NULL");
    if (n < 0 || classes < 1) return sbn_fail(SBN_ERR_SHAPE, "cross_entropy: bad sizes");
    for (int64_t i = 0; i < n; i++)
        if (labels[i] >= classes)
            return sbn_fail(SBN_ERR_ARG, "label %d of sample %lld is not below the %lld classes", labels[i],
                            (long long)i, (long long)classes);
    double total = 0.0;
    int64_t hits = 0;
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + i * classes;
        int64_t best = 0;
        for (int64_t k = 1; k < classes; k++) best = z[k] > z[best] ? k : best;
        hits += best == labels[i];
        double sum = 0.0; /* log-sum-exp about the maximum cannot overflow */
        for (int64_t k = 0; k < classes; k++) sum += exp((double)z[k] - z[best]);
        total += log(sum) + z[best] - z[labels[i]];
        for (int64_t k = 0; k < classes; k++)
            dlogits[i * classes + k] =
                (float)((exp((double)z[k] - z[best]) / sum - (k == labels[i] ? 1.0 : 0.0)) / (double)n);
    }
    *loss = n > 0 ? total / (double)n : 0.0;
    *correct = hits;
    return SBN_OK;
}
