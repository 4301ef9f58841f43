#!/usr/bin/env bash
# Run every Criterion test binary given on the command line, one after the
# other, streaming each one's output, then print one summary line:
#
#     N passed, M failed
#
# N sums the "Passing" counts of Criterion's closing "Synthesis:" lines. M sums
# the failed tests, counting crashed ones once: Criterion's "Failing" already
# includes the "Crashing" tests (Tested = Passing + Failing), so M takes
# Tested - Passing per binary; plus 1 for every binary that is missing,
# produced no synthesis line, or exited non-zero although no test failed.
# Exits non-zero when anything failed or when no test ran at all.
#
# Usage: tests/run_all.sh BIN...        (make test passes every test binary)
set -u

# Test programs run with --jobs 2 on small machines: idle OpenMP threads must
# sleep, not spin (see ensure_passive_openmp_wait in launch/main.c).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"

passed=0
failed=0
tested=0
log=$(mktemp "${TMPDIR:-/tmp}/run_all.XXXXXX")
trap 'rm -f "$log"' EXIT

for bin in "$@"; do
    echo "==> $bin"
    if [[ ! -x "$bin" ]]; then
        echo "run_all: $bin: not found or not executable" >&2
        failed=$((failed + 1))
        continue
    fi
    "$bin" --jobs 2 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    # Criterion may colour its output; strip escape sequences before parsing.
    synth=$(sed 's/\x1b\[[0-9;]*[A-Za-z]//g' "$log" |
        grep -E 'Synthesis: Tested: [0-9]+ \| Passing: [0-9]+ \| Failing: [0-9]+ \| Crashing: [0-9]+' | tail -n 1)
    if [[ -z "$synth" ]]; then
        echo "run_all: $bin exited with status $rc and printed no Criterion synthesis line" >&2
        failed=$((failed + 1))
        continue
    fi
    read -r t p f c < <(sed -E 's/.*Tested: ([0-9]+) \| Passing: ([0-9]+) \| Failing: ([0-9]+) \| Crashing: ([0-9]+).*/\1 \2 \3 \4/' <<<"$synth")
    bad=$((t - p))
    if [[ $f -gt $bad ]]; then bad=$f; fi
    if [[ $c -gt $bad ]]; then bad=$c; fi
    tested=$((tested + t))
    passed=$((passed + p))
    failed=$((failed + bad))
    if [[ $rc -ne 0 && $bad -eq 0 ]]; then
        echo "run_all: $bin exited with status $rc although no test failed" >&2
        failed=$((failed + 1))
    fi
done

status=0
if [[ $failed -ne 0 ]]; then status=1; fi
if [[ $tested -eq 0 ]]; then
    echo "run_all: no tests ran" >&2
    status=1
fi
echo "$passed passed, $failed failed"
exit $status
