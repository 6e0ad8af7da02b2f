/* syncbn — tensor shapes as BN sees them.
 *
 * Every BN input is "N, C, S": N samples, C channels and S = the product of
 * the spatial sizes (1 for (N,C), L for (N,C,L), H*W, D*H*W).
 *   SBN_NCS: element (n, c, s) at  (n*C + c)*S + s   (PyTorch's default, NCHW)
 *   SBN_NSC: element (n, s, c) at  (n*S + s)*C + c   (channels-last, NHWC)
 * Both layouts give the same values.
 */
#ifndef SYNCBN_SHAPE_H
#define SYNCBN_SHAPE_H

#include <stdint.h>
#include <syncbn/status.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum sbn_layout { SBN_NCS = 0, SBN_NSC = 1 } sbn_layout;

typedef struct sbn_shape {
    int64_t n, c, s;      /* samples, channels, spatial product (1 for (N,C)) */
    sbn_layout layout;
} sbn_shape;

/* Checks n, c, s >= 0, a known layout, and that n*c*s fits in int64 and in
 * the address space. On success *elements (if not NULL) = n*c*s.
 * Errors: SBN_ERR_SHAPE, SBN_ERR_ARG (unknown layout). */
SBN_API sbn_status sbn_shape_check(sbn_shape shape, int64_t *elements);

#ifdef __cplusplus
}
#endif
#endif
