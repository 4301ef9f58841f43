#!/usr/bin/env bash
# Download the packages of cuda/device_deps.txt into .devdeps/ (or $1), for
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
echo "fetch_device_deps: $n packages, $(du -sh "$dest" | cut -f1) in $dest"
