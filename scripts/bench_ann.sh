#!/usr/bin/env bash
# Vector search benchmark: ours (build/bench/bench_ann) against FAISS (python3-faiss) on the
# same vectors and queries, in the same run; then our/FAISS ratios and plots.
#   scripts/bench_ann.sh [27k|3m]
# Environment: ANN_ITEMS=file (trained item embeddings, GGUF or raw f32; else synthetic),
# ANN_TENSOR=name, ANN_THREADS (2), ANN_OUT (results folder, default $BUILD/bench-ann-SET),
# ANN_TIMEOUT seconds per side (default 1800), ANN_HNSW=0|1,
# ANN_SIDES="ours faiss" (run one side again against the other's earlier results),
# ANN_FAISS_RESUME=1 (keep faiss.tsv and run only the FAISS configurations it lacks),
# ANN_ONLY=flat,ivf_sq8,ivf_pq,hnsw (run only these families on the chosen sides, appending to
# the tsv files: a long run split into parts, each under its own lock hold).
# Vectors, queries and ground truth: one file both sides memory-map, $ANN_OUT/data.bin for
# 27k (removed at the end unless ANN_KEEP_DATA=1), var/ann-3m/data.bin for 3m (3.1 GB, kept
# and reused by later runs: generated once, deterministic by seed).
# Both sides run at the caller's priority (run it under `flock /work/bench.lock`), one after
# the other, never at the same time (memory: at most one 3.1 GB private copy at once).
# Results: $ANN_OUT/{ours,faiss}.tsv, compare.md, and docs/img/ann_<set>.png (ANN_PLOT=file;
# with ANN_ONLY the plot goes to $ANN_OUT).
set -euo pipefail
set_name="${1:-27k}"
BUILD="${BUILD:-build}"
out="${ANN_OUT:-$BUILD/bench-ann-$set_name}"
threads="${ANN_THREADS:-2}"
to="${ANN_TIMEOUT:-1800}"
py=/usr/bin/python3
mkdir -p "$out" docs/img
if ! $py -c 'import faiss, numpy' 2>/dev/null; then
  scripts/setup.sh --bench
fi
if [ "$set_name" = "3m" ]; then
  data="${ANN_DATA:-var/ann-3m/data.bin}"
else
  data="${ANN_DATA:-$out/data.bin}"
fi
mkdir -p "$(dirname "$data")"
args=(--set "$set_name" --out "$out" --threads "$threads" --data "$data")
[ -n "${ANN_ITEMS:-}" ] && args+=(--items "$ANN_ITEMS")
[ -n "${ANN_TENSOR:-}" ] && args+=(--tensor "$ANN_TENSOR")
[ -n "${ANN_HNSW:-}" ] && args+=(--hnsw "$ANN_HNSW")
[ -n "${ANN_ONLY:-}" ] && args+=(--only "$ANN_ONLY")
sides="${ANN_SIDES:-ours faiss}"
# a partial run replaces the rows of its families on the sides it runs
if [ -n "${ANN_ONLY:-}" ]; then
  for side in $sides; do
    f="$out/$side.tsv"
    if [ -f "$f" ]; then
      awk -F'\t' -v only=",$ANN_ONLY," 'NR == 1 || index(only, "," $6 ",") == 0' "$f" > "$f.tmp"
      mv "$f.tmp" "$f"
    fi
  done
fi
if [[ " $sides " == *" ours "* ]] || [ ! -f "$data" ]; then
  echo "== ours: $BUILD/bench/bench_ann ${args[*]}"
  timeout "$to" "$BUILD/bench/bench_ann" "${args[@]}"
fi
fargs=(--dir "$out" --set "$set_name" --threads "$threads" --data "$data")
[ -n "${ANN_HNSW:-}" ] && fargs+=(--hnsw "$ANN_HNSW")
[ -n "${ANN_FAISS_RESUME:-}" ] && fargs+=(--resume)
[ -n "${ANN_ONLY:-}" ] && fargs+=(--only "$ANN_ONLY")
if [[ " $sides " == *" faiss "* ]]; then
  echo "== FAISS: bench/peers/faiss_bench.py ${fargs[*]}"
  timeout "$to" $py bench/peers/faiss_bench.py "${fargs[@]}" || echo "FAISS side stopped (status $?)"
fi
$py bench/ann_compare.py "$out" | tee "$out/compare.md"
# the documented figure is docs/img/ann_<set>.png; a partial run (ANN_ONLY) plots into $out
plot="${ANN_PLOT:-docs/img/ann_$set_name.png}"
[ -n "${ANN_ONLY:-}" ] && [ -z "${ANN_PLOT:-}" ] && plot="$out/ann_$set_name.png"
if gnuplot -e "dir='$out'; set='$set_name'; out='$plot'" bench/ann_plot.gp; then
  echo "== plot: $plot; tables: $out/compare.md"
elif [ -n "${ANN_ONLY:-}" ]; then
  # a partial run into a fresh folder can leave a panel of the figure with no data
  echo "== no plot (partial run: a panel has no data); tables: $out/compare.md"
else
  echo "bench-ann: gnuplot failed on $out (see above)" >&2
  exit 1
fi
# the 27k data file is rebuilt in seconds: keep it only on request; the 3m one is kept
if [ "$set_name" != "3m" ] && [ -z "${ANN_KEEP_DATA:-}" ] && [ -z "${ANN_DATA:-}" ]; then
  rm -f "$data"
fi
