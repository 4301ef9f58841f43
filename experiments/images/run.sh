#!/usr/bin/env bash
# Images (issue 24): the measurements of results.md, stage by stage, each
# heavy run under the shared heavy lock (one run per hold):
#
#   experiments/images/run.sh [STAGE...]   (default: all, in this order)
#     train32   a small Reformer on the 32x32 patches (runs/images/m32)
#     eval32    its test bits per dim (every held-out patch), and PNG's size of
#               the same patches at libpng level 9 (build/png_size)
#     train64   the same model shape on the 64x64 patches (runs/images/m64)
#     complete  six held-out 64x64 patches, top 32 rows kept, 3 completions
#               each, stacked into completions.png
#     bench     one training step of 12,288-token images (batch 8, d_model 256)
#     plan      the paper's 6-layer d_model 1024 Imagenet64 model on a 16 GiB GPU
#
# --one-hold STAGE... runs the stages under one hold of the lock.
# Needs experiments/images/prepare.sh first (the patches). STEPS32, STEPS64
# override the step counts. Logs: experiments/images/<stage>.log.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
make -s build/reformer build/png_size
lock=(flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}")
# A group of stages under one hold of the lock (the lock was contended by
# seven helpers: a measurement whose parts queue separately may never finish):
#   run.sh --one-hold train32 eval32
if [ "${1:-}" = --one-hold ]; then
    shift
    exec "${lock[@]}" env HEAVY_LOCK_HELD=1 "$0" "$@"
fi
if [ "${HEAVY_LOCK_HELD:-0}" = 1 ]; then lock=(); fi
data=runs/images
steps32="${STEPS32:-3000}"
steps64="${STEPS64:-900}"
# 4 layers alternating local and LSH attention, d_model 128: small enough to
# train for an hour or two on one core of this machine. local_chunk is one
# image row of subpixels (W * 3), so a local layer sees its row and the one above.
# shellcheck disable=SC2054  # commas inside values (attn_layers=local,lsh)
model=(--set d_model=128 --set d_ff=512 --set n_heads=4 --set n_layers=4 --set attn_layers=local,lsh
       --set lsh_chunk=64 --set n_hashes=2 --set lr=2e-3 --set schedule=cosine --set lr_min=1e-4
       --set eval_every=0 --set log_every=10 --set seed=1337)
ckpt() { find "$1" -name "ckpt_*.h5" | sort | tail -1; }
stage() {
    local name="$1"; shift
    echo "[$name] $*" | tee "$here/$name.log"
    "$@" >> "$here/$name.log" 2>&1
}
# The six held-out 64x64 patches of the completion grid (test split: chelsea, coffee).
grid=(chelsea_001_002 chelsea_001_004 chelsea_002_003 coffee_001_006 coffee_002_003 coffee_003_004)

for s in "${@:-train32 eval32 train64 complete bench plan}"; do
    case "$s" in
    train32)
        rm -rf runs/images/m32
        stage train32 "${lock[@]}" build/reformer train "${model[@]}" --set data=$data/patches32 \
            --set image_shape=32,32,3 --set seq_len=3072 --set local_chunk=96 --set batch=2 \
            --set steps="$steps32" --set warmup=25 --set ckpt_every=50 --set out_dir=runs/images/m32 ;;
    eval32)
        stage eval32 "${lock[@]}" build/reformer eval --ckpt "$(ckpt runs/images/m32)" --split test
        build/png_size $data/patches32/test | tee -a "$here/eval32.log" ;;
    train64)
        rm -rf runs/images/m64
        stage train64 "${lock[@]}" build/reformer train "${model[@]}" --set data=$data/patches64 \
            --set image_shape=64,64,3 --set seq_len=12288 --set local_chunk=192 --set batch=1 \
            --set steps="$steps64" --set warmup=10 --set ckpt_every=20 --set out_dir=runs/images/m64 ;;
    complete)
        : > "$here/complete.log"
        for g in "${grid[@]}"; do
            echo "[complete] build/reformer sample --ckpt $(ckpt runs/images/m64) --image $data/patches64/test/$g.png --keep-rows 32 --n 3 --seed 1 --out runs/images/grid_$g.png" >> "$here/complete.log"
            "${lock[@]}" build/reformer sample --ckpt "$(ckpt runs/images/m64)" --image "$data/patches64/test/$g.png" \
                --keep-rows 32 --n 3 --seed 1 --out "runs/images/grid_$g.png" >> "$here/complete.log" 2>&1
        done
        $data/venv/bin/python - "$here/completions.png" "${grid[@]/#/runs/images/grid_}" <<'PY'
import sys
from PIL import Image
out, rows = sys.argv[1], [Image.open(p + ".png") for p in sys.argv[2:]]
w, h, gap = rows[0].width, rows[0].height, 4
sheet = Image.new("RGB", (w, len(rows) * (h + gap) - gap), "white")
for i, r in enumerate(rows):
    sheet.paste(r, (0, i * (h + gap)))
sheet = sheet.resize((sheet.width * 2, sheet.height * 2), Image.NEAREST)  # 2x, pixels kept sharp
sheet.save(out, optimize=True)
PY
        ;;
    bench)
        stage bench "${lock[@]}" build/reformer bench --json --steps 1 --warmup 0 --set image_shape=64,64,3 \
            --set seq_len=12288 --set batch=8 --set d_model=256 --set d_ff=1024 --set n_heads=4 --set n_layers=6 \
            --set attn_layers=lsh --set lsh_chunk=128 --set n_hashes=2 ;;
    plan)
        stage plan build/reformer plan --set device=cuda --set image_shape=64,64,3 --set seq_len=12288 --set batch=8 \
            --set d_model=1024 --set d_ff=4096 --set n_heads=8 --set n_layers=6 --set attn_layers=lsh \
            --set lsh_chunk=128 --set n_hashes=2 --fit 16G
        # and the bench stage's model on this machine's CPU backend (computed)
        echo "[plan] build/reformer plan --set image_shape=64,64,3 --set seq_len=12288 --set batch=8 --set d_model=256 --set d_ff=1024 --set n_heads=4 --set n_layers=6 --set attn_layers=lsh --set lsh_chunk=128 --set n_hashes=2" >> "$here/plan.log"
        build/reformer plan --set image_shape=64,64,3 --set seq_len=12288 --set batch=8 --set d_model=256 \
            --set d_ff=1024 --set n_heads=4 --set n_layers=6 --set attn_layers=lsh --set lsh_chunk=128 \
            --set n_hashes=2 | tail -3 >> "$here/plan.log" ;;
    *) echo "run.sh: unknown stage '$s'" >&2; exit 2 ;;
    esac
done
