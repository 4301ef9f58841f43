#!/usr/bin/env bash
# The search for a default `reformer train` that visibly learns (issue 25).
#
#   experiments/defaults/run.sh TAG [key=value ...]
#
# trains the default model with the given keys changed, on the shipped text,
# under the shared heavy lock (one run per hold, so other jobs interleave),
# and keeps its log as experiments/defaults/logs/TAG.log (the command, the
# machine's load before and after, the whole training output, wall time).
# Every run evaluates 32 validation windows every 25 steps, so each has a
# curve; table.py turns the logs into results.md's table and curves.png.
#
# SCREEN=1 runs it without the lock, at nice 19 on one thread: a screening
# run, whose curve (loss against steps, which load does not change) counts
# and whose time does not (it says so in its log).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
tag="$1"; shift
make -s build/reformer
logs=experiments/defaults/logs
runs="${RUNS:-/tmp/reformer-defaults}"
mkdir -p "$logs" "$runs"
rm -rf "${runs:?}/$tag"
bin="$runs/$tag.reformer"  # a copy: a rebuild while this run waits for the lock does not change it
cp build/reformer "$bin"
args=(train --set out_dir="$runs/$tag" --set eval_every=25 --set eval_windows=32 --set ckpt_every=0 "$@")
{
    echo "# command: build/reformer ${args[*]}"
    echo "# commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- core launch io || echo '+changes')"
    echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg) at $(date -u +%FT%TZ)"
} > "$logs/$tag.log"
if [ "${SCREEN:-0}" = 1 ]; then
    echo "# screening: no lock, nice 19, 1 thread: the curve counts, the time does not" >> "$logs/$tag.log"
    lock=(nice -n 19 env OMP_NUM_THREADS=1)
    threads=1
else
    lock=(flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}")
    threads=2
fi
export threads
"${lock[@]}" \
    bash -c 'echo "# lock taken: $(date -u +%FT%TZ)"; s=$(date +%s.%N); OMP_NUM_THREADS=$threads "$0" "$@"; echo "# wall: $(echo "$(date +%s.%N) - $s" | bc) s"; echo "# load after: $(cut -d" " -f1-3 /proc/loadavg)"' \
    "$bin" "${args[@]}" >> "$logs/$tag.log" 2>&1
grep -E '^(eval:|done:|# wall)' "$logs/$tag.log" | tail -4
