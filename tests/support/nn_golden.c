/* Loads tests/golden/nn_golden.json (PyTorch model steps). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

static double *doubles_of(const cJSON *object, const char *key, int64_t *count)
{
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(object, key), *item;
    *count = cJSON_GetArraySize(array);
    double *out = malloc(((size_t)*count + 1) * sizeof *out);
    int64_t i = 0;
    cJSON_ArrayForEach(item, array) out[i++] = item->valuedouble;
    return out;
}

static int64_t number_of(const cJSON *object, const char *key)
{
    return (int64_t)cJSON_GetObjectItemCaseSensitive(object, key)->valuedouble;
}

int nn_golden_load(const char *path, nn_golden_case **cases)
{
    char *text = test_read_file(path);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return -1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "cases"), *json;
    const int count = cJSON_GetArraySize(list);
    *cases = calloc((size_t)count, sizeof **cases);
    int i = 0;
    cJSON_ArrayForEach(json, list)
    {
        nn_golden_case *g = &(*cases)[i++];
        snprintf(g->name, sizeof g->name, "%s", cJSON_GetObjectItemCaseSensitive(json, "name")->valuestring);
        g->convnet = strcmp(cJSON_GetObjectItemCaseSensitive(json, "model")->valuestring, "convnet") == 0;
        g->norm = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "norm"));
        g->n = number_of(json, "n"), g->in_channels = number_of(json, "in_channels");
        g->height = number_of(json, "height"), g->width = number_of(json, "width");
        g->classes = number_of(json, "classes");
        g->lr = cJSON_GetObjectItemCaseSensitive(json, "lr")->valuedouble;
        g->momentum = cJSON_GetObjectItemCaseSensitive(json, "momentum")->valuedouble;
        g->weight_decay = cJSON_GetObjectItemCaseSensitive(json, "weight_decay")->valuedouble;
        g->initial_params = doubles_of(json, "initial_params", &g->param_count);
        const cJSON *step;
        cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(json, "steps"))
        {
            nn_golden_step *s = &g->steps[g->step_count++];
            int64_t unused;
            s->x = doubles_of(step, "x", &unused);
            double *labels = doubles_of(step, "labels", &unused);
            s->labels = malloc((size_t)g->n);
            for (int64_t k = 0; k < g->n; k++) s->labels[k] = (uint8_t)labels[k];
            free(labels);
            s->loss = cJSON_GetObjectItemCaseSensitive(step, "loss")->valuedouble;
            s->logits = doubles_of(step, "logits", &unused);
            s->grads = doubles_of(step, "grads", &unused);
            s->params_after = doubles_of(step, "params_after", &unused);
            s->running_mean = doubles_of(step, "running_mean", &s->running_count);
            s->running_var = doubles_of(step, "running_var", &unused);
        }
    }
    cJSON_Delete(root);
    return count;
}

void nn_golden_free(nn_golden_case *cases, int count)
{
    for (int i = 0; i < count; i++) {
        free(cases[i].initial_params);
        for (int k = 0; k < cases[i].step_count; k++) {
            nn_golden_step *s = &cases[i].steps[k];
            free(s->x), free(s->labels), free(s->logits), free(s->grads), free(s->params_after);
            free(s->running_mean), free(s->running_var);
        }
    }
    free(cases);
}
