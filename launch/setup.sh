#!/usr/bin/env bash
# Install the Debian packages that the build and the tests need, skipping the
# ones already installed. Run by `make setup`; safe to run again.
# With arguments, installs those packages instead (launch/hf/setup.sh).
#
# REFORMER_SETUP_EXTRAS=1 also installs matplotlib for
# experiments/plot_metrics.py (nothing in the build or the tests needs it).
set -euo pipefail

packages=(
    # build and unit tests
    gcc make pkg-config libopenblas-dev libcriterion-dev python3
    # HDF5 checkpoints and metrics, MPI distribution, zipped datasets
    libhdf5-dev hdf5-tools libopenmpi-dev openmpi-bin libzip-dev zlib1g-dev
    # SentencePiece tokenizers (io/tokenizer.cc, C++)
    g++ libsentencepiece-dev
    # PNG images (data_format=png, sample --image)
    libpng-dev
    # tests that read those files as a Python user would (numpy writes the .npz images)
    python3-h5py python3-numpy
    # the launch scripts' lint test
    shellcheck
    # make test-slurm: a private one-node SLURM (Debian's slurm-wlm: slurmctld,
    # slurmd, slurm-client) with munge authentication; pgrep (procps)
    slurmctld slurmd slurm-client munge procps
)
if [[ "${REFORMER_SETUP_EXTRAS:-0}" == 1 ]]; then
    packages+=(python3-matplotlib)
fi
# launch/setup.sh PACKAGE...: those packages instead (make setup-hf's).
if [[ $# -gt 0 ]]; then
    packages=("$@")
fi

missing=()
for p in "${packages[@]}"; do
    if ! dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed'; then
        missing+=("$p")
    fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "setup: all ${#packages[@]} packages already installed"
    exit 0
fi

echo "setup: installing ${missing[*]}"
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if ! command -v sudo >/dev/null; then
        echo "setup: error: not root and sudo not found; install as root: apt-get install ${missing[*]}" >&2
        exit 1
    fi
    sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update
${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
