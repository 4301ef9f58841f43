#!/usr/bin/env bash
# Issue 9: the longest seq_len that fits on 16, 80 and 141 GiB GPUs, from
# `reformer plan --fit` (computed from the plan and core/cuda_sizes.h: no GPU
# involved, nothing allocated). Writes gpu_plan.md next to this script.
# Usage: experiments/memory/gpu_plan.sh [BIN]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-build/reformer}"
enwik8=(--set d_model=1024 --set d_ff=4096 --set n_heads=8 --set n_layers=12 --set attn_layers=local,local,lsh,local)
cells=()
issue=(--set d_model=256 --set d_ff=1024 --set n_heads=4 --set n_layers=4 --set attn_layers=local,lsh --set axial_dims=128,128)
{
    echo "# Longest seq_len that fits on a GPU (computed, not run)"
    echo
    echo "Command: \`experiments/memory/gpu_plan.sh\`; each cell is \`reformer plan --set device=cuda --set batch=1"
    echo "--set precision=P --set attn_head_group=G MODEL --fit SIZE\` (the plan of core/memplan.c with the CUDA"
    echo "backend's sizing rules, core/cuda_sizes.h; CUB sort storage by its bound, cuBLAS workspace 32 MiB). The CUDA"
    echo "context (~0.5 GiB) is not in the plan: leave it free. n_hashes 2, chunks 64, axial shape re-derived per length."
    echo "No GPU has run these lengths."
    echo
    echo "| model | precision | attn_head_group | bytes/token | 16 GiB | 80 GiB | 141 GiB |"
    echo "|---|---|---|---|---|---|---|"
    for m in enwik8 issue; do
        if [[ $m == enwik8 ]]; then args=("${enwik8[@]}"); name="enwik8 (d 1024, d_ff 4096, 8 heads, 12 layers, local,local,lsh,local)"
        else args=("${issue[@]}"); name="issue 9 (d 256, d_ff 1024, 4 heads, 4 layers, local,lsh)"; fi
        for p in fp32 bf16; do
            for g in 0 1; do
                row="| $name | $p | $([[ $g == 0 ]] && echo all || echo $g) |"
                per=""
                for size in 16G 80G 141G; do
                    line=$("$bin" plan --set device=cuda --set batch=1 --set precision=$p --set attn_head_group=$g \
                        "${args[@]}" --fit $size | grep '^fit:')
                    L=$(sed -n 's/^fit: longest seq_len \([0-9]*\).*/\1/p' <<<"$line")
                    per=$(sed -n 's/.* \([0-9]*\) bytes per token.*/\1/p' <<<"$line")
                    cells+=("${L:-none}")
                done
                echo "$row $per | ${cells[0]} | ${cells[1]} | ${cells[2]} |"
                cells=()
            done
        done
    done
} > "$here/gpu_plan.md"
cat "$here/gpu_plan.md"
