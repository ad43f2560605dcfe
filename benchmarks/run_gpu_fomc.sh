#!/usr/bin/env bash
# Issue 10's second grid on one GPU: recipes searched on FOMC itself (validation only), then scored on test over
# FOMC's three splits and seeds 1-3 beside full fine-tuning on the same machine; every job at once, until an
# optional deadline, then the speed benchmark with the time left. Rerunning continues (kept: finished cells,
# search trials).
#   PEFTBERT_DATA_DIR=../shared/data bash benchmarks/run_gpu_fomc.sh [OUT (runs/gpu-fomc)] [SECONDS (0: none)]
# Jobs (logs in OUT/logs/, start and end of each in OUT/jobs.txt):
#   full-T        bench full, its preset, on T, seeds 1-3: the reference each method is compared with
#   twbest-T      bench lora-all at its preset (searched on twitter) on the FOMC split T, seeds 1-3
#   search-N      benchmarks/run_search.sh N into OUT: no new trial after 45% of the grid's time; its tables
#                 copied to benchmarks/search/h200/N. N: lora-all-small-fomc, lora-small-fomc and the other
#                 methods' *-fomc searches (presets for them)
#   best-N-T      once search N ends: its best.yaml on T, seeds 1-3 (twitter one shard per seed) -> OUT/bench-N,
#                 for the two LoRA searches under 1%
#   speed         benchmarks/speed.py --sections train after the grid, SPEED_SECONDS (120) kept for it
# T: twitter-fin-sentiment and FOMC's three published splits (one directory each in OUT/bench).
# TUNE_ARGS are appended to every bench and search, SPEED_ARGS to speed.py (a smoke run: tiny step counts).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu-fomc}
total=${2:-0}
[[ $total =~ ^[0-9]+$ ]] || { echo "SECONDS must be a whole number, got '$total'" >&2; exit 2; }
speed_secs=${SPEED_SECONDS:-120}
budget=$(( total ? (total > speed_secs + 60 ? total - speed_secs : 60) : 0 ))  # the grid's deadline (gpu_lib)
py=${PYTHON:-python3}
start=$(date +%s)
mkdir -p "$out/logs"
FOMC="fomc-hawkish-dovish@5768 fomc-hawkish-dovish@78516 fomc-hawkish-dovish@944601"
SEARCHES="lora-all-small-fomc lora-small-fomc dora-fomc rslora-fomc adapter-fomc adalora-fomc ia3-fomc bitfit-fomc
          prefix-fomc"

. benchmarks/gpu_lib.sh  # left, job, dir_of

bench() {  # bench NAME TASK METHOD [DIR (bench)] [ARGS...]: seeds 1-3 of one method on one task -> OUT/DIR/<task>
  local name=$1 task=$2 method=$3 dir=${4:-bench}; shift $(( $# < 4 ? $# : 4 ))
  # shellcheck disable=SC2086  # TUNE_ARGS is a list of flags
  job "$name" peftbert bench --task "$task" --methods "$method" --seeds 1,2,3 --output "$out/$dir/$(dir_of "$task")" \
    "$@" ${TUNE_ARGS:-}
}

# shellcheck disable=SC2086
{
bench full-twitter twitter-fin-sentiment full &
for t in $FOMC; do
  bench "full-$(dir_of $t)" "$t" full &
  bench "twbest-$(dir_of $t)" "$t" lora-all &
done

minutes=$(( budget ? budget * 45 / 100 / 60 : 30 )); (( minutes > 0 )) || minutes=1  # search needs >= 1
for name in $SEARCHES; do
  (
    SEARCH_OUT=$out SEARCH_COPY=benchmarks/search/h200 SEARCH_ARGS="--trials 40 --minutes $minutes ${TUNE_ARGS:-}" \
      job "search-$name" bash benchmarks/run_search.sh "$name" || exit
    case $name in lora-all-small-fomc) method=lora-all ;; lora-small-fomc) method=lora ;; *) exit ;; esac
    best=$out/search-$name/best.yaml
    for t in $FOMC; do bench "best-$name-$(dir_of $t)" "$t" "$method" "bench-$name" --recipe "$best" & done
    for k in 1 2 3; do  # a twitter cell is ~5x a FOMC one
      bench "best-$name-twitter-$k" twitter-fin-sentiment "$method" "bench-$name" --recipe "$best" --shard "$k/3" &
    done
    wait
  ) &
done
wait
}

# all the time left goes to the speed benchmark (train rows only: the corpus is not staged)
budget=$total
secs=$(left)
(( secs > 60 )) && job speed "$py" benchmarks/speed.py --name h200 --seeds 42 --sections train \
  --out "$out/speed" ${SPEED_ARGS:-}
for d in "$out"/bench*/; do "$py" benchmarks/bench_tables.py "$d" > /dev/null && echo "wrote ${d}suite.md"; done
echo "done in $(( $(date +%s) - start ))s" | tee -a "$out/jobs.txt"
