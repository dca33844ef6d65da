#!/usr/bin/env bash
# The whole suite (tests/run.sh) on a busy machine: two CPU burners (plain bash busy
# loops under `nice -n 10`) keep both cores loaded while it runs, so a test that asserts
# a state that only becomes true eventually, or trusts a short deadline, fails here
# rather than on CI on a bad day (issue 13).
#
# Usage: tests/busy.sh [--runs N] [arguments for tests/run.sh, i.e. for pytest]
#   --runs N   runs the suite N times in a row (default 1), one summary line per run
#              and a total; each run's output is also kept in target/busy/run-<i>.log.
# TIDEWAY_BUSY_BURNERS overrides the number of burners (default 2, one per core here),
# TIDEWAY_BUSY_NICE their nice level (default 10; 0 competes with the tests as equals).
# Exit status: 0 only if every run passed.
#
# The burners are started here and stopped here, by their PIDs, on any exit (trap).
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
runs=1
if [ "${1:-}" = --runs ]; then
    runs="${2:-}"
    shift 2 || true
fi
case "$runs" in
    '' | *[!0-9]* | 0) echo "busy.sh: --runs needs a positive whole number, got '$runs'" >&2; exit 2 ;;
esac
count="${TIDEWAY_BUSY_BURNERS:-2}"
nice_level="${TIDEWAY_BUSY_NICE:-10}"
case "$nice_level" in
    '' | *[!0-9]*) echo "busy.sh: TIDEWAY_BUSY_NICE must be 0 to 19, got '$nice_level'" >&2; exit 2 ;;
esac
case "$count" in
    '' | *[!0-9]*) echo "busy.sh: TIDEWAY_BUSY_BURNERS must be a whole number, got '$count'" >&2; exit 2 ;;
esac
logs="$root/target/busy"
mkdir -p "$logs"

burners=()
stop_burners() {
    local pid
    for pid in "${burners[@]}"; do
        kill "$pid" 2>/dev/null
        wait "$pid" 2>/dev/null
    done
    burners=()
}
trap stop_burners EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for ((i = 0; i < count; i++)); do
    # nice execs bash, so $! is the burner itself.
    nice -n "$nice_level" bash -c 'while :; do :; done' &
    burners+=("$!")
done
echo "busy.sh: $count CPU burners at nice $nice_level (PIDs ${burners[*]}); $runs run(s) of tests/run.sh $*"

summaries=()
failed=0
for ((run = 1; run <= runs; run++)); do
    log="$logs/run-$run.log"
    started=$SECONDS
    bash "$root/tests/run.sh" "$@" 2>&1 | tee "$log"
    status=${PIPESTATUS[0]}
    took=$((SECONDS - started))
    if [ "$status" = 0 ]; then
        line="run $run/$runs: passed in ${took}s"
    else
        failed=$((failed + 1))
        # What failed: run.sh's own verdict and the first failing tests (cargo, pytest, e2e).
        why="$(grep -E '^\[run\.sh\] FAILED' "$log" | tail -n 1)"
        tests="$(grep -oE '^test [^ ]+ \.\.\. FAILED|^FAILED [^ ]+|^FAIL .*' "$log" \
            | sed -E 's/^test ([^ ]+) \.\.\. FAILED/\1/; s/^FAILED //' | head -n 3 | paste -sd ';' -)"
        line="run $run/$runs: FAILED (exit $status) after ${took}s${why:+: ${why#\[run.sh\] FAILED: }}${tests:+; first failures: $tests}"
    fi
    line="$line (log: ${log#"$root"/})"
    summaries+=("$line")
    echo "busy.sh: $line"
done

echo
echo "busy.sh: summary ($count burners at nice $nice_level)"
for line in "${summaries[@]}"; do echo "  $line"; done
echo "busy.sh: $((runs - failed)) of $runs run(s) passed"
[ "$failed" = 0 ]
