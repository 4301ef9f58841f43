// The CUDA backend: the Backend table of core/backend.h on one GPU (fp32).
//
// Kernels for the pointwise, normalisation, embedding, loss and optimiser ops,
// cuBLAS for matmul, CUB's radix sort for the LSH bucket sort, and fused
// chunked attention kernels (online softmax, logits kept in shared memory).
// Every reduction runs in a fixed order, so results are bit-identical from
// run to run on the same GPU model and toolkit (see cuda/README.md).
#pragma once
#include <stddef.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

// The CUDA backend table (real must be float). Uses the current CUDA device.
const Backend *backend_cuda(void);

// 1 if a usable CUDA device exists (cudaGetDeviceCount succeeds and reports
// at least one device, and a context can be created on the current one);
// else 0 with the reason in why[n] (no driver, no device, ...). Never exits.
int cuda_device_available(char *why, size_t n);

#ifdef __cplusplus
}
#endif
