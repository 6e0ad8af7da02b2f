/* SGD with momentum and weight decay, torch.optim.SGD's rule (dampening 0, no Nesterov). */
#include <syncbn/nn.h>

void sbn_sgd_step(float *params, float *velocity, const float *grads, int64_t count, sbn_sgd_options options,
                  bool first_step)
{
    const float lr = (float)options.lr, momentum = (float)options.momentum, decay = (float)options.weight_decay;
    for (int64_t i = 0; i < count; i++) {
        const float g = grads[i] + decay * params[i];
        float step = g;
        if (momentum != 0.0f) {
            velocity[i] = first_step ? g : momentum * velocity[i] + g;
            step = velocity[i];
        }
        params[i] -= lr * step;
    }
}
