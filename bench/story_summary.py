#!/usr/bin/env python3
"""Summarises a scripts/bench_story.sh run as markdown (used for docs/BENCHMARKS.md).

usage: story_summary.py OUT_DIR THREADS MODEL
Reads OUT_DIR/marks.txt (run windows and server counters), <run>_stats.csv (locust),
<run>.req (per-request log from bench/locustfile.py), proc.log (server RSS and CPU ticks
once a second) and sse*.json.
"""
import csv
import json
import os
import statistics
import sys

TICK = os.sysconf("SC_CLK_TCK")
TOKENS = int(os.environ.get("STORY_TOKENS", "128"))


def pct(v, p):
    if not v:
        return float("nan")
    v = sorted(v)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))]


def load_proc(path):
    out = []
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 3:
                out.append((float(p[0]), int(p[1]), int(p[2])))
    return out


def load_req(path):
    out = []
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                p = line.split()
                if len(p) in (5, 6):  # t_end_s latency_ms status ttft_ms tokens [trend_ms]
                    out.append((float(p[0]), float(p[1]), int(p[2]), float(p[3]), int(p[4]),
                                float(p[5]) if len(p) == 6 else float("nan")))
    return out


def locust_row(path):
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for r in csv.DictReader(f):
            if r["Name"] == "Aggregated":
                return r
    return None


def main():
    out, threads, model = sys.argv[1], sys.argv[2], sys.argv[3]
    proc = load_proc(os.path.join(out, "proc.log"))
    marks = {}
    with open(os.path.join(out, "marks.txt")) as f:
        for line in f:
            p = line.split()
            marks[p[0]] = dict(users=int(p[1]), t0=float(p[2]), t1=float(p[3]),
                               g0=float(p[4]), g1=float(p[5]), p0=float(p[6]), p1=float(p[7]))
    print(f"Model `{model}` (TinyLlama-1.1B shape, Q4_0, random weights), {threads} compute "
          f"threads, 20 slots, 128 tokens per story, 5 topics, random theme.\n")
    print("| users | stories | avg s | p50 s | p90 s | p95 s | p99 s | stories/s | story-equiv/s "
          "| server TTFT p50 s | generated tok/s | prompt tok/s | CPU % | peak RSS MiB | failures |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    rps, eps, cpus, trend = {}, {}, {}, []
    for name, m in marks.items():
        if not name.startswith("users"):
            continue
        req = [r for r in load_req(os.path.join(out, name + ".req")) if r[2] == 200]
        lat = [r[1] / 1000 for r in req]
        ttft = [r[3] / 1000 for r in req if r[3] >= 0]
        win = m["t1"] - m["t0"]
        # throughput: stories completed in the window / window (closed loop, in-flight lost)
        rps[m["users"]] = len(req) / win
        # throughput from the server's counters: generated tokens / window / tokens per story,
        # which also counts the stories still running when the window closes
        eps[m["users"]] = (m["g1"] - m["g0"]) / win / TOKENS
        trend += [r[5] for r in req if r[5] == r[5]]
        ps = [p for p in proc if m["t0"] <= p[0] <= m["t1"]]
        cpu = (ps[-1][2] - ps[0][2]) / TICK / (ps[-1][0] - ps[0][0]) * 100 if len(ps) > 1 else float("nan")
        rss = max(p[1] for p in ps) / 1024 if ps else float("nan")
        lr = locust_row(os.path.join(out, name + "_stats.csv"))
        fails = lr["Failure Count"] if lr else "?"
        avg = statistics.mean(lat) if lat else float("nan")
        cpus[m["users"]] = cpu
        print(f"| {m['users']} | {len(req)} | {avg:.1f} | {pct(lat, 50):.1f} | {pct(lat, 90):.1f} "
              f"| {pct(lat, 95):.1f} | {pct(lat, 99):.1f} | {rps[m['users']]:.4f} "
              f"| {eps[m['users']]:.4f} "
              f"| {pct(ttft, 50):.1f} | {(m['g1'] - m['g0']) / win:.1f} "
              f"| {(m['p1'] - m['p0']) / win:.1f} | {cpu:.0f} | {rss:.0f} | {fails} |")
    print("\nstories/s: stories completed in the window / window; story-equiv/s: generated "
          f"tokens in the window / window / {TOKENS} (counts unfinished stories too).")
    if 1 in rps and 20 in rps and rps[1] > 0:
        print(f"\nStories/s at 20 users / at 1 user: **{rps[20] / rps[1]:.2f}x**.")
    if 1 in eps and 20 in eps and eps[1] > 0:
        line = f"Story-equivalents/s at 20 users / at 1 user: **{eps[20] / eps[1]:.2f}x**"
        if cpus.get(1, 0) > 0 and cpus.get(20, 0) > 0:
            per = (eps[20] / cpus[20]) / (eps[1] / cpus[1])
            line += f"; per CPU-second of the server: **{per:.2f}x**"
        print(line + ".")
    if trend:
        print(f"\nTrend time on the request path (timings.trend_ms over {len(trend)} stories): "
              f"mean {statistics.mean(trend):.3f} ms, p99 {pct(trend, 99):.3f} ms, "
              f"max {max(trend):.3f} ms.")
    if "spike" in marks:
        m = marks["spike"]
        req = [r for r in load_req(os.path.join(out, "spike.req")) if r[2] == 200]
        base = [r[1] for r in load_req(os.path.join(out, "users5.req")) if r[2] == 200]
        base_p50 = pct(base, 50) if base else float("nan")
        hold = float(os.environ.get("SPIKE_HOLD", "0")) or None
        lat = [r[1] / 1000 for r in req]
        print(f"\nSpike (0 -> 20 users in 30 s, hold, back to 5): {len(req)} stories, "
              f"p50 {pct(lat, 50):.1f} s, p95 {pct(lat, 95):.1f} s, max {max(lat) if lat else 0:.1f} s, "
              f"failures {sum(1 for r in load_req(os.path.join(out, 'spike.req')) if r[2] != 200)}.")
        if hold is not None:
            drop = m["t0"] + 30 + hold
            ok = [r for r in sorted(req, key=lambda r: r[0] - r[1] / 1000)
                  if r[0] - r[1] / 1000 >= drop and r[1] <= 1.25 * base_p50]
            if ok:
                rec = max(0.0, ok[0][0] - ok[0][1] / 1000 - drop)
                print(f"Recovery: the first story started after the drop to 5 users that ran at "
                      f"steady-state latency (<= 1.25 x the 5-user p50 of {base_p50 / 1000:.1f} s) "
                      f"started {rec:.1f} s after the drop.")
            else:
                print("Recovery: no story after the drop ran at steady-state latency within the run.")
    if "endurance" in marks:
        m = marks["endurance"]
        ps = [p for p in proc if m["t0"] <= p[0] <= m["t1"]]
        if ps:
            n = len(ps)
            first = statistics.median(p[1] for p in ps[: max(1, n // 10)]) / 1024
            last = statistics.median(p[1] for p in ps[-max(1, n // 10):]) / 1024
            print(f"\nEndurance (5 users, {m['t1'] - m['t0']:.0f} s): RSS first tenth "
                  f"{first:.1f} MiB, last tenth {last:.1f} MiB, max {max(p[1] for p in ps) / 1024:.1f} MiB "
                  f"({(last - first):+.1f} MiB); "
                  f"{len([r for r in load_req(os.path.join(out, 'endurance.req')) if r[2] == 200])} stories.")
    for u in (1, 5):
        p = os.path.join(out, f"sse{u}.json")
        if os.path.exists(p):
            with open(p) as f:
                j = json.load(f)
            print(f"\nSSE client, {u} user(s): {j['requests']} stories, time to first token "
                  f"p50 {j['ttft_ms']['p50']} ms / p90 {j['ttft_ms']['p90']} ms, whole story p50 "
                  f"{j['latency_ms']['p50']} ms, client tokens/s p50 {j['tokens_per_s_client']}, "
                  f"errors {j['errors']}.")


if __name__ == "__main__":
    main()
