#!/usr/bin/env bash
# Runs each test binary given on the command line, prints its output, and ends with one line
# summed over all of them:  N passed, N failed, N skipped
# A binary counts its own tests (cmocka's summary, or a plain "N passed, N failed" line).
# A binary that dies without a summary counts as one failure. Exit status is 1 if anything
# failed. TEST_TIMEOUT (seconds, default 600) bounds each binary.
set -u
export DATA="${DATA:-../shared/data}"
export BUILD="${BUILD:-build}"
timeout_s="${TEST_TIMEOUT:-600}"
tp=0; tf=0; ts=0
failed_bins=()
for bin in "$@"; do
  name=$(basename "$bin")
  echo "=== $name"
  log=$(mktemp)
  start=$(date +%s%N)
  timeout --kill-after=10 "$timeout_s" "$bin" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s).*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  s=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test(s).*/\1/p' "$log" | awk '{s+=$1} END {print s+0}')
  # Plain summary lines ("[word:] N passed, N failed[, N skipped]") from non-cmocka binaries.
  if ! grep -q '^\[==========\]' "$log"; then
    line=$(grep -E '^([A-Za-z_-]+: )?[0-9]+ passed, [0-9]+ failed(, [0-9]+ skipped)?$' "$log" | tail -1)
    if [ -n "$line" ]; then
      p=$(echo "$line" | sed -E 's/^([A-Za-z_-]+: )?([0-9]+) passed.*/\2/')
      f=$(echo "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')
      s=$(echo "$line" | sed -nE 's/.* ([0-9]+) skipped$/\1/p'); s=${s:-0}
    fi
  fi
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    echo "!!! $name exited with status $rc without reporting a failed test: counted as 1 failure"
    f=1
  fi
  [ "$f" -gt 0 ] && failed_bins+=("$name")
  printf '=== %s: %d passed, %d failed, %d skipped (%d.%01d s)\n' "$name" "$p" "$f" "$s" $((ms / 1000)) $((ms % 1000 / 100))
  tp=$((tp + p)); tf=$((tf + f)); ts=$((ts + s))
  rm -f "$log"
done
echo
[ ${#failed_bins[@]} -gt 0 ] && echo "failing binaries: ${failed_bins[*]}"
echo "$tp passed, $tf failed, $ts skipped"
[ "$tf" -eq 0 ]
