#!/usr/bin/env bash
# Starts both services in the background for `make run`, waits until each answers /healthz,
# prints their URLs, and stops both cleanly on Ctrl-C (SIGINT) or SIGTERM. Exits non-zero with
# the failing service's log if one does not start, or if one dies while running.
#
#   BUILD=build DATA=../shared/data scripts/run.sh
#   Environment: HOST (127.0.0.1), NANOREC_PORT (8000), TRENDSTORY_PORT (8001),
#                RUN_LOGS (folder for the services' logs, default $BUILD/run)
set -u
BUILD="${BUILD:-build}"
DATA="${DATA:-../shared/data}"
HOST="${HOST:-127.0.0.1}"
NANOREC_PORT="${NANOREC_PORT:-8000}"
TRENDSTORY_PORT="${TRENDSTORY_PORT:-8001}"
RUN_LOGS="${RUN_LOGS:-$BUILD/run}"
mkdir -p "$RUN_LOGS"

names=()
pids=()

stop_all() {
  local pid i
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for i in $(seq 100); do   # up to 10 s for a graceful stop
    local alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null; done
  wait 2>/dev/null
  pids=()
}

fail() {
  echo "run: $*" >&2
  stop_all
  exit 1
}

show_log() {
  echo "---- last lines of $RUN_LOGS/$1.log ----" >&2
  tail -n 15 "$RUN_LOGS/$1.log" >&2
  echo "----" >&2
}

trap 'echo; echo "run: stopping..."; stop_all; echo "run: stopped"; exit 0' INT TERM

# healthy PORT: true once GET /healthz answers 200
healthy() {
  if command -v curl >/dev/null 2>&1; then
    curl -fsS --max-time 1 "http://$HOST:$1/healthz" >/dev/null 2>&1
  else
    ( exec 3<>"/dev/tcp/$HOST/$1" || exit 1
      printf 'GET /healthz HTTP/1.0\r\nHost: %s\r\n\r\n' "$HOST" >&3
      IFS= read -r -t 1 line <&3 && [[ "$line" == *" 200 "* ]] ) 2>/dev/null
  fi
}

# start NAME PORT [extra serve options...]
start() {
  local name=$1 port=$2
  shift 2
  local bin="$BUILD/$name"
  [ -x "$bin" ] || fail "$bin is missing: build it first (make)"
  "$bin" serve --host "$HOST" --port "$port" --web "web/$name" "$@" \
    >"$RUN_LOGS/$name.out" 2>"$RUN_LOGS/$name.log" &
  pids+=($!)
  names+=("$name")
  local pid=$! i
  for i in $(seq 150); do   # up to 15 s
    if ! kill -0 "$pid" 2>/dev/null; then
      show_log "$name"
      fail "$name did not start (see $RUN_LOGS/$name.log above)"
    fi
    healthy "$port" && return 0
    sleep 0.1
  done
  show_log "$name"
  fail "$name did not answer http://$HOST:$port/healthz within 15 s"
}

# Pass a model to trendstory once `trendstory serve` accepts --model.
ts_args=()
ts_model="$DATA/models/gguf/stories260K.gguf"
if "$BUILD/trendstory" serve --help 2>&1 | grep -q -- '--model'; then
  if [ -f "$ts_model" ]; then
    ts_args+=(--model "$ts_model")
  else
    echo "run: note: $ts_model not found; trendstory starts without a model (see /readyz)" >&2
  fi
fi

start nanorec "$NANOREC_PORT"
start trendstory "$TRENDSTORY_PORT" "${ts_args[@]}"

ready_note() {
  local body
  if command -v curl >/dev/null 2>&1; then
    body=$(curl -s --max-time 1 "http://$HOST:$1/readyz")
    case "$body" in
      *'"ready":true'*) echo "ready" ;;
      *) echo "not ready: $(echo "$body" | sed -E 's/.*"missing":\[(.*)\].*/\1/')" ;;
    esac
  fi
}

echo
echo "  nanorec     http://$HOST:$NANOREC_PORT/    $(ready_note "$NANOREC_PORT")"
echo "  trendstory  http://$HOST:$TRENDSTORY_PORT/    $(ready_note "$TRENDSTORY_PORT")"
echo
echo "  logs in $RUN_LOGS/; press Ctrl-C to stop both."

# Wait; if either service exits on its own, report it and stop the other.
while :; do
  wait -n "${pids[@]}" 2>/dev/null
  for i in "${!pids[@]}"; do
    if ! kill -0 "${pids[$i]}" 2>/dev/null; then
      show_log "${names[$i]}"
      fail "${names[$i]} exited unexpectedly"
    fi
  done
done
