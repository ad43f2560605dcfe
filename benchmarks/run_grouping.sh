#!/usr/bin/env bash
# Accuracy before vs after length-grouped batching (issue: fast training), twitter finance sentiment,
# full and lora with their presets, seeds 42, 1, 2. Each run's metrics.json -> benchmarks/grouping/.
#   before: commit 82c59c1 (random batches, torch dropout, plain AdamW), run from a worktree of it;
#           its lora seeds and full seed 42 are the runs already in benchmarks/results/ (same commands)
#   after:  this checkout (length-grouped batches, fast CPU dropout, fused AdamW), through `peftbert bench`
# Usage: PEFTBERT_DATA_DIR=../shared/data bash benchmarks/run_grouping.sh; then python benchmarks/grouping_report.py
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/grouping
mkdir -p "$out" runs
for pair in "lora 42 twitter-lora" "lora 1 twitter-lora-s1" "lora 2 twitter-lora-s2" "full 42 twitter-full"; do
  set -- $pair
  [ -f "$out/before-$1-s$2.json" ] || cp "benchmarks/results/$3.json" "$out/before-$1-s$2.json"
done
if [ ! -f "$out/before-full-s1.json" ] || [ ! -f "$out/before-full-s2.json" ]; then
  [ -d runs/before-82c59c1 ] || git worktree add --detach runs/before-82c59c1 82c59c1
  for seed in 1 2; do
    [ -f "$out/before-full-s$seed.json" ] && continue
    # run from inside the worktree: `python -m` puts the current directory first on sys.path
    (cd runs/before-82c59c1 && python -m peftbert.cli tune --task twitter-fin-sentiment --method full \
      --seed "$seed" --output "../before-full-s$seed" --overwrite > "../before-full-s$seed.log" 2>&1)
    cp "runs/before-full-s$seed/metrics.json" "$out/before-full-s$seed.json"
  done
fi
peftbert bench --task twitter-fin-sentiment --methods full,lora --seeds 42,1,2 --set train.batching=grouped --output runs/bench-grouping \
  2>&1 | tee runs/bench-grouping.log
for m in full lora; do for seed in 42 1 2; do
  cp "runs/bench-grouping/runs/minilm-$m-s$seed/metrics.json" "$out/after-$m-s$seed.json"
done; done
