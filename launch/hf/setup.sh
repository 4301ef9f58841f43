#!/usr/bin/env bash
# `make setup-hf`: the environment that `reformer export-hf` / `import-hf`
# and `make test-hf` run in. Debian's CPU-only torch (python3-torch 1.13,
# about 140 MB to download) and h5py come from apt; transformers and
# safetensors (pinned in requirements.txt, about 16 MB) from PyPI into the
# virtual environment .venv-hf at the repository root, made from Debian's
# /usr/bin/python3 with --system-site-packages so it sees the apt packages.
# Nothing is installed into the system Python. Safe to run again: it does
# nothing when everything is there.
set -euo pipefail
cd "$(dirname "$0")/../.."

launch/setup.sh python3 python3-venv python3-pip python3-torch python3-numpy python3-h5py python3-sentencepiece

venv=.venv-hf
stamp="$venv/.requirements"
if [[ -x "$venv/bin/python" && -f "$stamp" ]] && cmp -s "$stamp" launch/hf/requirements.txt; then
    echo "setup-hf: $venv is up to date"
    exit 0
fi
rm -rf "$venv"
/usr/bin/python3 -m venv --system-site-packages "$venv"
"$venv/bin/pip" install --no-cache-dir --disable-pip-version-check -q -r launch/hf/requirements.txt
"$venv/bin/python" -c "import torch, transformers, safetensors, h5py, sentencepiece; from transformers import ReformerModelWithLMHead, ReformerTokenizer"
cp launch/hf/requirements.txt "$stamp"
echo "setup-hf: $venv ready (torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)'), transformers $("$venv/bin/python" -c 'import transformers; print(transformers.__version__)'))"
