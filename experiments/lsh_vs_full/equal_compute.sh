#!/usr/bin/env bash
# The equal-compute row of experiments/lsh_vs_full: full attention trained
# for as many steps as take the time of LSH-4's STEPS steps, by bench.log's
# median step times (run.sh measures them), with its own cosine schedule
# over those steps (a cut of the 2000-step run would not have annealed its
# learning rate); alone on both cores. Scored in train form over the same
# validation windows (full attention's decode form equals it: results.md).
#
#   experiments/lsh_vs_full/equal_compute.sh [STEPS [EVAL_WINDOWS]]   (run.sh's; writes eval_eq.log)
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
# EQ_STEPS=N pins the step count (a rerun after the bench drifted would otherwise retrain).
eq_steps="${EQ_STEPS:-$(/usr/bin/python3 "$here/table.py" --eq-steps "$here" "$steps")}"
dir=runs/lsh_vs_full/full_eq
ckpt="$(ckpt_in "$dir" "$eq_steps")"
if [ ! -f "$ckpt" ]; then
    rm -rf "$dir"
    args=("${model[@]}" --set attn=full --set n_hashes=1 --set steps="$eq_steps" --set ckpt_every="$eq_steps"
          --set out_dir="$dir")
    echo "[full_eq] build/reformer train ${args[*]}" | tee "$here/full_eq.log"
    /usr/bin/time -v -o "$here/full_eq.time" build/reformer train "${args[@]}" >> "$here/full_eq.log" 2>&1
fi
echo "[full_eq validation train] build/reformer eval --ckpt $ckpt --split validation --form train --windows $eval_windows" > "$here/eval_eq.log"
build/reformer eval --ckpt "$ckpt" --split validation --form train --windows "$eval_windows" 2>/dev/null | tail -1 >> "$here/eval_eq.log"
# For reference, schedule aside: the 2000-step full-attention run's first
# checkpoint at or after eq_steps (run.sh checkpoints every 1000 steps), whose
# learning rate had not been annealed.
cut=$(( (eq_steps + 999) / 1000 * 1000 ))
cut_ckpt="$(ckpt_in runs/lsh_vs_full/full "$cut")"
echo "[full_cut validation train] build/reformer eval --ckpt $cut_ckpt --split validation --form train --windows $eval_windows" >> "$here/eval_eq.log"
build/reformer eval --ckpt "$cut_ckpt" --split validation --form train --windows "$eval_windows" 2>/dev/null | tail -1 >> "$here/eval_eq.log"
