#!/bin/sh
# LLM benchmark: `trendstory generate` against llama.cpp (node-llama-cpp's prebuilt CPU
# binary, bench/peers/llama_cpp_bench.mjs) on random-weight TinyLlama-shaped models written by
# `trendstory make-model` (performance does not depend on weight values).
#
#   scripts/bench_llm.sh [--types "q4_0 q4_k_m q8_0"] [--threads "1 2"] [--prompt 512]
#                        [--gen 128] [--models DIR] [--reps 3]
#
# For each type and thread count it runs ours, then the peer, on the same file, `--reps`
# times (interleaved so both see the same machine load; each run a fresh process) and prints
# the median prompt-processing and generation tokens/s and peak RSS with the ratios
# ours / llama.cpp of those medians. Every run is bounded by a timeout and runs
# under nice. The machine is shared: treat the numbers as indicative and compare within a run.
# Results also go, one JSON object per line, to $BUILD/bench_llm.jsonl.
set -eu

BUILD=${BUILD:-build}
MODELS=var/models
TYPES="q4_0 q4_k_m q8_0"
THREADS="1 2"
NPROMPT=512
NGEN=128
REPS_RUN=3
RUN_TIMEOUT=${RUN_TIMEOUT:-600}

while [ $# -gt 0 ]; do
    case "$1" in
    --types) TYPES=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --prompt) NPROMPT=$2; shift 2 ;;
    --gen) NGEN=$2; shift 2 ;;
    --models) MODELS=$2; shift 2 ;;
    --reps) REPS_RUN=$2; shift 2 ;;
    -h | --help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench_llm: unknown argument $1" >&2; exit 2 ;;
    esac
done

PEER=bench/peers/llama_cpp_bench.mjs
if [ ! -d bench/peers/node_modules/node-llama-cpp ]; then
    echo "bench_llm: node-llama-cpp missing: (cd bench/peers && npm install)" >&2
    exit 1
fi
make --no-print-directory "$BUILD/trendstory" >/dev/null
mkdir -p "$MODELS"
OUT="$BUILD/bench_llm.jsonl"
: >"$OUT"

# The prompt: the same sentence the peer repeats (about 34 tokens), repeated to reach NPROMPT.
BASE="Once upon a time, in a small town by the sea, there lived a curious girl who loved to collect shells and tell stories about the creatures that lived inside them. "
REPS=$(( (NPROMPT + 33) / 34 ))
PROMPT=""
i=0
while [ $i -lt $REPS ]; do PROMPT="$PROMPT$BASE"; i=$((i + 1)); done

num() { # extract a number after a label from our stderr line
    sed -n "s/.*$1: \([0-9]*\) tokens in \([0-9.]*\) s (\([0-9.]*\) tok\/s).*/\3/p" "$2" | head -n 1
}
ntok() {
    sed -n "s/.*$1: \([0-9]*\) tokens in.*/\1/p" "$2" | head -n 1
}
# median of the numbers in a file, one per line ("" when there are none)
median() { sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR) print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print "-"; else printf "%.2f", a / b }'; }

printf '%-7s %3s | %9s %9s %6s | %9s %9s %6s | %8s %8s %6s\n' type thr \
    "pp ours" "pp llama" ratio "tg ours" "tg llama" ratio "rss ours" "rss lcpp" ratio
for t in $TYPES; do
    model="$MODELS/tinyllama-random-$t.gguf"
    if [ ! -f "$model" ]; then
        echo "bench_llm: writing $model" >&2
        timeout 1800 nice -n 5 "$BUILD/trendstory" make-model --shape tinyllama --type "$t" \
            -o "$model" --seed 1 >&2
    fi
    for th in $THREADS; do
        err=$(mktemp)
        tm=$(mktemp)
        acc=$(mktemp -d)
        r=1
        while [ $r -le "$REPS_RUN" ]; do
            ours_ok=1
            timeout "$RUN_TIMEOUT" nice -n 5 /usr/bin/time -f '%M' -o "$tm" "$BUILD/trendstory" \
                generate -m "$model" -p "$PROMPT" -n "$NGEN" --temp 0 --seed 1 --threads "$th" \
                --ctx $((NPROMPT + NGEN + 64)) >/dev/null 2>"$err" || ours_ok=0
            o_pp=$(num prompt "$err"); o_tg=$(num generation "$err")
            o_np=$(ntok prompt "$err"); o_ng=$(ntok generation "$err")
            o_rss=$(tail -n 1 "$tm" | awk '{ printf "%.0f", $1 / 1024 }')
            [ $ours_ok = 1 ] || { echo "bench_llm: ours failed on $t/$th:" >&2; tail -n 3 "$err" >&2; }
            peer=$(timeout "$RUN_TIMEOUT" nice -n 5 node "$PEER" "$model" --threads "$th" \
                --prompt "$NPROMPT" --gen "$NGEN" --reps 1 2>/dev/null | tail -n 1) || peer=""
            l_pp=$(echo "$peer" | sed -n 's/.*"prompt_tok_s":\([0-9.]*\).*/\1/p')
            l_tg=$(echo "$peer" | sed -n 's/.*"gen_tok_s":\([0-9.]*\).*/\1/p')
            l_rss=$(echo "$peer" | sed -n 's/.*"peak_rss_mb":\([0-9.]*\).*/\1/p')
            for v in o_pp o_tg o_rss l_pp l_tg l_rss; do
                eval "x=\${$v:-}"
                [ -z "$x" ] || echo "$x" >>"$acc/$v"
                touch "$acc/$v"
            done
            printf '{"type":"%s","threads":%s,"rep":%s,"ours":{"prompt_tokens":%s,"prompt_tok_s":%s,"gen_tokens":%s,"gen_tok_s":%s,"peak_rss_mb":%s},"llama_cpp":%s}\n' \
                "$t" "$th" "$r" "${o_np:-null}" "${o_pp:-null}" "${o_ng:-null}" "${o_tg:-null}" \
                "${o_rss:-null}" "${peer:-null}" >>"$OUT"
            r=$((r + 1))
        done
        o_pp=$(median "$acc/o_pp"); o_tg=$(median "$acc/o_tg"); o_rss=$(median "$acc/o_rss")
        l_pp=$(median "$acc/l_pp"); l_tg=$(median "$acc/l_tg"); l_rss=$(median "$acc/l_rss")
        printf '%-7s %3s | %9s %9s %6s | %9s %9s %6s | %8s %8s %6s\n' "$t" "$th" \
            "${o_pp:--}" "${l_pp:--}" "$(ratio "$o_pp" "$l_pp")" \
            "${o_tg:--}" "${l_tg:--}" "$(ratio "$o_tg" "$l_tg")" \
            "${o_rss:--}" "${l_rss:--}" "$(ratio "$o_rss" "$l_rss")"
        rm -rf "$err" "$tm" "$acc"
    done
done
echo "(medians of $REPS_RUN runs each; pp = prompt processing of $NPROMPT tokens, tg = generation" \
     "of $NGEN tokens, tok/s; rss in MB; ratio = ours / llama.cpp; one JSON line per run in $OUT)"
