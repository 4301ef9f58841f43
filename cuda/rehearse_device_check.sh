#!/usr/bin/env bash
# Rehearse cuda/device_check.sh here, as the lent machine will meet it: a
# fresh clone of HEAD plus only the carried .devdeps/, in a private mount
# namespace (unshare -m, root) where every file of the carried packages that
# the device image may lack is hidden (/dev/null bound over it), so the build
# and the programs can only use the carried copies. Without a GPU it must end
# "SKIPPED: no GPU" with exit 77 after the deps and build parts passed, every
# GPU part SKIPPED, and the build in build/device only (not build/reformer).
# `make device-check-rehearsal` runs it.
#
# Kept visible (the toolchain here needs them, and the device image has them:
# gcc, dpkg and python3 link them): libc6 libgmp10 libzstd1 libbz2-1.0 zlib1g
# libffi8 libssl3.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! ls .devdeps/*.deb >/dev/null 2>&1; then
    echo "rehearse_device_check: no .devdeps/*.deb (hint: make device-deps)" >&2
    exit 1
fi
if [ "$(id -u)" != 0 ]; then
    echo "rehearse_device_check: needs root for unshare -m and bind mounts" >&2
    exit 1
fi
work=$(mktemp -d /tmp/rehearse_device_check.XXXXXX)
git clone -q --no-hardlinks . "$work/repo"
cp -r .devdeps "$work/repo/.devdeps"
keep=" libc6 libgmp10 libzstd1 libbz2-1.0 zlib1g libffi8 libssl3 "
hide=()
while read -r p; do
    case "$keep" in *" $p "*) continue ;; esac
    hide+=("$p")
done < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' cuda/device_deps.txt)
echo "rehearse_device_check: clone in $work/repo; hiding the files of ${#hide[@]} packages"
set +e
unshare -m bash -c '
    set -u
    mount --make-rprivate /
    n=0
    for p in "$@"; do
        while read -r f; do
            # Plain files only: a link (libz.so in zlib1g-dev) would bind over
            # its target, which may belong to a package kept visible.
            [ -f "$f" ] && [ ! -L "$f" ] || continue
            mount --bind /dev/null "$f" && n=$((n + 1))
        done < <(dpkg -L "$p" 2>/dev/null)
    done
    echo "rehearse_device_check: $n files hidden"
    # What the build would find of them now: nothing.
    for probe in /usr/include/hdf5/serial/hdf5.h /usr/include/zip.h /usr/include/x86_64-linux-gnu/openblas-pthread/cblas.h; do
        [ -s "$probe" ] && echo "rehearse_device_check: still visible: $probe"
    done
    # Two shared cores here, not the lent 16: the build gets longer, every
    # limit of a part 5x (LIMIT_SCALE).
    cd "$0/repo" && BUDGET_S=${BUDGET_S:-1500} BUILD_S=${BUILD_S:-1200} LIMIT_SCALE=${LIMIT_SCALE:-5} cuda/device_check.sh "$0/out"
' "$work" "${hide[@]}"
rc=$?
set -e
echo "rehearse_device_check: device_check.sh exited $rc; results in $work/out"
ls -l "$work/out"
# The device build stays in build/device: the clone's build/reformer (what
# `make` would make) must not exist.
if [ -e "$work/repo/build/reformer" ]; then
    echo "rehearse_device_check: build/reformer was built outside build/device" >&2
    exit 1
fi
[ "$rc" = 77 ] && grep -q "SKIPPED: no GPU" "$work/out/summary.txt" && ! grep -q FAIL "$work/out/summary.txt"
