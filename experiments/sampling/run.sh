#!/usr/bin/env bash
# Sampling speed of `reformer sample` with the decoding cache and without it
# (--no-cache recomputes the whole prefix for every byte), on
#  1. the default model after the README's 300 training steps, and
#  2. a 6-layer d_model 256 model with a 16,384-byte context (1 training step:
#     speed does not depend on the weights).
# Writes results.md next to this script (commands and their summary lines).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
make -s build/reformer
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
R=build/reformer
$R train --set out_dir="$work/default" --set log_every=100 > "$work/train.log"
$R train --set out_dir="$work/big" --set steps=1 --set seq_len=16384 --set axial_shape=128,128 \
    --set d_model=256 --set d_ff=1024 --set n_layers=6 --set batch=1 > /dev/null
small="$work/default/ckpt_00000300.h5"
big="$work/big/ckpt_00000001.h5"
runs=(
    "sample --ckpt $small --prompt ROMEO: --len 400 --seed 1 --top-k 10"
    "sample --ckpt $small --prompt ROMEO: --len 400 --seed 1 --top-k 10 --no-cache"
    "sample --ckpt $big --prompt The --len 4000 --seed 1"
)
{
    echo "# Sampling speed (\`reformer sample\`), CPU, one core"
    echo
    echo "Command: \`experiments/sampling/run.sh\` on $(nproc) cores ($(date -u +%Y-%m-%d))."
    echo "Default model: $(grep '^done:' "$work/train.log")"
    echo
    echo '| model | command | stderr summary |'
    echo '|---|---|---|'
    i=0
    for args in "${runs[@]}"; do
        # shellcheck disable=SC2086 # args is split into words on purpose
        $R $args > "$work/out.$i" 2> "$work/err.$i"
        model=$([[ $args == *"$big"* ]] && echo "6 layers, d_model 256, seq_len 16384" || echo "default (4 layers, d_model 128)")
        echo "| $model | \`reformer ${args//$work/WORK}\` | $(tail -n 1 "$work/err.$i" | sed -e "s#$work#WORK#g" -e 's/|/\\|/g') |"
        i=$((i + 1))
    done
    echo
    if cmp -s "$work/out.0" "$work/out.1"; then
        echo "The cached and --no-cache runs printed the same $(wc -c < "$work/out.0") bytes."
    else
        echo "The cached and --no-cache runs printed DIFFERENT bytes."
    fi
} > "$here/results.md"
cat "$here/results.md"
