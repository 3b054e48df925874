#!/usr/bin/env bash
# make bench-serve: load test of nanorec's POST /recommend with the reference's mix (70 % of
# requests for users 1-1000, 30 % for other users, k = 10), wrk on the same machine.
#  1. builds the benchmark artifact set if missing (bench/rec_synth: ml-20m's 27,278 movies,
#     20,000 synthetic users, an encoder of the reference's size, HNSW index);
#  2. starts `nanorec serve` (SERVE_ARGS: by default 2 workers at nice 10, 2 I/O threads),
#     warms the cache for users 1-1000;
#  3. runs wrk for DURATION seconds per configuration (in-process cache, then Redis if
#     redis-server exists), reads /metrics before and after for the server-side breakdown;
#  4. writes var/bench-serve/results.md and the latency plot docs/img/nanorec_serve_latency.png.
#   BUILD=build DATA=../shared/data DURATION=30 CONNECTIONS=16 scripts/bench_serve.sh
# SERVE_ARGS overrides the server layout ("--workers 2 --threads 2 --worker-nice 10": with wrk
# on the same two cores, niced workers let the I/O thread answer cache hits first).
set -euo pipefail
BUILD="${BUILD:-build}"
DATA="${DATA:-../shared/data}"
DURATION="${DURATION:-30}"
CONNECTIONS="${CONNECTIONS:-16}"
PORT="${PORT:-18231}"
SERVE_ARGS="${SERVE_ARGS:---workers 2 --threads 2 --worker-nice 10}"
LOAD_BEFORE="$(cut -d" " -f1-3 /proc/loadavg)"
OUTD=var/bench-serve
ART="$OUTD/artifacts"
mkdir -p "$OUTD" docs/img
command -v wrk >/dev/null || { echo "bench-serve: wrk is missing (apt-get install wrk)" >&2; exit 1; }
if [ ! -f "$ART/index.gguf" ]; then
  echo "bench-serve: building the benchmark artifacts in $ART"
  "$BUILD/bench/rec_synth" --out "$ART" --movies "$DATA/movielens/ml-20m-metadata/movies.csv"
fi
srv=""
redis_pid=""
cleanup() {
  [ -n "$srv" ] && kill -TERM "$srv" 2>/dev/null && wait "$srv" 2>/dev/null || true
  [ -n "$redis_pid" ] && kill -TERM "$redis_pid" 2>/dev/null || true
}
trap cleanup EXIT

start_server() { # extra args...
  rm -f "$OUTD/events.log"
  NR_LOG=warn "$BUILD/nanorec" serve --artifacts "$ART" --port "$PORT" $SERVE_ARGS \
    --queue 1024 --events "$OUTD/events.log" "$@" >"$OUTD/server.out" 2>"$OUTD/server.log" &
  srv=$!
  for _ in $(seq 100); do
    grep -q listening "$OUTD/server.out" 2>/dev/null && break
    sleep 0.1
  done
  curl -fsS "http://127.0.0.1:$PORT/readyz" >/dev/null || { cat "$OUTD/server.log"; exit 1; }
}

stop_server() {
  kill -TERM "$srv" 2>/dev/null || true
  wait "$srv" 2>/dev/null || true
  srv=""
}

run_one() { # label
  local label=$1
  # warm the cache for the hot users (1..1000) and the pages of the model
  wrk -t2 -c4 -d"${WARM:-12}s" -s bench/wrk_warm.lua "http://127.0.0.1:$PORT" >/dev/null
  curl -s "http://127.0.0.1:$PORT/metrics" >"$OUTD/metrics_before_$label.txt"
  LAT_OUT="$OUTD/latency_$label.txt" wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -s bench/wrk_recommend.lua "http://127.0.0.1:$PORT" | tee "$OUTD/wrk_$label.txt"
  curl -s "http://127.0.0.1:$PORT/metrics" >"$OUTD/metrics_after_$label.txt"
  python3 bench/serve_breakdown.py "$OUTD/metrics_before_$label.txt" \
    "$OUTD/metrics_after_$label.txt" | tee "$OUTD/breakdown_$label.txt"
  python3 bench/serve_breakdown.py "$OUTD/metrics_before_$label.txt" \
    "$OUTD/metrics_after_$label.txt" --markdown >"$OUTD/breakdown_$label.md"
}

echo "== in-process cache, $CONNECTIONS connections, ${DURATION} s"
start_server
run_one local
stop_server
labels=(local)
if command -v redis-server >/dev/null; then
  rport=$((PORT + 1))
  redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  redis_pid=$!
  sleep 0.5
  echo "== Redis cache (127.0.0.1:$rport), $CONNECTIONS connections, ${DURATION} s"
  start_server --redis "redis://127.0.0.1:$rport"
  run_one redis
  stop_server
  kill -TERM "$redis_pid" 2>/dev/null || true
  redis_pid=""
  labels+=(redis)
fi

# latency plot: client-side percentiles of each run
plot="plot "
for l in "${labels[@]}"; do
  plot+="'$OUTD/latency_$l.txt' using 1:2 with linespoints title '$l cache',"
done
gnuplot <<GP
set terminal pngcairo size 900,500
set output 'docs/img/nanorec_serve_latency.png'
set title "nanorec POST /recommend latency under load (wrk, $CONNECTIONS connections, 70 % hot users)"
set xlabel "percentile"
set ylabel "latency (ms)"
set logscale y
set grid
set key left top
${plot%,}
GP
{
  echo "## nanorec serve load test ($(date -u +%F), $(nproc) cores, ${DURATION} s per run)"
  echo "server: nanorec serve $SERVE_ARGS; load average before: ${LOAD_BEFORE:-$(cut -d' ' -f1-3 /proc/loadavg)}"
  for l in "${labels[@]}"; do
    echo
    echo "### $l cache"
    echo '```'
    grep -E "Requests/sec|Latency|50%|90%|99%|errors|requests in" "$OUTD/wrk_$l.txt"
    echo '```'
    cat "$OUTD/breakdown_$l.md"
  done
} >"$OUTD/results.md"
echo "bench-serve: results in $OUTD/results.md, plot docs/img/nanorec_serve_latency.png"
