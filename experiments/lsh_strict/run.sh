#!/usr/bin/env bash
# Standard against strictly causal LSH attention (issue 13, part 2): the same
# model trained with lsh_form=standard and lsh_form=strict on the same text,
# same seed, same steps, side by side (one OpenMP thread each on the 2 cores),
# then for each final checkpoint:
#   - validation and test bits per byte in training form (`eval --form train`:
#     the whole window at once, LSH sorted over it) and in decoding form
#     (`eval --form decode`: one byte at a time, no later byte seen);
#   - the one-token causality measurement (build/lsh_leak ckpt=..., in float
#     and, to tell a leak from float rounding, in double: build/lsh_leak_f64).
#
#   experiments/lsh_strict/run.sh [STEPS]     (default 3000; writes results.md)
#
# Model: 2 LSH layers (no local layers: every layer can leak), d_model 128,
# d_ff 512, 4 heads of 32, 2 hashes, chunk 32 (64 buckets), seq_len 1024,
# batch 4, AdamW lr 2e-3 (warmup 100, cosine), tinyshakespeare (the shipped
# data: 1.0 MB train, 55 KB validation, 55 KB test split).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
steps="${1:-3000}"
make -s build/reformer build/lsh_leak build/lsh_leak_f64
model=(--set data=data/tinyshakespeare.txt --set seq_len=1024 --set batch=4 --set d_model=128 --set d_ff=512
       --set n_heads=4 --set n_layers=2 --set attn_layers=lsh --set lsh_chunk=32 --set n_hashes=2 --set lr=2e-3
       --set warmup=100 --set steps="$steps" --set eval_every=500 --set eval_windows=0 --set ckpt_every=1000
       --set log_every=50 --set seed=1337)
ckpt_of() { echo "runs/lsh_strict/$1/ckpt_$(printf %08d "$steps").h5"; }
pids=()
for form in standard strict; do
    dir="runs/lsh_strict/$form"
    if [ -f "$(ckpt_of "$form")" ]; then
        echo "[$form] $dir is trained already" >&2
        continue
    fi
    rm -rf "$dir"
    echo "[$form] build/reformer train ${model[*]} --set lsh_form=$form --set out_dir=$dir" | tee "$here/$form.log"
    OMP_NUM_THREADS=1 build/reformer train "${model[@]}" --set lsh_form="$form" --set out_dir="$dir" \
        >> "$here/$form.log" 2>&1 &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
/usr/bin/python3 experiments/plot_metrics.py runs/lsh_strict/standard runs/lsh_strict/strict -o "$here/curves.png" > /dev/null

: > "$here/eval.log"
for form in standard strict; do
    for split in validation test; do
        for how in train decode; do
            echo "[$form $split $how] build/reformer eval --ckpt $(ckpt_of "$form") --split $split --form $how" >> "$here/eval.log"
            build/reformer eval --ckpt "$(ckpt_of "$form")" --split "$split" --form "$how" 2>/dev/null | tail -1 >> "$here/eval.log"
        done
    done
    echo "[$form leak] build/lsh_leak ckpt=$(ckpt_of "$form")" >> "$here/eval.log"
    build/lsh_leak ckpt="$(ckpt_of "$form")" >> "$here/eval.log"
    echo "[$form leak_f64] build/lsh_leak_f64 ckpt=$(ckpt_of "$form")" >> "$here/eval.log"
    build/lsh_leak_f64 ckpt="$(ckpt_of "$form")" >> "$here/eval.log"
done
/usr/bin/python3 "$here/table.py" "$here/eval.log" "$steps" > "$here/results.md"
cat "$here/results.md"
