#!/usr/bin/env bash
# The Reformer paper's Table 2 on the duplication task: one-layer models
# trained with LSH-1, LSH-2, LSH-4 and (shared-QK) full attention, each
# evaluated with full attention and with 8, 4, 2 and 1 hash rounds.
#
#   [ROWS="full lsh4 lsh2 lsh1"] experiments/duplication/table.sh [SEQ_LEN [STEPS]]   (defaults 256, 1500)
#
# Model as in the paper (d_model 256, d_ff 256, 4 heads of 64, one layer),
# chunk 32, batch 16, AdamW lr 1e-3 (warmup 200, cosine to 1e-4); one position
# axis (axial_shape=SEQ_LEN: a plain learned table, see results.md). Each run's
# log and training curve go to table_<SEQ_LEN>/, the table to
# table_<SEQ_LEN>/table.md. Evaluation: `reformer eval` on 256 fresh sequences
# (batches no training step draws, fixed by the seed; README, **eval**).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
len="${1:-256}"
steps="${2:-1500}"
out="$here/table_$len"
mkdir -p "$out"
make -s build/reformer
model=(--set data=dup --set seq_len="$len" --set axial_shape="$len" --set n_layers=1 --set attn_layers=lsh
       --set d_model=256 --set d_ff=256 --set n_heads=4 --set lsh_chunk=32 --set batch=16 --set lr=1e-3
       --set warmup=200 --set steps="$steps" --set dup_alphabet=128 --set log_every=50)
read -r -a rows <<< "${ROWS:-full lsh4 lsh2 lsh1}"  # ROWS="full lsh4": a subset
for row in "${rows[@]}"; do
    case "$row" in
    full) attn=(--set attn=full --set n_hashes=1) ;;
    lsh*) attn=(--set attn=pattern --set n_hashes="${row#lsh}") ;;
    esac
    dir="runs/dup-table-$len/$row"
    if [ -f "$dir/ckpt_$(printf %08d "$steps").h5" ]; then
        echo "[$row] $dir is trained already" >&2
    else
        rm -rf "$dir"
        echo "[$row] build/reformer train ${model[*]} ${attn[*]} --set out_dir=$dir" | tee "$out/$row.log"
        build/reformer train "${model[@]}" "${attn[@]}" --set out_dir="$dir" | tee -a "$out/$row.log"
    fi
    /usr/bin/python3 experiments/plot_metrics.py "$dir" -o "$out/$row.png" > /dev/null
done

ckpt_of() { echo "runs/dup-table-$len/$1/ckpt_$(printf %08d "$steps").h5"; }
# One line per trained row in row_<row>.md (a row run on its own, ROWS=lsh1,
# keeps the others'); the table is every row file there, in the paper's order.
for row in "${rows[@]}"; do
    name="full"; [ "$row" = full ] || name="LSH-${row#lsh}"
    line="| $name |"
    for col in full 8 4 2 1; do
        if [ "$col" = full ]; then ev=(--set attn=full)
        else ev=(--set attn=pattern --set n_hashes="$col"); fi
        res=$(build/reformer eval --ckpt "$(ckpt_of "$row")" "${ev[@]}")
        echo "$res" >> "$out/eval.log"
        acc=$(sed -n 's/.*| accuracy \([0-9.]*\) |.*/\1/p' <<< "$res")
        line="$line $(awk -v a="$acc" 'BEGIN { printf "%.1f", 100 * a }') |"
    done
    echo "$line" > "$out/row_$row.md"
done
{
    echo "| trained \\ eval | full | LSH-8 | LSH-4 | LSH-2 | LSH-1 |"
    echo "|---|---|---|---|---|---|"
    for row in full lsh4 lsh2 lsh1; do
        [ -f "$out/row_$row.md" ] && cat "$out/row_$row.md"
    done
} > "$out/table.md"
cat "$out/table.md"
