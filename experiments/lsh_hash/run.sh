#!/usr/bin/env bash
# Issue 19: factorised LSH buckets. The build before (OLD, main d649d1e built
# in its own worktree) against this one (NEW), alternating, one run per hold
# of the heavy-job lock so other jobs interleave.
# Model: d_model 256, d_ff 1024, 4 heads of 64, 2 hashes, chunks 64, batch 1,
# AdamW step (`reformer bench`: random tokens, profile shares incl. share_hash).
#
#   experiments/lsh_hash/run.sh OLD_BIN NEW_BIN PHASE...
#
# flat:L      2 all-LSH layers at seq_len L, old then new (--warmup 1 below
#             256K, 0 from 256K on; one timed step, FLAT_STEPS below 256K).
# flatnew:L   the same, the new build only (1M: the old build's step is
#             ~20 minutes of hashing on 2 shared cores; see results.md).
# long1m      4 layers local,lsh, attn_head_group=2, 1,048,576 tokens, new build
#             (the old one: experiments/memory/long.md, row 1m_g2).
# torch16k:B  6 all-LSH layers at 16,384 tokens, build B (old|new): default
#             n_buckets (auto: 16,32 new; 512 old), and for new also
#             n_buckets=512 (unfactorised, as reformer-pytorch hashes) and
#             attn_head_group=1 (one head per attention pass: less memory).
# team16k:B   torch16k's model and length, build B (old|new): the default
#             (all heads per pass) and attn_head_group=1 with automatic and
#             unfactorised (512) buckets: the one-head pass, whose single
#             lane a team of threads runs together (core/attention_cpu.c).
# fit16k      torch16k's model, build NEW, with attn_head_group=2 (automatic
#             and 512 buckets): the configuration that fits in 1/8 of
#             reformer-pytorch's peak RSS. fit16k:B: the same on build B
#             (old|new).
# torchref    reformer-pytorch 1.4.4 (experiments/reformer_pytorch/bench.py,
#             fp32 on the CPU, torch's own threads) on torch16k's model, in the
#             virtual environment .venv-rp (Debian's torch via
#             --system-site-packages; the wheels of cuda/device_wheels.txt).
# HEAVY_LOCK: the lock file (default /tmp/reformer-heavy.lock, the shared one).
# Appends to results.jsonl (each row tagged build, phase, day, and TAG when
# set: the rows of one later A/B, e.g. TAG=team); table.py
# writes the tables of results.md.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
old="$1" new="$2"
shift 2
model=(--set batch=1 --set d_model=256 --set d_ff=1024 --set n_heads=4 --set d_head=64 --set n_hashes=2
       --set lsh_chunk=64 --set local_chunk=64)
run() {  # run BUILD PHASE ARGS...
    local build="$1" phase="$2" bin="$old"
    shift 2
    [[ $build == new ]] && bin="$new"
    echo "[$phase $build] $*" >&2
    flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}" "$bin" bench --json "${model[@]}" "$@" |
        python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(build='$build', phase='$phase', args='$*', session='$(date -u +%F)', tag='${TAG:-}'); print(json.dumps(r))" \
        >>"$here/results.jsonl"
    tail -1 "$here/results.jsonl" >&2
}
flat_args() {  # flat_args L (FLAT_STEPS: timed steps below 256K, default 1)
    local w=1 n=${FLAT_STEPS:-1}
    (($1 >= 262144)) && w=0 n=1
    echo --warmup $w --steps $n --set n_layers=2 --set attn_layers=lsh --set seq_len=$1
}
for phase in "$@"; do
    case "$phase" in
    flat:*) L=${phase#flat:}; for b in old new; do run $b flat $(flat_args "$L"); done ;;
    flatnew:*) L=${phase#flatnew:}; run new flat $(flat_args "$L") ;;
    long1m) run new long1m --warmup 0 --steps 1 --set n_layers=4 --set seq_len=1048576 --set axial_shape=1024,1024 \
                --set attn_head_group=2 ;;
    torch16k:*)
        b=${phase#torch16k:}
        t=(--warmup 1 --steps 1 --set n_layers=6 --set attn_layers=lsh --set seq_len=16384)
        run "$b" torch16k "${t[@]}"
        [[ $b == new ]] && run "$b" torch16k "${t[@]}" --set n_buckets=512
        # the same maths, attention one head at a time (its pass buffers are 1/4)
        [[ $b == new ]] && run "$b" torch16k "${t[@]}" --set attn_head_group=1 ;;
    team16k:*)
        b=${phase#team16k:}
        t=(--warmup 1 --steps 1 --set n_layers=6 --set attn_layers=lsh --set seq_len=16384)
        run "$b" team16k "${t[@]}"
        run "$b" team16k "${t[@]}" --set attn_head_group=1
        run "$b" team16k "${t[@]}" --set attn_head_group=1 --set n_buckets=512 ;;
    fit16k | fit16k:*)
        # torch16k's model in 1/8 of reformer-pytorch's peak RSS: attention in
        # passes of 2 heads (the same maths, half the pass buffers).
        b=new
        [[ $phase == fit16k:* ]] && b=${phase#fit16k:}
        t=(--warmup 1 --steps 1 --set n_layers=6 --set attn_layers=lsh --set seq_len=16384 --set attn_head_group=2)
        run "$b" fit16k "${t[@]}"
        run "$b" fit16k "${t[@]}" --set n_buckets=512 ;;
    torchref)
        echo "[torchref]" >&2
        flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}" .venv-rp/bin/python experiments/reformer_pytorch/bench.py --device cpu \
            --precision fp32 --steps 1 --seq-len 16384 --d-model 256 --d-ff 1024 --heads 4 --layers 6 --n-hashes 2 \
            --bucket 64 |
            python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r.update(build='reformer-pytorch', phase='torch16k', session='$(date -u +%F)', tag='${TAG:-}'); print(json.dumps(r))" \
            >>"$here/results.jsonl"
        tail -1 "$here/results.jsonl" >&2 ;;
    *) echo "unknown phase $phase" >&2; exit 2 ;;
    esac
done
