#!/usr/bin/env bash
# Builds a small nanorec artifact set for `make run` when none exists: prepares
# ml-latest-small, trains a small encoder (about a minute or two), trains a small ranker,
# exports the int8 encoder, item table and HNSW index. Prints progress; idempotent.
#
#   BUILD=build DATA=../shared/data scripts/nanorec_artifacts.sh [OUT]
#   OUT defaults to $NANOREC_ARTIFACTS or var/nanorec/artifacts (git-ignored).
#   TRAIN_SECONDS (90) bounds the encoder's training time.
set -euo pipefail
BUILD="${BUILD:-build}"
DATA="${DATA:-../shared/data}"
OUT="${1:-${NANOREC_ARTIFACTS:-var/nanorec/artifacts}}"
TRAIN_SECONDS="${TRAIN_SECONDS:-60}"
NR="$BUILD/nanorec"
WORK="$(dirname "$OUT")/work"

have_all=1
for f in dataset encoder_q8 items index ranker; do
  [ -f "$OUT/$f.gguf" ] || have_all=0
done
if [ "$have_all" = 1 ]; then
  echo "nanorec: artifacts in $OUT (delete the folder to rebuild them)"
  exit 0
fi
[ -x "$NR" ] || { echo "nanorec: $NR is missing: run make first" >&2; exit 1; }
SRC="$DATA/movielens/ml-latest-small"
[ -f "$SRC/ratings.csv" ] || { echo "nanorec: $SRC/ratings.csv not found (set DATA=...)" >&2; exit 1; }
mkdir -p "$WORK"
export OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-$(grep -q avx512f /proc/cpuinfo && echo SkylakeX || true)}"
[ -n "$OPENBLAS_CORETYPE" ] || unset OPENBLAS_CORETYPE
t0=$(date +%s)
echo "nanorec [1/4] preparing $SRC"
"$NR" data prepare --movielens "$SRC" --out "$WORK/data" --quiet
echo "nanorec [2/4] training a small encoder (dim 64, 2 layers, max_len 50, in-batch InfoNCE;" \
  "about ${TRAIN_SECONDS} s)"
"$NR" train encoder --data "$WORK/data" --out "$WORK/encoder" --dim 64 --layers 2 --heads 2 \
  --ffn 256 --max-len 50 --loss infonce --batch 64 --warmup 20 --lr 0.002 --epochs 200 \
  --time-budget "$TRAIN_SECONDS" --eval-every 5 --eval-users 300 --threads 2 --quiet \
  | grep -E "^(valid|test|wrote)" || true
[ -f "$WORK/encoder/encoder.gguf" ] || { echo "nanorec: encoder training failed" >&2; exit 1; }
echo "nanorec [3/4] training a small ranker"
"$NR" train ranker --data "$WORK/data" --encoder "$WORK/encoder/encoder.gguf" \
  --out "$WORK/ranker" --epochs 2 --hidden 128,64,32 --threads 2 2>/dev/null \
  | grep -E "HR@10|written" || true
[ -f "$WORK/ranker/ranker.gguf" ] || { echo "nanorec: ranker training failed" >&2; exit 1; }
echo "nanorec [4/4] exporting the int8 encoder, item table and HNSW index to $OUT"
"$NR" export --data "$WORK/data" --encoder "$WORK/encoder/encoder.gguf" \
  --ranker "$WORK/ranker/ranker.gguf" --out "$OUT" --index hnsw --threads 2
echo "nanorec: artifacts ready in $OUT ($(( $(date +%s) - t0 )) s)"
