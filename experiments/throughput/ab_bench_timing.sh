#!/usr/bin/env bash
# Issue 22: `reformer bench` now times unprofiled steps and takes the time
# shares from one extra profiled forward-backward. Does the CPU bench's
# tokens/s stay the same or rise? A/B of two builds, alternating, each run
# one process under the shared heavy lock (taken per run): the issue-2
# throughput model (experiments/throughput/run.sh's issue_config) at
# seq_len 4096, so that enough rounds fit a shared machine.
#   experiments/throughput/ab_bench_timing.sh OLD_BIN NEW_BIN [ROUNDS]
# Appends one JSON line per run (tagged "build": old|new, "round") to
# ab_bench_timing.jsonl here, then prints the table (ab_bench_timing.py).
set -euo pipefail
old=$1 new=$2 rounds=${3:-6}
here="$(cd "$(dirname "$0")" && pwd)"
out="$here/ab_bench_timing.jsonl"
args=(bench --json --warmup 1 --steps 3 --set seq_len=4096 --set d_model=256 --set n_layers=6 --set n_heads=4
      --set n_hashes=2 --set lsh_chunk=64 --set local_chunk=64 --set batch=1)
: >"$out"
for r in $(seq 1 "$rounds"); do
    # Alternate which build goes first, so a drift in the machine's load
    # does not favour one side.
    if [ $((r % 2)) = 1 ]; then order="old new"; else order="new old"; fi
    for b in $order; do
        bin=$old
        [ "$b" = new ] && bin=$new
        echo "[round $r $b] $bin ${args[*]} ($(date -u +%T))" >&2
        flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}" "$bin" "${args[@]}" |
            sed "s/^{/{\"build\": \"$b\", \"round\": $r, \"date\": \"$(date -u +%FT%TZ)\", /" >>"$out"
    done
done
python3 "$here/ab_bench_timing.py" "$out"
