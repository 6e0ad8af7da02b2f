/* The model's state dict: PyTorch's names for its tensors, and strict loads.
 * Layers are named as the twin's modules: the k-th convolution conv<k>, the
 * k-th BN bn<k>, the linear layer fc. */
#include <syncbn/nn.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/model_internal.h"

static void add_tensor(sbn_model_state *state, const char *layer_name, const char *field, sbn_dtype dtype, int ndim,
                       const int64_t *shape, const void *data)
{
    const int64_t k = state->count++;
    snprintf(state->names[k], sizeof state->names[k], "%s.%s", layer_name, field);
    sbn_tensor *t = &state->tensors[k];
    memset(t, 0, sizeof *t);
    t->name = state->names[k];
    t->dtype = dtype;
    t->ndim = ndim;
    for (int d = 0; d < ndim; d++) t->shape[d] = shape[d];
    t->data = data;
}

static void add_parameters(sbn_model_state *state, const char *layer_name, const layer *l, const float *parameters,
                           int weight_ndim, const int64_t *weight_shape)
{
    add_tensor(state, layer_name, "weight", SBN_DTYPE_F32, weight_ndim, weight_shape, parameters + l->weight_offset);
    add_tensor(state, layer_name, "bias", SBN_DTYPE_F32, 1, &l->out_c, parameters + l->bias_offset);
}

sbn_status sbn_model_state_dict(sbn_model *m, const float *parameters, int parts, sbn_model_state *state)
{
    if (!m || !state) return sbn_fail(SBN_ERR_ARG, "state dict: NULL argument");
    if (parts < 1 || parts > SBN_STATE_ALL) return sbn_fail(SBN_ERR_ARG, "state dict: parts must be 1, 2 or 3");
    if (!parameters) parameters = m->params;
    state->count = 0;
    int convs = 0, norms = 0;
    char name[16];
    for (int k = 0; k < m->layer_count; k++) {
        const layer *l = &m->layers[k];
        if (l->kind == LAYER_CONV) {
            snprintf(name, sizeof name, "conv%d", ++convs);
            const int64_t shape[4] = {l->out_c, l->in_c, l->kernel, l->kernel};
            if (parts & SBN_STATE_PARAMETERS) add_parameters(state, name, l, parameters, 4, shape);
        } else if (l->kind == LAYER_BN) {
            snprintf(name, sizeof name, "bn%d", ++norms);
            if (parts & SBN_STATE_PARAMETERS) add_parameters(state, name, l, parameters, 1, &l->out_c);
            if (parts & SBN_STATE_BUFFERS) {
                add_tensor(state, name, "running_mean", SBN_DTYPE_F32, 1, &l->out_c, sbn_bn_running_mean(l->bn));
                add_tensor(state, name, "running_var", SBN_DTYPE_F32, 1, &l->out_c, sbn_bn_running_var(l->bn));
                int64_t *count = &state->num_batches_tracked[state->count];
                *count = sbn_bn_num_batches_tracked(l->bn);
                add_tensor(state, name, "num_batches_tracked", SBN_DTYPE_I64, 0, NULL, count);
            }
        } else if (l->kind == LAYER_LINEAR) {
            const int64_t shape[2] = {l->out_c, l->in_c * l->in_h * l->in_w};
            if (parts & SBN_STATE_PARAMETERS) add_parameters(state, "fc", l, parameters, 2, shape);
        }
    }
    return SBN_OK;
}

static sbn_status check_against_file(const sbn_model_state *want, const sbn_safetensors *file, const char *label)
{
    for (int64_t i = 0; i < want->count; i++) {
        const sbn_tensor *w = &want->tensors[i], *got;
        if (sbn_safetensors_find(file, w->name, &got) != SBN_OK)
            return sbn_fail(SBN_ERR_FORMAT, "%s: missing tensor %s", label, w->name);
        int same = got->dtype == w->dtype && got->ndim == w->ndim;
        for (int d = 0; same && d < w->ndim; d++) same = got->shape[d] == w->shape[d];
        if (!same) {
            char have[128] = "", need[128] = "";
            for (int d = 0; d < got->ndim; d++)
                snprintf(have + strlen(have), sizeof have - strlen(have), "%s%lld", d ? ", " : "", (long long)got->shape[d]);
            for (int d = 0; d < w->ndim; d++)
                snprintf(need + strlen(need), sizeof need - strlen(need), "%s%lld", d ? ", " : "", (long long)w->shape[d]);
            return sbn_fail(SBN_ERR_FORMAT, "%s: tensor %s is %s [%s], the model needs %s [%s]", label, w->name,
                            sbn_dtype_name(got->dtype), have, sbn_dtype_name(w->dtype), need);
        }
    }
    for (int64_t i = 0; i < sbn_safetensors_count(file); i++) {
        const char *name = sbn_safetensors_at(file, i)->name;
        int expected = 0;
        for (int64_t j = 0; !expected && j < want->count; j++) expected = strcmp(want->tensors[j].name, name) == 0;
        if (!expected) return sbn_fail(SBN_ERR_FORMAT, "%s: unexpected tensor %s for this model", label, name);
    }
    return SBN_OK;
}

sbn_status sbn_model_load_state_dict(sbn_model *m, float *parameters, int parts, const sbn_safetensors *file)
{
    if (!m || !file) return sbn_fail(SBN_ERR_ARG, "load state dict: NULL argument");
    sbn_model_state *want = calloc(1, sizeof *want);
    if (!want) return sbn_fail(SBN_ERR_NOMEM, "no memory for a state dict");
    sbn_status st = sbn_model_state_dict(m, parameters, parts, want);
    if (st == SBN_OK) st = check_against_file(want, file, sbn_safetensors_path(file));
    int norms = 0; /* the k-th I64 tensor is the k-th BN layer's num_batches_tracked */
    for (int64_t i = 0; st == SBN_OK && i < want->count; i++) {
        const sbn_tensor *w = &want->tensors[i], *got;
        sbn_safetensors_find(file, w->name, &got);
        if (w->dtype == SBN_DTYPE_I64) {
            int64_t count;
            memcpy(&count, got->data, sizeof count);
            sbn_bn_set_num_batches_tracked(sbn_model_bn(m, norms++), count);
        } else {
            memcpy((void *)w->data, got->data, (size_t)(sbn_tensor_numel(w) * sbn_dtype_size(w->dtype)));
        }
    }
    free(want);
    return st;
}
