#!/usr/bin/env bash
# Issue 19, quality: factorising the buckets must not cost accuracy. LSH-4
# (experiments/lsh_vs_full's model and text: GCIDE, 3 all-LSH layers, d_model
# 128, 4 heads of 32, seq_len 2048, chunk 64, batch 2, seed 1337) trained
# twice with this build, same seed and steps: n_buckets=64 (32 rotation
# columns per round; the automatic count at this length) and n_buckets=8,8
# (64 buckets from 4 + 4 columns). Then validation bits per byte of each in
# training form and in decoding form over the same windows.
#
#   experiments/lsh_hash/quality.sh [STEPS [EVAL_WINDOWS]]   (defaults 400, 16; appends to quality.log)
#
# Each training run and each evaluation holds the heavy-job lock.
set -euo pipefail
mine="$(cd "$(dirname "$0")" && pwd)"
log="$mine/quality.log"
source "$mine/../lsh_vs_full/common.sh" "${1:-400}" "${2:-16}"  # cd to the root; sets here (its own), model, steps, eval_windows
for nb in 64 8,8; do
    dir="runs/lsh_hash/quality_nb${nb/,/x}"
    ckpt="$(ckpt_in "$dir" "$steps")"
    if [ ! -f "$ckpt" ]; then
        rm -rf "$dir"
        echo "[n_buckets=$nb] build/reformer train ${model[*]} --set n_hashes=4 --set n_buckets=$nb --set ckpt_every=0 --set out_dir=$dir" | tee -a "$log"
        flock /tmp/reformer-heavy.lock build/reformer train "${model[@]}" --set n_hashes=4 --set n_buckets="$nb" \
            --set ckpt_every=0 --set out_dir="$dir" | grep -E "^step $steps/|eval" | tail -2 >> "$log"
    fi
    for how in train decode; do
        echo "[n_buckets=$nb validation $how] build/reformer eval --ckpt $ckpt --split validation --form $how --windows $eval_windows" >> "$log"
        flock /tmp/reformer-heavy.lock build/reformer eval --ckpt "$ckpt" --split validation --form "$how" \
            --windows "$eval_windows" 2>/dev/null | tail -1 >> "$log"
    done
done
cat "$log"
