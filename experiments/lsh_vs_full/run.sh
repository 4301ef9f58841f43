#!/usr/bin/env bash
# LSH against full attention on a large real text (issue 13, part 3): one
# model trained four times, with full attention and with LSH attention of
# 1, 2 and 4 hash rounds, at the same width, depth, length, data, seed and
# number of steps; then for each final checkpoint:
#   - validation bits per byte in training form (`eval --form train`) and in
#     decoding form (`eval --form decode`, one byte at a time; for full
#     attention the two forms are the same computation, a check);
#   - training tokens/s (`bench`, the rows alternated, medians of 3, both
#     cores, nothing else running) and peak memory (`bench`'s peak RSS of a
#     training step, and the whole training process's under /usr/bin/time);
#   - at equal compute: full attention trained for the time LSH-4's steps
#     take (equal_compute.sh), its own schedule, scored in train form.
#
#   experiments/lsh_vs_full/run.sh [STEPS [EVAL_WINDOWS]]   (defaults 2000, 256; writes results.md)
#
# Text: GCIDE (experiments/lsh_vs_full/gcide.sh, from Debian's dict-gcide):
# 40 MB, split 90/5/5 in file order (train A..T, validation and test near
# the end of the alphabet). Model: 3 layers, all of the attention under
# test (attn_layers=lsh; attn=full makes every layer full shared-QK causal
# attention), d_model 128, d_ff 512, 4 heads of 32, seq_len 2048, chunk 64
# (64 buckets), batch 2, AdamW lr 2e-3 (warmup 100, cosine), seed 1337.
# Full attention trains on one core while the LSH rows take turns on the
# other (one OpenMP thread each; TRAIN_THREADS=N for N). The last row,
# lsh4strict, is LSH-4 in lsh_form=strict (strictly causal, issue 13 part 2)
# for comparison.
set -euo pipefail
# shellcheck source=common.sh
source "$(dirname "$0")/common.sh"
rows=(full lsh4 lsh2 lsh1 lsh4strict)
attn_of() {
    case "$1" in
        full) echo "--set attn=full --set n_hashes=1" ;;
        lsh4strict) echo "--set n_hashes=4 --set lsh_form=strict" ;;
        lsh*) echo "--set n_hashes=${1#lsh}" ;;
    esac
}
ckpt_of() { ckpt_in "runs/lsh_vs_full/$1" "$steps"; }

train_row() {
    local row="$1" dir="runs/lsh_vs_full/$1"
    if [ -f "$(ckpt_of "$row")" ]; then
        echo "[$row] $dir is trained already" >&2
        return
    fi
    rm -rf "$dir"
    # shellcheck disable=SC2046
    echo "[$row] OMP_NUM_THREADS=${TRAIN_THREADS:-1} build/reformer train ${model[*]} $(attn_of "$row") --set out_dir=$dir" | tee "$here/$row.log"
    # shellcheck disable=SC2046
    OMP_NUM_THREADS="${TRAIN_THREADS:-1}" /usr/bin/time -v -o "$here/$row.time" build/reformer train "${model[@]}" $(attn_of "$row") \
        --set out_dir="$dir" >> "$here/$row.log" 2>&1
}
train_row full &
full_pid=$!
for row in "${rows[@]:1}"; do train_row "$row"; done  # every row after full, in turn
wait "$full_pid"
/usr/bin/python3 experiments/plot_metrics.py "${rows[@]/#/runs/lsh_vs_full/}" -o "$here/curves.png" > /dev/null

: > "$here/eval.log"
for row in "${rows[@]}"; do
    for how in train decode; do
        echo "[$row validation $how] build/reformer eval --ckpt $(ckpt_of "$row") --split validation --form $how --windows $eval_windows" >> "$here/eval.log"
        build/reformer eval --ckpt "$(ckpt_of "$row")" --split validation --form "$how" \
            --windows "$eval_windows" 2>/dev/null | tail -1 >> "$here/eval.log"
    done
done

# Tokens/s of a training step, on both cores with nothing else running; the
# rows alternate so that the machine's drift falls on all of them alike.
: > "$here/bench.log"
for rep in 1 2 3; do
    for row in "${rows[@]}"; do
        # shellcheck disable=SC2046
        echo "[$row bench $rep] build/reformer bench --json --warmup 1 --steps 5 ${model[*]} $(attn_of "$row")" >> "$here/bench.log"
        # shellcheck disable=SC2046
        build/reformer bench --json --warmup 1 --steps 5 "${model[@]}" $(attn_of "$row") 2>/dev/null | tail -1 >> "$here/bench.log"
    done
done
"$here/equal_compute.sh" "$steps" "$eval_windows"
/usr/bin/python3 "$here/table.py" "$here" "$steps" "$eval_windows" > "$here/results.md"
cat "$here/results.md"
