# Shared by the experiments' run.sh scripts: build the program, then `run TAG
# ARGS...` runs one `build/reformer bench --json ARGS...` and appends its JSON
# line, tagged with "experiment": TAG, to $out.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
make -s build/reformer
: > "$out"
run() {
    local tag="$1"; shift
    echo "[$tag] build/reformer bench --json $*" >&2
    build/reformer bench --json "$@" | sed "s/^{/{\"experiment\": \"$tag\", /" >> "$out"
}
