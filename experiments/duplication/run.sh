#!/usr/bin/env bash
# The Reformer paper's duplication task (issue 2): sequences "0 w 0 w" of
# length 256 (|w| = 127, symbols 1..127), loss and accuracy on the second copy
# only, one LSH layer (4 hashes, chunk 32), d_model 256, 4 heads of 64.
# Trains 2000 steps of batch 16, then evaluates on 8 fresh batches with the
# trained number of hashes. ~15 minutes on 2 cores.
#
# axial_shape=256 is one axis: a plain learned position table. The default
# two-axis factorisation (16 x 16) plateaued at 82% (see results.md): with
# shared QK, position p and p + |w| must hash alike, which an additive
# per-axis embedding can only express approximately.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
make -s build/reformer
rm -rf runs/duplication  # a fresh run: train refuses a directory holding another run's checkpoints
build/reformer train --set data=dup --set seq_len=256 --set axial_shape=256 --set n_layers=1 \
    --set attn_layers=lsh --set d_model=256 --set d_ff=256 --set n_heads=4 --set lsh_chunk=32 \
    --set n_hashes=4 --set batch=16 --set lr=1e-3 --set warmup=200 --set steps=2000 --set dup_alphabet=128 \
    --set out_dir=runs/duplication --set log_every=50 | tee "$here/train.log"
