#!/usr/bin/env bash
# make test-slurm: launch/slurm/reformer.sbatch, unchanged, on a real SLURM
# (Debian's slurm-wlm 22.05 and munge, installed by `make setup`).
#
# It starts a private one-node cluster in a temporary directory: munged with
# a key made for the test, slurmctld and slurmd with a generated slurm.conf,
# state and spool directories there, on free ports. Settings that need no
# systemd or cgroup plugin (a container has neither): proctrack/linuxproc,
# task/none, jobacct_gather/none, SlurmUser/SlurmdUser root. Every job it
# submitted is cancelled and every daemon it started is stopped (by the pid
# it wrote) however the test ends.
#
# Then, with a tiny model (4000 steps of ~25 ms on one idle core: long
# enough that the time-limit warning, 5 to 35 s into the job, finds it still
# training on a machine twice as fast), as a cluster preempts:
#   ref      the job uninterrupted (one task): the reference losses
#   usr1     `scancel --signal=USR1 --batch`: the script passes USR1 to srun,
#            the rank checkpoints and exits 75, the script requeues the job
#   limit    `--time=1 --signal=B:USR1@25`: SLURM's time-limit warning, the
#            same path. slurmctld checks limits every 30 s and sends the
#            warning at the first check where warn + 30 s reaches the limit:
#            here 5 to 35 s into the job, while it trains. The requeued job
#            gets a longer limit and finishes.
#   requeue  `scontrol requeue`: SLURM sends SIGTERM to the step, the rank
#            checkpoints and exits 75, SLURM requeues the job itself
# Each preempted job must checkpoint, be requeued (Restarts=1), resume from
# that checkpoint in the same runs/<name>, and finish (COMPLETED, exit 0:0)
# with every step's loss equal to ref's, bit for bit (metrics.h5, float64),
# and every progress line's loss, bpb, lr and norm equal.
#   two      two tasks started by srun (--ntasks-per-node=2, srun --mpi=pmix,
#            what the template does) at batch 1 each, 200 steps: a dp 2 grid
#            whose losses equal `one` (one task, batch 2) within 1e-5
#            relative (the ranks sum gradients in another order, as in
#            tests/test_dist.c).
# Jobs of one task run two at a time (the node has 2 CPUs, one per task).
# SLURM holds a requeued job for about two minutes (its EligibleTime); the
# test moves that to now (scontrol update StartTime=now), as an operator
# would, so it takes about two minutes, not eight.
#
# Exit status: 0 passed, 1 failed, 2 not set up (make setup), 77 skipped
# (not root: slurmd must start jobs as root here).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
started=$(date +%s)

say() { echo "test-slurm: $*"; }
fail() {
    echo "test-slurm: FAILED: $*" >&2
    exit 1
}

# Debian's python3 (with python3-h5py), not another one first on PATH.
py=python3
if [[ -x /usr/bin/python3 ]]; then py=/usr/bin/python3; fi
for prog in munged mungekey slurmctld slurmd sbatch srun scontrol squeue scancel "$py"; do
    if ! command -v "$prog" >/dev/null; then
        echo "test-slurm: error: $prog not found: install SLURM and munge with make setup" >&2
        exit 2
    fi
done
if ! "$py" -c 'import h5py' 2>/dev/null; then
    echo "test-slurm: error: python3-h5py missing: run make setup" >&2
    exit 2
fi
if [[ ! -x build/reformer ]]; then
    echo "test-slurm: error: build/reformer missing: run make" >&2
    exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
    say "SKIPPED (not root: this test's slurmd starts jobs as root)"
    exit 77
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/reformer-slurm.XXXXXX")
chmod 711 "$tmp"  # munge's socket directory must be searchable by all
export SLURM_CONF=$tmp/slurm.conf
daemons_up=0

# However the test ends: cancel its jobs, wait for them, stop the daemons it
# started (by their pid files), keep the logs of a failure.
cleanup() {
    local status=$?
    set +e
    if [[ $daemons_up -eq 1 ]]; then
        scancel --user=root >/dev/null 2>&1
        for _ in $(seq 1 60); do
            [[ -z $(squeue -h 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    for d in slurmd slurmctld munged; do
        if [[ -s $tmp/$d.pid ]]; then
            pid=$(cat "$tmp/$d.pid")
            kill "$pid" 2>/dev/null
            for _ in $(seq 1 50); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -9 "$pid" 2>/dev/null
        fi
    done
    if [[ $status -ne 0 ]]; then
        for f in slurmctld.log slurmd.log work/*.out; do
            [[ -f $tmp/$f ]] && { echo "--- $f (last 30 lines)"; tail -n 30 "$tmp/$f"; }
        done >&2
    fi
    rm -rf "$tmp"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

free_port() { "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- the cluster
mungekey --create --keyfile="$tmp/munge.key" >/dev/null
chmod 600 "$tmp/munge.key"
munged --force --key-file="$tmp/munge.key" --socket="$tmp/munge.sock" --pid-file="$tmp/munged.pid" \
    --log-file="$tmp/munged.log" --seed-file="$tmp/munged.seed"
host=$(hostname -s)
cpus=$(nproc)
((cpus >= 2)) || cpus=2  # two tasks on one node (config_overrides accepts more than the hardware)
ctld_port=$(free_port)
slurmd_port=$(free_port)
while [[ $slurmd_port == "$ctld_port" ]]; do slurmd_port=$(free_port); done
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/work"
: >"$tmp/plugstack.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=reformertest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$tmp/munge.sock
CredType=cred/munge
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/slurmctld.pid
SlurmdPidFile=$tmp/slurmd.pid
SlurmctldLogFile=$tmp/slurmctld.log
SlurmdLogFile=$tmp/slurmd.log
PlugStackConfig=$tmp/plugstack.conf
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -c -i
slurmd
daemons_up=1
for _ in $(seq 1 60); do
    [[ $(sinfo -h -o %T 2>/dev/null) == idle ]] && break
    sleep 0.5
done
[[ $(sinfo -h -o %T) == idle ]] || fail "the node did not come up: $(sinfo -h -o '%T %E')"
say "cluster up: slurmctld :$ctld_port, slurmd :$slurmd_port, node $host ($cpus CPUs), $(slurmctld -V)"

# --- jobs
model=(--set data="$root/data/tinyshakespeare.txt" --set d_model=32 --set d_ff=64
    --set n_layers=2 --set n_heads=2 --set lsh_chunk=32 --set local_chunk=32 --set eval_every=0
    --set log_every=1)
cd "$tmp/work"

# submit NAME TASKS [sbatch options] -- [training arguments]: the job id.
submit() {
    local name=$1 tasks=$2
    shift 2
    local opts=()
    while [[ $1 != -- ]]; do
        opts+=("$1")
        shift
    done
    shift
    REFORMER=$root/build/reformer sbatch --parsable -J "$name" --nodes=1 --ntasks-per-node="$tasks" \
        --cpus-per-task=1 --gpus-per-node=0 "${opts[@]+"${opts[@]}"}" "$root/launch/slurm/reformer.sbatch" "$@"
}
field() { scontrol show job "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1; }
# wait_for JOB STATE SECONDS
wait_for() {
    local t
    local state reason
    for ((t = 0; t < $3 * 2; t++)); do
        state=$(field "$1" JobState)
        [[ $state == "$2" ]] && return 0
        # A state it cannot leave: say so now, not after the whole wait.
        reason=$(field "$1" Reason)
        case "$state:$reason" in
        FAILED:* | CANCELLED:* | TIMEOUT:* | NODE_FAIL:* | BOOT_FAIL:* | OUT_OF_MEMORY:* | *:launch_failed* | *:JobHeld*)
            fail "job $1 ($(field "$1" JobName)) is $state ($reason), waiting for $2" ;;
        esac
        sleep 0.5
    done
    fail "job $1 ($(field "$1" JobName)) is $(field "$1" JobState), not $2, after $3 s"
}
# wait_steps NAME N: the job's output shows step N.
wait_steps() {
    local t
    for ((t = 0; t < 120; t++)); do
        grep -q "^step *$2/" "$1.out" 2>/dev/null && return 0
        sleep 0.5
    done
    fail "$1 never reached step $2"
}
# requeued JOB: SLURM took the job back (PENDING, Restarts=1); release it
# once the slurmstepd processes of its first run have ended (a step started
# again at once, under the same step id, finds the old one's PMIx socket).
requeued() {
    local t
    wait_for "$1" PENDING 60
    [[ $(field "$1" Restarts) == 1 ]] || fail "job $1: Restarts=$(field "$1" Restarts), expected 1"
    for ((t = 0; t < 120; t++)); do
        pgrep -f "^slurmstepd: \[$1\." >/dev/null || break
        sleep 0.5
    done
    # slurmd refuses to launch a job whose credential is not newer than the
    # one it revoked when it ended the first run ("Job N already killed, do
    # not launch batch job"), compared in whole seconds: a release in the
    # second the old steps ended left the job unlaunched. Two seconds later
    # the new credential is always newer (SLURM's own hold is ~2 minutes).
    sleep 2
    scontrol update jobid="$1" StartTime=now
}
# finished NAME JOB: COMPLETED with exit code 0:0, resumed in runs/NAME.
finished() {
    wait_for "$2" COMPLETED 600
    [[ $(field "$2" ExitCode) == 0:0 ]] || fail "$1: ExitCode=$(field "$2" ExitCode)"
    grep -q "^resume: no checkpoint in runs/$1: a new run" "$1.out" || fail "$1: the first start is not a new run"
    grep -q "^resume: runs/$1/ckpt_0*[1-9][0-9]*\.h5 (step " "$1.out" ||
        fail "$1: the requeued job did not resume from its checkpoint in runs/$1"
    grep -q "^done: $long_steps steps" "$1.out" || fail "$1: did not finish"
    say "$1: job $2 $(field "$2" JobState), ExitCode $(field "$2" ExitCode), Restarts $(field "$2" Restarts), $(grep -m1 -o 'stopped by [A-Z0-9]* after step [0-9]*/[0-9]*' "$1.out")"
}

long_steps=4000
long=(--set seq_len=512 --set steps=$long_steps --set batch=2)
ref=$(submit ref 1 -- "${model[@]}" "${long[@]}")
usr1=$(submit usr1 1 -- "${model[@]}" "${long[@]}")

# 1. scancel --signal=USR1 --batch: to the batch script, which passes it on.
wait_steps usr1 20
scancel --signal=USR1 --batch "$usr1"
requeued "$usr1"
grep -q "^reformer.sbatch: USR1: stopping the ranks" usr1.out || fail "usr1: the script did not get USR1"
grep -q "^reformer: stopped by SIGUSR1 after step .* (exit status 75)" usr1.out || fail "usr1: no checkpoint on USR1"
grep -q "^reformer.sbatch: requeueing job $usr1" usr1.out || fail "usr1: the script did not requeue"
finished usr1 "$usr1"
wait_for "$ref" COMPLETED 600
[[ $(field "$ref" ExitCode) == 0:0 && $(field "$ref" Restarts) == 0 ]] || fail "ref: $(field "$ref" ExitCode)"

# 2. The time-limit warning: --time=1 (minute) with USR1 25 s before it;
# 3. scontrol requeue: SLURM ends the running job (SIGTERM) and requeues it.
limit=$(submit limit 1 --time=1 --signal=B:USR1@25 -- "${model[@]}" "${long[@]}")
requeue=$(submit requeue 1 -- "${model[@]}" "${long[@]}")
wait_steps requeue 20
scontrol requeue "$requeue"
requeued "$requeue"
grep -q "^reformer: stopped by SIGTERM after step .* (exit status 75)" requeue.out ||
    fail "requeue: the rank did not checkpoint on SLURM's SIGTERM"
requeued "$limit"
scontrol update jobid="$limit" TimeLimit=10
grep -q "^reformer.sbatch: USR1: stopping the ranks" limit.out || fail "limit: no time-limit warning reached the script"
grep -q "^reformer: stopped by SIGUSR1 after step .* (exit status 75)" limit.out || fail "limit: no checkpoint"
finished requeue "$requeue"
finished limit "$limit"

# 4. Two tasks started by srun against one.
# seq_len 128 here: at 512, 200 steps of float32 in another summation order
# flip some LSH buckets and the losses drift apart by ~1e-3.
short=(--set seq_len=128 --set steps=200)
one=$(submit one 1 -- "${model[@]}" "${short[@]}" --set batch=2)
two=$(submit two 2 -- "${model[@]}" "${short[@]}" --set batch=1)
wait_for "$one" COMPLETED 600
wait_for "$two" COMPLETED 600
[[ $(field "$two" ExitCode) == 0:0 ]] || fail "two: ExitCode=$(field "$two" ExitCode)"
grep -q "^grid: 2 ranks = dp 2 x sp 1 | 1 node(s), 2 ranks on rank 0's node | global batch 2" two.out ||
    fail "two: the tasks did not form one 2-rank MPI job"
say "two: job $two COMPLETED, ExitCode 0:0, 2 ranks (srun --mpi=pmix)"

# --- every loss equal to the uninterrupted run
LONG_STEPS=$long_steps "$py" - <<'EOF' || fail "losses differ (above)"
import os, re, sys
import h5py

def losses(name):
    with h5py.File(f"runs/{name}/metrics.h5", "r") as f:
        steps, loss = list(f["step"][()]), list(f["loss"][()])
    return steps, loss

def lines(name):
    # "step   12/4000 | loss X | bpb Y | lr Z | norm W | ..." -> {12: "loss X | bpb Y | lr Z | norm W"}
    out = {}
    for l in open(f"{name}.out"):
        m = re.match(r"step +(\d+)/\d+ \| (loss .*?\| norm +\S+)", l)
        if m:
            s = int(m.group(1))
            if s in out and out[s] != m.group(2):
                sys.exit(f"{name}: step {s} printed twice, differently")
            out[s] = m.group(2)
    return out

ref_steps, ref_loss = losses("ref")
ref_lines = lines("ref")
N = int(os.environ["LONG_STEPS"])
assert ref_steps == list(range(1, N + 1)), "ref: metrics rows are not steps 1..N"
assert sorted(ref_lines) == list(range(1, N + 1)), "ref: not one progress line per step"
for name in ("usr1", "limit", "requeue"):
    steps, loss = losses(name)
    if steps != ref_steps:
        sys.exit(f"{name}: metrics steps {steps[:3]}... ({len(steps)} rows), not 1..{N}")
    diff = [s for s, a, b in zip(steps, loss, ref_loss) if a != b]
    if diff:
        sys.exit(f"{name}: loss differs from the uninterrupted run at steps {diff[:5]}")
    if lines(name) != ref_lines:
        bad = [s for s in ref_lines if lines(name).get(s) != ref_lines[s]]
        sys.exit(f"{name}: progress lines differ at steps {bad[:5]}")
steps, loss = losses("two")
one_steps, one_loss = losses("one")
worst = max(abs(a - b) / abs(b) for a, b in zip(loss, one_loss))
if steps != one_steps or len(steps) != 200 or worst >= 1e-5:
    sys.exit(f"two: {len(steps)} rows, worst loss rel diff {worst:.1e} (tolerance 1e-5)")
print(f"test-slurm: losses: usr1, limit, requeue equal ref bit for bit at all {N} steps; "
      f"two ranks vs one process: worst rel diff {worst:.1e}")
EOF
say "PASSED in $(($(date +%s) - started)) s"
