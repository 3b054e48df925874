#!/usr/bin/env python3
"""Compares DIR/ours.tsv with DIR/faiss.tsv (written by bench_ann and faiss_bench.py in the
same run): prints markdown tables with our/FAISS ratios and writes gnuplot data files to
DIR/plot/ (one per system and configuration: recall, median latency).

  python3 bench/ann_compare.py DIR
"""
import csv
import os
import sys


def read(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    for r in rows:
        for key in ("recall", "lat_med_us", "lat_p99_us", "qps", "bytes_per_vec", "build_s"):
            r[key] = float(r[key])
        r["param"] = int(r["param"])
    return rows


def read_env(path):
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return {r["key"]: r["value"] for r in csv.DictReader(f, delimiter="\t")}


def best_at(rows, recall, max_bpv=None):
    """Smallest median latency among rows reaching `recall` (and within max_bpv)."""
    c = [r for r in rows if r["recall"] >= recall - 1e-9 and
         (max_bpv is None or r["bytes_per_vec"] <= max_bpv + 1e-9)]
    return min(c, key=lambda r: r["lat_med_us"]) if c else None


def fmt_param(r):
    if r["family"] in ("ivf_sq8", "ivf_pq", "ivf_flat"):
        return f"nprobe {r['param']}"
    if r["family"] == "hnsw":
        return f"ef {r['param']}"
    return "-"


def main():
    d = sys.argv[1]
    ours, faiss = read(f"{d}/ours.tsv"), read(f"{d}/faiss.tsv")
    env, fenv = read_env(f"{d}/env.tsv"), read_env(f"{d}/faiss_env.tsv")
    if not ours:
        sys.exit(f"{d}/ours.tsv: no results")
    setname = ours[0]["set"]
    print(f"### Set {setname}: {ours[0]['n']} x {ours[0]['dim']} ({env.get('source', '?')}), "
          f"{env.get('nq', '?')} queries, k = {env.get('k', '?')}\n")
    if env:
        flat = [r for r in ours if r["family"] == "flat"]
        fflat = [r for r in faiss if r["family"] == "flat"]
        bound = float(env["flat_bound_us"])
        med_bw = env.get("bandwidth_median_gbs")
        line = (f"Memory bandwidth (one thread, streaming read of 1 GiB, measured in this run): "
                f"{env['bandwidth_gbs']} GB/s best pass" +
                (f", {med_bw} GB/s median pass" if med_bw else "") +
                f"; exact scan of {float(env['flat_bytes']) / 1e6:.1f} MB bounded at {bound:.0f} us")
        if flat:
            line += (f"; our exact search {flat[0]['lat_med_us']:.0f} us median = "
                     f"{flat[0]['lat_med_us'] / bound:.2f} x the bound (goal <= 1.2)")
        if fflat:
            line += (f"; FAISS FlatIP {fflat[0]['lat_med_us']:.0f} us = "
                     f"{fflat[0]['lat_med_us'] / bound:.2f} x")
        print(line + f". Our kernels: {env.get('isa', '?')}.")
        if env.get("pair_rounds"):
            print(f"\nPaired check ({env['pair_rounds']} rounds of one bandwidth pass then one exact "
                  f"query, so both see the same machine state): exact query "
                  f"{float(env['pair_query_median_us']):.0f} us, bound "
                  f"{float(env['pair_bound_median_us']):.0f} us (medians); query / bound median "
                  f"{float(env['pair_ratio_median']):.2f}, best {float(env['pair_ratio_best']):.2f} "
                  f"(goal <= 1.2).")
    if fenv:
        print(f"FAISS {fenv.get('faiss_version')} ({fenv.get('compile_options')}); one empty "
              f"index.search call from Python costs {fenv.get('python_call_us')} us (included in "
              f"FAISS latencies below).")
    print()

    # 1. Same configuration, same parameter.
    fk = {(r["config"], r["param"]): r for r in faiss}
    print("| config | param | recall ours / FAISS | median us ours / FAISS | ratio | p99 us ours / FAISS "
          "| batch qps ours / FAISS | bytes/vec ours / FAISS | build s ours / FAISS |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in ours:
        f = fk.get((r["config"], r["param"]))
        if not f:
            print(f"| {r['config']} | {fmt_param(r)} | {r['recall']:.3f} / - | {r['lat_med_us']:.0f} / - "
                  f"| - | {r['lat_p99_us']:.0f} / - | {r['qps']:.0f} / - | {r['bytes_per_vec']:.1f} / - "
                  f"| {r['build_s']:.1f} / - |")
            continue
        ratio = r["lat_med_us"] / f["lat_med_us"] if f["lat_med_us"] > 0 else float("nan")
        print(f"| {r['config']} | {fmt_param(r)} | {r['recall']:.3f} / {f['recall']:.3f} "
              f"| {r['lat_med_us']:.0f} / {f['lat_med_us']:.0f} | {ratio:.2f} "
              f"| {r['lat_p99_us']:.0f} / {f['lat_p99_us']:.0f} | {r['qps']:.0f} / {f['qps']:.0f} "
              f"| {r['bytes_per_vec']:.1f} / {f['bytes_per_vec']:.1f} | {r['build_s']:.1f} / {f['build_s']:.1f} |")
    print()

    # 2. Recall-matched, over all configurations: for each FAISS point, our fastest
    # configuration that reaches its recall with no more bytes per vector.
    if faiss:
        print("Recall-matched: for each FAISS configuration, our fastest configuration with at least "
              "its recall@k and at most its bytes per vector.\n")
        print("| FAISS config | param | recall | FAISS us | ours: config | param | recall | us | ratio |")
        print("|---|---|---|---|---|---|---|---|---|")
        ratios, unreached = [], []
        for f in sorted(faiss, key=lambda r: r["recall"]):
            b = best_at(ours, f["recall"], f["bytes_per_vec"])
            if not b:
                print(f"| {f['config']} | {fmt_param(f)} | {f['recall']:.3f} | {f['lat_med_us']:.0f} "
                      f"| (none reaches it) | | | | |")
                unreached.append(f"{f['config']} {fmt_param(f)} (recall {f['recall']:.4f})")
                continue
            ratio = b["lat_med_us"] / f["lat_med_us"]
            ratios.append(ratio)
            print(f"| {f['config']} | {fmt_param(f)} | {f['recall']:.3f} | {f['lat_med_us']:.0f} "
                  f"| {b['config']} | {fmt_param(b)} | {b['recall']:.3f} | {b['lat_med_us']:.0f} | {ratio:.2f} |")
        if ratios:
            s = sorted(ratios)
            print(f"\nour/FAISS latency at matched recall: median {s[len(s) // 2]:.2f}, "
                  f"worst {s[-1]:.2f}, best {s[0]:.2f} over {len(s)} FAISS points "
                  f"(goal: <= 0.67 everywhere).\n")
        if unreached:
            # a FAISS point none of ours reaches with no more bytes is a miss, not a skip
            print(f"FAISS points our configurations do not reach (recall at no more bytes per "
                  f"vector): {len(unreached)}: {'; '.join(unreached)}.\n")

    # 3. Plot data: one file per (system, config).
    os.makedirs(f"{d}/plot", exist_ok=True)
    for sysname, rows in (("ours", ours), ("faiss", faiss)):
        groups = {}
        for r in rows:
            groups.setdefault(r["config"].replace(",", "_"), []).append(r)
        for cfg, rs in groups.items():
            with open(f"{d}/plot/{sysname}_{cfg}.dat", "w") as f:
                for r in rs:
                    f.write(f"{r['recall']:.4f} {r['lat_med_us']:.2f} {r['param']}\n")


if __name__ == "__main__":
    main()
