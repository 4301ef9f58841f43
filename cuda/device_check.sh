#!/usr/bin/env bash
# cuda/device_check.sh: the one prepared check of the CUDA backend on a GPU
# that is lent for a few minutes (/work/.library/device/, METHOD.md).
#
#   cuda/device_check.sh [OUTDIR]      (OUTDIR: $OUT on the device machine,
#                                       else build/device_check)
#
# In order, each part under a hard time limit and all of them under one
# budget (BUDGET_S, default 450 s: a run and a short rerun (PARTS=...) fit one
# 15-minute lease;
# BUILD_S, default 200 s, limits the build, ~1 minute on 16 cores):
#   deps       unpack the carried .devdeps/*.deb into a private prefix
#              (dpkg -x, never into /) and point the build at it
#   build      make for the GPU found (its compute capability; sm_80 and
#              sm_90 without one): test_cuda, reformer, cuda_peak
#   gpu        is there a usable GPU? If not, every later part says SKIPPED
#              and the script exits 77 (a skip, never a pass)
#   test_cuda  every op and path against the CPU, fp32/tf32/bf16, 1 and 20
#              steps (cuda/test_cuda.c)
#   memcheck, racecheck  compute-sanitizer on test_cuda --quick
#   peak       the measured ceilings (cuda_peak: GEMM fp32/tf32/bf16, copy)
#   bench      reformer bench on experiments/roofline/configs.txt's models,
#              fp32, tf32 and bf16, next to the roofline table: achieved
#              TFLOP/s and fraction of the measured peak
#   pytorch    reformer-pytorch (carried wheels) on the enwik8 model, bf16
#   nccl       bench_collectives --nccl over 2 ranks, where there are 2+ GPUs
#              and the image has mpirun
# Results: OUTDIR/summary.txt (also printed last), OUTDIR/results.jsonl (one
# JSON line per measurement), OUTDIR/logs.tar.gz (every part's full log): 3
# files, as the device tool brings back at most 8.
# shellcheck disable=SC2317 # the parts' functions run through `part` (bash -c)
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
OUTDIR=${1:-${OUT:-$ROOT/build/device_check}}
mkdir -p "$OUTDIR"
LOGS=$(mktemp -d /tmp/device_check_logs.XXXXXX)
BUDGET_S=${BUDGET_S:-450}
# PARTS: run only the checks whose names start with one of these words (a
# rerun of what failed, e.g. PARTS="bench pytorch"); deps, build and gpu
# always run. Empty: all.
PARTS=${PARTS:-}
START=$(date +%s)
SUMMARY=$OUTDIR/summary.txt
RESULTS=$OUTDIR/results.jsonl
: >"$SUMMARY"
: >"$RESULTS"
FAILED=0

say() { echo "$*" | tee -a "$SUMMARY"; }
left() { echo $((BUDGET_S - ($(date +%s) - START))); }
# part NAME LIMIT_S CMD...: run CMD with its output in $LOGS/NAME.log, under
# min(LIMIT_S, what is left of the budget); one summary line with its status.
part() {
    local name=$1 limit=$2 rem t0 rc w
    shift 2
    if [ -n "$PARTS" ] && [ "$name" != deps ] && [ "$name" != build ] && [ "$name" != gpu ]; then
        for w in $PARTS; do [[ $name == "$w"* ]] && break; w=; done
        if [ -z "$w" ]; then
            say "$(printf '%-10s not selected (PARTS=%s)' "$name" "$PARTS")"
            return 1
        fi
    fi
    rem=$(($(left) - 5))
    if [ "$rem" -lt 10 ]; then
        say "$(printf '%-10s NOT RUN (time budget of %ss spent)' "$name" "$BUDGET_S")"
        FAILED=1
        return 1
    fi
    [ "$limit" -gt "$rem" ] && limit=$rem
    t0=$(date +%s)
    # timeout runs the part in a process group of its own and kills all of
    # it; bash -c so that parts can be the exported functions below.
    timeout -k 5 "$limit" bash -c '"$@"' "$name" "$@" >"$LOGS/$name.log" 2>&1
    rc=$?
    local dt=$(($(date +%s) - t0)) status
    case $rc in
    0) status=ok ;;
    77) status=SKIPPED ;;
    124 | 137) status="FAIL (timed out at ${limit}s)" ;;
    *) status="FAIL (exit $rc)" ;;
    esac
    say "$(printf '%-10s %-28s %4ss  log: %s.log' "$name" "$status" "$dt" "$name")"
    [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ] && FAILED=1
    return $rc
}
finish() {
    tar -C "$LOGS" -czf "$OUTDIR/logs.tar.gz" . 2>/dev/null
    say "device_check: $1 ($(($(date +%s) - START))s; results in $OUTDIR)"
    rm -rf "$LOGS"
    exit "$2"
}

# --- the machine ---------------------------------------------------------------
{
    echo "date: $(date -u)"
    uname -a
    ldd --version 2>&1 | head -1
    command -v nvcc >/dev/null && nvcc --version | tail -2
    command -v gcc >/dev/null && gcc --version | head -1
    nvidia-smi 2>&1 | head -20
    nvidia-smi --query-gpu=name,compute_cap,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
} >"$LOGS/machine.log" 2>&1
N_GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
CC_FOUND=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
case $CC_FOUND in '' | *[!0-9]*) CC_FOUND= ;; esac
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
say "device_check: ${GPU_NAME:-no GPU seen by nvidia-smi}," \
    "$N_GPUS GPU(s), sm_${CC_FOUND:-none}; budget ${BUDGET_S}s"

# --- deps: the carried packages into a private prefix ----------------------------
PREFIX=${DEVDEPS_PREFIX:-/tmp/reformer-devdeps}
# One .deb into the prefix: dpkg -x, or (an image without dpkg) its data
# member through ar and tar.
unpack_one() {
    if command -v dpkg >/dev/null; then
        dpkg -x "$1" "$PREFIX"
    else
        local t
        t=$(mktemp -d) && (cd "$t" && ar x "$1" && tar -xf data.tar.* -C "$PREFIX") && rm -rf "$t"
    fi
}
unpack_deps() {
    local n=0
    rm -rf "$PREFIX" && mkdir -p "$PREFIX" || return 1
    for f in "$ROOT"/.devdeps/*.deb; do
        [ -e "$f" ] || continue
        unpack_one "$f" || return 1
        n=$((n + 1))
    done
    echo "unpacked $n packages into $PREFIX"
}
if ls "$ROOT"/.devdeps/*.deb >/dev/null 2>&1; then
    export -f unpack_deps unpack_one
    export ROOT PREFIX
    part deps 30 unpack_deps || finish "FAILED: could not unpack .devdeps" 1
    ML=$PREFIX/usr/lib/x86_64-linux-gnu
    BL=$PREFIX/lib/x86_64-linux-gnu  # Debian ships some libraries under /lib (libcom-err2, libkeyutils1, zlib1g)
    # Headers and libraries from the prefix first; the image's own after.
    export CFLAGS="-O2 -I$PREFIX/usr/include -I$PREFIX/usr/include/x86_64-linux-gnu \
-I$PREFIX/usr/include/x86_64-linux-gnu/openblas-pthread -I$PREFIX/usr/include/hdf5/serial"
    export LDFLAGS="-L$ML -L$BL -L$ML/openblas-pthread -L$ML/hdf5/serial -Wl,-rpath-link,$ML \
-Wl,-rpath-link,$BL -Wl,-rpath-link,$ML/openblas-pthread"
    # pkg-config (if the image has it) sees only the prefix's .pc files, with
    # their /usr paths moved under the prefix.
    export PKG_CONFIG_LIBDIR=$ML/pkgconfig:$PREFIX/usr/share/pkgconfig PKG_CONFIG_SYSROOT_DIR=$PREFIX
    RUN_LIBS=$ML:$BL:$ML/openblas-pthread:$ML/hdf5/serial
    # The carried make only where the image has no working one.
    make --version >/dev/null 2>&1 || export PATH=$PREFIX/usr/bin:$PATH
else
    say "deps       none carried (.devdeps/ absent): building against the image's libraries"
    RUN_LIBS=
fi
# Only this project's programs see the carried libraries.
run_ours() { env LD_LIBRARY_PATH="$RUN_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
export RUN_LIBS ROOT PREFIX
export -f run_ours

# --- build ----------------------------------------------------------------------
# The GPU found, else CUDA_ARCHS (cuda.mk's default: 80 90).
ARCHS=${CC_FOUND:-${CUDA_ARCHS:-80 90}}
JOBS=$(nproc 2>/dev/null || echo 4)
# No MPI (one process per GPU test here) unless 2+ GPUs and the image has mpicc;
# NCCL only then (from the image's CUDA or its Python nvidia-nccl wheel).
MAKE_EXTRA="MPICC= NCCL_HOME=/nonexistent"
NCCL_READY=0
if [ "${N_GPUS:-0}" -ge 2 ] && command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
    nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.dirname(nvidia.nccl.__file__))' 2>/dev/null || true)
    if [ -n "$nccl_dir" ] && [ -e "$nccl_dir/include/nccl.h" ]; then
        mkdir -p /tmp/reformer-nccl/lib && ln -sfn "$nccl_dir/include" /tmp/reformer-nccl/include
        ln -sf "$nccl_dir"/lib/libnccl.so.* /tmp/reformer-nccl/lib/ && ln -sf "$(ls "$nccl_dir"/lib/libnccl.so.* | head -1)" /tmp/reformer-nccl/lib/libnccl.so
        MAKE_EXTRA="NCCL_HOME=/tmp/reformer-nccl"
        RUN_LIBS=$RUN_LIBS:/tmp/reformer-nccl/lib
    else
        MAKE_EXTRA=""
    fi
    NCCL_READY=1
fi
build() {
    local args
    read -r -a args <<<"$MAKE_EXTRA"
    make -j"$JOBS" CUDA_ARCHS="$ARCHS" "${args[@]}" build/test_cuda build/reformer build/cuda_peak || return 1
    if [ "$NCCL_READY" = 1 ]; then make -j"$JOBS" CUDA_ARCHS="$ARCHS" "${args[@]}" build/bench_collectives || return 1; fi
    # Every program must find all its libraries here (carried or the image's).
    for p in build/test_cuda build/reformer build/cuda_peak build/libreformer_cuda.so; do
        if run_ours ldd "$p" | grep 'not found'; then
            echo "build: $p: a library is missing (add its package to cuda/device_deps.txt)"
            return 1
        fi
    done
}
export JOBS NCCL_READY MAKE_EXTRA ARCHS RUN_LIBS
export -f build
part build "${BUILD_S:-200}" build || finish "FAILED: build (see build.log)" 1

# --- is there a GPU? ----------------------------------------------------------------
probe_gpu() { run_ours build/test_cuda --probe; }
export -f probe_gpu
if ! part gpu 30 probe_gpu; then
    why=$(head -1 "$LOGS/gpu.log")
    for p in test_cuda memcheck racecheck peak bench pytorch nccl; do say "$(printf '%-10s SKIPPED (no GPU)' "$p")"; done
    [ -n "$why" ] && say "           $why"
    finish "SKIPPED: no GPU" 77
fi

# --- checks ------------------------------------------------------------------------
part test_cuda 120 run_ours build/test_cuda
grep -E "^test_cuda:|FAIL" "$LOGS/test_cuda.log" | head -20 | sed 's/^/           /' | tee -a "$SUMMARY"
SAN=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
part memcheck 45 run_ours "$SAN" --tool memcheck --error-exitcode 3 build/test_cuda --quick
part racecheck 45 run_ours "$SAN" --tool racecheck --error-exitcode 3 build/test_cuda --quick
for t in memcheck racecheck; do grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOGS/$t.log" | sed "s/^/           $t: /" | tee -a "$SUMMARY"; done

part peak 30 run_ours build/cuda_peak 8192 && grep '^{' "$LOGS/peak.log" | tee -a "$RESULTS" >/dev/null

# bench: one process per run, 1 untimed and 2 timed steps.
bench_one() {  # NAME PRECISION ATTN_IMPL SETS...
    local name=$1 prec=$2 impl=$3 args=()
    shift 3
    for kv in "$@"; do args+=(--set "$kv"); done
    run_ours build/reformer bench --json --steps 2 --warmup 1 --set device=cuda --set precision="$prec" \
        --set attn_impl="$impl" "${args[@]}" | sed "s/^{/{\"model\": \"$name\", \"attn_impl\": \"$impl\", /"
}
export -f bench_one
# The plan: the enwik8 model in every precision on the tensor-core path, and
# bf16 on the reference kernels (what the fast path gains); the long model in
# bf16 (does its step fit 16 GiB?). Models by name from configs.txt.
# bf16 first: the issue's targets are set in bf16.
BENCH_PLAN="enwik8_64k:bf16:fast enwik8_64k:fp32:fast enwik8_64k:tf32:fast long_1m:bf16:fast enwik8_64k:bf16:reference"
for run in $BENCH_PLAN; do
    IFS=: read -r name prec impl <<<"$run"
    sets=$(awk -v n="$name" '$1 == n { $1 = ""; print }' experiments/roofline/configs.txt)
    if [ -z "$sets" ]; then
        say "bench      FAIL (no model $name in experiments/roofline/configs.txt)"
        FAILED=1
        continue
    fi
    # shellcheck disable=SC2086 # sets is a list of key=value words
    part "bench_${name}_${prec}_$impl" 60 bench_one "$name" "$prec" "$impl" $sets &&
        grep '^{' "$LOGS/bench_${name}_${prec}_$impl.log" >>"$RESULTS"
done

# reformer-pytorch on the same enwik8 model and GPU, bf16 (the carried wheels
# into a private folder; the image's torch and einops).
pytorch_bench() {
    python3 -c 'import torch, einops' || return 1
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/reformer-site \
        "$ROOT"/.devdeps/wheels/*.whl || return 1
    local sets kv a=()
    sets=$(awk '$1 == "enwik8_64k" { $1 = ""; print }' experiments/roofline/configs.txt)
    for kv in $sets; do
        case ${kv%%=*} in
        seq_len) a+=(--seq-len "${kv#*=}") ;; d_model) a+=(--d-model "${kv#*=}") ;; d_ff) a+=(--d-ff "${kv#*=}") ;;
        n_heads) a+=(--heads "${kv#*=}") ;; n_layers) a+=(--layers "${kv#*=}") ;; n_hashes) a+=(--n-hashes "${kv#*=}") ;;
        esac
    done
    PYTHONPATH=/tmp/reformer-site PYTHONUNBUFFERED=1 python3 experiments/reformer_pytorch/bench.py "${a[@]}" \
        --bucket 64 --precision bf16 | sed 's/^{/{"model": "enwik8_64k", /'
}
export -f pytorch_bench
if ls "$ROOT"/.devdeps/wheels/*.whl >/dev/null 2>&1; then
    part pytorch 60 pytorch_bench && grep '^{' "$LOGS/pytorch.log" >>"$RESULTS"
else
    say "pytorch    SKIPPED (no .devdeps/wheels: make device-deps)"
fi

if [ "${N_GPUS:-0}" -ge 2 ]; then
    if [ "$NCCL_READY" = 1 ] && [ -x build/bench_collectives ]; then
        part nccl 60 run_ours mpirun --allow-run-as-root --oversubscribe -np 2 build/bench_collectives --nccl
    else
        say "nccl       SKIPPED (2+ GPUs but no mpicc/mpirun or NCCL headers in the image)"
    fi
else
    say "nccl       SKIPPED (one GPU)"
fi

# --- the measurement table: bench and peak against the roofline ------------------
python3 cuda/device_table.py "$RESULTS" experiments/roofline/roofline.tsv 2>&1 | tee -a "$SUMMARY"
if [ "$FAILED" = 0 ]; then finish "ok" 0; else finish "FAILED (see the lines above)" 1; fi
