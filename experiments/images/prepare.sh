#!/usr/bin/env bash
# Real images, offline (issue 24): installs the scikit-image wheel from PyPI
# into a venv at run time (with --no-deps: only its skimage/data photographs
# are used, nothing is imported from it; Pillow decodes them) and cuts its
# colour photographs into 32x32 and 64x64 patches, split by source image
# (patches.py says which photograph is in which split). Nothing lands in the
# repository: the venv and the patches are under runs/ (ignored).
#
#   experiments/images/prepare.sh        -> runs/images/patches32, runs/images/patches64
#   experiments/images/prepare.sh --synthetic   -> also runs/images/synthetic32 (synthetic.py)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
out=runs/images
venv="$out/venv"
skimage_version=0.26.0  # the wheel whose skimage/data was used for results.md
mkdir -p "$out"
if [ ! -x "$venv/bin/python" ]; then
    /usr/bin/python3 -m venv --system-site-packages "$venv"
fi
"$venv/bin/pip" install -q --no-deps "scikit-image==$skimage_version" pillow
data_dir="$("$venv/bin/python" -c 'import importlib.util, os; s = importlib.util.find_spec("skimage"); print(os.path.join(list(s.submodule_search_locations)[0], "data"))')"
for size in 32 64; do
    rm -rf "$out/patches$size"
    "$venv/bin/python" "$here/patches.py" "$data_dir" "$out/patches$size" "$size"
done
if [ "${1:-}" = --synthetic ]; then
    rm -rf "$out/synthetic32"
    /usr/bin/python3 "$here/synthetic.py" "$out/synthetic32" 32
fi
