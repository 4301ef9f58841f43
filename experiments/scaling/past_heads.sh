#!/usr/bin/env bash
# Sequence sharding past the head count (issue 10), with build/dist_bench
# and build/bench_collectives. Model: d_model 256, d_ff 1024, 4 heads of 64,
# 2 hashes, chunks 64, batch 1; 1 OpenMP thread per rank.
#
#   experiments/scaling/past_heads.sh [counts] [share] [memory] [bandwidth]
#
# counts:    bytes one rank sends per step in the sequence-parallel exchanges
#            (counted in the callbacks), for one local layer, one LSH layer
#            and the 4-layer local,lsh model, seq_len 8192, sp 2, 4, 8, each
#            path (heads where sp divides the 4 heads; sequence; auto).
# share:     the share of the step in collectives, seq_len 8192, 4 layers,
#            sp 2 and 4, each path (sp 4 is 4 ranks on 2 cores).
# memory:    peak RSS per rank of one training step against positions per
#            rank (4 layers, sp 1, 2, 4, 8; auto), two lengths each for the
#            affine fit of the table; then, at the predicted longest length
#            for 1 GiB and 4 GiB (where the ranks' total fits in this 24 GiB
#            machine), the model set up with its buffers touched, no step.
# memory_light: memory's fits and its set-ups of at most 2 GiB in all (light).
# step:SP:BUDGET_MIB: one real training step per run (each rank under
#            /usr/bin/time: peak RSS per rank), first at the longest length
#            this build's plan (`reformer plan`) plus the fit runs' step
#            overhead predicts for BUDGET MiB per rank; over budget: 5% fewer
#            chunks per rank, again (at most 3 runs); within with more than 3%
#            slack: once more at the length the slack allows by the plan.
# step:SP:BUDGET_MIB:SEQ_LEN: one such step at SEQ_LEN only (to bracket).
# overhead:  a small step (1024 positions per rank) per sp, each rank under
#            /usr/bin/time: this build's peak RSS beyond its plan, which the
#            step: phases' prediction adds to the plan (light: seconds, and
#            under 200 MiB per rank).
# two_m:     one training step of 2,097,152 tokens over 4 ranks (issue 20),
#            each rank's peak RSS: memory_step_2m.
# bandwidth: bench_collectives all-to-all on 2 and 4 ranks (host, MPI).
# counts4[:BASE]: counts for the 4-layer local,lsh model only (sp 2, 4:
#            sequence and auto; sp 8: auto, the sort), without the lock
#            (counted bytes depend on nothing else running); with BASE, of
#            BASE/build/dist_bench (an older build): counts_before rows.
# ab:BASE:PAIRS: step time at sp 2 (seq_len 8192, 4 layers, auto; 1 warm-up
#            step, 1 timed), alternating BASE/build/dist_bench (an older
#            build, e.g. a worktree at main) and this build's, PAIRS times,
#            one run per lock hold: ab_before / ab_after rows.
# STEP_EXTRA (step: and two_m phases) and BENCH_EXTRA (counts4, ab) add config
# settings to every run, e.g. attn_head_group=1 (issue 20's passes of one
# head: group_one.md).
# DIST_BENCH and REFORMER (for the plan's predictions) may name copies of
# this build's binaries, so that the tree can be rebuilt while runs wait for
# the lock. Appends to past_heads.jsonl (PAST_HEADS_OUT: another file); with the
# default file past_heads_table.py writes past_heads.md (issue 20's runs go to
# one_workspace.jsonl, tabled by one_workspace_table.py).
# Heavy: run it under `flock /tmp/reformer-heavy.lock`. The step: phases
# take the lock themselves, one run at a time.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
make -s build/dist_bench build/bench_collectives
out="${PAST_HEADS_OUT:-$here/past_heads.jsonl}"  # (a test may write elsewhere)
MPI="mpirun --allow-run-as-root --oversubscribe --bind-to none -x OMP_WAIT_POLICY=passive -x OMP_NUM_THREADS=1"
model="d_model=256 d_ff=1024 n_heads=4 d_head=64 n_hashes=2 lsh_chunk=64 local_chunk=64 batch=1"
tag() { sed "s/^{/{\"experiment\": \"$1\", /"; }
phases="${*:-counts share memory bandwidth}"

bench() {  # bench TAG SP ARGS... (BENCH_LOCK=1: under the heavy lock; DIST_BENCH: another build's)
    local t="$1" sp="$2" lock=()
    shift 2
    [ "${BENCH_LOCK:-0}" = 1 ] && lock=(flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}")
    echo "[$t] sp $sp $*" >&2
    "${lock[@]}" $MPI -np "$sp" "${DIST_BENCH:-build/dist_bench}" --sp "$sp" "$@" | tag "$t" >> "$out"
}

# Peak RSS of real steps at 1024 and 2048 positions per rank (the fit), then
# at the longest lengths the fit predicts the model set up with its buffers
# touched (cpu_alloc zeroes them) and no step (--plan-only: seconds instead of
# the half hour a step of 300K tokens takes on 2 shared cores); the step's own
# transient memory is the fit runs' peak minus their planned bytes
# (past_heads_table.py adds it). Set-ups whose ranks' total exceeds $1 MiB
# are left to the prediction.
memory_phase() {
    local max_total="$1" sp per_rank line budget_mib len
    for sp in 1 2 4 8; do
        for per_rank in 1024 2048; do
            # shellcheck disable=SC2086
            bench memory_fit "$sp" --steps 1 --warmup 0 seq_len=$((per_rank * sp)) $model n_layers=4
        done
    done
    for line in $(python3 "$here/past_heads_table.py" --predict "$out"); do
        IFS=: read -r sp budget_mib len <<< "$line"
        if [ $((sp * budget_mib)) -gt "$max_total" ]; then
            echo "[memory] sp $sp x $budget_mib MiB: more than $max_total MiB for one job; predicted only" >&2
            continue
        fi
        # shellcheck disable=SC2086
        bench "memory_plan_${budget_mib}" "$sp" --plan-only seq_len=$len $model n_layers=4
    done
}

# One training step at SEQ_LEN under the heavy lock, each rank's peak RSS from
# /usr/bin/time; appends a memory_step_BUDGET row; prints that peak (MiB, max
# over ranks).
step_run() {  # SP BUDGET_MIB SEQ_LEN [TAG [PLAN_PREDICTED_SEQ_LEN]]
    local sp="$1" budget="$2" len="$3" t="${4:-memory_step_$2}" pred="${5:-}" log lock=(flock "${HEAVY_LOCK:-/tmp/reformer-heavy.lock}")
    [ "$t" = memory_overhead ] && lock=()  # light
    log=$(mktemp)
    echo "[$t] sp $sp seq_len $len ($(date +%T))" >&2
    # shellcheck disable=SC2086
    mkdir "$log.d"
    "${lock[@]}" $MPI -np "$sp" -x RANK_RSS_DIR="$log.d" "$here/rank_rss.sh" "${DIST_BENCH:-build/dist_bench}" --sp "$sp" --steps 1 \
        --warmup 0 seq_len="$len" $model n_layers=4 ${STEP_EXTRA:-} > "$log.out" 2> "$log"
    cat "$log.d"/rank_* >> "$log"
    python3 - "$log" "$log.out" "$budget" "$sp" "$t" "$pred" >> "$out" <<'PY'
import json, sys
err, res, budget, sp, tag, pred = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
ranks = {}
for line in open(err):
    f = line.split()
    if len(f) == 3 and f[0] == "rank_rss":
        ranks[int(f[1])] = int(f[2]) / 1024
assert sorted(ranks) == list(range(sp)), open(err).read()
r = json.loads(open(res).read().strip().splitlines()[-1])
peak = max(max(ranks.values()), r["peak_rss_mb_max_rank"])
r = {"experiment": tag, **r, "rank_rss_mib": [round(ranks[i], 1) for i in range(sp)],
     "peak_mib": round(peak, 1), "budget_mib": budget, "within": peak <= budget}
if pred:
    r["plan_predicted_seq_len"] = int(pred)
print(json.dumps(r))
PY
    rm -rf "$log" "$log.out" "$log.d"
    tail -1 "$out" >&2
    python3 -c 'import json, sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["peak_mib"])' "$out"
}

step_phase() {  # SP BUDGET_MIB [SEQ_LEN]
    local sp="$1" budget="$2" len="${3:-}" unit=$((64 * $1)) peak planned tries=0 pred
    if [ -n "$len" ]; then  # the prediction, if $out has what it needs (memory_overhead rows), is only recorded
        pred=$(python3 "$here/past_heads_table.py" --predict-plan "$out" "$sp" "$budget" 2> /dev/null || true)
        step_run "$sp" "$budget" "$len" "memory_step_$budget" "$pred" > /dev/null
        return
    fi
    pred=$(python3 "$here/past_heads_table.py" --predict-plan "$out" "$sp" "$budget")
    len=$pred
    while :; do
        peak=$(step_run "$sp" "$budget" "$len" "memory_step_$budget" "$pred")
        tries=$((tries + 1))
        if python3 -c "import sys; sys.exit(0 if $peak <= $budget else 1)"; then
            if [ "$tries" = 1 ] && python3 -c "import sys; sys.exit(0 if $peak < 0.97 * $budget else 1)"; then
                # once more, at the plan's longest length with this run's own overhead (peak - plan)
                planned=$(tail -1 "$out" | python3 -c 'import json, sys; print(json.load(sys.stdin)["planned_mb"])')
                len=$(python3 "$here/past_heads_table.py" --predict-plan "$out" "$sp" "$budget" "$peak - $planned")
                step_run "$sp" "$budget" "$len" "memory_step_$budget" "$pred" > /dev/null
            fi
            return
        fi
        [ "$tries" -ge 3 ] && return
        len=$(( (len * 95 / 100) / unit * unit ))
    done
}

for phase in $phases; do
    case "$phase" in
    counts)
        for layers in "attn_layers=local n_layers=1" "attn_layers=lsh n_layers=1" "attn_layers=local,lsh n_layers=4"; do
            for sp in 2 4 8; do
                for path in heads sequence auto; do
                    [ "$path" = heads ] && [ "$sp" = 8 ] && continue  # 8 does not divide 4 heads
                    # shellcheck disable=SC2086
                    bench counts "$sp" --steps 1 --warmup 0 seq_len=8192 $model $layers sp_attention=$path
                done
            done
        done
        ;;
    share)
        for sp in 2 4; do
            for path in heads sequence auto; do
                # shellcheck disable=SC2086
                bench share "$sp" --steps 1 --warmup 1 seq_len=8192 $model n_layers=4 sp_attention=$path
            done
        done
        ;;
    counts4*)
        IFS=: read -r _ base <<< "$phase"
        [ -n "$base" ] && make -s -C "$base" build/dist_bench
        for sp in 2 4 8; do
            for path in sequence auto; do
                [ "$path" = sequence ] && [ "$sp" = 8 ] && continue  # auto is the sort there
                # shellcheck disable=SC2086
                DIST_BENCH="${base:+$base/}build/dist_bench" bench "counts${base:+_before}" "$sp" \
                    --steps 1 --warmup 0 seq_len=8192 $model n_layers=4 sp_attention=$path ${BENCH_EXTRA:-}
            done
        done
        ;;
    ab:*)
        IFS=: read -r _ base pairs <<< "$phase"
        make -s -C "$base" build/dist_bench
        for _ in $(seq "$pairs"); do
            # shellcheck disable=SC2086
            BENCH_LOCK=1 DIST_BENCH="$base/build/dist_bench" bench ab_before 2 --steps 1 --warmup 1 seq_len=8192 $model n_layers=4 ${BENCH_EXTRA:-}
            # shellcheck disable=SC2086
            BENCH_LOCK=1 bench ab_after 2 --steps 1 --warmup 1 seq_len=8192 $model n_layers=4 ${BENCH_EXTRA:-}
        done
        ;;
    overhead)
        for sp in 1 2 4 8; do step_run "$sp" 0 $((1024 * sp)) memory_overhead > /dev/null; done
        ;;
    two_m)
        # 2,097,152 tokens over 4 ranks, the model of experiments/memory/long.md's
        # single-process 2M step (attn_head_group 2, axial 2048 x 1024), LSH by
        # the sort (sp_attention=sequence: Ulysses would attend whole heads,
        # lcm(2, 4) = 4 per pass); budget 4,608 MiB per rank (1.15 x 15,747 / 4 is 4,527)
        STEP_EXTRA="attn_head_group=2 sp_attention=sequence axial_dims=128,128 axial_shape=2048,1024" \
            step_run 4 4608 2097152 memory_step_2m > /dev/null
        ;;
    step:*)
        IFS=: read -r _ sp budget len <<< "$phase"
        step_phase "$sp" "$budget" "$len"
        ;;
    memory) memory_phase 12288 ;;
    # The light part of memory (each command under 2 minutes of CPU and 3
    # GiB): the fits, and the set-ups whose ranks' total is at most 2 GiB. Run
    # without the lock on 2026-12-01 while another job held it for an hour.
    memory_light) memory_phase 2048 ;;
    bandwidth)
        for np in 2 4; do
            echo "[bandwidth] $np ranks" >&2
            $MPI -np "$np" build/bench_collectives --min-bytes 1M --max-bytes 16M |
                awk -v np="$np" '/^ *[0-9]+ / && /OK/ {print "{\"experiment\": \"bandwidth\", \"ranks\": " np ", \"line\": \"" $0 "\"}"}' >> "$out"
        done
        ;;
    esac
done
if [ "$out" = "$here/past_heads.jsonl" ]; then
    python3 "$here/past_heads_table.py" "$out" > "$here/past_heads.md"
    cat "$here/past_heads.md"
fi
