#!/usr/bin/env bash
# Download the packages of cuda/device_deps.txt into .devdeps/ (or $1), and
# the wheels of cuda/device_wheels.txt into .devdeps/wheels/ (pure Python, and
# the CCCL headers' manylinux wheel), for
# the device run call to carry (cuda/README.md, "On a lent GPU"). Needs apt
# on a Debian bookworm amd64 machine (this project's CI and build image); it
# installs nothing. `make device-deps` runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-.devdeps}
mapfile -t pkgs < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' cuda/device_deps.txt)
mkdir -p "$dest"
rm -f "$dest"/*.deb
# apt-get download writes into the current directory; as root it warns that
# the _apt user cannot write there, which is harmless.
(cd "$dest" && apt-get -q download "${pkgs[@]}" 2>&1 | grep -v "unsandboxed as root" || true)
n=$(ls "$dest"/*.deb 2>/dev/null | wc -l)
if [ "$n" -ne "${#pkgs[@]}" ]; then
    echo "fetch_device_deps: error: ${#pkgs[@]} packages listed, $n downloaded into $dest (hint: apt-get update)" >&2
    exit 1
fi
# The wheels of cuda/device_wheels.txt (pure Python, for the reformer-pytorch
# side-by-side) into $dest/wheels.
mapfile -t wheels < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' cuda/device_wheels.txt)
rm -rf "$dest/wheels"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp --platform any \
    --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    -d "$dest/wheels" "${wheels[@]}"
nw=$(find "$dest/wheels" -name '*.whl' | wc -l)
if [ "$nw" -ne "${#wheels[@]}" ]; then
    echo "fetch_device_deps: error: ${#wheels[@]} wheels listed, $nw downloaded into $dest/wheels" >&2
    exit 1
fi
echo "fetch_device_deps: $n packages and $nw wheels, $(du -sh "$dest" | cut -f1) in $dest"
