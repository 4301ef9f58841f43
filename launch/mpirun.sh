#!/usr/bin/env bash
# Start a program (normally build/reformer) on N MPI ranks with Open MPI's
# mpirun, and print the exact command first.
#
#   launch/mpirun.sh -np N [--hosts H1:S1,H2:S2 | --hostfile FILE] [--dry-run] [--] PROGRAM [ARGS...]
#
#   -np N            number of ranks (default 1)
#   --hosts LIST     several nodes: host:slots,... (mpirun --host)
#   --hostfile FILE  several nodes: Open MPI hostfile ("node1 slots=4" lines)
#   --dry-run        print the command, do not run it
#
# Adds --allow-run-as-root only when run as root, and --oversubscribe
# --bind-to none only when the ranks of a single-node run outnumber its
# cores. Every rank gets OMP_WAIT_POLICY (default passive: idle OpenMP
# threads sleep instead of spinning on cores other ranks need) and, on one
# node, OMP_NUM_THREADS = cores / ranks unless either is already set.
#
# SIGTERM or SIGINT to this script (a scheduler, Ctrl-C) reaches the ranks
# as SIGUSR1, which mpirun forwards: they finish their step, checkpoint and
# exit 75, and so does this script (a wrapper that requeues on 75 works).
# mpirun's own SIGTERM handling would end the job with status 1 instead. A
# second one is passed to mpirun as it is: stop now.
#
# Example: launch/mpirun.sh -np 2 build/reformer train --set batch=2
set -euo pipefail

usage() {
    sed -n '2,23s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

np=1
hosts=""
hostfile=""
dry_run=0
while [[ $# -gt 0 ]]; do
    case "$1" in
        -np | -n)
            [[ $# -ge 2 ]] || usage
            np=$2
            shift 2
            ;;
        --hosts)
            [[ $# -ge 2 ]] || usage
            hosts=$2
            shift 2
            ;;
        --hostfile)
            [[ $# -ge 2 ]] || usage
            hostfile=$2
            shift 2
            ;;
        --dry-run)
            dry_run=1
            shift
            ;;
        -h | --help) usage ;;
        --)
            shift
            break
            ;;
        -*)
            echo "mpirun.sh: error: unknown option '$1'" >&2
            usage
            ;;
        *) break ;;
    esac
done
[[ $# -ge 1 ]] || usage
if ! [[ $np =~ ^[1-9][0-9]*$ ]]; then
    echo "mpirun.sh: error: -np: '$np' is not a positive integer" >&2
    exit 2
fi
if [[ -n $hosts && -n $hostfile ]]; then
    echo "mpirun.sh: error: give --hosts or --hostfile, not both" >&2
    exit 2
fi
if [[ -n $hostfile && ! -r $hostfile ]]; then
    echo "mpirun.sh: error: --hostfile: cannot read '$hostfile'" >&2
    exit 2
fi
if ! command -v mpirun >/dev/null; then
    echo "mpirun.sh: error: mpirun not found (install openmpi-bin: make setup)" >&2
    exit 2
fi

cmd=(mpirun -np "$np")
if [[ -n $hosts ]]; then cmd+=(--host "$hosts"); fi
if [[ -n $hostfile ]]; then cmd+=(--hostfile "$hostfile"); fi
if [[ $(id -u) -eq 0 ]]; then cmd+=(--allow-run-as-root); fi
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
cmd+=(-x OMP_WAIT_POLICY)
if [[ -z $hosts && -z $hostfile ]]; then
    cores=$(nproc)
    if [[ $np -gt $cores ]]; then cmd+=(--oversubscribe --bind-to none); fi
    threads=$((cores / np))
    export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$((threads > 0 ? threads : 1))}"
fi
if [[ -n ${OMP_NUM_THREADS:-} ]]; then cmd+=(-x OMP_NUM_THREADS); fi
cmd+=("$@")

echo "mpirun.sh: OMP_WAIT_POLICY=$OMP_WAIT_POLICY${OMP_NUM_THREADS:+ OMP_NUM_THREADS=$OMP_NUM_THREADS} $(printf '%q ' "${cmd[@]}")" >&2
if [[ $dry_run -eq 1 ]]; then exit 0; fi
mpirun_pid=""
stopping=0
# shellcheck disable=SC2317  # called by the traps below
on_stop() {  # $1: the signal's name
    if [[ -z $mpirun_pid ]]; then exit 143; fi
    if [[ $stopping -eq 0 ]]; then
        stopping=1
        echo "mpirun.sh: $1: asking the ranks to stop after their current step (SIGUSR1 to mpirun)" >&2
        kill -USR1 "$mpirun_pid" 2>/dev/null || true
    else
        kill "-$1" "$mpirun_pid" 2>/dev/null || true
    fi
}
trap 'on_stop TERM' TERM
trap 'on_stop INT' INT
"${cmd[@]}" &
mpirun_pid=$!
# wait returns early when a trap runs: wait until mpirun has ended, then
# once more for its status (bash keeps the status of a reaped child).
while kill -0 "$mpirun_pid" 2>/dev/null; do wait "$mpirun_pid" || true; done
status=0
wait "$mpirun_pid" || status=$?
exit "$status"
