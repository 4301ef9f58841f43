#!/usr/bin/env bash
# Training-step throughput on the CPU backend (issue 2).
#
# 1. The issue's configuration: seq_len 16384, d_model 256, 6 layers, 4 heads,
#    2 hashes, chunk 64 (pattern local,lsh), batch 1: tokens/s and the share of
#    the step in matmuls, attention (hash, sort, chunked attention) and the rest.
# 2. Tokens/s against length for a 2-layer all-LSH model and the same model
#    with full attention (the paper's claim: LSH time per token stays flat).
#
# Run on an otherwise idle machine: timings are wall clock.
# Usage: experiments/throughput/run.sh  (writes results.jsonl, results.md here)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/results.jsonl"
source "$here/../common.sh"
run issue_config --steps 3 --warmup 1 --set seq_len=16384 --set d_model=256 --set n_layers=6 --set n_heads=4 \
    --set n_hashes=2 --set lsh_chunk=64 --set local_chunk=64 --set batch=1
for L in 1024 2048 4096 8192 16384; do
    run sweep_lsh --steps 2 --warmup 1 --set seq_len=$L --set d_model=256 --set n_layers=2 --set attn_layers=lsh \
        --set n_hashes=2 --set lsh_chunk=64 --set batch=1
done
for L in 1024 2048 4096 8192; do
    run sweep_full --steps 1 --warmup 1 --set seq_len=$L --set d_model=256 --set n_layers=2 --set attn_layers=lsh \
        --set attn=full --set batch=1
done
python3 "$here/table.py" "$out" > "$here/results.md"
cat "$here/results.md"
