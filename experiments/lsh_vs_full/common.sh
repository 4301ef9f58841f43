# shellcheck shell=bash disable=SC2034  # the variables are read by the scripts that source this file
# Sourced by run.sh and equal_compute.sh: the repository root, the text and
# the model every row of experiments/lsh_vs_full trains (a row adds its
# attention; equal_compute.sh overrides the steps, a later --set winning).
# Sets: here, steps ($1, default 2000), eval_windows ($2, default 256), text, model; defines ckpt_in.
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.." || exit 1
steps="${1:-2000}"
eval_windows="${2:-256}"
text="$("$here/gcide.sh")"
make -s build/reformer
model=(--set data="$text" --set seq_len=2048 --set batch=2 --set d_model=128 --set d_ff=512 --set n_heads=4
       --set n_layers=3 --set attn_layers=lsh --set lsh_chunk=64 --set lr=2e-3 --set warmup=100
       --set steps="$steps" --set eval_every=500 --set eval_windows=16 --set ckpt_every=1000 --set log_every=50
       --set seed=1337)
# ckpt_in DIR STEP: the path of a run's checkpoint at STEP (the trainer's naming).
ckpt_in() { echo "$1/ckpt_$(printf %08d "$2").h5"; }
