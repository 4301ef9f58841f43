#!/usr/bin/env bash
# cuda/device_check.sh: the one prepared check of the CUDA backend on a GPU
# that is lent for a few minutes (/work/.library/device/, METHOD.md).
#
#   cuda/device_check.sh [OUTDIR]      (OUTDIR: $OUT on the device machine,
#                                       else build/device/check)
#   cuda/device_check.sh --limits      print every part's time limit and the
#                                       budget (experiments/roofline/budget.py)
#
# Every part runs under a hard time limit (LIMITS below), all of them inside
# one budget (BUDGET_S, default 480 s; the limits add up to it: a run in a
# device call of timeout_s 540 leaves a short rerun inside a 15-minute lease;
# experiments/roofline/device_check_budget.md gives each part's expected
# seconds on an H100). The order puts the verdicts and the headline figures
# first, so a run stopped early has lost the least:
#   machine    what the machine has (GPU, driver, toolkit; cuBLAS, CUB and
#              NCCL from the toolkit, the image's wheels or the carried ones)
#   deps       unpack the carried .devdeps/*.deb into a private prefix
#              (dpkg -x, never into /) and point the build at it
#   build      a copy of the sources in its own folder (DEVICE_BUILD, default
#              build/device: never the build/ that `make` made), built for
#              the GPU found (sm_80 and sm_90 without one)
#   gpu        is there a usable GPU? If not, every later part says SKIPPED
#              and the script exits 77 (a skip, never a pass)
#   test_cuda  every op and path against the CPU, fp32/tf32/bf16, 1 and 20
#              steps, sizes = plan (cuda/test_cuda.c)
#   bench_enwik8_64k_bf16_fast, bench_long_1m_bf16_fast   the headline figures
#   peak       the measured ceilings (cuda_peak: GEMM fp32/tf32/bf16, copy)
#   memcheck   compute-sanitizer on test_cuda --quick
#   bench_enwik8_64k_fp32_fast, _tf32_fast   the other precisions
#   pytorch    reformer-pytorch (carried wheels) on the enwik8 model, bf16
#   racecheck  compute-sanitizer on test_cuda --quick
#   bench_enwik8_64k_bf16_reference   the reference attention kernels
#   nccl       bench_collectives --nccl over 2 ranks, where there are 2+ GPUs
#              and the image has mpirun
# Results: OUTDIR/summary.txt (also printed last), OUTDIR/results.jsonl (one
# JSON line per measurement), OUTDIR/logs.tar.gz (every part's full log): 3
# files, as the device tool brings back at most 8. All three are rewritten
# as each part ends, so a run stopped by the call's limit keeps what ran.
# shellcheck disable=SC2317 # the parts' functions run through `part` (bash -c)
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
BUDGET_S=${BUDGET_S:-480}
# Time limits (seconds), in run order; they add up to the default budget.
# deps, build and gpu always run; the rest in this order. nccl counts only
# where it can run (2+ GPUs), when the reference bench's share goes to it.
LIMITS="deps:15 build:100 gpu:10 test_cuda:70 bench_enwik8_64k_bf16_fast:15 bench_long_1m_bf16_fast:45 peak:10
memcheck:50 bench_enwik8_64k_fp32_fast:35 bench_enwik8_64k_tf32_fast:20 pytorch:40 racecheck:50
bench_enwik8_64k_bf16_reference:20"
if [ "${1:-}" = --limits ]; then  # unscaled
    echo "budget $BUDGET_S"
    for l in $LIMITS; do echo "${l%%:*} ${l##*:}"; done
    exit 0
fi
limit_of() {
    local l
    # BUILD_S: the build's limit where the machine is slower (the rehearsal's 2 cores).
    [ "$1" = build ] && [ -n "${BUILD_S:-}" ] && echo "$BUILD_S" && return
    # LIMIT_SCALE: every limit times this (the rehearsal on a slow shared machine).
    for l in $LIMITS; do [ "${l%%:*}" = "$1" ] && echo $((${l##*:} * ${LIMIT_SCALE:-1})) && return; done
    echo $((30 * ${LIMIT_SCALE:-1}))  # nccl (2+ GPUs only)
}
DEVICE_BUILD=${DEVICE_BUILD:-$ROOT/build/device}
OUTDIR=${1:-${OUT:-$DEVICE_BUILD/check}}
mkdir -p "$OUTDIR"
LOGS=$(mktemp -d /tmp/device_check_logs.XXXXXX)
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
# The logs so far into OUTDIR (replaced whole, so a stopped run leaves a
# readable archive).
save_logs() { tar -C "$LOGS" -czf "$OUTDIR/logs.tar.gz.part" . 2>/dev/null && mv -f "$OUTDIR/logs.tar.gz.part" "$OUTDIR/logs.tar.gz"; }
# part NAME CMD...: run CMD with its output in $LOGS/NAME.log, under
# min(its limit, what is left of the budget); one summary line with its status.
part() {
    local name=$1 limit rem t0 rc w
    shift
    limit=$(limit_of "$name")
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
    save_logs
    return $rc
}
finish() {
    save_logs
    say "device_check: $1 ($(($(date +%s) - START))s; results in $OUTDIR)"
    rm -rf "$LOGS"
    exit "$2"
}

# --- the machine ---------------------------------------------------------------
NVCC_PATH=$(command -v nvcc 2>/dev/null || true)
[ -z "$NVCC_PATH" ] && [ -x /usr/local/cuda/bin/nvcc ] && NVCC_PATH=/usr/local/cuda/bin/nvcc
export CUDA_HOME=${CUDA_HOME:-${NVCC_PATH:+$(dirname "$(dirname "$NVCC_PATH")")}}
# cuBLAS, CUB and NCCL: the toolkit's, else the image's wheels, else the
# carried ones (cuda/find_cuda_parts.sh prints where; sourced here).
PARTS_FOUND=$(WHEELS="$ROOT/.devdeps/wheels" cuda/find_cuda_parts.sh 2>"$LOGS/find_cuda_parts.log")
eval "$PARTS_FOUND"
{
    echo "date: $(date -u)"
    uname -a
    echo "cpus: $(nproc 2>/dev/null)  memory: $(free -g 2>/dev/null | awk '/Mem:/ {print $2 " GiB"}')  disk: $(df -h /tmp 2>/dev/null | awk 'NR == 2 {print $4 " free"}')"
    ldd --version 2>&1 | head -1
    echo "nvcc: ${NVCC_PATH:-none}  CUDA_HOME: ${CUDA_HOME:-none}"
    [ -n "$NVCC_PATH" ] && "$NVCC_PATH" --version | tail -2
    command -v gcc >/dev/null && gcc --version | head -1
    echo "make: $(command -v make || echo none)  dpkg: $(command -v dpkg || echo none)  python3: $(command -v python3 || echo none)"
    echo "mpicc: $(command -v mpicc || echo none)  mpirun: $(command -v mpirun || echo none)"
    echo "compute-sanitizer: $(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer" 2>/dev/null || echo none)"
    echo "$PARTS_FOUND"
    find "${CUDA_HOME:-/usr/local/cuda}/lib64/" -maxdepth 1 -name "libcublas*" 2>/dev/null | head -4
    python3 -m pip list 2>/dev/null | grep -iE '^(nvidia|torch|einops|cuda)' | head -30
    nvidia-smi 2>&1 | head -20
    nvidia-smi --query-gpu=name,compute_cap,memory.total,clocks.sm,clocks.max.sm --format=csv 2>&1
} >"$LOGS/machine.log" 2>&1
N_GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
CC_FOUND=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')
case $CC_FOUND in '' | *[!0-9]*) CC_FOUND= ;; esac
GPU_NAME=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)
say "device_check: ${GPU_NAME:-no GPU seen by nvidia-smi}," \
    "$N_GPUS GPU(s), sm_${CC_FOUND:-none}; budget ${BUDGET_S}s"
say "machine    nvcc ${NVCC_PATH:-none}; cuBLAS: $CUBLAS_FROM, CUB: $CUB_FROM, NCCL: $NCCL_FROM  log: machine.log"
save_logs
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
    part deps unpack_deps || finish "FAILED: could not unpack .devdeps" 1
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
# cuBLAS and NCCL from a wheel: the wheels hold only versioned libraries
# (libcublas.so.13), so the link names point at them from a folder of ours.
WHEEL_LIBS=/tmp/reformer-wheel-libs
EXTRA_INC='' EXTRA_LIB=''
link_wheel_lib() {  # NAME DIR: DIR/libNAME.so.* as $WHEEL_LIBS/libNAME.so
    local f
    for f in "$2"/lib"$1".so.*; do
        [ -e "$f" ] && mkdir -p "$WHEEL_LIBS" && ln -sfn "$f" "$WHEEL_LIBS/lib$1.so" && return 0
    done
    return 1
}
if [ "$CUBLAS_FROM" = wheel ] || [ "$CUBLAS_FROM" = carried ]; then
    link_wheel_lib cublas "$CUBLAS_LIB" && link_wheel_lib cublasLt "$CUBLAS_LIB"
    EXTRA_INC="$EXTRA_INC $CUBLAS_INC" EXTRA_LIB="$EXTRA_LIB $WHEEL_LIBS $CUBLAS_LIB"
    RUN_LIBS=$RUN_LIBS:$CUBLAS_LIB
fi
if [ "$CUB_FROM" = wheel ] || [ "$CUB_FROM" = carried ]; then EXTRA_INC="$EXTRA_INC $CUB_INC"; fi

# Only this project's programs see the carried libraries.
run_ours() { env LD_LIBRARY_PATH="$RUN_LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "$@"; }
export RUN_LIBS ROOT PREFIX
export -f run_ours

# --- build: a copy of the sources in a folder of its own ------------------------
# Never in build/: make there would relink build/reformer without MPI (the
# device image has none), replacing what `make` built. The sources are
# copied over the last copy (tar keeps their times, so a rerun on a warm
# machine rebuilds only what changed) and built there; every later part runs
# in that folder.
SRC=$DEVICE_BUILD/src
mkdir -p "$SRC" || finish "FAILED: cannot make $SRC" 1
tar -C "$ROOT" --exclude=./build --exclude=./.devdeps --exclude=./.git --exclude=./.venv-hf -cf - . | tar -C "$SRC" -xf - ||
    finish "FAILED: cannot copy the sources into $SRC" 1
cd "$SRC" || finish "FAILED: cannot enter $SRC" 1
# The GPU found, else CUDA_ARCHS (cuda.mk's default: 80 90).
ARCHS=${CC_FOUND:-${CUDA_ARCHS:-80 90}}
JOBS=$(nproc 2>/dev/null || echo 4)
# No MPI (one process per GPU test here) unless 2+ GPUs and the image has mpicc;
# NCCL only then (from the image's CUDA or a wheel: find_cuda_parts.sh).
MAKE_EXTRA="MPICC= NCCL_HOME=/nonexistent"
NCCL_READY=0
if [ "${N_GPUS:-0}" -ge 2 ] && command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
    MAKE_EXTRA=""
    if [ "$NCCL_FROM" = wheel ] || [ "$NCCL_FROM" = carried ]; then
        mkdir -p /tmp/reformer-nccl/lib && ln -sfn "$NCCL_INC" /tmp/reformer-nccl/include
        link_wheel_lib nccl "$NCCL_LIB" && ln -sfn "$WHEEL_LIBS/libnccl.so" /tmp/reformer-nccl/lib/libnccl.so
        MAKE_EXTRA="NCCL_HOME=/tmp/reformer-nccl"
        RUN_LIBS=$RUN_LIBS:$NCCL_LIB
    fi
    [ "$NCCL_FROM" != missing ] && NCCL_READY=1
fi
build() {
    local args
    read -r -a args <<<"$MAKE_EXTRA"
    make -j"$JOBS" CUDA_ARCHS="$ARCHS" CUDA_EXTRA_INC="$EXTRA_INC" CUDA_EXTRA_LIB="$EXTRA_LIB" "${args[@]}" \
        build/test_cuda build/reformer build/cuda_peak || return 1
    if [ "$NCCL_READY" = 1 ]; then
        make -j"$JOBS" CUDA_ARCHS="$ARCHS" CUDA_EXTRA_INC="$EXTRA_INC" CUDA_EXTRA_LIB="$EXTRA_LIB" "${args[@]}" \
            build/bench_collectives || return 1
    fi
    # Every program must find all its libraries here (carried or the image's).
    for p in build/test_cuda build/reformer build/cuda_peak build/libreformer_cuda.so; do
        if run_ours ldd "$p" | grep 'not found'; then
            echo "build: $p: a library is missing (add its package to cuda/device_deps.txt)"
            return 1
        fi
    done
}
export JOBS NCCL_READY MAKE_EXTRA ARCHS RUN_LIBS EXTRA_INC EXTRA_LIB
export -f build
part build build || finish "FAILED: build (see build.log)" 1

# --- is there a GPU? ----------------------------------------------------------------
GPU_PARTS="test_cuda bench_enwik8_64k_bf16_fast bench_long_1m_bf16_fast peak memcheck bench_enwik8_64k_fp32_fast
bench_enwik8_64k_tf32_fast pytorch racecheck bench_enwik8_64k_bf16_reference nccl"
probe_gpu() { run_ours build/test_cuda --probe; }
export -f probe_gpu
if ! part gpu probe_gpu; then
    why=$(head -1 "$LOGS/gpu.log")
    for p in $GPU_PARTS; do say "$(printf '%-10s SKIPPED (no GPU)' "$p")"; done
    [ -n "$why" ] && say "           $why"
    finish "SKIPPED: no GPU" 77
fi

# --- checks, verdicts and headline figures first ----------------------------------
SAN=$(command -v compute-sanitizer || echo "${CUDA_HOME:-/usr/local/cuda}/bin/compute-sanitizer")
# bench: one process per run, 1 untimed and STEPS timed steps, then the
# profiled one for the shares (reformer bench).
bench_one() {  # NAME PRECISION ATTN_IMPL STEPS SETS...
    local name=$1 prec=$2 impl=$3 steps=$4 args=()
    shift 4
    for kv in "$@"; do args+=(--set "$kv"); done
    run_ours build/reformer bench --json --steps "$steps" --warmup 1 --set device=cuda --set precision="$prec" \
        --set attn_impl="$impl" "${args[@]}" | sed "s/^{/{\"model\": \"$name\", \"attn_impl\": \"$impl\", /"
}
# reformer-pytorch on the same enwik8 model and GPU, bf16 (the carried
# pure-Python wheels into a private folder; the image's torch and einops).
pytorch_bench() {
    python3 -c 'import torch, einops' || return 1
    local w wheels=()
    for w in "$ROOT"/.devdeps/wheels/*.whl; do [[ $(basename "$w") == nvidia_* ]] || wheels+=("$w"); done
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/reformer-site \
        "${wheels[@]}" || return 1
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
export -f bench_one pytorch_bench
# run_bench NAME PRECISION IMPL [STEPS]: a model of experiments/roofline/configs.txt.
run_bench() {
    local name=$1 prec=$2 impl=$3 steps=${4:-2} sets
    sets=$(awk -v n="$name" '$1 == n { $1 = ""; print }' experiments/roofline/configs.txt)
    if [ -z "$sets" ]; then
        say "bench      FAIL (no model $name in experiments/roofline/configs.txt)"
        FAILED=1
        return
    fi
    # shellcheck disable=SC2086 # sets is a list of key=value words
    part "bench_${name}_${prec}_$impl" bench_one "$name" "$prec" "$impl" "$steps" $sets &&
        grep '^{' "$LOGS/bench_${name}_${prec}_$impl.log" >>"$RESULTS"
}
sanitizer_line() { grep -E "ERROR SUMMARY|RACECHECK SUMMARY" "$LOGS/$1.log" | sed "s/^/           $1: /" | tee -a "$SUMMARY"; }

part test_cuda run_ours build/test_cuda
grep -E "^test_cuda:|FAIL" "$LOGS/test_cuda.log" | head -20 | sed 's/^/           /' | tee -a "$SUMMARY"
# The issue's targets are set in bf16: the enwik8 model, then the long one
# (does its step fit 16 GiB?).
run_bench enwik8_64k bf16 fast
run_bench long_1m bf16 fast 1  # ~8 s a step (experiments/roofline/device_check_budget.md): 1 timed
part peak run_ours build/cuda_peak 8192 && grep '^{' "$LOGS/peak.log" >>"$RESULTS"
part memcheck run_ours "$SAN" --tool memcheck --error-exitcode 3 build/test_cuda --quick
sanitizer_line memcheck
run_bench enwik8_64k fp32 fast
run_bench enwik8_64k tf32 fast
if ls "$ROOT"/.devdeps/wheels/*.whl >/dev/null 2>&1; then
    part pytorch pytorch_bench && grep '^{' "$LOGS/pytorch.log" >>"$RESULTS"
else
    say "pytorch    SKIPPED (no .devdeps/wheels: make device-deps)"
fi
part racecheck run_ours "$SAN" --tool racecheck --error-exitcode 3 build/test_cuda --quick
sanitizer_line racecheck
if [ "${N_GPUS:-0}" -ge 2 ]; then
    if [ "$NCCL_READY" = 1 ] && [ -x build/bench_collectives ]; then
        part nccl run_ours mpirun --allow-run-as-root --oversubscribe -np 2 build/bench_collectives --nccl
    else
        say "nccl       SKIPPED (2+ GPUs but no mpicc/mpirun or NCCL headers in the image)"
    fi
else
    say "nccl       SKIPPED (one GPU)"
    run_bench enwik8_64k bf16 reference  # what the tensor-core path gains
fi

# --- the measurement table: bench and peak against the roofline ------------------
python3 cuda/device_table.py "$RESULTS" experiments/roofline/roofline.tsv 2>&1 | tee -a "$SUMMARY"
if [ "$FAILED" = 0 ]; then finish "ok" 0; else finish "FAILED (see the lines above)" 1; fi
