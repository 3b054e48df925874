#!/usr/bin/env bash
# `make bench-story`: trendstory load scenarios with locust (the reference's tool) against a
# TinyLlama-shaped Q4_0 model with random weights (`trendstory make-model`), 128 generated
# tokens per story, topics from the fixture server (bench/fixture_server.py; never the
# internet) warmed into the cache before measuring.
#
#   1. the table: 1, 5, 10 and 20 closed-loop users (avg, p90, p95, p99 latency, requests/s,
#      server CPU and peak RSS, time to first token, generated tokens/s)
#   2. steady: the 5-user row
#   3. spike: 0 -> 20 users in 30 s, hold, back to 5 users; recovery time
#   4. endurance (shortened): 5 users, resident memory sampled every second
#   5. time to first token as an SSE client sees it (bench/sse_ttft.py), 1 and 5 users
#
# Results go to $OUT (default var/bench/story): locust CSVs, per-request logs, /proc samples,
# summary.md. Durations are bounded (about 40 minutes in all by default); scale them with
# BENCH_SCALE=0.5 etc. The server runs at normal priority, everything else under `nice`.
#
# Environment: BUILD, DATA, OUT, BENCH_MODEL, BENCH_THREADS (2), BENCH_SCALE (1),
#              BENCH_USERS ("1 5 10 20"), BENCH_SKIP ("" or e.g. "spike endurance sse"),
#              BENCH_SECS (e.g. "1=120 20=420": seconds of those user runs, not scaled),
#              BENCH_SERVE_ARGS (more `trendstory serve` options, e.g. "--prompt-cache 0")
set -euo pipefail
BUILD="${BUILD:-build}"
DATA="${DATA:-../shared/data}"
OUT="${OUT:-var/bench/story}"
MODEL="${BENCH_MODEL:-var/bench/tinyllama-shape-q4_0.gguf}"
THREADS="${BENCH_THREADS:-2}"
SCALE="${BENCH_SCALE:-1}"
USERS="${BENCH_USERS:-1 5 10 20}"
SKIP="${BENCH_SKIP:-}"
TOKENS=128
mkdir -p "$OUT" "$(dirname "$MODEL")"

dur() { python3 -c "print(max(10, int($1 * $SCALE)))"; }
skipped() { [[ " $SKIP " == *" $1 "* ]]; }

command -v locust >/dev/null || { echo "bench-story: locust is missing: apt-get install python3-locust" >&2; exit 1; }
[ -x "$BUILD/trendstory" ] || { echo "bench-story: build first (make)" >&2; exit 1; }
if [ ! -f "$MODEL" ]; then
  echo "bench-story: writing $MODEL (TinyLlama-1.1B shape, q4_0, random weights)"
  nice "$BUILD/trendstory" make-model --shape tinyllama --type q4_0 -o "$MODEL"
fi

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

# fixture server for the trend sources
python3 bench/fixture_server.py "$DATA/trends" 0 >"$OUT/fixture.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do grep -q "fixture on" "$OUT/fixture.log" 2>/dev/null && break; sleep 0.1; done
FX=$(sed -n 's/^fixture on //p' "$OUT/fixture.log")
[ -n "$FX" ] || { echo "bench-story: fixture server did not start" >&2; exit 1; }

# the service: 20 slots (the most users), a queue for the rest, 128-token cap
export TRENDSTORY_HN_URL="$FX" TRENDSTORY_GOOGLE_TRENDS_URL="$FX" TRENDSTORY_WIKIMEDIA_URL="$FX"
# the measured server runs at normal priority (run the script under /work/bench.lock, see
# docs/BENCHMARKS.md); the load generator, the fixture server and the model writer stay
# under nice
"$BUILD/trendstory" serve --port 0 --model "$MODEL" --template zephyr --threads "$THREADS" \
  --max-batch 20 --queue 64 --max-tokens "$TOKENS" --prefetch hackernews ${BENCH_SERVE_ARGS:-} \
  >"$OUT/serve.out" 2>"$OUT/serve.log" &
SRV=$!
pids+=($SRV)
for _ in $(seq 300); do grep -q "listening on" "$OUT/serve.out" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/^trendstory listening on //p' "$OUT/serve.out" | sed 's:/$::')
[ -n "$URL" ] || { echo "bench-story: trendstory did not start:" >&2; cat "$OUT/serve.log" >&2; exit 1; }
echo "bench-story: $URL (pid $SRV), fixture $FX, model $MODEL, $THREADS threads"

metric() { curl -s "$URL/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
# warm: topics cached, every theme's prefix KV computed
curl -sf "$URL/v1/trends?source=hackernews&limit=5" >/dev/null || sleep 2
curl -sf "$URL/v1/trends?source=hackernews&limit=5" >/dev/null
echo -n "bench-story: computing the 7 theme prefixes"
for _ in $(seq 900); do [ "$(metric story_prefixes_ready)" = "7" ] && break; echo -n .; sleep 1; done
echo " done"

# /proc sampler: time, RSS (kB), utime+stime (ticks) of the server, once a second
( while kill -0 "$SRV" 2>/dev/null; do
    echo "$(date +%s.%N) $(awk '/VmRSS/ {print $2}' /proc/$SRV/status) $(awk '{print $14 + $15}' /proc/$SRV/stat)"
    sleep 1
  done ) >"$OUT/proc.log" &
pids+=($!)

marks="$OUT/marks.txt"
: >"$marks"
# run NAME USERS SECONDS [env...]: one locust run; records its window and server counters
run() {
  local name=$1 u=$2 secs=$3
  shift 3
  local g0 p0 t0
  g0=$(metric story_generated_tokens_total); p0=$(metric story_prompt_tokens_prefilled_total)
  t0=$(date +%s.%N)
  rm -f "$OUT/$name.req"
  echo "bench-story: $name: $u users, ${secs} s"
  local shape=(-u "$u" -r "$u" -t "${secs}s")
  [[ " $* " == *" SHAPE=spike "* ]] && shape=() # the shape class drives users and time
  env REQLOG="$OUT/$name.req" STORY_TOKENS=$TOKENS "$@" nice locust -f bench/locustfile.py \
    --headless "${shape[@]}" --host "$URL" --csv "$OUT/$name" \
    --only-summary --loglevel WARNING >"$OUT/$name.locust.log" 2>&1 || true
  echo "$name $u $t0 $(date +%s.%N) $g0 $(metric story_generated_tokens_total) $p0 $(metric story_prompt_tokens_prefilled_total)" >>"$marks"
  # let cancelled generations drain before the next run
  for _ in $(seq 60); do [ "$(metric story_running)" = "0" ] && break; sleep 1; done
}

declare -A base_secs=([1]=150 [5]=240 [10]=360 [20]=600)
declare -A fixed_secs=()
for kv in ${BENCH_SECS:-}; do fixed_secs[${kv%%=*}]=${kv#*=}; done
for u in $USERS; do run "users$u" "$u" "${fixed_secs[$u]:-$(dur "${base_secs[$u]:-300}")}"; done
if ! skipped spike; then
  hold=$(dur 60); post=$(dur 150)
  run spike 20 $((30 + hold + post)) SHAPE=spike SPIKE_HOLD="$hold" SPIKE_POST="$post"
fi
skipped endurance || run endurance 5 "$(dur 360)"
if ! skipped sse; then
  echo "bench-story: SSE time to first token, 1 then 5 users"
  nice python3 bench/sse_ttft.py "$URL" 1 "$(dur 120)" $TOKENS >"$OUT/sse1.json"
  nice python3 bench/sse_ttft.py "$URL" 5 "$(dur 200)" $TOKENS >"$OUT/sse5.json"
fi
curl -s "$URL/metrics" >"$OUT/metrics.txt"
echo "bench-story: prompt cache lookups (hit, miss): $(awk '/^story_prompt_cache_lookups_total/ {printf "%s ", $2}' "$OUT/metrics.txt")"
SPIKE_HOLD="${hold:-0}" python3 bench/story_summary.py "$OUT" "$THREADS" "$MODEL" | tee "$OUT/summary.md"
