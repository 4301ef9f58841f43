#!/usr/bin/env bash
# cuda/find_cuda_parts.sh: where the parts the CUDA build needs beyond nvcc
# are on this machine: cuBLAS (header and library), CUB (CCCL headers) and
# NCCL (header and library). Each is looked for in the toolkit first, then in
# the image's Python wheels (nvidia-cublas, nvidia-cuda-cccl, nvidia-nccl:
# the lent GPU image has them, as it has torch), then in the wheels carried
# in .devdeps/wheels (cuda/device_wheels.txt), unpacked into UNPACK_DIR.
# cuda/device_check.sh sources the output; tests/test_device_check.c runs it
# on made-up trees.
#
# Prints shell assignments, one a line:
#   CUBLAS_INC=DIR CUBLAS_LIB=DIR CUBLAS_FROM=toolkit|wheel|carried|missing
#   CUB_INC=DIR    CUB_FROM=...
#   NCCL_INC=DIR   NCCL_LIB=DIR   NCCL_FROM=...
# DIR empty where the toolkit's own (nvcc's default search) serves, or missing.
#
# Environment: CUDA_HOME (default: nvcc's, else /usr/local/cuda); PYTHON
# (default python3; PYTHON= skips the image's wheels); WHEELS (default
# .devdeps/wheels); UNPACK_DIR (default /tmp/reformer-wheels).
set -u
cd "$(dirname "$0")/.." || exit 1
if [ -z "${CUDA_HOME:-}" ]; then
    nvcc_path=$(command -v nvcc 2>/dev/null || true)
    CUDA_HOME=${nvcc_path:+$(dirname "$(dirname "$nvcc_path")")}
    CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
fi
PYTHON=${PYTHON-python3}
WHEELS=${WHEELS:-.devdeps/wheels}
UNPACK_DIR=${UNPACK_DIR:-/tmp/reformer-wheels}

# The folders that hold the nvidia-* wheels' files: the image's site-packages
# (nvidia/ namespace package), then the carried wheels, unpacked.
wheel_roots() {
    if [ -n "$PYTHON" ] && command -v "$PYTHON" >/dev/null 2>&1; then
        "$PYTHON" -c 'import nvidia, sys; print("\n".join(nvidia.__path__))' 2>/dev/null | sed 's/^/image /'
    fi
    local w
    for w in "$WHEELS"/nvidia_*.whl; do
        [ -e "$w" ] || continue
        mkdir -p "$UNPACK_DIR" &&
            python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])' "$w" "$UNPACK_DIR" 2>/dev/null &&
            echo "carried $UNPACK_DIR/nvidia"
    done | sort -u
}
ROOTS=$(wheel_roots)

# first FILE-PATTERN: the folder of the first file of that name under the wheel roots.
from_wheels() {
    local kind dir f
    while read -r kind dir; do
        [ -d "$dir" ] || continue
        f=$(find "$dir" -name "$1" \( -type f -o -type l \) 2>/dev/null | sort | head -1)
        if [ -n "$f" ]; then
            echo "$kind $(dirname "$f")"
            return 0
        fi
    done <<<"$ROOTS"
    return 1
}
wheel_kind() { [ "$1" = image ] && echo wheel || echo carried; }

# cuBLAS: cublas_v2.h and libcublas.so*.
if [ -e "$CUDA_HOME/include/cublas_v2.h" ] && ls "$CUDA_HOME"/lib64/libcublas.so* >/dev/null 2>&1; then
    echo "CUBLAS_INC= CUBLAS_LIB= CUBLAS_FROM=toolkit"
elif inc=$(from_wheels cublas_v2.h) && lib=$(from_wheels 'libcublas.so*'); then
    echo "CUBLAS_INC=${inc#* } CUBLAS_LIB=${lib#* } CUBLAS_FROM=$(wheel_kind "${inc%% *}")"
else
    echo "CUBLAS_INC= CUBLAS_LIB= CUBLAS_FROM=missing"
fi
# CUB: cub/cub.cuh (CUDA 12: include/cub; CUDA 13: include/cccl/cub, which
# nvcc searches itself).
if [ -e "$CUDA_HOME/include/cub/cub.cuh" ] || [ -e "$CUDA_HOME/include/cccl/cub/cub.cuh" ]; then
    echo "CUB_INC= CUB_FROM=toolkit"
elif inc=$(from_wheels cub.cuh); then
    echo "CUB_INC=$(dirname "${inc#* }") CUB_FROM=$(wheel_kind "${inc%% *}")"
else
    echo "CUB_INC= CUB_FROM=missing"
fi
# NCCL: nccl.h and libnccl.so* (the Makefile's own search covers the toolkit
# and /usr: NCCL_INC empty then).
if [ -e "$CUDA_HOME/include/nccl.h" ] || [ -e /usr/include/nccl.h ]; then
    echo "NCCL_INC= NCCL_LIB= NCCL_FROM=toolkit"
elif inc=$(from_wheels nccl.h) && lib=$(from_wheels 'libnccl.so*'); then
    echo "NCCL_INC=${inc#* } NCCL_LIB=${lib#* } NCCL_FROM=$(wheel_kind "${inc%% *}")"
else
    echo "NCCL_INC= NCCL_LIB= NCCL_FROM=missing"
fi
