#!/usr/bin/env python3
"""Server-side breakdown for `make bench-serve`: reads two /metrics snapshots (before and after
a load run) and prints the median and p95 of each nanorec_stage_seconds stage over the run
(linear interpolation inside histogram buckets), and the answers by mode and cache outcome.

    serve_breakdown.py BEFORE.txt AFTER.txt [--markdown]
"""
import re
import sys

LINE = re.compile(r'^(\w+)(?:\{([^}]*)\})? ([0-9.eE+-]+|\+Inf|NaN)$')


def parse(path):
    series = {}
    for line in open(path):
        m = LINE.match(line.strip())
        if not m:
            continue
        name, labels, value = m.groups()
        lab = dict(re.findall(r'(\w+)="([^"]*)"', labels or ""))
        series[(name, tuple(sorted(lab.items())))] = float(value)
    return series


def stage_buckets(s, stage):
    out = []
    for (name, lab), v in s.items():
        d = dict(lab)
        if name == "nanorec_stage_seconds_bucket" and d.get("stage") == stage:
            le = float("inf") if d["le"] == "+Inf" else float(d["le"])
            out.append((le, v))
    return sorted(out)


def quantile(buckets, q):
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    want = q * total
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= want:
            if le == float("inf"):
                return prev_le
            frac = (want - prev_c) / (c - prev_c) if c > prev_c else 0
            return prev_le + frac * (le - prev_le)
        prev_le, prev_c = le, c
    return prev_le


def main():
    before, after = parse(sys.argv[1]), parse(sys.argv[2])
    md = "--markdown" in sys.argv
    stages = [("embedding", "embedding (encoder, int8)"), ("retrieval", "retrieval (HNSW top 100)"),
              ("ranking", "ranking (MLP over 100) + explanations"),
              ("compute", "total compute (cold path, on a worker)"),
              ("cache_hit", "cache hit (whole request, I/O thread)"),
              ("total", "every answer (parse to response)")]
    rows = []
    for key, label in stages:
        b, a = dict(stage_buckets(before, key)), stage_buckets(after, key)
        delta = [(le, c - b.get(le, 0.0)) for le, c in a]
        n = delta[-1][1] if delta else 0
        med, p95 = quantile(delta, 0.5), quantile(delta, 0.95)
        rows.append((label, int(n), med, p95))
    if md:
        print("| stage | count | median | p95 |")
        print("|---|---:|---:|---:|")
    for label, n, med, p95 in rows:
        f = lambda x: "-" if x is None else f"{x * 1e3:.3f} ms"
        if md:
            print(f"| {label} | {n} | {f(med)} | {f(p95)} |")
        else:
            print(f"{label:45s} n={n:8d}  median {f(med):>12s}  p95 {f(p95):>12s}")
    counts = {}
    for (name, lab), v in after.items():
        if name == "nanorec_recommend_total":
            d = dict(lab)
            k = (d["mode"], d["cache"])
            counts[k] = v - before.get((name, lab), 0.0)
    tot = sum(counts.values()) or 1
    parts = [f"{m}/{c} {int(v)} ({100 * v / tot:.1f} %)" for (m, c), v in sorted(counts.items()) if v]
    print(("\nanswers: " if not md else "\nAnswers by mode/cache: ") + ", ".join(parts))


if __name__ == "__main__":
    main()
