#!/usr/bin/env python3
"""FAISS side of the vector search benchmark (bench/bench_ann.c is ours).

Reads the vectors, queries and exact ground truth that bench_ann wrote (DIR/data.bin), runs
the same configurations with FAISS (Debian's python3-faiss), and writes DIR/faiss.tsv with
the same columns as DIR/ours.tsv. Single-query latency runs on one OpenMP thread, one
index.search call per query (the serving case); batch throughput uses --threads threads.

  /usr/bin/python3 bench/peers/faiss_bench.py --dir DIR --set 27k|3m [--data FILE]
      [--threads 2] [--hnsw 0|1] [--only flat,flat_sq8,ivf_sq8,ivf_pq,hnsw] [--resume]

--data is the file bench_ann wrote (default DIR/data.bin); it is memory-mapped, so the
vectors are read from the page cache and only FAISS's own index holds a private copy.
--only runs those families and appends to DIR/faiss.tsv (a run split over lock holds).
"""
import argparse
import sys
import time

import numpy as np
import faiss

NPROBES = [1, 2, 4, 8, 16, 32, 64, 128]
NPROBES_BIG = [1, 4, 16, 64, 256]  # 3m: the same short sweep as bench_ann
EFS = [100, 128, 192, 256, 384, 512]


def load(path):
    hdr = np.fromfile(path, dtype=np.uint32, count=8)
    if hdr[0] != 0x424E4E41 or hdr[1] != 1:
        sys.exit(f"{path}: not a bench_ann data file")
    n, nq, d, k = (int(v) for v in hdr[2:6])
    off = 32
    x = np.memmap(path, dtype=np.float32, mode="r", offset=off, shape=(n, d))
    off += 4 * n * d
    q = np.array(np.memmap(path, dtype=np.float32, mode="r", offset=off, shape=(nq, d)))
    off += 4 * nq * d
    gt = np.array(np.memmap(path, dtype=np.uint32, mode="r", offset=off, shape=(nq, k)))
    return x, q, gt, k


class Run:
    def __init__(self, args, x, q, gt, k, out):
        self.args, self.x, self.q, self.gt, self.k, self.out = args, x, q, gt, k, out
        self.n, self.d = x.shape
        # latency budget per point (>= 100 queries are always timed); 3m: 75 s for the flat
        # scan (~200 queries), 10 s for the others, as bench_ann
        self.budget = 10.0 if args.set == "3m" else 30.0

    def measure(self, index):
        """Latency per query on one thread (>= 100 queries, then until the budget is spent),
        recall over the timed queries, batch throughput when every query was timed."""
        faiss.omp_set_num_threads(1)
        q, k = self.q, self.k
        for i in range(min(20, len(q))):
            index.search(q[i:i + 1], k)
        lat, ids = [], []
        t_all = time.perf_counter()
        for i in range(len(q)):
            t = time.perf_counter()
            _, I = index.search(q[i:i + 1], k)
            lat.append(time.perf_counter() - t)
            ids.append(I[0])
            if i >= 100 and time.perf_counter() - t_all > self.budget:
                break
        done = len(lat)
        hit = 0
        for i in range(done):
            hit += len(np.intersect1d(ids[i], self.gt[i], assume_unique=False))
        recall = hit / (done * k)
        lat = np.sort(np.array(lat))
        med = lat[done // 2] * 1e6
        p99 = lat[int((done - 1) * 0.99)] * 1e6
        qps = 0.0
        if done == len(q):
            faiss.omp_set_num_threads(self.args.threads)
            t = time.perf_counter()
            index.search(q, k)
            qps = len(q) / (time.perf_counter() - t)
            faiss.omp_set_num_threads(1)
        return recall, med, p99, qps

    def emit(self, config, family, nlist, m, param, res, bpv, build_s):
        recall, med, p99, qps = res
        line = (f"faiss\t{self.args.set}\t{self.n}\t{self.d}\t{config}\t{family}\t{nlist}\t{m}\t"
                f"{param}\t{recall:.4f}\t{med:.1f}\t{p99:.1f}\t{qps:.0f}\t{bpv:.2f}\t{build_s:.2f}\n")
        sys.stdout.write(line)
        sys.stdout.flush()
        self.out.write(line)
        self.out.flush()

    def sweep(self, index, config, family, nlist, m, params, setter, bpv, build_s):
        for p in params or [0]:
            if params:
                setter(index, p)
            res = self.measure(index)
            self.emit(config, family, nlist, m, p, res, bpv, build_s)
            if res[0] >= 0.9995:
                break


def ivf_bpv(index, n, d, extra_shared):
    """Bytes per vector from the index's own structures: inverted-list entries (code + 64-bit
    id, as list_size says), the quantizer's stored centroids, the SQ ranges or PQ codebooks
    and any precomputed table, amortized over n. extra_shared is the fallback for the
    trained parameters when this FAISS build does not expose them."""
    inv = index.invlists
    entries = sum(inv.list_size(l) for l in range(index.nlist))
    total = entries * (index.code_size + 8)
    try:
        total += index.quantizer.codes.size()  # IndexFlat stores its vectors as bytes
    except AttributeError:
        total += index.nlist * d * 4
    shared = 0
    for part in ("sq.trained", "pq.centroids", "precomputed_table"):
        obj = index
        try:
            for a in part.split("."):
                obj = getattr(obj, a)
            shared += obj.size() * 4
        except AttributeError:
            pass
    total += shared if shared else extra_shared
    return total / n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--set", default="27k", choices=["27k", "3m"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hnsw", type=int, default=-1)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--data", default=None, help="data file (default DIR/data.bin)")
    ap.add_argument("--only", default=None,
                    help="comma-separated families to run (flat,flat_sq8,ivf_sq8,ivf_pq,hnsw)")
    ap.add_argument("--resume", action="store_true",
                    help="keep DIR/faiss.tsv and run only the configurations it lacks")
    args = ap.parse_args()
    big = args.set == "3m"
    only = set(args.only.split(",")) if args.only else None
    if only is not None:
        hnsw = 1 if "hnsw" in only else 0
    else:
        hnsw = (0 if big else 1) if args.hnsw < 0 else args.hnsw

    def want(family):
        return only is None or family in only

    x, q, gt, k = load(args.data or f"{args.dir}/data.bin")
    n, d = x.shape
    ip = faiss.METRIC_INNER_PRODUCT
    done = set()
    if only is not None:
        args.resume = True  # append to the rows an earlier part wrote
    if args.resume:
        try:
            with open(f"{args.dir}/faiss.tsv") as f:
                done = {line.split("\t")[4] for line in f.read().splitlines()[1:] if line}
        except OSError:
            args.resume = False
    out = open(f"{args.dir}/faiss.tsv", "a" if args.resume else "w")
    if not args.resume:
        out.write("sys\tset\tn\tdim\tconfig\tfamily\tnlist\tm\tparam\trecall\tlat_med_us\t"
                  "lat_p99_us\tqps\tbytes_per_vec\tbuild_s\n")
    r = Run(args, x, q, gt, k, out)
    faiss.omp_set_num_threads(args.threads)
    sys.stderr.write(f"faiss_bench: faiss {faiss.__version__} ({faiss.get_compile_options()}), "
                     f"{n} x {d}, {len(q)} queries, k {k}\n")

    # Wrapper cost of one index.search call from Python (an empty index), for the record.
    empty = faiss.IndexFlatIP(d)
    faiss.omp_set_num_threads(1)
    ts = []
    for i in range(2000):
        t = time.perf_counter()
        empty.search(q[:1], k)
        ts.append(time.perf_counter() - t)
    with open(f"{args.dir}/faiss_env.tsv", "w") as f:
        f.write(f"key\tvalue\nfaiss_version\t{faiss.__version__}\n"
                f"compile_options\t{faiss.get_compile_options()}\n"
                f"python_call_us\t{np.median(ts) * 1e6:.1f}\n")
    faiss.omp_set_num_threads(args.threads)

    if want("flat") and "Flat" not in done:
        t = time.perf_counter()
        flat = faiss.IndexFlatIP(d)
        flat.add(x)
        if big:
            r.budget = 75.0
        r.sweep(flat, "Flat", "flat", 0, 0, None, None, 4 * d, time.perf_counter() - t)
        del flat
        r.budget = 10.0 if big else 30.0

    if hnsw and "HNSW32" not in done:
        # HNSW before the IVF sweep: FAISS's PQ training is the slow part of this run
        faiss.omp_set_num_threads(args.threads)
        t = time.perf_counter()
        h = faiss.IndexHNSWFlat(d, 32, ip)
        h.hnsw.efConstruction = 40
        h.add(x)
        build = time.perf_counter() - t
        g = h.hnsw
        bpv = 4 * d + (g.neighbors.size() * 4 + g.offsets.size() * 8 + g.levels.size() * 4) / n

        def set_ef(index, ef):
            index.hnsw.efSearch = ef

        r.sweep(h, "HNSW32", "hnsw", 0, 32, EFS, set_ef, bpv, build)
        del h

    if not big and want("flat_sq8") and "SQ8" not in done:
        faiss.omp_set_num_threads(args.threads)
        t = time.perf_counter()
        sq = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
        sq.train(x)
        sq.add(x)
        r.sweep(sq, "SQ8", "flat_sq8", 0, 0, None, None, d + 8 * d / n, time.perf_counter() - t)
        del sq

    def set_nprobe(index, p):
        index.nprobe = p

    nlists = [4096] if big else ([256] if args.quick else [256, 512, 1024])
    nprobes = NPROBES_BIG if big else NPROBES
    for nlist in nlists:
        todo = [c for c, fam in ((f"IVF{nlist},SQ8", "ivf_sq8"), (f"IVF{nlist},PQ32", "ivf_pq"),
                                 (f"IVF{nlist},PQ64", "ivf_pq")) if c not in done and want(fam)]
        if not todo:
            continue
        faiss.omp_set_num_threads(args.threads)
        quantizer = faiss.IndexFlatIP(d)
        t = time.perf_counter()
        ivsq = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
        ivsq.cp.niter = 10
        ivsq.cp.max_points_per_centroid = 64 if big else 256
        ivsq.cp.seed = 1
        ivsq.train(x)  # trains the shared coarse quantizer, then the SQ ranges
        t_train = time.perf_counter() - t
        if f"IVF{nlist},SQ8" in todo:  # else only the quantizer is needed (PQ-only part)
            ivsq.add(x)
            build = time.perf_counter() - t
            r.sweep(ivsq, f"IVF{nlist},SQ8", "ivf_sq8", nlist, 0, nprobes, set_nprobe,
                    ivf_bpv(ivsq, n, d, 8 * d), build)
        del ivsq
        for m in (32, 64):
            if f"IVF{nlist},PQ{m}" not in todo:
                continue
            faiss.omp_set_num_threads(args.threads)
            t = time.perf_counter()
            # the quantizer is trained and holds nlist centroids: FAISS skips k-means
            pq = faiss.IndexIVFPQ(quantizer, d, nlist, m, 8, ip)
            pq.train(x)
            pq.add(x)
            build = time.perf_counter() - t + t_train
            r.sweep(pq, f"IVF{nlist},PQ{m}", "ivf_pq", nlist, m, nprobes, set_nprobe,
                    ivf_bpv(pq, n, d, 256 * d * 4), build)
            del pq

    out.close()


if __name__ == "__main__":
    main()
