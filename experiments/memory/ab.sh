#!/usr/bin/env bash
# Issue 9: tokens/s of the build before the memory work (OLD_BIN, built from
# f645fdf in its own directory) against this one (NEW_BIN), seq_len 16384,
# 6 layers, alternating old/new, 3 runs each, all six back to back under one
# hold of the heavy-job lock (~3 minutes).
# Usage: [OMP_WAIT_POLICY=active] experiments/memory/ab.sh OLD_BIN NEW_BIN  (appends to ab.jsonl,
# each row tagged with the OpenMP wait policy it ran under and the day, its session)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
old="$1" new="$2"
args=(bench --json --warmup 1 --steps 1 --set batch=1 --set d_model=256 --set d_ff=1024 --set n_hashes=2
      --set axial_dims=128,128 --set n_layers=6 --set seq_len=16384)
exec 9>/tmp/reformer-heavy.lock
flock 9
for i in 1 2 3; do
    for build in old new; do
        bin=$old
        [[ $build == new ]] && bin=$new
        "$bin" "${args[@]}" |
            python3 -c "import json,sys; r=json.loads(sys.stdin.read()); r['build']='$build'; r['omp_wait_policy']='${OMP_WAIT_POLICY:-default}'; r['session']='$(date -u +%F)'; print(json.dumps(r))" \
            >>"$here/ab.jsonl"
        tail -1 "$here/ab.jsonl" >&2
    done
done
