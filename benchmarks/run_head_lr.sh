#!/usr/bin/env bash
# The task head at 10x the learning rate (train.head_lr_ratio 10) for full fine-tuning on twitter finance sentiment:
#  - short regime (speed.py's 3,000 rows, 3 epochs, length-grouped): mode head10 of run_grouping_short.sh
#  - full data, the full preset, seeds 42, 1, 2 (one `peftbert bench`), beside benchmarks/grouping/after-full-*.json
# metrics.json -> benchmarks/head_lr/; table -> benchmarks/head_lr.md (python benchmarks/head_lr_report.py)
# Usage: PEFTBERT_DATA_DIR=../shared/data bash benchmarks/run_head_lr.sh
set -euo pipefail
cd "$(dirname "$0")/.."
MODES="head10" bash benchmarks/run_grouping_short.sh > /dev/null
peftbert bench --task twitter-fin-sentiment --methods full --seeds 42,1,2 --set train.head_lr_ratio=10 --set train.batching=grouped \
  --output runs/bench-head10 > runs/bench-head10.log 2>&1
mkdir -p benchmarks/head_lr
for seed in 42 1 2; do cp "runs/bench-head10/runs/minilm-full-s$seed/metrics.json" "benchmarks/head_lr/full-head10-s$seed.json"; done
cp runs/bench-head10/summary.md benchmarks/head_lr/bench-summary.md
python benchmarks/head_lr_report.py
