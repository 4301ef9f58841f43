#!/usr/bin/env bash
# The README's two commands on a fresh clone of this branch, as a new user
# runs them, then its eval and 300-byte samples (the README's, at temperature
# 0.8, and one at 1, the model's own distribution):
#
#   experiments/defaults/fresh_clone.sh [BRANCH]     -> experiments/defaults/fresh_clone.log
#
# The build runs without the heavy lock (as other helpers' builds do); the
# training, eval and sample run under it, one hold. The log keeps the load
# average before and after, since the goal (<= 3 minutes) is for a quiet machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
branch="${1:-$(git -C "$repo" rev-parse --abbrev-ref HEAD)}"
work=$(mktemp -d /tmp/reformer-fresh.XXXXXX)
log="$here/fresh_clone${NO_LOCK:+_nolock}.log"
# NO_LOCK=1: train at nice 19 without the lock (its bits per byte and sample
# count, its time does not: for when the lock is out of reach)
lock=(flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}")
[ -n "${NO_LOCK:-}" ] && lock=(nice -n 19)
{
    echo "# fresh clone of $branch ($(git -C "$repo" rev-parse --short "$branch")) into $work, $(date -u +%FT%TZ)"
    git clone -q --branch "$branch" "$repo" "$work/reformer"
    cd "$work/reformer"
    echo "\$ make setup && make"
    s=$(date +%s.%N)
    make setup > "$work/build.log" 2>&1 && make -j2 >> "$work/build.log" 2>&1
    echo "# build: $(echo "$(date +%s.%N) - $s" | bc) s (log not kept)"
    "${lock[@]}" bash -c '
        echo "# lock taken $(date -u +%FT%TZ); load before: $(cut -d" " -f1-3 /proc/loadavg)"
        echo "\$ ./build/reformer train"
        /usr/bin/time -f "# train wall: %e s (user %U s, sys %S s)" ./build/reformer train 2>&1
        echo "# load after: $(cut -d" " -f1-3 /proc/loadavg)"
        ckpt=$(ls runs/default/ckpt_*.h5 | tail -1)
        echo "\$ ./build/reformer eval --ckpt $ckpt --split test"
        ./build/reformer eval --ckpt "$ckpt" --split test 2>&1 | grep -v "^eval: .*%"
        echo "\$ ./build/reformer sample --ckpt $ckpt --prompt '"'"'ROMEO:'"'"' --len 300 --temperature 0.8"
        ./build/reformer sample --ckpt "$ckpt" --prompt "ROMEO:" --len 300 --temperature 0.8
        echo "\$ ./build/reformer sample --ckpt $ckpt --prompt '"'"'ROMEO:'"'"' --len 300"
        ./build/reformer sample --ckpt "$ckpt" --prompt "ROMEO:" --len 300
    '
    # The README's picture: this run's curves (needs python3-matplotlib).
    /usr/bin/python3 experiments/plot_metrics.py runs/default -o "$repo/docs/default_run${NO_LOCK:+_nolock}.png" ||
        echo "# no picture: experiments/plot_metrics.py failed"
} > "$log" 2>&1
rm -rf "$work"
tail -n 30 "$log"
