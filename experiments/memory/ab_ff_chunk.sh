#!/usr/bin/env bash
# Issue 9: does the feed-forward's row chunk (ff_chunk) cost tokens/s? One
# build, ff_chunk values alternating, 3 runs each, the A/B model of ab.sh
# (seq_len 16384, 6 layers). Prints: ff_chunk, tokens/s, peak RSS MiB and
# the step's shares (matmul, attention, other), and writes them to
# ab_ff_chunk.log (which table_long.py reads).
#   experiments/memory/ab_ff_chunk.sh [BIN] CHUNK...   e.g. build/reformer 1024 16384
set -euo pipefail
bin="${1:-build/reformer}"
shift
# shellcheck disable=SC2054  # axial_dims=128,128 is one argument
args=(bench --json --warmup 1 --steps 1 --set batch=1 --set d_model=256 --set d_ff=1024 --set n_hashes=2
      --set axial_dims=128,128 --set n_layers=6 --set seq_len=16384)
here="$(cd "$(dirname "$0")" && pwd)"
exec 9>/tmp/reformer-heavy.lock
flock 9
exec > >(tee "$here/ab_ff_chunk.log")
echo "# experiments/memory/ab_ff_chunk.sh $bin $*   ($(date -u +%F), main at $(git rev-parse --short HEAD), under the heavy lock)"
echo "# ff_chunk tokens/s peak_rss_mb share_matmul share_attention share_other"
for _ in 1 2 3; do
    for fc in "$@"; do
        printf "ff_chunk=%s " "$fc"
        "$bin" "${args[@]}" --set ff_chunk="$fc" 2>/dev/null | python3 -c "import json,sys; r=json.loads(sys.stdin.read()); print(r['tokens_per_s'], r['peak_rss_mb'], r['share_matmul'], r['share_attention'], r['share_other'])"
    done
done
