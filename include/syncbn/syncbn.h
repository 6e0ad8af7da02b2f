/* syncbn — Batch Normalization and Synchronized Batch Normalization in C.
 * The umbrella header. It never includes mpi.h: for the MPI communicator,
 * include <syncbn/mpi.h> as well. */
#ifndef SYNCBN_SYNCBN_H
#define SYNCBN_SYNCBN_H

#include <syncbn/status.h>
#include <syncbn/shape.h>
#include <syncbn/kernels.h>
#include <syncbn/comm.h>
#include <syncbn/bn.h>
#include <syncbn/nn.h>
#include <syncbn/data.h>
#include <syncbn/tensor_file.h>
#include <syncbn/train.h>

#define SYNCBN_VERSION_MAJOR 0
#define SYNCBN_VERSION_MINOR 1
#define SYNCBN_VERSION_PATCH 0

#endif
