#!/usr/bin/env bash
# Host-path (MPI) collective bandwidth of dist/, nccl-tests style (issue 4):
# all-reduce and all-to-all from 1 KiB to 64 MiB, every element checked.
# Writes results.md next to this script. On a GPU cluster, run the same
# program with more ranks (and the NCCL path once it exists).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
make -s build/bench_collectives
np="${NP:-2}"
{
    echo "# Collective bandwidth, host buffers over MPI ($np ranks on one node)"
    echo
    echo "Command: \`mpirun --allow-run-as-root --oversubscribe --bind-to none -np $np build/bench_collectives --max-bytes 64M\`"
    echo "on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(mpirun --version | head -1)."
    echo "algbw = bytes/time; busbw = algbw x 2(n-1)/n (all-reduce), x (n-1)/n (all-to-all)."
    echo
    echo '```'
    mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$np" build/bench_collectives --max-bytes 64M
    echo '```'
} > "$here/results.md"
cat "$here/results.md"
