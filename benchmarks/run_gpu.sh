#!/usr/bin/env bash
# Issue 10's evidence grid on one GPU: every job below runs at once (one MiniLM run leaves most of a large GPU
# idle), until an optional deadline. Each tune/adapt run keeps its metrics.json, so rerunning the same command
# continues the grid (finished adapt runs, bench cells and search trials are kept).
#   PEFTBERT_DATA_DIR=../shared/data bash benchmarks/run_gpu.sh [OUT (runs/gpu)] [SECONDS (0: no deadline)]
# Jobs (logs in OUT/logs/, start and end of each in OUT/jobs.txt):
#   speed      benchmarks/speed.py, train and adapt rows, alone before the rest, at most SPEED_SECONDS (600)
#              (predict runs on the CPU: its rows are in benchmarks/speed/cpu*.md)
#   dapt       peftbert adapt --domain finance, the default recipe (whole corpus, one epoch) -> OUT/models/finance-adapted
#   tapt-T     peftbert adapt --task T from it (TAPT on T's training text) -> OUT/tapt/T/finance-tapt
#   base-T     peftbert bench --task T --models minilm --methods full,lora --seeds 1,2,3 -> OUT/da/T (while dapt runs)
#   da-T       the same grid with finance-adapted and finance-tapt added -> OUT/da/T; OUT/da/suite.md joins the tasks
#   search-N   benchmarks/run_search.sh N into OUT (validation only): full-twitter, lora-small-twitter,
#              lora-all-small-twitter, each stopping before the deadline; tables copied to benchmarks/search/h200/N
#   budget-N   dapt at N training tokens, then FOMC lora cells from it -> OUT/budget/N/T (held-out perplexity
#              against downstream macro-F1; the whole corpus is finance-adapted above)
# T: twitter-fin-sentiment and FOMC's three published splits. TUNE_ARGS / ADAPT_ARGS / SPEED_ARGS are appended to
# every bench or search / adapt / speed command (a smoke run of this script: tiny step counts); they are plain
# flags, split on spaces. PYTHON (python3) runs the two Python scripts.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/gpu}
budget=${2:-0}
[[ $budget =~ ^[0-9]+$ ]] || { echo "SECONDS must be a whole number, got '$budget'" >&2; exit 2; }
py=${PYTHON:-python3}
start=$(date +%s)
mkdir -p "$out/logs"
TASKS="twitter-fin-sentiment fomc-hawkish-dovish@5768 fomc-hawkish-dovish@78516 fomc-hawkish-dovish@944601"
FOMC="fomc-hawkish-dovish@5768 fomc-hawkish-dovish@78516 fomc-hawkish-dovish@944601"

. benchmarks/gpu_lib.sh  # left, job, dir_of

ready() {  # ready RUN_DIR...: wait until each adapt run has finished (false if it failed, or at the deadline)
  for d in "$@"; do
    until [ -f "$d/metrics.json" ]; do
      [ -f "$d.failed" ] && return 1
      (( $(left) > 5 )) || return 1
      sleep 2
    done
  done
}

adapt() {  # adapt NAME DIR ARGS...: one adapt run into DIR, kept if finished; DIR.failed marks a failure
  local name=$1 dir=$2; shift 2
  [ -f "$dir/metrics.json" ] && return 0
  mkdir -p "$(dirname "$dir")" && rm -f "$dir.failed"
  # shellcheck disable=SC2086
  job "$name" peftbert adapt "$@" --output "$dir" --overwrite ${ADAPT_ARGS:-} || { touch "$dir.failed"; return 1; }
}

# shellcheck disable=SC2086  # the *_ARGS are lists of flags
{
gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | tr 'A-Z ' 'a-z-' | sed 's/^nvidia-//')
job speed timeout "${SPEED_SECONDS:-600}" "$py" benchmarks/speed.py --name "gpu-${gpu:-unknown}" --seeds 42 \
  --sections train,adapt --out "$out/speed" ${SPEED_ARGS:-}

adapted=$out/models/finance-adapted
(
  if ! adapt dapt "$adapted" --domain finance; then  # no TAPT either: release the waiting benches
    for t in $TASKS; do mkdir -p "$out/tapt/$(dir_of $t)" && touch "$out/tapt/$(dir_of $t)/finance-tapt.failed"; done
    exit
  fi
  for t in $TASKS; do
    adapt "tapt-$(dir_of $t)" "$out/tapt/$(dir_of $t)/finance-tapt" --model "$adapted" --task "$t" \
      --head-warmup-steps 0 --max-steps 600 --eval-every 200 &
  done
  wait
) &

for t in $TASKS; do
  (
    d=$(dir_of "$t")
    job "base-$d" peftbert bench --task "$t" --models minilm --methods full,lora --seeds 1,2,3 \
      --output "$out/da/$d" ${TUNE_ARGS:-}
    tapt=$out/tapt/$d/finance-tapt
    ready "$adapted" "$tapt" || exit
    shards=1; [ "$t" = twitter-fin-sentiment ] && shards=3  # twitter's cells are ~5x FOMC's
    for k in $(seq "$shards"); do
      job "da-$d-$k" peftbert bench --task "$t" --models "minilm,$adapted,$tapt" --methods full,lora --seeds 1,2,3 \
        --shard "$k/$shards" --output "$out/da/$d" ${TUNE_ARGS:-} &
    done
    wait
  ) &
done

for name in full-twitter lora-small-twitter lora-all-small-twitter; do
  # no new trial in the last 2 minutes: a trial started then would be cut off
  minutes=$(( budget ? ($(left) - 120) / 60 : 60 ))
  (( minutes > 0 )) && SEARCH_OUT=$out SEARCH_COPY=benchmarks/search/h200 \
    SEARCH_ARGS="--trials 40 --minutes $minutes ${TUNE_ARGS:-}" job "search-$name" bash benchmarks/run_search.sh "$name" &
done

for tokens in 1000000 3000000; do
  (
    model=$out/models/dapt-$tokens
    adapt "budget-$tokens" "$model" --domain finance --max-tokens "$tokens" || exit
    for t in $FOMC; do
      job "budget-$tokens-$(dir_of $t)" peftbert bench --task "$t" --models "$model" --methods lora --seeds 1,2,3 \
        --output "$out/budget/$tokens/$(dir_of $t)" ${TUNE_ARGS:-}
    done
  ) &
done
wait
}

"$py" benchmarks/bench_tables.py "$out/da" > /dev/null && echo "wrote $out/da/suite.md"
echo "done in $(( $(date +%s) - start ))s" | tee -a "$out/jobs.txt"
