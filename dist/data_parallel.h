// Data-parallel training on top of dist.h and the model driver: replicas of
// the model on different batches, gradients combined so every replica takes
// the same optimiser step as one process on the union of the batches.
#pragma once
#include "dist.h"
#include "model.h"

// After model_forward_backward on this rank's batch: turn the local mean-loss
// gradients into the gradients of the global mean loss (over every counted
// target of every rank in group g) and return the global loss statistics.
// grad_global = sum_r n_r grad_r / sum_r n_r, one all-reduce of the gradients.
LossStats dp_reduce_gradients(const Dist *d, DistGroup g, Model *m, LossStats local);

// Make every rank's parameters those of rank 0 of the group (start of training).
void dp_broadcast_parameters(const Dist *d, DistGroup g, Model *m);
