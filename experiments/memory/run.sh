#!/usr/bin/env bash
# Peak memory of a training step (issue 2): flat in depth, linear in length,
# against full attention and against storing activations.
#
# Every row is one `reformer bench` process: peak RSS (getrusage) of the whole
# process after one training step (forward, reversible backward, AdamW).
# Usage: experiments/memory/run.sh   (from anywhere; writes results.jsonl and
# results.md next to this script). Takes ~15 minutes on 2 cores.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/results.jsonl"
source "$here/../common.sh"
base=(--set d_model=256 --set batch=1)

# Depth: seq_len 16384, d_model 256; the reversible peak must stay flat.
for n in 2 4 6 12; do run depth --warmup 0 --steps 1 "${base[@]}" --set seq_len=16384 --set n_layers=$n; done
for n in 2 12; do run depth_stored --warmup 0 --steps 1 "${base[@]}" --set seq_len=16384 --set n_layers=$n --set reversible=0; done

# Length: 4 layers; the peak must grow at most linearly.
for L in 8192 16384 32768 65536; do run length --warmup 0 --steps 1 "${base[@]}" --set n_layers=4 --set seq_len=$L; done
# Full attention (one L x L tile per head and thread): quadratic.
for L in 8192 16384; do run length_full --warmup 0 --steps 1 "${base[@]}" --set n_layers=4 --set seq_len=$L --set attn=full; done

python3 "$here/table.py" "$out" > "$here/results.md"
cat "$here/results.md"
