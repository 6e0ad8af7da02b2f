/* syncbn — tensor shapes as BN sees them.
 *
 * Every BN input is "N, C, S": N samples, C channels and S = the product of
 * the spatial sizes (1 for (N,C), L for (N,C,L), H*W, D*H*W).
 *   SBN_NCS: element (n, c, s) at  (n*C + c)*S + s   (PyTorch's default, NCHW)
 *   SBN_NSC: element (n, s, c) at  (n*S + s)*C + c   (channels-last, NHWC)
 * Both layouts give the same values.
 *
 * The element type of the activations (x, y, dy, dx) is shape.dtype:
 * SBN_DTYPE_F32 (0, so a shape written without it is float32),
 * SBN_DTYPE_BF16 or SBN_DTYPE_F16 (dtype.h). Per-channel parameters and
 * statistics are float32/float64 whatever the activations are (PyTorch's
 * mixed-type BatchNorm).
 */
#ifndef SYNCBN_SHAPE_H
#define SYNCBN_SHAPE_H

#include <stdint.h>
#include <syncbn/dtype.h>
#include <syncbn/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sbn_layout { SBN_NCS = 0, SBN_NSC = 1 } sbn_layout;

typedef struct sbn_shape {
    int64_t n, c, s;      /* samples, channels, spatial product (1 for (N,C)) */
    sbn_layout layout;
    sbn_dtype dtype;      /* of x, y, dy, dx: F32 (0), BF16 or F16 */
} sbn_shape;

/* Checks n, c, s >= 0, a known layout and element type, and that n*c*s
 * elements fit in int64 and in the address space. On success *elements
 * (if not NULL) = n*c*s.
 * Errors: SBN_ERR_SHAPE, SBN_ERR_ARG (unknown layout, a dtype other than
 * F32, BF16, F16). */
SBN_API sbn_status sbn_shape_check(sbn_shape shape, int64_t *elements);

#ifdef __cplusplus
}
#endif
#endif
