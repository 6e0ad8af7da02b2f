/* Loads the PyTorch golden cases (JSON, read with cJSON). */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support.h"

char *test_read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)size + 1);
    if (text && fread(text, 1, (size_t)size, f) != (size_t)size) {
        free(text);
        text = NULL;
    }
    if (text) text[size] = '\0';
    fclose(f);
    return text;
}

static int64_t array_length(const cJSON *object, const char *key)
{
    return cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(object, key));
}

static double *doubles_of(const cJSON *object, const char *key)
{
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(object, key), *item;
    if (!cJSON_IsArray(array)) return NULL;
    double *out = malloc(((size_t)cJSON_GetArraySize(array) + 1) * sizeof *out);
    int64_t i = 0;
    cJSON_ArrayForEach(item, array) out[i++] = item->valuedouble;
    return out;
}

static float *floats_of(const cJSON *object, const char *key)
{
    const cJSON *array = cJSON_GetObjectItemCaseSensitive(object, key), *item;
    if (!cJSON_IsArray(array)) return NULL;
    float *out = malloc(((size_t)cJSON_GetArraySize(array) + 1) * sizeof *out);
    int64_t i = 0;
    cJSON_ArrayForEach(item, array) out[i++] = (float)item->valuedouble;
    return out;
}

static void load_case(golden_case *g, const cJSON *json)
{
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", cJSON_GetObjectItemCaseSensitive(json, "name")->valuestring);
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(json, "shape");
    g->dims = cJSON_GetArraySize(shape);
    g->n = cJSON_GetArrayItem(shape, 0)->valueint;
    g->c = cJSON_GetArrayItem(shape, 1)->valueint;
    g->s = 1;
    for (int d = 2; d < g->dims; d++) g->s *= cJSON_GetArrayItem(shape, d)->valueint;
    g->options.eps = cJSON_GetObjectItemCaseSensitive(json, "eps")->valuedouble;
    g->options.momentum = cJSON_GetObjectItemCaseSensitive(json, "momentum")->valuedouble;
    g->options.cumulative = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "cumulative"));
    g->options.affine = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "affine"));
    g->options.track_running_stats = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(json, "track_running_stats"));
    g->weight = array_length(json, "weight") ? floats_of(json, "weight") : NULL;
    g->bias = array_length(json, "bias") ? floats_of(json, "bias") : NULL;
    const cJSON *step;
    cJSON_ArrayForEach(step, cJSON_GetObjectItemCaseSensitive(json, "steps"))
    {
        golden_step *s = &g->steps[g->step_count++];
        s->training = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(step, "training"));
        s->x = floats_of(step, "x");
        s->dy = floats_of(step, "dy");
        s->y = doubles_of(step, "y");
        s->dx = doubles_of(step, "dx");
        s->grad_weight = doubles_of(step, "grad_weight");
        s->grad_bias = doubles_of(step, "grad_bias");
        s->running_mean = doubles_of(step, "running_mean");
        s->running_var = doubles_of(step, "running_var");
        const cJSON *tracked = cJSON_GetObjectItemCaseSensitive(step, "num_batches_tracked");
        s->num_batches_tracked = tracked ? (int64_t)tracked->valuedouble : 0;
    }
}

int golden_load(const char *path, golden_case **cases)
{
    char *text = test_read_file(path);
    if (!text) return -1;
    cJSON *root = cJSON_Parse(text);
    free(text);
    if (!root) return -1;
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "cases"), *item;
    const int count = cJSON_GetArraySize(list);
    *cases = calloc((size_t)count, sizeof **cases);
    int i = 0;
    cJSON_ArrayForEach(item, list) load_case(&(*cases)[i++], item);
    cJSON_Delete(root);
    return count;
}

void golden_free(golden_case *cases, int count)
{
    for (int i = 0; i < count; i++) {
        golden_case *g = &cases[i];
        free(g->weight);
        free(g->bias);
        for (int k = 0; k < g->step_count; k++) {
            golden_step *s = &g->steps[k];
            void *arrays[] = {s->x, s->dy, s->y, s->dx, s->grad_weight, s->grad_bias, s->running_mean, s->running_var};
            for (size_t j = 0; j < sizeof arrays / sizeof arrays[0]; j++) free(arrays[j]);
        }
    }
    free(cases);
}
