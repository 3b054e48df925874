#!/usr/bin/env bash
# Vector search benchmark: ours (build/bench/bench_ann) against FAISS (python3-faiss) on the
# same vectors and queries, in the same run; then our/FAISS ratios and plots.
#   scripts/bench_ann.sh [27k|3m]
# Environment: ANN_ITEMS=file (trained item embeddings, GGUF or raw f32; else synthetic),
# ANN_TENSOR=name, ANN_THREADS (2), ANN_OUT (results folder, default $BUILD/bench-ann-SET),
# ANN_TIMEOUT seconds per side (default 1800 for 27k, 1200 for 3m), ANN_HNSW=0|1,
# ANN_SIDES="ours faiss" (run one side again against the other's earlier results),
# ANN_FAISS_RESUME=1 (keep faiss.tsv and run only the FAISS configurations it lacks).
# Results: $ANN_OUT/{ours,faiss}.tsv, compare.md, and docs/img/ann_<set>.png.
set -euo pipefail
set_name="${1:-27k}"
BUILD="${BUILD:-build}"
out="${ANN_OUT:-$BUILD/bench-ann-$set_name}"
threads="${ANN_THREADS:-2}"
if [ "$set_name" = "3m" ]; then to="${ANN_TIMEOUT:-1200}"; else to="${ANN_TIMEOUT:-1800}"; fi
py=/usr/bin/python3
mkdir -p "$out" docs/img
if ! $py -c 'import faiss, numpy' 2>/dev/null; then
  scripts/setup.sh --bench
fi
args=(--set "$set_name" --out "$out" --threads "$threads")
[ -n "${ANN_ITEMS:-}" ] && args+=(--items "$ANN_ITEMS")
[ -n "${ANN_TENSOR:-}" ] && args+=(--tensor "$ANN_TENSOR")
[ -n "${ANN_HNSW:-}" ] && args+=(--hnsw "$ANN_HNSW")
sides="${ANN_SIDES:-ours faiss}"
if [[ " $sides " == *" ours "* ]] || [ ! -f "$out/data.bin" ]; then
  echo "== ours: $BUILD/bench/bench_ann ${args[*]}"
  timeout "$to" nice "$BUILD/bench/bench_ann" "${args[@]}"
fi
fargs=(--dir "$out" --set "$set_name" --threads "$threads")
[ -n "${ANN_HNSW:-}" ] && fargs+=(--hnsw "$ANN_HNSW")
[ -n "${ANN_FAISS_RESUME:-}" ] && fargs+=(--resume)
if [[ " $sides " == *" faiss "* ]]; then
  echo "== FAISS: bench/peers/faiss_bench.py ${fargs[*]}"
  timeout "$to" nice $py bench/peers/faiss_bench.py "${fargs[@]}" || echo "FAISS side stopped (status $?)"
fi
$py bench/ann_compare.py "$out" | tee "$out/compare.md"
gnuplot -e "dir='$out'; set='$set_name'; out='docs/img/ann_$set_name.png'" bench/ann_plot.gp
echo "== plot: docs/img/ann_$set_name.png; tables: $out/compare.md"
# the data file holds a copy of the vectors (3 GB at 3m): keep it only on request
[ -n "${ANN_KEEP_DATA:-}" ] || rm -f "$out/data.bin"
