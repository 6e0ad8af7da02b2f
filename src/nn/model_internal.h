/* Internal: the model's layout, shared by model.c (building, forward,
 * backward) and model_state.c (names, state dicts). */
#ifndef SBN_NN_MODEL_INTERNAL_H
#define SBN_NN_MODEL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <syncbn/nn.h>

typedef enum layer_kind { LAYER_CONV, LAYER_BN, LAYER_RELU, LAYER_MAXPOOL, LAYER_LINEAR } layer_kind;

typedef struct layer {
    layer_kind kind;
    int64_t in_c, in_h, in_w, out_c, out_h, out_w; /* per sample */
    int64_t kernel, stride, padding;
    int64_t weight_offset, bias_offset, weight_size, bias_size; /* into params / grads */
    sbn_bn *bn;
    float *output;   /* (n, out_c, out_h, out_w) */
    float *cols;     /* conv: im2col of the last forward */
    int32_t *argmax; /* maxpool */
} layer;

enum { MAX_LAYERS = 16 };

struct sbn_model {
    layer layers[MAX_LAYERS];
    int layer_count;
    int64_t classes;
    float *params, *grads;
    int64_t param_count;
    int64_t capacity;           /* samples the buffers hold */
    int64_t batch;              /* samples of the last forward */
    const float *input;         /* of the last forward */
    float *gradient_buffers[2]; /* ping-pong dx/dy for backward */
    float *conv_scratch;
    bool has_forward;
    bool fuse_relu;     /* each ReLU after a BN runs inside the BN layer */
    sbn_comm *bn_comm;  /* of the BN layers: NULL for plain BN */
};

#endif
