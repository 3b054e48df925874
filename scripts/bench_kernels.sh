#!/bin/sh
# Builds and runs the kernel benchmark (bench/bench_kernels.c) under nice, bounded in time.
#   scripts/bench_kernels.sh [bench_kernels options]   e.g. --threads 1 --types q4_0,q8_0
set -eu
BUILD=${BUILD:-build}
make --no-print-directory "$BUILD/libnr.a" >/dev/null
cc -O2 -g -std=c17 -D_GNU_SOURCE -pthread -Isrc bench/bench_kernels.c "$BUILD/libnr.a" -lm \
   -pthread -o "$BUILD/bench_kernels"
exec timeout 900 nice -n 5 "$BUILD/bench_kernels" "$@"
