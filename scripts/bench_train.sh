#!/usr/bin/env bash
# nanorec training benchmark (docs/BENCHMARKS.md "nanorec training"): the SASRec-style user
# encoder on ML-1M (SASRec's preprocessing, 3,416 items), full-ranking leave-one-out test,
# trained for a wall-clock budget with the cosine decay planned over that budget.
#   scripts/bench_train.sh [extra `nanorec train encoder` options, e.g. --dim 256 --epochs 3]
# Environment: DATA (../shared/data), BUILD (build), TRAIN_BUDGET seconds of training (1800),
# TRAIN_THREADS (2), TRAIN_OUT (results folder, default $BUILD/bench-train), TRAIN_TIMEOUT
# (hard limit, default budget + 900 s). Prints validation per epoch, then test HR@10/NDCG@10,
# the throughput over whole steps next to the sgemm peak measured in the same run, and scores
# the exported encoder again with `nanorec eval`. Run it at normal priority under the shared
# lock for recorded numbers: `flock /work/bench.lock scripts/bench_train.sh`.
set -euo pipefail
BUILD="${BUILD:-build}"
DATA="${DATA:-../shared/data}"
budget="${TRAIN_BUDGET:-1800}"
threads="${TRAIN_THREADS:-2}"
out="${TRAIN_OUT:-$BUILD/bench-train}"
to="${TRAIN_TIMEOUT:-$((budget + 900))}"
src="$DATA/movielens/ml-1m-sasrec"
if [ ! -d "$src" ]; then
  echo "bench_train: $src is missing (see ../shared/data/README.md)" >&2
  exit 1
fi
# OpenBLAS 0.3.21 does not recognise recent AVX-512 CPUs and would fall back to AVX2 kernels
if [ -z "${OPENBLAS_CORETYPE:-}" ] && grep -q avx512f /proc/cpuinfo; then
  export OPENBLAS_CORETYPE=SkylakeX
fi
mkdir -p "$out"
"$BUILD/nanorec" data prepare --movielens "$src" --out "$out/ml1m" >/dev/null
echo "== uptime before the run: $(uptime)"
rm -rf "$out/run"
# the recorded configuration (docs/BENCHMARKS.md): defaults but lr 2e-3, the budget, and
# per-epoch validation on 1,000 evenly spaced users (the final numbers use all 6,040)
set -x
timeout "$to" "$BUILD/nanorec" train encoder --data "$out/ml1m" --out "$out/run" \
  --threads "$threads" --lr 2e-3 --time-budget "$budget" --eval-users 1000 --quiet "$@" \
  | tee "$out/train.txt"
timeout 600 "$BUILD/nanorec" eval --data "$out/ml1m" --model "$out/run/encoder.gguf" \
  --threads "$threads" | tee "$out/eval.txt"
set +x
echo "== curves: $out/run/valid.tsv, $out/run/loss.tsv, $out/run/valid.png, $out/run/loss.png"
