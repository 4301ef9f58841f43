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

// The CUDA backend table (real must be float). Uses the current CUDA device;
// its ops need a reserve_scratch first (model_init makes it).
const Backend *backend_cuda(void);

// Pick this process's GPU, one per process: device local_rank % count, where
// local_rank is the process's rank among those on its node (0 without MPI;
// with CUDA_VISIBLE_DEVICES set per process, count is 1 and it is device 0),
// and create its context. Returns the device, with a description in why[n];
// or -1 with the reason in why[n] (cudaGetErrorString: no driver, no device,
// ...). Never exits.
int cuda_select_device(int local_rank, char *why, size_t n);

// cuda_select_device(0, why, n) >= 0: 1 if a usable CUDA device exists, else 0.
int cuda_device_available(char *why, size_t n);

// test_cuda's knobs, so that every path the dispatcher can take is compared
// on small inputs (0 = automatic, the default): at most max_group_pairs
// (batch, head) pairs per LSH group (groups after the first run), the
// reference kernels' tile size (8, 16 or 32 items), and at most
// max_slice_blocks chunk blocks per slice of the tensor-core path (slice
// boundaries inside pairs). Set them before asking attention_workspace_bytes
// for the calls they are to govern.
void cuda_set_test_knobs(int max_group_pairs, int tile, int max_slice_blocks);

#ifdef __cplusplus
}
#endif
