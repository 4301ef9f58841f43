#!/usr/bin/env bash
# Measures LSH attention's future-token leak through the sort (see leak.c).
# Writes results.md next to this script.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/../.."
make -s build/reformer build/lsh_leak
{
    echo "# LSH attention: future tokens seen through the sort"
    echo
    echo "Command: \`experiments/lsh_causality/run.sh\` (randomly initialised models, 40 (sequence, j) trials each)."
    echo
    for args in "n_hashes=1" "n_hashes=2" "n_hashes=4" "n_hashes=2 lsh_chunk=64" "n_hashes=2 lsh_form=strict"; do
        echo "- \`$args\`: $(build/lsh_leak $args)"
    done
} > "$here/results.md"
cat "$here/results.md"
