#!/usr/bin/env bash
# Distributed training on this machine (issue 4), with build/dist_bench.
#
# 1. Scaling at seq_len 16384, d_model 256, 6 layers (local,lsh), 4 heads,
#    2 hashes, chunk 64, batch 1 per replica: one process (2 threads), one
#    rank (1 thread), 2-rank data parallel and 2-rank sequence parallel (1
#    thread per rank: the machine has 2 cores), with the collectives' share.
# 2. The longest sequence whose training step fits in BUDGET_MIB of peak RSS
#    per rank, for sp = 1, 2, 4 (2 layers: memory is flat in depth).
# Writes results.jsonl and results.md next to this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
make -s build/reformer build/dist_bench
out="$here/results.jsonl"
: > "$out"
MPI="mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_WAIT_POLICY=passive -x OMP_NUM_THREADS=1"
model="seq_len=16384 d_model=256 n_layers=6 n_heads=4 n_hashes=2 lsh_chunk=64 local_chunk=64 batch=1"
tag() { sed "s/^{/{\"experiment\": \"$1\", /"; }

echo "[scaling] 1 process, 2 threads" >&2
build/reformer bench --json --steps 2 $(printf -- '--set %s ' $model) | tag scaling_1proc_2threads >> "$out"
for cfg in "1 1" "2 1" "2 2"; do
    set -- $cfg
    echo "[scaling] $1 ranks, sp $2" >&2
    $MPI -np "$1" build/dist_bench --sp "$2" --steps 2 $model | tag scaling >> "$out"
done

BUDGET_MIB="${BUDGET_MIB:-1024}"
small="d_model=256 n_layers=2 n_heads=4 n_hashes=2 lsh_chunk=64 local_chunk=64 batch=1"
for sp in 1 2 4; do
    for L in 32768 49152 65536 81920 98304 131072 163840 196608 262144; do
        echo "[longest] sp $sp seq_len $L" >&2
        line=$($MPI -np "$sp" build/dist_bench --sp "$sp" --steps 1 --warmup 0 seq_len=$L $small | tag "longest_sp$sp")
        echo "$line" >> "$out"
        rss=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['peak_rss_mb_max_rank'])" "$line")
        python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) <= float(sys.argv[2]) else 1)" "$rss" "$BUDGET_MIB" || break
    done
done
BUDGET_MIB="$BUDGET_MIB" python3 "$here/table.py" "$out" > "$here/results.md"
cat "$here/results.md"
