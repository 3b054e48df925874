# Recall@k versus median single-query latency, ours (solid) against FAISS (dashed), from the
# data files bench/ann_compare.py writes. Like the reference's ANN-ablation figure (27k set:
# one panel per code type, one colour per nlist) and synthetic-expansion figure (3m set).
#   gnuplot -e "dir='/tmp/ann'; set='27k'; out='docs/img/ann_27k.png'" bench/ann_plot.gp
if (!exists("dir")) dir = "."
if (!exists("set")) set = "27k"
if (!exists("out")) out = "ann.png"
f(sys, cfg) = sprintf("%s/plot/%s_%s.dat", dir, sys, cfg)
set terminal pngcairo size 1400,1000 font "sans,11" noenhanced
set output out
set logscale y
set grid
set xlabel "recall@100 (against exact search)"
set ylabel "median single-query latency (us, one thread, log)"
set key left top
set style line 1 lc rgb "#1f77b4" lw 2 pt 7 ps 0.8
set style line 2 lc rgb "#d62728" lw 2 pt 5 ps 0.8
set style line 3 lc rgb "#2ca02c" lw 2 pt 9 ps 0.8
set style line 4 lc rgb "#9467bd" lw 2 pt 11 ps 0.8
set style line 5 lc rgb "#ff7f0e" lw 2 pt 13 ps 0.8
if (set eq "3m") {
    # recall spans 0.004 (IVF nprobe 1 on data without clusters) to 1 (exact): log x
    set logscale x
    set xrange [0.003:1.2]
    set xlabel "recall@100 (against exact search, log)"
    set title "3,000,000 x 256 (expanded, per-dimension mean and variance kept): ours (solid) vs FAISS (dashed)"
    plot f("ours","Flat") u 1:2 w lp ls 1 t "Flat (ours)", \
         f("faiss","Flat") u 1:2 w lp ls 1 dt 2 t "FlatIP (FAISS)", \
         f("ours","IVF4096_SQ8") u 1:2 w lp ls 2 t "IVF4096,SQ8 (ours)", \
         f("faiss","IVF4096_SQ8") u 1:2 w lp ls 2 dt 2 t "IVF4096,SQ8 (FAISS)", \
         f("ours","IVF4096_PQ32") u 1:2 w lp ls 3 t "IVF4096,PQ32 (ours)", \
         f("faiss","IVF4096_PQ32") u 1:2 w lp ls 3 dt 2 t "IVF4096,PQ32 (FAISS)", \
         f("ours","IVF4096_PQ64") u 1:2 w lp ls 4 t "IVF4096,PQ64 (ours)", \
         f("faiss","IVF4096_PQ64") u 1:2 w lp ls 4 dt 2 t "IVF4096,PQ64 (FAISS)", \
         f("ours","HNSW32") u 1:2 w lp ls 5 t "HNSW32 (ours)", \
         f("faiss","HNSW32") u 1:2 w lp ls 5 dt 2 t "HNSW32 (FAISS)"
} else {
    set multiplot layout 2,2 title "27,278 x 256, k = 100: ours (solid) vs FAISS (dashed); points are nprobe 1..128 or efSearch"
    do for [code in "SQ8 PQ32 PQ64"] {
        set title "IVF-".code
        plot f("ours","IVF256_".code) u 1:2 w lp ls 1 t "nlist 256 (ours)", \
             f("faiss","IVF256_".code) u 1:2 w lp ls 1 dt 2 t "nlist 256 (FAISS)", \
             f("ours","IVF512_".code) u 1:2 w lp ls 2 t "nlist 512 (ours)", \
             f("faiss","IVF512_".code) u 1:2 w lp ls 2 dt 2 t "nlist 512 (FAISS)", \
             f("ours","IVF1024_".code) u 1:2 w lp ls 3 t "nlist 1024 (ours)", \
             f("faiss","IVF1024_".code) u 1:2 w lp ls 3 dt 2 t "nlist 1024 (FAISS)"
    }
    set title "Flat, SQ8 (exhaustive) and HNSW32"
    plot f("ours","Flat") u 1:2 w lp ls 1 t "Flat (ours)", \
         f("faiss","Flat") u 1:2 w lp ls 1 dt 2 t "FlatIP (FAISS)", \
         f("ours","SQ8") u 1:2 w lp ls 2 t "SQ8 (ours)", \
         f("faiss","SQ8") u 1:2 w lp ls 2 dt 2 t "SQ8 (FAISS)", \
         f("ours","HNSW32") u 1:2 w lp ls 5 t "HNSW32 (ours)", \
         f("faiss","HNSW32") u 1:2 w lp ls 5 dt 2 t "HNSW32 (FAISS)"
    unset multiplot
}
