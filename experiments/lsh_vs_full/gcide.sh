#!/usr/bin/env bash
# The text of experiments/lsh_vs_full: GCIDE 0.48, the GNU Collaborative
# International Dictionary of English (Webster's Revised Unabridged of 1913
# with WordNet glosses and later additions; GPL-2+), as Debian's dict-gcide
# package ships it (/usr/share/dictd/gcide.dict.dz, dictzip, which gzip
# reads). Unpacked once to build/data/gcide.txt (39,952,321 bytes of
# English definitions and quotations, alphabetical A to Z); prints the path.
# Nothing is added to the repository: the package is the source.
#
#   experiments/lsh_vs_full/gcide.sh      -> build/data/gcide.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/data/gcide.txt
if [ ! -s "$out" ]; then
    src=/usr/share/dictd/gcide.dict.dz
    if [ ! -f "$src" ]; then
        # Not installed: fetch the package file only (installing it would also
        # start a dictd server), and unpack it.
        tmp="$(mktemp -d)"
        trap 'rm -rf "$tmp"' EXIT
        (cd "$tmp" && { apt-get download dict-gcide >&2 2>/dev/null || { apt-get update -qq >&2 && apt-get download dict-gcide >&2; }; }) \
            || { echo "gcide.sh: could not fetch Debian's dict-gcide (apt-get download dict-gcide)" >&2; exit 1; }
        dpkg-deb -x "$tmp"/dict-gcide_*.deb "$tmp/x"
        src="$tmp/x/usr/share/dictd/gcide.dict.dz"
    fi
    mkdir -p build/data
    zcat "$src" > "$out.tmp"
    mv "$out.tmp" "$out"
fi
echo "$out"
