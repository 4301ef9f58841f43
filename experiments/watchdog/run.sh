#!/usr/bin/env bash
# What the watchdog (config watchdog_s, dist/dist_mpi.c) costs: with it the
# host collectives run nonblocking (MPI_Iallreduce, MPI_Ialltoall, ...) and
# are waited on in a test loop; without it (watchdog_s=0) the blocking calls.
# A/B in one session: bench_collectives with --watchdog 0 and --watchdog 600,
# alternating, ROUNDS rounds each; the table is the median time per call.
# Writes results.md next to this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
make -s build/bench_collectives
np="${NP:-2}"
rounds="${ROUNDS:-5}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for ((i = 0; i < rounds; i++)); do
    for w in 0 600; do
        mpirun --allow-run-as-root --oversubscribe --bind-to none -np "$np" \
            build/bench_collectives --max-bytes 16M --watchdog "$w" > "$out/w$w.$i"
    done
done
{
    echo "# The watchdog's cost: blocking vs watched (nonblocking) host collectives, $np ranks on one node"
    echo
    echo "Command: \`ROUNDS=$rounds experiments/watchdog/run.sh\` (bench_collectives --max-bytes 16M, --watchdog 0 and 600"
    echo "alternating) on $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores,"
    echo "$(mpirun --version | head -1). Median time per call over the rounds, microseconds; ratio = watched / blocking."
    echo
    python3 - "$out" "$rounds" <<'PY'
import statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def table(w):
    rows = {}
    for i in range(rounds):
        for line in open(f"{out}/w{w}.{i}"):
            if line.startswith("#") or not line.strip():
                continue
            f = line.split()
            rows.setdefault(int(f[0]), ([], []))
            rows[int(f[0])][0].append(float(f[3]))
            rows[int(f[0])][1].append(float(f[6]))
    return {b: (statistics.median(a), statistics.median(t)) for b, (a, t) in rows.items()}
off, on = table(0), table(600)
print("| bytes | all-reduce blocking us | watched us | ratio | all-to-all blocking us | watched us | ratio |")
print("|---:|---:|---:|---:|---:|---:|---:|")
for b in sorted(off):
    a0, t0 = off[b]
    a1, t1 = on[b]
    print(f"| {b} | {a0:.1f} | {a1:.1f} | {a1 / a0:.2f} | {t0:.1f} | {t1:.1f} | {t1 / t0:.2f} |")
PY
} > "$here/results.md"
cat "$here/results.md"
