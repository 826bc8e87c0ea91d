# The suite's scaling curves, from the .dat files `vguide_bench_svi --report` writes
# (columns: x, µs per step, hand-written floor µs, ratio, then the same in CPU time),
# the float64 series (the fit's default; the float32 ones end in _float32).
#   gnuplot -e "dir='bench/results/NAME'" bench/plot.gp              ->  dir/{N,D,S,threads}.png
#   gnuplot -e "dir='bench/results/NAME'; cpu=1" bench/plot.gp       ->  dir/{N,D,S,threads}_cpu.png
if (!exists("dir")) dir = "."
c = exists("cpu") ? 5 : 2     # the framework's column; the floor's is the next one
sfx = exists("cpu") ? "_cpu" : ""
what = exists("cpu") ? "process CPU time" : "wall time"
d = dir . "/data/"
set terminal pngcairo size 900,600 font ",11" noenhanced
set logscale xy
set grid
set key top left
set ylabel what . " per SVI step (µs)"

set output dir . "/N" . sfx . ".png"
set title "Logistic regression (P = 20), normal guide, S = 1: step time against N"
set xlabel "data rows N"
plot d."N_full.dat" u 1:(column(c)) w lp lw 2 pt 7 lc 1 t "vguide, full batch", \
     d."N_full.dat" u 1:(column(c+1)) w lp lw 1 pt 6 dt 2 lc 1 t "hand-written, full batch", \
     for [f in system("ls " . d . "N_B=*.dat 2>/dev/null | grep -v _float32")] f u 1:(column(c)) w lp lw 2 pt 5 lc 2 t "vguide, minibatch ".substr(f, strstrt(f, "N_B=") + 2, strlen(f) - 4), \
     for [f in system("ls " . d . "N_B=*.dat 2>/dev/null | grep -v _float32")] f u 1:(column(c+1)) w lp lw 1 pt 4 dt 2 lc 2 t "hand-written, minibatch"

set output dir . "/D" . sfx . ".png"
set title "Normal means (N = 1), S = 1: step time against the number of latents D"
set xlabel "latent dimension D"
plot d."D_normal.dat" u 1:(column(c)) w lp lw 2 pt 7 lc 1 t "vguide normal", \
     d."D_lowrank_mvn.dat" u 1:(column(c)) w lp lw 2 pt 5 lc 2 t "vguide lowrank_mvn (rank 5)", \
     d."D_mvn.dat" u 1:(column(c)) w lp lw 2 pt 9 lc 3 t "vguide mvn", \
     d."D_normal.dat" u 1:(column(c+1)) w lp lw 1 pt 6 dt 2 lc 0 t "hand-written mean-field"

set output dir . "/S" . sfx . ".png"
set title "Normal guide: step time against the number of particles S"
set xlabel "particles S"
set logscale x 2
plot d."S_eight_schools.dat" u 1:(column(c)) w lp lw 2 pt 7 lc 1 t "vguide, eight schools", \
     d."S_eight_schools.dat" u 1:(column(c+1)) w lp lw 1 pt 6 dt 2 lc 1 t "hand-written, eight schools", \
     d."S_logistic.dat" u 1:(column(c)) w lp lw 2 pt 5 lc 2 t "vguide, logistic N = 5000", \
     d."S_logistic.dat" u 1:(column(c+1)) w lp lw 1 pt 4 dt 2 lc 2 t "hand-written, logistic N = 5000"

set output dir . "/threads" . sfx . ".png"
set title "Step time against LibTorch intra-op threads (1, 2)"
set xlabel "threads"
unset logscale x
set xrange [0.8:2.2]
set xtics 1
set key outside right
set rmargin 45
files = system("ls " . d . "threads_*.dat | grep -v _float32")
name(f) = substr(f, strstrt(f, "threads_") + 8, strlen(f) - 4)
plot for [i = 1:words(files)] word(files, i) u 1:(column(c)) w lp lw 2 pt 7 lc i t "vguide ".name(word(files, i)), \
     for [i = 1:words(files)] word(files, i) u 1:(column(c+1)) w lp lw 1 pt 6 dt 2 lc i t "hand-written ".name(word(files, i))
