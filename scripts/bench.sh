#!/usr/bin/env bash
# `make bench`: runs every `bench-*` target of the Makefile in turn (each prints its figures,
# its ratio against the peer measured in the same run, and where it recorded them).
# BENCH_ONLY="ann llm" limits the run to those targets. Long: minutes to an hour.
set -u
cd "$(dirname "$0")/.."
targets=$(grep -oE '^bench-[a-z0-9-]+:' Makefile | tr -d ':' | sort -u)
if [ -n "${BENCH_ONLY:-}" ]; then
  targets=$(for t in $BENCH_ONLY; do echo "bench-$t"; done)
fi
if [ -z "$targets" ]; then
  echo "bench: no bench-* targets yet"
  exit 0
fi
bash scripts/setup.sh --bench || exit 1
status=0
for t in $targets; do
  echo "=== make $t"
  if ! make --no-print-directory "$t"; then
    echo "!!! $t failed"
    status=1
  fi
done
exit $status
